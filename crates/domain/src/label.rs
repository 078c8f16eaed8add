//! Sensitivity labels and the policy each carries. A label is chosen when a group is created and
//! decides, before anything is written, who may join it and how.

use crate::{DomainError, Email, LabelName};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// How people get into a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JoinPolicy {
    /// Anyone the label admits joins at once.
    Open,
    /// A request that an owner approves (this shows the requester to the owners).
    Approval,
    /// Only with an invite code from an owner.
    Invite,
}

impl JoinPolicy {
    /// All policies, in a stable order.
    pub const ALL: [JoinPolicy; 3] = [Self::Open, Self::Approval, Self::Invite];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Approval => "approval",
            Self::Invite => "invite",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| DomainError::invalid("join_policy", "must be open, approval or invite"))
    }
}

impl fmt::Display for JoinPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may send mail to a group's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SenderPolicy {
    /// Anyone from the configured corporate domains.
    Anyone,
    /// Members of the group only.
    Members,
    /// The group's owners only.
    Owners,
}

impl SenderPolicy {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anyone => "anyone",
            Self::Members => "members",
            Self::Owners => "owners",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        [Self::Anyone, Self::Members, Self::Owners]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                DomainError::invalid("sender_policy", "must be anyone, members or owners")
            })
    }

    /// How wide the circle of senders is: owners < members < anyone.
    fn breadth(self) -> u8 {
        match self {
            Self::Owners => 0,
            Self::Members => 1,
            Self::Anyone => 2,
        }
    }

    /// Whether this lets anyone send whom `other` does not.
    pub fn wider_than(self, other: SenderPolicy) -> bool {
        self.breadth() > other.breadth()
    }

    /// The narrower of the two: a group's own choice never widens what its label allows.
    pub fn narrower(self, other: SenderPolicy) -> SenderPolicy {
        if self.wider_than(other) {
            other
        } else {
            self
        }
    }
}

/// What a label allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelPolicy {
    /// Whether guest identities may be members.
    pub guests_allowed: bool,
    /// Whether AI agents may be members.
    pub agents_allowed: bool,
    /// Which join policies a group under this label may use: at least one, none repeated.
    #[schema(min_items = 1, max_items = 3)]
    pub join_policies: Vec<JoinPolicy>,
    /// Who may send mail to groups under this label.
    pub sender_policy: SenderPolicy,
    /// Whether members of groups under this label may post anonymously, through the group's
    /// anonymous alias (`<local>+anon@<domain>`): every copy then comes from the alias, with no
    /// trace of the sender in any header. Off unless a label says so; absent in a body or a
    /// stored policy written before it existed means off.
    #[serde(default)]
    pub anonymous_posting: bool,
    /// How sensitive the label is, 0 to [`MAX_LABEL_RANK`]: a group may guard a resource only
    /// when its label ranks at least as high as the resource's (like a label's priority).
    /// Absent in a body or a stored policy written before ranks existed means 0.
    #[serde(default)]
    #[schema(maximum = 1000)]
    pub rank: u16,
}

/// The highest rank a label may have.
pub const MAX_LABEL_RANK: u16 = 1000;

impl LabelPolicy {
    /// Checks the policy is usable: at least one join policy, no duplicates.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.join_policies.is_empty() {
            return Err(DomainError::invalid(
                "join_policies",
                "must allow at least one join policy",
            ));
        }
        let mut seen = Vec::new();
        for p in &self.join_policies {
            if seen.contains(p) {
                return Err(DomainError::invalid(
                    "join_policies",
                    "must not repeat a policy",
                ));
            }
            seen.push(*p);
        }
        if self.rank > MAX_LABEL_RANK {
            return Err(DomainError::invalid("rank", "must be between 0 and 1000"));
        }
        Ok(())
    }

    /// Whether this policy lets in or lets through anything `before` did not: guests or AI
    /// agents it barred, a join policy it did not allow, a wider circle of senders
    /// (owners < members < anyone), anonymous posting it did not allow (a post nobody can
    /// be held to account for), or a higher rank (its groups may then guard more sensitive
    /// resources). Such a change to a label that groups use needs a second
    /// label-admin's approval; anything else (tightening, a new description) applies at once.
    pub fn loosens(&self, before: &LabelPolicy) -> bool {
        (self.guests_allowed && !before.guests_allowed)
            || (self.agents_allowed && !before.agents_allowed)
            || self
                .join_policies
                .iter()
                .any(|p| !before.join_policies.contains(p))
            || self.sender_policy.wider_than(before.sender_policy)
            || (self.anonymous_posting && !before.anonymous_posting)
            || self.rank > before.rank
    }

    /// Whether a group under this label may use `policy`.
    pub fn allows_join_policy(&self, policy: JoinPolicy) -> bool {
        self.join_policies.contains(&policy)
    }

    /// Whether a group under this label may choose `senders`: the label's own rule or a
    /// narrower one (owners < members < anyone).
    pub fn allows_sender_policy(&self, senders: SenderPolicy) -> bool {
        !senders.wider_than(self.sender_policy)
    }
}

