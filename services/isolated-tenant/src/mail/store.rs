//! The mail tables: sender policies, the stored messages, the delivery queue, bad addresses and
//! the counters of consumed inbound mail; both backends from one macro body, like the main
//! store, over a pool of their own on the same database (the main store migrates it).
//!
//! Everything that names a person is sealed with the tenant's keys (INV-5): a group's owners,
//! each delivery's recipients; a stored message is sealed too. A delivered row keeps no
//! recipient, and a message's content is wiped once its last delivery is final.

use crate::audit::{action, Append as _, NewEvent};
use crate::seal::{MailSeal, SealKeys};
use crate::store::StoreError;
use async_trait::async_trait;
use domain::{Email, GroupId, SenderPolicy, Subject};
use rand::RngCore;
use service_kit::db::{self, Backend};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Rows per statement in set-based reads and writes.
const CHUNK: usize = 500;
/// Connections of the mail pool: the listener's transactions and the workers' short updates
/// (more than the default number of delivery workers, so the listener always finds one).
const MAX_CONNECTIONS: u32 = 12;

/// A group the listener can take mail for.
#[derive(Debug, Clone)]
pub struct GroupTarget {
    /// The group.
    pub group_id: GroupId,
    /// Its address.
    pub address: Email,
    /// The name its mail carries (List-Id).
    pub display_name: String,
    /// Who may send to it.
    pub policy: SenderPolicy,
    /// Its owners' subjects (for the `owners` policy).
    pub owners: Vec<Subject>,
}

/// What accepting a message stored.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    /// The stored message.
    pub message_id: Uuid,
    /// Members it will be delivered to.
    pub recipients: usize,
    /// Delivery rows (relay transactions) queued.
    pub deliveries: usize,
}

/// A delivery a worker leased.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The delivery row.
    pub id: Uuid,
    /// Its message.
    pub message_id: Uuid,
    /// Its envelope recipients, opened.
    pub recipients: Vec<String>,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The VERP token of its envelope sender.
    pub bounce_token: String,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The relay took the message for some recipients; `retry` were refused for now (4xx),
    /// `rejected` for good (5xx: hard bounces).
    Sent {
        /// Recipients refused for now, to try again in a new delivery.
        retry: Vec<String>,
        /// Recipients refused for good.
        rejected: Vec<String>,
    },
    /// Nothing was delivered; try the whole delivery again after `after` (or give up when the
    /// attempts are spent).
    TryLater {
        /// How long to wait.
        after: Duration,
    },
    /// Nothing was delivered and never will be: a dead letter.
    Failed,
}

/// The limits [`MailStore::finish`] applies.
#[derive(Debug, Clone, Copy)]
pub struct FinishLimits {
    /// Attempts before a dead letter.
    pub max_attempts: u32,
    /// Hard bounces before an address is bad.
    pub hard_bounce_limit: u32,
    /// The first retry's delay.
    pub retry_base: Duration,
}

/// The delay before retry number `attempts` (1-based): `base`, doubling, at most an hour.
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    (base * factor).min(Duration::from_secs(3600))
}

/// Operators' view of the queue: counts only (INV-1).
pub use tenant_api::MailCounts;

/// What came back to a bounce address (or an automatic reply to a group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// A delivery status notification.
    Bounce,
    /// Anything else: an out-of-office, an auto-reply.
    AutoReply,
}

