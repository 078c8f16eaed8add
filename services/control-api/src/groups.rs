//! The group catalog: create, discover, read, edit and archive groups.
//!
//! Nothing here knows or tells who is in a group (INV-1). Owners see a coarse member count, a
//! bucket from the tenant (INV-4); everyone else sees no count at all. A group the caller may not
//! see (its label does not admit their kind of identity, or it is archived and they do not own
//! it) is answered exactly like one that does not exist, so no answer confirms it exists.

use crate::catalog_audit::AuditContext;
use crate::error::ApiError;
use crate::extract::{Employee, GroupPath, RequestId};
use crate::model::{Description, GroupChanges, GroupRecord, NewGroup, Owners};
use crate::store::{DiscoverQuery, GroupInsert, GroupWrite, OwnerContact, StoreError};
use crate::AppState;
use auth::Caller;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::{
    CountBucket, Email, GroupId, GroupName, GroupState, GroupType, JoinPolicy, LabelName,
    LocalPart, SenderPolicy, Subject,
};
use http::{header, StatusCode};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use service_kit::db::now_ms;
use service_kit::{AppJson, Problem};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Default page size of discovery.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size of discovery.
pub const MAX_LIMIT: u32 = 200;
/// Longest search text, in characters.
pub const MAX_QUERY_LEN: usize = 200;
/// How many fresh suffixes creation tries when a derived address is taken.
const ADDRESS_TRIES: usize = 4;

/// The group routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(discover, create_group))
        .routes(routes!(get_group, update_group))
        .routes(routes!(archive_group))
        .routes(routes!(accept_ownership))
        .routes(routes!(owned_groups))
        .routes(routes!(decline_ownership))
}

/// A group as a caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    /// The group's id.
    pub id: GroupId,
    /// Display name.
    #[schema(value_type = String)]
    pub name: GroupName,
    /// What the group is for.
    pub description: String,
    /// What the group is for: `mail` (a distribution group with a contact address) or
    /// `security` (an access group: no address, no mail). Chosen at creation; never changes.
    #[serde(rename = "type")]
    pub group_type: GroupType,
    /// The address that mails the group's members (once the group is active); absent for a
    /// security group, which has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Email, example = "parents-at-work-x7k2qd@groups.corp.example")]
    pub contact_address: Option<Email>,
    /// The group's anonymous alias (`<local>+anon@<domain>`), present when its label allows
    /// anonymous posting: what a member writes to it reaches every member from "Anonymous
    /// member of <group>", with no trace of the sender in any header. Only members may post
    /// through it; absent for a group whose address is too long to have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Email, example = "witness-support+anon@groups.corp.example")]
    pub anonymous_address: Option<Email>,
    /// The sensitivity label; moved only through `PUT /control/v1/groups/{id}/label`.
    #[schema(value_type = String, example = "General")]
    pub label: LabelName,
    /// How people get in.
    pub join_policy: JoinPolicy,
    /// Who may send mail to the group: the owners' choice where they made one, never wider
    /// than the label's rule (which applies where they did not). A security group receives
    /// no mail whatever this says.
    pub sender_policy: SenderPolicy,
    /// `provisioning` until the tenant confirmed the group, then `active`; `archiving`, then
    /// `archived`, once an owner archived it.
    pub state: GroupState,
    /// When the group was created (RFC 3339).
    pub created_at: String,
    /// When the group last changed (RFC 3339).
    pub updated_at: String,
    /// The group's owners: its public contacts, whom members and requesters may write to.
    /// Owners are not members by virtue of owning (and this says nothing about membership).
    #[schema(value_type = Vec<String>)]
    pub owners: Vec<Subject>,
    /// How to show each owner: their name and e-mail address as their own token gave them when
    /// they last acted as owner (absent for an owner who has not yet). Same order as `owners`.
    #[serde(default)]
    pub owner_contacts: Vec<OwnerContactView>,
    /// Whether the caller is one of the owners (and so may edit, archive and see the count).
    pub is_owner: bool,
    /// How many members, as a coarse bucket (INV-4). Present only when the caller owns the
    /// group and it is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<CountBucket>,
    /// People an owner named as co-owners who have not accepted yet (shown to owners only).
    /// Under a label that bars guests or AI agents, a named co-owner becomes an owner only by
    /// accepting with their own token, whose kind the label must admit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub invited_owners: Vec<Subject>,
    /// Whether the caller is invited to own the group: accept at
    /// `POST /control/v1/groups/{id}/ownership/accept`, or decline at `…/decline`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invited_to_own: bool,
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

