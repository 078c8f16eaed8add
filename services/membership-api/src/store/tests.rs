//! The store's tests, each on SQLite (`sqlite::…`) and on Postgres (`postgres::…`, ignored unless
//! run with `--include-ignored` and a server in `HUSH_TEST_POSTGRES_URL`; each test gets a fresh
//! database `hush_t_<random hex>` there, dropped at the end).
//!
//! They prove, identically on both backends, what the approval and invite flows lean on: a
//! person has at most one pending request per group, an approved request leaves no row, a
//! denied one keeps neither address nor kind, invite codes are unique by hash, uses never
//! exceed the maximum (even when two redeemers race for the last one), and nothing records a
//! redeemer.

use super::{NewInvite, NewRequest, PgStore, RequestStatus, SqliteStore, Store};
use crate::seal::RequestKey;
use async_trait::async_trait;
use domain::{Email, GroupId, IdentityKind, Subject};
use service_kit::db::{
    self, connect_postgres, connect_sqlite, is_unique_violation, now_ms, Backend as Kind,
};
use service_kit::sql::SqlStore;
use service_kit::testing::TestDatabase;
use std::sync::Arc;
use uuid::Uuid;

/// Raw inserts for the schema tests, written once for both backends like the store itself.
#[async_trait]
trait Raw: Store {
    async fn insert_invite(
        &self,
        group: Uuid,
        code_hash: &[u8],
        max_uses: i32,
        uses: i32,
    ) -> Result<(), sqlx::Error>;
    async fn insert_request(
        &self,
        group: Uuid,
        subject: &str,
        status: &str,
    ) -> Result<(), sqlx::Error>;
    /// Rows in `table`.
    async fn count(&self, table: &str) -> i64;
    /// The sealed requester of the request `id` (`None` when it has none or does not exist).
    async fn stored_requester(&self, id: Uuid) -> Option<Vec<u8>>;
    /// Every byte join requests hold about their requesters: tags and sealed values.
    async fn requester_bytes(&self) -> Vec<u8>;
    /// The tag `subject`'s requests are found by.
    fn tag_of(&self, subject: &str) -> Vec<u8>;
}

