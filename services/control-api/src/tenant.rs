//! What control-api asks of the isolated tenant, behind a trait so handler and saga tests can
//! stand in for it, while the running service (and the end-to-end tests) use the real client.
//!
//! control-api never asks the tenant who is in a group: only to create and remove a group's
//! distribution group, to apply a label's changed entry rule, and for an owner's coarse count
//! (INV-1, INV-4).

use async_trait::async_trait;
use domain::{CountBucket, GroupId};
use service_kit::RequestId;
use std::sync::Arc;
use tenant_api::{ApplyRule, IdentityRef, ProvisionGroup, RuleApplied};
use tenant_client::{TenantClient, TenantError};

/// The tenant, as control-api uses it.
#[async_trait]
pub trait Tenant: Send + Sync + 'static {
    /// Creates (or confirms) the distribution group behind `request.group_id`.
    async fn provision_group(&self, request: &ProvisionGroup) -> Result<(), TenantError>;
    /// Removes the distribution group and all its membership; succeeds when already gone.
    async fn deprovision_group(&self, group: GroupId) -> Result<(), TenantError>;
    /// The bucket of the group's member count.
    async fn member_count(&self, group: GroupId) -> Result<CountBucket, TenantError>;
    /// Removes a person from every group at once and forgets their identity (offboarding).
    async fn offboard(&self, who: &IdentityRef) -> Result<(), TenantError>;
    /// Answers when the tenant does (readiness).
    async fn ping(&self) -> Result<(), TenantError>;
    /// Applies a label's entry rule to the groups under it; the tenant ends the memberships it
    /// now bars and answers counts only.
    async fn apply_rule(&self, request: &ApplyRule) -> Result<RuleApplied, TenantError>;
    /// The mail queue's counts and the relay's health, over every group (operators).
    /// Stand-ins that do not support it refuse.
    async fn mail_counts(&self) -> Result<tenant_api::MailCounts, TenantError> {
        Err(TenantError::Unexpected("mail is not supported here".into()))
    }
    /// The newest dead letters, without group or address (operators). Stand-ins that do not
    /// support it refuse.
    async fn mail_dead_letters(&self) -> Result<tenant_api::DeadLetters, TenantError> {
        Err(TenantError::Unexpected("mail is not supported here".into()))
    }
    /// The directory (SCIM) routes; stand-ins that do not support them refuse.
    fn directory(&self) -> Option<&TenantClient> {
        None
    }
    /// The same tenant for the request `id`: its calls send the id, which the tenant records in
    /// its audit events. `None` when there is nothing to forward it to (stand-ins); the caller
    /// keeps using `self`.
    fn for_request(&self, _id: &RequestId) -> Option<Arc<dyn Tenant>> {
        None
    }
    /// Relays a break-glass call with the acting user's own token; answers the tenant's status
    /// and JSON body as they are. Stand-ins that do not support it refuse.
    async fn break_glass(
        &self,
        _path: &str,
        _user_token: &str,
        _body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), TenantError> {
        Err(TenantError::Unexpected(
            "break-glass is not supported here".into(),
        ))
    }
    /// Relays a break-glass list (`GET`) with the acting user's own token; answers like
    /// [`Self::break_glass`].
    async fn break_glass_list(
        &self,
        _path_and_query: &str,
        _user_token: &str,
    ) -> Result<(u16, serde_json::Value), TenantError> {
        Err(TenantError::Unexpected(
            "break-glass is not supported here".into(),
        ))
    }
}

#[async_trait]
impl Tenant for TenantClient {
    async fn mail_counts(&self) -> Result<tenant_api::MailCounts, TenantError> {
        TenantClient::mail_counts(self).await
    }

    async fn mail_dead_letters(&self) -> Result<tenant_api::DeadLetters, TenantError> {
        TenantClient::mail_dead_letters(self).await
    }

    async fn provision_group(&self, request: &ProvisionGroup) -> Result<(), TenantError> {
        TenantClient::provision_group(self, request).await.map(drop)
    }

    async fn deprovision_group(&self, group: GroupId) -> Result<(), TenantError> {
        TenantClient::deprovision_group(self, group).await
    }

    async fn member_count(&self, group: GroupId) -> Result<CountBucket, TenantError> {
        TenantClient::member_count(self, group).await
    }

    async fn offboard(&self, who: &IdentityRef) -> Result<(), TenantError> {
        TenantClient::offboard(self, who).await
    }

    async fn ping(&self) -> Result<(), TenantError> {
        TenantClient::ping(self).await
    }

    async fn apply_rule(&self, request: &ApplyRule) -> Result<RuleApplied, TenantError> {
        TenantClient::apply_rule(self, request).await
    }

    fn directory(&self) -> Option<&TenantClient> {
        Some(self)
    }

    fn for_request(&self, id: &RequestId) -> Option<Arc<dyn Tenant>> {
        Some(Arc::new(TenantClient::for_request(self, id)))
    }

    async fn break_glass(
        &self,
        path: &str,
        user_token: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), TenantError> {
        TenantClient::break_glass(self, path, user_token, body).await
    }

    async fn break_glass_list(
        &self,
        path_and_query: &str,
        user_token: &str,
    ) -> Result<(u16, serde_json::Value), TenantError> {
        TenantClient::break_glass_list(self, path_and_query, user_token).await
    }
}
