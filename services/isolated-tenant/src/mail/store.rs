//! The mail tables: sender policies, the stored messages, the delivery queue, bad addresses and
//! the counters of consumed inbound mail, over a pool of their own on the tenant's database
//! (the main store migrates it).
//!
//! Two roles: [`MailGroups`] (which group an address is, and who may send to it) and
//! [`MailQueue`] (messages in, deliveries out, what came back). [`SqlMailStore`] plays both on
//! Postgres and on SQLite with the same statements ([`crate::sql`] names where the backends
//! differ); the rules a delivery's end follows are plain functions ([`settle`],
//! [`requeue_at`]). The members a message goes to come from [`crate::member_list`], the one
//! reader of member lists.
//!
//! Everything that names a person is sealed with the tenant's keys (INV-5): a group's owners,
//! each delivery's recipients; a stored message is sealed too. A delivered row keeps no
//! recipient, and a message's content is wiped once its last delivery is final.

use crate::audit::{action, Context, NewEvent};
use crate::member_list;
use crate::seal::{MailSeal, SealKeys};
use crate::sql::{self, Arg, Sql, Tx};
use crate::store::StoreError;
use async_trait::async_trait;
use domain::{Email, GroupId, SenderPolicy, Subject};
use rand::RngCore;
use service_kit::db;
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
    /// Whether its label lets members post anonymously through its alias.
    pub anonymous_posting: bool,
    /// Whether the mail is addressed to the group's anonymous alias
    /// ([`domain::anonymous_alias`]) rather than to its address.
    pub anonymous: bool,
}

impl GroupTarget {
    /// Who may send to the address the mail came to: the group's sender policy, and for its
    /// anonymous alias no wider than its members (an anonymous post comes from inside the
    /// group, never from outside it).
    pub fn senders(&self) -> SenderPolicy {
        if self.anonymous {
            self.policy.narrower(SenderPolicy::Members)
        } else {
            self.policy
        }
    }

    /// The address the mail came to: the group's address, or its anonymous alias.
    pub fn addressed(&self) -> Email {
        if self.anonymous {
            domain::anonymous_alias(&self.address).unwrap_or_else(|| self.address.clone())
        } else {
            self.address.clone()
        }
    }
}

/// A group as a notification names it: never a member.
#[derive(Debug, Clone)]
pub struct NoticeGroup {
    /// Its public name.
    pub display_name: String,
    /// Its owners' addresses, as the tenant knows them.
    pub owners: Vec<Email>,
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
        /// The relay's reply code, or what failed before a reply ([`Outcome::reply`]).
        reply: Option<String>,
    },
    /// Nothing was delivered and never will be: a dead letter.
    Failed {
        /// The relay's reply code, or what failed before a reply.
        reply: Option<String>,
    },
}

impl Outcome {
    /// What the operators' dead-letter list shows of the attempt: the relay's reply code
    /// (`550 5.7.1`), or the cause of a failure before any reply (`tls`); never a reply's text.
    pub fn reply(&self) -> Option<&str> {
        match self {
            Self::Sent { .. } => None,
            Self::TryLater { reply, .. } | Self::Failed { reply } => reply.as_deref(),
        }
    }
}

/// The limits [`MailQueue::finish`] applies.
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

/// The queue as the tenant itself sees it: deliveries and their recipients per state, beside
/// the message counts operators get ([`QueueCounts::for_operators`]). Recipients and
/// deliveries never leave the tenant: around a post of one's own, either would count that
/// group's members (INV-4). Tests and the tenant's own checks read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages with a delivery waiting or in flight.
    pub queued_messages: i64,
    /// Deliveries (relay transactions) waiting or in flight.
    pub queued_deliveries: i64,
    /// Recipients in those.
    pub queued_recipients: i64,
    /// Messages with a delivery done, within retention.
    pub delivered_messages: i64,
    /// Deliveries done, within retention.
    pub delivered_deliveries: i64,
    /// Recipients in those.
    pub delivered_recipients: i64,
    /// Messages with a dead letter, within retention.
    pub dead_messages: i64,
    /// Dead deliveries, within retention.
    pub dead_deliveries: i64,
    /// Recipients in those.
    pub dead_recipients: i64,
    /// Delivery addresses marked bad.
    pub bad_addresses: i64,
    /// Bounces consumed.
    pub bounces_consumed: i64,
    /// Auto-replies consumed.
    pub auto_replies_consumed: i64,
    /// Messages to restricted groups dropped unread.
    pub refused_messages: i64,
}

