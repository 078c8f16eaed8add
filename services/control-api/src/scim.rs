//! SCIM 2.0 provisioning of users (RFC 7643, RFC 7644), at `/scim/v2`: how the company's IdP
//! (Entra ID, Okta, …) tells Hush who its people are and what kind each is.
//!
//! control-api speaks SCIM and keeps nothing: every user lives in the isolated tenant, sealed
//! ([`tenant_api::directory`]), with an identity whose kind the directory decides. The kind
//! comes from a configured attribute (`HUSH_SCIM_KIND_ATTRIBUTE`, e.g. Entra's `userType`, or an
//! extension attribute by its full URN path); the subject the person's tokens carry comes from
//! `userName` or `externalId` (`HUSH_SCIM_SUBJECT_ATTRIBUTE`). A change of kind ends, at once,
//! every membership the new kind's labels bar; `active: false` and DELETE offboard.
//!
//! The provisioning client has its own bearer credential (`HUSH_SCIM_TOKEN_FILE`), never a
//! user token, and a rate limit. Errors are SCIM error bodies (`application/scim+json`), as
//! the IdPs expect. Filters: `userName eq "…"` and `externalId eq "…"` (and `and` of both);
//! others are refused with `invalidFilter`. PATCH takes the forms Entra ID and Okta send:
//! operations named in any case, with or without a path, value paths such as
//! `emails[type eq "work"].value`, extension attributes by URN, and `"True"`/`"False"` strings
//! for booleans.

use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use domain::{Email, IdentityKind, Subject};
use http::{header, HeaderMap, StatusCode};
use serde_json::{json, Map, Value};
use service_kit::limits::{us, LimitTable, Rate};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use tenant_api::directory::{DirectoryFind, DirectoryUser, DirectoryWrite, MAX_PAGE};
use tenant_client::{TenantClient, TenantError};
use uuid::Uuid;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SCIM_JSON: &str = "application/scim+json";
/// The most operations one PATCH carries.
pub const MAX_PATCH_OPERATIONS: usize = 100;

/// SCIM provisioning settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ScimArgs {
    /// A file holding the bearer token the IdP's provisioning client presents (one line; at
    /// least 32 characters). Unset: no `/scim/v2` at all.
    #[arg(long, env = "HUSH_SCIM_TOKEN_FILE")]
    pub scim_token_file: Option<PathBuf>,
    /// Which SCIM attribute holds the subject the person's tokens carry: `userName` or
    /// `externalId`.
    #[arg(long, env = "HUSH_SCIM_SUBJECT_ATTRIBUTE", default_value = "userName")]
    pub scim_subject_attribute: String,
    /// Which attribute says the person's kind: a core attribute (`userType`) or an extension
    /// attribute by its full path (`urn:…:User:kind`). Its value `member` (or `employee`),
    /// `guest` or `agent`, in any case, is the kind.
    #[arg(long, env = "HUSH_SCIM_KIND_ATTRIBUTE", default_value = "userType")]
    pub scim_kind_attribute: String,
    /// The kind of a user whose kind attribute is missing or says something else: `agent` by
    /// default, which every default label bars (fail closed: set `member` only if every
    /// provisioned user without the attribute is an employee).
    #[arg(long, env = "HUSH_SCIM_DEFAULT_KIND", default_value = "agent")]
    pub scim_default_kind: String,
    /// Most SCIM requests a second, all clients and all replicas together (the budget is kept
    /// in control-api's database); more are answered 429.
    #[arg(long, env = "HUSH_SCIM_RATE", default_value_t = 50)]
    pub scim_rate: u32,
}

impl Default for ScimArgs {
    fn default() -> Self {
        Self {
            scim_token_file: None,
            scim_subject_attribute: "userName".into(),
            scim_kind_attribute: "userType".into(),
            scim_default_kind: "agent".into(),
            scim_rate: 50,
        }
    }
}

/// The SCIM endpoint's settings, loaded.
pub struct Scim {
    token_hash: [u8; 32],
    subject_from_external_id: bool,
    kind_attribute: String,
    default_kind: IdentityKind,
    rate: Rate,
}

/// The SCIM budget's name in the `rate_limits` table: it belongs to no one.
const SCIM_BUDGET: &[u8] = b"control/scim";

impl std::fmt::Debug for Scim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scim")
            .field("kind_attribute", &self.kind_attribute)
            .finish_non_exhaustive()
    }
}

impl Scim {
    /// The settings, or `None` when no token file is configured.
    pub fn load(args: &ScimArgs) -> anyhow::Result<Option<Self>> {
        let Some(path) = &args.scim_token_file else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading HUSH_SCIM_TOKEN_FILE {}: {e}", path.display()))?;
        Self::with_token(token.trim(), args).map(Some)
    }

