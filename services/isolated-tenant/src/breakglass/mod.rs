//! Break-glass (INV-8): lawful access to one group's membership, and nothing more.
//!
//! An `auditor` files a request (a group; a scope: "is this person a member" or "the full
//! member list"; a justification; optionally an age X25519 recipient); privacy officers list
//! the requests waiting for them; two distinct `privacy-officer`s approve it (the requester
//! never can, the same officer never twice, and not after the request expired), or one
//! declines it; the approval opens a grant that is time-limited and
//! single-use; the requester redeems it once and gets the answer, encrypted to their recipient
//! when they gave one. Every step, refusals included, is an audit event; the group's owners are
//! not told, and no event names the person asked about (they are sealed in the request row).
//!
//! The state and the rules live here, in the tenant, not in control-api: these routes are
//! allowed to control-api's service token only ([`crate::may_call`]), and every call must
//! also carry the acting user's OWN token (header [`USER_TOKEN_HEADER`]), which the tenant
//! verifies against the company IdP's JWKS (the same issuer, audience and claim settings as the
//! public services) and whose role it checks. So control-api alone, compromised, holds no
//! user's token to approve with and cannot read a member list; membership-api and bulk-api
//! cannot reach these routes at all. The user token is verified, never logged, never stored.
//!
//! With no IdP configured (no issuer — `HUSH_OIDC_ISSUER` or `HUSH_JWT_ISSUER` —, no
//! `HUSH_JWT_AUDIENCE`, or neither a key set file nor a way to the keys) the routes answer 503
//! `break-glass-disabled`.

pub(crate) mod store;

use crate::access::{op, Permit};
use crate::seal::SealKeys;
use crate::AppState;
use auth::{AuthError, Caller, JwtArgs, Verifier};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use service_kit::{AppJson, Problem};
use std::sync::Arc;
use std::time::Duration;
use store::Requests as _;
use tenant_api::breakglass::{
    Answer, Decline, ListQuery, ListView, NewRequest, RequestList, RequestView, Scope, AUDITOR,
    MAX_DECLINE_REASON, MAX_JUSTIFICATION, MAX_RECIPIENT, MIN_JUSTIFICATION, PRIVACY_OFFICER,
    USER_TOKEN_HEADER,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// Break-glass settings: the IdP the acting users' tokens come from (the same values as the
/// public services'), and the time limits.
#[derive(Debug, Clone, clap::Args)]
pub struct BreakGlassArgs {
    /// The IdP's issuer, as the public services have it. Unset (and HUSH_JWT_ISSUER unset):
    /// break-glass is off (503).
    #[arg(long = "oidc-issuer", env = "HUSH_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The issuer (`iss`) of users' tokens: the older name of HUSH_OIDC_ISSUER.
    #[arg(long = "jwt-issuer", env = "HUSH_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The audience (`aud`) of users' tokens, as the public services have it.
    #[arg(long = "jwt-audience", env = "HUSH_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Where the IdP publishes its signing keys (JWKS). The tenant usually sits on an internal
    /// network that cannot reach the IdP: then give `--break-glass-jwks-file` instead.
    #[arg(long = "jwks-url", env = "HUSH_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Fetch the keys through discovery from the issuer (for a tenant that can reach the IdP),
    /// when neither HUSH_JWKS_URL nor the key set file is given.
    #[arg(long = "break-glass-discover", env = "HUSH_BREAK_GLASS_DISCOVER")]
    pub discover: bool,
    /// Extra CA certificates (PEM) to trust for the IdP, on top of the system's roots.
    #[arg(long = "oidc-ca-file", env = "HUSH_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<std::path::PathBuf>,
    /// A file holding the IdP's JWKS (a copy of what `HUSH_JWKS_URL` serves), for a tenant that
    /// cannot reach the IdP; read at start (restart after the IdP rotates its keys). Takes the
    /// place of `HUSH_JWKS_URL`.
    #[arg(long = "break-glass-jwks-file", env = "HUSH_BREAK_GLASS_JWKS_FILE")]
    pub jwks_file: Option<std::path::PathBuf>,
    /// Claim holding users' roles (`auditor`, `privacy-officer`), as the public services have it.
    #[arg(long = "claim-roles", env = "HUSH_CLAIM_ROLES", default_value = auth::DEFAULT_ROLES_CLAIM)]
    pub claim_roles: String,
    /// Development mode: accept the built-in dev issuer's tokens (`hush up` only).
    #[arg(long = "jwt-dev-mode", env = "HUSH_DEV_MODE")]
    pub dev_mode: bool,
    /// Seconds a request may wait for its two approvals before it expires.
    #[arg(
        long = "break-glass-request-ttl-secs",
        env = "HUSH_BREAK_GLASS_REQUEST_TTL_SECS",
        default_value_t = 86_400
    )]
    pub request_ttl_secs: u64,
    /// Seconds an approved grant may be redeemed (once) before it expires.
    #[arg(
        long = "break-glass-grant-ttl-secs",
        env = "HUSH_BREAK_GLASS_GRANT_TTL_SECS",
        default_value_t = 3_600
    )]
    pub grant_ttl_secs: u64,
}