/// The mail module's SQL.
#[async_trait]
pub trait MailStore: Send + Sync + 'static {
    /// The active group with this address, with its sender policy (`anyone` when control-api
    /// never sent one) and owners.
    async fn find_group(&self, address: &Email) -> Result<Option<GroupTarget>, StoreError>;

    /// Whether the identity holding `email` is a member of `group`.
    async fn is_member_by_email(&self, group: GroupId, email: &Email) -> Result<bool, StoreError>;

    /// The subject the identity holding `email` is bound to, if any.
    async fn subject_of_email(&self, email: &Email) -> Result<Option<Subject>, StoreError>;

    /// Sets who may send to `group` and its owners (sealed).
    async fn set_policy(
        &self,
        group: GroupId,
        policy: SenderPolicy,
        owners: &[Subject],
    ) -> Result<(), StoreError>;

    /// Stores `message` (headers already cleaned) for `group` and queues one delivery per
    /// `batch` members, in one transaction: once it returns, the message will be delivered.
    async fn accept(
        &self,
        group: GroupId,
        message: &[u8],
        batch: usize,
    ) -> Result<Accepted, StoreError>;

    /// Leases up to `max` due deliveries for `lease` to `owner`.
    async fn claim(
        &self,
        owner: Uuid,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// The stored message, opened (`None` once wiped).
    async fn message(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError>;

    /// Records how a leased delivery ended. Does nothing when the lease was lost.
    async fn finish(
        &self,
        owner: Uuid,
        claimed: &Claimed,
        outcome: Outcome,
        limits: FinishLimits,
    ) -> Result<(), StoreError>;

    /// Counts mail consumed at a bounce address or a group address; for a bounce of a known
    /// token that names the address that failed for good, counts a hard bounce for it.
    async fn consume(
        &self,
        kind: Inbound,
        token: Option<&str>,
        failed: &[String],
        hard_bounce_limit: u32,
    ) -> Result<(), StoreError>;

    /// The operators' counts.
    async fn counts(&self) -> Result<MailCounts, StoreError>;
}

/// Opens the mail store on the tenant's (already migrated) database.
pub async fn connect(url: &str, keys: Arc<SealKeys>) -> anyhow::Result<Arc<dyn MailStore>> {
    Ok(match Backend::from_url(url)? {
        Backend::Postgres => Arc::new(PgMailStore {
            pool: db::connect_postgres(url, MAX_CONNECTIONS).await?,
            keys,
        }),
        Backend::Sqlite => Arc::new(SqliteMailStore {
            pool: db::connect_sqlite(url, MAX_CONNECTIONS).await?,
            keys,
        }),
    })
}

/// Tries of a write that meets a busy database, a deadlock or a serialization failure.
const ATTEMPTS: u32 = 5;

/// Whether a store error is worth another try: SQLite busy or locked (a writer, or a new
/// connection switching to WAL, held the database longer than the busy timeout allows), a
/// Postgres deadlock or serialization failure, or no free connection in time.
fn is_transient(e: &StoreError) -> bool {
    match e {
        StoreError::Db(sqlx::Error::Database(d)) => matches!(
            d.code().as_deref(),
            Some("5" | "6" | "517" | "40001" | "40P01")
        ),
        StoreError::Db(sqlx::Error::PoolTimedOut) => true,
        _ => false,
    }
}

/// Runs `op` until it succeeds, fails for good, or has had [`ATTEMPTS`] tries. Each mail
/// write is one transaction that either commits whole or not at all, so a retry never
/// doubles anything.
pub async fn retrying<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if is_transient(&e) && attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "transient mail store failure; retrying");
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A fresh VERP token: 16 random bytes, hex. Says nothing about the recipients.
fn new_token() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Recipients as sealed plaintext: one address per line.
fn join_recipients(r: &[String]) -> Vec<u8> {
    r.join("\n").into_bytes()
}