    /// The settings with `token` as the provisioning client's credential.
    pub fn with_token(token: &str, args: &ScimArgs) -> anyhow::Result<Self> {
        anyhow::ensure!(
            token.len() >= 32,
            "the SCIM token must be at least 32 characters"
        );
        let subject_from_external_id = match args.scim_subject_attribute.as_str() {
            "userName" => false,
            "externalId" => true,
            other => anyhow::bail!(
                "HUSH_SCIM_SUBJECT_ATTRIBUTE must be userName or externalId, not '{other}'"
            ),
        };
        let default_kind = IdentityKind::parse(&args.scim_default_kind).map_err(|_| {
            anyhow::anyhow!("HUSH_SCIM_DEFAULT_KIND must be member, guest or agent")
        })?;
        Ok(Self {
            token_hash: Sha256::digest(token.as_bytes()).into(),
            subject_from_external_id,
            kind_attribute: args.scim_kind_attribute.clone(),
            default_kind,
            rate: Rate::per(args.scim_rate.max(1), 1_000_000),
        })
    }

    /// Checks the bearer token and the rate limit, a budget every replica spends from
    /// (`table`). When the budget cannot be read the request is refused with 503: provisioning
    /// retries, and a limit that silently vanished would let a misbehaving client flood the
    /// tenant's directory.
    async fn admit(&self, headers: &HeaderMap, table: &dyn LimitTable) -> Result<(), ScimError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| <[u8; 32]>::from(Sha256::digest(t.trim().as_bytes())));
        // Digests compared: the time taken says nothing about the token.
        if presented != Some(self.token_hash) {
            return Err(ScimError::new(
                StatusCode::UNAUTHORIZED,
                None,
                "a valid SCIM bearer token is required",
            ));
        }
        let now = us(service_kit::db::now_ms());
        match table.spend(SCIM_BUDGET, SCIM_BUDGET, self.rate, now).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(ScimError::new(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                "too many SCIM requests; retry in a second",
            )),
            Err(e) => {
                // The table holds a fixed name and a time: its errors quote nothing personal.
                tracing::warn!(error = %e, "the SCIM rate budget cannot be read");
                Err(ScimError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the rate limit cannot be checked; retry later",
                ))
            }
        }
    }

    /// What Hush reads from a SCIM user: who, where mail goes, what kind.
    pub fn map(&self, resource: &Value) -> Result<DirectoryWrite, ScimError> {
        let invalid = |d: &str| ScimError::new(StatusCode::BAD_REQUEST, Some("invalidValue"), d);
        let obj = resource
            .as_object()
            .ok_or_else(|| invalid("a User must be a JSON object"))?;
        let user_name = attr(obj, "userName")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("userName is required"))?
            .to_string();
        let external_id = match attr(obj, "externalId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err(invalid("externalId must be a non-empty string")),
        };
        let active = match attr(obj, "active") {
            None | Some(Value::Null) => true,
            Some(v) => boolean(v).ok_or_else(|| invalid("active must be a boolean"))?,
        };
        let raw_subject = if self.subject_from_external_id {
            external_id.clone().ok_or_else(|| {
                invalid("externalId is required: it is the subject of the person's tokens")
            })?
        } else {
            user_name.clone()
        };
        let subject =
            Subject::parse(raw_subject).map_err(|e| invalid(&format!("the subject: {e}")))?;
        let email = primary_email(obj)
            .map(|e| Email::parse(e).map_err(|e| invalid(&format!("emails: {e}"))))
            .transpose()?;
        let kind = self
            .kind_value(obj)
            .and_then(|v| match v.to_ascii_lowercase().as_str() {
                "member" | "employee" => Some(IdentityKind::Member),
                "guest" => Some(IdentityKind::Guest),
                "agent" => Some(IdentityKind::Agent),
                _ => None,
            })
            .unwrap_or(self.default_kind);
        let mut stored = obj.clone();
        for k in ["id", "meta", "schemas"] {
            stored.retain(|key, _| !key.eq_ignore_ascii_case(k));
        }
        Ok(DirectoryWrite {
            user_name,
            external_id,
            active,
            subject,
            email,
            kind,
            resource: Value::Object(stored),
        })
    }

    /// The kind attribute's value: a core attribute, or `urn:…:attr` in its extension.
    fn kind_value<'a>(&self, obj: &'a Map<String, Value>) -> Option<&'a str> {
        match self.kind_attribute.rsplit_once(':') {
            Some((urn, name)) => attr(obj, urn)
                .and_then(Value::as_object)
                .and_then(|ext| attr(ext, name)),
            None => attr(obj, &self.kind_attribute),
        }
        .and_then(Value::as_str)
    }
}