impl BreakGlassArgs {
    /// Break-glass off (no IdP), default time limits.
    pub fn disabled() -> Self {
        Self {
            oidc_issuer: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwks_url: None,
            discover: false,
            oidc_ca_file: None,
            jwks_file: None,
            claim_roles: auth::DEFAULT_ROLES_CLAIM.into(),
            dev_mode: false,
            request_ttl_secs: 86_400,
            grant_ttl_secs: 3_600,
        }
    }

    /// Break-glass on, trusting the same IdP settings as a public service.
    pub fn from_jwt(jwt: &JwtArgs) -> Self {
        Self {
            oidc_issuer: jwt.oidc_issuer.clone(),
            jwt_issuer: jwt.jwt_issuer.clone(),
            jwt_audience: Some(jwt.jwt_audience.clone()),
            jwks_url: jwt.jwks_url.clone(),
            discover: jwt.jwks_url.is_none(),
            oidc_ca_file: jwt.oidc_ca_file.clone(),
            claim_roles: jwt.claim_roles.clone(),
            dev_mode: jwt.dev_mode,
            ..Self::disabled()
        }
    }

    fn jwt(&self) -> Option<JwtArgs> {
        let jwks_url = match (&self.jwks_url, &self.jwks_file) {
            (Some(url), _) => Some(url.clone()),
            // Not fetched: the key set comes from the file.
            (None, Some(_)) => Some("https://jwks.from-file.invalid/".to_string()),
            (None, None) if self.discover => None,
            (None, None) => return None,
        };
        if self.oidc_issuer.is_none() && self.jwt_issuer.is_none() {
            return None;
        }
        let mut args = JwtArgs::new("", self.jwt_audience.clone()?, "");
        args.oidc_issuer = self.oidc_issuer.clone();
        args.jwt_issuer = self.jwt_issuer.clone();
        args.jwks_url = jwks_url;
        args.oidc_ca_file = self.oidc_ca_file.clone();
        args.claim_roles = self.claim_roles.clone();
        args.dev_mode = self.dev_mode;
        Some(args)
    }
}

/// What the break-glass routes need. Cheap to clone.
#[derive(Clone)]
pub struct BreakGlass {
    verifier: Option<Verifier>,
    request_ttl: Duration,
    grant_ttl: Duration,
    keys: Arc<SealKeys>,
}

impl BreakGlass {
    /// From configuration; fails when the IdP settings are there but wrong.
    pub fn new(args: &BreakGlassArgs, keys: Arc<SealKeys>) -> anyhow::Result<Self> {
        let verifier = match (args.jwt(), &args.jwks_file) {
            (Some(jwt), Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    anyhow::anyhow!("reading the JWKS file {}: {e}", file.display())
                })?;
                let jwks: serde_json::Value = serde_json::from_str(&text)?;
                Some(Verifier::with_jwks(jwt, &jwks)?)
            }
            (Some(jwt), None) => Some(Verifier::new(jwt)?),
            (None, _) => {
                tracing::info!("break-glass is off: no IdP configured (HUSH_OIDC_ISSUER, HUSH_JWT_AUDIENCE, and HUSH_BREAK_GLASS_JWKS_FILE, HUSH_JWKS_URL or HUSH_BREAK_GLASS_DISCOVER)");
                None
            }
        };
        Ok(Self {
            verifier,
            request_ttl: Duration::from_secs(args.request_ttl_secs.max(1)),
            grant_ttl: Duration::from_secs(args.grant_ttl_secs.max(1)),
            keys,
        })
    }

    /// Verifies the acting user's own token.
    async fn user(&self, headers: &HeaderMap) -> Result<Caller, BgError> {
        let verifier = self.verifier.as_ref().ok_or(BgError::Disabled)?;
        let token = headers
            .get(USER_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(BgError::NoUserToken)?;
        verifier.verify(token).await.map_err(BgError::UserToken)
    }
}

