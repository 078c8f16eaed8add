//! Header hygiene for the copies (INV-7), done once per message before it is stored.
//!
//! - Members are envelope recipients only, and the stored message is the same for every one of
//!   them, so no header of any copy can name a member: `To` and `Cc` stay as the sender wrote
//!   them, and nothing per-recipient is ever added.
//! - Read-receipt requests (`Disposition-Notification-To`, `Return-Receipt-To`,
//!   `X-Confirm-Reading-To`) and `Bcc` are dropped, so a member's client never reports back
//!   to the sender; so are the inbound trace headers that could name a mailbox
//!   (`Delivered-To`, `X-Original-To`, `Return-Path`) and any list headers the sender set.
//! - `List-Id` (RFC 2919), `List-Post` and `Precedence: list` are added, so auto-responders
//!   that follow RFC 3834 stay quiet, and filters can file the list.

use domain::Email;

/// Headers dropped from every copy (lowercase).
const DROPPED: &[&str] = &[
    "bcc",
    "resent-bcc",
    "disposition-notification-to",
    "disposition-notification-options",
    "return-receipt-to",
    "x-confirm-reading-to",
    "generate-delivery-report",
    "delivered-to",
    "x-original-to",
    "return-path",
    "list-id",
    "list-post",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "precedence",
];

/// One header field: its name as written, and the whole field (name, colon, value, folded
/// lines) as bytes, without the final CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name as written.
    pub name: &'a str,
    /// The whole field.
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// The value, unfolded and trimmed.
    pub fn value(&self) -> String {
        let text = String::from_utf8_lossy(self.raw);
        let v = text.split_once(':').map(|(_, v)| v).unwrap_or_default();
        v.replace("\r\n", "").replace('\n', "").trim().to_string()
    }
}

/// Splits a message into its header fields and the offset of its body (after the blank line).
/// Lines may end in CRLF or LF. Text before the first field that is not a field is kept with
/// the body (there is none in valid mail).
pub fn split(message: &[u8]) -> (Vec<Field<'_>>, usize) {
    let mut fields = Vec::new();
    let mut pos = 0;
    let mut start: Option<usize> = None;
    let mut end_of_last = 0;
    while pos < message.len() {
        let line_end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..line_end];
        let content = trim_eol(line);
        if content.is_empty() {
            if let Some(s) = start.take() {
                push_field(&mut fields, &message[s..end_of_last]);
            }
            return (fields, line_end);
        }
        let continuation = matches!(content.first(), Some(b' ' | b'\t'));
        if !continuation {
            if let Some(s) = start.take() {
                push_field(&mut fields, &message[s..end_of_last]);
            }
            if !content.contains(&b':') {
                // Not a header: treat the rest as body.
                return (fields, pos);
            }
            start = Some(pos);
        }
        end_of_last = pos + content.len();
        pos = line_end;
    }
    if let Some(s) = start {
        push_field(&mut fields, &message[s..end_of_last]);
    }
    (fields, message.len())
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn push_field<'a>(fields: &mut Vec<Field<'a>>, raw: &'a [u8]) {
    let colon = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
    if let Ok(name) = std::str::from_utf8(&raw[..colon]) {
        fields.push(Field {
            name: name.trim(),
            raw,
        });
    }
}

/// The first value of header `name` (case-insensitive).
pub fn get(fields: &[Field<'_>], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
        .map(Field::value)
}

/// Whether the message says it was sent by a machine on its own (RFC 3834 `Auto-Submitted`
/// other than `no`, or the older `Precedence: bulk|junk|list`, or common auto-reply markers):
/// such mail to a group is consumed, never expanded, so auto-responders cannot loop.
pub fn is_automatic(fields: &[Field<'_>]) -> bool {
    let auto =
        get(fields, "auto-submitted").is_some_and(|v| !v.to_ascii_lowercase().starts_with("no"));
    let precedence = get(fields, "precedence").is_some_and(|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "bulk" | "junk" | "list" | "auto_reply"
        )
    });
    let markers = ["x-autoreply", "x-autorespond", "x-auto-response"]
        .iter()
        .any(|n| get(fields, n).is_some());
    auto || precedence || markers
}