impl GroupView {
    /// The view of `g` for a caller who does (`owner`) or does not own it.
    fn of(g: &GroupRecord, owner: bool) -> Self {
        Self {
            id: g.id,
            name: g.name.clone(),
            description: g.description.to_string(),
            group_type: g.group_type,
            contact_address: g.contact_address.clone(),
            anonymous_address: g.anonymous_address(),
            label: g.label.name.clone(),
            join_policy: g.join_policy,
            sender_policy: g.sender_policy(),
            state: g.state,
            created_at: rfc3339(g.created_at),
            updated_at: rfc3339(g.updated_at),
            owners: g.owners.as_slice().to_vec(),
            owner_contacts: Vec::new(),
            is_owner: owner,
            member_count: None,
            invited_owners: Vec::new(),
            invited_to_own: false,
        }
    }

    /// Adds what the caller may know of the group's invitations: owners see who is invited,
    /// an invited person that they are.
    fn with_invitations(mut self, invited: Vec<Subject>, caller: &Caller) -> Self {
        self.invited_to_own = invited.contains(&caller.subject);
        if self.is_owner {
            self.invited_owners = invited;
        }
        self
    }

    /// The view of `g` for `caller`.
    fn for_caller(g: &GroupRecord, caller: &Caller) -> Self {
        Self::of(g, g.is_owner(caller))
    }
}

/// How one owner is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OwnerContactView {
    /// The owner's user id.
    #[schema(value_type = String)]
    pub id: Subject,
    /// Their name, when their token carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Their e-mail address, when their token carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Email)]
    pub email: Option<Email>,
}

/// The groups the caller owns.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OwnedGroups {
    /// By name; archived ones left out.
    pub groups: Vec<GroupView>,
}

/// The contact an owner's own token gives: its `name` claim (at most 200 characters) and
/// address.
fn contact_of(caller: &Caller) -> OwnerContact {
    OwnerContact {
        name: caller
            .claims
            .get("name")
            .and_then(serde_json::Value::as_str)
            .map(|n| n.trim().chars().take(200).collect::<String>())
            .filter(|n| !n.is_empty()),
        email: caller.email.clone(),
    }
}

/// Records how the caller, acting as an owner, is shown (best effort: the catalog write it
/// accompanies stands either way).
async fn note_contact(state: &AppState, caller: &Caller) {
    if let Err(e) = state
        .store
        .note_owner_contact(&caller.subject, &contact_of(caller), now_ms())
        .await
    {
        tracing::warn!(error = %e, "could not record an owner's contact");
    }
}

/// `view` with its owners' contacts filled in.
async fn with_contacts(state: &AppState, mut view: GroupView) -> Result<GroupView, ApiError> {
    let known: std::collections::HashMap<Subject, OwnerContact> = state
        .store
        .owner_contacts(&view.owners)
        .await?
        .into_iter()
        .collect();
    view.owner_contacts = view
        .owners
        .iter()
        .map(|s| {
            let c = known.get(s).cloned().unwrap_or_default();
            OwnerContactView {
                id: s.clone(),
                name: c.name,
                email: c.email,
            }
        })
        .collect();
    Ok(view)
}

/// Lists the groups the caller owns (and may act on: their kind is one the label admits).
#[utoipa::path(
    get,
    path = "/control/v1/owned-groups",
    tag = "groups",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's groups as an owner, by name.", body = OwnedGroups),
        (status = "4XX", description = "`401` No valid bearer token.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn owned_groups(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<AppJson<OwnedGroups>, ApiError> {
    let groups = state
        .store
        .owned_groups(&caller.subject)
        .await?
        .iter()
        .filter(|g| g.is_owner(&caller))
        .map(|g| GroupView::for_caller(g, &caller))
        .collect();
    Ok(AppJson(OwnedGroups { groups }))
}

