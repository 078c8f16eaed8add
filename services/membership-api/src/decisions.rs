//! Access decisions for apps (issue 18): whether the person presenting their own token may use
//! the resources an app protects, signed so the app can check it offline.
//!
//! Two ways in, both about the presenting person alone:
//!
//! - **token exchange** (RFC 8693): the app posts the person's access token, authenticating
//!   itself with its own credential, and gets a short-lived signed decision for that person and
//!   its own resources;
//! - **assertion**: the person asks for a short-lived signed assertion meant for the app (its
//!   audience) and hands it to the app.
//!
//! No route takes a person the caller does not hold a token of, and no answer names anyone but
//! that person or lists a group's members: an app learns, for one person, which of *its*
//! resources they may use. The rule is [`domain::Guard::grants`]: an active group guarding the
//! resource, whose label admits the person's kind (an agent is refused wherever the label bars
//! agents, whatever the binding) and still ranks at least as high as the resource, and of which
//! the person is a member (the tenant's answer about that one person). Nothing here logs the
//! person or a group (INV-6): the request span carries the route template only.

use crate::error::ApiError;
use crate::limits::Action;
use crate::{AppState, Clock as _};
use auth::Caller;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use control_client::{RelyingPartyLookup, RelyingPartyView};
use domain::{GroupId, IdentityKind};
use http::{header, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use service_kit::{AppJson, Problem};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// RFC 8693's grant type.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of what is issued: a JWT.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Subject token types accepted: the person's access token (or ID token), a JWT from the IdP.
pub const SUBJECT_TOKEN_TYPES: [&str; 3] = [
    "urn:ietf:params:oauth:token-type:access_token",
    "urn:ietf:params:oauth:token-type:id_token",
    JWT_TOKEN_TYPE,
];
/// Longest form body a token exchange may have.
pub const MAX_EXCHANGE_BYTES: usize = 16 * 1024;

/// The decision routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(exchange))
        .routes(routes!(assertion))
        .routes(routes!(jwks))
}

/// How decisions are made and signed: the key, the issuer, the lifetime.
#[derive(Debug)]
pub struct DecisionSettings {
    /// Signs decisions and assertions; its public half is the JWKS.
    pub key: crate::DecisionKey,
    /// `iss` of everything signed.
    pub issuer: String,
    /// Lifetime of everything signed, in seconds.
    pub ttl_secs: u64,
}

/// What a decision or an assertion says, signed (EdDSA) with the key the JWKS publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecisionClaims {
    /// `HUSH_DECISION_ISSUER`.
    pub iss: String,
    /// The person, as the IdP names them (their token's `sub`).
    pub sub: String,
    /// The app's audience: an app accepts only what names its own.
    pub aud: String,
    /// The app's id.
    pub azp: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// A unique id, for apps that refuse replays.
    pub jti: String,
    /// The names of the app's resources the person may use now; any other resource of the
    /// app is refused.
    pub resources: Vec<String>,
    /// How it was obtained: `token-exchange` or `assertion`.
    pub hush_via: String,
}

/// RFC 8693 §2.2.1's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExchangeAnswer {
    /// The signed decision (a JWT whose claims are [`DecisionClaims`]).
    pub access_token: String,
    /// Always `urn:ietf:params:oauth:token-type:jwt`.
    pub issued_token_type: String,
    /// Always `N_A`: the decision is not a token to present anywhere.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The same resources as the signed `resources` claim, for convenience; trust the signed
    /// copy.
    pub resources: Vec<String>,
}

/// A person's request for an assertion meant for one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionRequest {
    /// The app's audience, as its operator registered it.
    pub audience: String,
}

/// A signed assertion for the caller, meant for one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssertionAnswer {
    /// The signed assertion (a JWT whose claims are [`DecisionClaims`]); hand it to the app.
    pub assertion: String,
    /// The app's audience.
    pub audience: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The app's resources the caller may use, as signed.
    pub resources: Vec<String>,
}

