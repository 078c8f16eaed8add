//! The real [`Directory`] and [`Catalog`]: the tenant's and control-api's HTTP clients, with
//! their errors turned into [`UpstreamError`]s whose text names a status or a transport failure
//! only (never a URL, group id or subject: INV-6).

use crate::error::UpstreamError;
use crate::ports::{AddError, Catalog, Directory};
use async_trait::async_trait;
use control_client::{
    ControlClient, ControlError, GroupPolicyView, RelyingPartyLookup, RelyingPartyView,
};
use domain::{Email, GroupId, IdentityKind, Subject};
use tenant_api::{AddMember, IdentityRef, Notification};
use tenant_client::{TenantClient, TenantError};

const TENANT: &str = "the tenant";
const CONTROL: &str = "control-api";

/// The isolated tenant, through its typed client.
#[derive(Debug, Clone)]
pub struct TenantDirectory(pub TenantClient);

fn tenant_error(e: TenantError) -> UpstreamError {
    match e {
        TenantError::Unavailable(reason) => UpstreamError::Unavailable {
            service: TENANT,
            reason,
        },
        // The tenant's own detail is left out: it is about a request that named a person.
        TenantError::NotFound(_) => failed(TENANT, "no such group (404)"),
        TenantError::Conflict(_) => failed(TENANT, "conflict (409)"),
        // Only an add can be refused by the label, and `add_member` takes that case out first;
        // anywhere else it means the tenant broke its contract.
        TenantError::LabelRefused(_) => failed(TENANT, "label refused (403)"),
        TenantError::Refused { status, .. } => failed(TENANT, format!("refused ({status})")),
        TenantError::Unexpected(reason) => failed(TENANT, reason),
    }
}

fn failed(service: &'static str, reason: impl Into<String>) -> UpstreamError {
    UpstreamError::Failed {
        service,
        reason: reason.into(),
    }
}

#[async_trait]
impl Directory for TenantDirectory {
    fn for_request(&self, id: &service_kit::RequestId) -> Option<std::sync::Arc<dyn Directory>> {
        Some(std::sync::Arc::new(TenantDirectory(self.0.for_request(id))))
    }

    async fn add_member(&self, group: GroupId, req: &AddMember) -> Result<(), AddError> {
        match self.0.add_member(group, req).await {
            Ok(()) => Ok(()),
            // The tenant's detail names the kind and the label (never the person, never the
            // membership), so it may be shown to whoever asked for the add.
            Err(TenantError::LabelRefused(detail)) => Err(AddError::LabelRefused(detail)),
            // The lookup called the group active and the tenant has no distribution group for
            // it: archived since (a kept lookup is up to one poll interval old). Answered as
            // an archived group is.
            Err(TenantError::NotFound(_)) => Err(AddError::GroupGone),
            Err(e) => Err(AddError::Upstream(tenant_error(e))),
        }
    }

    async fn remove_member(&self, group: GroupId, who: &IdentityRef) -> Result<(), UpstreamError> {
        match self.0.remove_member(group, who).await {
            // No distribution group (never provisioned, or archived): nobody is in it, and
            // a removal answers as it always does.
            Ok(()) | Err(TenantError::NotFound(_)) => Ok(()),
            Err(e) => Err(tenant_error(e)),
        }
    }

    async fn offboard(&self, who: &IdentityRef) -> Result<(), UpstreamError> {
        self.0.offboard(who).await.map_err(tenant_error)
    }

    async fn is_member(
        &self,
        group: GroupId,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
    ) -> Result<bool, UpstreamError> {
        match self.0.is_member(group, subject, email, Some(kind)).await {
            Ok(member) => Ok(member),
            // No distribution group: nobody is a member of it.
            Err(TenantError::NotFound(_)) => Ok(false),
            Err(e) => Err(tenant_error(e)),
        }
    }

    async fn groups_of(
        &self,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
    ) -> Result<Vec<GroupId>, UpstreamError> {
        self.0
            .groups_of(subject, email, Some(kind))
            .await
            .map_err(tenant_error)
    }

    async fn member_of(
        &self,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
        groups: &[GroupId],
    ) -> Result<Vec<GroupId>, UpstreamError> {
        self.0
            .groups_among(subject, email, Some(kind), Some(groups))
            .await
            .map_err(tenant_error)
    }

    async fn notify(&self, notification: &Notification) -> Result<(), UpstreamError> {
        self.0.notify(notification).await.map_err(tenant_error)
    }

    async fn ping(&self) -> Result<(), UpstreamError> {
        self.0.ping().await.map_err(tenant_error)
    }
}

/// control-api's catalog, through its typed client.
#[derive(Debug, Clone)]
pub struct ControlCatalog(pub ControlClient);

fn control_error(e: &ControlError) -> UpstreamError {
    if e.is_retryable() {
        UpstreamError::Unavailable {
            service: CONTROL,
            reason: e.to_string(),
        }
    } else {
        failed(CONTROL, e.to_string())
    }
}

#[async_trait]
impl Catalog for ControlCatalog {
    async fn group(&self, id: GroupId) -> Result<Option<GroupPolicyView>, UpstreamError> {
        self.0.group(id).await.map_err(|e| control_error(&e))
    }

    async fn groups(&self, ids: &[GroupId]) -> Result<Vec<GroupPolicyView>, UpstreamError> {
        self.0.groups(ids).await.map_err(|e| control_error(&e))
    }

    async fn relying_party(
        &self,
        lookup: &RelyingPartyLookup,
    ) -> Result<Option<RelyingPartyView>, UpstreamError> {
        self.0
            .relying_party(lookup)
            .await
            .map_err(|e| control_error(&e))
    }
}
