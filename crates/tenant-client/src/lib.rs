//! Typed HTTP client for the isolated tenant. The request and response types it sends and
//! reads are the `tenant-api` crate's, which the tenant serves too; callers import them from
//! there, not from here.
//!
//! Every request carries a fresh service token minted by the calling service's own
//! [`ServiceSigner`] for the audience `isolated-tenant` (INV-9), and nothing else about who is
//! calling: no user token, no forwarded headers but the request id. Subjects and addresses
//! travel in bodies only.
//!
//! A handler that calls the tenant for a request hands it the request's id
//! ([`TenantClient::for_request`]): the tenant records it in the audit events the call causes,
//! so an event can be matched to the public service's log line. Passed explicitly, never read
//! from a task-local.
//!
//! Failures come back as a [`TenantError`] a caller can act on: `Unavailable` (could not
//! connect, timed out, 5xx, 429: retry later), `NotFound`, `Conflict`, `LabelRefused` (the
//! group's label does not admit the person's kind), or `Refused` (another 4xx, with the
//! tenant's problem detail). Error texts never hold a URL, so they may be logged
//! as they are (a URL would carry a group id: INV-6).

mod breakglass;

use auth::ServiceSigner;
use domain::{CountBucket, Email, GroupId, IdentityKind, ServiceName, Subject};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
pub use service_kit::RequestId;
use std::time::Duration;
use tenant_api::directory::{self, DirectoryFind, DirectoryPage, DirectoryUser, DirectoryWrite};
use tenant_api::{
    paths, AddMember, ApplyBatch, ApplyRule, BatchOutcome, DistributionGroup, GroupsOf,
    IdentityRef, MailCounts, MemberCount, MembershipCheck, MembershipQuery, Notification, Pong,
    ProvisionGroup, RuleApplied, SubjectRef, TokenCheck, TokenStanding, LABEL_REFUSED,
};

/// How long connecting may take before the tenant counts as unavailable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole request may take before the tenant counts as unavailable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to the tenant did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// The tenant could not be reached, timed out, failed (5xx) or asked to slow down (429).
    /// Safe to retry later.
    #[error("the tenant is unavailable: {0}")]
    Unavailable(String),
    /// The tenant has no such group (404).
    #[error("not found in the tenant: {0}")]
    NotFound(String),
    /// The request conflicts with the tenant's state (409), e.g. an address another group has.
    #[error("conflict in the tenant: {0}")]
    Conflict(String),
    /// The group's label does not admit the person's kind (403
    /// `urn:hush:problem:label-refused`); the detail names the kind and the label only.
    #[error("the label refuses this identity: {0}")]
    LabelRefused(String),
    /// The tenant refused the request (another 4xx: 401, 403, 413, 422, …).
    #[error("the tenant refused the request ({status}): {detail}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The problem detail the tenant gave.
        detail: String,
    },
    /// Something other than the tenant's contract happened: a bad base URL, or a success
    /// answer that did not parse.
    #[error("unexpected failure talking to the tenant: {0}")]
    Unexpected(String),
}

impl TenantError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Why a batch did not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The tenant is saturated with batches or briefly unable (429 or 503): try again after
    /// `retry_after` (its `Retry-After`, when it gave one). Nothing of the batch was written.
    #[error("the tenant is busy; retry later")]
    Busy {
        /// How long the tenant asked the caller to wait.
        retry_after: Option<Duration>,
    },
    /// Any other failure, as for single calls.
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

impl BatchError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Busy { .. } => true,
            Self::Tenant(e) => e.is_retryable(),
        }
    }
}

/// The part of a problem+json body the client reports.
#[derive(Deserialize)]
struct ProblemBody {
    #[serde(rename = "type")]
    type_: Option<String>,
    title: Option<String>,
    detail: Option<String>,
}

/// A client of the isolated tenant for one calling service. Cheap to clone (the connection pool
/// and the signing key are shared).
#[derive(Clone, Debug)]
pub struct TenantClient {
    inner: auth::ServiceClient,
    /// The `x-request-id` every call carries (already checked by [`RequestId`]), when the
    /// client was made for a request.
    request_id: Option<reqwest::header::HeaderValue>,
}