macro_rules! raw {
    ($ty:ty) => {
        #[async_trait]
        impl Raw for $ty {
            async fn insert_invite(
                &self,
                group: Uuid,
                code_hash: &[u8],
                max_uses: i32,
                uses: i32,
            ) -> Result<(), sqlx::Error> {
                let now = now_ms();
                sqlx::query(
                    "INSERT INTO invites (id, group_id, code_hash, max_uses, uses, expires_at, \
                     revoked, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, FALSE, 'owner-1', $7)",
                )
                .bind(Uuid::new_v4())
                .bind(group)
                .bind(code_hash)
                .bind(max_uses)
                .bind(uses)
                .bind(now + 86_400_000)
                .bind(now)
                .execute(self.pool())
                .await
                .map(drop)
            }

            async fn insert_request(
                &self,
                group: Uuid,
                subject: &str,
                status: &str,
            ) -> Result<(), sqlx::Error> {
                let now = now_ms();
                let pending = status == "pending";
                let decided = (!pending).then_some(now);
                let who = Subject::parse(subject).unwrap();
                let sealed = pending.then(|| {
                    self.key.seal(
                        GroupId::from(group),
                        &crate::seal::Requester::new(
                            &who,
                            &Email::parse(format!("{subject}@corp.example")).unwrap(),
                            IdentityKind::Member,
                        ),
                    )
                });
                sqlx::query(
                    "INSERT INTO join_requests (id, group_id, requester_tag, sealed_requester, \
                     status, created_at, decided_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(Uuid::new_v4())
                .bind(group)
                .bind(self.key.tag(&who))
                .bind(sealed)
                .bind(status)
                .bind(now)
                .bind(decided)
                .execute(self.pool())
                .await
                .map(drop)
            }

            async fn count(&self, table: &str) -> i64 {
                let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
                    .fetch_one(self.pool())
                    .await
                    .unwrap();
                n
            }

            async fn stored_requester(&self, id: Uuid) -> Option<Vec<u8>> {
                let row: Option<(Option<Vec<u8>>,)> =
                    sqlx::query_as("SELECT sealed_requester FROM join_requests WHERE id = $1")
                        .bind(id)
                        .fetch_optional(self.pool())
                        .await
                        .unwrap();
                row.and_then(|(e,)| e)
            }

            async fn requester_bytes(&self) -> Vec<u8> {
                let rows: Vec<(Vec<u8>, Option<Vec<u8>>)> =
                    sqlx::query_as("SELECT requester_tag, sealed_requester FROM join_requests")
                        .fetch_all(self.pool())
                        .await
                        .unwrap();
                rows.into_iter()
                    .flat_map(|(t, s)| t.into_iter().chain(s.unwrap_or_default()))
                    .collect()
            }

            fn tag_of(&self, subject: &str) -> Vec<u8> {
                self.key.tag(&Subject::parse(subject).unwrap())
            }
        }
    };
}
raw!(PgStore);
raw!(SqliteStore);

/// One backend under test, and the database to remove once the test is done with it.
struct Backend {
    name: &'static str,
    store: Arc<dyn Raw>,
    database: TestDatabase,
}

impl Backend {
    async fn finish(self) {
        drop(self.store);
        self.database.remove().await;
    }
}

/// A fresh store of `kind` (one, in a list so a test reads the same on either backend).
async fn backends(kind: Kind) -> Vec<Backend> {
    let database = TestDatabase::new(kind).await;
    let (name, store): (_, Arc<dyn Raw>) = match kind {
        Kind::Sqlite => (
            "sqlite",
            Arc::new(SqliteStore::new(
                SqlStore::migrate(connect_sqlite(database.url(), 4).await.unwrap())
                    .await
                    .unwrap(),
                RequestKey::random(),
            )),
        ),
        Kind::Postgres => (
            "postgres",
            Arc::new(PgStore::new(
                SqlStore::migrate(connect_postgres(database.url(), 4).await.unwrap())
                    .await
                    .unwrap(),
                RequestKey::random(),
            )),
        ),
    };
    vec![Backend {
        name,
        store,
        database,
    }]
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

#[tokio::test]
async fn connecting_again_finds_the_schema_migrated() {
    let database = TestDatabase::sqlite();
    for _ in 0..2 {
        let store = super::connect(database.url(), 2, RequestKey::random())
            .await
            .unwrap();
        store.ping().await.unwrap();
    }
    database.remove().await;
}

async fn invite_codes_are_unique_by_hash(kind: Kind) {
    for b in backends(kind).await {
        let hash = [7u8; 32];
        b.store
            .insert_invite(Uuid::new_v4(), &hash, 5, 0)
            .await
            .unwrap();
        let again = b
            .store
            .insert_invite(Uuid::new_v4(), &hash, 5, 0)
            .await
            .unwrap_err();
        assert!(is_unique_violation(&again), "{}: {again}", b.name);
        b.store
            .insert_invite(Uuid::new_v4(), &[8u8; 32], 5, 0)
            .await
            .unwrap();
        b.finish().await;
    }
}

async fn invite_uses_stay_within_the_maximum(kind: Kind) {
    for b in backends(kind).await {
        let g = Uuid::new_v4();
        b.store.insert_invite(g, &[1u8; 32], 2, 2).await.unwrap();
        assert!(
            b.store.insert_invite(g, &[2u8; 32], 2, 3).await.is_err(),
            "{}",
            b.name
        );
        assert!(
            b.store.insert_invite(g, &[3u8; 32], 0, 0).await.is_err(),
            "{}",
            b.name
        );
        b.finish().await;
    }
}

async fn one_pending_request_per_person_and_group(kind: Kind) {
    for b in backends(kind).await {
        let g = Uuid::new_v4();
        b.store.insert_request(g, "alice", "pending").await.unwrap();
        let again = b
            .store
            .insert_request(g, "alice", "pending")
            .await
            .unwrap_err();
        assert!(is_unique_violation(&again), "{}: {again}", b.name);
        // Another group, another person, or a decided request: all fine.
        b.store
            .insert_request(Uuid::new_v4(), "alice", "pending")
            .await
            .unwrap();
        b.store.insert_request(g, "bob", "pending").await.unwrap();
        b.store.insert_request(g, "alice", "denied").await.unwrap();
        // Approved is not a state a row can be in: approval deletes the row (INV-1).
        for status in ["approved", "withdrawn", "maybe"] {
            assert!(
                b.store.insert_request(g, "carol", status).await.is_err(),
                "{}: {status}",
                b.name
            );
        }
        b.finish().await;
    }
}

fn request(group: GroupId, who: &str, kind: IdentityKind) -> NewRequest {
    NewRequest {
        group,
        subject: Subject::parse(who).unwrap(),
        email: Email::parse(format!("{who}@corp.example")).unwrap(),
        kind,
    }
}

fn subject(s: &str) -> Subject {
    Subject::parse(s).unwrap()
}

async fn filing_twice_is_the_same_request_with_the_latest_address_and_kind(kind: Kind) {
    for b in backends(kind).await {
        let s = &b.store;
        let g = GroupId::new();
        let (id, at) = s
            .file_request(&request(g, "alice", IdentityKind::Member), 1_000)
            .await
            .unwrap();
        let mut again = request(g, "alice", IdentityKind::Guest);
        again.email = Email::parse("alice@elsewhere.example").unwrap();
        assert_eq!(
            s.file_request(&again, 2_000).await.unwrap(),
            (id, at),
            "{}",
            b.name
        );
        let pending = s.pending_request(g, id).await.unwrap().unwrap();
        assert_eq!(pending.kind, IdentityKind::Guest, "{}", b.name);
        assert_eq!(pending.email.as_str(), "alice@elsewhere.example");
        assert_eq!(pending.created_at, 1_000);
        assert_eq!(s.count("join_requests").await, 1);
        b.finish().await;
    }
}

async fn racing_filings_make_one_request(kind: Kind) {
    for b in backends(kind).await {
        let g = GroupId::new();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let s = b.store.clone();
            tasks.push(tokio::spawn(async move {
                s.file_request(&request(g, "alice", IdentityKind::Member), 1_000 + i)
                    .await
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(
                t.await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{}: {e}", b.name))
                    .0,
            );
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{}", b.name);
        assert_eq!(b.store.count("join_requests").await, 1, "{}", b.name);
        b.finish().await;
    }
}

async fn an_approved_request_leaves_no_row(kind: Kind) {
    for b in backends(kind).await {
        let s = &b.store;
        let g = GroupId::new();
        let (id, _) = s
            .file_request(&request(g, "alice", IdentityKind::Member), 1)
            .await
            .unwrap();
        s.file_request(&request(g, "bob", IdentityKind::Member), 2)
            .await
            .unwrap();
        assert!(s.delete_approved(g, id).await.unwrap(), "{}", b.name);
        assert!(
            !s.delete_approved(g, id).await.unwrap(),
            "{}: twice",
            b.name
        );
        assert_eq!(s.count("join_requests").await, 1, "{}", b.name);
        let kept = s.requester_bytes().await;
        let alice = s.tag_of("alice");
        assert!(!kept.windows(alice.len()).any(|w| w == alice.as_slice()));
        // What is kept of bob, pending, names him only through the key (INV-5).
        assert!(!kept.windows(3).any(|w| w == b"bob"), "{}", b.name);
        assert!(s.my_requests(&subject("alice")).await.unwrap().is_empty());
        // Another group's id does not reach it.
        let (bob, _) = s
            .file_request(&request(g, "bob", IdentityKind::Member), 3)
            .await
            .unwrap();
        assert!(
            !s.delete_approved(GroupId::new(), bob).await.unwrap(),
            "{}",
            b.name
        );
        b.finish().await;
    }
}

async fn a_denied_request_stays_for_its_requester_without_address_or_kind(kind: Kind) {
    for b in backends(kind).await {
        let s = &b.store;
        let g = GroupId::new();
        let (id, _) = s
            .file_request(&request(g, "alice", IdentityKind::Member), 1)
            .await
            .unwrap();
        s.file_request(&request(g, "bob", IdentityKind::Member), 2)
            .await
            .unwrap();
        // What the owners' notification counts: the pending requests, of this group only.
        assert_eq!(s.count_pending(g).await.unwrap(), 2, "{}", b.name);
        assert_eq!(s.count_pending(GroupId::new()).await.unwrap(), 0);
        assert!(s.deny_request(g, id, 5).await.unwrap(), "{}", b.name);
        assert_eq!(
            s.count_pending(g).await.unwrap(),
            1,
            "{}: denied is not pending",
            b.name
        );
        s.drop_pending(g, &subject("bob")).await.unwrap();
        assert!(
            !s.deny_request(g, id, 6).await.unwrap(),
            "{}: twice",
            b.name
        );
        assert!(s.pending_request(g, id).await.unwrap().is_none());
        assert!(s.pending_requests(g, None, 10).await.unwrap().is_empty());
        assert_eq!(s.stored_requester(id).await, None, "{}", b.name);
        let mine = s.my_requests(&subject("alice")).await.unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(
            (mine[0].status, mine[0].decided_at),
            (RequestStatus::Denied, Some(5))
        );
        // Asking again replaces the denied record with a pending request.
        let (again, _) = s
            .file_request(&request(g, "alice", IdentityKind::Member), 9)
            .await
            .unwrap();
        let mine = s.my_requests(&subject("alice")).await.unwrap();
        assert_eq!(mine.len(), 1, "{}", b.name);
        assert_eq!(
            (mine[0].id, mine[0].status),
            (again, RequestStatus::Pending)
        );
        b.finish().await;
    }
}

async fn requesters_delete_only_their_own_requests(kind: Kind) {
    for b in backends(kind).await {
        let s = &b.store;
        let g = GroupId::new();
        let (id, _) = s
            .file_request(&request(g, "alice", IdentityKind::Member), 1)
            .await
            .unwrap();
        assert!(
            !s.delete_my_request(&subject("bob"), id).await.unwrap(),
            "{}",
            b.name
        );
        assert!(s.delete_my_request(&subject("alice"), id).await.unwrap());
        assert_eq!(s.count("join_requests").await, 0, "{}", b.name);
        let (id, _) = s
            .file_request(&request(g, "alice", IdentityKind::Member), 2)
            .await
            .unwrap();
        s.drop_pending(g, &subject("alice")).await.unwrap();
        assert!(
            s.pending_request(g, id).await.unwrap().is_none(),
            "{}",
            b.name
        );
        b.finish().await;
    }
}

async fn the_owners_queue_pages_oldest_first(kind: Kind) {
    for b in backends(kind).await {
        let s = &b.store;
        let g = GroupId::new();
        for (i, who) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            // Two share a time: the id breaks the tie, and paging neither skips nor repeats.
            let at = if i == 2 {
                10
            } else {
                10 * i64::try_from(i).unwrap()
            };
            s.file_request(&request(g, who, IdentityKind::Member), at)
                .await
                .unwrap();
        }
        s.file_request(&request(GroupId::new(), "x", IdentityKind::Member), 0)
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = s.pending_requests(g, after, 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|r| (r.created_at, r.id));
            seen.extend(
                page.into_iter()
                    .map(|r| (r.created_at, r.id, r.subject.into_inner())),
            );
        }
        let mut who: Vec<&str> = seen.iter().map(|s| s.2.as_str()).collect();
        who.sort_unstable();
        assert_eq!(who, ["a", "b", "c", "d", "e"], "{}: {seen:?}", b.name);
        assert!(
            seen.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)),
            "{}: not oldest first: {seen:?}",
            b.name
        );
        b.finish().await;
    }
}

async fn claim_rules_are_set_replaced_and_cleared(kind: Kind) {
    for b in backends(kind).await {
        let s = &b.store;
        let g = GroupId::new();
        assert_eq!(s.claim_rules(g).await.unwrap(), None);
        s.set_claim_rules(g, Some("{\"rules\":[1]}"), 1)
            .await
            .unwrap();
        s.set_claim_rules(g, Some("{\"rules\":[2]}"), 2)
            .await
            .unwrap();
        assert_eq!(
            s.claim_rules(g).await.unwrap().as_deref(),
            Some("{\"rules\":[2]}"),
            "{}",
            b.name
        );
        s.set_claim_rules(g, None, 3).await.unwrap();
        assert_eq!(s.claim_rules(g).await.unwrap(), None, "{}", b.name);
        b.finish().await;
    }
}

fn invite(group: GroupId, code: u8, max_uses: i32, expires_at: i64) -> NewInvite {
    NewInvite {
        id: Uuid::new_v4(),
        group,
        code_hash: [code; 32],
        max_uses,
        expires_at,
        created_by: subject("owner-1"),
        created_at: 0,
    }
}

async fn invites_are_live_until_used_up_expired_or_revoked(kind: Kind) {
    for b in backends(kind).await {
        let s = &b.store;
        let g = GroupId::new();
        let two = invite(g, 1, 2, 1_000);
        s.create_invite(&two).await.unwrap();
        assert_eq!(
            s.live_invite(&[1; 32], 10).await.unwrap(),
            Some((two.id, g)),
            "{}",
            b.name
        );
        assert!(s.take_invite_use(two.id, 10).await.unwrap());
        assert!(s.take_invite_use(two.id, 10).await.unwrap());
        assert!(
            !s.take_invite_use(two.id, 10).await.unwrap(),
            "{}: a third use",
            b.name
        );
        assert_eq!(
            s.live_invite(&[1; 32], 10).await.unwrap(),
            None,
            "{}: used up",
            b.name
        );
        s.return_invite_use(two.id).await.unwrap();
        assert!(
            s.live_invite(&[1; 32], 10).await.unwrap().is_some(),
            "{}: given back",
            b.name
        );
        // Expiry is exclusive: at `expires_at` it no longer works.
        assert_eq!(
            s.live_invite(&[1; 32], 1_000).await.unwrap(),
            None,
            "{}: expired",
            b.name
        );
        assert!(!s.take_invite_use(two.id, 1_000).await.unwrap());
        // Revoked, by its group only.
        assert!(
            !s.revoke_invite(GroupId::new(), two.id).await.unwrap(),
            "{}",
            b.name
        );
        assert!(s.revoke_invite(g, two.id).await.unwrap());
        assert!(
            s.revoke_invite(g, two.id).await.unwrap(),
            "{}: again is fine",
            b.name
        );
        assert_eq!(
            s.live_invite(&[1; 32], 10).await.unwrap(),
            None,
            "{}: revoked",
            b.name
        );
        assert!(!s.take_invite_use(two.id, 10).await.unwrap());
        let listed = s.invites(g, 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].uses, listed[0].max_uses, listed[0].revoked),
            (1, 2, true),
            "{}",
            b.name
        );
        assert_eq!(
            s.live_invite(&[9; 32], 10).await.unwrap(),
            None,
            "{}: unknown",
            b.name
        );
        b.finish().await;
    }
}