/// A new group.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroupRequest {
    /// Display name: 1 to 120 characters.
    pub name: GroupName,
    /// What the group is for: at most 2000 characters.
    #[serde(default)]
    pub description: Description,
    /// The sensitivity label; it must exist. Moving the group to another label later goes
    /// through `PUT /control/v1/groups/{id}/label`.
    pub label: LabelName,
    /// How people get in; the label must allow it.
    pub join_policy: JoinPolicy,
    /// Who may mail the group: `anyone` in the company, its `members` or its `owners`. At
    /// most as wide as the label allows (owners < members < anyone); absent, the label's rule.
    #[serde(default)]
    pub sender_policy: Option<SenderPolicy>,
    /// The local part of the contact address (before `@`): lowercase letters, digits, `.`, `-`
    /// and `_`. By default derived from the name with a short random suffix. Refused for a
    /// security group, which has no address.
    #[serde(default)]
    pub address: Option<LocalPart>,
    /// What the group is for: `mail` (the default: a distribution group with a contact
    /// address) or `security` (an access group: no address, no mail). Never changes.
    #[serde(default, rename = "type")]
    pub group_type: GroupType,
}

/// An owner's changes to a group; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupChangeRequest {
    /// New description: at most 2000 characters.
    #[serde(default)]
    pub description: Option<Description>,
    /// New join policy; the label must allow it.
    #[serde(default)]
    pub join_policy: Option<JoinPolicy>,
    /// Who may mail the group from now on: at most as wide as the label allows.
    #[serde(default)]
    pub sender_policy: Option<SenderPolicy>,
    /// The complete new owner list: 1 to 50 subjects.
    #[serde(default)]
    pub owners: Option<Owners>,
    /// Not changeable: a group's label is chosen at creation. Sending it is refused (422), so
    /// the document leaves it out (and no other field is allowed).
    #[serde(default, deserialize_with = "present")]
    #[schema(ignore)]
    pub label: bool,
    /// Not changeable: a group's type is chosen at creation and never changes. Sending it is
    /// refused (422), so the document leaves it out.
    #[serde(default, rename = "type", deserialize_with = "present")]
    #[schema(ignore)]
    pub group_type: bool,
}

/// True whenever the field is there, whatever it holds (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d)?;
    Ok(true)
}

/// Discovery's query string.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiscoverParams {
    /// Text to look for in names and descriptions, ignoring case; at most 200 characters.
    #[param(max_length = 200)]
    q: Option<String>,
    /// Page size: 1 to 200, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One page of discovered groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupPage {
    /// Active groups the caller may join, by name.
    pub groups: Vec<GroupView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Where discovery resumes: the last (name, id) of a page. Opaque to clients.
fn encode_cursor(g: &GroupRecord) -> String {
    let raw = serde_json::to_vec(&(g.name.as_str(), g.id)).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(s: &str) -> Result<(String, GroupId), ApiError> {
    let bad = || ApiError::Invalid("cursor: not a cursor this service handed out".into());
    let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    serde_json::from_slice::<(String, GroupId)>(&raw).map_err(|_| bad())
}

fn parse_limit(raw: Option<&str>) -> Result<u32, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::Invalid(format!(
            "limit: must be a whole number from 1 to {MAX_LIMIT}"
        ))),
    }
}

