//! The copy of an anonymous post (issue 19, item 4): what every member receives when a member
//! writes to the group's anonymous alias, with no trace of the sender in any header.
//!
//! The headers are rebuilt from an allow-list, not cleaned with a deny-list: a mail client or a
//! relay can add any header it likes (`Received`, `X-Originating-IP`, `Thread-Index`,
//! `Autocrypt`, a vendor's `X-…`), and a deny-list would miss the next one. The copy carries:
//!
//! - the list headers of every copy (`List-Id`, `List-Post` naming the alias, `Precedence`);
//! - `From`, `Reply-To` and `To`: the alias, shown as "Anonymous member of <group>", so a reply
//!   (or a reply to all) goes to the group through the alias and stays anonymous too;
//! - a new `Date` (the time the tenant accepted it, in UTC: the sender's own `Date` carries their
//!   time zone) and a new random `Message-ID` in the group's domain;
//! - of the sender's headers, only `Subject` and the ones that say how the body is encoded
//!   (`MIME-Version`, `Content-Type`, `Content-Transfer-Encoding`), as written.
//!
//! Dropped with everything else: `Received`, `Return-Path`, `Sender`, the sender's `Message-ID`,
//! `DKIM-Signature`, `ARC-*`, `Authentication-Results`, `X-Originating-IP`, `X-Mailer`,
//! `User-Agent`, `Cc`, read-receipt requests, and `In-Reply-To` and `References`: these name
//! earlier messages, and the ones a person holds (a private reply, their own earlier post) can
//! point at them; threading by subject still works in common clients. The body is sent as the
//! sender wrote it: a signature they typed, or an attachment's metadata, is theirs to remove.

use super::headers::{self, phrase};
use domain::Email;

/// The sender's headers an anonymous post keeps, as written (lowercase): what the message says
/// and how its body is to be read. Every other header is dropped.
const KEPT: &[&str] = &[
    "subject",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// Who the copies say an anonymous post is from.
pub fn sender_name(display_name: &str) -> String {
    format!("Anonymous member of {display_name}")
}

/// `"name" <address>`, or `"Anonymous member" <address>` when the group's name is not plain
/// ASCII (it would need RFC 2047 encoding).
fn mailbox(name: &str, fallback: &str, address: &Email) -> String {
    let shown = phrase(name)
        .or_else(|| phrase(fallback))
        .unwrap_or_default();
    format!("{shown} <{address}>")
}

/// What the tenant stamps on an anonymous post in place of the sender's own: the date it was
/// accepted (RFC 5322, UTC) and a fresh, random `Message-ID`.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// `Date` value.
    pub date: String,
    /// `Message-ID` value, with its angle brackets.
    pub message_id: String,
}

impl Stamp {
    /// The stamp of a post to `group` accepted now.
    pub fn now(group: &Email) -> Self {
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default();
        Self {
            date,
            message_id: format!("<{}@{}>", uuid::Uuid::new_v4().simple(), group.domain()),
        }
    }
}

