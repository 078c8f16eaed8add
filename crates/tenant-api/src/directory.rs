//! Directory sync: the users the company's IdP provisions over SCIM 2.0, which control-api
//! receives and the tenant keeps (sealed), each with an identity whose kind is the directory's.
//! Only control-api may call these routes; it keeps no copy.

use domain::{Email, IdentityKind, Subject};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;
use uuid::Uuid;

/// The paths of the directory routes.
pub mod paths {
    /// `POST` creates a user ([`super::DirectoryWrite`]).
    pub const USERS: &str = "/tenant/v1/directory/users";
    /// `GET` reads, `PUT` replaces, `DELETE` removes one user.
    pub const USER: &str = "/tenant/v1/directory/users/{user_id}";
    /// `POST` finds users by userName or externalId, or pages through all ([`super::DirectoryFind`]).
    pub const FIND: &str = "/tenant/v1/directory/users/find";

    /// [`USER`] for `id`.
    pub fn user(id: uuid::Uuid) -> String {
        USER.replace("{user_id}", &id.to_string())
    }
}

/// A provisioned user as control-api writes it: what the IdP sent, and what Hush reads from it.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryWrite {
    /// The SCIM `userName`, unique ignoring case.
    #[schema(max_length = 256)]
    pub user_name: String,
    /// The SCIM `externalId`, unique when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub external_id: Option<String>,
    /// Whether the user is active; an inactive user is offboarded (in no group, every token
    /// issued before refused) and keeps only this record.
    pub active: bool,
    /// The IdP subject the person's tokens carry (from the configured attribute).
    #[schema(value_type = String)]
    pub subject: Subject,
    /// Where their groups' mail goes (the primary e-mail address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Email)]
    pub email: Option<Email>,
    /// Member, guest or agent, from the configured attribute mapping.
    pub kind: IdentityKind,
    /// The SCIM resource's attributes as the IdP set them (no `id`, no `meta`).
    #[schema(value_type = Object)]
    pub resource: serde_json::Value,
}

/// INV-6: never shows who.
impl fmt::Debug for DirectoryWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectoryWrite")
            .field("kind", &self.kind)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// A provisioned user as the tenant keeps it.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DirectoryUser {
    /// The SCIM `id`, chosen by the tenant.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// What control-api wrote.
    pub user: DirectoryWrite,
    /// When it was created, in milliseconds since the epoch.
    pub created_ms: i64,
    /// When it last changed.
    pub modified_ms: i64,
    /// How many times it was written (a SCIM version).
    pub version: u64,
}

/// INV-6: never shows who.
impl fmt::Debug for DirectoryUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectoryUser")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Finds users by `userName` (ignoring case) or `externalId`; with neither, pages through
/// every user (by id).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFind {
    /// Exactly this userName, ignoring case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Exactly this externalId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The 1-based index of the first user to answer.
    #[serde(default = "one")]
    pub start_index: u64,
    /// At most this many users (at most [`MAX_PAGE`]).
    #[serde(default = "page")]
    pub count: u64,
}

/// INV-6: never shows who is looked for.
impl fmt::Debug for DirectoryFind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectoryFind")
            .field("start_index", &self.start_index)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// The most users one page holds.
pub const MAX_PAGE: u64 = 200;

fn one() -> u64 {
    1
}

fn page() -> u64 {
    100
}

/// A page of users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DirectoryPage {
    /// How many users match in all.
    pub total: u64,
    /// The users of this page.
    pub users: Vec<DirectoryUser>,
}
