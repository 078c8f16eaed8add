//! The isolated tenant's API (`/tenant/v1`) as it travels on the wire: its paths, its request
//! and response types, the problem type of a label refusal, and the break-glass routes'
//! types ([`breakglass`]). The tenant serves them and `tenant-client` sends them; both depend on
//! this crate and on nothing of each other, so the two cannot drift and the tenant never links
//! an HTTP client of itself.
//!
//! Subjects and addresses travel in request bodies only, never in paths or query strings, so
//! no access log, proxy or span on the way records who a request is about (INV-6). For the same
//! reason the `Debug` output of every type that holds one leaves it out.

pub mod breakglass;
pub mod directory;

use domain::{
    CountBucket, Email, EntryRule, GroupId, GroupName, GroupType, IdentityKind, Label,
    SenderPolicy, ServiceName, Subject,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;
use uuid::Uuid;

/// Where the tenant's API lives; every path below starts with it.
pub const PREFIX: &str = "/tenant/v1";

/// The problem type (RFC 9457 `type`) of a label refusal: 403 when the group's label does not
/// admit the person's kind. Its detail names the kind and the label only.
pub const LABEL_REFUSED: &str = "urn:hush:problem:label-refused";

/// The paths of the API, as the tenant routes them (with `{group_id}` placeholders) and as the
/// clients fill them in.
pub mod paths {
    use domain::GroupId;

    /// `GET` answers which service called ([`super::Pong`]): a check of the token itself.
    pub const PING: &str = "/tenant/v1/ping";
    /// `POST` provisions a distribution group ([`super::ProvisionGroup`]).
    pub const GROUPS: &str = "/tenant/v1/groups";
    /// `DELETE` deprovisions a distribution group.
    pub const GROUP: &str = "/tenant/v1/groups/{group_id}";
    /// `GET` the coarse member count ([`super::MemberCount`]).
    pub const COUNT: &str = "/tenant/v1/groups/{group_id}/count";
    /// `POST` adds a member ([`super::AddMember`]).
    pub const MEMBERS: &str = "/tenant/v1/groups/{group_id}/members";
    /// `POST` removes a member ([`super::IdentityRef`]).
    pub const MEMBERS_REMOVE: &str = "/tenant/v1/groups/{group_id}/members/remove";
    /// `POST` answers whether a subject is a member of a group ([`super::MembershipQuery`]).
    pub const MEMBERSHIP_CHECK: &str = "/tenant/v1/membership/check";
    /// `POST` lists the groups a subject is in ([`super::SubjectRef`]).
    pub const GROUPS_OF: &str = "/tenant/v1/identities/groups";
    /// `POST` removes an identity from every group and deletes it ([`super::IdentityRef`]).
    pub const OFFBOARD: &str = "/tenant/v1/identities/offboard";
    /// `GET` the OpenAPI document (service token required).
    pub const OPENAPI: &str = "/tenant/v1/openapi.json";
    /// `POST` applies a batch of adds and removes in one transaction ([`super::ApplyBatch`]).
    pub const GROUPS_BATCH: &str = "/tenant/v1/groups/batch";
    /// `POST` applies a label's entry rule to the groups under it ([`super::ApplyRule`]).
    pub const APPLY_RULE: &str = "/tenant/v1/labels/apply";
    /// `POST` asks whether a person's token was voided by an offboarding ([`super::TokenCheck`]).
    pub const TOKEN_CHECK: &str = "/tenant/v1/tokens/check";
    /// `GET` the mail queue's counts ([`super::MailCounts`]).
    pub const MAIL_COUNTS: &str = "/tenant/v1/mail/counts";
    /// `GET` the newest dead letters, without group or address ([`super::DeadLetters`]).
    pub const MAIL_DEAD_LETTERS: &str = "/tenant/v1/mail/dead-letters";
    /// `POST` queues a notification from the closed set of templates
    /// ([`super::Notification`]).
    pub const NOTIFICATIONS: &str = "/tenant/v1/notifications";

    /// `template` with `{group_id}` replaced by `group`.
    pub fn for_group(template: &str, group: GroupId) -> String {
        template.replace("{group_id}", &group.to_string())
    }
}

/// The answer to a ping: the service the tenant recognised in the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pong {
    /// The calling service, as its token proved.
    pub service: ServiceName,
}

