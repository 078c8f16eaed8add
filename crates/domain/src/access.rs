//! Groups as guards of resources: the two group types, which group may guard which resource,
//! and the one rule that decides whether a person may use a resource an app protects.
//!
//! A resource (a report, a site, a cloud subscription) belongs to a relying party — an app an
//! operator registered — and carries a sensitivity label. An owner binds a group to it; the
//! group then *guards* it: its members may use it. Two rules keep a sensitive resource out of
//! loose hands:
//!
//! - [`may_bind`]: a group may guard a resource only when the group's label ranks at least as
//!   high as the resource's, so a Highly Confidential report can never be handed to a General
//!   group that guests may join;
//! - [`Guard::grants`]: at decision time a guard grants a person only when the group is active,
//!   its label still admits the person's kind (an agent is refused wherever the label bars
//!   agents, whatever the binding says) and still ranks at least as high as the resource (a
//!   label lowered after binding fails closed), and the person is a member.

use crate::{DomainError, GroupId, GroupState, IdentityKind, Label, LabelName};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// What a group is for, chosen at creation and never changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupType {
    /// A distribution group: it has a contact address and mail to it reaches its members.
    #[default]
    Mail,
    /// An access group: no address, no mail; apps ask Hush whether a person presenting their
    /// own token is a member.
    Security,
}

impl GroupType {
    /// Both types, in a stable order.
    pub const ALL: [GroupType; 2] = [Self::Mail, Self::Security];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mail => "mail",
            Self::Security => "security",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| DomainError::invalid("type", "must be mail or security"))
    }

    /// Whether groups of this type receive mail.
    pub fn receives_mail(self) -> bool {
        matches!(self, Self::Mail)
    }
}

impl fmt::Display for GroupType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a group may not guard a resource. Speaks of labels only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the group's label '{group_label}' (rank {group_rank}) ranks below the resource's label \
     '{resource_label}' (rank {resource_rank}): a resource may only be given to a group whose \
     label is at least as sensitive"
)]
pub struct BindingRefusal {
    /// The group's label.
    pub group_label: LabelName,
    /// Its rank.
    pub group_rank: u16,
    /// The resource's label.
    pub resource_label: LabelName,
    /// Its rank.
    pub resource_rank: u16,
}

/// May a group under `group` guard a resource under `resource`? Only when the group's label
/// ranks at least as high.
pub fn may_bind(group: &Label, resource: &Label) -> Result<(), BindingRefusal> {
    if group.policy.rank >= resource.policy.rank {
        Ok(())
    } else {
        Err(BindingRefusal {
            group_label: group.name.clone(),
            group_rank: group.policy.rank,
            resource_label: resource.name.clone(),
            resource_rank: resource.policy.rank,
        })
    }
}

/// A group bound to a resource, as the decision sees it: never its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Guard {
    /// The group.
    #[schema(value_type = String)]
    pub group: GroupId,
    /// Where it is in its life: only an active group grants anything.
    pub state: GroupState,
    /// Its label now (not when it was bound).
    pub label: Label,
}

impl Guard {
    /// Everything [`Self::grants`] checks except membership: whether asking about membership
    /// could change the answer. A decision asks the tenant only about guards for which this
    /// holds, so a person's kind alone settles the rest.
    pub fn could_grant(&self, kind: IdentityKind, resource: &Label) -> bool {
        self.state == GroupState::Active
            && crate::may_enter(kind, &self.label.name, &self.label.policy).is_ok()
            && may_bind(&self.label, resource).is_ok()
    }

    /// Whether this guard lets a person of `kind` use a resource labelled `resource`, given
    /// whether they are a member of the group.
    pub fn grants(&self, kind: IdentityKind, is_member: bool, resource: &Label) -> bool {
        is_member && self.could_grant(kind, resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, rank: u16, agents: bool) -> Label {
        let mut l = Label::defaults()[1].clone();
        l.name = LabelName::parse(name).unwrap();
        l.policy.rank = rank;
        l.policy.agents_allowed = agents;
        l
    }

    #[test]
    fn group_types_parse_their_wire_names_and_only_mail_groups_get_mail() {
        for t in GroupType::ALL {
            assert_eq!(GroupType::parse(t.as_str()).unwrap(), t);
        }
        assert!(GroupType::parse("distribution").is_err());
        assert!(GroupType::Mail.receives_mail() && !GroupType::Security.receives_mail());
        assert_eq!(GroupType::default(), GroupType::Mail);
    }

    #[test]
    fn a_resource_is_only_given_to_a_group_ranked_at_least_as_high() {
        let [general, confidential, hc] = [0, 10, 20].map(|r| label(&format!("L{r}"), r, false));
        assert!(may_bind(&hc, &hc).is_ok());
        assert!(may_bind(&hc, &general).is_ok());
        assert!(may_bind(&confidential, &confidential).is_ok());
        let refused = may_bind(&general, &hc).unwrap_err();
        assert_eq!((refused.group_rank, refused.resource_rank), (0, 20));
        assert!(refused.to_string().contains("ranks below"));
        assert!(may_bind(&confidential, &hc).is_err());
    }

    #[test]
    fn a_guard_grants_only_members_of_an_active_group_whose_label_admits_them_and_still_ranks_high_enough(
    ) {
        let resource = label("R", 10, true);
        let guard = |state, rank, agents| Guard {
            group: GroupId::new(),
            state,
            label: label("G", rank, agents),
        };
        let ok = guard(GroupState::Active, 10, false);
        assert!(ok.grants(IdentityKind::Member, true, &resource));
        assert!(
            !ok.grants(IdentityKind::Member, false, &resource),
            "not a member"
        );
        assert!(
            !ok.grants(IdentityKind::Agent, true, &resource),
            "an agent is refused where the group's label bars agents, whatever the binding"
        );
        assert!(!ok.grants(IdentityKind::Guest, true, &resource));
        assert!(guard(GroupState::Active, 10, true).grants(IdentityKind::Agent, true, &resource));
        assert!(
            !guard(GroupState::Active, 5, false).grants(IdentityKind::Member, true, &resource),
            "a label lowered below the resource after binding fails closed"
        );
        for state in [
            GroupState::Provisioning,
            GroupState::Archiving,
            GroupState::Archived,
        ] {
            assert!(!guard(state, 10, false).grants(IdentityKind::Member, true, &resource));
        }
    }
}
