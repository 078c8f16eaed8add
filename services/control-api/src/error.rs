//! control-api's one error type.
//!
//! Policy: a 4xx says what is wrong with the request in words the caller can act on. A group the
//! caller may not see is answered exactly as a group that does not exist (404, same body), so
//! no answer confirms a hidden group's existence. A 5xx says only that something failed; its
//! cause rides in the response's extensions to the logging layer
//! ([`log_failures`](service_kit::failure::log_failures)), which writes it inside the request's
//! span (so with the request id) and never sends it.

use crate::store::StoreError;
use axum::response::{IntoResponse, Response};
use domain::{GroupState, JoinPolicy, Label, SenderPolicy};
use http::StatusCode;
use service_kit::Problem;

/// Everything a control-api handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A value in the path, query or body is not acceptable; the text says which and why.
    #[error("{0}")]
    Invalid(String),
    /// No group has this id, or the caller may not see it (the two are answered alike).
    #[error("no group with this id")]
    GroupNotFound,
    /// No label has this name.
    #[error("no label named '{0}'")]
    LabelNotFound(String),
    /// The label named for a new group does not exist.
    #[error("no label named '{0}'; list the labels at /control/v1/labels")]
    UnknownLabel(String),
    /// The label does not allow the join policy asked for.
    #[error("{}", join_policy_refused(.policy, .label))]
    JoinPolicyRefused {
        /// What was asked for.
        policy: JoinPolicy,
        /// The label that refuses it.
        label: Box<Label>,
    },
    /// The sender policy asked for lets more people mail the group than its label does.
    #[error(
        "the label '{}' lets only {} mail its groups; a group may narrow that but not widen it \
         to '{}'",
        .label.name,
        senders_in_words(.label.policy.sender_policy),
        .policy.as_str()
    )]
    SenderPolicyRefused {
        /// What was asked for.
        policy: SenderPolicy,
        /// The label that refuses it.
        label: Box<Label>,
    },
    /// Only employees create groups.
    #[error("only employees may create groups; {0} identities may not")]
    CreatorKind(&'static str),
    /// The caller lacks the role an operation needs.
    #[error("this needs the role '{0}'")]
    MissingRole(&'static str),
    /// The caller may see the group but is not one of its owners.
    #[error("only the group's owners may do this")]
    NotOwner,
    /// The calling service may not use this endpoint.
    #[error("{0} may not call this endpoint")]
    ServiceNotAllowed(String),
    /// A state conflict the caller can resolve: a taken address or name, a label in use, an
    /// archived group.
    #[error("{0}")]
    Conflict(String),
    /// The group is being archived or is archived.
    #[error("the group is {}; it takes no more changes", .0.as_str())]
    NotEditable(GroupState),
    /// The caller holds no invitation to own this group.
    #[error("you hold no invitation to own this group")]
    NotInvited,
    /// The group's label does not admit the caller's kind, so they cannot own it.
    #[error("{0}, so you cannot own a group under it")]
    OwnerRefused(domain::EntryRefusal),
    /// No pending label change has this id.
    #[error("no label change with this id is waiting for approval")]
    ChangeNotFound,
    /// No pending move of a group to another label has this id.
    #[error("no move of a group to another label with this id is waiting for approval")]
    RelabelNotFound,
    /// The label-admin who proposed a change tried to approve it.
    #[error("a second label-admin must approve this change: you proposed it")]
    SameAdmin,
    /// The label changed in the catalog, but the tenant has not yet applied its entry rule.
    #[error(
        "the label is saved, but the tenant has not applied its rule yet, so memberships it \
         bars may remain: send the same change again"
    )]
    RuleNotApplied,
    /// The tenant did not answer a call that must reach it; nothing was done.
    #[error("the tenant did not answer; nothing was done; retry")]
    TenantUnavailable,
    /// No relying party has this id.
    #[error("no app with this id")]
    AppNotFound,
    /// No resource has this id (under this app, when one is named).
    #[error("no resource with this id")]
    ResourceNotFound,
    /// The group does not guard this resource.
    #[error("the group does not guard this resource")]
    BindingNotFound,
    /// A group may guard a resource only when its label ranks at least as high.
    #[error("{0}")]
    BindingRefused(domain::BindingRefusal),
    /// A group is not moved to a label ranked below a resource it guards.
    #[error(
        "the group guards a resource labelled '{}' (rank {}), and the label '{}' ranks below \
         it (rank {}): unbind the group from such resources first",
        .0.resource_label,
        .0.resource_rank,
        .0.group_label,
        .0.group_rank
    )]
    GuardsResource(domain::BindingRefusal),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn senders_in_words(policy: SenderPolicy) -> &'static str {
    match policy {
        SenderPolicy::Anyone => "anyone in the company (anyone)",
        SenderPolicy::Members => "members (members)",
        SenderPolicy::Owners => "owners (owners)",
    }
}