/// Why a break-glass call is refused. Each has its own problem type.
#[derive(Debug, thiserror::Error)]
pub enum BgError {
    /// No IdP configured.
    #[error("break-glass is not configured on this tenant")]
    Disabled,
    /// The acting user's token is missing.
    #[error("the acting user's own token is missing (header x-hush-user-token)")]
    NoUserToken,
    /// The acting user's token does not verify.
    #[error("the acting user's token does not verify")]
    UserToken(#[source] AuthError),
    /// The user lacks the role the step needs.
    #[error("this step needs the role {0}")]
    WrongRole(&'static str),
    /// The body is wrong.
    #[error("{0}")]
    Invalid(String),
    /// No such group in the tenant.
    #[error("no distribution group with this id is provisioned in the tenant")]
    GroupNotFound,
    /// No such request.
    #[error("no break-glass request with this id")]
    NotFound,
    /// The requester tried to approve their own request.
    #[error("the requester cannot approve their own request")]
    RequesterCannotApprove,
    /// The same officer tried to approve twice.
    #[error("this officer already approved the request; a second, different officer must")]
    SameOfficer,
    /// The request waited too long for its approvals.
    #[error("the request expired before it was approved; file a new one")]
    RequestExpired,
    /// The request is approved or redeemed already.
    #[error("the request is no longer waiting for approvals")]
    NotPending,
    /// The grant is not open yet.
    #[error("the request has not been approved by two privacy officers")]
    NotApproved,
    /// A privacy officer declined the request.
    #[error("a privacy officer declined the request; there is no grant to redeem")]
    Declined,
    /// The grant was redeemed already.
    #[error("the grant was already redeemed; it is single-use")]
    GrantUsed,
    /// The grant's time ran out.
    #[error("the grant expired before it was redeemed; file a new request")]
    GrantExpired,
    /// Someone other than the requester tried to redeem.
    #[error("only the auditor who filed the request may redeem it")]
    NotRequester,
    /// The database or a seal failed.
    #[error("internal failure")]
    Internal(#[from] anyhow::Error),
}

impl BgError {
    /// The problem type's slug, also the suffix of the refusal's audit action.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::Disabled => "break-glass-disabled",
            Self::NoUserToken | Self::UserToken(_) => "break-glass-user-token",
            Self::WrongRole(_) => "break-glass-wrong-role",
            Self::Invalid(_) => "invalid",
            Self::GroupNotFound => "not-found",
            Self::NotFound => "break-glass-request-not-found",
            Self::RequesterCannotApprove => "break-glass-requester-cannot-approve",
            Self::SameOfficer => "break-glass-same-officer",
            Self::RequestExpired => "break-glass-request-expired",
            Self::NotPending => "break-glass-not-pending",
            Self::NotApproved => "break-glass-not-approved",
            Self::Declined => "break-glass-declined",
            Self::GrantUsed => "break-glass-grant-used",
            Self::GrantExpired => "break-glass-grant-expired",
            Self::NotRequester => "break-glass-not-requester",
            Self::Internal(_) => "internal",
        }
    }

    fn problem(&self) -> Problem {
        let (status, title) = match self {
            Self::Disabled => (StatusCode::SERVICE_UNAVAILABLE, "Break-glass is off"),
            Self::NoUserToken | Self::UserToken(_) => (
                StatusCode::UNAUTHORIZED,
                "The acting user's token is needed",
            ),
            Self::WrongRole(_) => (StatusCode::FORBIDDEN, "Wrong role"),
            Self::Invalid(_) => return Problem::invalid(self.to_string()),
            Self::GroupNotFound => return Problem::not_found(self.to_string()),
            Self::NotFound => (StatusCode::NOT_FOUND, "No such break-glass request"),
            Self::RequesterCannotApprove => (StatusCode::FORBIDDEN, "Requester cannot approve"),
            Self::SameOfficer => (StatusCode::CONFLICT, "Same officer twice"),
            Self::RequestExpired => (StatusCode::GONE, "Request expired"),
            Self::NotPending => (StatusCode::CONFLICT, "Request not pending"),
            Self::NotApproved => (StatusCode::CONFLICT, "Request not approved"),
            Self::Declined => (StatusCode::CONFLICT, "Request declined"),
            Self::GrantUsed => (StatusCode::GONE, "Grant already used"),
            Self::GrantExpired => (StatusCode::GONE, "Grant expired"),
            Self::NotRequester => (StatusCode::FORBIDDEN, "Not the requester"),
            Self::Internal(_) => return Problem::internal(),
        };
        Problem::new(status, self.slug(), title).with_detail(self.to_string())
    }
}

/// A database failure inside a step is an internal failure (the transaction rolls back).
impl From<sqlx::Error> for BgError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl IntoResponse for BgError {
    fn into_response(self) -> Response {
        if let Self::Internal(e) = &self {
            tracing::error!(error = %e, "break-glass failed");
        }
        self.problem().into_response()
    }
}

/// The routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(file_request, list_requests))
        .routes(routes!(approve))
        .routes(routes!(decline))
        .routes(routes!(redeem))
}

