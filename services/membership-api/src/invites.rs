//! Invite codes for groups whose join policy is `invite`.
//!
//! A code is `HUSH-` and 32 base32 characters: 160 random bits from the operating system, far
//! beyond guessing. Only its SHA-256 is stored (a dump of the table cannot be used to join), and
//! it is shown once, in the answer that creates it. Redeeming stores **no redeemer**: only the
//! invite's use count goes up, so the owner who made it does not learn who used it (beyond what
//! they know from whom they gave it to). Every code that cannot be redeemed — unknown, expired,
//! revoked, used up, malformed — gets the same 404, and each such failure spends the caller's
//! small hourly budget of failed redemptions.

use crate::error::ApiError;
use crate::extract::{check_label, require_active, rfc3339, GroupPath, InvitePath};
use crate::limits::Action;
use crate::membership::{caller_ref, Membership};
use crate::store::{InviteRecord, NewInvite};
use crate::AppState;
use auth::Caller;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use domain::{GroupId, JoinPolicy};
use http::{header, HeaderValue, StatusCode};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use service_kit::{AppJson, Problem};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// What every code starts with, so people (and secret scanners) recognise one.
pub const CODE_PREFIX: &str = "HUSH-";
/// Random bytes in a code: 160 bits.
pub const CODE_BYTES: usize = 20;
// A code must never drop below 128 bits of entropy.
const _: () = assert!(CODE_BYTES * 8 >= 128);
/// Longest input a redemption considers; anything longer cannot be a code.
const MAX_CODE_INPUT: usize = 128;
/// Uses of a new invite unless the owner says otherwise: one person.
pub const DEFAULT_MAX_USES: u32 = 1;
/// Most uses one invite may allow.
pub const MAX_USES: u32 = 10_000;
/// Lifetime of a new invite unless the owner says otherwise: a week.
pub const DEFAULT_EXPIRY_HOURS: u32 = 7 * 24;
/// Longest lifetime an invite may have: 90 days.
pub const MAX_EXPIRY_HOURS: u32 = 90 * 24;
/// Most invites one listing shows (newest first).
pub const MAX_LISTED: u32 = 500;

/// The invite routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
        .routes(routes!(redeem))
}

/// What a new invite allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// How many people may redeem it (1–10000, default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    pub max_uses: Option<u32>,
    /// Hours until it stops working (1–2160, default 168: a week).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2160)]
    pub expires_in_hours: Option<u32>,
}

/// A new invite, with its code: **shown this once**, never stored or shown again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedInvite {
    /// The invite's id (to revoke it; not the code).
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// The group it admits to.
    pub group_id: GroupId,
    /// The code to give to the people invited.
    #[schema(example = "HUSH-7K3QJ5ZB2XW4M6P8R9T1V0Y2A4C6E8GJ")]
    pub code: String,
    /// How many people may redeem it.
    pub max_uses: u32,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

/// An invite as its group's owners see it: counts and dates, never the code, never who
/// redeemed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InviteView {
    /// The invite's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Redemptions so far (a count only: who redeemed is not recorded).
    pub uses: u32,
    /// Redemptions allowed.
    pub max_uses: u32,
    /// When it stops (or stopped) working (RFC 3339).
    pub expires_at: String,
    /// Whether an owner revoked it.
    pub revoked: bool,
    /// `active`, `revoked`, `expired` or `used-up`.
    pub state: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

/// A group's invites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Invites {
    /// Newest first, at most 500.
    pub invites: Vec<InviteView>,
}

/// A code to redeem.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    /// The code, as the owner gave it (case and surrounding spaces do not matter).
    pub code: String,
}