/// An attribute of `obj`, its name compared ignoring case (SCIM names are case-insensitive).
fn attr<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// A boolean, or the `"True"` / `"False"` strings Entra ID sends.
fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// The primary e-mail address, else the first.
fn primary_email(obj: &Map<String, Value>) -> Option<&str> {
    let emails = attr(obj, "emails")?.as_array()?;
    let primary = emails
        .iter()
        .find(|e| e.get("primary").and_then(boolean) == Some(true))
        .or_else(|| emails.first())?;
    primary.get("value").and_then(Value::as_str)
}

/// A SCIM error (RFC 7644 §3.12).
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: &str) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.to_string(),
        }
    }

    fn from_tenant(e: TenantError) -> Self {
        match e {
            TenantError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, None, "no such User"),
            TenantError::Conflict(_) => Self::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                "another User has this userName or externalId",
            ),
            other => {
                tracing::warn!(error = %other, "a SCIM call did not reach the tenant");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the directory is not answering; retry later",
                )
            }
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = t.into();
        }
        let mut res = scim_json(self.status, &body);
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            res.headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        }
        res
    }
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, SCIM_JSON)],
        serde_json::to_string(body).expect("JSON serializes"),
    )
        .into_response()
}

/// The SCIM routes; mounted only when a token is configured.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route(
            "/scim/v2/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/ResourceTypes/{id}", get(resource_type))
        .route("/scim/v2/Schemas", get(schemas))
        .route("/scim/v2/Schemas/{id}", get(schema))
        .route("/scim/v2/Users/.search", axum::routing::post(search_users))
        .route("/scim/v2/.search", axum::routing::post(search_users))
        .route("/scim/v2/{*rest}", axum::routing::any(unknown))
}

/// Anything else under `/scim/v2`: a SCIM 404.
async fn unknown() -> Response {
    ScimError::new(StatusCode::NOT_FOUND, None, "no such SCIM endpoint").into_response()
}

/// Keeps what `attributes` names (and always `id`, `schemas`, `meta`), or drops what
/// `excludedAttributes` names (RFC 7644 §3.9). Names are compared ignoring case; `name.givenName`
/// names a sub-attribute.
fn project(resource: Value, attributes: Option<&str>, excluded: Option<&str>) -> Value {
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|a| {
                a.trim()
                    .trim_start_matches(&format!("{USER_SCHEMA}:"))
                    .to_string()
            })
            .filter(|a| !a.is_empty())
            .collect()
    };
    let Value::Object(mut r) = resource else {
        return resource;
    };
    if let Some(keep) = attributes.map(list).filter(|l| !l.is_empty()) {
        let mut out = Map::new();
        for (k, v) in r {
            let always = ["id", "schemas", "meta"]
                .iter()
                .any(|a| k.eq_ignore_ascii_case(a));
            let whole = keep.iter().any(|a| a.eq_ignore_ascii_case(&k));
            let subs: Vec<&str> = keep
                .iter()
                .filter_map(|a| a.split_once('.'))
                .filter(|(p, _)| p.eq_ignore_ascii_case(&k))
                .map(|(_, s)| s)
                .collect();
            if always || whole {
                out.insert(k, v);
            } else if !subs.is_empty() {
                if let Value::Object(o) = v {
                    let kept: Map<String, Value> = o
                        .into_iter()
                        .filter(|(sk, _)| subs.iter().any(|s| s.eq_ignore_ascii_case(sk)))
                        .collect();
                    out.insert(k, Value::Object(kept));
                }
            }
        }
        return Value::Object(out);
    }
    if let Some(drop) = excluded.map(list) {
        for a in drop {
            match a.split_once('.') {
                None if !["id", "schemas"].iter().any(|x| x.eq_ignore_ascii_case(&a)) => {
                    let key = key_of(&r, &a);
                    r.remove(&key);
                }
                Some((p, sub)) => {
                    let key = key_of(&r, p);
                    if let Some(Value::Object(o)) = r.get_mut(&key) {
                        let k = key_of(o, sub);
                        o.remove(&k);
                    }
                }
                None => {}
            }
        }
    }
    Value::Object(r)
}

/// A query parameter, its name compared ignoring case.
fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The SCIM settings and the tenant's directory client, once the caller is admitted.
async fn admitted<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<(&'a Scim, &'a TenantClient), ScimError> {
    let scim = state
        .scim
        .as_deref()
        .ok_or_else(|| ScimError::new(StatusCode::NOT_FOUND, None, "SCIM is not configured"))?;
    scim.admit(headers, state.store.limit_table().as_ref())
        .await?;
    let tenant = state.tenant.directory().ok_or_else(|| {
        ScimError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the directory is not available",
        )
    })?;
    Ok((scim, tenant))
}

/// The body as a JSON object (`application/scim+json` or `application/json`).
fn body_json(body: &Bytes) -> Result<Value, ScimError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ScimError::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            &format!("the body is not JSON: {e}"),
        )
    })?;
    if !v.is_object() {
        return Err(ScimError::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "the body must be a JSON object",
        ));
    }
    Ok(v)
}

