//! The store's tests, each on SQLite (`sqlite::…`) and on Postgres (`postgres::…`, ignored unless
//! run with `--include-ignored` and a server in `HUSH_TEST_POSTGRES_URL`; each test gets a fresh
//! database `hush_t_<random hex>` there, dropped at the end).

use super::{PgStore, SqliteStore, Store};
use crate::jobs::JobState;
use async_trait::async_trait;
use service_kit::db::Backend as Kind;
use service_kit::testing::TestDatabase;
use uuid::Uuid;

/// A raw insert for the listing tests (jobs are submitted through the API in a later issue),
/// written once for both backends like the store itself.
#[async_trait]
trait Raw: Store {
    async fn insert_job(
        &self,
        id: Uuid,
        state: &str,
        created_at: i64,
        counts: [i64; 3],
    ) -> Result<(), sqlx::Error>;
}

macro_rules! raw {
    ($ty:ty) => {
        #[async_trait]
        impl Raw for $ty {
            async fn insert_job(
                &self,
                id: Uuid,
                state: &str,
                created_at: i64,
                [total, applied, rejected]: [i64; 3],
            ) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "INSERT INTO jobs (id, state, submitted_by, created_at, updated_at, total, applied, rejected) \
                     VALUES ($1, $2, 'operator-1', $3, $3, $4, $5, $6)",
                )
                .bind(id)
                .bind(state)
                .bind(created_at)
                .bind(total)
                .bind(applied)
                .bind(rejected)
                .execute(self.pool())
                .await
                .map(drop)
            }
        }
    };
}
raw!(PgStore);
raw!(SqliteStore);

/// One backend under test, and the database to remove once the test is done with it.
struct Backend {
    name: &'static str,
    store: Box<dyn Raw>,
    db: TestDatabase,
}

impl Backend {
    async fn finish(self) {
        drop(self.store);
        self.db.remove().await;
    }
}

/// A fresh store of `kind` (one, in a list so a test reads the same on either backend).
async fn backends(kind: Kind) -> Vec<Backend> {
    let name = match kind {
        Kind::Sqlite => "sqlite",
        Kind::Postgres => "postgres",
    };
    let mut out = Vec::new();
    for (name, db) in [(name, TestDatabase::new(kind).await)] {
        let store: Box<dyn Raw> = match db.backend() {
            Kind::Sqlite => Box::new(
                SqliteStore::migrate(service_kit::db::connect_sqlite(db.url(), 4).await.unwrap())
                    .await
                    .unwrap(),
            ),
            Kind::Postgres => Box::new(
                PgStore::migrate(
                    service_kit::db::connect_postgres(db.url(), 4)
                        .await
                        .unwrap(),
                )
                .await
                .unwrap(),
            ),
        };
        out.push(Backend { name, store, db });
    }
    out
}

async fn ping_answers_on_every_backend(kind: Kind) {
    for b in backends(kind).await {
        b.store
            .ping()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        b.finish().await;
    }
}