impl QueueCounts {
    /// What operators may see: messages and totals, no recipient and no transaction count.
    pub fn for_operators(&self, relay: tenant_api::RelayStatus) -> MailCounts {
        MailCounts {
            queued_messages: self.queued_messages,
            delivered_messages: self.delivered_messages,
            dead_messages: self.dead_messages,
            bad_addresses: self.bad_addresses,
            bounces_consumed: self.bounces_consumed,
            auto_replies_consumed: self.auto_replies_consumed,
            refused_messages: self.refused_messages,
            relay,
        }
    }
}

/// What came back to a bounce address (or an automatic reply to a group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// A delivery status notification.
    Bounce,
    /// Anything else: an out-of-office, an auto-reply.
    AutoReply,
    /// A message the group's sender policy refused, dropped unread.
    Refused,
}

/// Which group an address is, and who may send to it.
#[async_trait]
pub trait MailGroups: Send + Sync + 'static {
    /// The active group with this address, or whose anonymous alias this is, with its sender
    /// policy (`anyone` when control-api never sent one), owners and whether it takes
    /// anonymous posts.
    async fn find_group(&self, address: &Email) -> Result<Option<GroupTarget>, StoreError>;

    /// Whether the identity holding `email` is a member of `group`, for the `members` sender
    /// policy ([`member_list::is_mail_member`]).
    async fn is_member_by_email(&self, group: GroupId, email: &Email) -> Result<bool, StoreError>;

    /// The subject the identity holding `email` is bound to, if any.
    async fn subject_of_email(&self, email: &Email) -> Result<Option<Subject>, StoreError>;

    /// What a notification about `group` needs: its public name and the addresses its owners
    /// are known by (the owners control-api provisioned, each at the address of the identity
    /// bound to their subject; an owner the tenant never saw with an address, or whose identity
    /// is disabled, is left out). `None` when no such group is provisioned. Reads no member.
    async fn notice_group(&self, group: GroupId) -> Result<Option<NoticeGroup>, StoreError>;

    /// Sets who may send to `group`, whether its alias takes anonymous posts, and its owners
    /// (sealed); the audit event records `context`.
    async fn set_policy(
        &self,
        context: &Context,
        group: GroupId,
        policy: SenderPolicy,
        anonymous_posting: bool,
        owners: &[Subject],
    ) -> Result<(), StoreError>;
}

/// The mail queue: messages in, deliveries leased and settled, bounces and auto-replies
/// counted.
#[async_trait]
pub trait MailQueue: Send + Sync + 'static {
    /// Stores `message` (headers already cleaned) for `group` and queues one delivery per
    /// `batch` members, in one transaction: once it returns, the message will be delivered.
    async fn accept(
        &self,
        group: GroupId,
        message: &[u8],
        batch: usize,
    ) -> Result<Accepted, StoreError>;

    /// Stores `message`, a notice the tenant writes about `group`, and queues its one delivery
    /// to `recipient`, in one transaction.
    async fn accept_notice(
        &self,
        group: GroupId,
        recipient: &Email,
        message: &[u8],
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

    /// The queue's counts (operators get [`QueueCounts::for_operators`] of them).
    async fn counts(&self) -> Result<QueueCounts, StoreError>;
    /// When the oldest delivery still queued was first queued (Unix ms), if any is.
    async fn oldest_queued_ms(&self) -> Result<Option<i64>, StoreError>;

    /// Deletes the deliveries that ended long enough ago — delivered before
    /// `delivered_before_ms`, dead before `dead_before_ms` — and the messages left with no
    /// delivery (their bodies were wiped when their last delivery ended). Answers the deliveries
    /// deleted. A bounce for a purged delivery is then unknown, and consumed like one.
    async fn purge(&self, delivered_before_ms: i64, dead_before_ms: i64)
        -> Result<u64, StoreError>;

    /// The newest `limit` dead letters for operators, one per message: its id, when, attempts
    /// and a reply code. Never a group, an address or a count.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError>;
}

/// One dead letter, as operators see it.
pub use tenant_api::DeadLetter;

/// Both roles: what the listener, the workers and the tenant's routes hold.
pub trait MailStore: MailGroups + MailQueue {}

impl<T: MailGroups + MailQueue> MailStore for T {}

/// Opens the mail store on the tenant's (already migrated) database.
pub async fn connect(url: &str, keys: Arc<SealKeys>) -> anyhow::Result<Arc<dyn MailStore>> {
    Ok(Arc::new(SqlMailStore {
        db: sql::Pool::connect(url, MAX_CONNECTIONS).await?,
        keys,
    }))
}

/// How a leased delivery's row ends: its state, when it is next due, and whether its sealed
/// recipients are wiped (a final row keeps no recipient).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// `delivered`, `dead` or `queued`.
    pub state: &'static str,
    /// When it is due again (now, for a final state).
    pub next_attempt_ms: i64,
    /// Whether the recipients are wiped.
    pub wipe: bool,
}

