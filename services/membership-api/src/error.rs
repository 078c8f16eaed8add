//! membership-api's one error type.
//!
//! Policy: a 4xx says what is wrong with the request in words the caller can act on, and says
//! it about the caller, the named identity's kind, the group's label or its join policy only —
//! never about who else is in the group, nor whether the person an owner names is a member
//! (INV-1, INV-3). Two refusals are deliberately coarse: every bad invite code gets the same
//! 404 (unknown, expired, revoked, used up), and every owner-only route answers a non-owner the
//! same 403 whether or not the group exists. A 5xx says only that something failed; its cause
//! rides in the response's extensions to the logging layer
//! ([`log_failures`](service_kit::failure::log_failures)), which writes it inside the request's
//! span (so with the request id) and never sends it. Causes are built to name no caller
//! (INV-6): upstream errors carry a status or a transport kind, database errors their SQLSTATE,
//! never a value.

use crate::limits::Limited;
use crate::ports::AddError;
use axum::response::{IntoResponse, Response};
use domain::{EntryRefusal, JoinPolicy};
use http::{header, HeaderValue, StatusCode};
use service_kit::Problem;

/// The detail of every bad-code answer: one text for all reasons, so a guesser learns nothing.
pub const BAD_INVITE_DETAIL: &str =
    "this invite code is not valid: it may be mistyped, expired, revoked or used up";

/// The detail of every owner-only refusal, the same for a group that does not exist.
pub const NOT_OWNER_DETAIL: &str = "only the group's owners may do this";

/// Everything a membership-api handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The group id in the path is not a UUID.
    #[error("invalid group id: must be a UUID")]
    InvalidGroupId,
    /// Another id in the path (request, invite) is not a UUID.
    #[error("invalid {0}: must be a UUID")]
    InvalidId(&'static str),
    /// A value in the request is not acceptable; the text says which and why.
    #[error("{0}")]
    Invalid(String),
    /// No group has this id.
    #[error("no group with this id")]
    GroupNotFound,
    /// The group exists but is being provisioned or archived.
    #[error("the group is not accepting members")]
    NotAccepting,
    /// The group's label does not admit the identity's kind (our own check, made before any
    /// write).
    #[error(transparent)]
    LabelRefused(EntryRefusal),
    /// The tenant's own label check refused the identity (an owner's add, whose kind only the
    /// tenant knows). The text names the kind and the label.
    #[error("this identity cannot be added to the group: {0}")]
    TenantLabelRefused(String),
    /// The group is joined another way.
    #[error("{}", join_policy_detail(*.0))]
    JoinPolicy(JoinPolicy),
    /// Invites are for groups joined by invite.
    #[error("invites are only for groups whose join policy is invite")]
    NotAnInviteGroup,
    /// The caller's token carries no e-mail address, and a member needs one to receive mail.
    #[error("your token carries no e-mail address; the group's mail needs one to reach you")]
    NoEmail,
    /// The caller is not an owner of the group (or there is no such group: same answer).
    #[error("{NOT_OWNER_DETAIL}")]
    NotOwner,
    /// No pending request with this id in this group (or of this caller).
    #[error("no pending request with this id")]
    RequestNotFound,
    /// The caller has no request with this id.
    #[error("you have no request with this id")]
    MyRequestNotFound,
    /// The group has no invite with this id.
    #[error("no invite with this id in this group")]
    InviteNotFound,
    /// An invite code that cannot be redeemed, for whatever reason.
    #[error("{BAD_INVITE_DETAIL}")]
    BadInviteCode,
    /// The caller is over a rate limit.
    #[error("too many {}; retry in {} s", .0.action.describe(), .0.retry_after_secs)]
    RateLimited(Limited),
    /// A budget that fails closed (invite redemptions) could not be read: the database that
    /// keeps it is not answering.
    #[error("rate limits cannot be checked right now; retry later")]
    LimitsUnavailable,
    /// An app asking for a decision is unknown, presented the wrong credential, or is
    /// disabled: one answer for the three, so a guesser learns nothing.
    #[error("the app's credential is not valid")]
    InvalidClient,
    /// The person's token an app presented is not valid here (expired, another audience,
    /// voided by an offboarding …); the text says why in general terms, never its content.
    #[error("the person's token is not valid here: {0}")]
    InvalidGrant(String),
    /// No enabled app has the audience an assertion was asked for.
    #[error("no app with this audience takes Hush decisions")]
    UnknownApp,
    /// A body larger than the route takes.
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// A decision could not be signed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// Token checking could not run (the IdP's keys could not be fetched).
    #[error(transparent)]
    Auth(auth::AuthError),
    /// The database failed. The text is the SQLSTATE or the kind of failure only.
    #[error("database failure: {}", describe_db_error(.0))]
    Store(#[from] sqlx::Error),
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

/// What a database error may say in a log line: sqlx's messages can quote a row's values (a
/// unique violation names the key), so only the SQLSTATE or the kind of failure.
pub(crate) fn describe_db_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => format!(
            "database error (SQLSTATE {})",
            d.code().as_deref().unwrap_or("unknown")
        ),
        sqlx::Error::PoolTimedOut => "no database connection free in time".into(),
        sqlx::Error::PoolClosed => "the connection pool is closed".into(),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => "cannot reach the database".into(),
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
            "a stored value does not parse".into()
        }
        _ => "unexpected database failure".into(),
    }
}