/// Creates (or confirms) the distribution group behind a catalog group. Idempotent: sending
/// the same request again answers the same group; a new `display_name` renames it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionGroup {
    /// The catalog's id of the group.
    pub group_id: GroupId,
    /// The group's mail address, unique in the tenant.
    pub address: Email,
    /// The name recipients see on the group's mail.
    pub display_name: GroupName,
    /// Who may send mail to the group (from its label and settings). Absent: leave the
    /// tenant's current policy as it is (`anyone` for a group that never had one), so callers
    /// that predate mail still work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_policy: Option<SenderPolicy>,
    /// Whether the group's anonymous alias (`<local>+anon@<domain>`) takes posts from members,
    /// from the group's label. Written with `sender_policy`, and only with it; absent: off, so
    /// a caller that predates anonymous posting never turns it on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous_posting: bool,
    /// The owners (IdP subjects, as the catalog holds them), for the `owners` sender policy;
    /// replaces the tenant's list when `sender_policy` is given. A sender is an owner when the
    /// tenant knows their address bound to one of these subjects. Owners are public contacts;
    /// the tenant seals them anyway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<Subject>,
    /// The entry rule of the group's label. The tenant keeps it, so that the memberships it
    /// bars end the moment a member's kind changes; a rule stricter than the one kept ends, in
    /// the same transaction, every membership it now bars. Absent: leave the kept rule as it
    /// is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<EntryRule>,
    /// What the group is for: `mail` (the default, so callers that predate types still work)
    /// or `security`. A security group's `address` is a reserved, never-routable one
    /// (`<group id>@security.invalid`) the mail listener never matches: no message reaches its
    /// members. Kept as the group was first provisioned.
    #[serde(default, rename = "type")]
    pub group_type: GroupType,
}

/// "Is this person's token still good?": asked by the public services before they accept a
/// caller, about that caller only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCheck {
    /// The token's subject (`sub`).
    pub subject: Subject,
    /// The token's issue time (`iat`, seconds since the epoch), when it carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<i64>,
}

/// INV-6: never shows the subject.
impl fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCheck").finish_non_exhaustive()
    }
}

/// Whether a token was voided by an offboarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenStanding {
    /// True when its holder was offboarded after it was issued (or, for a token without an
    /// issue time, ever): refuse it.
    pub revoked: bool,
}

/// A label's entry rule changed in the catalog: the tenant applies it to every group under the
/// label and ends, at once, every membership it now bars.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRule {
    /// The label and what it now admits.
    pub rule: EntryRule,
    /// The groups under the label, as the catalog holds them (archived ones left out). The
    /// tenant also applies the rule to any group it already knows under the label's name.
    #[schema(max_items = 10000)]
    pub groups: Vec<GroupId>,
}

/// What applying a label's entry rule did: counts only, never who.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleApplied {
    /// How many groups now carry the rule.
    pub groups: u64,
    /// How many memberships the rule ended, as a bucket (INV-4).
    pub ended: CountBucket,
}

/// The tenant's mail queue for operators: counts of messages, over every group (INV-1, INV-4).
///
/// Messages, never recipients or relay transactions: a message to a group of `n` members makes
/// `n` recipients in `ceil(n / HUSH_MAIL_BATCH_RECIPIENTS)` transactions, so either figure,
/// read before and after a post of one's own, would be a count of that group. A message is
/// one whatever its group's size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MailCounts {
    /// Messages with a delivery waiting or in flight.
    pub queued_messages: i64,
    /// Messages with a delivery done, within the retention of delivered rows
    /// (`HUSH_MAIL_DELIVERED_RETENTION_DAYS`, 7 by default).
    pub delivered_messages: i64,
    /// Messages with a dead letter (attempts spent or refused for good), within the retention
    /// of dead rows (`HUSH_MAIL_DEAD_RETENTION_DAYS`, 30 by default).
    pub dead_messages: i64,
    /// Delivery addresses marked bad after repeated hard bounces.
    pub bad_addresses: i64,
    /// Bounces (delivery status notifications) consumed at the bounce addresses.
    pub bounces_consumed: i64,
    /// Other automatic mail consumed there or at a group address (out-of-office replies).
    pub auto_replies_consumed: i64,
    /// Messages to members-only or owners-only groups dropped unread: their sender was not
    /// authenticated (not through a trusted relay), or was and may not write to the group (it
    /// was sent a notice). Answered `250` all the same, so SMTP tells nobody who is a member.
    #[serde(default)]
    pub refused_messages: i64,
    /// The relay's health as the answering tenant replica's delivery workers see it.
    #[serde(default)]
    pub relay: RelayStatus,
}

/// The corporate relay's health as one tenant replica's delivery workers see it: its state
/// and since when. No volume: the relay's transactions are batches of one group's members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelayStatus {
    /// Why the relay is failing (`connect`, `tls`, `starttls-missing`, `auth`,
    /// `auth-required`, `protocol`), or absent when its last attempt worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<String>,
    /// Since when (Unix milliseconds) the relay is in this state.
    pub since_ms: i64,
}