async fn racing_redeemers_cannot_share_the_last_use(kind: Kind) {
    for b in backends(kind).await {
        let g = GroupId::new();
        let one = invite(g, 3, 1, i64::MAX);
        b.store.create_invite(&one).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = b.store.clone();
            tasks.push(tokio::spawn(async move {
                s.take_invite_use(one.id, 10).await.unwrap()
            }));
        }
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.unwrap());
        }
        assert_eq!(won, 1, "{}", b.name);
        b.finish().await;
    }
}

async fn nothing_records_who_redeemed_an_invite(kind: Kind) {
    for b in backends(kind).await {
        let columns: Vec<String> = match b.name {
            "sqlite" => {
                let SqliteOrPg::Sqlite(pool) = pool_of(&b) else {
                    unreachable!()
                };
                sqlx::query_as::<_, (String,)>("SELECT name FROM pragma_table_info('invites')")
                    .fetch_all(&pool)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(c,)| c)
                    .collect()
            }
            _ => {
                let SqliteOrPg::Pg(pool) = pool_of(&b) else {
                    unreachable!()
                };
                sqlx::query_as::<_, (String,)>(
                    "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'invites'",
                )
                .fetch_all(&pool)
                .await
                .unwrap()
                .into_iter()
                .map(|(c,)| c)
                .collect()
            }
        };
        let mut columns = columns;
        columns.sort();
        assert_eq!(
            columns,
            [
                "code_hash",
                "created_at",
                "created_by",
                "expires_at",
                "group_id",
                "id",
                "max_uses",
                "revoked",
                "uses"
            ],
            "{}: a new column on invites must not record a redeemer",
            b.name
        );
        b.finish().await;
    }
}

