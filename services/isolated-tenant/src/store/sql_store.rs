//! [`Store`] over either backend: each operation is one of the [`Rules`] run in a transaction
//! of its own, which this module begins (after a write turn, on SQLite), commits or rolls back,
//! and tries again when another writer got in the way.
//!
//! # Cancelled requests
//!
//! A request is dropped at whichever await it had reached when its client goes away. Of a
//! write, only the wait for a write turn may stop there: a writer dropped while it waits leaves
//! the queue ([`Turns::take`]). From BEGIN to COMMIT or ROLLBACK a transaction runs in a task of
//! its own ([`db::run_to_end`]), holding its turn, so it ends as it would have whether or not
//! anyone still waits for it, and its connection goes back to the pool outside a transaction.
//!
//! # Retries
//!
//! Which database failures are worth another try is decided once, in
//! [`service_kit::retry::is_transient`] (deadlocks, serialization failures, a busy SQLite). The
//! store widens it, here and only here, to unique violations: two writers that race to create
//! the same identity meet each other's UNIQUE tag, and the loser's next try finds the
//! identity. Every write is idempotent, so trying it again is safe.

use super::roles::{Groups as _, Memberships as _, Tx};
use super::rules::Rules;
use super::sql::{self, Conn, SqlBackend};
use super::together::{self, Answer, Pending, Together};
use super::turns::{Turns, Writer};
use super::{Provisioned, ResealReport, Store, StoreError};
use crate::audit::{self, Context};
use crate::identity::CorporateDomains;
use crate::seal::SealKeys;
use async_trait::async_trait;
use domain::{CountBucket, Email, GroupId, IdentityKind, Subject};
use service_kit::db;
use service_kit::retry::{self, Retry};
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tenant_api::{
    AddMember, ApplyBatch, ApplyRule, BatchOutcome, IdentityRef, ProvisionGroup, RuleApplied,
};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Tries of a routine operation (and of a re-seal step), 10 ms, 20 ms, 30 ms apart.
const ROUTINE: Retry = Retry::new(4, Duration::from_millis(10));
/// Tries of a batch. Two batches adding the same new person race to create their identity on
/// Postgres, and the loser meets the winner's UNIQUE tag; it plans again inside its
/// transaction (a few times, see [`Rules::apply_batch`]), and after that its retry finds the
/// identity. Big batches share many people, so they get more tries than single calls.
const BATCHES: Retry = Retry::new(8, Duration::from_millis(10));

/// Whether a failed operation is worth another try (see the module docs).
fn worth_retrying(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(e) if retry::is_transient(e) || db::is_unique_violation(e))
}

/// One rule run in a transaction: given the rules, who is calling, the transaction and its
/// arguments.
type Step<A, T> = for<'t> fn(
    &'t Rules<'t>,
    &'t Context,
    &'t mut (dyn Tx + 't),
    &'t A,
) -> Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 't>>;

/// The store on a database of backend `DB`.
pub struct SqlStore<DB: SqlBackend> {
    /// The connections: routine calls' pool, or the bulk batches' own
    /// ([`Store::with_own_pool`]).
    pool: sqlx::Pool<DB>,
    keys: Arc<SealKeys>,
    corporate: Arc<CorporateDomains>,
    /// Write transactions take turns here, first come first served, when the database has a
    /// single writer (SQLite). Without it, writers waiting for SQLite's lock poll it with
    /// growing sleeps, and a join can starve behind a stream of bulk batches for seconds; in a
    /// queue it waits for at most the batch in front of it. Shared by every pool of the store.
    turns: Option<Arc<Turns>>,
    /// Routine writes waiting to be committed together, when the database has a single writer
    /// ([`together`]). Shared by every pool of the store.
    together: Option<Arc<Together>>,
}

impl<DB: SqlBackend> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            keys: self.keys.clone(),
            corporate: self.corporate.clone(),
            turns: self.turns.clone(),
            together: self.together.clone(),
        }
    }
}

