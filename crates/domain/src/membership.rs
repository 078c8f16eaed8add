//! Who may enter a group, the states a group goes through, and the coarse member counts owners
//! may see (INV-4).

use crate::{DomainError, LabelName, LabelPolicy};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// What kind of identity a caller is, as the IdP says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    /// An employee.
    Member,
    /// Someone from outside the company.
    Guest,
    /// An AI agent acting on its own identity.
    Agent,
}

impl IdentityKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Guest => "guest",
            Self::Agent => "agent",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "member" => Ok(Self::Member),
            "guest" => Ok(Self::Guest),
            "agent" => Ok(Self::Agent),
            _ => Err(DomainError::invalid(
                "kind",
                "must be member, guest or agent",
            )),
        }
    }
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an identity may not enter a group. It speaks of the identity and the label only, never of
/// the group's membership.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryRefusal {
    /// The label does not admit guests.
    #[error("the label '{0}' does not allow guests")]
    GuestsNotAllowed(LabelName),
    /// The label does not admit AI agents.
    #[error("the label '{0}' does not allow AI agents")]
    AgentsNotAllowed(LabelName),
    /// Nobody knows what kind of identity this is (never seen with a token, named by subject
    /// alone, no address in the corporate domains), so no label admits them: Hush fails
    /// closed rather than guess.
    #[error(
        "nobody knows this identity's kind (it was never seen with a token and has no address \
         in the corporate domains), so the label '{0}' cannot admit it"
    )]
    KindUnknown(LabelName),
}

/// The part of a label that decides who may be in a group under it: its name and whether it
/// admits guests and AI agents. What the tenant keeps of each group's label, so that it can end
/// the memberships a label bars the moment a person's kind changes or the label is tightened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryRule {
    /// The label's name.
    pub label: LabelName,
    /// Whether guests may be members.
    pub guests_allowed: bool,
    /// Whether AI agents may be members.
    pub agents_allowed: bool,
}

impl EntryRule {
    /// The entry rule of `label` with `policy`.
    pub fn of(label: &LabelName, policy: &LabelPolicy) -> Self {
        Self {
            label: label.clone(),
            guests_allowed: policy.guests_allowed,
            agents_allowed: policy.agents_allowed,
        }
    }

    /// Whether an identity of `kind` may be in a group under this rule ([`may_enter`]).
    pub fn admits(&self, kind: IdentityKind) -> bool {
        match kind {
            IdentityKind::Member => true,
            IdentityKind::Guest => self.guests_allowed,
            IdentityKind::Agent => self.agents_allowed,
        }
    }

    /// [`Self::admits`], with the refusal naming the label.
    pub fn check(&self, kind: IdentityKind) -> Result<(), EntryRefusal> {
        match kind {
            IdentityKind::Guest if !self.guests_allowed => {
                Err(EntryRefusal::GuestsNotAllowed(self.label.clone()))
            }
            IdentityKind::Agent if !self.agents_allowed => {
                Err(EntryRefusal::AgentsNotAllowed(self.label.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Whether this rule bars a kind that `before` admitted: moving from `before` to this rule
    /// is a tightening, which ends memberships; anything else is a loosening or no change.
    pub fn bars_more_than(&self, before: &EntryRule) -> bool {
        (before.guests_allowed && !self.guests_allowed)
            || (before.agents_allowed && !self.agents_allowed)
    }

    /// Whether this rule admits a kind that `before` barred (a loosening).
    pub fn admits_more_than(&self, before: &EntryRule) -> bool {
        before.bars_more_than(self)
    }
}

/// The one decision every path that adds a member makes first (self-join, approval, claim
/// rules, invites, owner add, bulk, migration): may an identity of `kind` enter a group whose
/// label is `label` with `policy`?
pub fn may_enter(
    kind: IdentityKind,
    label: &LabelName,
    policy: &LabelPolicy,
) -> Result<(), EntryRefusal> {
    match kind {
        IdentityKind::Member => Ok(()),
        IdentityKind::Guest if policy.guests_allowed => Ok(()),
        IdentityKind::Guest => Err(EntryRefusal::GuestsNotAllowed(label.clone())),
        IdentityKind::Agent if policy.agents_allowed => Ok(()),
        IdentityKind::Agent => Err(EntryRefusal::AgentsNotAllowed(label.clone())),
    }
}

/// Where a group is in its life. Only `active` groups take members or mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupState {
    /// Created in the catalog; the tenant has not yet confirmed its distribution group.
    Provisioning,
    /// Provisioned and usable.
    Active,
    /// Archive requested; the tenant group and its membership are being removed.
    Archiving,
    /// Gone from the tenant; kept in the catalog as a record.
    Archived,
}

impl GroupState {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Archiving => "archiving",
            Self::Archived => "archived",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "provisioning" => Ok(Self::Provisioning),
            "active" => Ok(Self::Active),
            "archiving" => Ok(Self::Archiving),
            "archived" => Ok(Self::Archived),
            _ => Err(DomainError::invalid("state", "unknown group state")),
        }
    }
}

/// A member count as owners see it (INV-4): a bucket, never a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum CountBucket {
    /// Fewer than 10.
    #[serde(rename = "<10")]
    Under10,
    /// 10 to 49.
    #[serde(rename = "10-49")]
    From10To49,
    /// 50 to 249.
    #[serde(rename = "50-249")]
    From50To249,
    /// 250 to 999.
    #[serde(rename = "250-999")]
    From250To999,
    /// 1000 or more.
    #[serde(rename = "1000+")]
    From1000,
}

impl CountBucket {
    /// The bucket holding `n`.
    pub fn of(n: u64) -> Self {
        match n {
            0..=9 => Self::Under10,
            10..=49 => Self::From10To49,
            50..=249 => Self::From50To249,
            250..=999 => Self::From250To999,
            _ => Self::From1000,
        }
    }