enum SqliteOrPg {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

/// A second pool on the backend's database, for catalogue queries.
fn pool_of(b: &Backend) -> SqliteOrPg {
    let url = b.database.url();
    match b.database.backend() {
        db::Backend::Sqlite => SqliteOrPg::Sqlite(sqlx::SqlitePool::connect_lazy(url).unwrap()),
        db::Backend::Postgres => SqliteOrPg::Pg(sqlx::PgPool::connect_lazy(url).unwrap()),
    }
}

/// Writes, in `pool`, the table requests were kept in (in clear) before they were sealed, as
/// migration 0003 leaves it renamed, with a pending request of alice and a denied one of bob.
async fn write_legacy_requests<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, ids: &str, group: Uuid)
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(&format!(
        "CREATE TABLE join_requests_legacy (id {ids} PRIMARY KEY, group_id {ids} NOT NULL, \
         requester_subject TEXT NOT NULL, requester_email TEXT, requester_kind TEXT, \
         status TEXT NOT NULL, created_at BIGINT NOT NULL, decided_at BIGINT)"
    ))
    .execute(pool)
    .await
    .unwrap();
    for (who, email, kind, status, decided) in [
        (
            "alice",
            Some("alice@corp.example"),
            Some("guest"),
            "pending",
            None,
        ),
        ("bob", None, None, "denied", Some(7)),
    ] {
        sqlx::query(
            "INSERT INTO join_requests_legacy (id, group_id, requester_subject, requester_email, \
             requester_kind, status, created_at, decided_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
        )
        .bind(Uuid::new_v4())
        .bind(group)
        .bind(who)
        .bind(email)
        .bind(kind)
        .bind(status)
        .bind(decided)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// A database whose requests were written in clear, before sealing, has them sealed when the
/// store opens it: the owners still see alice's pending request, bob still sees his denied one,
/// and no table holds either in clear any more.
async fn requests_written_in_clear_are_sealed_when_the_store_opens(kind: Kind) {
    let database = TestDatabase::new(kind).await;
    let key = RequestKey::random();
    let group = GroupId::new();
    // Migrated (0003 renames the old table, and the store drops it empty).
    drop(
        super::connect(database.url(), 2, key.clone())
            .await
            .unwrap(),
    );
    match kind {
        Kind::Sqlite => {
            let pool = connect_sqlite(database.url(), 1).await.unwrap();
            write_legacy_requests(&pool, "BLOB", *group.as_uuid()).await;
            pool.close().await;
        }
        Kind::Postgres => {
            let pool = connect_postgres(database.url(), 1).await.unwrap();
            write_legacy_requests(&pool, "UUID", *group.as_uuid()).await;
            pool.close().await;
        }
    }
    let store = super::connect(database.url(), 2, key.clone())
        .await
        .unwrap();
    let pending = store.pending_requests(group, None, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].subject.as_str(),
            pending[0].email.as_str(),
            pending[0].kind
        ),
        ("alice", "alice@corp.example", IdentityKind::Guest)
    );
    let bobs = store.my_requests(&subject("bob")).await.unwrap();
    assert_eq!(
        (bobs.len(), bobs[0].status, bobs[0].decided_at),
        (1, RequestStatus::Denied, Some(7))
    );
    // The legacy table is gone; opening again changes nothing.
    drop(store);
    let store = super::connect(database.url(), 2, key).await.unwrap();
    assert_eq!(
        store.pending_requests(group, None, 10).await.unwrap().len(),
        1
    );
    drop(store);
    database.remove().await;
}