/// Finds active groups the caller may join.
///
/// Only groups whose label admits the caller's kind of identity are listed (a guest never sees
/// a group whose label bars guests). Matching is a case-insensitive substring of the name or the
/// description; results are in name order, a page at a time.
#[utoipa::path(
    get,
    path = "/control/v1/groups",
    tag = "groups",
    params(DiscoverParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of groups.", body = GroupPage),
        (status = "4XX", description = "`401` No valid bearer token. `422` `limit` is not 1 to 200, `q` is longer than 200 characters, or `cursor` was not handed out by this service.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn discover(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<DiscoverParams>,
) -> Result<AppJson<GroupPage>, ApiError> {
    let limit = parse_limit(params.limit.as_deref())?;
    let text = params.q.unwrap_or_default();
    if text.chars().count() > MAX_QUERY_LEN {
        return Err(ApiError::Invalid(format!(
            "q: must be at most {MAX_QUERY_LEN} characters"
        )));
    }
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut found = state
        .store
        .discover(&DiscoverQuery {
            kind: caller.kind,
            text: text.trim().to_string(),
            after,
            limit: limit + 1,
        })
        .await?;
    let next_cursor = if found.len() > limit as usize {
        found.truncate(limit as usize);
        found.last().map(encode_cursor)
    } else {
        None
    };
    let groups = found
        .iter()
        // The query already applied the label rule; this is the same rule from the domain,
        // so a mistake in either cannot show a group to someone its label bars.
        .filter(|g| g.admits(caller.kind))
        .map(|g| GroupView::for_caller(g, &caller))
        .collect();
    Ok(AppJson(GroupPage {
        groups,
        next_cursor,
    }))
}

/// A derived local part: the name's slug and a short random suffix, so two groups with the
/// same name do not clash.
fn derived_local_part(name: &GroupName) -> LocalPart {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..6)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    let slug = LocalPart::slug_of(name.as_str());
    let base = slug.as_ref().map_or("group", LocalPart::as_str);
    LocalPart::parse(format!("{base}-{suffix}")).expect("a slug and a suffix make a local part")
}

/// Creates a group; the caller becomes its first owner.
///
/// Answered 202: the group is written to the catalog as `provisioning` and becomes `active`
/// once the isolated tenant has created its distribution group. Only employees (identity kind
/// `member`) may create groups.
#[utoipa::path(
    post,
    path = "/control/v1/groups",
    tag = "groups",
    request_body = NewGroupRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: the group is `provisioning`; `Location` names it.", body = GroupView),
        (status = 409, description = "The contact address is taken.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` Guests and AI agents may not create groups. `413` The body is too large. `415` The body is not sent as application/json. `422` A field is missing, unknown or invalid; the label does not exist; `urn:hush:problem:join-policy`: the label does not allow the join policy (the detail names those it allows); or `urn:hush:problem:sender-policy`: the sender policy is wider than the label lets its groups choose.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_group(
    State(state): State<AppState>,
    Employee(caller): Employee,
    RequestId(request_id): RequestId,
    AppJson(input): AppJson<NewGroupRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let ctx = AuditContext::request(&caller.subject, request_id);
    let mail = input.group_type.receives_mail();
    if !mail && input.address.is_some() {
        return Err(ApiError::Invalid(
            "address: a security group has no address; leave it out or create a mail group".into(),
        ));
    }
    if !mail && input.sender_policy.is_some() {
        return Err(ApiError::Invalid(
            "sender_policy: a security group receives no mail; leave it out or create a mail \
             group"
                .into(),
        ));
    }
    let chosen = input.address.is_some();
    let mut tries = 0;
    let record = loop {
        tries += 1;
        let contact_address = if mail {
            let local_part = input
                .address
                .clone()
                .unwrap_or_else(|| derived_local_part(&input.name));
            Some(Email::parse(format!(
                "{}@{}",
                local_part.as_str(),
                state.mail_domain
            ))?)
        } else {
            None
        };
        let group = NewGroup {
            id: GroupId::new(),
            name: input.name.clone(),
            description: input.description.clone(),
            group_type: input.group_type,
            contact_address,
            label: input.label.clone(),
            join_policy: input.join_policy,
            sender_policy: input.sender_policy,
            creator: caller.subject.clone(),
        };
        match state.store.insert_group(&group, &ctx, now_ms()).await? {
            GroupInsert::Created(record) => break record,
            GroupInsert::AddressTaken if !chosen && tries < ADDRESS_TRIES => continue,
            GroupInsert::AddressTaken => {
                return Err(ApiError::Conflict(format!(
                    "the address {} is taken; choose another",
                    group.stored_address()
                )))
            }
            GroupInsert::NoSuchLabel => {
                return Err(ApiError::UnknownLabel(input.label.to_string()))
            }
            GroupInsert::JoinPolicyRefused(label) => {
                return Err(ApiError::JoinPolicyRefused {
                    policy: input.join_policy,
                    label: Box::new(label),
                })
            }
            GroupInsert::SenderPolicyRefused(label) => {
                return Err(ApiError::SenderPolicyRefused {
                    policy: input.sender_policy.unwrap_or(label.policy.sender_policy),
                    label: Box::new(label),
                })
            }
        }
    };
    state.saga_wake.notify_one();
    note_contact(&state, &caller).await;
    let location = format!("/control/v1/groups/{}", record.id);
    let view = with_contacts(&state, GroupView::of(&record, true)).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        AppJson(view),
    ))
}