/// The newest dead letters, for operators: no group, no address, no subject, no count
/// (INV-1, INV-4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetters {
    /// Newest first, at most 200; `MailCounts::dead_messages` has the total.
    pub dead_letters: Vec<DeadLetter>,
}

/// One message with a delivery given up on. One entry per message, however many relay
/// transactions its group's size made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// The message's id (random; says nothing about its group).
    pub id: Uuid,
    /// When its last delivery was given up on, Unix milliseconds.
    pub ended_ms: i64,
    /// Attempts made (the most any of its deliveries made).
    pub attempts: u32,
    /// A relay reply code (`550 5.7.1`, `451`), or what failed before any reply (`connect`,
    /// `tls`, `starttls-missing`, `auth`, `protocol`), of its dead deliveries; absent when
    /// unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
}

/// A distribution group as the tenant holds it. Carries no member and no count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DistributionGroup {
    /// The catalog's id of the group.
    pub group_id: GroupId,
    /// The group's mail address.
    pub address: Email,
    /// The name recipients see on the group's mail.
    pub display_name: GroupName,
}

/// The person or agent a membership write is about: by subject, by address, or both (at least
/// one; the tenant answers 422 otherwise).
///
/// The tenant finds the identity by subject first, then by address. A write that carries both
/// for an identity first created by address alone binds the subject to it, so someone an owner
/// added by address finds the membership under "my groups" once they sign in. A person the
/// tenant has never seen gets a new identity (sign-in disabled).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRef {
    /// The IdP's subject (`sub`), when the person is known by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// Where the group's mail reaches them, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// Member, guest or agent. `Some` when the person is present with a token (the IdP's word,
    /// stored as the identity's kind); `None` for an add by someone else, when the tenant uses
    /// the kind it has stored, or else infers it from the address's domain. With neither (a
    /// subject the tenant never saw, no address) the kind is unknown and the add does not
    /// happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<IdentityKind>,
}

impl MemberRef {
    /// The person themself, present with their token: its subject, address and kind.
    pub fn present(subject: Subject, email: Email, kind: IdentityKind) -> Self {
        Self {
            subject: Some(subject),
            email: Some(email),
            kind: Some(kind),
        }
    }
}

/// INV-6: says what kind of identity, never which one.
impl fmt::Debug for MemberRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberRef")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Adds one person to a group, with the group's label so the tenant can check the label admits
/// the person's kind before it writes anything (every add path ends here: defence in depth).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// Who is added.
    pub member: MemberRef,
    /// The label of the group, as the catalog holds it.
    pub label: Label,
}

/// One identity, by subject, by address, or both (at least one): for a removal or an
/// offboarding. The tenant looks it up by subject first, then by address.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityRef {
    /// The IdP's subject (`sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub subject: Option<Subject>,
    /// The person's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub email: Option<Email>,
}

/// INV-6: never shows the subject or the address.
impl fmt::Debug for IdentityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityRef").finish_non_exhaustive()
    }
}

impl From<&Subject> for IdentityRef {
    fn from(subject: &Subject) -> Self {
        Self {
            subject: Some(subject.clone()),
            email: None,
        }
    }
}

impl From<&MemberRef> for IdentityRef {
    fn from(m: &MemberRef) -> Self {
        Self {
            subject: m.subject.clone(),
            email: m.email.clone(),
        }
    }
}

/// A question about one signed-in person: "which groups am I in".
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectRef {
    /// The IdP's subject (`sub`).
    pub subject: Subject,
    /// The person's address from the same token, when it carries one: the tenant also
    /// considers an identity with this address and no subject yet (the person, added by
    /// address before they signed in), never one bound to another subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// The kind the person's token carries. When the tenant has stored another kind for them,
    /// it corrects it first, and every membership the new kind's labels bar ends in the same
    /// transaction (with an audit event; nobody else is told).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<IdentityKind>,
    /// Only these groups (1 to [`MAX_AMONG`]): "which of these am I in". The tenant then probes
    /// these groups' membership tags only, not every group's — what an access decision for an
    /// app needs (the groups guarding its resources). Absent: every group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, max_items = 500)]
    pub among: Option<Vec<GroupId>>,
}

/// Most groups one "which of these am I in" may name.
pub const MAX_AMONG: usize = 500;

/// INV-6: never shows the subject or the address.
impl fmt::Debug for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectRef").finish_non_exhaustive()
    }
}