fn split_recipients(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .split('\n')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Owners as sealed plaintext (JSON list of subjects).
fn owners_plain(owners: &[Subject]) -> Vec<u8> {
    serde_json::to_vec(owners).expect("subjects serialise")
}

fn policy_from(s: &str) -> SenderPolicy {
    match s {
        "members" => SenderPolicy::Members,
        "owners" => SenderPolicy::Owners,
        _ => SenderPolicy::Anyone,
    }
}

/// Addresses grouped by destination domain, then cut into batches of at most `batch`: each
/// relay transaction goes to one destination, so per-destination limits apply cleanly.
fn batches(mut addresses: Vec<String>, batch: usize) -> Vec<Vec<String>> {
    addresses.sort_unstable_by(|a, b| {
        let d = |x: &str| {
            x.rsplit_once('@')
                .map(|(_, d)| d.to_string())
                .unwrap_or_default()
        };
        d(a).cmp(&d(b)).then_with(|| a.cmp(b))
    });
    addresses.dedup();
    let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in addresses {
        let d = a
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_default();
        by_domain.entry(d).or_default().push(a);
    }
    by_domain
        .into_values()
        .flat_map(|v| {
            v.chunks(batch.max(1))
                .map(<[String]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

macro_rules! mail_store {
    ($name:ident, $db:ty, begin_write = $begin:literal, skip_locked = $skip:literal) => {
        /// The mail tables on this backend.
        pub struct $name {
            pool: sqlx::Pool<$db>,
            keys: Arc<SealKeys>,
        }

        impl $name {
            /// The tags of the addresses marked bad, which expansion skips. Read on the caller's
            /// connection: on SQLite, a second connection could wait behind delivery workers
            /// that themselves wait for the caller's write lock.
            async fn bad_tags(
                conn: &mut <$db as sqlx::Database>::Connection,
            ) -> Result<HashSet<Vec<u8>>, StoreError> {
                let rows: Vec<Vec<u8>> = sqlx::query_scalar(
                    "SELECT address_tag FROM mail_bad_addresses WHERE bad = $1",
                )
                .bind(true)
                .fetch_all(&mut *conn)
                .await?;
                Ok(rows.into_iter().collect())
            }

            async fn count_consumed(
                conn: &mut <$db as sqlx::Database>::Connection,
                name: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO mail_counters (name, total) VALUES ($1, 1) \
                     ON CONFLICT (name) DO UPDATE SET total = mail_counters.total + 1",
                )
                .bind(name)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            async fn hard_bounce(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                address: &str,
                limit: u32,
            ) -> Result<(), StoreError> {
                let tag = self.keys.active().mail_tag(&address.to_ascii_lowercase());
                sqlx::query(
                    "INSERT INTO mail_bad_addresses (address_tag, hard_bounces, bad) \
                     VALUES ($1, 1, $2) ON CONFLICT (address_tag) DO UPDATE SET \
                     hard_bounces = mail_bad_addresses.hard_bounces + 1, \
                     bad = (mail_bad_addresses.hard_bounces + 1 >= $3)",
                )
                .bind(tag)
                .bind(limit <= 1)
                .bind(i64::from(limit))
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            /// The members' addresses of `group`, opened, skipping bad ones.
            async fn expand(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                group: GroupId,
            ) -> Result<Vec<String>, StoreError> {
                let sealed: Vec<(Vec<u8>, String)> = sqlx::query_as(
                    "SELECT sealed_identity, key_id FROM memberships WHERE group_id = $1",
                )
                .bind(group.as_uuid())
                .fetch_all(&mut *conn)
                .await?;
                let ids = sealed
                    .iter()
                    .map(|(s, kid)| Ok(self.keys.get(kid)?.open_member(group, s)?))
                    .collect::<Result<Vec<Uuid>, StoreError>>()?;
                let bad = Self::bad_tags(&mut *conn).await?;
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT id, sealed_profile, key_id FROM identities WHERE disabled = ",
                    );
                    q.push_bind(false).push(" AND id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    list.push_unseparated(")");
                    let rows: Vec<(Uuid, Vec<u8>, String)> =
                        q.build_query_as().fetch_all(&mut *conn).await?;
                    for (id, profile, kid) in rows {
                        let p = self.keys.get(&kid)?.open_profile(id, &profile)?;
                        if let Some(e) = p.email {
                            if bad.is_empty()
                                || !bad.contains(&self.keys.active().mail_tag(e.as_str()))
                            {
                                out.push(e.as_str().to_string());
                            }
                        }
                    }
                }
                Ok(out)
            }

            async fn insert_deliveries(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                message_id: Uuid,
                batches: &[Vec<String>],
                attempts: i32,
                due: i64,
                state: &'static str,
            ) -> Result<(), StoreError> {
                let key = self.keys.active();
                for chunk in batches.chunks(CHUNK / 8) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO mail_deliveries (id, message_id, sealed_recipients, key_id, \
                         recipients, state, attempts, next_attempt_ms, bounce_token) ",
                    );
                    q.push_values(chunk, |mut b, r| {
                        let id = Uuid::new_v4();
                        b.push_bind(id)
                            .push_bind(message_id)
                            .push_bind(if state == "queued" {
                                key.seal_mail(MailSeal::Recipients, id.as_bytes(), &join_recipients(r))
                            } else {
                                Vec::new()
                            })
                            .push_bind(key.id().to_string())
                            .push_bind(i32::try_from(r.len()).unwrap_or(i32::MAX))
                            .push_bind(state)
                            .push_bind(attempts)
                            .push_bind(due)
                            .push_bind(new_token());
                    });
                    q.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            /// Wipes the message's content once none of its deliveries is queued.
            async fn wipe_if_done(
                conn: &mut <$db as sqlx::Database>::Connection,
                message_id: Uuid,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE mail_messages SET sealed_message = $1 WHERE id = $2 AND NOT EXISTS \
                     (SELECT 1 FROM mail_deliveries WHERE message_id = $2 AND state = 'queued')",
                )
                .bind(Vec::<u8>::new())
                .bind(message_id)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl MailStore for $name {
            async fn find_group(&self, address: &Email) -> Result<Option<GroupTarget>, StoreError> {
                let row: Option<(Uuid, String, Option<String>, Option<Vec<u8>>, Option<String>)> =
                    sqlx::query_as(
                        "SELECT g.group_id, g.display_name, p.sender_policy, p.sealed_owners, p.key_id \
                         FROM distribution_groups g LEFT JOIN mail_group_policy p \
                         ON p.group_id = g.group_id WHERE g.address = $1",
                    )
                    .bind(address.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                let Some((id, display_name, policy, sealed, kid)) = row else {
                    return Ok(None);
                };
                let owners = match (sealed, kid) {
                    (Some(s), Some(kid)) => {
                        let plain = self.keys.get(&kid)?.open_mail(
                            MailSeal::Owners,
                            id.as_bytes(),
                            &s,
                        )?;
                        serde_json::from_slice(&plain).map_err(|_| {
                            crate::seal::SealError::Corrupt("mail-owners")
                        })?
                    }
                    _ => Vec::new(),
                };
                Ok(Some(GroupTarget {
                    group_id: GroupId::from(id),
                    address: address.clone(),
                    display_name,
                    policy: policy.as_deref().map_or(SenderPolicy::Anyone, policy_from),
                    owners,
                }))
            }

            async fn is_member_by_email(
                &self,
                group: GroupId,
                email: &Email,
            ) -> Result<bool, StoreError> {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id FROM identities WHERE email_tag IN (",
                );
                let mut list = q.separated(", ");
                for k in self.keys.all() {
                    list.push_bind(k.email_tag(email));
                }
                list.push_unseparated(")");
                let ids: Vec<Uuid> = q.build_query_scalar().fetch_all(&self.pool).await?;
                for id in ids {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT COUNT(*) FROM memberships WHERE member_tag IN (",
                    );
                    let mut list = q.separated(", ");
                    for k in self.keys.all() {
                        list.push_bind(k.member_tag(group, id));
                    }
                    list.push_unseparated(")");
                    let n: i64 = q.build_query_scalar().fetch_one(&self.pool).await?;
                    if n > 0 {
                        return Ok(true);
                    }
                }
                Ok(false)
            }

            async fn subject_of_email(&self, email: &Email) -> Result<Option<Subject>, StoreError> {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, sealed_profile, key_id FROM identities WHERE email_tag IN (",
                );
                let mut list = q.separated(", ");
                for k in self.keys.all() {
                    list.push_bind(k.email_tag(email));
                }
                list.push_unseparated(")");
                let row: Option<(Uuid, Vec<u8>, String)> =
                    q.build_query_as().fetch_optional(&self.pool).await?;
                match row {
                    Some((id, sealed, kid)) => Ok(self.keys.get(&kid)?.open_profile(id, &sealed)?.subject),
                    None => Ok(None),
                }
            }

            async fn set_policy(
                &self,
                group: GroupId,
                policy: SenderPolicy,
                owners: &[Subject],
            ) -> Result<(), StoreError> {
                let key = self.keys.active();
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query(
                    "INSERT INTO mail_group_policy (group_id, sender_policy, sealed_owners, key_id) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (group_id) DO UPDATE SET \
                     sender_policy = excluded.sender_policy, sealed_owners = excluded.sealed_owners, \
                     key_id = excluded.key_id",
                )
                .bind(group.as_uuid())
                .bind(policy.as_str())
                .bind(key.seal_mail(MailSeal::Owners, group.as_uuid().as_bytes(), &owners_plain(owners)))
                .bind(key.id().to_string())
                .execute(&mut *tx)
                .await?;
                // A mail policy change is a state change the audit chain records (issue 6): the
                // group and the action; who the owners are stays sealed above.
                let event = NewEvent::new(action::MAIL_POLICY_SET, Some(group));
                <$db>::append(&mut tx, &[event]).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn accept(
                &self,
                group: GroupId,
                message: &[u8],
                batch: usize,
            ) -> Result<Accepted, StoreError> {
                let key = self.keys.active();
                let message_id = Uuid::new_v4();
                let sealed = key.seal_mail(MailSeal::Message, message_id.as_bytes(), message);
                let mut tx = self.pool.begin_with($begin).await?;
                let addresses = match self.expand(&mut tx, group).await {
                    Ok(a) => a,
                    Err(e) => {
                        tx.rollback().await?;
                        return Err(e);
                    }
                };
                let recipients = addresses.len();
                let batches = batches(addresses, batch);
                sqlx::query(
                    "INSERT INTO mail_messages (id, group_id, sealed_message, key_id) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(message_id)
                .bind(group.as_uuid())
                .bind(if batches.is_empty() { Vec::new() } else { sealed })
                .bind(key.id().to_string())
                .execute(&mut *tx)
                .await?;
                self.insert_deliveries(&mut tx, message_id, &batches, 0, db::now_ms(), "queued")
                    .await?;
                tx.commit().await?;
                Ok(Accepted {
                    message_id,
                    recipients,
                    deliveries: batches.len(),
                })
            }

            async fn claim(
                &self,
                owner: Uuid,
                max: usize,
                lease: Duration,
            ) -> Result<Vec<Claimed>, StoreError> {
                let now = db::now_ms();
                // A read first: idle workers poll often, and on SQLite even an UPDATE that
                // matches nothing takes the single write lock, making joins and leaves wait.
                let due: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM mail_deliveries WHERE state = 'queued' \
                     AND next_attempt_ms <= $1 AND lease_until_ms <= $1 LIMIT 1",
                )
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                if due.is_none() {
                    return Ok(Vec::new());
                }
                let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
                let rows: Vec<(Uuid, Uuid, Vec<u8>, String, i32, String)> = sqlx::query_as(concat!(
                    "UPDATE mail_deliveries SET lease_owner = $1, lease_until_ms = $2, \
                     attempts = attempts + 1 WHERE id IN (SELECT id FROM mail_deliveries \
                     WHERE state = 'queued' AND next_attempt_ms <= $3 AND lease_until_ms <= $3 \
                     ORDER BY next_attempt_ms LIMIT $4",
                    $skip,
                    ") RETURNING id, message_id, sealed_recipients, key_id, attempts, bounce_token"
                ))
                .bind(owner)
                .bind(until)
                .bind(now)
                .bind(i64::try_from(max).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(id, message_id, sealed, kid, attempts, bounce_token)| {
                        let plain =
                            self.keys.get(&kid)?.open_mail(MailSeal::Recipients, id.as_bytes(), &sealed)?;
                        Ok(Claimed {
                            id,
                            message_id,
                            recipients: split_recipients(&plain),
                            attempts: u32::try_from(attempts).unwrap_or(0),
                            bounce_token,
                        })
                    })
                    .collect()
            }

            async fn message(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
                let row: Option<(Vec<u8>, String)> = sqlx::query_as(
                    "SELECT sealed_message, key_id FROM mail_messages WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some((sealed, kid)) if !sealed.is_empty() => Ok(Some(
                        self.keys
                            .get(&kid)?
                            .open_mail(MailSeal::Message, id.as_bytes(), &sealed)?
                            .to_vec(),
                    )),
                    _ => Ok(None),
                }
            }

            async fn finish(
                &self,
                owner: Uuid,
                claimed: &Claimed,
                outcome: Outcome,
                limits: FinishLimits,
            ) -> Result<(), StoreError> {
                let FinishLimits { max_attempts, hard_bounce_limit, retry_base } = limits;
                let now = db::now_ms();
                let mut tx = self.pool.begin_with($begin).await?;
                let (state, next, wipe) = match &outcome {
                    Outcome::Sent { .. } => ("delivered", now, true),
                    Outcome::Failed => ("dead", now, true),
                    Outcome::TryLater { .. } if claimed.attempts >= max_attempts => ("dead", now, true),
                    Outcome::TryLater { after } => (
                        "queued",
                        now + i64::try_from(after.as_millis()).unwrap_or(i64::MAX / 2),
                        false,
                    ),
                };
                let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE mail_deliveries SET state = ");
                q.push_bind(state)
                    .push(", next_attempt_ms = ")
                    .push_bind(next)
                    .push(", lease_owner = NULL, lease_until_ms = 0");
                if wipe {
                    q.push(", sealed_recipients = ").push_bind(Vec::<u8>::new());
                }
                q.push(" WHERE id = ")
                    .push_bind(claimed.id)
                    .push(" AND lease_owner = ")
                    .push_bind(owner)
                    .push(" AND state = 'queued'");
                let updated = q.build().execute(&mut *tx).await?.rows_affected();
                if updated == 0 {
                    // The lease expired and another worker took the delivery over.
                    tx.rollback().await?;
                    return Ok(());
                }
                if let Outcome::Sent { retry, rejected } = outcome {
                    if !retry.is_empty() {
                        let attempts = i32::try_from(claimed.attempts).unwrap_or(i32::MAX);
                        if claimed.attempts >= max_attempts {
                            // Attempts spent: those recipients become a dead letter.
                            self.insert_deliveries(&mut tx, claimed.message_id, &[retry], attempts, now, "dead").await?;
                        } else {
                            let due = now + i64::try_from(backoff(retry_base, claimed.attempts).as_millis()).unwrap_or(0);
                            self.insert_deliveries(&mut tx, claimed.message_id, &[retry], attempts, due, "queued").await?;
                        }
                    }
                    for r in rejected {
                        self.hard_bounce(&mut tx, &r, hard_bounce_limit).await?;
                    }
                }
                Self::wipe_if_done(&mut tx, claimed.message_id).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn consume(
                &self,
                kind: Inbound,
                token: Option<&str>,
                failed: &[String],
                hard_bounce_limit: u32,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let known = match token {
                    Some(t) => {
                        let n: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM mail_deliveries WHERE bounce_token = $1",
                        )
                        .bind(t)
                        .fetch_one(&mut *tx)
                        .await?;
                        n > 0
                    }
                    None => false,
                };
                let name = match kind {
                    Inbound::Bounce => "bounces_consumed",
                    Inbound::AutoReply => "auto_replies_consumed",
                };
                Self::count_consumed(&mut tx, name).await?;
                if known && kind == Inbound::Bounce {
                    for f in failed {
                        self.hard_bounce(&mut tx, f, hard_bounce_limit).await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn counts(&self) -> Result<MailCounts, StoreError> {
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT state, COUNT(*), COALESCE(SUM(recipients), 0) FROM mail_deliveries GROUP BY state",
                )
                .fetch_all(&self.pool)
                .await?;
                let mut c = MailCounts::default();
                for (state, n, r) in rows {
                    match state.as_str() {
                        "queued" => (c.queued_deliveries, c.queued_recipients) = (n, r),
                        "delivered" => (c.delivered_deliveries, c.delivered_recipients) = (n, r),
                        _ => (c.dead_deliveries, c.dead_recipients) = (n, r),
                    }
                }
                c.bad_addresses = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM mail_bad_addresses WHERE bad = $1",
                )
                .bind(true)
                .fetch_one(&self.pool)
                .await?;
                let counters: Vec<(String, i64)> =
                    sqlx::query_as("SELECT name, total FROM mail_counters")
                        .fetch_all(&self.pool)
                        .await?;
                for (name, total) in counters {
                    match name.as_str() {
                        "bounces_consumed" => c.bounces_consumed = total,
                        "auto_replies_consumed" => c.auto_replies_consumed = total,
                        _ => {}
                    }
                }
                Ok(c)
            }

        }
    };
}

mail_store!(
    PgMailStore,
    sqlx::Postgres,
    begin_write = "BEGIN",
    skip_locked = " FOR UPDATE SKIP LOCKED"
);
mail_store!(
    SqliteMailStore,
    sqlx::Sqlite,
    begin_write = "BEGIN IMMEDIATE",
    skip_locked = ""
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_one_destination_each_and_every_address_once() {
        let addrs: Vec<String> = [
            "b@y.example",
            "a@x.example",
            "c@x.example",
            "a@x.example",
            "d@y.example",
            "e@x.example",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let b = batches(addrs, 2);
        assert_eq!(
            b,
            vec![
                vec!["a@x.example".to_string(), "c@x.example".into()],
                vec!["e@x.example".to_string()],
                vec!["b@y.example".to_string(), "d@y.example".into()],
            ]
        );
    }
}