impl<DB: SqlBackend> SqlStore<DB> {
    /// Wraps a pool, bringing its schema up to date first; `keys` seal and open everything
    /// written. Every domain counts as corporate until [`Self::with_corporate_domains`] says
    /// otherwise.
    pub async fn migrate(pool: sqlx::Pool<DB>, keys: Arc<SealKeys>) -> anyhow::Result<Self> {
        DB::migrate(&pool).await?;
        let store = Self {
            pool,
            keys,
            corporate: Arc::default(),
            turns: DB::SINGLE_WRITER.then(Arc::default),
            together: DB::SINGLE_WRITER.then(Arc::default),
        };
        store.reference_legacy_memberships().await?;
        Ok(store)
    }

    /// Membership rows written before rows held group references (tenant migration 0010)
    /// still hold their group's clear id: gives each its group's reference under its own key,
    /// in one transaction. Nothing to do when no row holds a group's id.
    async fn reference_legacy_memberships(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let legacy = Conn::<DB>(&mut conn).any_legacy_members().await?;
        drop(conn);
        if !legacy {
            return Ok(());
        }
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let mut on = Conn::<DB>(&mut tx);
        for group in on.all_groups().await? {
            for key in self.keys.all() {
                on.reference_legacy_members(key, group).await?;
            }
        }
        tx.commit().await?;
        tracing::info!("membership rows now refer to their groups by keyed reference");
        Ok(())
    }

    /// The domains whose addresses are the company's own, for inferring the kind of an
    /// identity added by address.
    #[must_use]
    pub fn with_corporate_domains(mut self, corporate: CorporateDomains) -> Self {
        self.corporate = Arc::new(corporate);
        self
    }

    /// Shared transactions committed so far (SQLite; 0 elsewhere), for tests.
    #[cfg(test)]
    pub(crate) fn committed_together(&self) -> usize {
        self.together
            .as_ref()
            .map_or(0, |t| t.committed.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// The pool, for tests that inspect or tamper with the tables directly.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            keys: &self.keys,
            corporate: &self.corporate,
        }
    }

