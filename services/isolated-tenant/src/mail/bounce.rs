//! Mail to the tenant's bounce addresses (`bounce+<token>@<bounce domain>`): delivery status
//! notifications (RFC 3464), out-of-office replies and other auto-replies that the corporate
//! mail system sends to a copy's envelope sender. They are accepted, counted, and consumed
//! here: never forwarded to the original sender, who must not learn who received the mail.
//!
//! A DSN for a token the tenant issued that reports a permanent failure (`Status: 5.x.x`) for a
//! `Final-Recipient` counts a hard bounce for that address; enough of them mark it bad and
//! expansion skips it. Only counts leave (INV-1).

use super::headers;
use super::store::Inbound;
use domain::Email;

/// Length of a token in hex.
const TOKEN_HEX: usize = 32;

/// The bounce address of a delivery.
pub fn address(token: &str, bounce_domain: &str) -> String {
    format!("bounce+{token}@{bounce_domain}")
}

/// The token of a bounce address, when `rcpt` is one (well-formed; whether the tenant issued
/// it is checked when the mail is consumed, so the listener answers alike for any token).
pub fn token_of(rcpt: &Email, bounce_domain: &str) -> Option<String> {
    let (local, domain) = rcpt.as_str().split_once('@')?;
    if !domain.eq_ignore_ascii_case(bounce_domain) {
        return None;
    }
    let token = local.strip_prefix("bounce+")?;
    (token.len() == TOKEN_HEX && token.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| token.to_ascii_lowercase())
}

/// What came back: a DSN (with the addresses it reports as failed for good) or anything else.
pub fn classify(message: &[u8]) -> (Inbound, Vec<String>) {
    let (fields, _) = headers::split(message);
    let content_type = headers::get(&fields, "content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let is_report =
        content_type.contains("multipart/report") && content_type.contains("delivery-status");
    if !is_report {
        return (Inbound::AutoReply, Vec::new());
    }
    let text = String::from_utf8_lossy(message);
    let mut failed = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("final-recipient:") {
            current = v
                .split_once(';')
                .map(|(_, a)| a.trim().trim_matches(['<', '>']).to_string());
        } else if let Some(v) = lower.strip_prefix("status:") {
            if v.trim().starts_with('5') {
                if let Some(a) = current.take() {
                    failed.push(a);
                }
            }
        }
    }
    failed.sort();
    failed.dedup();
    (Inbound::Bounce, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_recognised_only_at_the_bounce_domain() {
        let t = "0123456789abcdef0123456789abcdef";
        let a = Email::parse(address(t, "b.example")).unwrap();
        assert_eq!(token_of(&a, "b.example").as_deref(), Some(t));
        assert_eq!(token_of(&a, "other.example"), None);
        let short = Email::parse("bounce+abc@b.example").unwrap();
        assert_eq!(token_of(&short, "b.example"), None);
    }

    #[test]
    fn a_dsn_reports_its_permanent_failures_only() {
        let dsn = b"From: MAILER-DAEMON@relay.example\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example\r\n\r\nFinal-Recipient: rfc822; gone@corp.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\nFinal-Recipient: rfc822; busy@corp.example\r\nAction: delayed\r\nStatus: 4.2.2\r\n--b--\r\n";
        let (kind, failed) = classify(dsn);
        assert_eq!(kind, Inbound::Bounce);
        assert_eq!(failed, vec!["gone@corp.example".to_string()]);
        let ooo = b"Subject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n";
        assert_eq!(classify(ooo), (Inbound::AutoReply, vec![]));
    }
}