fn rfc3339(ms: i64) -> String {
    crate::catalog_audit::rfc3339(ms)
}

/// The SCIM resource of a stored user.
fn resource_of(u: &DirectoryUser) -> Value {
    let mut r = u.user.resource.as_object().cloned().unwrap_or_default();
    let mut schemas = vec![Value::from(USER_SCHEMA)];
    for k in r.keys() {
        if k.starts_with("urn:") {
            schemas.push(Value::from(k.as_str()));
        }
    }
    r.insert("schemas".into(), Value::Array(schemas));
    r.insert("id".into(), u.id.to_string().into());
    r.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": rfc3339(u.created_ms),
            "lastModified": rfc3339(u.modified_ms),
            "location": format!("/scim/v2/Users/{}", u.id),
            "version": format!("W/\"{}\"", u.version),
        }),
    );
    Value::Object(r)
}

fn user_id(raw: &str) -> Result<Uuid, ScimError> {
    Uuid::parse_str(raw).map_err(|_| ScimError::new(StatusCode::NOT_FOUND, None, "no such User"))
}

async fn create_user(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let state = state.for_request(&x_request_id);
    let run = async {
        let (scim, tenant) = admitted(&state, &headers).await?;
        let write = scim.map(&body_json(&body)?)?;
        let user = tenant
            .directory_create(&write)
            .await
            .map_err(ScimError::from_tenant)?;
        let mut res = scim_json(StatusCode::CREATED, &resource_of(&user));
        if let Ok(v) = http::HeaderValue::from_str(&format!("/scim/v2/Users/{}", user.id)) {
            res.headers_mut().insert(header::LOCATION, v);
        }
        Ok::<_, ScimError>(res)
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn get_user(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let state = state.for_request(&x_request_id);
    let run = async {
        let (_, tenant) = admitted(&state, &headers).await?;
        let user = tenant
            .directory_get(user_id(&id)?)
            .await
            .map_err(ScimError::from_tenant)?;
        let r = project(
            resource_of(&user),
            param(&q, "attributes"),
            param(&q, "excludedAttributes"),
        );
        Ok::<_, ScimError>(scim_json(StatusCode::OK, &r))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn replace_user(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let state = state.for_request(&x_request_id);
    let run = async {
        let (scim, tenant) = admitted(&state, &headers).await?;
        let write = scim.map(&body_json(&body)?)?;
        let user = tenant
            .directory_replace(user_id(&id)?, &write)
            .await
            .map_err(ScimError::from_tenant)?;
        Ok::<_, ScimError>(scim_json(StatusCode::OK, &resource_of(&user)))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn patch_user(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let state = state.for_request(&x_request_id);
    let run = async {
        let (scim, tenant) = admitted(&state, &headers).await?;
        let id = user_id(&id)?;
        let patch = body_json(&body)?;
        let before = tenant
            .directory_get(id)
            .await
            .map_err(ScimError::from_tenant)?;
        let mut resource = before.user.resource.clone();
        apply_patch(&mut resource, &patch)?;
        let write = scim.map(&resource)?;
        let user = tenant
            .directory_replace(id, &write)
            .await
            .map_err(ScimError::from_tenant)?;
        Ok::<_, ScimError>(scim_json(StatusCode::OK, &resource_of(&user)))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn delete_user(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let state = state.for_request(&x_request_id);
    let run = async {
        let (_, tenant) = admitted(&state, &headers).await?;
        let id = user_id(&id)?;
        // RFC 7644 §3.6: a User that is not there is 404.
        tenant
            .directory_get(id)
            .await
            .map_err(ScimError::from_tenant)?;
        tenant
            .directory_delete(id)
            .await
            .map_err(ScimError::from_tenant)?;
        Ok::<_, ScimError>(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn list_users(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let state = state.for_request(&x_request_id);
    let number = |k: &str| param(&q, k).map(str::to_string);
    let query = ListQuery {
        filter: param(&q, "filter").map(str::to_string),
        start_index: number("startIndex"),
        count: number("count"),
        attributes: param(&q, "attributes").map(str::to_string),
        excluded: param(&q, "excludedAttributes").map(str::to_string),
    };
    list(&state, &headers, query)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /Users/.search` (RFC 7644 §3.4.3): the query in the body.
async fn search_users(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let state = state.for_request(&x_request_id);
    let run = async {
        let b = body_json(&body)?;
        let text = |k: &str| {
            b.as_object().and_then(|o| attr(o, k)).map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            })
        };
        let query = ListQuery {
            filter: text("filter"),
            start_index: text("startIndex"),
            count: text("count"),
            attributes: text("attributes"),
            excluded: text("excludedAttributes"),
        };
        list(&state, &headers, query).await
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// A list query, from the URL or a `.search` body.
struct ListQuery {
    filter: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded: Option<String>,
}

async fn list(state: &AppState, headers: &HeaderMap, q: ListQuery) -> Result<Response, ScimError> {
    let (_, tenant) = admitted(state, headers).await?;
    let number = |v: &Option<String>, k: &str, default: u64| -> Result<u64, ScimError> {
        v.as_deref()
            .map(|v| {
                v.parse::<i64>()
                    .map(|n| u64::try_from(n.max(0)).unwrap_or(0))
                    .map_err(|_| {
                        ScimError::new(
                            StatusCode::BAD_REQUEST,
                            Some("invalidValue"),
                            &format!("{k} must be a number"),
                        )
                    })
            })
            .transpose()
            .map(|n| n.unwrap_or(default))
    };
    let start_index = number(&q.start_index, "startIndex", 1)?.max(1);
    let count = number(&q.count, "count", 100)?.min(MAX_PAGE);
    let mut find = DirectoryFind {
        user_name: None,
        external_id: None,
        start_index,
        count,
    };
    if let Some(f) = &q.filter {
        narrow(&mut find, f)?;
    }
    let page = tenant
        .directory_find(&find)
        .await
        .map_err(ScimError::from_tenant)?;
    let resources: Vec<Value> = page
        .users
        .iter()
        .map(|u| {
            project(
                resource_of(u),
                q.attributes.as_deref(),
                q.excluded.as_deref(),
            )
        })
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": page.total,
            "startIndex": start_index,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    ))
}

/// Narrows a lookup by a filter: `userName eq "…"`, `externalId eq "…"`, or both with `and`.
fn narrow(find: &mut DirectoryFind, filter: &str) -> Result<(), ScimError> {
    use scim_v2::filter::{AttrExp, CompValue, CompareOp, Filter};
    let invalid = |d: &str| ScimError::new(StatusCode::BAD_REQUEST, Some("invalidFilter"), d);
    let parsed = Filter::from_str(filter)
        .map_err(|e| invalid(&format!("the filter does not parse: {e}")))?;
    let terms: Vec<Filter> = match parsed {
        Filter::And(ops) => ops.into_vec(),
        other => vec![other],
    };
    for term in terms {
        match term {
            Filter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(v)))
                if path.sub_attr.is_none()
                    && path.uri.as_deref().is_none_or(|u| u == USER_SCHEMA) =>
            {
                if path.name.eq_ignore_ascii_case("userName") {
                    find.user_name = Some(v);
                } else if path.name.eq_ignore_ascii_case("externalId") {
                    find.external_id = Some(v);
                } else {
                    return Err(invalid("only userName and externalId can be filtered on"));
                }
            }
            _ => return Err(invalid(
                "only `userName eq \"…\"` and `externalId eq \"…\"` (joined by and) are supported",
            )),
        }
    }
    Ok(())
}

/// Applies a SCIM PATCH (RFC 7644 §3.5.2) to `resource`.
pub fn apply_patch(resource: &mut Value, patch: &Value) -> Result<(), ScimError> {
    let invalid = |t: &'static str, d: &str| ScimError::new(StatusCode::BAD_REQUEST, Some(t), d);
    let schemas_ok = patch
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(PATCH_SCHEMA)));
    if !schemas_ok {
        return Err(invalid("invalidSyntax", "a PATCH names the PatchOp schema"));
    }
    let ops = patch
        .as_object()
        .and_then(|o| attr(o, "Operations"))
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("invalidSyntax", "a PATCH has Operations"))?;
    if ops.len() > MAX_PATCH_OPERATIONS {
        return Err(invalid("tooMany", "at most 100 operations a PATCH"));
    }
    let root = resource
        .as_object_mut()
        .ok_or_else(|| invalid("invalidSyntax", "the stored User is not an object"))?;
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| invalid("invalidSyntax", "an operation names its op"))?;
        let value = op.get("value").cloned();
        let path = op.get("path").and_then(Value::as_str);
        match (name.as_str(), path) {
            ("add" | "replace", None) => {
                let Some(Value::Object(values)) = value else {
                    return Err(invalid(
                        "invalidValue",
                        "an operation without a path takes an object value",
                    ));
                };
                for (k, v) in values {
                    if k.contains('.') && !k.starts_with("urn:") {
                        set_path(root, &k, v, name == "add")?;
                    } else {
                        merge_into(root, &k, v, name == "add");
                    }
                }
            }
            ("remove", None) => return Err(invalid("noTarget", "remove needs a path")),
            ("add" | "replace", Some(p)) => {
                let v =
                    value.ok_or_else(|| invalid("invalidValue", "add and replace take a value"))?;
                set_path(root, p, v, name == "add")?;
            }
            ("remove", Some(p)) => remove_path(root, p)?,
            _ => {
                return Err(invalid(
                    "invalidSyntax",
                    "op must be add, replace or remove",
                ))
            }
        }
    }
    Ok(())
}

/// The key of `obj` that names `name` ignoring case, or `name`.
fn key_of(obj: &Map<String, Value>, name: &str) -> String {
    obj.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// Sets `obj[name]` to `v`: objects merge, arrays grow on add, anything else is replaced.
fn merge_into(obj: &mut Map<String, Value>, name: &str, v: Value, add: bool) {
    let key = key_of(obj, name);
    match (obj.get_mut(&key), v) {
        (Some(Value::Object(existing)), Value::Object(new)) => {
            for (k, x) in new {
                merge_into(existing, &k, x, add);
            }
        }
        (Some(Value::Array(existing)), Value::Array(new)) if add => {
            for x in new {
                if !existing.contains(&x) {
                    existing.push(x);
                }
            }
        }
        (_, v) => {
            obj.insert(key, v);
        }
    }
}

fn parse_path(p: &str) -> Result<scim_v2::filter::PatchPath, ScimError> {
    scim_v2::filter::PatchPath::from_str(p).map_err(|e| {
        ScimError::new(
            StatusCode::BAD_REQUEST,
            Some("invalidPath"),
            &format!("the path does not parse: {e}"),
        )
    })
}

/// The object an attribute path lives in: the resource, or its extension's object.
fn container<'a>(
    root: &'a mut Map<String, Value>,
    uri: Option<&str>,
) -> &'a mut Map<String, Value> {
    match uri {
        Some(u) if !u.eq_ignore_ascii_case(USER_SCHEMA) => {
            let key = key_of(root, u);
            let slot = root.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            slot.as_object_mut().expect("an object")
        }
        _ => root,
    }
}

fn set_path(root: &mut Map<String, Value>, p: &str, v: Value, add: bool) -> Result<(), ScimError> {
    use scim_v2::filter::PatchPath;
    match parse_path(p)? {
        PatchPath::Attr(a) => {
            let obj = container(root, a.uri.as_deref());
            match a.sub_attr {
                None => merge_into(obj, &a.name, v, add),
                Some(sub) => {
                    let key = key_of(obj, &a.name);
                    let slot = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
                    if !slot.is_object() {
                        *slot = Value::Object(Map::new());
                    }
                    merge_into(slot.as_object_mut().expect("an object"), &sub, v, add);
                }
            }
        }
        PatchPath::Value(vp) => {
            let obj = container(root, vp.attr.uri.as_deref());
            let key = key_of(obj, &vp.attr.name);
            let slot = obj.entry(key).or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = slot else {
                return Err(ScimError::new(
                    StatusCode::BAD_REQUEST,
                    Some("invalidPath"),
                    "a value path needs a multi-valued attribute",
                ));
            };
            let mut matched = false;
            for item in items.iter_mut() {
                if matches_filter(item, &vp.filter) {
                    matched = true;
                    match (&vp.sub_attr, item.as_object_mut()) {
                        (Some(sub), Some(o)) => merge_into(o, sub, v.clone(), add),
                        _ => *item = v.clone(),
                    }
                }
            }
            // Entra ID sets `emails[type eq "work"].value` on a user without one: the element
            // the filter describes is made.
            if !matched {
                let mut fresh = Map::new();
                for (name, value) in equalities(&vp.filter) {
                    fresh.insert(name, value);
                }
                match &vp.sub_attr {
                    Some(sub) => {
                        fresh.insert(sub.clone(), v);
                    }
                    None => {
                        if let Value::Object(o) = v {
                            fresh.extend(o);
                        }
                    }
                }
                items.push(Value::Object(fresh));
            }
        }
    }
    Ok(())
}

fn remove_path(root: &mut Map<String, Value>, p: &str) -> Result<(), ScimError> {
    use scim_v2::filter::PatchPath;
    match parse_path(p)? {
        PatchPath::Attr(a) => {
            let obj = container(root, a.uri.as_deref());
            let key = key_of(obj, &a.name);
            match a.sub_attr {
                None => {
                    obj.remove(&key);
                }
                Some(sub) => {
                    if let Some(Value::Object(o)) = obj.get_mut(&key) {
                        let k = key_of(o, &sub);
                        o.remove(&k);
                    }
                }
            }
        }
        PatchPath::Value(vp) => {
            let obj = container(root, vp.attr.uri.as_deref());
            let key = key_of(obj, &vp.attr.name);
            if let Some(Value::Array(items)) = obj.get_mut(&key) {
                match &vp.sub_attr {
                    None => items.retain(|i| !matches_filter(i, &vp.filter)),
                    Some(sub) => {
                        for i in items.iter_mut().filter(|i| matches_filter(i, &vp.filter)) {
                            if let Some(o) = i.as_object_mut() {
                                let k = key_of(o, sub);
                                o.remove(&k);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether a multi-valued attribute's element matches a value filter (`eq`, `ne`, `pr`,
/// `and`, `or`, `not`; strings compared ignoring case, as SCIM compares most).
fn matches_filter(item: &Value, f: &scim_v2::filter::ValFilter) -> bool {
    use scim_v2::filter::{AttrExp, CompValue, CompareOp, ValFilter};
    let field = |name: &str| item.as_object().and_then(|o| attr(o, name));
    match f {
        ValFilter::Attr(AttrExp::Present(p)) => field(&p.name).is_some_and(|v| !v.is_null()),
        ValFilter::Attr(AttrExp::Comparison(p, op, value)) => {
            let got = field(&p.name);
            let equal = match (got, value) {
                (Some(Value::String(a)), CompValue::Str(b)) => a.eq_ignore_ascii_case(b),
                (Some(v), CompValue::True) => boolean(v) == Some(true),
                (Some(v), CompValue::False) => boolean(v) == Some(false),
                (None | Some(Value::Null), CompValue::Null) => true,
                (Some(Value::Number(a)), CompValue::Number(b)) => a == b,
                _ => false,
            };
            match op {
                CompareOp::Eq => equal,
                CompareOp::Ne => !equal,
                _ => false,
            }
        }
        ValFilter::Not(inner) => !matches_filter(item, inner),
        ValFilter::And(ops) => ops.as_slice().iter().all(|g| matches_filter(item, g)),
        ValFilter::Or(ops) => ops.as_slice().iter().any(|g| matches_filter(item, g)),
    }
}

/// The `attr eq value` terms of a value filter (joined by `and`): what a new element holds.
fn equalities(f: &scim_v2::filter::ValFilter) -> Vec<(String, Value)> {
    use scim_v2::filter::{AttrExp, CompValue, CompareOp, ValFilter};
    match f {
        ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, v)) => {
            let v = match v {
                CompValue::Str(s) => Value::from(s.as_str()),
                CompValue::True => Value::Bool(true),
                CompValue::False => Value::Bool(false),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Null => Value::Null,
            };
            vec![(p.name.clone(), v)]
        }
        ValFilter::And(ops) => ops.as_slice().iter().flat_map(equalities).collect(),
        _ => Vec::new(),
    }
}

async fn service_provider_config(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = admitted(&state, &headers).await {
        return e.into_response();
    }
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/hush/hush/blob/main/docs/scim.md",
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_PAGE},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "The provisioning client's own token (HUSH_SCIM_TOKEN_FILE), never a user's.",
                "primary": true
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": "/scim/v2/ServiceProviderConfig"}
        }),
    )
}

fn user_resource_type() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A person or AI agent the company's IdP provisions",
        "schema": USER_SCHEMA,
        "meta": {"resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/User"}
    })
}