/// The rule for a delivery's end: sent or failed is final; "try later" waits `after`, unless
/// the attempts are spent, which makes it a dead letter.
pub fn settle(outcome: &Outcome, attempts: u32, max_attempts: u32, now: i64) -> Settled {
    let done = |state| Settled {
        state,
        next_attempt_ms: now,
        wipe: true,
    };
    match outcome {
        Outcome::Sent { .. } => done("delivered"),
        Outcome::Failed { .. } => done("dead"),
        Outcome::TryLater { .. } if attempts >= max_attempts => done("dead"),
        Outcome::TryLater { after, .. } => Settled {
            state: "queued",
            next_attempt_ms: now + i64::try_from(after.as_millis()).unwrap_or(i64::MAX / 2),
            wipe: false,
        },
    }
}

/// The rule for recipients a relay refused for now within a sent delivery: a new delivery, due
/// after the backoff, or a dead letter when the attempts are spent. Answers its state and due
/// time.
pub fn requeue_at(attempts: u32, limits: FinishLimits, now: i64) -> (&'static str, i64) {
    if attempts >= limits.max_attempts {
        ("dead", now)
    } else {
        let wait = backoff(limits.retry_base, attempts);
        ("queued", now + i64::try_from(wait.as_millis()).unwrap_or(0))
    }
}