/// Loads a group the caller may see; anything else is "no such group".
pub(crate) async fn visible_group(
    state: &AppState,
    id: GroupId,
    caller: &Caller,
) -> Result<GroupRecord, ApiError> {
    state
        .store
        .get_group(id)
        .await?
        .filter(|g| g.visible_to(caller))
        .ok_or(ApiError::GroupNotFound)
}

/// Reads a group.
///
/// Owners always see their groups, with the owner list and a coarse member count (INV-4).
/// Others see a group only when its label admits their kind of identity and it is not archived;
/// otherwise the answer is 404, as for a group that does not exist.
#[utoipa::path(
    get,
    path = "/control/v1/groups/{id}",
    tag = "groups",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The group.", body = GroupView),
        (status = "4XX", description = "`401` No valid bearer token. `404` No group with this id that the caller may see. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_group(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    GroupPath(id): GroupPath,
) -> Result<AppJson<GroupView>, ApiError> {
    let state = state.for_request(&x_request_id);
    let group = visible_group(&state, id, &caller).await?;
    let invited = state.store.invited_owners(id).await?;
    let view = GroupView::for_caller(&group, &caller).with_invitations(invited, &caller);
    let mut view = with_contacts(&state, view).await?;
    if view.is_owner && group.state == GroupState::Active {
        // The count is a courtesy to owners: when the tenant cannot answer, the rest of the
        // catalog still can.
        match state.tenant.member_count(id).await {
            Ok(bucket) => view.member_count = Some(bucket),
            Err(e) => tracing::warn!(error = %e, "member count unavailable; answered without it"),
        }
    }
    Ok(AppJson(view))
}