    /// Waits for this writer's turn (see `turns`); holds it until dropped. Nothing to wait for
    /// where the database takes concurrent writers (Postgres).
    async fn turn(&self, kind: Writer) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.turns {
            Some(t) => Some(t.take(kind).await),
            None => None,
        }
    }

    /// Runs `step` in a write transaction of its own, after a write turn as `kind`: commits
    /// when it succeeds, rolls back when it fails, and tries again (a new transaction, after
    /// a pause) as `retry` says when the failure is [`worth_retrying`]. Its events record
    /// `context`. The transaction runs to its end in a task of its own, which owns what it
    /// needs: `args` and a copy of `context` (see the module docs).
    async fn write<A, T>(
        &self,
        kind: Writer,
        retry: Retry,
        context: &Context,
        args: A,
        step: Step<A, T>,
    ) -> Result<T, StoreError>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        let (context, args) = (Arc::new(context.clone()), Arc::new(args));
        self.write_shared(kind, retry, context, args, step).await
    }

    /// [`Self::write`] on arguments already shared.
    async fn write_shared<A, T>(
        &self,
        kind: Writer,
        retry: Retry,
        context: Arc<Context>,
        args: Arc<A>,
        step: Step<A, T>,
    ) -> Result<T, StoreError>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        retry
            .run(worth_retrying, || async {
                let turn = self.turn(kind).await;
                let (store, context, args) = (self.clone(), context.clone(), args.clone());
                db::run_to_end(async move {
                    let _turn = turn;
                    let mut tx = store.pool.begin_with(DB::BEGIN_WRITE).await?;
                    let rules = store.rules();
                    let done = step(&rules, &context, &mut Conn::<DB>(&mut tx), &args).await;
                    finish(tx, done).await
                })
                .await
            })
            .await
    }

    /// Runs `step` as a routine write (someone is waiting for it). Where the database has a
    /// single writer, a write about `Some(people)` (subjects and addresses, see [`people`];
    /// possibly nobody) runs with other routine writes in one transaction ([`together`]); a
    /// write about `None`, which may touch anyone's rows (a group's provisioning or removal, a
    /// label rule applied), and every write on other databases, runs alone ([`Self::write`]).
    async fn routine<A: Send + Sync + 'static, T: Send + 'static>(
        &self,
        people: Option<Vec<String>>,
        context: &Context,
        args: A,
        step: Step<A, T>,
    ) -> Result<T, StoreError> {
        let (Some(together), Some(people)) = (&self.together, people) else {
            return self
                .write(Writer::Routine, ROUTINE, context, args, step)
                .await;
        };
        let (context, args) = (Arc::new(context.clone()), Arc::new(args));
        let ran = ROUTINE
            .run(worth_retrying, || async {
                match self
                    .together_once(together, &people, context.clone(), args.clone(), step)
                    .await
                {
                    Answer::Ran(outcome) => outcome.map(Some),
                    Answer::Alone => Ok(None),
                }
            })
            .await?;
        match ran {
            Some(value) => Ok(*value
                .downcast::<T>()
                .unwrap_or_else(|_| unreachable!("a write is answered what its own step made"))),
            // The shared transaction failed as a whole: this write runs alone, and its own
            // failure, if any, is the answer.
            None => Ok(self
                .write_shared(Writer::Routine, ROUTINE, context, args, step)
                .await?),
        }
    }

    /// Queues `step` for the next shared transaction and waits for its answer, leading that
    /// transaction itself when it gets the write turn first ([`together`]).
    async fn together_once<A: Send + Sync + 'static, T: Send + 'static>(
        &self,
        together: &Arc<Together>,
        people: &[String],
        context: Arc<Context>,
        args: Arc<A>,
        step: Step<A, T>,
    ) -> Answer {
        let op: together::Op = Box::new(move |rules, tx| {
            Box::pin(async move {
                let value = step(rules, &context, tx, &args).await?;
                Ok(Box::new(value) as Box<dyn Any + Send>)
            })
        });
        let (reply, mut answer) = oneshot::channel();
        together.push(Pending {
            people: people.to_vec(),
            op,
            reply,
        });
        loop {
            let turn = self.turn(Writer::Routine).await;
            match answer.try_recv() {
                Ok(done) => return done,
                Err(oneshot::error::TryRecvError::Closed) => return Answer::Alone,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let group = together.take();
            let store = self.clone();
            let led = db::run_to_end(async move {
                let _turn = turn;
                store.commit_together(group).await;
                Ok::<(), StoreError>(())
            })
            .await;
            if let Err(e) = led {
                tracing::warn!(error = %e, "leading a shared transaction");
            }
            // This write was in the group just led, or waits (behind a write about the same
            // person) for the next.
            if let Ok(done) = answer.try_recv() {
                return done;
            }
        }
    }

    /// Runs `group` in one transaction, each write in a savepoint of its own, commits once,
    /// and answers each (see [`Answer`]).
    async fn commit_together(&self, group: Vec<Pending>) {
        if group.is_empty() {
            return;
        }
        let mut tx = match self.pool.begin_with(DB::BEGIN_WRITE).await {
            Ok(tx) => tx,
            Err(e) => {
                tracing::warn!(error = %e, "beginning a shared transaction");
                return answer_alone(group);
            }
        };
        let rules = self.rules();
        let mut ran = Vec::with_capacity(group.len());
        let mut replies = group.into_iter();
        for pending in replies.by_ref() {
            match in_savepoint(&rules, &mut Conn::<DB>(&mut tx), pending.op).await {
                Ok(outcome) => ran.push((pending.reply, outcome)),
                Err(e) => {
                    tracing::warn!(error = %e, "a savepoint of a shared transaction");
                    let _ = tx.rollback().await;
                    let not_run = replies.map(|p| p.reply);
                    answer_alone_replies(
                        ran.into_iter()
                            .map(|r| r.0)
                            .chain([pending.reply])
                            .chain(not_run),
                    );
                    return;
                }
            }
        }
        match tx.commit().await {
            Ok(()) => {
                #[cfg(test)]
                if let Some(t) = &self.together {
                    t.committed
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                for (reply, outcome) in ran {
                    let _ = reply.send(Answer::Ran(outcome));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "committing a shared transaction");
                answer_alone_replies(ran.into_iter().map(|r| r.0));
            }
        }
    }

    /// Runs `step` from `start` to the end of its table, at most `batch` rows a transaction,
    /// each as bulk work (routine writers go first); answers how many rows it rewrote.
    async fn reseal_all<K: Send + Sync + 'static>(
        &self,
        context: &Context,
        start: K,
        batch: usize,
        step: Step<(K, usize), (u64, Option<K>)>,
    ) -> Result<u64, StoreError> {
        let mut rewritten = 0;
        let mut from = Some(start);
        while let Some(after) = from {
            let (n, next) = self
                .write(Writer::Bulk, ROUTINE, context, (after, batch), step)
                .await?;
            rewritten += n;
            from = next;
        }
        Ok(rewritten)
    }
}