impl TenantClient {
    /// A client of the tenant at `base_url` (e.g. `http://isolated-tenant:8083`) that signs
    /// its tokens with `signer`, with the default timeouts.
    pub fn new(base_url: impl Into<String>, signer: ServiceSigner) -> Result<Self, TenantError> {
        Self::with_timeouts(base_url, signer, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    /// As [`Self::new`], with explicit connect and request timeouts.
    pub fn with_timeouts(
        base_url: impl Into<String>,
        signer: ServiceSigner,
        connect: Duration,
        request: Duration,
    ) -> Result<Self, TenantError> {
        let inner = auth::ServiceClient::new(
            base_url,
            signer,
            ServiceName::IsolatedTenant,
            connect,
            request,
        )
        .map_err(TenantError::Unexpected)?;
        Ok(Self {
            inner,
            request_id: None,
        })
    }

    /// The same client (same connections, same key) for the request `id`: every call sends it
    /// as `x-request-id`, and the tenant records it in the audit events the call causes.
    #[must_use]
    pub fn for_request(&self, id: &RequestId) -> Self {
        Self {
            inner: self.inner.clone(),
            request_id: Some(id.header_value().clone()),
        }
    }

    /// A request with the service token and, when the client was made for a request, its id.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.inner.request(method, path);
        match &self.request_id {
            Some(id) => req.header(service_kit::http::REQUEST_ID, id.clone()),
            None => req,
        }
    }

    /// The base URL this client talks to.
    pub fn base_url(&self) -> &str {
        self.inner.base_url()
    }

    /// Succeeds when the tenant answers and accepts this service's token (`/tenant/v1/ping`).
    pub async fn ping(&self) -> Result<(), TenantError> {
        let _: Pong = self.json(Method::GET, paths::PING, None::<&()>).await?;
        Ok(())
    }

    /// Creates the distribution group `request.group_id`, or confirms it (and takes the new
    /// display name) when it exists with the same address. `Conflict` when the address belongs
    /// to another group or the group has another address.
    pub async fn provision_group(
        &self,
        request: &ProvisionGroup,
    ) -> Result<DistributionGroup, TenantError> {
        self.json(Method::POST, paths::GROUPS, Some(request)).await
    }

    /// Removes the distribution group `group` and all of its membership. Succeeds when it is
    /// already gone.
    pub async fn deprovision_group(&self, group: GroupId) -> Result<(), TenantError> {
        let path = paths::for_group(paths::GROUP, group);
        self.empty(Method::DELETE, &path, None::<&()>).await
    }

    /// Makes `request.member` a member of `group`, once the tenant has checked that
    /// `request.label` admits their kind. Succeeds the same way whether or not they already
    /// were (INV-3). `NotFound` when the group is not provisioned; `LabelRefused` when the label
    /// does not admit them; `Refused` (422) when the member has neither subject nor address.
    pub async fn add_member(&self, group: GroupId, request: &AddMember) -> Result<(), TenantError> {
        let path = paths::for_group(paths::MEMBERS, group);
        self.empty(Method::POST, &path, Some(request)).await
    }

    /// Makes sure `who` is not a member of `group`. Succeeds the same way whether or not they
    /// were, or exist at all (INV-3). `NotFound` when the group is not provisioned.
    pub async fn remove_member(
        &self,
        group: GroupId,
        who: &IdentityRef,
    ) -> Result<(), TenantError> {
        let path = paths::for_group(paths::MEMBERS_REMOVE, group);
        self.empty(Method::POST, &path, Some(who)).await
    }

    /// Queues a notification from the tenant's closed set of templates. The tenant answers
    /// 202 alike whether it sent, coalesced, rate-limited or found nobody to send to.
    /// membership-api only.
    pub async fn notify(&self, notification: &Notification) -> Result<(), TenantError> {
        self.empty(Method::POST, paths::NOTIFICATIONS, Some(notification))
            .await
    }

    /// Removes `who` from every group at once and deletes their identity (a later add creates a
    /// fresh one). Succeeds the same way whether or not the tenant knew them. control-api only.
    pub async fn offboard(&self, who: &IdentityRef) -> Result<(), TenantError> {
        self.empty(Method::POST, paths::OFFBOARD, Some(who)).await
    }

    /// Whether the person signed in as `subject`, with the address `email` from the same
    /// token, is a member of `group` (an identity made from their address before they signed
    /// in counts as theirs; one bound to another subject never does). With `kind` (the kind
    /// the person's own token carries), the tenant first corrects a kind it stored otherwise,
    /// ending the memberships the new kind's labels bar.
    pub async fn is_member(
        &self,
        group: GroupId,
        subject: &Subject,
        email: Option<&Email>,
        kind: Option<IdentityKind>,
    ) -> Result<bool, TenantError> {
        let body = MembershipQuery {
            group_id: group,
            subject: subject.clone(),
            email: email.cloned(),
            kind,
        };
        let answer: MembershipCheck = self
            .json(Method::POST, paths::MEMBERSHIP_CHECK, Some(&body))
            .await?;
        Ok(answer.member)
    }

    /// The groups the person signed in as `subject`, with the address `email` from the same
    /// token, is a member of, as [`Self::is_member`] counts them (empty for someone the tenant
    /// has not seen); `kind` as for [`Self::is_member`].
    pub async fn groups_of(
        &self,
        subject: &Subject,
        email: Option<&Email>,
        kind: Option<IdentityKind>,
    ) -> Result<Vec<GroupId>, TenantError> {
        self.groups_among(subject, email, kind, None).await
    }

    /// As [`Self::groups_of`], asking only about `among` (at most
    /// [`tenant_api::MAX_AMONG`]; `None`: every group): which of these groups the person is in.
    pub async fn groups_among(
        &self,
        subject: &Subject,
        email: Option<&Email>,
        kind: Option<IdentityKind>,
        among: Option<&[GroupId]>,
    ) -> Result<Vec<GroupId>, TenantError> {
        let body = SubjectRef {
            subject: subject.clone(),
            email: email.cloned(),
            kind,
            among: among.map(<[GroupId]>::to_vec),
        };
        let answer: GroupsOf = self
            .json(Method::POST, paths::GROUPS_OF, Some(&body))
            .await?;
        Ok(answer.groups)
    }

    /// The bucket of `group`'s member count (INV-4).
    pub async fn member_count(&self, group: GroupId) -> Result<CountBucket, TenantError> {
        let path = paths::for_group(paths::COUNT, group);
        let answer: MemberCount = self.json(Method::GET, &path, None::<&()>).await?;
        Ok(answer.bucket)
    }

    /// Applies a label's changed entry rule to the groups under it (control-api only): each
    /// group takes the rule, and every membership it now bars ends. Answers counts only.
    pub async fn apply_rule(&self, request: &ApplyRule) -> Result<RuleApplied, TenantError> {
        self.json(Method::POST, paths::APPLY_RULE, Some(request))
            .await
    }

    /// Whether tokens of `subject` issued at `issued_at` were voided by an offboarding since.
    pub async fn token_revoked(
        &self,
        subject: &Subject,
        issued_at: Option<i64>,
    ) -> Result<bool, TenantError> {
        let body = TokenCheck {
            subject: subject.clone(),
            issued_at,
        };
        let answer: TokenStanding = self
            .json(Method::POST, paths::TOKEN_CHECK, Some(&body))
            .await?;
        Ok(answer.revoked)
    }

    /// Creates a directory user (SCIM; control-api only). `Conflict` when the userName or
    /// externalId is taken.
    pub async fn directory_create(
        &self,
        user: &DirectoryWrite,
    ) -> Result<DirectoryUser, TenantError> {
        self.json(Method::POST, directory::paths::USERS, Some(user))
            .await
    }

    /// Reads a directory user; `NotFound` when there is none.
    pub async fn directory_get(&self, id: uuid::Uuid) -> Result<DirectoryUser, TenantError> {
        self.json(Method::GET, &directory::paths::user(id), None::<&()>)
            .await
    }

    /// Replaces a directory user.
    pub async fn directory_replace(
        &self,
        id: uuid::Uuid,
        user: &DirectoryWrite,
    ) -> Result<DirectoryUser, TenantError> {
        self.json(Method::PUT, &directory::paths::user(id), Some(user))
            .await
    }

    /// Deletes a directory user (and offboards them). Idempotent.
    pub async fn directory_delete(&self, id: uuid::Uuid) -> Result<(), TenantError> {
        self.empty(Method::DELETE, &directory::paths::user(id), None::<&()>)
            .await
    }

    /// Finds directory users, or pages through all.
    pub async fn directory_find(&self, q: &DirectoryFind) -> Result<DirectoryPage, TenantError> {
        self.json(Method::POST, directory::paths::FIND, Some(q))
            .await
    }

    /// The mail queue's counts (control-api, for operators).
    pub async fn mail_counts(&self) -> Result<MailCounts, TenantError> {
        self.json(Method::GET, paths::MAIL_COUNTS, None::<&()>)
            .await
    }

    /// The newest dead letters, without group or address (control-api, for operators).
    pub async fn mail_dead_letters(&self) -> Result<tenant_api::DeadLetters, TenantError> {
        self.json(Method::GET, paths::MAIL_DEAD_LETTERS, None::<&()>)
            .await
    }

    /// Applies `batch` in one transaction in the tenant (bulk-api only): adds (each checked
    /// against its group's label with the person's resolved kind) and removes, answered with
    /// counts by outcome. Idempotent: the same batch again changes nothing. `Busy` (with the
    /// tenant's `Retry-After`) when the tenant is running as many batches as it allows.
    pub async fn apply_batch(&self, batch: &ApplyBatch) -> Result<BatchOutcome, BatchError> {
        let res = self
            .request(Method::POST, paths::GROUPS_BATCH)
            .json(batch)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = res.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            let retry_after = res
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(BatchError::Busy { retry_after });
        }
        let res = check(res).await?;
        res.json::<BatchOutcome>().await.map_err(|e| {
            BatchError::Tenant(if e.is_timeout() {
                TenantError::Unavailable("timed out reading the answer".into())
            } else {
                TenantError::Unexpected("the answer did not match the tenant's API".into())
            })
        })
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, TenantError> {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req.send().await.map_err(|e| transport(&e))?;
        check(res).await
    }

    async fn json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, TenantError> {
        let res = self.send(method, path, body).await?;
        res.json::<T>().await.map_err(|e| {
            if e.is_timeout() {
                TenantError::Unavailable("timed out reading the answer".into())
            } else {
                TenantError::Unexpected("the answer did not match the tenant's API".into())
            }
        })
    }

    async fn empty<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), TenantError> {
        self.send(method, path, body).await.map(drop)
    }
}