async fn an_empty_store_lists_no_jobs(kind: Kind) {
    for b in backends(kind).await {
        assert!(
            b.store.list_jobs(10).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        b.finish().await;
    }
}

async fn jobs_are_listed_newest_first_up_to_the_limit(kind: Kind) {
    for b in backends(kind).await {
        let (old, mid, new) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        b.store
            .insert_job(mid, "running", 2_000, [10, 4, 1])
            .await
            .unwrap();
        b.store
            .insert_job(old, "succeeded", 1_000, [3, 2, 1])
            .await
            .unwrap();
        b.store
            .insert_job(new, "queued", 3_000, [0, 0, 0])
            .await
            .unwrap();

        let all = b.store.list_jobs(10).await.unwrap();
        let ids: Vec<Uuid> = all.iter().map(|j| j.id).collect();
        assert_eq!(ids, [new, mid, old], "{}", b.name);
        let running = &all[1];
        assert_eq!(running.state, JobState::Running, "{}", b.name);
        assert_eq!(running.submitted_by.as_str(), "operator-1");
        assert_eq!(
            (
                running.created_at_ms,
                running.total,
                running.applied,
                running.rejected
            ),
            (2_000, 10, 4, 1)
        );

        let two = b.store.list_jobs(2).await.unwrap();
        assert_eq!(
            two.iter().map(|j| j.id).collect::<Vec<_>>(),
            [new, mid],
            "{}",
            b.name
        );
        b.finish().await;
    }
}

async fn the_schema_refuses_impossible_jobs(kind: Kind) {
    for b in backends(kind).await {
        let bad_state = b
            .store
            .insert_job(Uuid::new_v4(), "bogus", 1, [0, 0, 0])
            .await;
        assert!(bad_state.is_err(), "{}: unknown state accepted", b.name);
        let overcounted = b
            .store
            .insert_job(Uuid::new_v4(), "running", 1, [2, 2, 1])
            .await;
        assert!(
            overcounted.is_err(),
            "{}: applied + rejected > total accepted",
            b.name
        );
        let negative = b
            .store
            .insert_job(Uuid::new_v4(), "running", 1, [-1, 0, 0])
            .await;
        assert!(negative.is_err(), "{}: negative total accepted", b.name);
        b.finish().await;
    }
}

use super::{Created, NewJob};
use domain::Subject;
use tenant_api::BatchOutcome;

async fn queued_job(store: &dyn Raw, chunks: u64, key: Option<&str>) -> Uuid {
    let id = Uuid::new_v4();
    let new = NewJob {
        id,
        submitted_by: Subject::parse("op").unwrap(),
        sealed_name: None,
        idempotency_key: key.map(str::to_string),
        now_ms: 1_000,
    };
    assert!(matches!(
        store.create_job(&new).await.unwrap(),
        Created::New
    ));
    for seq in 0..chunks {
        store.add_chunk(id, seq, 10, b"sealed").await.unwrap();
    }
    store
        .finish_intake(
            id,
            chunks * 10,
            chunks,
            1,
            &[(7, "op must be \"add\" or \"remove\"")],
            2_000,
        )
        .await
        .unwrap();
    id
}

fn outcome(applied: u64, label_refused: u64) -> BatchOutcome {
    BatchOutcome {
        applied,
        label_refused,
        ..BatchOutcome::default()
    }
}

async fn chunks_are_leased_once_checkpointed_and_purged_when_the_job_ends(kind: Kind) {
    for b in backends(kind).await {
        let s = b.store.as_ref();
        let job = queued_job(s, 2, None).await;
        let (w1, w2) = (Uuid::new_v4(), Uuid::new_v4());
        let a = s.lease_chunk(w1, 3_000, 60_000).await.unwrap().unwrap();
        let c = s.lease_chunk(w2, 3_000, 60_000).await.unwrap().unwrap();
        assert_ne!(a.seq, c.seq, "{}", b.name);
        assert!(s.lease_chunk(w2, 3_000, 60_000).await.unwrap().is_none());
        let running = s.job(job).await.unwrap().unwrap();
        assert_eq!(running.state, JobState::Running);
        assert_eq!(running.invalid_lines, 1);
        assert_eq!(s.line_errors(job).await.unwrap()[0].0, 7);

        // Only the lease holder checkpoints.
        assert!(!s
            .complete_chunk(job, a.seq, w2, &outcome(10, 0), 4_000)
            .await
            .unwrap());
        assert!(s
            .complete_chunk(job, a.seq, w1, &outcome(9, 1), 4_000)
            .await
            .unwrap());
        assert_eq!(
            s.chunk_rows(job).await.unwrap(),
            (2, 1),
            "{}: applied input cleared",
            b.name
        );
        assert!(s
            .complete_chunk(job, c.seq, w2, &outcome(10, 0), 5_000)
            .await
            .unwrap());
        let done = s.job(job).await.unwrap().unwrap();
        assert_eq!(done.state, JobState::Succeeded, "{}", b.name);
        assert_eq!((done.total, done.applied, done.rejected), (20, 19, 1));
        assert_eq!(done.rejected_by_reason.label_refused, 1);
        assert_eq!(
            s.chunk_rows(job).await.unwrap(),
            (0, 0),
            "{}: INV-5 purge",
            b.name
        );
        b.finish().await;
    }
}

async fn an_expired_lease_goes_to_another_worker_and_a_failing_chunk_waits(kind: Kind) {
    for b in backends(kind).await {
        let s = b.store.as_ref();
        let job = queued_job(s, 1, None).await;
        let (w1, w2) = (Uuid::new_v4(), Uuid::new_v4());
        let first = s.lease_chunk(w1, 3_000, 4_000).await.unwrap().unwrap();
        assert!(s.lease_chunk(w2, 3_500, 9_000).await.unwrap().is_none());
        let again = s.lease_chunk(w2, 4_001, 9_000).await.unwrap().unwrap();
        assert_eq!(again.seq, first.seq, "{}", b.name);
        s.retry_chunk(job, again.seq, w2, 10_000).await.unwrap();
        assert_eq!(
            s.job(job).await.unwrap().unwrap().retrying,
            10,
            "{}",
            b.name
        );
        assert!(s.lease_chunk(w1, 9_999, 20_000).await.unwrap().is_none());
        let retried = s.lease_chunk(w1, 10_001, 20_000).await.unwrap().unwrap();
        assert_eq!(retried.failures, 1);
        b.finish().await;
    }
}

async fn paused_jobs_lend_no_chunks_and_cancelled_jobs_lose_their_input(kind: Kind) {
    for b in backends(kind).await {
        let s = b.store.as_ref();
        let job = queued_job(s, 2, None).await;
        let paused = s
            .transition(
                job,
                &[JobState::Queued, JobState::Running],
                JobState::Paused,
                3_000,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(paused.state, JobState::Paused);
        assert!(s
            .lease_chunk(Uuid::new_v4(), 3_000, 9_000)
            .await
            .unwrap()
            .is_none());
        let resumed = s
            .transition(job, &[JobState::Paused], JobState::Running, 3_100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resumed.state, JobState::Queued, "{}: never started", b.name);
        assert!(s
            .lease_chunk(Uuid::new_v4(), 3_200, 9_000)
            .await
            .unwrap()
            .is_some());
        let cancelled = s
            .transition(
                job,
                &[JobState::Queued, JobState::Running, JobState::Paused],
                JobState::Cancelled,
                3_300,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cancelled.state, JobState::Cancelled);
        assert!(cancelled.finished_at_ms.is_some());
        assert_eq!(s.chunk_rows(job).await.unwrap(), (0, 0));
        assert!(s
            .transition(job, &[JobState::Paused], JobState::Running, 3_400)
            .await
            .unwrap()
            .is_none());
        b.finish().await;
    }
}

async fn an_idempotency_key_finds_the_same_job(kind: Kind) {
    for b in backends(kind).await {
        let s = b.store.as_ref();
        let job = queued_job(s, 1, Some("import-42")).await;
        let again = NewJob {
            id: Uuid::new_v4(),
            submitted_by: Subject::parse("op").unwrap(),
            sealed_name: None,
            idempotency_key: Some("import-42".into()),
            now_ms: 5_000,
        };
        match s.create_job(&again).await.unwrap() {
            Created::Existing(j) => assert_eq!(j.id, job, "{}", b.name),
            other => panic!("{}: {other:?}", b.name),
        }
        // Another caller's key is theirs.
        let other = NewJob {
            submitted_by: Subject::parse("op-2").unwrap(),
            ..again
        };
        assert!(matches!(s.create_job(&other).await.unwrap(), Created::New));
        b.finish().await;
    }
}

service_kit::backend_tests!(
    ping_answers_on_every_backend,
    an_empty_store_lists_no_jobs,
    jobs_are_listed_newest_first_up_to_the_limit,
    the_schema_refuses_impossible_jobs,
    chunks_are_leased_once_checkpointed_and_purged_when_the_job_ends,
    an_expired_lease_goes_to_another_worker_and_a_failing_chunk_waits,
    paused_jobs_lend_no_chunks_and_cancelled_jobs_lose_their_input,
    an_idempotency_key_finds_the_same_job,
);