/// The RFC 2919 list identifier of a group address: `local.domain`, with characters a
/// dot-atom cannot hold replaced by `-`.
pub fn list_id(address: &Email) -> String {
    let (local, domain) = address
        .as_str()
        .split_once('@')
        .unwrap_or(("list", "invalid"));
    let local: String = local
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_+".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{local}.{domain}")
}

/// A display name as an RFC 5322 quoted string, or nothing when it is not plain ASCII.
pub(super) fn phrase(name: &str) -> Option<String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return None;
    }
    Some(format!(
        "\"{}\"",
        name.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// The copy every member receives: the list headers first, then the sender's headers without
/// the dropped ones, then the body, all with CRLF line ends as received.
pub fn clean(message: &[u8], address: &Email, display_name: &str) -> Vec<u8> {
    let (fields, body) = split(message);
    let mut out = Vec::with_capacity(message.len() + 256);
    let id = list_id(address);
    match phrase(display_name) {
        Some(p) => out.extend_from_slice(format!("List-Id: {p} <{id}>\r\n").as_bytes()),
        None => out.extend_from_slice(format!("List-Id: <{id}>\r\n").as_bytes()),
    }
    out.extend_from_slice(format!("List-Post: <mailto:{address}>\r\n").as_bytes());
    out.extend_from_slice(b"Precedence: list\r\n");
    for f in &fields {
        let lower = f.name.to_ascii_lowercase();
        if DROPPED.contains(&lower.as_str()) {
            continue;
        }
        out.extend_from_slice(f.raw);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&message[body.min(message.len())..]);
    out
}

/// The sender a `From` field names: its address, and the name shown for it (decoded from
/// RFC 2047 encoded-words and quoted-strings; the address's local part when there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// `local@domain`.
    pub address: String,
    /// The display name, as a reader sees it.
    pub name: String,
}

impl Sender {
    /// The domain of the address, lowercase.
    pub fn domain(&self) -> Option<String> {
        self.address
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
    }
}

/// The sender of the message's (first) `From` field, read by `mail-parser`, which knows the
/// grammar (comments, quoted-strings, encoded-words in any charset).
pub fn sender(fields: &[Field<'_>]) -> Option<Sender> {
    let from = fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case("from"))?;
    let mut raw = from.raw.to_vec();
    raw.extend_from_slice(b"\r\n\r\n");
    let parsed = mail_parser::MessageParser::new().parse_headers(&raw)?;
    let addr = parsed.from()?.first()?;
    let address = addr.address()?.trim().to_string();
    let name = addr
        .name()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map_or_else(
            || address.split('@').next().unwrap_or_default().to_string(),
            str::to_string,
        );
    Some(Sender { address, name })
}

/// The longest encoded-word is 75 characters (RFC 2047, 2): `=?UTF-8?B?` and `?=` leave 63
/// for base64, 60 of which hold 45 bytes.
const WORD_BYTES: usize = 45;

/// A display name as an RFC 5322 phrase: a quoted-string when it is printable ASCII, else
/// RFC 2047 encoded-words (`=?UTF-8?B?…?=`, each at most 75 characters, never splitting a
/// character) as atoms separated by folding white space, never inside a quoted string
/// (RFC 2047, 5 (3)). Control characters are dropped; an empty name stays empty.
pub fn display_name(name: &str) -> String {
    use base64::Engine as _;
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    if name.is_empty() {
        return String::new();
    }
    if name.is_ascii() {
        return format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""));
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in name.chars() {
        if chunk.len() + c.len_utf8() > WORD_BYTES {
            // Break after a space when the word has one, so a decoder that wrongly puts a
            // space between adjacent encoded-words (Python's `email.headerregistry` does)
            // shows a double space, not a split word.
            match chunk.rfind(' ').filter(|&i| i > 0) {
                Some(i) => {
                    let rest = chunk.split_off(i + 1);
                    words.push(std::mem::replace(&mut chunk, rest));
                }
                None => words.push(std::mem::take(&mut chunk)),
            }
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// The copy with `From` rewritten to `"<sender> via <group>" <group address>` (the name as
/// [`display_name`] writes it, so non-ASCII names survive), and the sender's `From` moved to
/// `Reply-To` (unless the sender set one), so replies still reach them. For senders whose
/// domain's DMARC policy would bin a copy signed by the group's domain.
pub fn rewrite_from(message: &[u8], sender: &Sender, address: &Email, group_name: &str) -> Vec<u8> {
    let (fields, body) = split(message);
    if !fields.iter().any(|f| f.name.eq_ignore_ascii_case("from")) {
        return message.to_vec();
    }
    let shown = display_name(&format!("{} via {group_name}", sender.name));
    let has_reply_to = fields
        .iter()
        .any(|f| f.name.eq_ignore_ascii_case("reply-to"));
    let mut out = Vec::with_capacity(message.len() + 128);
    let mut done = false;
    for f in &fields {
        if f.name.eq_ignore_ascii_case("from") {
            if std::mem::replace(&mut done, true) {
                // A second From (invalid mail) goes: a copy has one author.
                continue;
            }
            if shown.is_empty() {
                out.extend_from_slice(format!("From: <{address}>\r\n").as_bytes());
            } else {
                let line = format!("From: {shown} <{address}>");
                let last = line.rsplit("\r\n").next().unwrap_or_default();
                // Keep lines within 78 characters (RFC 5322, 2.1.1): fold before the address.
                let sep = if last.len() > 78 { "\r\n " } else { " " };
                out.extend_from_slice(format!("From: {shown}{sep}<{address}>\r\n").as_bytes());
            }
            if !has_reply_to {
                out.extend_from_slice(b"Reply-To:");
                out.extend_from_slice(
                    &f.raw[f.raw.iter().position(|&b| b == b':').map_or(0, |i| i + 1)..],
                );
                out.extend_from_slice(b"\r\n");
            }
        } else {
            out.extend_from_slice(f.raw);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&message[body.min(message.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: Alice <alice@corp.example>\r\nTo: erg@groups.example\r\nCc: bob@corp.example\r\nBcc: carol@corp.example\r\nDisposition-Notification-To: alice@corp.example\r\nReturn-Receipt-To: alice@corp.example\r\nX-Confirm-Reading-To: alice@corp.example\r\nDelivered-To: erg@groups.example\r\nX-Original-To: erg@groups.example\r\nSubject: a long\r\n subject, folded\r\nList-Id: spoofed <x.y>\r\n\r\nHello\r\nBcc: in the body stays\r\n";

    #[test]
    fn receipts_bcc_and_trace_headers_are_dropped_and_list_headers_added() {
        let addr = Email::parse("erg@groups.example").unwrap();
        let out = clean(MSG, &addr, "ERG \"core\"");
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        for gone in [
            "Bcc:",
            "Disposition-Notification-To",
            "Return-Receipt-To",
            "X-Confirm-Reading-To",
            "Delivered-To",
            "X-Original-To",
            "spoofed",
            "carol",
        ] {
            assert!(!head.contains(gone), "{gone} left in:\n{head}");
        }
        assert!(
            head.starts_with("List-Id: \"ERG \\\"core\\\"\" <erg.groups.example>\r\n"),
            "{head}"
        );
        assert!(head.contains("List-Post: <mailto:erg@groups.example>"));
        assert!(head.contains("Precedence: list"));
        assert!(head.contains("To: erg@groups.example"));
        assert!(head.contains("Cc: bob@corp.example"));
        assert!(head.contains("Subject: a long\r\n subject, folded"));
        assert_eq!(body, "Hello\r\nBcc: in the body stays\r\n");
    }

    #[test]
    fn from_is_rewritten_to_the_group_with_the_sender_as_reply_to() {
        let addr = Email::parse("erg@groups.example").unwrap();
        let (fields, _) = split(MSG);
        let alice = sender(&fields).unwrap();
        assert_eq!(alice.domain().as_deref(), Some("corp.example"));
        let out = rewrite_from(MSG, &alice, &addr, "ERG");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("From: \"Alice via ERG\" <erg@groups.example>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Reply-To: Alice <alice@corp.example>\r\n"),
            "{text}"
        );
        assert!(!text.contains("From: Alice"));
        let of = |raw: &[u8]| {
            let (fields, _) = split(raw);
            let s = sender(&fields).unwrap();
            (s.address, s.name)
        };
        assert_eq!(
            of(b"From: bob@x.example\r\n\r\n"),
            ("bob@x.example".into(), "bob".into())
        );
        assert_eq!(
            of(b"From: \"B. Bob\" <bob@x.example>\r\n\r\n"),
            ("bob@x.example".into(), "B. Bob".into())
        );
        assert_eq!(
            of(b"From: =?UTF-8?Q?J=C3=B6rg?= <j@x.example>\r\n\r\n"),
            ("j@x.example".into(), "J\u{f6}rg".into())
        );
    }

    #[test]
    fn automatic_mail_is_recognised() {
        let (f, _) = split(b"Auto-Submitted: auto-replied\r\n\r\n");
        assert!(is_automatic(&f));
        let (f, _) = split(b"Auto-Submitted: no\r\nSubject: hi\r\n\r\n");
        assert!(!is_automatic(&f));
        let (f, _) = split(b"Precedence: bulk\r\n\r\n");
        assert!(is_automatic(&f));
        let (f, _) = split(b"Subject: Out of office\r\nX-Autoreply: yes\r\n\r\n");
        assert!(is_automatic(&f));
    }

    #[test]
    fn a_message_without_body_or_with_lf_line_ends_splits() {
        let (f, body) = split(b"Subject: x\nFrom: y@z.example\n\nbody\n");
        assert_eq!(f.len(), 2);
        assert_eq!(body, 30);
        let (f, body) = split(b"Subject: x\r\n");
        assert_eq!((f.len(), body), (1, 12));
    }

    #[test]
    fn non_ascii_names_are_encoded_words_outside_quotes_that_python_reads_back() {
        let addr = Email::parse("erg@groups.example").unwrap();
        let msg = b"From: =?ISO-8859-1?Q?J=F6rg_M=FCller?= <joerg@corp.example>\r\nSubject: x\r\n\r\nhi\r\n";
        let (fields, _) = split(msg);
        let joerg = sender(&fields).unwrap();
        assert_eq!(joerg.name, "J\u{f6}rg M\u{fc}ller");
        let group = "Gr\u{fc}ppe f\u{fc}r Mitarbeiterinnen und Mitarbeiter \u{65e5}\u{672c}\u{8a9e}\u{306e}\u{540d}\u{524d}";
        let out = rewrite_from(msg, &joerg, &addr, group);
        let text = String::from_utf8(out.clone()).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        for line in head.split("\r\n") {
            assert!(line.len() <= 78, "{line}");
            assert!(line.is_ascii(), "{line}");
        }
        let from = head.split("\r\nReply-To").next().unwrap();
        assert!(from.contains("=?UTF-8?B?"), "{from}");
        assert!(
            !from.contains('"'),
            "no quoted string around encoded-words: {from}"
        );
        let script = "import email, email.policy, sys\n\
                      from email.header import decode_header, make_header\n\
                      m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)\n\
                      a = m['From'].addresses[0]\n\
                      raw = email.message_from_bytes(m.as_bytes(), policy=email.policy.compat32)['From']\n\
                      print(a.display_name); print(a.addr_spec); print(str(make_header(decode_header(raw))))\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(&out).unwrap();
        let said = child.wait_with_output().unwrap();
        assert!(said.status.success());
        let said = String::from_utf8(said.stdout).unwrap();
        let lines: Vec<&str> = said.lines().collect();
        let shown = format!("J\u{f6}rg M\u{fc}ller via {group}");
        // RFC 2047, 6.2: white space between adjacent encoded-words is not shown;
        // `decode_header` follows it exactly, `headerregistry` adds a space at each word
        // boundary (a CPython quirk), which the breaks at spaces turn into a double space.
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>().join(" "),
            shown
        );
        assert_eq!(lines[1], "erg@groups.example");
        assert_eq!(lines[2], format!("{shown} <erg@groups.example>"));
        // ASCII names stay quoted strings, escaped.
        assert_eq!(display_name("A \"B\" \\ C"), "\"A \\\"B\\\" \\\\ C\"");
    }
}
