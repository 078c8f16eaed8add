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

/// A request as its parties see it. Never names the person asked about.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    /// The request's id.
    pub id: Uuid,
    /// The group.
    pub group_id: GroupId,
    /// What is asked.
    pub scope: Scope,
    /// `pending` (waiting for approvals), `approved` (grant open) or `redeemed`.
    pub state: String,
    /// Approvals so far (two are needed).
    pub approvals: u8,
    /// Until when the request may be approved (`pending`) or the grant redeemed (`approved`),
    /// RFC 3339.
    pub expires_at: String,
    /// The justification, for the officers to judge.
    pub justification: String,
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
