//! membership-api's one error type.
//!
//! Policy: a 4xx says what is wrong with the request in words the caller can act on, and says
//! it about the caller, the group's label or its join policy only — never about who else is in
//! the group (INV-1). A 5xx says only that something failed; its cause rides in the response's
//! extensions to the logging layer ([`log_failures`]), which writes it inside the request's
//! span (so with the request id) and never sends it. Causes are built to name no caller
//! (INV-6): upstream errors carry a status or a transport kind, not a URL.

use axum::response::{IntoResponse, Response};
use domain::{EntryRefusal, JoinPolicy};
use http::StatusCode;
use service_kit::Problem;
use std::sync::Arc;

/// Everything a membership-api handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The group id in the path is not a UUID.
    #[error("invalid group id: must be a UUID")]
    InvalidGroupId,
    /// No group has this id.
    #[error("no group with this id")]
    GroupNotFound,
    /// The group exists but is being provisioned or archived.
    #[error("the group is not accepting members")]
    NotAccepting,
    /// The group's label does not admit the caller's kind of identity.
    #[error(transparent)]
    LabelRefused(EntryRefusal),
    /// The group is joined another way than by asking.
    #[error("{}", join_policy_detail(*.0))]
    JoinPolicy(JoinPolicy),
    /// The caller's token carries no e-mail address, and a member needs one to receive mail.
    #[error("your token carries no e-mail address; the group's mail needs one to reach you")]
    NoEmail,
    /// The tenant or control-api did not answer as it should.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

fn join_policy_detail(p: JoinPolicy) -> &'static str {
    match p {
        JoinPolicy::Open => "the group is open to join",
        JoinPolicy::Approval => "joining this group needs an owner's approval",
        JoinPolicy::Invite => "this group is joined by invite only; ask an owner for an invite",
    }
}

/// A dependency failed. The reason names a status or a transport failure, never a URL, a group
/// id or a caller, so it can be logged as it is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// It could not be reached, timed out, or said it is unavailable: the client may retry.
    #[error("{service} is not answering: {reason}")]
    Unavailable {
        /// Which dependency.
        service: &'static str,
        /// What happened, e.g. "connection refused" or "status 503".
        reason: String,
    },
    /// It answered, but not as its contract says.
    #[error("{service} answered unexpectedly: {reason}")]
    Failed {
        /// Which dependency.
        service: &'static str,
        /// What happened, e.g. "status 500".
        reason: String,
    },
}

/// The cause of a 5xx, for [`log_failures`] only.
#[derive(Debug, Clone)]
struct FailureCause(Arc<str>);

impl ApiError {
    fn problem(&self) -> Problem {
        match self {
            Self::InvalidGroupId => Problem::invalid(self.to_string()),
            Self::GroupNotFound => Problem::not_found(self.to_string()),
            Self::NotAccepting => Problem::new(
                StatusCode::CONFLICT,
                "group-not-active",
                "Group not accepting members",
            )
            .with_detail(self.to_string()),
            Self::LabelRefused(refusal) => Problem::new(
                StatusCode::FORBIDDEN,
                "label-refused",
                "Refused by the group's label",
            )
            .with_detail(refusal.to_string()),
            Self::JoinPolicy(_) => Problem::new(
                StatusCode::CONFLICT,
                "join-policy",
                "The group's join policy does not allow this",
            )
            .with_detail(self.to_string()),
            Self::NoEmail => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "email-required",
                "E-mail address required",
            )
            .with_detail(self.to_string()),
            Self::Upstream(UpstreamError::Unavailable { service, .. }) => {
                Problem::unavailable(format!("{service} is not answering; retry later"))
            }
            Self::Upstream(UpstreamError::Failed { .. }) => Problem::internal(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.problem().into_response();
        if res.status().is_server_error() {
            res.extensions_mut()
                .insert(FailureCause(self.to_string().into()));
        }
        res
    }
}

/// Logs the cause of every 5xx a handler answered, inside the request's span.
pub async fn log_failures(res: Response) -> Response {
    if let Some(FailureCause(cause)) = res.extensions().get::<FailureCause>() {
        tracing::error!(status = res.status().as_u16(), %cause, "request failed");
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::LabelName;

    fn body(e: &ApiError) -> Problem {
        e.problem()
    }

    #[test]
    fn label_refusals_are_403_with_their_own_type_and_the_refusal_text() {
        let p = body(&ApiError::LabelRefused(EntryRefusal::GuestsNotAllowed(
            LabelName::parse("Confidential").unwrap(),
        )));
        assert_eq!(p.status, 403);
        assert_eq!(p.type_, "urn:hush:problem:label-refused");
        assert_eq!(
            p.detail.as_deref(),
            Some("the label 'Confidential' does not allow guests")
        );
    }

    #[test]
    fn join_policy_refusals_say_what_the_group_needs() {
        let p = body(&ApiError::JoinPolicy(JoinPolicy::Approval));
        assert_eq!(
            (p.status, p.type_.as_str()),
            (409, "urn:hush:problem:join-policy")
        );
        assert!(p.detail.unwrap().contains("approval"));
        let p = body(&ApiError::JoinPolicy(JoinPolicy::Invite));
        assert!(p.detail.unwrap().contains("invite"));
    }

    #[test]
    fn upstream_failures_hide_their_cause() {
        let down = body(&ApiError::Upstream(UpstreamError::Unavailable {
            service: "the tenant",
            reason: "connection refused".into(),
        }));
        assert_eq!(down.status, 503);
        assert!(!down.detail.unwrap().contains("refused"));
        let broken = body(&ApiError::Upstream(UpstreamError::Failed {
            service: "the tenant",
            reason: "status 500".into(),
        }));
        assert_eq!(broken.status, 500);
        assert!(!broken.detail.unwrap().contains("500"));
    }
}