fn join_policy_refused(policy: &JoinPolicy, label: &Label) -> String {
    let allowed: Vec<&str> = label
        .policy
        .join_policies
        .iter()
        .map(|p| p.as_str())
        .collect();
    format!(
        "the label '{}' does not allow the join policy '{}'; it allows: {}",
        label.name,
        policy.as_str(),
        allowed.join(", ")
    )
}

impl ApiError {
    /// The problem+json body this error is answered with.
    pub fn problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            Self::Invalid(_) | Self::UnknownLabel(_) => Problem::invalid(detail),
            Self::JoinPolicyRefused { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "join-policy",
                "Join policy not allowed by the label",
            )
            .with_detail(detail),
            Self::SenderPolicyRefused { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sender-policy",
                "Sender policy wider than the label allows",
            )
            .with_detail(detail),
            Self::BindingRefused(_) | Self::GuardsResource(_) => Problem::new(
                StatusCode::CONFLICT,
                "binding-refused",
                "The group's label ranks below the resource's",
            )
            .with_detail(detail),
            Self::GroupNotFound
            | Self::AppNotFound
            | Self::ResourceNotFound
            | Self::BindingNotFound
            | Self::LabelNotFound(_)
            | Self::ChangeNotFound
            | Self::RelabelNotFound
            | Self::NotInvited => Problem::not_found(detail),
            Self::CreatorKind(_)
            | Self::MissingRole(_)
            | Self::ServiceNotAllowed(_)
            | Self::SameAdmin => Problem::forbidden(detail),
            Self::NotOwner => Problem::not_owner(detail),
            Self::OwnerRefused(_) => Problem::new(
                StatusCode::FORBIDDEN,
                "label-refused",
                "The group's label does not admit you",
            )
            .with_detail(detail),
            Self::Conflict(_) | Self::NotEditable(_) => Problem::conflict(detail),
            Self::TenantUnavailable | Self::RuleNotApplied => Problem::unavailable(detail),
            Self::Store(_) => Problem::internal(),
        }
    }
}

impl From<domain::DomainError> for ApiError {
    fn from(e: domain::DomainError) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        service_kit::failure::with_cause(self.problem().into_response(), &self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_join_policy_names_the_allowed_ones() {
        let label = Label::defaults().remove(2);
        let p = ApiError::JoinPolicyRefused {
            policy: JoinPolicy::Open,
            label: Box::new(label),
        }
        .problem();
        assert_eq!(
            (p.status, p.type_.as_str()),
            (422, "urn:hush:problem:join-policy")
        );
        assert_eq!(
            p.detail.as_deref(),
            Some("the label 'Highly Confidential' does not allow the join policy 'open'; it allows: invite")
        );
    }

    #[test]
    fn hidden_and_missing_groups_read_alike_and_store_failures_hide_their_cause() {
        assert_eq!(ApiError::GroupNotFound.problem().status, 404);
        let p = ApiError::Store(StoreError::Corrupt("secret detail".into())).problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.unwrap().contains("secret"));
    }
}