/// What turns a group's address into its anonymous alias: `<local>+anon@<domain>`. A group's
/// own local part never holds `+` ([`crate::LocalPart`]), so no group's address is another's
/// alias, and no owner can name a group so that it catches another group's anonymous posts.
pub const ANONYMOUS_ALIAS_SUFFIX: &str = "+anon";

/// The anonymous alias of the group address `group`: `<local>+anon@<domain>`. `None` when the
/// alias would be longer than a local part may be (64 characters), so a group whose local part
/// is longer than 59 characters has no alias.
pub fn anonymous_alias(group: &Email) -> Option<Email> {
    let (local, domain) = group.as_str().split_once('@')?;
    Email::parse(format!("{local}{ANONYMOUS_ALIAS_SUFFIX}@{domain}")).ok()
}

/// The group address that `address` is the anonymous alias of, when it is one.
pub fn alias_group(address: &Email) -> Option<Email> {
    let (local, domain) = address.as_str().split_once('@')?;
    let group = local.strip_suffix(ANONYMOUS_ALIAS_SUFFIX)?;
    if group.is_empty() {
        return None;
    }
    Email::parse(format!("{group}@{domain}")).ok()
}

/// A sensitivity label: a name, an explanation for people choosing it, and its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Label {
    /// Unique name, e.g. `Confidential`.
    pub name: LabelName,
    /// Plain-language explanation shown when choosing a label.
    pub description: String,
    /// What the label allows.
    pub policy: LabelPolicy,
}