/// The counter a consumed message adds to.
fn counter(kind: Inbound) -> &'static str {
    match kind {
        Inbound::Bounce => "bounces_consumed",
        Inbound::AutoReply => "auto_replies_consumed",
        Inbound::Refused => "refused_messages",
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

/// The mail tables, on Postgres or SQLite. Cloned into the task in which each write
/// transaction runs to its end ([`db::run_to_end`]).
#[derive(Clone)]
pub struct SqlMailStore {
    db: sql::Pool,
    keys: Arc<SealKeys>,
}

/// A mail group by address, with its mail policy when it has one. A security group is never
/// found, so its (reserved) address is answered like one no group has and no message is ever
/// expanded to its members.
const FIND_GROUP: &str = "SELECT g.group_id, g.display_name, p.sender_policy, p.sealed_owners, \
                          p.key_id, p.anonymous_posting FROM distribution_groups g \
                          LEFT JOIN mail_group_policy p ON p.group_id = g.group_id \
                          WHERE g.address = $1 AND g.group_type = 'mail'";
/// A group's name and its sealed owners, by id.
const NOTICE_GROUP: &str = "SELECT g.display_name, p.sealed_owners, p.key_id \
                            FROM distribution_groups g LEFT JOIN mail_group_policy p \
                            ON p.group_id = g.group_id WHERE g.group_id = $1";
const SET_POLICY: &str = "INSERT INTO mail_group_policy (group_id, sender_policy, sealed_owners, \
                          key_id, anonymous_posting) VALUES ($1, $2, $3, $4, $5) \
                          ON CONFLICT (group_id) DO UPDATE SET \
                          sender_policy = excluded.sender_policy, \
                          sealed_owners = excluded.sealed_owners, key_id = excluded.key_id, \
                          anonymous_posting = excluded.anonymous_posting";
const INSERT_MESSAGE: &str =
    "INSERT INTO mail_messages (id, sealed_message, key_id) VALUES ($1, $2, $3)";
const INSERT_DELIVERIES: &str = "INSERT INTO mail_deliveries (id, message_id, sealed_recipients, \
                                 key_id, recipients, state, attempts, next_attempt_ms, bounce_token, \
                                 recipient_tags, queued_at_ms)";
/// When the oldest delivery still waiting was first queued (rows from before migration 0017
/// have no such time: their next attempt stands in).
const OLDEST_QUEUED: &str = "SELECT MIN(COALESCE(queued_at_ms, next_attempt_ms)) \
                             FROM mail_deliveries WHERE state = 'queued'";
/// Whether anything is due: idle workers poll often, and on SQLite even an UPDATE that matches
/// nothing takes the single write lock, making joins and leaves wait.
const ANY_DUE: &str = "SELECT 1 FROM mail_deliveries WHERE state = 'queued' \
                       AND next_attempt_ms <= $1 AND lease_until_ms <= $1 LIMIT 1";
/// The lease; the caller appends the backend's lock clause and the end.
const LEASE: &str = "UPDATE mail_deliveries SET lease_owner = $1, lease_until_ms = $2, \
                     attempts = attempts + 1 WHERE id IN (SELECT id FROM mail_deliveries \
                     WHERE state = 'queued' AND next_attempt_ms <= $3 AND lease_until_ms <= $3 \
                     ORDER BY next_attempt_ms LIMIT $4";
const LEASED: &str =
    ") RETURNING id, message_id, sealed_recipients, key_id, attempts, bounce_token";
const MESSAGE: &str = "SELECT sealed_message, key_id FROM mail_messages WHERE id = $1";
/// Wipes a message's content once none of its deliveries is queued.
const WIPE_IF_DONE: &str = "UPDATE mail_messages SET sealed_message = $1 WHERE id = $2 \
                            AND NOT EXISTS (SELECT 1 FROM mail_deliveries WHERE message_id = $2 \
                            AND state = 'queued')";
const PURGE_DELIVERIES: &str = "DELETE FROM mail_deliveries WHERE (state = 'delivered' \
                                AND next_attempt_ms < $1) OR (state = 'dead' AND next_attempt_ms < $2)";
const PURGE_MESSAGES: &str = "DELETE FROM mail_messages WHERE length(sealed_message) = 0 \
                              AND NOT EXISTS (SELECT 1 FROM mail_deliveries d \
                              WHERE d.message_id = mail_messages.id)";
const BAD_TAGS: &str = "SELECT address_tag FROM mail_bad_addresses WHERE bad = $1";
/// Counts a hard bounce for an address, unless one was counted less than `$5` ms before `$4`.
const HARD_BOUNCE: &str = "INSERT INTO mail_bad_addresses (address_tag, hard_bounces, bad, \
                           last_counted_ms) VALUES ($1, 1, $2, $4) \
                           ON CONFLICT (address_tag) DO UPDATE SET \
                           hard_bounces = CASE WHEN mail_bad_addresses.last_counted_ms <= $4 - $5 \
                             THEN mail_bad_addresses.hard_bounces + 1 \
                             ELSE mail_bad_addresses.hard_bounces END, \
                           bad = CASE WHEN mail_bad_addresses.last_counted_ms <= $4 - $5 \
                             THEN (mail_bad_addresses.hard_bounces + 1 >= $3) \
                             ELSE mail_bad_addresses.bad END, \
                           last_counted_ms = CASE WHEN mail_bad_addresses.last_counted_ms <= $4 - $5 \
                             THEN $4 ELSE mail_bad_addresses.last_counted_ms END";
/// The shortest time between two hard bounces a DSN counts for one address: one a day.
pub const DSN_BOUNCE_INTERVAL_MS: i64 = 24 * 60 * 60 * 1000;
const DELIVERY_TAGS: &str = "SELECT recipient_tags FROM mail_deliveries WHERE bounce_token = $1";
const SET_DELIVERY_TAGS: &str =
    "UPDATE mail_deliveries SET recipient_tags = $1 WHERE bounce_token = $2";
const COUNT_CONSUMED: &str = "INSERT INTO mail_counters (name, total) VALUES ($1, 1) \
                              ON CONFLICT (name) DO UPDATE SET total = mail_counters.total + 1";
const KNOWN_TOKEN: &str = "SELECT COUNT(*) FROM mail_deliveries WHERE bounce_token = $1";
const COUNT_BY_STATE: &str = "SELECT state, COUNT(DISTINCT message_id), COUNT(*), \
                              COALESCE(SUM(recipients), 0) FROM mail_deliveries GROUP BY state";
/// One row per message with a dead delivery: its latest end, most attempts and highest code.
const DEAD_LETTERS: &str = "SELECT message_id, MAX(next_attempt_ms), MAX(attempts), \
                            MAX(last_reply) FROM mail_deliveries WHERE state = 'dead' \
                            GROUP BY message_id ORDER BY 2 DESC, 1 LIMIT $1";
const COUNT_BAD: &str = "SELECT COUNT(*) FROM mail_bad_addresses WHERE bad = $1";
const COUNTERS: &str = "SELECT name, total FROM mail_counters";

impl SqlMailStore {
    /// The addresses `group`'s mail goes to: the members who take part in mail, less the
    /// addresses marked bad. Read on the caller's transaction: on SQLite, a second connection
    /// could wait behind delivery workers that themselves wait for the caller's write lock.
    async fn expand(&self, tx: &mut Tx, group: GroupId) -> Result<Vec<String>, StoreError> {
        let members = member_list::recipients(&mut *tx, &self.keys, group).await?;
        let bad: HashSet<Vec<u8>> = Sql::new(BAD_TAGS)
            .bind(true)
            .fetch_all::<(Vec<u8>,)>(&mut *tx)
            .await?
            .into_iter()
            .map(|(t,)| t)
            .collect();
        let active = self.keys.active();
        Ok(members
            .into_iter()
            .map(|e| e.as_str().to_string())
            .filter(|e| bad.is_empty() || !bad.contains(&active.mail_tag(e)))
            .collect())
    }

    async fn insert_deliveries(
        &self,
        tx: &mut Tx,
        message_id: Uuid,
        batches: &[Vec<String>],
        attempts: i32,
        due: i64,
        state: &'static str,
    ) -> Result<(), StoreError> {
        let key = self.keys.active();
        let queued_at = db::now_ms();
        for chunk in batches.chunks(CHUNK / 8) {
            let rows = chunk.iter().map(|r| {
                let id = Uuid::new_v4();
                let token = new_token();
                let tags: Vec<u8> = r
                    .iter()
                    .flat_map(|a| key.bounce_tag(&token, &a.to_ascii_lowercase()))
                    .collect();
                let sealed = if state == "queued" {
                    key.seal_mail(MailSeal::Recipients, id.as_bytes(), &join_recipients(r))
                } else {
                    Vec::new()
                };
                [
                    Arg::from(id),
                    message_id.into(),
                    sealed.into(),
                    key.id().into(),
                    i32::try_from(r.len()).unwrap_or(i32::MAX).into(),
                    state.into(),
                    attempts.into(),
                    due.into(),
                    token.into(),
                    tags.into(),
                    queued_at.into(),
                ]
            });
            Sql::new(INSERT_DELIVERIES)
                .push_rows(rows)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Counts a hard bounce for `address` (at most one per `interval_ms`); `limit` of them
    /// mark it bad.
    async fn hard_bounce(
        &self,
        tx: &mut Tx,
        address: &str,
        limit: u32,
        interval_ms: i64,
    ) -> Result<(), StoreError> {
        let tag = self.keys.active().mail_tag(&address.to_ascii_lowercase());
        Sql::new(HARD_BOUNCE)
            .bind(tag)
            .bind(limit <= 1)
            .bind(i64::from(limit))
            .bind(db::now_ms())
            .bind(interval_ms)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Of `failed`, the addresses the delivery with `token` really went to and for which no
    /// DSN counted yet; their tags are taken off the delivery, so the same DSN again counts
    /// nothing.
    async fn bound_to_delivery(
        &self,
        tx: &mut Tx,
        token: &str,
        failed: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let Some((tags,)): Option<(Vec<u8>,)> = Sql::new(DELIVERY_TAGS)
            .bind(token.to_string())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut left: Vec<&[u8]> = tags.chunks(32).collect();
        let mut bound = Vec::new();
        for f in failed {
            let address = f.to_ascii_lowercase();
            let mine: Vec<Vec<u8>> = self
                .keys
                .all()
                .iter()
                .map(|k| k.bounce_tag(token, &address))
                .collect();
            if let Some(i) = left.iter().position(|t| mine.iter().any(|m| m == t)) {
                left.remove(i);
                bound.push(address);
            }
        }
        if !bound.is_empty() {
            Sql::new(SET_DELIVERY_TAGS)
                .bind(left.concat())
                .bind(token.to_string())
                .execute(&mut *tx)
                .await?;
        }
        Ok(bound)
    }

    /// Stores a sealed message of `group` and queues its deliveries, one per batch.
    async fn queue_message(
        &self,
        tx: &mut Tx,
        message_id: Uuid,
        sealed: Vec<u8>,
        key_id: String,
        batches: &[Vec<String>],
    ) -> Result<(), StoreError> {
        Sql::new(INSERT_MESSAGE)
            .bind(message_id)
            .bind(sealed)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        self.insert_deliveries(tx, message_id, batches, 0, db::now_ms(), "queued")
            .await
    }

    async fn wipe_if_done(tx: &mut Tx, message_id: Uuid) -> Result<(), StoreError> {
        Sql::new(WIPE_IF_DONE)
            .bind(Vec::<u8>::new())
            .bind(message_id)
            .execute(tx)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl MailGroups for SqlMailStore {
    async fn find_group(&self, address: &Email) -> Result<Option<GroupTarget>, StoreError> {
        type Found = (
            Uuid,
            String,
            Option<String>,
            Option<Vec<u8>>,
            Option<String>,
            Option<bool>,
        );
        // An alias is looked up by its group's address; a group's own address never holds `+`,
        // so an address is either a group's or an alias, never both.
        let (group_address, anonymous) = match domain::alias_group(address) {
            Some(group) => (group, true),
            None => (address.clone(), false),
        };
        let mut conn = self.db.acquire().await?;
        let row: Option<Found> = Sql::new(FIND_GROUP)
            .bind(group_address.as_str())
            .fetch_optional(&mut conn)
            .await?;
        let Some((id, display_name, policy, sealed, kid, anonymous_posting)) = row else {
            return Ok(None);
        };
        let owners = match (sealed, kid) {
            (Some(s), Some(kid)) => {
                let plain = self
                    .keys
                    .get(&kid)?
                    .open_mail(MailSeal::Owners, id.as_bytes(), &s)?;
                serde_json::from_slice(&plain)
                    .map_err(|_| crate::seal::SealError::Corrupt("mail-owners"))?
            }
            _ => Vec::new(),
        };
        Ok(Some(GroupTarget {
            group_id: GroupId::from(id),
            address: group_address,
            display_name,
            policy: policy.as_deref().map_or(SenderPolicy::Anyone, policy_from),
            owners,
            anonymous_posting: anonymous_posting.unwrap_or(false),
            anonymous,
        }))
    }

    async fn is_member_by_email(&self, group: GroupId, email: &Email) -> Result<bool, StoreError> {
        let mut conn = self.db.acquire().await?;
        member_list::is_mail_member(&mut conn, &self.keys, group, email).await
    }

    async fn subject_of_email(&self, email: &Email) -> Result<Option<Subject>, StoreError> {
        let mut conn = self.db.acquire().await?;
        let row: Option<(Uuid, Vec<u8>, String)> =
            Sql::new("SELECT id, sealed_profile, key_id FROM identities WHERE email_tag IN (")
                .push_list(self.keys.all().iter().map(|k| k.email_tag(email)))
                .push(")")
                .fetch_optional(&mut conn)
                .await?;
        match row {
            Some((id, sealed, kid)) => Ok(self.keys.get(&kid)?.open_profile(id, &sealed)?.subject),
            None => Ok(None),
        }
    }

    async fn notice_group(&self, group: GroupId) -> Result<Option<NoticeGroup>, StoreError> {
        let mut conn = self.db.acquire().await?;
        let id = *group.as_uuid();
        let row: Option<(String, Option<Vec<u8>>, Option<String>)> = Sql::new(NOTICE_GROUP)
            .bind(id)
            .fetch_optional(&mut conn)
            .await?;
        let Some((display_name, sealed, kid)) = row else {
            return Ok(None);
        };
        let subjects: Vec<Subject> = match (sealed, kid) {
            (Some(s), Some(kid)) => {
                let plain = self
                    .keys
                    .get(&kid)?
                    .open_mail(MailSeal::Owners, id.as_bytes(), &s)?;
                serde_json::from_slice(&plain)
                    .map_err(|_| crate::seal::SealError::Corrupt("mail-owners"))?
            }
            _ => Vec::new(),
        };
        let mut owners = Vec::new();
        for subject in &subjects {
            // One small read per owner (a group has a handful): the identity bound to the
            // subject, under any of the keys, not disabled.
            let row: Option<(Uuid, Vec<u8>, String)> = Sql::new(
                "SELECT id, sealed_profile, key_id FROM identities WHERE disabled = $1 \
                 AND subject_tag IN (",
            )
            .bind(false)
            .push_list(self.keys.all().iter().map(|k| k.subject_tag(subject)))
            .push(")")
            .fetch_optional(&mut conn)
            .await?;
            if let Some((iid, sealed, kid)) = row {
                let profile = self.keys.get(&kid)?.open_profile(iid, &sealed)?;
                if profile.subject.as_ref() == Some(subject) {
                    owners.extend(profile.email);
                }
            }
        }
        owners.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        owners.dedup();
        Ok(Some(NoticeGroup {
            display_name,
            owners,
        }))
    }

    async fn set_policy(
        &self,
        context: &Context,
        group: GroupId,
        policy: SenderPolicy,
        anonymous_posting: bool,
        owners: &[Subject],
    ) -> Result<(), StoreError> {
        let key = self.keys.active();
        let sealed = key.seal_mail(
            MailSeal::Owners,
            group.as_uuid().as_bytes(),
            &owners_plain(owners),
        );
        let (db, key_id, context) = (self.db.clone(), key.id().to_string(), context.clone());
        db::run_to_end(async move {
            let mut tx = db.begin_write().await?;
            Sql::new(SET_POLICY)
                .bind(group.as_uuid())
                .bind(policy.as_str())
                .bind(sealed)
                .bind(key_id)
                .bind(anonymous_posting)
                .execute(&mut tx)
                .await?;
            // A mail policy change is a state change the audit chain records (issue 6): the
            // group and the action; who the owners are stays sealed above.
            tx.append(
                &context,
                &[NewEvent::new(action::MAIL_POLICY_SET, Some(group))],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl MailQueue for SqlMailStore {
    async fn accept(
        &self,
        group: GroupId,
        message: &[u8],
        batch: usize,
    ) -> Result<Accepted, StoreError> {
        let key = self.keys.active();
        let message_id = Uuid::new_v4();
        let sealed = key.seal_mail(MailSeal::Message, message_id.as_bytes(), message);
        let (this, key_id) = (self.clone(), key.id().to_string());
        db::run_to_end(async move {
            let mut tx = this.db.begin_write().await?;
            let addresses = match this.expand(&mut tx, group).await {
                Ok(a) => a,
                Err(e) => {
                    tx.rollback().await?;
                    return Err(e);
                }
            };
            let recipients = addresses.len();
            let batches = batches(addresses, batch);
            // Nobody to deliver to: the message is not kept.
            let sealed = if batches.is_empty() {
                Vec::new()
            } else {
                sealed
            };
            this.queue_message(&mut tx, message_id, sealed, key_id, &batches)
                .await?;
            tx.commit().await?;
            Ok(Accepted {
                message_id,
                recipients,
                deliveries: batches.len(),
            })
        })
        .await
    }

    async fn accept_notice(
        &self,
        _group: GroupId,
        recipient: &Email,
        message: &[u8],
    ) -> Result<Accepted, StoreError> {
        let key = self.keys.active();
        let message_id = Uuid::new_v4();
        let sealed = key.seal_mail(MailSeal::Message, message_id.as_bytes(), message);
        let (this, key_id) = (self.clone(), key.id().to_string());
        let batches = vec![vec![recipient.to_string()]];
        db::run_to_end(async move {
            let mut tx = this.db.begin_write().await?;
            this.queue_message(&mut tx, message_id, sealed, key_id, &batches)
                .await?;
            tx.commit().await?;
            Ok(Accepted {
                message_id,
                recipients: 1,
                deliveries: 1,
            })
        })
        .await
    }

    async fn claim(
        &self,
        owner: Uuid,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        let now = db::now_ms();
        let mut conn = self.db.acquire().await?;
        let due: Option<(i32,)> = Sql::new(ANY_DUE)
            .bind(now)
            .fetch_optional(&mut conn)
            .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let rows: Vec<(Uuid, Uuid, Vec<u8>, String, i32, String)> = Sql::new(LEASE)
            .push(&self.db.lease_rows("mail_deliveries"))
            .push(LEASED)
            .bind(owner)
            .bind(until)
            .bind(now)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&mut conn)
            .await?;
        rows.into_iter()
            .map(|(id, message_id, sealed, kid, attempts, bounce_token)| {
                let plain =
                    self.keys
                        .get(&kid)?
                        .open_mail(MailSeal::Recipients, id.as_bytes(), &sealed)?;
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
        let mut conn = self.db.acquire().await?;
        let row: Option<(Vec<u8>, String)> =
            Sql::new(MESSAGE).bind(id).fetch_optional(&mut conn).await?;
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
        let now = db::now_ms();
        let settled = settle(&outcome, claimed.attempts, limits.max_attempts, now);
        let mut q = Sql::new("UPDATE mail_deliveries SET state = ")
            .push_bind(settled.state)
            .push(", next_attempt_ms = ")
            .push_bind(settled.next_attempt_ms)
            .push(", lease_owner = NULL, lease_until_ms = 0, last_reply = ")
            .push_bind(outcome.reply().map(str::to_string));
        if settled.wipe {
            q = q.push(", sealed_recipients = ").push_bind(Vec::<u8>::new());
        }
        let q = q
            .push(" WHERE id = ")
            .push_bind(claimed.id)
            .push(" AND lease_owner = ")
            .push_bind(owner)
            .push(" AND state = 'queued'");
        let (this, message_id, attempts) = (self.clone(), claimed.message_id, claimed.attempts);
        db::run_to_end(async move {
            let mut tx = this.db.begin_write().await?;
            if q.execute(&mut tx).await? == 0 {
                // The lease expired and another worker took the delivery over.
                tx.rollback().await?;
                return Ok(());
            }
            if let Outcome::Sent { retry, rejected } = outcome {
                if !retry.is_empty() {
                    let (state, due) = requeue_at(attempts, limits, now);
                    let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
                    this.insert_deliveries(&mut tx, message_id, &[retry], attempts, due, state)
                        .await?;
                }
                for r in rejected {
                    this.hard_bounce(&mut tx, &r, limits.hard_bounce_limit, 0)
                        .await?;
                }
            }
            Self::wipe_if_done(&mut tx, message_id).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn consume(
        &self,
        kind: Inbound,
        token: Option<&str>,
        failed: &[String],
        hard_bounce_limit: u32,
    ) -> Result<(), StoreError> {
        let (this, token, failed) = (self.clone(), token.map(str::to_string), failed.to_vec());
        db::run_to_end(async move {
            let mut tx = this.db.begin_write().await?;
            let known = match &token {
                Some(t) => {
                    let (n,): (i64,) = Sql::new(KNOWN_TOKEN)
                        .bind(t.clone())
                        .fetch_one(&mut tx)
                        .await?;
                    n > 0
                }
                None => false,
            };
            Sql::new(COUNT_CONSUMED)
                .bind(counter(kind))
                .execute(&mut tx)
                .await?;
            if let (true, Inbound::Bounce, Some(t)) = (known, kind, token.as_deref()) {
                // Only addresses the delivery really went to, once each, at most one a day.
                for f in this.bound_to_delivery(&mut tx, t, &failed).await? {
                    this.hard_bounce(&mut tx, &f, hard_bounce_limit, DSN_BOUNCE_INTERVAL_MS)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn purge(
        &self,
        delivered_before_ms: i64,
        dead_before_ms: i64,
    ) -> Result<u64, StoreError> {
        let this = self.clone();
        db::run_to_end(async move {
            let mut tx = this.db.begin_write().await?;
            let deleted = Sql::new(PURGE_DELIVERIES)
                .bind(delivered_before_ms)
                .bind(dead_before_ms)
                .execute(&mut tx)
                .await?;
            Sql::new(PURGE_MESSAGES).execute(&mut tx).await?;
            tx.commit().await?;
            Ok(deleted)
        })
        .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut conn = self.db.acquire().await?;
        let rows: Vec<(Uuid, i64, i32, Option<String>)> = Sql::new(DEAD_LETTERS)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, ended_ms, attempts, last_reply)| DeadLetter {
                id,
                ended_ms,
                attempts: u32::try_from(attempts).unwrap_or(0),
                last_reply,
            })
            .collect())
    }

    async fn oldest_queued_ms(&self) -> Result<Option<i64>, StoreError> {
        let mut conn = self.db.acquire().await?;
        let (oldest,): (Option<i64>,) = Sql::new(OLDEST_QUEUED).fetch_one(&mut conn).await?;
        Ok(oldest)
    }

    async fn counts(&self) -> Result<QueueCounts, StoreError> {
        let mut conn = self.db.acquire().await?;
        let rows: Vec<(String, i64, i64, i64)> =
            Sql::new(COUNT_BY_STATE).fetch_all(&mut conn).await?;
        let mut c = QueueCounts::default();
        for (state, m, n, r) in rows {
            match state.as_str() {
                "queued" => {
                    (c.queued_messages, c.queued_deliveries, c.queued_recipients) = (m, n, r);
                }
                "delivered" => {
                    (
                        c.delivered_messages,
                        c.delivered_deliveries,
                        c.delivered_recipients,
                    ) = (m, n, r);
                }
                _ => (c.dead_messages, c.dead_deliveries, c.dead_recipients) = (m, n, r),
            }
        }
        (c.bad_addresses,) = Sql::new(COUNT_BAD).bind(true).fetch_one(&mut conn).await?;
        let counters: Vec<(String, i64)> = Sql::new(COUNTERS).fetch_all(&mut conn).await?;
        for (name, total) in counters {
            match name.as_str() {
                "bounces_consumed" => c.bounces_consumed = total,
                "auto_replies_consumed" => c.auto_replies_consumed = total,
                "refused_messages" => c.refused_messages = total,
                _ => {}
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_ends_final_or_waits_until_its_attempts_are_spent() {
        let later = Outcome::TryLater {
            after: Duration::from_secs(2),
            reply: Some("451".into()),
        };
        let sent = Outcome::Sent {
            retry: vec![],
            rejected: vec![],
        };
        assert_eq!(settle(&sent, 1, 3, 10).state, "delivered");
        assert_eq!(
            settle(&Outcome::Failed { reply: None }, 1, 3, 10).state,
            "dead"
        );
        assert_eq!(
            settle(&later, 2, 3, 10),
            Settled {
                state: "queued",
                next_attempt_ms: 2_010,
                wipe: false
            }
        );
        assert!(
            settle(&later, 3, 3, 10).wipe,
            "spent attempts: a dead letter"
        );
        let limits = FinishLimits {
            max_attempts: 3,
            hard_bounce_limit: 3,
            retry_base: Duration::from_secs(1),
        };
        assert_eq!(requeue_at(2, limits, 10), ("queued", 2_010));
        assert_eq!(requeue_at(3, limits, 10), ("dead", 10));
    }

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
