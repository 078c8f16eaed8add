//! Break-glass (INV-8): the types of the tenant's break-glass routes, which only control-api
//! may call, forwarding the acting user's own token in [`USER_TOKEN_HEADER`] so the tenant
//! checks the user and their role itself.
//!
//! None of these types but [`Scope`] implements `Debug`: they carry subjects, addresses and member lists,
//! which must not reach a log line (INV-6).

use domain::{Email, GroupId, Subject};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The header that carries the acting user's own token (the IdP's JWT) to the tenant.
pub const USER_TOKEN_HEADER: &str = "x-hush-user-token";
/// The role that files and redeems break-glass requests.
pub const AUDITOR: &str = "auditor";
/// The role that approves them (two distinct officers per request).
pub const PRIVACY_OFFICER: &str = "privacy-officer";
/// Longest justification accepted, in characters.
pub const MAX_JUSTIFICATION: usize = 2000;
/// Shortest justification accepted, in characters.
pub const MIN_JUSTIFICATION: usize = 10;
/// Longest age recipient accepted, in characters.
pub const MAX_RECIPIENT: usize = 200;
/// Longest reason an officer may give for declining, in characters.
pub const MAX_DECLINE_REASON: usize = 500;
/// Most requests one list answers (the newest first for `mine`, the soonest to expire first
/// for `waiting`).
pub const MAX_LISTED: usize = 200;

/// The tenant's break-glass paths.
pub mod paths {
    /// File a request.
    pub const REQUESTS: &str = "/tenant/v1/break-glass/requests";
    /// Approve request `{id}`.
    pub fn approve(id: uuid::Uuid) -> String {
        format!("{REQUESTS}/{id}/approve")
    }
    /// Redeem the grant of request `{id}`.
    pub fn redeem(id: uuid::Uuid) -> String {
        format!("{REQUESTS}/{id}/redeem")
    }
    /// Decline request `{id}`.
    pub fn decline(id: uuid::Uuid) -> String {
        format!("{REQUESTS}/{id}/decline")
    }
    /// List the requests of `view`.
    pub fn list(view: super::ListView) -> String {
        format!("{REQUESTS}?view={}", view.as_str())
    }
}

/// Which requests a list answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ListView {
    /// For a `privacy-officer`: every request still waiting for approvals (not expired), the
    /// soonest to expire first.
    Waiting,
    /// For an `auditor`: the requests they filed in the last 90 days, newest first.
    Mine,
}

impl ListView {
    /// As written in the query string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Mine => "mine",
        }
    }
}

/// The query of a list.
#[derive(Clone, Copy, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `waiting` (privacy officers) or `mine` (auditors).
    #[param(inline)]
    pub view: ListView,
}

/// A list of requests.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestList {
    /// At most 200.
    pub requests: Vec<RequestView>,
}

/// An officer's decline. One officer's no ends the request (two are needed only to grant).
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decline {
    /// Why, for the auditor who filed it: up to 500 characters. Sealed at rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// A person a request names: who filed it, or whom a member check asks about.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct NamedPerson {
    /// The IdP's subject, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Whether one person (by `subject` or `email`) is a member: yes or no.
    MemberCheck,
    /// The group's whole member list.
    FullList,
}

impl Scope {
    /// As written in the API and the audit chain.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MemberCheck => "member-check",
            Self::FullList => "full-list",
        }
    }
}

/// An auditor's request for access to one group's membership.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    /// The group.
    pub group_id: GroupId,
    /// What is asked.
    pub scope: Scope,
    /// For `member-check`: the person's subject (or give `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// For `member-check`: the person's address (or give `subject`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// Why (the case, the legal basis): 10 to 2000 characters. Sealed at rest; officers see it
    /// when approving. (The pattern: 10 characters or more once surrounding white space is
    /// trimmed.)
    #[schema(
        min_length = 10,
        max_length = 2000,
        pattern = r"^\s*\S[\s\S]{8,}\S\s*$"
    )]
    pub justification: String,
    /// An age X25519 recipient (`age1…`): when given, the answer is encrypted to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub recipient: Option<String>,
}

/// A request as its parties see it: the auditor who filed it and the privacy officers who judge
/// it (nobody else is ever shown one). Names the person asked about only for a member check,
/// which is about that one person.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    /// The request's id.
    pub id: Uuid,
    /// The group.
    pub group_id: GroupId,
    /// What is asked.
    pub scope: Scope,
    /// `pending` (waiting for approvals), `approved` (grant open), `redeemed`, `declined` (an
    /// officer said no) or `expired` (a pending request or an open grant whose time ran out).
    pub state: String,
    /// Approvals so far (two are needed).
    pub approvals: u8,
    /// Until when the request may be approved (`pending`) or the grant redeemed (`approved`),
    /// RFC 3339.
    pub expires_at: String,
    /// The justification, for the officers to judge.
    pub justification: String,
    /// When it was filed, RFC 3339.
    #[serde(default)]
    pub filed_at: String,
    /// Who filed it (absent for requests filed before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<NamedPerson>,
    /// For `member-check`: the person asked about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<NamedPerson>,
    /// The acting officer approved it already (so must leave the second approval to another).
    #[serde(default)]
    pub approved_by_you: bool,
    /// The answer will be encrypted to an age recipient the auditor gave.
    #[serde(default)]
    pub encrypted: bool,
    /// For `declined`: the officer's reason, when they gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_reason: Option<String>,
}

/// One member, as the full-list answer names them.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct ListedMember {
    /// The IdP's subject, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The address, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The identity is disabled (suspended, not offboarded): still a member, but it receives
    /// none of the group's mail.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// The answer of a redeemed grant, returned once. With a recipient only `encrypted` is set: an
/// ASCII-armored age file holding the same answer as JSON.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct Answer {
    /// The request.
    pub id: Uuid,
    /// What was asked.
    pub scope: Scope,
    /// For `member-check`: whether the person is a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<bool>,
    /// For `full-list`: every member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<ListedMember>>,
    /// The answer encrypted to the request's recipient (ASCII-armored age).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<String>,
}
