//! What membership-api and bulk-api need from control-api: the internal group lookup's wire
//! types, path and limits, and the typed client that calls it. control-api serves these types
//! and the callers send them, all from this crate, so the two cannot drift and no service links
//! another service's library.
//!
//! A caller learns what it needs to decide who may enter a group — its label and policy, join
//! policy, state and owners — and nothing about its members, which control-api never holds.
//! Group ids travel in the request body, never in the URL, so no access log on the way records
//! which groups a service asked about. Every request carries a fresh service token minted by the
//! calling service's own key for the audience `control-api`.

use auth::ServiceSigner;
use domain::{
    Email, GroupId, GroupName, GroupState, GroupType, JoinPolicy, Label, ServiceName, Subject,
};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;
pub use uuid::Uuid;

/// The internal lookup endpoint.
pub const LOOKUP_PATH: &str = "/control/v1/internal/groups/lookup";
/// The internal relying-party lookup: membership-api asks it who an app is (to check the
/// credential the app presents) and which groups guard its resources.
pub const RELYING_PARTY_PATH: &str = "/control/v1/internal/relying-parties/lookup";
/// The catalog's version: changes whenever anything a [`GroupPolicyView`] says may have changed.
pub const VERSION_PATH: &str = "/control/v1/internal/catalog-version";
/// Most ids one lookup may carry; the client splits longer lists.
pub const MAX_LOOKUP_IDS: usize = 500;
/// How long connecting may take before control-api counts as unavailable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole request may take before control-api counts as unavailable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What another service needs to know about a group to decide who may enter it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupPolicyView {
    /// The group's id.
    pub id: GroupId,
    /// Its display name.
    pub name: GroupName,
    /// Where it is in its life; only `active` groups take members.
    pub state: GroupState,
    /// Its sensitivity label, with the policy every path that adds a member checks first.
    pub label: Label,
    /// How people get in.
    pub join_policy: JoinPolicy,
    /// Who may approve requests and hand out invites.
    #[schema(value_type = Vec<String>)]
    pub owners: Vec<Subject>,
    /// What the group is for: `mail` (the default, for catalogs that predate types) or
    /// `security`.
    #[serde(default, rename = "type")]
    pub group_type: GroupType,
    /// The address that mails its members (mail reaches them once the group is active);
    /// absent for a security group, which has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Email)]
    pub contact_address: Option<Email>,
}

/// A lookup of groups by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// The ids to look up: 1 to [`MAX_LOOKUP_IDS`] of them.
    #[schema(value_type = Vec<String>, max_items = 500)]
    pub ids: Vec<GroupId>,
}

/// The groups found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LookupResponse {
    /// Those of the asked-for groups that exist, in no particular order; unknown ids are left
    /// out.
    pub groups: Vec<GroupPolicyView>,
}

/// Which relying party to look up: by its id (token exchange, where the app names itself as
/// the client) or by its audience (a person asking for an assertion meant for it). Exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelyingPartyLookup {
    /// The relying party's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Its audience: the value it expects in the `aud` of what Hush signs for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// An app registered with Hush, as membership-api needs it to decide: never a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelyingPartyView {
    /// Its id (the `client_id` it authenticates with).
    pub id: Uuid,
    /// Its display name.
    pub name: String,
    /// The audience of every decision and assertion Hush signs for it.
    pub audience: String,
    /// SHA-256 of its current credential, lower-case hex. The credential itself is shown once,
    /// when issued, and stored nowhere.
    pub credential_sha256: String,
    /// Whether it may get decisions at all; a disabled app gets none.
    pub enabled: bool,
    /// Its resources, each with the groups that guard it.
    pub resources: Vec<ResourceView>,
}

/// A resource an app protects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceView {
    /// Its id.
    pub id: Uuid,
    /// Its name, unique within its app (what the app checks, e.g. `payroll-report`).
    pub name: String,
    /// Its sensitivity label now.
    pub label: Label,
    /// The groups bound to it.
    pub groups: Vec<domain::Guard>,
}

/// The catalog's version, opaque: equal versions mean no group or label a lookup could return
/// has changed in between. Callers that keep lookups (membership-api's cache) drop them when it
/// changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CatalogVersion {
    /// Compare for equality only.
    pub version: String,
}

/// Why a call to control-api did not succeed. The texts never hold a URL or a group id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// control-api could not be reached, timed out, failed (5xx) or asked to slow down (429).
    /// Safe to retry later.
    #[error("control-api is unavailable: {0}")]
    Unavailable(String),
    /// control-api refused the request (a 4xx: 401 or 403 for a token it does not accept,
    /// 413, 422 …).
    #[error("control-api refused the request ({status}): {detail}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The problem detail control-api gave.
        detail: String,
    },
    /// Something outside the contract: a bad base URL, or an answer that did not parse.
    #[error("unexpected failure talking to control-api: {0}")]
    Unexpected(String),
}

impl ControlError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A client of control-api's internal endpoint for one calling service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ControlClient {
    inner: auth::ServiceClient,
}

