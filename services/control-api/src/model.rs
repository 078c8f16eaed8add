//! What the catalog holds, as the handlers and the saga use it: groups with their label's
//! policy, and the few values with rules of their own (descriptions, owner lists).

use auth::Caller;
use domain::{
    DomainError, Email, GroupId, GroupName, GroupState, GroupType, IdentityKind, JoinPolicy, Label,
    SenderPolicy, Subject,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use utoipa::openapi::schema::{ArrayBuilder, Schema};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// Most owners a group may have.
pub const MAX_OWNERS: usize = 50;

/// Free text that explains a group or a label: at most [`Description::MAX_LEN`] characters,
/// possibly empty, with line breaks and tabs but no other control characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Description(String);

impl utoipa::PartialSchema for Description {
    fn schema() -> RefOr<Schema> {
        domain::schema::string(
            format!(
                "Free text, possibly empty, at most {} characters; line breaks and tabs but no \
                 other control characters.",
                Self::MAX_LEN
            ),
            0,
            Self::MAX_LEN,
            r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$",
        )
        .examples(["Support for working parents"])
        .into()
    }
}

impl ToSchema for Description {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Description")
    }
}

impl Description {
    /// Longest accepted description, in characters.
    pub const MAX_LEN: usize = 2000;

    /// Accepts up to `MAX_LEN` characters without control characters other than `\n`, `\r`
    /// and `\t`.
    pub fn parse(s: impl Into<String>) -> Result<Self, DomainError> {
        let s = s.into();
        if s.chars().count() > Self::MAX_LEN {
            return Err(invalid(
                "description",
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        if s.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(invalid(
                "description",
                "must not contain control characters other than line breaks and tabs",
            ));
        }
        Ok(Self(s))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Description {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The domain's error shape for a rule this crate owns, so every refusal reads alike.
fn invalid(field: &'static str, reason: impl Into<String>) -> DomainError {
    DomainError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A group's owners: one to [`MAX_OWNERS`] distinct subjects, kept sorted so every reader sees
/// the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Owners(Vec<Subject>);

impl utoipa::PartialSchema for Owners {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Subject::schema())
            .description(Some(format!(
                "The complete owner list: 1 to {MAX_OWNERS} subjects (a repeat counts once)."
            )))
            .min_items(Some(1))
            .max_items(Some(MAX_OWNERS))
            .examples([serde_json::json!(["alice"])])
            .into()
    }
}

impl ToSchema for Owners {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Owners")
    }
}

impl Owners {
    /// Accepts 1..=MAX_OWNERS subjects; repeats are folded into one.
    pub fn parse(mut subjects: Vec<Subject>) -> Result<Self, DomainError> {
        subjects.sort();
        subjects.dedup();
        if subjects.is_empty() {
            return Err(invalid("owners", "a group needs at least one owner"));
        }
        if subjects.len() > MAX_OWNERS {
            return Err(invalid(
                "owners",
                format!("a group may have at most {MAX_OWNERS} owners"),
            ));
        }
        Ok(Self(subjects))
    }

    /// The single owner of a new group.
    pub fn one(subject: Subject) -> Self {
        Self(vec![subject])
    }

    /// Whether `subject` is among them.
    pub fn contains(&self, subject: &Subject) -> bool {
        self.0.binary_search(subject).is_ok()
    }

    /// The subjects, sorted.
    pub fn as_slice(&self) -> &[Subject] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Owners {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(Vec::<Subject>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A group as the catalog holds it, with the label that governs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// The group's id.
    pub id: GroupId,
    /// Display name.
    pub name: GroupName,
    /// What the group is for.
    pub description: Description,
    /// What the group is for, chosen at creation and never changed.
    pub group_type: GroupType,
    /// Where mail to the group goes; `None` for a security group, which has no address.
    pub contact_address: Option<Email>,
    /// The label, with its current policy.
    pub label: Label,
    /// How people get in.
    pub join_policy: JoinPolicy,
    /// Who may mail the group, as its owners chose; `None` follows the label. Read it through
    /// [`GroupRecord::sender_policy`], which never lets it widen the label's rule.
    pub own_sender_policy: Option<SenderPolicy>,
    /// Where the group is in its life.
    pub state: GroupState,
    /// Who may edit and archive it.
    pub owners: Owners,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
}

impl GroupRecord {
    /// Whether `caller` owns the group: named an owner, and of a kind its label admits. An
    /// owner whose token now says they are a guest or an AI agent the label bars cannot act as
    /// owner (labels govern ownership, whatever the owner list says).
    pub fn is_owner(&self, caller: &Caller) -> bool {
        self.owners.contains(&caller.subject) && self.admits(caller.kind)
    }

    /// Who may mail the group: its owners' choice, never wider than its label's rule (a label
    /// tightened after the choice binds at once).
    pub fn sender_policy(&self) -> SenderPolicy {
        let label = self.label.policy.sender_policy;
        self.own_sender_policy
            .map_or(label, |own| own.narrower(label))
    }

    /// What the tenant keeps of the group: its address and name, who may mail it (the rule
    /// above and, for the `owners` rule, the owners), whether its label allows anonymous
    /// posting, and its label's entry rule. The saga,
    /// owners' edits, re-labelling and label changes all send this one request.
    ///
    /// A security group is provisioned under its reserved address ([`security_address`]), with
    /// no mail policy: the tenant keeps it only for its members and never matches it to mail.
    pub fn provision_request(&self) -> tenant_api::ProvisionGroup {
        let mail = self.group_type.receives_mail();
        tenant_api::ProvisionGroup {
            group_id: self.id,
            address: self
                .contact_address
                .clone()
                .unwrap_or_else(|| security_address(self.id)),
            display_name: self.name.clone(),
            sender_policy: mail.then(|| self.sender_policy()),
            anonymous_posting: mail && self.label.policy.anonymous_posting,
            owners: if mail {
                self.owners.as_slice().to_vec()
            } else {
                Vec::new()
            },
            label: Some(domain::EntryRule::of(&self.label.name, &self.label.policy)),
            group_type: self.group_type,
        }
    }

    /// The group's anonymous alias, when it has an address and its label allows anonymous
    /// posting.
    pub fn anonymous_address(&self) -> Option<Email> {
        self.contact_address
            .as_ref()
            .filter(|_| self.label.policy.anonymous_posting)
            .and_then(domain::anonymous_alias)
    }

    /// Whether the group's label admits identities of `kind` (the same rule joining applies).
    pub fn admits(&self, kind: IdentityKind) -> bool {
        domain::may_enter(kind, &self.label.name, &self.label.policy).is_ok()
    }

    /// Whether `caller` may see the group at all: owners always; others only when its label
    /// admits their kind and it is not archived. Everyone else is told it does not exist.
    pub fn visible_to(&self, caller: &Caller) -> bool {
        self.is_owner(caller) || (self.admits(caller.kind) && self.state != GroupState::Archived)
    }
}

/// The domain of the addresses security groups hold in place of one: `.invalid` is reserved
/// and can never be routed (RFC 2606), and the tenant's listener serves only its mail domain.
pub const SECURITY_ADDRESS_DOMAIN: &str = "security.invalid";

/// What a security group holds where a mail group holds its address, so the catalog's and
/// the tenant's address columns keep their NOT NULL and UNIQUE rules:
/// `<group id>@security.invalid`. Never shown, never matched to mail.
pub fn security_address(id: GroupId) -> Email {
    Email::parse(format!(
        "{}@{SECURITY_ADDRESS_DOMAIN}",
        id.as_uuid().simple()
    ))
    .expect("a UUID and a reserved domain make an address")
}

/// A group about to be written for the first time.
#[derive(Debug, Clone)]
pub struct NewGroup {
    /// Fresh id.
    pub id: GroupId,
    /// Display name.
    pub name: GroupName,
    /// What it is for.
    pub description: Description,
    /// Mail or security; never changes.
    pub group_type: GroupType,
    /// `local_part@mail-domain`, chosen or derived; `None` for a security group.
    pub contact_address: Option<Email>,
    /// The label (must exist).
    pub label: domain::LabelName,
    /// Allowed by the label.
    pub join_policy: JoinPolicy,
    /// Who may mail it, when the creator chose (no wider than the label allows).
    pub sender_policy: Option<SenderPolicy>,
    /// The creator, its first owner.
    pub creator: Subject,
}

impl NewGroup {
    /// What the catalog stores in its address column: the contact address, or for a
    /// security group its reserved one.
    pub fn stored_address(&self) -> Email {
        self.contact_address
            .clone()
            .unwrap_or_else(|| security_address(self.id))
    }
}

/// What an owner may change. `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct GroupChanges {
    /// New description.
    pub description: Option<Description>,
    /// New join policy (already checked against the label).
    pub join_policy: Option<JoinPolicy>,
    /// Who may mail the group from now on (checked against the label as it is written).
    pub sender_policy: Option<SenderPolicy>,
    /// The new, complete owner list.
    pub owners: Option<Owners>,
}

impl GroupChanges {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.description.is_none()
            && self.join_policy.is_none()
            && self.sender_policy.is_none()
            && self.owners.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_allow_line_breaks_and_refuse_other_control_characters_and_length() {
        assert!(Description::parse("").is_ok());
        assert!(Description::parse("two\nlines\tand a tab").is_ok());
        assert!(Description::parse("bell\u{7}").is_err());
        assert!(Description::parse("x".repeat(2000)).is_ok());
        let err = Description::parse("x".repeat(2001))
            .unwrap_err()
            .to_string();
        assert!(err.contains("2000"), "{err}");
    }

    #[test]
    fn owners_are_sorted_deduplicated_non_empty_and_bounded() {
        let s = |v: &str| Subject::parse(v).unwrap();
        let o = Owners::parse(vec![s("carol"), s("alice"), s("carol")]).unwrap();
        assert_eq!(o.as_slice(), &[s("alice"), s("carol")]);
        assert!(o.contains(&s("carol")) && !o.contains(&s("bob")));
        assert!(Owners::parse(vec![]).is_err());
        let many: Vec<Subject> = (0..51).map(|i| s(&format!("u{i}"))).collect();
        assert!(Owners::parse(many[..50].to_vec()).is_ok());
        assert!(Owners::parse(many).is_err());
        let bad: Result<Owners, _> = serde_json::from_str("[]");
        assert!(bad.is_err());
    }
}