/// The requests, in the tenant's database (the audit chain's, whose events every step appends).
fn requests(state: &AppState) -> store::SqlRequests {
    store::SqlRequests::new(
        state.store.audit_db().into(),
        state.break_glass.keys.clone(),
    )
}

/// Files a break-glass request (the acting user must be an `auditor`).
#[utoipa::path(
    post,
    path = "/tenant/v1/break-glass/requests",
    tag = "break-glass",
    request_body = NewRequest,
    params(("x-hush-user-token" = String, Header, description = "The acting user's own token.")),
    responses(
        (status = 201, description = "Filed; waiting for two approvals.", body = RequestView),
        (status = "4XX", description = "`401` No service token, or no valid user token. `403` Not control-api, or the user is not an auditor. `404` No such group. `422` A field is invalid.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` Break-glass is off.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn file_request(
    permit: Permit<op::BreakGlass>,
    State(state): State<AppState>,
    headers: HeaderMap,
    AppJson(request): AppJson<NewRequest>,
) -> Result<(StatusCode, Json<RequestView>), BgError> {
    let bg = &state.break_glass;
    let user = bg.user(&headers).await?;
    if !user.has_role(AUDITOR) {
        return Err(BgError::WrongRole(AUDITOR));
    }
    check_request(&request)?;
    let view = requests(&state)
        .file(
            permit.context(),
            &request,
            &user.subject,
            user.email.as_ref(),
            bg.request_ttl,
        )
        .await?;
    // The officers' mailboxes hear that a request waits: no group, no auditor, no person.
    state.notifier.breakglass_waiting().await;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Lists requests: `view=waiting` every request still waiting for approvals (the acting user
/// must be a `privacy-officer`), `view=mine` the acting auditor's own of the last 90 days. At
/// most 200. A read of requests, never of a member list.
#[utoipa::path(
    get,
    path = "/tenant/v1/break-glass/requests",
    tag = "break-glass",
    params(
        ListQuery,
        ("x-hush-user-token" = String, Header, description = "The acting user's own token."),
    ),
    responses(
        (status = 200, description = "The requests.", body = RequestList),
        (status = "4XX", description = "`401` No service token, or no valid user token. `403` Not control-api, or the user lacks the view's role (`privacy-officer` for `waiting`, `auditor` for `mine`). `422` No or an unknown `view`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` Break-glass is off.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_requests(
    _permit: Permit<op::BreakGlass>,
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RequestList>, BgError> {
    let bg = &state.break_glass;
    let user = bg.user(&headers).await?;
    let Query(ListQuery { view }) = query.map_err(|_| {
        BgError::Invalid("view: `waiting` (privacy officers) or `mine` (auditors)".into())
    })?;
    let role = match view {
        ListView::Waiting => PRIVACY_OFFICER,
        ListView::Mine => AUDITOR,
    };
    if !user.has_role(role) {
        return Err(BgError::WrongRole(role));
    }
    let requests = requests(&state).list(view, &user.subject).await?;
    Ok(Json(RequestList { requests }))
}

/// Declines a request that is still waiting (the acting user must be a `privacy-officer` other
/// than the requester). One officer's no ends it; an optional reason (up to 500 characters,
/// sealed) is shown to the auditor.
#[utoipa::path(
    post,
    path = "/tenant/v1/break-glass/requests/{id}/decline",
    tag = "break-glass",
    request_body = Decline,
    params(
        ("id" = Uuid, Path, description = "The request."),
        ("x-hush-user-token" = String, Header, description = "The acting user's own token."),
    ),
    responses(
        (status = 200, description = "Declined.", body = RequestView),
        (status = 409, description = "`break-glass-not-pending`.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`break-glass-request-expired`.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No service token, or no valid user token. `403` Not control-api; `break-glass-wrong-role`; or `break-glass-requester-cannot-approve`. `404` No such request. `422` The reason is too long.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn decline(
    permit: Permit<op::BreakGlass>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    AppJson(body): AppJson<Decline>,
) -> Result<Json<RequestView>, BgError> {
    let bg = &state.break_glass;
    let user = bg.user(&headers).await?;
    let reason = body
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > MAX_DECLINE_REASON) {
        return Err(BgError::Invalid(format!(
            "reason: at most {MAX_DECLINE_REASON} characters"
        )));
    }
    let view = requests(&state)
        .decline(
            permit.context(),
            id,
            &user.subject,
            user.has_role(PRIVACY_OFFICER),
            reason,
        )
        .await?;
    notify_requester(&state, &view, false).await;
    Ok(Json(view))
}

/// Tells the auditor who filed `view` that it was approved (twice) or declined, at the address
/// their token carried when they filed it; nothing when it carried none.
async fn notify_requester(state: &AppState, view: &RequestView, approved: bool) {
    let address = view
        .requester
        .as_ref()
        .and_then(|p| p.email.as_deref())
        .and_then(|e| domain::Email::parse(e).ok());
    if let Some(to) = address {
        state.notifier.breakglass_decided(&to, approved).await;
    }
}

fn check_request(r: &NewRequest) -> Result<(), BgError> {
    let n = r.justification.trim().chars().count();
    if !(MIN_JUSTIFICATION..=MAX_JUSTIFICATION).contains(&n) {
        return Err(BgError::Invalid(format!(
            "justification: {MIN_JUSTIFICATION} to {MAX_JUSTIFICATION} characters"
        )));
    }
    match r.scope {
        Scope::MemberCheck if r.subject.is_none() && r.email.is_none() => {
            return Err(BgError::Invalid(
                "member-check: name the person by subject or email".into(),
            ))
        }
        Scope::FullList if r.subject.is_some() || r.email.is_some() => {
            return Err(BgError::Invalid(
                "full-list: names no person (leave subject and email out)".into(),
            ))
        }
        _ => {}
    }
    if let Some(rcp) = &r.recipient {
        if rcp.len() > MAX_RECIPIENT || rcp.parse::<age::x25519::Recipient>().is_err() {
            return Err(BgError::Invalid(
                "recipient: an age X25519 recipient (age1…)".into(),
            ));
        }
    }
    Ok(())
}

/// Approves a request (the acting user must be a `privacy-officer`, not the requester, and not
/// one who approved it already). The second approval opens the grant.
#[utoipa::path(
    post,
    path = "/tenant/v1/break-glass/requests/{id}/approve",
    tag = "break-glass",
    params(
        ("id" = Uuid, Path, description = "The request."),
        ("x-hush-user-token" = String, Header, description = "The acting user's own token."),
    ),
    responses(
        (status = 200, description = "Approved (state `approved` after the second).", body = RequestView),
        (status = 409, description = "`break-glass-same-officer` or `break-glass-not-pending`.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`break-glass-request-expired`.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No service token, or no valid user token. `403` Not control-api; `break-glass-wrong-role`; or `break-glass-requester-cannot-approve`. `404` No such request.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn approve(
    permit: Permit<op::BreakGlass>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Json<RequestView>, BgError> {
    let bg = &state.break_glass;
    let user = bg.user(&headers).await?;
    let view = requests(&state)
        .approve(
            permit.context(),
            id,
            &user.subject,
            user.has_role(PRIVACY_OFFICER),
            bg.grant_ttl,
        )
        .await?;
    if view.state == "approved" {
        notify_requester(&state, &view, true).await;
    }
    Ok(Json(view))
}

/// Redeems the grant of an approved request, once (the acting user must be the auditor who
/// filed it). Answers the member check or the member list, encrypted to the request's
/// recipient when it named one.
#[utoipa::path(
    post,
    path = "/tenant/v1/break-glass/requests/{id}/redeem",
    tag = "break-glass",
    params(
        ("id" = Uuid, Path, description = "The request."),
        ("x-hush-user-token" = String, Header, description = "The acting user's own token."),
    ),
    responses(
        (status = 200, description = "The answer, this once.", body = Answer),
        (status = 409, description = "`break-glass-not-approved`.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`break-glass-grant-used` or `break-glass-grant-expired`.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No service token, or no valid user token. `403` Not control-api; `break-glass-wrong-role`; or `break-glass-not-requester`. `404` No such request.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn redeem(
    permit: Permit<op::BreakGlass>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Json<Answer>, BgError> {
    let bg = &state.break_glass;
    let user = bg.user(&headers).await?;
    let answer = requests(&state)
        .redeem(permit.context(), id, &user.subject, user.has_role(AUDITOR))
        .await?;
    Ok(Json(answer))
}

/// Encrypts `answer` to `recipient` (ASCII-armored age).
fn encrypt(recipient: &str, answer: &Answer) -> Result<String, BgError> {
    let recipient: age::x25519::Recipient = recipient
        .parse()
        .map_err(|_| BgError::Internal(anyhow::anyhow!("stored recipient does not parse")))?;
    let json = zeroize::Zeroizing::new(
        serde_json::to_vec(answer).map_err(|e| BgError::Internal(e.into()))?,
    );
    age::encrypt_and_armor(&recipient, &json).map_err(|e| BgError::Internal(anyhow::anyhow!("{e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_without_a_route_to_the_idp_checks_tokens_against_a_jwks_file() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = auth::DevIssuer::load_or_create(&dir.path().join("issuer")).unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, issuer.jwks().to_string()).unwrap();
        let args = BreakGlassArgs {
            jwt_issuer: Some(auth::DEV_ISSUER.into()),
            jwt_audience: Some("hush".into()),
            jwks_file: Some(file),
            dev_mode: true,
            ..BreakGlassArgs::disabled()
        };
        let keys = Arc::new(SealKeys::parse(&SealKeys::generate_text()).unwrap());
        let bg = BreakGlass::new(&args, keys.clone()).unwrap();
        let token = issuer.mint(
            &auth::DevClaims {
                sub: "ada".into(),
                email: None,
                kind: domain::IdentityKind::Member,
                roles: vec![AUDITOR.into()],
            },
            "hush",
            Duration::from_secs(60),
        );
        let mut headers = HeaderMap::new();
        headers.insert(USER_TOKEN_HEADER, token.parse().unwrap());
        let user = bg.user(&headers).await.unwrap();
        assert!(user.has_role(AUDITOR));
        headers.insert(USER_TOKEN_HEADER, "not-a-token".parse().unwrap());
        assert!(matches!(
            bg.user(&headers).await,
            Err(BgError::UserToken(_))
        ));
        // Without an IdP break-glass is off.
        let off = BreakGlass::new(&BreakGlassArgs::disabled(), keys).unwrap();
        assert!(matches!(off.user(&headers).await, Err(BgError::Disabled)));
    }
}
