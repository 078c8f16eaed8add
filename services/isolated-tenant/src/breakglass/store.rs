//! Break-glass state, in the tenant's database: one row per request, every step in one
//! transaction with its audit events (appended last).
//!
//! The role is [`Requests`] (file, approve, redeem); [`SqlRequests`] plays it on Postgres and
//! SQLite with the same statements ([`crate::sql`] names where the backends differ). The rules
//! are plain functions: [`decide_approval`] and [`decide_redeem`] of the row, [`answer`] of the
//! member list, which comes from [`crate::member_list`], the one reader of member lists.

use super::{encrypt, BgError};
use crate::audit::{self, db::now_ms, Context, NewEvent};
use crate::member_list::{self, Member};
use crate::seal::SealKeys;
use crate::sql::{self, Sql, Tx};
use async_trait::async_trait;
use domain::{Email, GroupId, Subject};
use serde::{Deserialize, Serialize};
use service_kit::db;
use std::sync::Arc;
use std::time::Duration;
use tenant_api::breakglass::{
    Answer, ListView, ListedMember, NamedPerson, NewRequest, RequestView, Scope, MAX_LISTED,
};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;
use zeroize::Zeroizing;

const COLUMNS: &str = "id, group_id, scope, sealed_target, sealed_justification, key_id, \
                       recipient, requester, approver1, approver2, state, expires_ms, \
                       grant_expires_ms, created_ms, sealed_requester, sealed_decline";