    /// The wire name, e.g. `10-49`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Under10 => "<10",
            Self::From10To49 => "10-49",
            Self::From50To249 => "50-249",
            Self::From250To999 => "250-999",
            Self::From1000 => "1000+",
        }
    }
}

/// The services that may call the isolated tenant (and each other's internal endpoints). Each
/// signs its own service tokens with its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceName {
    /// The catalog service.
    ControlApi,
    /// The routine membership service.
    MembershipApi,
    /// The bulk job service.
    BulkApi,
    /// The tenant itself (audience of service tokens).
    IsolatedTenant,
}

impl ServiceName {
    /// Every service, in a stable order.
    pub const ALL: [ServiceName; 4] = [
        Self::ControlApi,
        Self::MembershipApi,
        Self::BulkApi,
        Self::IsolatedTenant,
    ];

    /// The name used as `iss`/`aud` of service tokens and in key configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ControlApi => "control-api",
            Self::MembershipApi => "membership-api",
            Self::BulkApi => "bulk-api",
            Self::IsolatedTenant => "isolated-tenant",
        }
    }

    /// Parses the name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| DomainError::invalid("service", "unknown service name"))
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JoinPolicy, SenderPolicy};

    fn policy(guests: bool, agents: bool) -> LabelPolicy {
        LabelPolicy {
            guests_allowed: guests,
            agents_allowed: agents,
            join_policies: vec![JoinPolicy::Open],
            sender_policy: SenderPolicy::Anyone,
            anonymous_posting: false,
            rank: 0,
        }
    }

    #[test]
    fn may_enter_is_decided_by_kind_and_label_for_every_combination() {
        let label = LabelName::parse("L").unwrap();
        for guests in [false, true] {
            for agents in [false, true] {
                let p = policy(guests, agents);
                assert!(may_enter(IdentityKind::Member, &label, &p).is_ok());
                assert_eq!(may_enter(IdentityKind::Guest, &label, &p).is_ok(), guests);
                assert_eq!(may_enter(IdentityKind::Agent, &label, &p).is_ok(), agents);
            }
        }
    }

    #[test]
    fn refusals_name_the_label_and_the_kind_only() {
        let label = LabelName::parse("Confidential").unwrap();
        let err = may_enter(IdentityKind::Guest, &label, &policy(false, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the label 'Confidential' does not allow guests"
        );
    }

    #[test]
    fn count_buckets_have_exact_edges() {
        let cases = [
            (0, "<10"),
            (9, "<10"),
            (10, "10-49"),
            (49, "10-49"),
            (50, "50-249"),
            (249, "50-249"),
            (250, "250-999"),
            (999, "250-999"),
            (1000, "1000+"),
            (u64::MAX, "1000+"),
        ];
        for (n, want) in cases {
            assert_eq!(CountBucket::of(n).as_str(), want, "n = {n}");
            assert_eq!(serde_json::to_value(CountBucket::of(n)).unwrap(), want);
        }
    }

    #[test]
    fn names_round_trip() {
        for k in [
            IdentityKind::Member,
            IdentityKind::Guest,
            IdentityKind::Agent,
        ] {
            assert_eq!(IdentityKind::parse(k.as_str()).unwrap(), k);
        }
        for s in ServiceName::ALL {
            assert_eq!(ServiceName::parse(s.as_str()).unwrap(), s);
        }
        for s in [
            GroupState::Provisioning,
            GroupState::Active,
            GroupState::Archiving,
            GroupState::Archived,
        ] {
            assert_eq!(GroupState::parse(s.as_str()).unwrap(), s);
        }
    }
}
