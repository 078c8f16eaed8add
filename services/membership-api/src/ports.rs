//! The two services membership-api leans on, behind traits so handler tests can stand in for
//! them, while the running service (and the end-to-end tests) use the real HTTP clients.
//!
//! - [`Directory`]: the isolated tenant, the membership truth. Every question asked of it is
//!   about the caller alone (INV-2).
//! - [`Catalog`]: control-api, which knows a group's label, join policy and state.

use crate::error::UpstreamError;
use async_trait::async_trait;
use control_api::client::GroupPolicyView;
use domain::{GroupId, Subject};
use tenant_client::MemberRef;

/// What membership-api asks of the isolated tenant.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Makes `member` a member of `group`; already being one is not an error.
    async fn add_member(&self, group: GroupId, member: MemberRef) -> Result<(), UpstreamError>;
    /// Makes sure `subject` is not a member of `group`; not being one is not an error.
    async fn remove_member(&self, group: GroupId, subject: &Subject) -> Result<(), UpstreamError>;
    /// Whether `subject` is a member of `group`.
    async fn is_member(&self, group: GroupId, subject: &Subject) -> Result<bool, UpstreamError>;
    /// The groups `subject` is a member of.
    async fn groups_of(&self, subject: &Subject) -> Result<Vec<GroupId>, UpstreamError>;
    /// Answers when the tenant does (readiness).
    async fn ping(&self) -> Result<(), UpstreamError>;
}

/// What membership-api asks of control-api.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// The group's label, join policy and state; `None` when no group has this id.
    async fn group(&self, id: GroupId) -> Result<Option<GroupPolicyView>, UpstreamError>;
    /// The groups among `ids` that exist, in any order.
    async fn groups(&self, ids: &[GroupId]) -> Result<Vec<GroupPolicyView>, UpstreamError>;
}