type RowTuple = (
    String,
    String,
    String,
    Option<Vec<u8>>,
    Vec<u8>,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<i64>,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// A request row.
#[derive(Debug, Clone)]
pub(super) struct Row {
    id: Uuid,
    group: GroupId,
    scope: Scope,
    sealed_target: Option<Vec<u8>>,
    sealed_justification: Vec<u8>,
    key_id: String,
    recipient: Option<String>,
    requester: String,
    approver1: Option<String>,
    approver2: Option<String>,
    state: String,
    expires_ms: i64,
    grant_expires_ms: Option<i64>,
    created_ms: i64,
    sealed_requester: Option<Vec<u8>>,
    sealed_decline: Option<Vec<u8>>,
}

impl Row {
    fn from_tuple(t: RowTuple) -> anyhow::Result<Self> {
        let (
            id,
            group,
            scope,
            target,
            just,
            key_id,
            recipient,
            requester,
            a1,
            a2,
            state,
            exp,
            gexp,
            created,
            sealed_requester,
            sealed_decline,
        ) = t;
        Ok(Self {
            id: id.parse()?,
            group: GroupId::from(group.parse::<Uuid>()?),
            scope: match scope.as_str() {
                "member-check" => Scope::MemberCheck,
                _ => Scope::FullList,
            },
            sealed_target: target,
            sealed_justification: just,
            key_id,
            recipient,
            requester,
            approver1: a1,
            approver2: a2,
            state,
            expires_ms: exp,
            grant_expires_ms: gexp,
            created_ms: created,
            sealed_requester,
            sealed_decline,
        })
    }

    /// The request as the auditor who filed it or a privacy officer sees it at `now`;
    /// `viewer` is the acting officer's pseudonym in this group, to say whether they approved
    /// it already.
    fn view(
        &self,
        keys: &SealKeys,
        viewer: Option<&str>,
        now: i64,
    ) -> Result<RequestView, BgError> {
        let key = keys.get(&self.key_id).map_err(anyhow::Error::from)?;
        let open = |what: &str, sealed: &[u8]| {
            key.open_break_glass(self.id, what, sealed)
                .map_err(anyhow::Error::from)
        };
        let justification = open("justification", &self.sealed_justification)?;
        let approvals = u8::from(self.approver1.is_some()) + u8::from(self.approver2.is_some());
        let expires = match self.state.as_str() {
            "pending" => Some(self.expires_ms),
            "approved" => self.grant_expires_ms,
            _ => None,
        };
        let state = match expires {
            Some(until) if now > until => "expired".to_string(),
            _ => self.state.clone(),
        };
        let requester = match &self.sealed_requester {
            Some(sealed) => Some(self.open_person(keys, "requester", sealed)?.named()),
            None => None,
        };
        let person = match &self.sealed_target {
            Some(sealed) if self.scope == Scope::MemberCheck => {
                Some(self.open_person(keys, "target", sealed)?.named())
            }
            _ => None,
        };
        let decline_reason = match &self.sealed_decline {
            Some(sealed) => Some(String::from_utf8_lossy(&open("decline", sealed)?).into_owned()),
            None => None,
        };
        Ok(RequestView {
            id: self.id,
            group_id: self.group,
            scope: self.scope,
            state,
            approvals,
            expires_at: expires.map(rfc3339).unwrap_or_default(),
            justification: String::from_utf8_lossy(&justification).into_owned(),
            filed_at: rfc3339(self.created_ms),
            requester,
            person,
            approved_by_you: viewer.is_some_and(|v| {
                self.approver1.as_deref() == Some(v) || self.approver2.as_deref() == Some(v)
            }),
            encrypted: self.recipient.is_some(),
            decline_reason: decline_reason.filter(|r| !r.is_empty()),
        })
    }

    /// The person sealed in `field` (`target` or `requester`) of this row.
    fn open_person(&self, keys: &SealKeys, field: &str, sealed: &[u8]) -> Result<Target, BgError> {
        let key = keys.get(&self.key_id).map_err(anyhow::Error::from)?;
        let plain = key
            .open_break_glass(self.id, field, sealed)
            .map_err(anyhow::Error::from)?;
        Ok(serde_json::from_slice(&plain).map_err(anyhow::Error::from)?)
    }

    fn subject(&self) -> String {
        format!("break-glass:{}", self.id)
    }
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::UNIX_EPOCH
        .checked_add(time::Duration::milliseconds(ms))
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// How far back an auditor's own list looks.
const MINE_WINDOW_MS: i64 = 90 * 24 * 3600 * 1000;
/// Most rows an auditor's list reads to find their own (other auditors' rows are skipped).
const MAX_SCANNED: usize = 5_000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A person a request names, sealed in its row: the one a member check asks about, or the
/// auditor who filed it.
#[derive(Serialize, Deserialize)]
pub(super) struct Target {
    subject: Option<Subject>,
    email: Option<Email>,
}

impl Target {
    fn named(self) -> NamedPerson {
        NamedPerson {
            subject: self.subject.map(|s| s.as_str().to_string()),
            email: self.email.map(|e| e.as_str().to_string()),
        }
    }
}

/// What an approval does.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Approval {
    /// The first of two.
    First,
    /// The second: the grant opens.
    Second,
}

/// The two-person rule: whether `officer` (a pseudonym, with the role or not) may approve
/// `row` at `now`.
pub(super) fn decide_approval(
    row: &Row,
    officer: &str,
    is_officer: bool,
    now: i64,
) -> Result<Approval, BgError> {
    may_judge(row, officer, is_officer, now)?;
    match &row.approver1 {
        None => Ok(Approval::First),
        Some(first) if first == officer => Err(BgError::SameOfficer),
        Some(_) => Ok(Approval::Second),
    }
}

/// Whether `officer` (a pseudonym, with the role or not) may decline `row` at `now`: one
/// officer's no ends a request that is still waiting; the requester cannot judge their own.
pub(super) fn decide_decline(
    row: &Row,
    officer: &str,
    is_officer: bool,
    now: i64,
) -> Result<(), BgError> {
    may_judge(row, officer, is_officer, now)
}

/// What approving and declining share: `officer` has the role, is not the requester, and the
/// request still waits, in time.
fn may_judge(row: &Row, officer: &str, is_officer: bool, now: i64) -> Result<(), BgError> {
    if !is_officer {
        return Err(BgError::WrongRole(tenant_api::breakglass::PRIVACY_OFFICER));
    }
    if row.state != "pending" {
        return Err(BgError::NotPending);
    }
    if now > row.expires_ms {
        return Err(BgError::RequestExpired);
    }
    if row.requester == officer {
        return Err(BgError::RequesterCannotApprove);
    }
    Ok(())
}

/// Whether `auditor` (a pseudonym, with the role or not) may redeem `row` at `now`.
pub(super) fn decide_redeem(
    row: &Row,
    auditor: &str,
    is_auditor: bool,
    now: i64,
) -> Result<(), BgError> {
    if !is_auditor {
        return Err(BgError::WrongRole(tenant_api::breakglass::AUDITOR));
    }
    if row.requester != auditor {
        return Err(BgError::NotRequester);
    }
    match row.state.as_str() {
        "pending" => Err(BgError::NotApproved),
        "redeemed" => Err(BgError::GrantUsed),
        "declined" => Err(BgError::Declined),
        _ if now > row.grant_expires_ms.unwrap_or(0) => Err(BgError::GrantExpired),
        _ => Ok(()),
    }
}

/// What a redeemed grant answers, before any encryption: for a member check, whether the
/// target is among `members` (by subject or, case-insensitively, by address); for a full list,
/// every member. Disabled identities count as members and are listed, marked
/// ([`crate::member_list`]).
pub(super) fn answer(
    id: Uuid,
    scope: Scope,
    target: Option<&Target>,
    members: &[Member],
) -> Answer {
    let mut answer = Answer {
        id,
        scope,
        member: None,
        members: None,
        encrypted: None,
    };
    match (scope, target) {
        (Scope::MemberCheck, Some(target)) => {
            let lower = target.email.as_ref().map(|e| e.as_str().to_lowercase());
            answer.member = Some(members.iter().any(|m| {
                let p = &m.profile;
                (target.subject.is_some() && p.subject == target.subject)
                    || (lower.is_some()
                        && p.email.as_ref().map(|e| e.as_str().to_lowercase()) == lower)
            }));
        }
        (Scope::MemberCheck, None) => answer.member = Some(false),
        (Scope::FullList, _) => {
            answer.members = Some(
                members
                    .iter()
                    .map(|m| ListedMember {
                        subject: m.profile.subject.as_ref().map(|s| s.as_str().to_string()),
                        email: m.profile.email.as_ref().map(|e| e.as_str().to_string()),
                        disabled: m.disabled,
                    })
                    .collect(),
            );
        }
    }
    answer
}

/// Break-glass requests and their grants.
#[async_trait]
pub(crate) trait Requests: Send + Sync {
    /// Files a request by `requester` (an auditor), waiting `ttl` for its approvals. Each
    /// method's audit events record `context`.
    async fn file(
        &self,
        context: &Context,
        r: &NewRequest,
        requester: &Subject,
        requester_email: Option<&Email>,
        ttl: Duration,
    ) -> Result<RequestView, BgError>;

    /// The requests of `view` as `viewer` sees them: for an officer every request still
    /// waiting, for an auditor their own. At most [`MAX_LISTED`].
    async fn list(&self, view: ListView, viewer: &Subject) -> Result<Vec<RequestView>, BgError>;

    /// Declines request `id` as `officer`, with an optional `reason` for the auditor.
    async fn decline(
        &self,
        context: &Context,
        id: Uuid,
        officer: &Subject,
        is_officer: bool,
        reason: Option<&str>,
    ) -> Result<RequestView, BgError>;

    /// Approves request `id` as `officer`; the second approval opens a grant for `grant_ttl`.
    async fn approve(
        &self,
        context: &Context,
        id: Uuid,
        officer: &Subject,
        is_officer: bool,
        grant_ttl: Duration,
    ) -> Result<RequestView, BgError>;

    /// Redeems the grant of request `id` as `auditor`, once: the privileged read.
    async fn redeem(
        &self,
        context: &Context,
        id: Uuid,
        auditor: &Subject,
        is_auditor: bool,
    ) -> Result<Answer, BgError>;
}

/// The requests table, on Postgres or SQLite. Cloned into the task in which each write
/// transaction runs to its end ([`db::run_to_end`]).
#[derive(Clone)]
pub(crate) struct SqlRequests {
    db: sql::Pool,
    keys: Arc<SealKeys>,
}

const GROUP_EXISTS: &str = "SELECT group_id FROM distribution_groups WHERE group_id = $1";
const INSERT_REQUEST: &str = "INSERT INTO break_glass_requests (id, group_id, scope, \
                              sealed_target, sealed_justification, key_id, recipient, requester, \
                              state, created_ms, expires_ms, sealed_requester) \
                              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11)";
const DECLINED: &str = "UPDATE break_glass_requests SET state = 'declined', sealed_decline = $1, \
                        decided_ms = $2 WHERE id = $3";
const FIRST_APPROVAL: &str = "UPDATE break_glass_requests SET approver1 = $1 WHERE id = $2";
const SECOND_APPROVAL: &str = "UPDATE break_glass_requests SET approver2 = $1, \
                               state = 'approved', grant_expires_ms = $2 WHERE id = $3";
const REDEEMED: &str = "UPDATE break_glass_requests SET state = 'redeemed', redeemed_ms = $1 \
                        WHERE id = $2 AND state = 'approved'";

impl SqlRequests {
    /// The requests in the tenant's database (`db`, the audit chain's pools), sealed with
    /// `keys`.
    pub(crate) fn new(db: sql::Pool, keys: Arc<SealKeys>) -> Self {
        Self { db, keys }
    }

    /// Request `id`, locked until `tx` ends.
    async fn load(&self, tx: &mut Tx, id: Uuid) -> Result<Row, BgError> {
        let t: Option<RowTuple> = Sql::new(format!(
            "SELECT {COLUMNS} FROM break_glass_requests WHERE id = $1{}",
            self.db.for_update()
        ))
        .bind(id.to_string())
        .fetch_optional(tx)
        .await?;
        Row::from_tuple(t.ok_or(BgError::NotFound)?).map_err(BgError::Internal)
    }

    /// Request `id` in a new write transaction; a missing request ends it.
    async fn begin_with(&self, id: Uuid) -> Result<(Tx, Row), BgError> {
        let mut tx = self.db.begin_write().await?;
        match self.load(&mut tx, id).await {
            Ok(row) => Ok((tx, row)),
            Err(e) => {
                tx.rollback().await?;
                Err(e)
            }
        }
    }
}

/// Appends a refusal event about `row` by `actor`, recorded as `context`, commits, and answers
/// `e`.
async fn refuse<T>(
    mut tx: Tx,
    context: &Context,
    row: &Row,
    actor: &str,
    e: BgError,
) -> Result<T, BgError> {
    let action = format!("break-glass.refused:{}", e.slug());
    let event = NewEvent::new(&action, Some(row.group))
        .about(row.subject())
        .by(Some(actor.to_string()));
    tx.append(context, &[event]).await?;
    tx.commit().await?;
    Err(e)
}

#[async_trait]
impl Requests for SqlRequests {
    async fn file(
        &self,
        context: &Context,
        r: &NewRequest,
        requester: &Subject,
        requester_email: Option<&Email>,
        ttl: Duration,
    ) -> Result<RequestView, BgError> {
        let (this, context, r, requester, requester_email) = (
            self.clone(),
            context.clone(),
            r.clone(),
            requester.clone(),
            requester_email.cloned(),
        );
        db::run_to_end(async move {
            let (context, r, requester) = (&context, &r, &requester);
            let key = this.keys.active();
            let id = Uuid::new_v4();
            let target = match r.scope {
                Scope::MemberCheck => {
                    let t = Zeroizing::new(
                        serde_json::to_vec(&Target {
                            subject: r.subject.clone(),
                            email: r.email.clone(),
                        })
                        .map_err(anyhow::Error::from)?,
                    );
                    Some(key.seal_break_glass(id, "target", &t))
                }
                Scope::FullList => None,
            };
            let justification =
                key.seal_break_glass(id, "justification", r.justification.trim().as_bytes());
            let filed_by = Zeroizing::new(
                serde_json::to_vec(&Target {
                    subject: Some(requester.clone()),
                    email: requester_email,
                })
                .map_err(anyhow::Error::from)?,
            );
            let filed_by = key.seal_break_glass(id, "requester", &filed_by);
            let requester_p = audit::person(key, r.group_id, requester);
            let now = now_ms();
            let mut tx = this.db.begin_write().await?;
            let group: Option<(Uuid,)> = Sql::new(GROUP_EXISTS)
                .bind(r.group_id.as_uuid())
                .fetch_optional(&mut tx)
                .await?;
            if group.is_none() {
                tx.rollback().await?;
                return Err(BgError::GroupNotFound);
            }
            Sql::new(INSERT_REQUEST)
                .bind(id.to_string())
                .bind(r.group_id.as_uuid().to_string())
                .bind(r.scope.as_str())
                .bind(target)
                .bind(justification)
                .bind(key.id())
                .bind(r.recipient.clone())
                .bind(requester_p.as_str())
                .bind(now)
                .bind(now + ms(ttl))
                .bind(filed_by)
                .execute(&mut tx)
                .await?;
            let row = this.load(&mut tx, id).await?;
            let action = format!("break-glass.requested:{}", r.scope.as_str());
            let event = NewEvent::new(&action, Some(r.group_id))
                .about(row.subject())
                .by(Some(requester_p));
            tx.append(context, &[event]).await?;
            tx.commit().await?;
            row.view(&this.keys, None, now)
        })
        .await
    }

    async fn list(&self, view: ListView, viewer: &Subject) -> Result<Vec<RequestView>, BgError> {
        let now = now_ms();
        let (sql, since) = match view {
            ListView::Waiting => (
                format!(
                    "SELECT {COLUMNS} FROM break_glass_requests \
                     WHERE state = 'pending' AND expires_ms >= $1 ORDER BY expires_ms LIMIT $2"
                ),
                now,
            ),
            // An auditor's own: the pseudonym of the requester differs per group, so rows are
            // matched on the sealed requester after opening; 90 days bounds the scan.
            ListView::Mine => (
                format!(
                    "SELECT {COLUMNS} FROM break_glass_requests \
                     WHERE created_ms >= $1 ORDER BY created_ms DESC LIMIT $2"
                ),
                now - MINE_WINDOW_MS,
            ),
        };
        let limit = match view {
            ListView::Waiting => MAX_LISTED,
            ListView::Mine => MAX_SCANNED,
        };
        let mut conn = self.db.acquire().await?;
        let rows: Vec<RowTuple> = Sql::new(sql)
            .bind(since)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut conn)
            .await?;
        let mut out = Vec::new();
        for t in rows {
            let row = Row::from_tuple(t).map_err(BgError::Internal)?;
            let listed = match view {
                // The pseudonym `approve` records for this officer: under the active key.
                ListView::Waiting => {
                    let me = audit::person(self.keys.active(), row.group, viewer);
                    row.view(&self.keys, Some(&me), now)?
                }
                // The pseudonym `file` recorded: under the key the row was sealed with.
                ListView::Mine => {
                    let key = self.keys.get(&row.key_id).map_err(anyhow::Error::from)?;
                    if row.requester != audit::person(key, row.group, viewer) {
                        continue;
                    }
                    row.view(&self.keys, None, now)?
                }
            };
            out.push(listed);
            if out.len() == MAX_LISTED {
                break;
            }
        }
        Ok(out)
    }

    async fn decline(
        &self,
        context: &Context,
        id: Uuid,
        officer: &Subject,
        is_officer: bool,
        reason: Option<&str>,
    ) -> Result<RequestView, BgError> {
        let (this, context, officer, reason) = (
            self.clone(),
            context.clone(),
            officer.clone(),
            reason.map(str::to_string),
        );
        db::run_to_end(async move {
            let (context, officer) = (&context, &officer);
            let now = now_ms();
            let (mut tx, mut row) = this.begin_with(id).await?;
            let officer_p = audit::person(this.keys.active(), row.group, officer);
            if let Err(e) = decide_decline(&row, &officer_p, is_officer, now) {
                return refuse(tx, context, &row, &officer_p, e).await;
            }
            let key = this.keys.get(&row.key_id).map_err(anyhow::Error::from)?;
            let sealed = reason
                .as_deref()
                .map(|r| key.seal_break_glass(id, "decline", r.trim().as_bytes()));
            Sql::new(DECLINED)
                .bind(sealed.clone())
                .bind(now)
                .bind(id.to_string())
                .execute(&mut tx)
                .await?;
            row.state = "declined".into();
            row.sealed_decline = sealed;
            let event = NewEvent::new("break-glass.declined", Some(row.group))
                .about(row.subject())
                .by(Some(officer_p));
            tx.append(context, &[event]).await?;
            tx.commit().await?;
            row.view(&this.keys, None, now)
        })
        .await
    }

    async fn approve(
        &self,
        context: &Context,
        id: Uuid,
        officer: &Subject,
        is_officer: bool,
        grant_ttl: Duration,
    ) -> Result<RequestView, BgError> {
        let (this, context, officer) = (self.clone(), context.clone(), officer.clone());
        db::run_to_end(async move {
            let (context, officer) = (&context, &officer);
            let now = now_ms();
            let (mut tx, mut row) = this.begin_with(id).await?;
            let officer_p = audit::person(this.keys.active(), row.group, officer);
            let acting = officer_p.clone();
            let step = match decide_approval(&row, &officer_p, is_officer, now) {
                Ok(s) => s,
                Err(e) => return refuse(tx, context, &row, &officer_p, e).await,
            };
            let mut events = vec![NewEvent::new("break-glass.approved", Some(row.group))
                .about(row.subject())
                .by(Some(officer_p.clone()))];
            match step {
                Approval::First => {
                    Sql::new(FIRST_APPROVAL)
                        .bind(officer_p.as_str())
                        .bind(id.to_string())
                        .execute(&mut tx)
                        .await?;
                    row.approver1 = Some(officer_p);
                }
                Approval::Second => {
                    let until = now + ms(grant_ttl);
                    Sql::new(SECOND_APPROVAL)
                        .bind(officer_p.as_str())
                        .bind(until)
                        .bind(id.to_string())
                        .execute(&mut tx)
                        .await?;
                    row.approver2 = Some(officer_p);
                    row.state = "approved".into();
                    row.grant_expires_ms = Some(until);
                    events.push(
                        NewEvent::new("break-glass.granted", Some(row.group)).about(row.subject()),
                    );
                }
            }
            tx.append(context, &events).await?;
            tx.commit().await?;
            row.view(&this.keys, Some(&acting), now)
        })
        .await
    }

    async fn redeem(
        &self,
        context: &Context,
        id: Uuid,
        auditor: &Subject,
        is_auditor: bool,
    ) -> Result<Answer, BgError> {
        let (this, context, auditor) = (self.clone(), context.clone(), auditor.clone());
        db::run_to_end(async move {
            let (context, auditor) = (&context, &auditor);
            let now = now_ms();
            let (mut tx, row) = this.begin_with(id).await?;
            let auditor_p = audit::person(this.keys.active(), row.group, auditor);
            if let Err(e) = decide_redeem(&row, &auditor_p, is_auditor, now) {
                return refuse(tx, context, &row, &auditor_p, e).await;
            }
            // The privileged read: the group's member list, opened.
            let members = member_list::lawful_export(&mut tx, &this.keys, row.group)
                .await
                .map_err(anyhow::Error::from)?;
            let target = match row.scope {
                Scope::MemberCheck => Some(row.open_person(
                    &this.keys,
                    "target",
                    row.sealed_target.as_deref().unwrap_or_default(),
                )?),
                Scope::FullList => None,
            };
            let mut answer = answer(id, row.scope, target.as_ref(), &members);
            if let Some(rcp) = &row.recipient {
                answer = Answer {
                    encrypted: Some(encrypt(rcp, &answer)?),
                    member: None,
                    members: None,
                    ..answer
                };
            }
            let used = Sql::new(REDEEMED)
                .bind(now)
                .bind(id.to_string())
                .execute(&mut tx)
                .await?;
            if used != 1 {
                tx.rollback().await?;
                return Err(BgError::GrantUsed);
            }
            let answered = format!("break-glass.answered:{}", row.scope.as_str());
            let events = [
                NewEvent::new("break-glass.redeemed", Some(row.group))
                    .about(row.subject())
                    .by(Some(auditor_p.clone())),
                NewEvent::new(&answered, Some(row.group))
                    .about(row.subject())
                    .by(Some(auditor_p)),
            ];
            tx.append(context, &events).await?;
            tx.commit().await?;
            Ok(answer)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, approver1: Option<&str>) -> Row {
        Row {
            id: Uuid::new_v4(),
            group: GroupId::from(Uuid::new_v4()),
            scope: Scope::FullList,
            sealed_target: None,
            sealed_justification: Vec::new(),
            key_id: "k".into(),
            recipient: None,
            requester: "auditor".into(),
            approver1: approver1.map(str::to_string),
            approver2: None,
            state: state.into(),
            expires_ms: 1_000,
            grant_expires_ms: (state != "pending").then_some(2_000),
            created_ms: 0,
            sealed_requester: None,
            sealed_decline: None,
        }
    }

    #[test]
    fn two_distinct_officers_other_than_the_requester_approve_in_time() {
        let r = row("pending", None);
        assert_eq!(
            decide_approval(&r, "o1", true, 10).unwrap(),
            Approval::First
        );
        let r = row("pending", Some("o1"));
        assert_eq!(
            decide_approval(&r, "o2", true, 10).unwrap(),
            Approval::Second
        );
        assert!(matches!(
            decide_approval(&r, "o1", true, 10),
            Err(BgError::SameOfficer)
        ));
        assert!(matches!(
            decide_approval(&r, "auditor", true, 10),
            Err(BgError::RequesterCannotApprove)
        ));
        assert!(matches!(
            decide_approval(&r, "o2", false, 10),
            Err(BgError::WrongRole(_))
        ));
        assert!(matches!(
            decide_approval(&r, "o2", true, 1_001),
            Err(BgError::RequestExpired)
        ));
        let done = row("approved", Some("o1"));
        assert!(matches!(
            decide_approval(&done, "o3", true, 10),
            Err(BgError::NotPending)
        ));
    }

    #[test]
    fn only_the_requester_redeems_an_open_grant_once() {
        let open = row("approved", Some("o1"));
        assert!(decide_redeem(&open, "auditor", true, 1_500).is_ok());
        assert!(matches!(
            decide_redeem(&open, "auditor", true, 2_001),
            Err(BgError::GrantExpired)
        ));
        assert!(matches!(
            decide_redeem(&open, "other", true, 1_500),
            Err(BgError::NotRequester)
        ));
        assert!(matches!(
            decide_redeem(&open, "auditor", false, 1_500),
            Err(BgError::WrongRole(_))
        ));
        let pending = row("pending", None);
        assert!(matches!(
            decide_redeem(&pending, "auditor", true, 10),
            Err(BgError::NotApproved)
        ));
        let used = row("redeemed", Some("o1"));
        assert!(matches!(
            decide_redeem(&used, "auditor", true, 1_500),
            Err(BgError::GrantUsed)
        ));
        let declined = row("declined", None);
        assert!(matches!(
            decide_redeem(&declined, "auditor", true, 10),
            Err(BgError::Declined)
        ));
    }

    #[test]
    fn one_officer_other_than_the_requester_declines_a_waiting_request() {
        let r = row("pending", Some("o1"));
        assert!(
            decide_decline(&r, "o1", true, 10).is_ok(),
            "even one who approved"
        );
        assert!(decide_decline(&r, "o2", true, 10).is_ok());
        assert!(matches!(
            decide_decline(&r, "auditor", true, 10),
            Err(BgError::RequesterCannotApprove)
        ));
        assert!(matches!(
            decide_decline(&r, "o2", false, 10),
            Err(BgError::WrongRole(_))
        ));
        assert!(matches!(
            decide_decline(&r, "o2", true, 1_001),
            Err(BgError::RequestExpired)
        ));
        for done in ["approved", "redeemed", "declined"] {
            assert!(matches!(
                decide_decline(&row(done, Some("o1")), "o2", true, 10),
                Err(BgError::NotPending)
            ));
        }
    }
}