/// Changes a group's description, join policy, sender policy or owners (owners only).
///
/// `owners` is the whole list. Owners named again stay owners. Under a label that admits every
/// kind of identity, the others become owners at once; under one that bars guests or AI
/// agents, they are invited (`invited_owners`) and become owners only when they accept with
/// their own token, whose kind the label must admit. The answer is the same whatever Hush
/// knows of the people named. The join policy must be one the group's label allows. The label is not changed here:
/// a body naming `label` is refused with 422 (move it with `PUT /control/v1/groups/{id}/label`). Unknown fields are refused with 422 too.
#[utoipa::path(
    patch,
    path = "/control/v1/groups/{id}",
    tag = "groups",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    request_body = GroupChangeRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The group as it is now.", body = GroupView),
        (status = 409, description = "The group is being archived or is archived.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` `not-owner`: the caller is not one of the group's owners. `404` No group with this id that the caller may see. `413` The body is too large. `415` The body is not sent as application/json. `422` A field is unknown or invalid; `label` was sent; `urn:hush:problem:join-policy`: the label does not allow the join policy; or `urn:hush:problem:sender-policy`: the sender policy is wider than the label's.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_group(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    RequestId(request_id): RequestId,
    GroupPath(id): GroupPath,
    AppJson(input): AppJson<GroupChangeRequest>,
) -> Result<AppJson<GroupView>, ApiError> {
    let state = state.for_request(&x_request_id);
    // Refused before the group is looked at, so the answer says nothing about the group.
    if input.label {
        return Err(ApiError::Invalid(
            "label: a group's label is not changed here; move the group with PUT \
             /control/v1/groups/{id}/label"
                .into(),
        ));
    }
    if input.group_type {
        return Err(ApiError::Invalid(
            "type: a group's type is chosen at creation and never changes; create a new group \
             of the other type instead"
                .into(),
        ));
    }
    let group = visible_group(&state, id, &caller).await?;
    if !group.is_owner(&caller) {
        return Err(ApiError::NotOwner);
    }
    // The tenant enforces who may mail the group, and the `owners` rule reads the owners.
    let mail_changed = input.owners.is_some() || input.sender_policy.is_some();
    let changes = GroupChanges {
        description: input.description,
        join_policy: input.join_policy,
        sender_policy: input.sender_policy,
        owners: input.owners,
    };
    match state
        .store
        .update_group(
            id,
            &caller.subject,
            &changes,
            &AuditContext::request(&caller.subject, request_id),
            now_ms(),
        )
        .await?
    {
        GroupWrite::Done(record) => {
            if mail_changed && record.state == GroupState::Active {
                sync_mail_policy(&state, &record).await;
            }
            note_contact(&state, &caller).await;
            let invited = state.store.invited_owners(id).await?;
            let view = GroupView::for_caller(&record, &caller).with_invitations(invited, &caller);
            Ok(AppJson(with_contacts(&state, view).await?))
        }
        GroupWrite::NotFound => Err(ApiError::GroupNotFound),
        GroupWrite::NotOwner => Err(ApiError::NotOwner),
        GroupWrite::NotEditable(state) => Err(ApiError::NotEditable(state)),
        GroupWrite::JoinPolicyRefused(label) => Err(ApiError::JoinPolicyRefused {
            policy: changes.join_policy.unwrap_or(group.join_policy),
            label: Box::new(label),
        }),
        GroupWrite::SenderPolicyRefused(label) => Err(ApiError::SenderPolicyRefused {
            policy: changes.sender_policy.unwrap_or(group.sender_policy()),
            label: Box::new(label),
        }),
    }
}

/// Tells the tenant who may mail the group now (its sender policy and, for the `owners` rule,
/// its owners), so its mail follows at once. Provisioning is idempotent, so this is the same
/// call the saga makes. Best effort: the change is saved in the catalog either way, and a
/// tenant that cannot be reached now keeps the previous rule until the next change.
async fn sync_mail_policy(state: &AppState, record: &GroupRecord) {
    if let Err(e) = push_mail_policy(state, record).await {
        tracing::warn!(error = %e, "the tenant did not take who may mail the group");
    }
}

/// The call [`sync_mail_policy`] makes, for callers that must know it failed (a label change
/// reports it and may be sent again).
pub(crate) async fn push_mail_policy(
    state: &AppState,
    record: &GroupRecord,
) -> Result<(), tenant_client::TenantError> {
    state
        .tenant
        .provision_group(&record.provision_request())
        .await
}