async fn resource_types(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = admitted(&state, &headers).await {
        return e.into_response();
    }
    scim_json(
        StatusCode::OK,
        &json!({"schemas": [LIST_SCHEMA], "totalResults": 1, "startIndex": 1, "itemsPerPage": 1, "Resources": [user_resource_type()]}),
    )
}

async fn resource_type(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let state = state.for_request(&x_request_id);
    if let Err(e) = admitted(&state, &headers).await {
        return e.into_response();
    }
    if id == "User" {
        scim_json(StatusCode::OK, &user_resource_type())
    } else {
        ScimError::new(StatusCode::NOT_FOUND, None, "no such resource type").into_response()
    }
}

fn attribute(
    name: &str,
    kind: &str,
    multi: bool,
    required: bool,
    sub: Option<Vec<Value>>,
) -> Value {
    let mut a = json!({
        "name": name,
        "type": kind,
        "multiValued": multi,
        "description": name,
        "required": required,
        "caseExact": false,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": if name == "userName" { "server" } else { "none" },
    });
    if let Some(sub) = sub {
        a["subAttributes"] = Value::Array(sub);
    }
    a
}

fn user_schema() -> Value {
    let string = |n: &str| attribute(n, "string", false, false, None);
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "User Account",
        "attributes": [
            attribute("userName", "string", false, true, None),
            attribute("name", "complex", false, false, Some(vec![string("formatted"), string("familyName"), string("givenName")])),
            string("displayName"),
            string("userType"),
            attribute("active", "boolean", false, false, None),
            attribute("emails", "complex", true, false, Some(vec![string("value"), string("type"), attribute("primary", "boolean", false, false, None)])),
        ],
        "meta": {"resourceType": "Schema", "location": format!("/scim/v2/Schemas/{USER_SCHEMA}")}
    })
}