impl Label {
    /// The three labels every new installation starts with.
    pub fn defaults() -> Vec<Label> {
        let name = |s: &str| LabelName::parse(s).expect("default label names are valid");
        vec![
            Label {
                name: name("General"),
                description: "Open to employees and guests; anyone may join, ask to join or be invited. AI agents may not join.".into(),
                policy: LabelPolicy {
                    guests_allowed: true,
                    agents_allowed: false,
                    join_policies: vec![JoinPolicy::Open, JoinPolicy::Approval, JoinPolicy::Invite],
                    sender_policy: SenderPolicy::Anyone,
                    anonymous_posting: false,
                    rank: 0,
                },
            },
            Label {
                name: name("Confidential"),
                description: "Employees only, no guests or AI agents; joining needs an owner's approval or an invite.".into(),
                policy: LabelPolicy {
                    guests_allowed: false,
                    agents_allowed: false,
                    join_policies: vec![JoinPolicy::Approval, JoinPolicy::Invite],
                    sender_policy: SenderPolicy::Anyone,
                    anonymous_posting: false,
                    rank: 10,
                },
            },
            Label {
                name: name("Highly Confidential"),
                description: "Employees only, by invite only; only members may send mail to the group, and they may post anonymously.".into(),
                policy: LabelPolicy {
                    guests_allowed: false,
                    agents_allowed: false,
                    join_policies: vec![JoinPolicy::Invite],
                    sender_policy: SenderPolicy::Members,
                    anonymous_posting: true,
                    rank: 20,
                },
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_policies() {
        let d = Label::defaults();
        assert_eq!(d.len(), 3);
        assert!(d.iter().all(|l| l.policy.validate().is_ok()));
        let hc = &d[2];
        assert_eq!(hc.name.as_str(), "Highly Confidential");
        assert_eq!(hc.policy.join_policies, vec![JoinPolicy::Invite]);
        assert_eq!(hc.policy.sender_policy, SenderPolicy::Members);
        assert!(d[0].policy.guests_allowed && !d[1].policy.guests_allowed);
        // Anonymous posting only where membership is invite-only and mail is members-only.
        let anonymous: Vec<bool> = d.iter().map(|l| l.policy.anonymous_posting).collect();
        assert_eq!(anonymous, [false, false, true]);
        let ranks: Vec<u16> = d.iter().map(|l| l.policy.rank).collect();
        assert_eq!(
            ranks,
            [0, 10, 20],
            "General < Confidential < Highly Confidential"
        );
    }

    #[test]
    fn ranks_read_as_zero_when_absent_are_bounded_and_raising_one_loosens() {
        let old = r#"{"guests_allowed": false, "agents_allowed": false, "join_policies": ["invite"], "sender_policy": "members"}"#;
        let p: LabelPolicy = serde_json::from_str(old).unwrap();
        assert_eq!(p.rank, 0);
        let mut raised = p.clone();
        raised.rank = 5;
        assert!(
            raised.loosens(&p),
            "a higher rank lets its groups guard more"
        );
        assert!(!p.loosens(&raised), "lowering a rank tightens");
        raised.rank = MAX_LABEL_RANK + 1;
        assert!(raised.validate().is_err());
        raised.rank = MAX_LABEL_RANK;
        assert!(raised.validate().is_ok());
    }

    #[test]
    fn a_policy_written_before_anonymous_posting_reads_as_off() {
        let old = r#"{"guests_allowed": false, "agents_allowed": false, "join_policies": ["invite"], "sender_policy": "members"}"#;
        let p: LabelPolicy = serde_json::from_str(old).unwrap();
        assert!(!p.anonymous_posting);
    }

    #[test]
    fn a_groups_sender_policy_never_widens_its_labels() {
        use SenderPolicy::*;
        assert_eq!(Anyone.narrower(Members), Members);
        assert_eq!(Members.narrower(Anyone), Members);
        assert_eq!(Owners.narrower(Members), Owners);
        assert!(Anyone.wider_than(Owners) && !Owners.wider_than(Owners));
    }

    #[test]
    fn a_policy_needs_a_join_policy_and_no_repeats() {
        let mut p = Label::defaults()[0].policy.clone();
        p.join_policies.clear();
        assert!(p.validate().is_err());
        p.join_policies = vec![JoinPolicy::Open, JoinPolicy::Open];
        assert!(p.validate().is_err());
    }

    #[test]
    fn a_groups_anonymous_alias_is_its_local_part_plus_anon_and_back() {
        let g = Email::parse("witness-support@groups.example").unwrap();
        let alias = anonymous_alias(&g).unwrap();
        assert_eq!(alias.as_str(), "witness-support+anon@groups.example");
        assert_eq!(alias_group(&alias), Some(g.clone()));
        assert_eq!(alias_group(&g), None, "a group's own address is no alias");
        let bare = Email::parse("+anon@groups.example").unwrap();
        assert_eq!(alias_group(&bare), None);
        let long = Email::parse(format!("{}@groups.example", "a".repeat(60))).unwrap();
        assert_eq!(anonymous_alias(&long), None, "64 characters at most");
    }

    #[test]
    fn wire_names_round_trip() {
        for p in JoinPolicy::ALL {
            assert_eq!(JoinPolicy::parse(p.as_str()).unwrap(), p);
        }
        assert!(JoinPolicy::parse("secret").is_err());
        assert!(SenderPolicy::parse("owners").is_ok());
    }

    #[test]
    fn loosening_is_admitting_or_allowing_anything_new() {
        let base = Label::defaults().remove(1).policy;
        assert!(!base.loosens(&base));
        let mut p = base.clone();
        p.guests_allowed = true;
        assert!(p.loosens(&base) && !base.loosens(&p));
        let mut p = base.clone();
        p.agents_allowed = true;
        assert!(p.loosens(&base));
        let mut p = base.clone();
        p.join_policies.push(JoinPolicy::Open);
        assert!(p.loosens(&base));
        let mut p = base.clone();
        p.join_policies.truncate(1);
        assert!(!p.loosens(&base), "dropping a join policy tightens");
        let mut p = base.clone();
        p.sender_policy = SenderPolicy::Anyone;
        let mut q = base.clone();
        q.sender_policy = SenderPolicy::Owners;
        assert_eq!((p.loosens(&q), q.loosens(&p)), (true, false));
        let mut p = base.clone();
        p.anonymous_posting = true;
        assert_eq!((p.loosens(&base), base.loosens(&p)), (true, false));
    }
}