/// The form of a token exchange; parameters RFC 8693 defines that Hush does not use are
/// accepted and ignored, as RFC 6749 §3.2 asks.
#[derive(Debug, Deserialize)]
struct ExchangeForm {
    grant_type: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    audience: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The resources of `app` a person of `kind`, a member of exactly the groups `member_of` (of
/// those that could matter), may use: the one rule, [`domain::Guard::grants`], for each guard.
pub fn granted(
    app: &RelyingPartyView,
    kind: IdentityKind,
    member_of: &HashSet<GroupId>,
) -> Vec<String> {
    let mut names: Vec<String> = app
        .resources
        .iter()
        .filter(|r| {
            r.groups
                .iter()
                .any(|g| g.grants(kind, member_of.contains(&g.group), &r.label))
        })
        .map(|r| r.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The groups whose membership could change the answer for a person of `kind`: guards that
/// would grant if the person were a member. The tenant is asked about these only.
fn candidates(app: &RelyingPartyView, kind: IdentityKind) -> HashSet<GroupId> {
    app.resources
        .iter()
        .flat_map(|r| {
            r.groups
                .iter()
                .filter(|g| g.could_grant(kind, &r.label))
                .map(|g| g.group)
        })
        .collect()
}

/// Decides for `caller` at `app` and signs the answer.
async fn decide(
    state: &AppState,
    app: &RelyingPartyView,
    caller: &Caller,
    via: &str,
) -> Result<(String, Vec<String>), ApiError> {
    let candidates = candidates(app, caller.kind);
    // The tenant is asked which of the candidate groups the person is in, and about nothing
    // else: it probes those groups' membership tags only (an app guards its resources with at
    // most a few hundred groups, of the thousands the tenant keeps).
    let candidates: Vec<GroupId> = candidates.into_iter().collect();
    let mut member_of = HashSet::new();
    for chunk in candidates.chunks(tenant_api::MAX_AMONG) {
        member_of.extend(
            state
                .tenant
                .member_of(&caller.subject, caller.email.as_ref(), caller.kind, chunk)
                .await?,
        );
    }
    let resources = granted(app, caller.kind, &member_of);
    let settings = &state.decisions;
    // The wall clock, not the state's clock: apps check `exp` against theirs.
    let iat = u64::try_from(crate::SystemClock.now_ms() / 1000).unwrap_or(0);
    let claims = DecisionClaims {
        iss: settings.issuer.clone(),
        sub: caller.subject.as_str().to_owned(),
        aud: app.audience.clone(),
        azp: app.id.to_string(),
        iat,
        exp: iat + settings.ttl_secs,
        jti: Uuid::new_v4().to_string(),
        resources: resources.clone(),
        hush_via: via.into(),
    };
    let signed = settings
        .key
        .sign(&claims)
        .map_err(|e| ApiError::Signing(e.to_string()))?;
    Ok((signed, resources))
}

/// Whether `secret` is the credential whose SHA-256 is `expected_hex`, comparing in constant
/// time.
fn credential_matches(secret: &str, expected_hex: &str) -> bool {
    let got = hex::encode(Sha256::digest(secret.as_bytes()));
    got.len() == expected_hex.len()
        && got
            .bytes()
            .zip(expected_hex.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The app's id and secret from HTTP Basic (RFC 6749 §2.3.1) or, failing that, the form.
fn client_credentials(headers: &HeaderMap, form: &ExchangeForm) -> Option<(Uuid, String)> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            Some((id.to_owned(), secret.to_owned()))
        });
    let (id, secret) =
        from_header.or_else(|| Some((form.client_id.clone()?, form.client_secret.clone()?)))?;
    Some((Uuid::parse_str(&id).ok()?, secret))
}

/// Exchanges a person's token for an access decision (RFC 8693 token exchange).
///
/// The app authenticates with its own credential (HTTP Basic with its id and secret, or
/// `client_id` and `client_secret` in the form) and posts, as `subject_token`, the access token
/// the person presented to it — issued for Hush or for the app itself, never for another app.
/// The answer's `access_token` is a decision signed with the key at
/// `/membership/v1/decisions/jwks.json`: its `sub` is the person, its `aud` the app's audience,
/// its `resources` the app's resources the person may use now. Nothing about anyone else, never
/// a list of members; without the person's token there is no decision. Budgeted per app
/// (`HUSH_DECISIONS_PER_SECOND_PER_APP`).
#[utoipa::path(
    post,
    path = "/membership/v1/decisions/token",
    tag = "decisions",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "`grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token=<the person's token>&subject_token_type=urn:ietf:params:oauth:token-type:access_token`"),
    responses(
        (status = 200, description = "The decision for the person presenting the token.", body = ExchangeAnswer),
        (status = 400, description = "`invalid-grant`: the person's token is not valid here (expired, voided by an offboarding, issued for another app).", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-input`: not a token exchange (grant type, token type, a missing parameter, an audience that is not the app's).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid-client`: unknown app, wrong credential or a disabled app (one answer for all three).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 16 KiB.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate-limited`: this app asked for too many decisions; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side. `503` The tenant, control-api or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn exchange(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let state = state.for_request(&x_request_id);
    if body.len() > MAX_EXCHANGE_BYTES {
        return Err(ApiError::TooLarge(MAX_EXCHANGE_BYTES));
    }
    let form: ExchangeForm = serde_urlencoded::from_bytes(&body).map_err(|_| {
        ApiError::Invalid("the body must be an application/x-www-form-urlencoded form".into())
    })?;
    if form.grant_type.as_deref() != Some(TOKEN_EXCHANGE_GRANT) {
        return Err(ApiError::Invalid(format!(
            "grant_type must be {TOKEN_EXCHANGE_GRANT}"
        )));
    }
    let subject_token = form
        .subject_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Invalid("subject_token is required: the person's token".into()))?;
    if !form
        .subject_token_type
        .as_deref()
        .is_some_and(|t| SUBJECT_TOKEN_TYPES.contains(&t))
    {
        return Err(ApiError::Invalid(
            "subject_token_type must be urn:ietf:params:oauth:token-type:access_token, \
             id_token or jwt"
                .into(),
        ));
    }
    let (app_id, secret) = client_credentials(&headers, &form).ok_or(ApiError::InvalidClient)?;
    state
        .limits
        .hit(Action::Decision, &app_id.to_string(), state.clock.now_ms())
        .await?;
    let app = state
        .routine_catalog
        .relying_party(&RelyingPartyLookup {
            id: Some(app_id),
            audience: None,
        })
        .await?
        .filter(|a| a.enabled && credential_matches(&secret, &a.credential_sha256))
        .ok_or(ApiError::InvalidClient)?;
    if form.audience.as_deref().is_some_and(|a| a != app.audience) {
        return Err(ApiError::Invalid(
            "audience, when given, must be the app's own".into(),
        ));
    }
    let caller = person(&state, subject_token, &app.audience).await?;
    let (signed, resources) = decide(&state, &app, &caller, "token-exchange").await?;
    let answer = ExchangeAnswer {
        access_token: signed,
        issued_token_type: JWT_TOKEN_TYPE.into(),
        token_type: "N_A".into(),
        expires_in: state.decisions.ttl_secs,
        resources,
    };
    Ok(no_store(AppJson(answer).into_response()))
}

/// The person behind `token`: checked as any user's token is (Hush's audience, or the app's
/// own), and refused when an offboarding voided it. A refused token is the app's
/// `invalid-grant`, not a 401: the app itself authenticated.
async fn person(state: &AppState, token: &str, app_audience: &str) -> Result<Caller, ApiError> {
    let refused = |e: auth::AuthError| {
        if e.is_unauthorized() {
            ApiError::InvalidGrant(e.to_string())
        } else {
            ApiError::Auth(e)
        }
    };
    let caller = state
        .verifier
        .verify_for(token, Some(app_audience))
        .await
        .map_err(refused)?;
    state
        .verifier
        .check_standing(&caller)
        .await
        .map_err(refused)?;
    Ok(caller)
}

/// Marks a response carrying a signed decision as never to be cached (RFC 6749 §5.1).
fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// A signed assertion of the caller's access at one app, for the caller to hand to it.
///
/// The caller names the app by its audience; the assertion's `aud` is that audience, its `sub`
/// the caller, its `resources` the app's resources the caller may use now. It says nothing
/// about anyone else; an app accepts it only if it names the app's own audience.
#[utoipa::path(
    post,
    path = "/membership/v1/me/assertions",
    tag = "decisions",
    security(("bearer" = [])),
    request_body = AssertionRequest,
    responses(
        (status = 200, description = "The assertion, for the caller to present to the app.", body = AssertionAnswer),
        (status = 404, description = "`unknown-app`: no enabled app has this audience.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No valid bearer token. `422` The body is not an assertion request. `429` `rate-limited`: too many assertions asked for by this caller.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side. `503` The tenant, control-api or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn assertion(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    AppJson(req): AppJson<AssertionRequest>,
) -> Result<Response, ApiError> {
    let state = state.for_request(&x_request_id);
    state.limit(Action::Assertion, &caller).await?;
    if req.audience.is_empty() || req.audience.len() > 512 {
        return Err(ApiError::Invalid(
            "audience must be 1 to 512 characters".into(),
        ));
    }
    let app = state
        .routine_catalog
        .relying_party(&RelyingPartyLookup {
            id: None,
            audience: Some(req.audience.clone()),
        })
        .await?
        .filter(|a| a.enabled)
        .ok_or(ApiError::UnknownApp)?;
    let (signed, resources) = decide(&state, &app, &caller, "assertion").await?;
    let answer = AssertionAnswer {
        assertion: signed,
        audience: app.audience,
        expires_in: state.decisions.ttl_secs,
        resources,
    };
    Ok(no_store(AppJson(answer).into_response()))
}

/// The public keys decisions and assertions are signed with (RFC 7517 JWKS, Ed25519). Apps
/// fetch it once and again when a decision names a key id they do not know.
#[utoipa::path(
    get,
    path = "/membership/v1/decisions/jwks.json",
    tag = "decisions",
    responses(
        (status = 200, description = "The JWKS.", body = Object,
            example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "alg": "EdDSA", "use": "sig"}]})),
    )
)]
async fn jwks(State(state): State<AppState>) -> Response {
    let mut res = AppJson(state.decisions.key.jwks()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_client::ResourceView;
    use domain::{GroupState, Guard, Label};

    fn app(resources: Vec<ResourceView>) -> RelyingPartyView {
        RelyingPartyView {
            id: Uuid::new_v4(),
            name: "Reports".into(),
            audience: "https://reports.example".into(),
            credential_sha256: hex::encode(Sha256::digest(b"s3cret")),
            enabled: true,
            resources,
        }
    }

    fn resource(name: &str, label: Label, groups: Vec<Guard>) -> ResourceView {
        ResourceView {
            id: Uuid::new_v4(),
            name: name.into(),
            label,
            groups,
        }
    }

    fn guard(label: &Label) -> Guard {
        Guard {
            group: GroupId::new(),
            state: GroupState::Active,
            label: label.clone(),
        }
    }

    #[test]
    fn a_person_gets_the_resources_a_group_of_theirs_guards_and_nothing_else() {
        let [_, confidential, hc] = <[Label; 3]>::try_from(Label::defaults()).unwrap();
        let (g1, g2) = (guard(&confidential), guard(&hc));
        let a = app(vec![
            resource("team-site", confidential.clone(), vec![g1.clone()]),
            resource("payroll", hc.clone(), vec![g2.clone()]),
            resource("unguarded", confidential, vec![]),
        ]);
        let mine: HashSet<GroupId> = [g1.group].into();
        assert_eq!(granted(&a, IdentityKind::Member, &mine), ["team-site"]);
        assert!(granted(&a, IdentityKind::Member, &HashSet::new()).is_empty());
        let both: HashSet<GroupId> = [g1.group, g2.group].into();
        assert_eq!(
            granted(&a, IdentityKind::Member, &both),
            ["payroll", "team-site"]
        );
        // The labels bar agents and guests: being in the group changes nothing for them, and
        // the tenant is not even asked.
        assert!(granted(&a, IdentityKind::Agent, &both).is_empty());
        assert!(granted(&a, IdentityKind::Guest, &both).is_empty());
        assert!(candidates(&a, IdentityKind::Agent).is_empty());
        assert_eq!(candidates(&a, IdentityKind::Member), both);
    }

    #[test]
    fn credentials_are_compared_by_their_hash() {
        let expected = hex::encode(Sha256::digest(b"s3cret"));
        assert!(credential_matches("s3cret", &expected));
        assert!(!credential_matches("s3cret ", &expected));
        assert!(!credential_matches("", &expected));
        assert!(!credential_matches("s3cret", ""));
    }

    #[test]
    fn client_credentials_come_from_basic_auth_or_the_form() {
        let id = Uuid::new_v4();
        let mut headers = HeaderMap::new();
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:pw:with:colons"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {basic}")).unwrap(),
        );
        let empty = ExchangeForm {
            grant_type: None,
            subject_token: None,
            subject_token_type: None,
            audience: None,
            client_id: None,
            client_secret: None,
        };
        assert_eq!(
            client_credentials(&headers, &empty),
            Some((id, "pw:with:colons".into()))
        );
        let form = ExchangeForm {
            client_id: Some(id.to_string()),
            client_secret: Some("pw".into()),
            ..empty
        };
        assert_eq!(
            client_credentials(&HeaderMap::new(), &form),
            Some((id, "pw".into()))
        );
        let bad_id = ExchangeForm {
            client_id: Some("not-a-uuid".into()),
            ..form
        };
        assert_eq!(client_credentials(&HeaderMap::new(), &bad_id), None);
    }
}
