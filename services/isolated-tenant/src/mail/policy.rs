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
//! The sender is the envelope sender the corporate mail system relays, which is only as good
//! as that system's own checks (SPF, DMARC, authenticated submission): point only trusted
//! relays at the listener. A refusal is one fixed answer that speaks of the sender's own right
//! to send and nothing else; it never says whether anyone else is a member.

use super::store::{GroupTarget, MailGroups};
use crate::identity::CorporateDomains;
use crate::store::StoreError;
use domain::{Email, SenderPolicy};

/// The reply to a sender the policy refuses.
pub const REFUSAL: &str = "550 5.7.1 You are not allowed to send to this group";

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
    Ok(match group.policy {
        SenderPolicy::Anyone => corporate.is_corporate(sender),
        SenderPolicy::Owners => match store.subject_of_email(sender).await? {
            Some(subject) => group.owners.contains(&subject),
            None => false,
        },
        SenderPolicy::Members => store.is_member_by_email(group.group_id, sender).await?,
    })
}
