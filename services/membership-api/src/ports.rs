//! What membership-api leans on, behind traits so handler tests can stand in for it, while the
//! running service (and the end-to-end tests) use the real thing.
//!
//! - [`Directory`]: the isolated tenant, the membership truth. Every question asked of it is
//!   about one person (the caller, or the person an owner names), never "who is in G" (INV-1).
//! - [`Catalog`]: control-api, which knows a group's label, join policy, state and owners.
//! - [`Clock`]: the time, so tests can make invites expire and rate limits refill.

use crate::error::UpstreamError;
use async_trait::async_trait;
use control_client::{GroupPolicyView, RelyingPartyLookup, RelyingPartyView};
use domain::{Email, GroupId, IdentityKind, Subject};
use tenant_api::{AddMember, IdentityRef, Notification};

/// Why the tenant did not add a member.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AddError {
    /// The group's label does not admit the person's kind (the tenant's own check, which runs
    /// before it writes anything). The text names the kind and the label only.
    #[error("the label refuses this identity: {0}")]
    LabelRefused(String),
    /// The tenant has no distribution group with this id: the group was archived after the
    /// lookup that called it active (a kept lookup, see `catalog_cache`).
    #[error("the group no longer takes members")]
    GroupGone,
    /// The tenant failed or could not be reached.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// What membership-api asks of the isolated tenant.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Makes `req.member` a member of `group` once the tenant has checked `req.label` admits
    /// them; already being one is not an error, and answers the same (INV-3).
    async fn add_member(&self, group: GroupId, req: &AddMember) -> Result<(), AddError>;
    /// Makes sure `who` is not a member of `group`; not being one (or the group not existing
    /// in the tenant) is not an error, and answers the same (INV-3).
    async fn remove_member(&self, group: GroupId, who: &IdentityRef) -> Result<(), UpstreamError>;
    /// Whether the caller signed in as `subject`, with the address `email` from their token,
    /// is a member of `group` (an identity the tenant made from their address before they
    /// signed in counts as theirs).
    async fn is_member(
        &self,
        group: GroupId,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
    ) -> Result<bool, UpstreamError>;
    /// The groups the caller signed in as `subject`, with the address `email`, is a member of.
    async fn groups_of(
        &self,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
    ) -> Result<Vec<GroupId>, UpstreamError>;
    /// Which of `groups` the caller signed in as `subject`, with the address `email`, is a
    /// member of (at most [`tenant_api::MAX_AMONG`] groups): an access decision asks about the
    /// groups guarding an app's resources only.
    async fn member_of(
        &self,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
        groups: &[GroupId],
    ) -> Result<Vec<GroupId>, UpstreamError>;
    /// Forgets a person at their own request: every membership of theirs, in every group, and
    /// their identity, as an operator's offboarding does. Answers the same whether or not the
    /// tenant knew them.
    async fn offboard(&self, who: &IdentityRef) -> Result<(), UpstreamError>;
    /// Hands the tenant a notification from its closed set of templates (the tenant writes
    /// the words and, for owners, finds the recipients).
    async fn notify(&self, notification: &Notification) -> Result<(), UpstreamError>;
    /// Answers when the tenant does (readiness).
    async fn ping(&self) -> Result<(), UpstreamError>;
    /// The same tenant for the request `id`: its calls send the id, which the tenant records
    /// in its audit events. `None` when there is nothing to forward it to (stand-ins); the
    /// caller keeps using `self`.
    fn for_request(&self, _id: &service_kit::RequestId) -> Option<std::sync::Arc<dyn Directory>> {
        None
    }
}

/// What membership-api asks of control-api.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// The group's label, join policy, state and owners; `None` when no group has this id.
    async fn group(&self, id: GroupId) -> Result<Option<GroupPolicyView>, UpstreamError>;
    /// The groups among `ids` that exist, in any order.
    async fn groups(&self, ids: &[GroupId]) -> Result<Vec<GroupPolicyView>, UpstreamError>;
    /// An app registered to ask for access decisions, with its resources and the groups that
    /// guard them (never a member); `None` when none matches.
    async fn relying_party(
        &self,
        lookup: &RelyingPartyLookup,
    ) -> Result<Option<RelyingPartyView>, UpstreamError>;
}

/// The time, in milliseconds since the Unix epoch (the unit the store keeps).
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        service_kit::db::now_ms()
    }
}