/// "Is this signed-in person a member of this group?"
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembershipQuery {
    /// The catalog's id of the group.
    pub group_id: GroupId,
    /// The IdP's subject (`sub`).
    pub subject: Subject,
    /// The person's address from the same token, when it carries one: the tenant also
    /// considers an identity with this address and no subject yet (the person, added by
    /// address before they signed in), never one bound to another subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// The kind the person's token carries. When the tenant has stored another kind for them,
    /// it corrects it first, and every membership the new kind's labels bar ends in the same
    /// transaction (with an audit event; nobody else is told).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<IdentityKind>,
}

/// INV-6: names the group, never the subject or the address.
impl fmt::Debug for MembershipQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MembershipQuery")
            .field("group_id", &self.group_id)
            .finish_non_exhaustive()
    }
}

/// Whether the subject asked about is a member of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MembershipCheck {
    /// True when they are a member.
    pub member: bool,
}

/// The groups one subject is in (and only theirs: INV-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupsOf {
    /// Ids of the groups, sorted; empty for a subject the tenant has not seen.
    pub groups: Vec<GroupId>,
}

/// A group's member count, as a bucket only (INV-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberCount {
    /// The bucket the number of members falls in.
    pub bucket: CountBucket,
}

/// Whether a batch operation adds or removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchOpKind {
    /// Make the person a member (label checked first).
    Add,
    /// Make sure the person is not a member.
    Remove,
}

/// One operation of a batch: add or remove one person (by subject, address, or both) in one
/// group.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchOp {
    /// Add or remove.
    pub op: BatchOpKind,
    /// The catalog's id of the group.
    pub group_id: GroupId,
    /// The IdP's subject (`sub`), when the person is known by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// The person's address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
}

/// INV-6: the operation and the group, never the person.
impl fmt::Debug for BatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchOp")
            .field("op", &self.op)
            .field("group_id", &self.group_id)
            .finish_non_exhaustive()
    }
}

/// The label of one group a batch touches, as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupLabel {
    /// The catalog's id of the group.
    pub group_id: GroupId,
    /// Its label; the tenant checks every add against it with the resolved kind.
    pub label: Label,
}

/// A batch of adds and removes, applied in one transaction (bulk-api only). Every add's group
/// must have its label in `labels`; an add whose group has none counts as `unknown_group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyBatch {
    /// The operations, applied in order: at most 10,000.
    #[schema(max_items = 10000)]
    pub ops: Vec<BatchOp>,
    /// The label of each group the batch adds to.
    pub labels: Vec<GroupLabel>,
}

/// What a batch did: counts by outcome, never per person (INV-3). `applied` counts every add
/// and remove that holds now, whether or not it changed anything; applying the same batch
/// again answers the same counts and changes nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchOutcome {
    /// Operations that hold now.
    pub applied: u64,
    /// Operations naming nobody (neither subject nor address).
    pub unknown_identity: u64,
    /// Adds the group's label refused for the person's kind (nothing written for them).
    pub label_refused: u64,
    /// Operations on a group the tenant has not provisioned, or an add without its label.
    pub unknown_group: u64,
}

impl ApplyBatch {
    /// Adds of each of `emails` (people known by address) to `group`, which carries `label`.
    pub fn add_all(group: GroupId, label: Label, emails: &[Email]) -> Self {
        Self {
            ops: emails
                .iter()
                .map(|e| BatchOp {
                    op: BatchOpKind::Add,
                    group_id: group,
                    subject: None,
                    email: Some(e.clone()),
                })
                .collect(),
            labels: vec![GroupLabel {
                group_id: group,
                label,
            }],
        }
    }
}