/// Two replicas (two pools on one database) spending one budget at once: exactly the budget is
/// admitted, a new key starts from the previous one's row, a charge queues behind earlier ones,
/// and only full budgets are swept. What `crate::limits` and the bulk and SCIM budgets rest on.
async fn racing_replicas_share_one_budget(kind: Kind) {
    use service_kit::limits::Rate;
    let database = TestDatabase::new(kind).await;
    let key = RequestKey::random();
    let a = super::connect(database.url(), 4, key.clone())
        .await
        .unwrap();
    let b = super::connect(database.url(), 4, key).await.unwrap();
    let tables = [a.limit_table(), b.limit_table()];
    let rate = Rate::per(10, 60_000_000);
    let now = 1_000_000_000_000_000i64;
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..40 {
        let table = Arc::clone(&tables[i % 2]);
        racers.spawn(async move {
            table
                .spend(b"k-today", b"k-yesterday", rate, now)
                .await
                .unwrap()
        });
    }
    let answers = racers.join_all().await;
    assert_eq!(
        answers.iter().filter(|a| a.is_none()).count(),
        10,
        "{answers:?}"
    );
    for refused in answers.iter().flatten() {
        assert_eq!(*refused, 6_000_000, "one unit back in 6 s");
    }
    assert_eq!(
        tables[1]
            .peek(b"k-today", b"k-yesterday", rate, now)
            .await
            .unwrap(),
        Some(6_000_000)
    );
    assert_eq!(
        tables[0]
            .peek(b"k-today", b"k-yesterday", rate, now + 6_000_000)
            .await
            .unwrap(),
        None
    );

    // A key that rotates: the new key's budget starts where the old one stood.
    assert_eq!(
        tables[0]
            .spend(b"k-tomorrow", b"k-today", rate, now)
            .await
            .unwrap(),
        Some(6_000_000)
    );
    assert_eq!(
        tables[1]
            .spend(b"k-tomorrow", b"k-today", rate, now + 6_000_000)
            .await
            .unwrap(),
        None
    );

    // Paid in arrears: the second charge waits for the first.
    assert_eq!(
        tables[0]
            .charge(b"bucket", 1_000_000, 1_000_000, now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        tables[1]
            .charge(b"bucket", 500_000, 1_000_000, now)
            .await
            .unwrap(),
        500_000
    );

    // An hour on, every budget is full again: swept.
    let later = now + 3_600_000_000;
    assert_eq!(
        tables[0].sweep(now).await.unwrap(),
        0,
        "nothing is full yet"
    );
    assert_eq!(tables[1].sweep(later).await.unwrap(), 3);
    assert_eq!(
        tables[0].peek(b"k-today", b"", rate, later).await.unwrap(),
        None
    );
    drop((a, b, tables));
    database.remove().await;
}

service_kit::backend_tests!(
    racing_replicas_share_one_budget,
    requests_written_in_clear_are_sealed_when_the_store_opens,
    ping_answers_on_every_backend,
    invite_codes_are_unique_by_hash,
    invite_uses_stay_within_the_maximum,
    one_pending_request_per_person_and_group,
    filing_twice_is_the_same_request_with_the_latest_address_and_kind,
    racing_filings_make_one_request,
    an_approved_request_leaves_no_row,
    a_denied_request_stays_for_its_requester_without_address_or_kind,
    requesters_delete_only_their_own_requests,
    the_owners_queue_pages_oldest_first,
    claim_rules_are_set_replaced_and_cleared,
    invites_are_live_until_used_up_expired_or_revoked,
    racing_redeemers_cannot_share_the_last_use,
    nothing_records_who_redeemed_an_invite,
);
