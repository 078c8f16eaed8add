//! Who may send to a group: the group's sender policy, from its label and settings in the
//! catalog (control-api sends it when it provisions the group and when owners or policy
//! change).
//!
//! - `anyone`: any sender from the corporate domains (`HUSH_CORPORATE_DOMAINS`; empty means
//!   none, so such a group takes no mail until the domains are set);
//! - `members`: members of the group only, found by the keyed hash of the sender's address,
//!   as the membership paths find them;
//! - `owners`: the group's owners only: the catalog sends their subjects (sealed in the
//!   tenant), and a sender is an owner when the tenant knows the sender's address bound to one
//!   of them (an owner who was never seen by the tenant with a token carrying their address
//!   cannot send yet).
//!
//! # SMTP answers that tell nobody who is a member
//!
//! `RCPT` and `DATA` answer the same whether the sender is a member, an owner, or neither, and
//! whoever the sender claims to be (issue 16). For `members` and `owners` groups the listener
//! answers `250` to every recipient and every message, and decides afterwards, on an
//! *authenticated* sender only: the envelope sender of a relay the operator trusts
//! (`HUSH_MAIL_TRUSTED_RELAYS`) to have authenticated it. From anywhere else the sender is a
//! claim: the message is dropped unread and counted, whoever it names — no lookup is made, so
//! neither the answer nor its timing depends on the claim. An authenticated sender the policy
//! refuses is sent a notice, to that address alone; its own right to send is all it says.
//! `anyone` groups refuse senders outside the corporate domains at `RCPT` (`550 5.7.1`), which
//! depends on the sender's domain only.
//!
//! # The anonymous alias
//!
//! A group's anonymous alias (`<local>+anon@<domain>`, [`domain::anonymous_alias`]) takes
//! posts from the group's members only (its owners only, for an `owners` group), whatever the
//! group's own sender policy: [`GroupTarget::senders`]. So it answers `RCPT` and `DATA` as a
//! `members` group does, for everyone, and decides after DATA on an authenticated sender. When
//! the group's label does not allow anonymous posting, the alias delivers nothing: an
//! authenticated sender is sent a notice saying so, and no membership is looked up.

use super::store::{GroupTarget, MailGroups};
use crate::identity::CorporateDomains;
use crate::store::StoreError;
use domain::{Email, SenderPolicy};

/// The reply to a sender outside the corporate domains, at `RCPT`, for an `anyone` group.
pub const REFUSAL: &str = "550 5.7.1 You are not allowed to send to this group";

/// The `RCPT` answer's refusal for `group` and the claimed `sender`, if any: only an `anyone`
/// group refuses, and only a sender outside the corporate domains (a fact about the sender's
/// address, never about membership). `members` and `owners` groups refuse nobody here.
pub fn refusal_at_rcpt(
    corporate: &CorporateDomains,
    group: &GroupTarget,
    sender: Option<&Email>,
) -> Option<&'static str> {
    match (group.senders(), sender) {
        (SenderPolicy::Anyone, Some(s)) if !corporate.is_corporate(s) => Some(REFUSAL),
        _ => None,
    }
}

/// What becomes of a message to a group, once it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Stored and delivered to the members.
    Deliver,
    /// Dropped unread and counted: the sender is not authenticated, or is the null sender.
    Drop,
    /// Dropped unread and counted; the authenticated sender is sent a notice.
    Notify(Email),
}

/// Decides a message to `group` from `sender` (the envelope sender; `None` for `<>`), which
/// came through a trusted relay when `authenticated`. Unauthenticated `members` and `owners`
/// mail is dropped without any lookup, whoever it names; so is all mail to an anonymous alias
/// the group's label does not allow (an authenticated sender is told).
pub async fn decide(
    store: &dyn MailGroups,
    corporate: &CorporateDomains,
    group: &GroupTarget,
    sender: Option<&Email>,
    authenticated: bool,
) -> Result<Decision, StoreError> {
    let Some(sender) = sender else {
        return Ok(Decision::Drop);
    };
    // Only `members` and `owners` groups look anyone up; for them a claim is never looked up.
    let restricted = group.senders() != SenderPolicy::Anyone;
    if restricted && !authenticated {
        return Ok(Decision::Drop);
    }
    if group.anonymous && !group.anonymous_posting {
        return Ok(Decision::Notify(sender.clone()));
    }
    Ok(if may_send(store, corporate, group, Some(sender)).await? {
        Decision::Deliver
    } else if restricted {
        Decision::Notify(sender.clone())
    } else {
        Decision::Drop
    })
}

/// The notice an authenticated sender gets when `group`'s policy refuses their message: their
/// own right to send, and nothing about anyone else.
pub fn notice(hostname: &str, group: &GroupTarget, to: &Email) -> Vec<u8> {
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let who = match group.senders() {
        SenderPolicy::Owners => "owners",
        _ => "members",
    };
    let why = if group.anonymous && !group.anonymous_posting {
        "the group does not take anonymous posts.".to_string()
    } else {
        format!("only the group's {who} may write to it.")
    };
    format!(
        "From: Mail Delivery System <mailer-daemon@{hostname}>\r\n\
         To: <{to}>\r\n\
         Subject: Not delivered: your message to {address}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 7bit\r\n\
         \r\n\
         Your message to {address} was not delivered: {why}\r\n\
         \r\n\
         This notice goes to you alone. Nobody else was told.\r\n",
        address = group.addressed(),
        id = uuid::Uuid::new_v4().simple(),
    )
    .into_bytes()
}

/// Whether `sender` may send to `group`.
pub async fn may_send(
    store: &dyn MailGroups,
    corporate: &CorporateDomains,
    group: &GroupTarget,
    sender: Option<&Email>,
) -> Result<bool, StoreError> {
    let Some(sender) = sender else {
        // The null sender is a bounce or an auto-reply: never expanded (the listener consumes
        // it), and never a member's right to send.
        return Ok(false);
    };
    Ok(match group.senders() {
        SenderPolicy::Anyone => corporate.is_corporate(sender),
        SenderPolicy::Owners => match store.subject_of_email(sender).await? {
            Some(subject) => group.owners.contains(&subject),
            None => false,
        },
        SenderPolicy::Members => store.is_member_by_email(group.group_id, sender).await?,
    })
}