impl ControlClient {
    /// A client of control-api at `base_url` (e.g. `http://control-api:8080`) that signs its
    /// tokens with `signer`, with the default timeouts.
    pub fn new(base_url: impl Into<String>, signer: ServiceSigner) -> Result<Self, ControlError> {
        Self::with_timeouts(base_url, signer, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    /// As [`Self::new`], with explicit connect and request timeouts.
    pub fn with_timeouts(
        base_url: impl Into<String>,
        signer: ServiceSigner,
        connect: Duration,
        request: Duration,
    ) -> Result<Self, ControlError> {
        let inner =
            auth::ServiceClient::new(base_url, signer, ServiceName::ControlApi, connect, request)
                .map_err(ControlError::Unexpected)?;
        Ok(Self { inner })
    }

    /// The base URL this client talks to.
    pub fn base_url(&self) -> &str {
        self.inner.base_url()
    }

    /// One group; `None` when no group has this id.
    pub async fn group(&self, id: GroupId) -> Result<Option<GroupPolicyView>, ControlError> {
        Ok(self.lookup(&[id]).await?.into_iter().find(|g| g.id == id))
    }

    /// The groups among `ids` that exist, in no particular order. Long lists are sent in
    /// several requests of at most [`MAX_LOOKUP_IDS`], all at once.
    pub async fn groups(&self, ids: &[GroupId]) -> Result<Vec<GroupPolicyView>, ControlError> {
        if ids.len() <= MAX_LOOKUP_IDS {
            return self.lookup(ids).await;
        }
        let mut set = tokio::task::JoinSet::new();
        for chunk in ids.chunks(MAX_LOOKUP_IDS) {
            let (this, chunk) = (self.clone(), chunk.to_vec());
            set.spawn(async move { this.lookup(&chunk).await });
        }
        let mut out = Vec::with_capacity(ids.len());
        while let Some(found) = set.join_next().await {
            out.extend(found.map_err(|_| ControlError::Unexpected("a lookup task ended".into()))??);
        }
        Ok(out)
    }

    /// A relying party by id or audience; `None` when there is none.
    pub async fn relying_party(
        &self,
        lookup: &RelyingPartyLookup,
    ) -> Result<Option<RelyingPartyView>, ControlError> {
        let res = self
            .inner
            .request(reqwest::Method::POST, RELYING_PARTY_PATH)
            .json(lookup)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        if res.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Self::answer(res).await.map(Some)
    }

    /// The catalog's current version.
    pub async fn catalog_version(&self) -> Result<CatalogVersion, ControlError> {
        let res = self
            .inner
            .request(reqwest::Method::GET, VERSION_PATH)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        Self::answer(res).await
    }

    async fn lookup(&self, ids: &[GroupId]) -> Result<Vec<GroupPolicyView>, ControlError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let res = self
            .inner
            .request(reqwest::Method::POST, LOOKUP_PATH)
            .json(&LookupRequest { ids: ids.to_vec() })
            .send()
            .await
            .map_err(|e| transport(&e))?;
        Self::answer::<LookupResponse>(res).await.map(|r| r.groups)
    }

    /// A successful answer's body, or why there is none.
    async fn answer<T: serde::de::DeserializeOwned>(
        res: reqwest::Response,
    ) -> Result<T, ControlError> {
        let status = res.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ControlError::Unavailable(format!(
                "status {}",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            let detail = res
                .json::<service_kit::Problem>()
                .await
                .ok()
                .and_then(|p| p.detail.or(Some(p.title)))
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("no detail").into());
            return Err(if status.is_client_error() {
                ControlError::Refused {
                    status: status.as_u16(),
                    detail,
                }
            } else {
                ControlError::Unexpected(format!("status {}", status.as_u16()))
            });
        }
        res.json::<T>().await.map_err(|e| {
            if e.is_timeout() {
                ControlError::Unavailable("timed out reading the answer".into())
            } else {
                ControlError::Unexpected("the answer did not match control-api's API".into())
            }
        })
    }
}

/// Describes a transport failure without its URL.
fn transport(e: &reqwest::Error) -> ControlError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_request() || e.is_body() {
        "the request could not be sent"
    } else {
        "the connection failed"
    };
    ControlError::Unavailable(what.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_refuse_unknown_fields() {
        let id = GroupId::new();
        let ok = format!(r#"{{"ids":["{id}"]}}"#);
        assert!(serde_json::from_str::<LookupRequest>(&ok).is_ok());
        let extra = format!(r#"{{"ids":["{id}"],"subject":"x"}}"#);
        assert!(serde_json::from_str::<LookupRequest>(&extra).is_err());
    }

    #[test]
    fn only_http_urls_are_accepted() {
        let signer = ServiceSigner::generate(ServiceName::MembershipApi).unwrap();
        assert!(ControlClient::new("ftp://x", signer.clone()).is_err());
        let c = ControlClient::new("http://control:8080/", signer).unwrap();
        assert_eq!(c.base_url(), "http://control:8080");
    }

    #[tokio::test]
    async fn an_unreachable_control_api_is_retryable_and_names_no_url() {
        let signer = ServiceSigner::generate(ServiceName::MembershipApi).unwrap();
        // Port 9 on loopback: nothing listens there.
        let c = ControlClient::with_timeouts(
            "http://127.0.0.1:9",
            signer,
            Duration::from_millis(500),
            Duration::from_secs(1),
        )
        .unwrap();
        let id = GroupId::new();
        let err = c.group(id).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(
            !err.to_string().contains("127.0.0.1") && !err.to_string().contains(&id.to_string())
        );
        assert!(
            c.groups(&[]).await.unwrap().is_empty(),
            "no ids, no request"
        );
    }
}