impl From<AddError> for ApiError {
    fn from(e: AddError) -> Self {
        match e {
            AddError::LabelRefused(detail) => Self::TenantLabelRefused(detail),
            AddError::GroupGone => Self::NotAccepting,
            AddError::Upstream(u) => Self::Upstream(u),
        }
    }
}

impl From<Limited> for ApiError {
    fn from(l: Limited) -> Self {
        Self::RateLimited(l)
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

fn label_refused() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "label-refused",
        "Refused by the group's label",
    )
}

fn not_found(slug: &str, title: &str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, slug, title)
}

impl ApiError {
    fn problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            Self::InvalidGroupId | Self::InvalidId(_) | Self::Invalid(_) => {
                Problem::invalid(detail)
            }
            Self::GroupNotFound => Problem::not_found(detail),
            Self::NotAccepting => Problem::new(
                StatusCode::CONFLICT,
                "group-not-active",
                "Group not accepting members",
            )
            .with_detail(detail),
            Self::LabelRefused(_) | Self::TenantLabelRefused(_) => {
                label_refused().with_detail(detail)
            }
            Self::JoinPolicy(_) | Self::NotAnInviteGroup => Problem::new(
                StatusCode::CONFLICT,
                "join-policy",
                "The group's join policy does not allow this",
            )
            .with_detail(detail),
            Self::NoEmail => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "email-required",
                "E-mail address required",
            )
            .with_detail(detail),
            Self::NotOwner => Problem::not_owner(detail),
            Self::RequestNotFound | Self::MyRequestNotFound => {
                not_found("request-not-found", "No such request").with_detail(detail)
            }
            Self::InviteNotFound => {
                not_found("invite-not-found", "No such invite").with_detail(detail)
            }
            Self::BadInviteCode => {
                not_found("invalid-invite", "Invite not valid").with_detail(detail)
            }
            Self::RateLimited(_) => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            )
            .with_detail(detail),
            Self::InvalidClient => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid-client",
                "App not authenticated",
            )
            .with_detail(detail),
            Self::InvalidGrant(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-grant",
                "The person's token is not valid",
            )
            .with_detail(detail),
            Self::UnknownApp => not_found("unknown-app", "No such app").with_detail(detail),
            Self::TooLarge(_) => {
                Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE).with_detail(detail)
            }
            Self::Auth(e) => e.to_problem(),
            Self::Signing(_) => Problem::internal(),
            Self::Upstream(UpstreamError::Unavailable { service, .. }) => {
                Problem::unavailable(format!("{service} is not answering; retry later"))
            }
            Self::LimitsUnavailable => Problem::unavailable(detail),
            Self::Store(sqlx::Error::PoolTimedOut) => {
                Problem::unavailable("the database is busy; retry later")
            }
            Self::Upstream(UpstreamError::Failed { .. }) | Self::Store(_) => Problem::internal(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.problem().into_response();
        if let Self::RateLimited(l) = &self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(l.retry_after_secs));
        }
        if let Self::InvalidClient = &self {
            // RFC 6749 §5.2: a client refused at the token endpoint is told the scheme.
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"hush-decisions\""),
            );
        }
        service_kit::failure::with_cause(res, &self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Action;
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
        let p = body(&ApiError::TenantLabelRefused(
            "the label 'Confidential' does not allow guests".into(),
        ));
        assert_eq!(p.type_, "urn:hush:problem:label-refused");
        assert_eq!(
            p.detail.as_deref(),
            Some(
                "this identity cannot be added to the group: \
                 the label 'Confidential' does not allow guests"
            )
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

    #[test]
    fn rate_limits_are_429_with_retry_after() {
        let res = ApiError::RateLimited(Limited {
            action: Action::Redeem,
            retry_after_secs: 7,
        })
        .into_response();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn database_failures_are_logged_without_values() {
        let e = ApiError::Store(sqlx::Error::Decode("alice@corp.example".into()));
        assert!(!e.to_string().contains("alice"), "{e}");
        assert_eq!(body(&e).status, 500);
    }
}