impl BatchOutcome {
    /// Operations rejected, for any reason.
    pub fn rejected(&self) -> u64 {
        self.unknown_identity + self.label_refused + self.unknown_group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_names_the_person() {
        let subject = Subject::parse("alice-sub").unwrap();
        let m = MemberRef {
            subject: Some(subject.clone()),
            email: Some(Email::parse("alice@corp.example").unwrap()),
            kind: Some(IdentityKind::Guest),
        };
        let q = MembershipQuery {
            group_id: GroupId::new(),
            subject: subject.clone(),
            email: m.email.clone(),
            kind: None,
        };
        let add = AddMember {
            member: m.clone(),
            label: Label::defaults().remove(0),
        };
        let d = format!(
            "{m:?} {:?} {q:?} {:?} {add:?}",
            SubjectRef {
                subject: subject.clone(),
                email: m.email.clone(),
                kind: Some(IdentityKind::Agent),
                among: None,
            },
            IdentityRef::from(&m),
        );
        assert!(!d.contains("alice"), "{d}");
        assert!(d.contains("Guest"));
    }

    #[test]
    fn requests_refuse_unknown_fields_and_invalid_values() {
        let ok = r#"{"subject":"s","email":"a@b.example","kind":"guest"}"#;
        assert!(serde_json::from_str::<MemberRef>(ok).is_ok());
        let extra = r#"{"subject":"s","email":"a@b.example","kind":"guest","x":1}"#;
        assert!(serde_json::from_str::<MemberRef>(extra).is_err());
        let bad = r#"{"subject":"","email":"a@b.example","kind":"guest"}"#;
        assert!(serde_json::from_str::<MemberRef>(bad).is_err());
        // Every field is optional on the wire (the tenant insists on subject or email).
        let by_email: MemberRef = serde_json::from_str(r#"{"email":"A@B.example"}"#).unwrap();
        assert_eq!(by_email.email.unwrap().as_str(), "a@b.example");
        assert!(by_email.subject.is_none() && by_email.kind.is_none());
        let who: IdentityRef = serde_json::from_str(r#"{"subject":"s"}"#).unwrap();
        assert!(who.email.is_none());
        assert!(serde_json::from_str::<IdentityRef>(r#"{"subject":"s","kind":"guest"}"#).is_err());
        // The caller's address on the read paths is optional: older callers send none.
        let g = GroupId::new();
        let old: MembershipQuery =
            serde_json::from_str(&format!(r#"{{"group_id":"{g}","subject":"s"}}"#)).unwrap();
        assert!(old.email.is_none());
        let new: MembershipQuery = serde_json::from_str(&format!(
            r#"{{"group_id":"{g}","subject":"s","email":"A@B.example"}}"#
        ))
        .unwrap();
        assert_eq!(new.email.unwrap().as_str(), "a@b.example");
        let old: SubjectRef = serde_json::from_str(r#"{"subject":"s"}"#).unwrap();
        assert!(old.email.is_none());
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"subject":"s"}"#,
            "no address, no field"
        );
        let new: SubjectRef =
            serde_json::from_str(r#"{"subject":"s","email":"a@b.example"}"#).unwrap();
        assert_eq!(new.email.unwrap().as_str(), "a@b.example");
        assert!(serde_json::from_str::<SubjectRef>(r#"{"subject":"s","x":1}"#).is_err());
        // Absent fields are left out, not sent as null.
        let text = serde_json::to_string(&MemberRef {
            subject: None,
            email: Some(Email::parse("a@b.example").unwrap()),
            kind: None,
        })
        .unwrap();
        assert_eq!(text, r#"{"email":"a@b.example"}"#);
    }

    #[test]
    fn group_paths_are_filled_in() {
        let g = GroupId::new();
        assert_eq!(
            paths::for_group(paths::MEMBERS_REMOVE, g),
            format!("/tenant/v1/groups/{g}/members/remove")
        );
        assert!(paths::GROUPS_OF.starts_with(PREFIX));
    }
}

/// The largest count a `requests-waiting` notification may carry.
pub const MAX_NOTIFIED_COUNT: u32 = 100_000;

/// A notification a service asks the tenant to send: one of a closed set of templates, so no
/// caller can put free text (a requester's name, say) into what is sent. The tenant writes the
/// words, finds the recipients itself or takes the one address the template allows, and says
/// only the group's public name, a count or an outcome: never a person's name, address or id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "template", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Notification {
    /// "N new requests are waiting in G", to the group's owners (whom the tenant finds itself:
    /// the owners control-api provisioned, at the addresses the tenant knows them by). At most
    /// one mail per group per interval; a later call within it updates the count of the mail
    /// owed.
    #[serde(rename_all = "snake_case")]
    RequestsWaiting {
        /// The group.
        group_id: GroupId,
        /// Pending requests in the group (1 to 100 000), which its owners can already list.
        count: u32,
    },
    /// "Your request to join G was approved / denied", to the one requester.
    #[serde(rename_all = "snake_case")]
    RequestDecided {
        /// The group.
        group_id: GroupId,
        /// What the owners decided.
        outcome: DecisionOutcome,
        /// The requester's own address, from their own request: the only recipient.
        to: Email,
    },
}

impl Notification {
    /// The template's name, as the wire carries it.
    pub fn template(&self) -> &'static str {
        match self {
            Self::RequestsWaiting { .. } => "requests-waiting",
            Self::RequestDecided { .. } => "request-decided",
        }
    }
}

/// An owner's (or officer's) decision, as a notification says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionOutcome {
    /// Approved.
    Approved,
    /// Denied.
    Denied,
}

impl DecisionOutcome {
    /// The word a notification uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Denied => "denied",
        }
    }
}