/// The code is a secret: never in debug output.
impl std::fmt::Debug for Redeem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redeem").finish_non_exhaustive()
    }
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32, no padding.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// A fresh code.
fn new_code() -> String {
    let mut bytes = [0u8; CODE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{CODE_PREFIX}{}", base32(&bytes))
}

/// What is hashed: the code as typed, trimmed and upper-cased.
fn normalise(code: &str) -> String {
    code.trim().to_ascii_uppercase()
}

/// The stored form of a code.
fn hash(code: &str) -> [u8; 32] {
    Sha256::digest(normalise(code).as_bytes()).into()
}

fn view(r: InviteRecord, now: i64) -> InviteView {
    let state = if r.revoked {
        "revoked"
    } else if r.expires_at <= now {
        "expired"
    } else if r.uses >= r.max_uses {
        "used-up"
    } else {
        "active"
    };
    InviteView {
        id: r.id,
        uses: u32::try_from(r.uses).unwrap_or_default(),
        max_uses: u32::try_from(r.max_uses).unwrap_or_default(),
        expires_at: rfc3339(r.expires_at),
        revoked: r.revoked,
        state: state.into(),
        created_at: rfc3339(r.created_at),
    }
}

/// Creates an invite code (owners only, groups joined by invite).
///
/// The code is in this answer **only**: the service keeps its SHA-256 and cannot show it
/// again. Redeeming it records no redeemer, only a use count.
#[utoipa::path(
    post,
    path = "/membership/v1/groups/{id}/invites",
    tag = "owners",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    request_body(content = InviteRequest, description = "`{}` for one use within a week."),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The invite, with its code (shown once; the answer is not cacheable).", body = CreatedInvite),
        (status = 409, description = "`join-policy`: the group is not joined by invite; or `group-not-active`.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` `not-owner`: only the group's owners may make invites (the same answer when no group has this id). `415` The body is not sent as application/json. `422` The group id is not a UUID, or `max_uses`/`expires_in_hours` is out of range. `429` `rate-limited`: too many owner changes by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` control-api, the database or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    GroupPath(id): GroupPath,
    AppJson(body): AppJson<InviteRequest>,
) -> Result<Response, ApiError> {
    state.limit(Action::OwnerWrite, &caller).await?;
    let group = state.owned_group(&caller, id).await?;
    require_active(&group)?;
    if group.join_policy != JoinPolicy::Invite {
        return Err(ApiError::NotAnInviteGroup);
    }
    let max_uses = body.max_uses.unwrap_or(DEFAULT_MAX_USES);
    if !(1..=MAX_USES).contains(&max_uses) {
        return Err(ApiError::Invalid(format!(
            "max_uses must be 1 to {MAX_USES}"
        )));
    }
    let hours = body.expires_in_hours.unwrap_or(DEFAULT_EXPIRY_HOURS);
    if !(1..=MAX_EXPIRY_HOURS).contains(&hours) {
        return Err(ApiError::Invalid(format!(
            "expires_in_hours must be 1 to {MAX_EXPIRY_HOURS}"
        )));
    }
    let now = state.clock.now_ms();
    let code = new_code();
    let invite = NewInvite {
        id: Uuid::new_v4(),
        group: id,
        code_hash: hash(&code),
        max_uses: i32::try_from(max_uses).unwrap_or(1),
        expires_at: now + i64::from(hours) * 3_600_000,
        created_by: caller.subject.clone(),
        created_at: now,
    };
    state.store.create_invite(&invite).await?;
    let created = CreatedInvite {
        id: invite.id,
        group_id: id,
        code,
        max_uses,
        expires_at: rfc3339(invite.expires_at),
    };
    let mut res = (StatusCode::CREATED, AppJson(created)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Lists a group's invites (owners only): use counts and dates, never codes, never redeemers.
#[utoipa::path(
    get,
    path = "/membership/v1/groups/{id}/invites",
    tag = "owners",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The group's invites, newest first.", body = Invites),
        (status = "4XX", description = "`401` No valid bearer token. `403` `not-owner`: only the group's owners may see its invites (the same answer when no group has this id). `422` The group id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` control-api, the database or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    GroupPath(id): GroupPath,
) -> Result<AppJson<Invites>, ApiError> {
    state.owned_group(&caller, id).await?;
    let now = state.clock.now_ms();
    let invites = state.store.invites(id, MAX_LISTED).await?;
    Ok(AppJson(Invites {
        invites: invites.into_iter().map(|r| view(r, now)).collect(),
    }))
}

/// Revokes an invite (owners only): its code stops working at once. Revoking again is fine.
#[utoipa::path(
    delete,
    path = "/membership/v1/groups/{id}/invites/{iid}",
    tag = "owners",
    params(
        ("id" = String, Path, format = Uuid, description = "The group's id."),
        ("iid" = String, Path, format = Uuid, description = "The invite's id."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The invite is revoked."),
        (status = "4XX", description = "`401` No valid bearer token. `403` `not-owner`: only the group's owners may revoke its invites (the same answer when no group has this id). `404` `invite-not-found`: the group has no invite with this id. `422` The group id or invite id is not a UUID. `429` `rate-limited`: too many owner changes by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` control-api, the database or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    GroupPath(id): GroupPath,
    InvitePath(iid): InvitePath,
) -> Result<StatusCode, ApiError> {
    state.limit(Action::OwnerWrite, &caller).await?;
    state.owned_group(&caller, id).await?;
    if state.store.revoke_invite(id, iid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::InviteNotFound)
    }
}

/// Redeems an invite code: the caller joins the group it is for.
///
/// No redeemer is recorded; the invite's use count goes up by one. Every code that cannot be
/// redeemed (unknown, expired, revoked, used up, mistyped) gets the same 404 `invalid-invite`,
/// and counts against the caller's hourly budget of failed redemptions; past it, every
/// redemption answers 429 until the budget refills. The group's label is checked before
/// anything is written, and a redemption refused after the code was accepted gives its use
/// back.
#[utoipa::path(
    post,
    path = "/membership/v1/invites/redeem",
    tag = "membership",
    request_body = Redeem,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller is a member (whether or not they were before).", body = Membership),
        (status = 409, description = "`group-not-active`: the group is being provisioned or archived; or `join-policy`: the group no longer takes invites.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` `label-refused`: the group's label does not admit the caller's kind of identity (the code is not used up). `404` `invalid-invite`: the code cannot be redeemed. One answer for every reason. `415` The body is not sent as application/json. `422` The body has no `code`; or `email-required`: the caller's token carries no e-mail address. `429` `rate-limited`: too many redemptions, or too many failed ones, by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant, control-api, the database or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn redeem(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    AppJson(body): AppJson<Redeem>,
) -> Result<AppJson<Membership>, ApiError> {
    let state = state.for_request(&x_request_id);
    let now = state.clock.now_ms();
    let subject = caller.subject.as_str();
    state
        .limits
        .peek(Action::RedeemFailure, subject, now)
        .await?;
    state.limit(Action::Redeem, &caller).await?;
    // Spent after the fact: only failures count against this budget. A refusal here would
    // only say what the 404 says, so its result is not needed; a budget that cannot be written
    // fails closed like the peek above (503, not the 404 that would let guessing go on).
    let bad_code = || async {
        match state.limits.hit(Action::RedeemFailure, subject, now).await {
            Err(ApiError::LimitsUnavailable) => ApiError::LimitsUnavailable,
            _ => ApiError::BadInviteCode,
        }
    };
    let found = if body.code.len() <= MAX_CODE_INPUT {
        state.store.live_invite(&hash(&body.code), now).await?
    } else {
        None
    };
    let Some((invite, group_id)) = found else {
        return Err(bad_code().await);
    };
    // An invite whose group is gone from the catalog is as dead as an unknown code.
    let Some(group) = state.catalog.group(group_id).await? else {
        return Err(bad_code().await);
    };
    require_active(&group)?;
    if group.join_policy != JoinPolicy::Invite {
        return Err(ApiError::JoinPolicy(group.join_policy));
    }
    check_label(caller.kind, &group)?;
    let email = caller.email.clone().ok_or(ApiError::NoEmail)?;
    if !state.store.take_invite_use(invite, now).await? {
        // Someone else took the last use (or it was revoked) since the lookup.
        return Err(bad_code().await);
    }
    if let Err(e) = state.add_member(&group, caller_ref(&caller, email)).await {
        // The caller did not get in: the use is not spent.
        if state.store.return_invite_use(invite).await.is_err() {
            tracing::warn!("could not give back an invite use after a failed redemption");
        }
        return Err(e);
    }
    Ok(AppJson(Membership {
        group_id: group.id,
        member: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc_4648() {
        // RFC 4648 §10 test vectors, without padding.
        for (input, want) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), want);
        }
    }

    #[test]
    fn codes_carry_160_random_bits_behind_a_prefix() {
        let a = new_code();
        let b = new_code();
        assert_ne!(a, b);
        assert!(a.starts_with(CODE_PREFIX));
        let body = &a[CODE_PREFIX.len()..];
        assert_eq!(body.len(), 32, "20 bytes are 32 base32 characters");
        assert!(body.bytes().all(|c| BASE32.contains(&c)));
    }

    #[test]
    fn codes_are_hashed_as_typed_give_or_take_case_and_spaces() {
        let code = new_code();
        assert_eq!(hash(&code), hash(&format!("  {}\n", code.to_lowercase())));
        assert_ne!(hash(&code), hash(&new_code()));
        assert_eq!(hash(&code).len(), 32);
    }

    #[test]
    fn the_state_owners_see() {
        let r = InviteRecord {
            id: Uuid::nil(),
            uses: 1,
            max_uses: 2,
            expires_at: 100,
            revoked: false,
            created_at: 0,
        };
        assert_eq!(view(r, 50).state, "active");
        assert_eq!(view(r, 100).state, "expired");
        assert_eq!(view(InviteRecord { uses: 2, ..r }, 50).state, "used-up");
        assert_eq!(
            view(InviteRecord { revoked: true, ..r }, 50).state,
            "revoked"
        );
    }
}