async fn schemas(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = admitted(&state, &headers).await {
        return e.into_response();
    }
    scim_json(
        StatusCode::OK,
        &json!({"schemas": [LIST_SCHEMA], "totalResults": 1, "startIndex": 1, "itemsPerPage": 1, "Resources": [user_schema()]}),
    )
}

async fn schema(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let state = state.for_request(&x_request_id);
    if let Err(e) = admitted(&state, &headers).await {
        return e.into_response();
    }
    if id == USER_SCHEMA {
        scim_json(StatusCode::OK, &user_schema())
    } else {
        ScimError::new(StatusCode::NOT_FOUND, None, "no such schema").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scim(kind_attribute: &str) -> Scim {
        let args = ScimArgs {
            scim_kind_attribute: kind_attribute.into(),
            ..ScimArgs::default()
        };
        Scim::with_token(&"t".repeat(32), &args).unwrap()
    }

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA],
            "userName": "newhire@corp.example",
            "externalId": "00aa",
            "active": true,
            "userType": "Member",
            "emails": [{"value": "newhire@corp.example", "type": "work", "primary": true}],
            "name": {"givenName": "New", "familyName": "Hire"}
        })
    }

    #[test]
    fn the_kind_comes_from_the_configured_attribute_and_fails_closed() {
        let s = scim("userType");
        assert_eq!(s.map(&user()).unwrap().kind, IdentityKind::Member);
        let mut guest = user();
        guest["userType"] = "Guest".into();
        assert_eq!(s.map(&guest).unwrap().kind, IdentityKind::Guest);
        let mut unknown = user();
        unknown["userType"] = "Contractor".into();
        assert_eq!(
            s.map(&unknown).unwrap().kind,
            IdentityKind::Agent,
            "not said: the most barred"
        );
        let ext = scim("urn:ietf:params:scim:schemas:extension:hush:2.0:User:kind");
        let mut agent = user();
        agent["urn:ietf:params:scim:schemas:extension:hush:2.0:User"] = json!({"kind": "agent"});
        assert_eq!(ext.map(&agent).unwrap().kind, IdentityKind::Agent);
        let w = s.map(&user()).unwrap();
        assert_eq!(w.subject.as_str(), "newhire@corp.example");
        assert_eq!(w.email.unwrap().as_str(), "newhire@corp.example");
        assert!(w.resource.get("schemas").is_none());
        assert!(
            s.map(&json!({"active": true})).is_err(),
            "userName is required"
        );
    }

    #[test]
    fn entra_and_okta_patch_forms_apply() {
        let mut r = user();
        // Entra ID: capitalised ops, string booleans, value paths, extension by URN.
        let entra = json!({
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "nh2@corp.example"},
                {"op": "Replace", "path": "name.givenName", "value": "Newer"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "42"},
                {"op": "Replace", "path": "userType", "value": "Guest"}
            ]
        });
        apply_patch(&mut r, &entra).unwrap();
        let s = scim("userType");
        let w = s.map(&r).unwrap();
        assert!(!w.active);
        assert_eq!(w.kind, IdentityKind::Guest);
        assert_eq!(w.email.unwrap().as_str(), "nh2@corp.example");
        assert_eq!(r["name"]["givenName"], "Newer");
        assert_eq!(
            r["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
            "42"
        );
        // Okta: no path, an object of attributes.
        let okta = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": true}}]});
        apply_patch(&mut r, &okta).unwrap();
        assert!(s.map(&r).unwrap().active);
        // Remove by value path; a new element made from the filter.
        let more = json!({"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "remove", "path": "emails[type eq \"work\"]"},
            {"op": "add", "path": "emails[type eq \"home\"].value", "value": "h@corp.example"}
        ]});
        apply_patch(&mut r, &more).unwrap();
        assert_eq!(
            r["emails"],
            json!([{"type": "home", "value": "h@corp.example"}])
        );
        // Refusals.
        assert!(
            apply_patch(&mut r, &json!({"Operations": []})).is_err(),
            "no PatchOp schema"
        );
        let bad = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "move", "path": "x"}]});
        assert!(apply_patch(&mut r, &bad).is_err());
    }

    #[test]
    fn filters_are_user_name_or_external_id_equality() {
        let mut f = DirectoryFind {
            user_name: None,
            external_id: None,
            start_index: 1,
            count: 10,
        };
        narrow(&mut f, "userName eq \"A@corp.example\"").unwrap();
        assert_eq!(f.user_name.as_deref(), Some("A@corp.example"));
        narrow(&mut f, "externalId eq \"x\" and userName eq \"b\"").unwrap();
        assert_eq!(
            (f.external_id.as_deref(), f.user_name.as_deref()),
            (Some("x"), Some("b"))
        );
        assert!(narrow(&mut f, "displayName eq \"x\"").is_err());
        assert!(narrow(&mut f, "userName co \"x\"").is_err());
        assert!(narrow(&mut f, "userName eq").is_err());
    }
}