/// Archives a group (owners only).
///
/// Answered 202: the group becomes `archiving`, the isolated tenant removes its distribution
/// group and purges its membership, and the group ends `archived` — kept in the catalog as a
/// record, its address never reused. Archiving an archived group changes nothing.
#[utoipa::path(
    post,
    path = "/control/v1/groups/{id}/archive",
    tag = "groups",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: the group is `archiving` (or already `archived`).", body = GroupView),
        (status = "4XX", description = "`401` No valid bearer token. `403` `not-owner`: the caller is not one of the group's owners. `404` No group with this id that the caller may see. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn archive_group(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    GroupPath(id): GroupPath,
) -> Result<impl IntoResponse, ApiError> {
    let group = visible_group(&state, id, &caller).await?;
    if !group.is_owner(&caller) {
        return Err(ApiError::NotOwner);
    }
    let ctx = AuditContext::request(&caller.subject, request_id);
    match state
        .store
        .archive_group(id, &caller.subject, &ctx, now_ms())
        .await?
    {
        GroupWrite::Done(record) => {
            state.saga_wake.notify_one();
            Ok((
                StatusCode::ACCEPTED,
                AppJson(GroupView::for_caller(&record, &caller)),
            ))
        }
        GroupWrite::NotFound => Err(ApiError::GroupNotFound),
        GroupWrite::NotOwner => Err(ApiError::NotOwner),
        GroupWrite::NotEditable(state) => Err(ApiError::NotEditable(state)),
        GroupWrite::JoinPolicyRefused(_) | GroupWrite::SenderPolicyRefused(_) => {
            Err(ApiError::Store(StoreError::Corrupt(
                "archiving answered a policy refusal".into(),
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let id = GroupId::new();
        let raw = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&("Book Club", id)).unwrap());
        assert_eq!(decode_cursor(&raw).unwrap(), ("Book Club".to_string(), id));
        assert!(decode_cursor("not base64!").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode(b"[1,2]")).is_err());
    }

    #[test]
    fn limits_default_to_50_and_stay_within_1_to_200() {
        assert_eq!(parse_limit(None).unwrap(), 50);
        assert_eq!(parse_limit(Some("200")).unwrap(), 200);
        for bad in ["0", "201", "-1", "ten", ""] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_addresses_keep_the_slug_and_differ_by_suffix() {
        let name = GroupName::parse("Parents at Work!").unwrap();
        let a = derived_local_part(&name);
        let b = derived_local_part(&name);
        assert!(a.as_str().starts_with("parents-at-work-"), "{}", a.as_str());
        assert_eq!(a.as_str().len(), "parents-at-work-".len() + 6);
        assert_ne!(a, b);
        let symbols = derived_local_part(&GroupName::parse("!!!").unwrap());
        assert!(symbols.as_str().starts_with("group-"));
        let long = derived_local_part(&GroupName::parse("x".repeat(120)).unwrap());
        assert!(long.as_str().len() <= 64);
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}

/// Accepts an invitation to own a group (the invited person, with their own token).
///
/// The group's label must admit the caller's kind of identity: a guest or an AI agent cannot
/// become owner of a group whose label bars them (403, naming the label and the kind). 404
/// when the caller holds no invitation to this group, or it is being archived.
#[utoipa::path(
    post,
    path = "/control/v1/groups/{id}/ownership/accept",
    tag = "groups",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller owns the group now.", body = GroupView),
        (status = "4XX", description = "`401` No valid bearer token. `403` The group's label does not admit the caller's kind of identity. `404` No invitation to own this group for the caller. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn accept_ownership(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    GroupPath(id): GroupPath,
) -> Result<AppJson<GroupView>, ApiError> {
    answer_ownership(&state, &caller, request_id, id, true)
        .await
        .map(AppJson)
}

/// Declines an invitation to own a group (the invited person).
#[utoipa::path(
    post,
    path = "/control/v1/groups/{id}/ownership/decline",
    tag = "groups",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The invitation is gone."),
        (status = "4XX", description = "`401` No valid bearer token. `404` No invitation to own this group for the caller. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn decline_ownership(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    GroupPath(id): GroupPath,
) -> Result<StatusCode, ApiError> {
    answer_ownership(&state, &caller, request_id, id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller answers their invitation to own group `id`.
async fn answer_ownership(
    state: &AppState,
    caller: &Caller,
    request_id: Option<String>,
    id: GroupId,
    accept: bool,
) -> Result<GroupView, ApiError> {
    let invited = state.store.invited_owners(id).await?;
    let group = state
        .store
        .get_group(id)
        .await?
        .filter(|_| invited.contains(&caller.subject))
        .ok_or(ApiError::NotInvited)?;
    if accept {
        domain::may_enter(caller.kind, &group.label.name, &group.label.policy)
            .map_err(ApiError::OwnerRefused)?;
    }
    let record = state
        .store
        .answer_ownership(
            id,
            &caller.subject,
            accept,
            &AuditContext::request(&caller.subject, request_id),
            now_ms(),
        )
        .await?
        .ok_or(ApiError::NotInvited)?;
    if accept {
        note_contact(state, caller).await;
        if record.state == GroupState::Active {
            sync_mail_policy(state, &record).await;
        }
    }
    let invited = state.store.invited_owners(id).await?;
    with_contacts(
        state,
        GroupView::for_caller(&record, caller).with_invitations(invited, caller),
    )
    .await
}