/// Describes a transport failure without its URL (which would carry a group id).
fn transport(e: &reqwest::Error) -> TenantError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_request() || e.is_body() {
        "the request could not be sent"
    } else {
        "the connection failed"
    };
    TenantError::Unavailable(what.into())
}

/// Passes a success through; turns any other answer into the matching [`TenantError`].
async fn check(res: reqwest::Response) -> Result<reqwest::Response, TenantError> {
    let status = res.status();
    if status.is_success() {
        return Ok(res);
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(TenantError::Unavailable(format!(
            "status {}",
            status.as_u16()
        )));
    }
    let problem = res.json::<ProblemBody>().await.ok();
    let label_refused = problem
        .as_ref()
        .is_some_and(|p| p.type_.as_deref() == Some(LABEL_REFUSED));
    let detail = problem
        .and_then(|p| p.detail.or(p.title))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("no detail").to_string());
    Err(match status {
        StatusCode::FORBIDDEN if label_refused => TenantError::LabelRefused(detail),
        StatusCode::NOT_FOUND => TenantError::NotFound(detail),
        StatusCode::CONFLICT => TenantError::Conflict(detail),
        s if s.is_client_error() => TenantError::Refused {
            status: s.as_u16(),
            detail,
        },
        // 1xx/3xx: the tenant never answers these.
        s => TenantError::Unexpected(format!("status {}", s.as_u16())),
    })
}

#[cfg(test)]
mod tests;

/// Offboarding bites: the public services ask the tenant whether a caller's token was voided.
impl auth::Revocations for TenantClient {
    fn revoked<'a>(&'a self, subject: &'a Subject, issued_at: Option<i64>) -> auth::Check<'a> {
        Box::pin(async move {
            self.token_revoked(subject, issued_at)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