/// Whom a routine write is about, as [`together`] compares them: its subject and its address,
/// each marked with what it is.
fn people(subject: Option<&Subject>, email: Option<&Email>) -> Vec<String> {
    subject
        .map(|s| format!("subject:{}", s.as_str()))
        .into_iter()
        .chain(email.map(|e| format!("email:{}", e.as_str())))
        .collect()
}

/// Runs `op` in a savepoint of `tx`, rolled back to when the write fails. The outer error is
/// the savepoint's own: the transaction cannot go on.
async fn in_savepoint(
    rules: &Rules<'_>,
    tx: &mut dyn Tx,
    op: together::Op,
) -> Result<Result<Box<dyn Any + Send>, StoreError>, StoreError> {
    const NAME: &str = "together";
    tx.savepoint(NAME).await?;
    let outcome = op(rules, &mut *tx).await;
    if outcome.is_err() {
        tx.rollback_to_savepoint(NAME).await?;
    }
    tx.release_savepoint(NAME).await?;
    Ok(outcome)
}

/// Tells each writer of `group` that the shared transaction failed before its write could hold.
fn answer_alone(group: Vec<Pending>) {
    answer_alone_replies(group.into_iter().map(|p| p.reply));
}

fn answer_alone_replies(replies: impl Iterator<Item = oneshot::Sender<Answer>>) {
    for reply in replies {
        let _ = reply.send(Answer::Alone);
    }
}