/// The copy every member receives of an anonymous post to `alias`, the alias of the group at
/// `address` named `display_name`: the headers rebuilt as the module says, then the body as
/// written, with CRLF line ends.
pub fn copy(
    message: &[u8],
    address: &Email,
    alias: &Email,
    display_name: &str,
    stamp: &Stamp,
) -> Vec<u8> {
    let (fields, body) = headers::split(message);
    let mut out = Vec::with_capacity(message.len() + 512);
    let mut line = |s: String| {
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    let id = headers::list_id(address);
    line(match phrase(display_name) {
        Some(p) => format!("List-Id: {p} <{id}>"),
        None => format!("List-Id: <{id}>"),
    });
    line(format!("List-Post: <mailto:{alias}>"));
    line("Precedence: list".into());
    let from = mailbox(&sender_name(display_name), "Anonymous member", alias);
    line(format!("From: {from}"));
    line(format!("Reply-To: {from}"));
    line(format!(
        "To: {}",
        mailbox(display_name, "Anonymous posts", alias)
    ));
    line(format!("Date: {}", stamp.date));
    line(format!("Message-ID: {}", stamp.message_id));
    for f in &fields {
        if KEPT.contains(&f.name.to_ascii_lowercase().as_str()) {
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

    /// A post as it reaches the tenant from the corporate relay, every header a client, the
    /// sender's own server and the relay could add naming the sender somewhere.
    const POST: &[u8] = b"Return-Path: <dana.whistle@corp.example>\r\n\
Received: from laptop-dana.corp.example (laptop-dana.corp.example [10.9.8.7])\r\n\tby mx1.corp.example with ESMTPSA id 4AbCdEf for <wit+anon@groups.example>;\r\n\tSun, 6 Dec 2026 09:15:02 +0530\r\n\
DKIM-Signature: v=1; a=rsa-sha256; d=corp.example; s=dana2026; h=from:to:subject;\r\n\tbh=abc; b=def\r\n\
ARC-Authentication-Results: i=1; mx1.corp.example; dkim=pass header.d=corp.example\r\n\
Authentication-Results: mx1.corp.example; spf=pass smtp.mailfrom=dana.whistle@corp.example\r\n\
From: \"Dana Whistle\" <dana.whistle@corp.example>\r\n\
Sender: dana.whistle@corp.example\r\n\
Reply-To: dana.private@home.example\r\n\
To: wit+anon@groups.example\r\n\
Cc: Dana Whistle <dana.whistle@corp.example>\r\n\
Subject: What I saw on the\r\n night shift\r\n\
Date: Sun, 6 Dec 2026 09:15:00 +0530\r\n\
Message-ID: <20261206091500.dana-4711@laptop-dana.corp.example>\r\n\
In-Reply-To: <only-dana-got-this@corp.example>\r\n\
References: <only-dana-got-this@corp.example>\r\n\
X-Mailer: DanaMail 3.1 (build dana-laptop)\r\n\
User-Agent: Thunderbird on laptop-dana\r\n\
X-Originating-IP: [10.9.8.7]\r\n\
Thread-Index: AdXdanaWhistle==\r\n\
Autocrypt: addr=dana.whistle@corp.example; keydata=AAAA\r\n\
Disposition-Notification-To: dana.whistle@corp.example\r\n\
Organization: Dana's team\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
It happened on Tuesday.\r\n";

    fn stamped() -> String {
        let address = Email::parse("wit@groups.example").unwrap();
        let alias = domain::anonymous_alias(&address).unwrap();
        let stamp = Stamp {
            date: "Sun, 06 Dec 2026 03:45:02 +0000".into(),
            message_id: "<0a1b2c@groups.example>".into(),
        };
        String::from_utf8(copy(POST, &address, &alias, "Witness Support", &stamp)).unwrap()
    }

    #[test]
    fn an_anonymous_posts_headers_carry_no_trace_of_its_sender() {
        let text = stamped();
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        for trace in [
            "dana",
            "Dana",
            "whistle",
            "corp.example",
            "home.example",
            "10.9.8.7",
            "laptop",
            "4711",
            "4AbCdEf",
            "+0530",
            "DanaMail",
            "Thunderbird",
            "Organization",
            "Received",
            "Return-Path",
            "Sender:",
            "DKIM-Signature",
            "ARC-",
            "Authentication-Results",
            "In-Reply-To",
            "References",
            "Cc:",
            "Disposition-Notification-To",
            "Autocrypt",
            "Thread-Index",
        ] {
            assert!(!head.contains(trace), "{trace} left in:\n{head}");
        }
    }

    #[test]
    fn an_anonymous_post_comes_from_the_alias_and_replies_go_back_to_it() {
        let text = stamped();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let expected = [
            "List-Id: \"Witness Support\" <wit.groups.example>",
            "List-Post: <mailto:wit+anon@groups.example>",
            "Precedence: list",
            "From: \"Anonymous member of Witness Support\" <wit+anon@groups.example>",
            "Reply-To: \"Anonymous member of Witness Support\" <wit+anon@groups.example>",
            "To: \"Witness Support\" <wit+anon@groups.example>",
            "Date: Sun, 06 Dec 2026 03:45:02 +0000",
            "Message-ID: <0a1b2c@groups.example>",
            "Subject: What I saw on the\r\n night shift",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
        ];
        assert_eq!(head, expected.join("\r\n"));
        assert_eq!(body, "It happened on Tuesday.\r\n", "the body as written");
    }

    #[test]
    fn a_group_name_that_is_not_ascii_shows_a_plain_anonymous_sender() {
        let address = Email::parse("temoins@groups.example").unwrap();
        let alias = domain::anonymous_alias(&address).unwrap();
        let stamp = Stamp::now(&address);
        let text = String::from_utf8(copy(POST, &address, &alias, "Témoins", &stamp)).unwrap();
        assert!(
            text.contains("From: \"Anonymous member\" <temoins+anon@groups.example>\r\n"),
            "{text}"
        );
        assert!(stamp.message_id.ends_with("@groups.example>"));
        assert!(stamp.date.ends_with("+0000"), "{}", stamp.date);
    }
}
