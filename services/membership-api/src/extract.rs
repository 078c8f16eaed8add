//! What several route modules share: path parameters parsed into our types (a malformed one is
//! a problem+json 422, not axum's plain-text 400), the owner check, the label check and the one
//! way a member is added, and time on the wire.

use crate::error::ApiError;
use crate::limits::Action;
use crate::AppState;
use auth::Caller;
use axum::extract::{FromRequestParts, Path};
use control_client::GroupPolicyView;
use domain::{GroupId, GroupState, IdentityKind, Subject};
use http::request::Parts;
use std::collections::HashMap;
use tenant_api::{AddMember, MemberRef};
use uuid::Uuid;

async fn path_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &str,
    invalid: ApiError,
) -> Result<String, ApiError> {
    let Ok(Path(mut params)) =
        Path::<HashMap<String, String>>::from_request_parts(parts, state).await
    else {
        return Err(invalid);
    };
    params.remove(name).ok_or(invalid)
}

/// The `{id}` of a group from the path.
#[derive(Debug, Clone, Copy)]
pub struct GroupPath(pub GroupId);

impl<S: Send + Sync> FromRequestParts<S> for GroupPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_param(parts, state, "id", ApiError::InvalidGroupId).await?;
        GroupId::parse(&raw)
            .map(Self)
            .map_err(|_| ApiError::InvalidGroupId)
    }
}

/// The `{rid}` of a join request from the path.
#[derive(Debug, Clone, Copy)]
pub struct RequestPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for RequestPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = || ApiError::InvalidId("request id");
        let raw = path_param(parts, state, "rid", invalid()).await?;
        Uuid::parse_str(&raw).map(Self).map_err(|_| invalid())
    }
}

/// The `{iid}` of an invite from the path.
#[derive(Debug, Clone, Copy)]
pub struct InvitePath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for InvitePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = || ApiError::InvalidId("invite id");
        let raw = path_param(parts, state, "iid", invalid()).await?;
        Uuid::parse_str(&raw).map(Self).map_err(|_| invalid())
    }
}

/// The `{subject}` of a person from the path (an owner's removal). The route template, not the
/// path, is what spans record, so the subject is not logged (INV-6).
#[derive(Clone)]
pub struct SubjectPath(pub Subject);

impl<S: Send + Sync> FromRequestParts<S> for SubjectPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = || ApiError::Invalid("invalid subject in the path".into());
        let raw = path_param(parts, state, "subject", invalid()).await?;
        Subject::parse(raw).map(Self).map_err(|_| invalid())
    }
}

impl AppState {
    /// Spends one unit of the caller's `action` budget, or refuses with 429.
    pub(crate) async fn limit(&self, action: Action, caller: &Caller) -> Result<(), ApiError> {
        self.limits
            .hit(action, caller.subject.as_str(), self.clock.now_ms())
            .await
    }

    /// The group, if the caller is one of its owners. A non-owner gets the same 403 whether or
    /// not the group exists, so the answer tells them nothing they could not learn elsewhere.
    pub(crate) async fn owned_group(
        &self,
        caller: &Caller,
        id: GroupId,
    ) -> Result<GroupPolicyView, ApiError> {
        match self.catalog.group(id).await? {
            // Labels govern ownership: a named owner whose token says a kind the label bars
            // (a guest, an AI agent) is refused like anyone else.
            Some(g)
                if g.owners.contains(&caller.subject)
                    && domain::may_enter(caller.kind, &g.label.name, &g.label.policy).is_ok() =>
            {
                Ok(g)
            }
            _ => Err(ApiError::NotOwner),
        }
    }

    /// The group, if it exists and takes members: as the routine path sees it (a lookup kept
    /// up to one poll interval, see [`crate::catalog_cache`]), or, when `fresh`, as control-api
    /// says now.
    pub(crate) async fn active_group(
        &self,
        id: GroupId,
        fresh: bool,
    ) -> Result<GroupPolicyView, ApiError> {
        let catalog = if fresh {
            &self.catalog
        } else {
            &self.routine_catalog
        };
        let group = catalog.group(id).await?.ok_or(ApiError::GroupNotFound)?;
        require_active(&group)?;
        Ok(group)
    }

    /// The one way a member is added: the tenant gets the group's label with the person and
    /// re-checks it before it writes (defence in depth; every add path ends here). Callers that
    /// know the person's kind have already checked it themselves ([`check_label`]).
    pub(crate) async fn add_member(
        &self,
        group: &GroupPolicyView,
        member: MemberRef,
    ) -> Result<(), ApiError> {
        let req = AddMember {
            member,
            label: group.label.clone(),
        };
        self.tenant.add_member(group.id, &req).await?;
        Ok(())
    }
}

/// Refuses unless the group is active.
pub(crate) fn require_active(group: &GroupPolicyView) -> Result<(), ApiError> {
    if group.state == GroupState::Active {
        Ok(())
    } else {
        Err(ApiError::NotAccepting)
    }
}

/// The label decides before anything is written: prevention, not reactive scanning.
pub(crate) fn check_label(kind: IdentityKind, group: &GroupPolicyView) -> Result<(), ApiError> {
    domain::may_enter(kind, &group.label.name, &group.label.policy).map_err(ApiError::LabelRefused)
}

/// A stored time (ms since the epoch) as RFC 3339, the form every time takes on the wire.
pub(crate) fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            super::rfc3339(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