/// Commits `tx` when `done` succeeded; otherwise rolls it back now and answers the error. A
/// transaction only dropped is rolled back lazily on Postgres (when its connection is next
/// used), holding its row locks until then: a label refusal would keep the person's identity
/// locked for whoever touches it next.
async fn finish<DB: SqlBackend, T>(
    tx: sqlx::Transaction<'_, DB>,
    done: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match done {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(e) => {
            // The error that matters is `e`; a failed rollback closes the connection, which
            // ends the transaction too.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

#[async_trait]
impl<DB: SqlBackend> Store for SqlStore<DB> {
    fn with_own_pool(&self, max_connections: u32) -> Arc<dyn Store> {
        let options = db::refuse_open_transactions(sqlx::pool::PoolOptions::<DB>::new())
            .max_connections(max_connections.max(1))
            .acquire_timeout(self.pool.options().get_acquire_timeout());
        let pool = DB::bulk_pool(options, &self.pool.connect_options());
        Arc::new(Self {
            pool,
            ..self.clone()
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(sql::execute(&self.pool, "SELECT 1").await?)
    }

    fn audit_db(&self) -> audit::Db {
        DB::audit_db(self.pool.clone())
    }

    async fn provision_group(
        &self,
        context: &Context,
        request: &ProvisionGroup,
    ) -> Result<Provisioned, StoreError> {
        self.routine(None, context, request.clone(), |r, c, tx, request| {
            Box::pin(r.provision(c, tx, request))
        })
        .await
    }

    async fn add_member(
        &self,
        context: &Context,
        group: GroupId,
        request: &AddMember,
    ) -> Result<(), StoreError> {
        let who = &request.member;
        self.routine(
            Some(people(who.subject.as_ref(), who.email.as_ref())),
            context,
            (group, request.clone()),
            |r, c, tx, a| Box::pin(r.add(c, tx, a.0, &a.1)),
        )
        .await
    }

    async fn deprovision_group(&self, context: &Context, group: GroupId) -> Result<(), StoreError> {
        self.routine(None, context, group, |r, c, tx, group| {
            Box::pin(r.deprovision(c, tx, *group))
        })
        .await
    }

    async fn remove_member(
        &self,
        context: &Context,
        group: GroupId,
        who: &IdentityRef,
    ) -> Result<(), StoreError> {
        self.routine(
            Some(people(who.subject.as_ref(), who.email.as_ref())),
            context,
            (group, who.clone()),
            |r, c, tx, a| Box::pin(r.remove(c, tx, a.0, &a.1)),
        )
        .await
    }

    async fn offboard(&self, context: &Context, who: &IdentityRef) -> Result<(), StoreError> {
        self.routine(
            Some(people(who.subject.as_ref(), who.email.as_ref())),
            context,
            who.clone(),
            |r, c, tx, who| Box::pin(r.offboard(c, tx, who)),
        )
        .await
    }

    async fn apply_batch(
        &self,
        context: &Context,
        batch: &ApplyBatch,
    ) -> Result<BatchOutcome, StoreError> {
        let step: Step<ApplyBatch, BatchOutcome> =
            |rules, c, tx, batch| Box::pin(rules.apply_batch(c, tx, batch));
        // One transaction on either database: a batch is bounded by bulk-api's chunk size, and
        // on SQLite routine writers that are already waiting go before it (`turns`). Cutting it
        // into short transactions was measured to cost both the job's rate and the join's tail
        // (docs/benchmarks.md).
        let outcome = self
            .write(Writer::Bulk, BATCHES, context, batch.clone(), step)
            .await?;
        // Out of the write turn, so routine writers need not wait for it.
        if let Some(statement) = DB::AFTER_BULK_BATCH {
            if let Err(e) = sql::execute(&self.pool, statement).await {
                tracing::warn!(error = %e, "after a bulk batch");
            }
        }
        Ok(outcome)
    }

    async fn is_member(
        &self,
        group: GroupId,
        subject: &Subject,
        email: Option<&Email>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.rules()
            .is_member(&mut Conn::<DB>(&mut conn), group, subject, email)
            .await
    }

    async fn groups_of(
        &self,
        subject: &Subject,
        email: Option<&Email>,
    ) -> Result<Vec<GroupId>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.rules()
            .groups_of(&mut Conn::<DB>(&mut conn), subject, email, None)
            .await
    }

    async fn groups_among(
        &self,
        subject: &Subject,
        email: Option<&Email>,
        groups: &[GroupId],
    ) -> Result<Vec<GroupId>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.rules()
            .groups_of(&mut Conn::<DB>(&mut conn), subject, email, Some(groups))
            .await
    }

    async fn settle_kind(
        &self,
        context: &Context,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
    ) -> Result<bool, StoreError> {
        let differs = {
            let mut conn = self.pool.acquire().await?;
            self.rules()
                .kind_differs(&mut Conn::<DB>(&mut conn), subject, email, kind)
                .await?
        };
        if !differs {
            return Ok(false);
        }
        let args = (subject.clone(), email.cloned(), kind);
        self.routine(
            Some(people(Some(subject), email)),
            context,
            args,
            |r, c, tx, a| Box::pin(r.settle_kind(c, tx, &a.0, a.1.as_ref(), a.2)),
        )
        .await
    }

    async fn sync_identity(
        &self,
        context: &Context,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
    ) -> Result<(), StoreError> {
        let args = (subject.clone(), email.cloned(), kind);
        self.routine(
            Some(people(Some(subject), email)),
            context,
            args,
            |r, c, tx, a| Box::pin(r.sync_identity(c, tx, &a.0, a.1.as_ref(), a.2)),
        )
        .await
    }

    async fn apply_rule(
        &self,
        context: &Context,
        request: &ApplyRule,
    ) -> Result<RuleApplied, StoreError> {
        let mut groups = {
            let mut conn = self.pool.acquire().await?;
            Conn::<DB>(&mut conn)
                .groups_under_label(&request.rule.label)
                .await?
        };
        groups.extend(request.groups.iter().copied());
        groups.sort_unstable();
        groups.dedup();
        let (mut applied, mut ended) = (0, 0);
        for group in groups {
            let done = self
                .routine(
                    None,
                    context,
                    (group, request.rule.clone()),
                    |r, c, tx, a| Box::pin(r.apply_rule(c, tx, a.0, &a.1)),
                )
                .await?;
            if let Some(n) = done {
                applied += 1;
                ended += n;
            }
        }
        Ok(RuleApplied {
            groups: applied,
            ended: CountBucket::of(ended),
        })
    }

    async fn token_revoked(
        &self,
        subject: &Subject,
        issued_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.rules()
            .token_revoked(&mut Conn::<DB>(&mut conn), subject, issued_at)
            .await
    }

    async fn member_count(&self, group: GroupId) -> Result<CountBucket, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let n = Conn::<DB>(&mut conn)
            .count_members(group, &self.keys.group_refs(group))
            .await?;
        Ok(CountBucket::of(n.ok_or(StoreError::GroupNotFound)?))
    }

    async fn shown_count(
        &self,
        group: GroupId,
        now_ms: i64,
        next_refresh_ms: i64,
    ) -> Result<CountBucket, StoreError> {
        // A fresh snapshot is a plain read: owners' page views take no write turn. Only a
        // snapshot due for refresh takes one, and is checked again inside it (another reader
        // may have refreshed it meanwhile). No audit event: a bucket names nobody.
        let mut conn = self.pool.acquire().await?;
        let fresh = self
            .rules()
            .fresh_count(&mut Conn::<DB>(&mut conn), group, now_ms)
            .await?;
        drop(conn);
        if let Some(bucket) = fresh {
            return Ok(bucket);
        }
        self.routine(
            Some(Vec::new()),
            &Context::tenant(),
            (group, now_ms, next_refresh_ms),
            |r, _, tx, (group, now, next)| Box::pin(r.shown_count(tx, *group, *now, *next)),
        )
        .await
    }

    async fn reseal(&self, context: &Context, batch: usize) -> Result<ResealReport, StoreError> {
        let batch = batch.max(1);
        let identities = self
            .reseal_all(
                context,
                Uuid::nil(),
                batch,
                |rules, c, tx, (after, batch)| {
                    Box::pin(rules.reseal_identities(c, tx, *after, *batch))
                },
            )
            .await?;
        let memberships = self
            .reseal_all(
                context,
                Vec::new(),
                batch,
                |rules, c, tx, (after, batch)| {
                    Box::pin(rules.reseal_memberships(c, tx, after, *batch))
                },
            )
            .await?;
        Ok(ResealReport {
            identities,
            memberships,
        })
    }

    #[cfg(test)]
    async fn dump(&self) -> Vec<(String, Vec<Vec<String>>)> {
        sql::dump(&self.pool).await
    }
}
