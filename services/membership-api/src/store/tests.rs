//! The store's tests, run on SQLite always and on Postgres when `HUSH_TEST_POSTGRES_URL` names a
//! server (each test gets a fresh database `hush_t_<random hex>` there, dropped at the end).
//!
//! Besides `ping`, these prove the schema holds the rules the approval and invite flows will
//! lean on, identically on both backends: invite codes are unique by hash, uses never exceed
//! the maximum, and a person has at most one pending request per group.

use super::{PgStore, SqliteStore, Store};
use async_trait::async_trait;
use service_kit::db::{is_unique_violation, now_ms};
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
                let decided = (status != "pending").then_some(now);
                sqlx::query(
                    "INSERT INTO join_requests (id, group_id, requester_subject, status, \
                     created_at, decided_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(Uuid::new_v4())
                .bind(group)
                .bind(subject)
                .bind(status)
                .bind(now)
                .bind(decided)
                .execute(self.pool())
                .await
                .map(drop)
            }
        }
    };
}
raw!(PgStore);
raw!(SqliteStore);

/// One backend under test, and what to remove once the test is done with it.
struct Backend {
    name: &'static str,
    store: Box<dyn Raw>,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    Database { admin_url: String, name: String },
}

impl Backend {
    async fn finish(self) {
        drop(self.store);
        match self.cleanup {
            Cleanup::File(path) => remove_sqlite(&path),
            Cleanup::Database { admin_url, name } => {
                use sqlx::Connection as _;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url).await {
                    let drop_db = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(&drop_db).execute(&mut c).await;
                }
            }
        }
    }
}

fn temp_sqlite() -> (std::path::PathBuf, String) {
    let path = std::env::temp_dir().join(format!("hush-membership-{}.db", Uuid::new_v4().simple()));
    let url = format!("sqlite://{}", path.display());
    (path, url)
}

fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// A fresh SQLite file, and a fresh Postgres database when the environment offers a server.
async fn backends() -> Vec<Backend> {
    let (path, url) = temp_sqlite();
    let sqlite = SqliteStore::migrate(service_kit::db::connect_sqlite(&url, 4).await.unwrap())
        .await
        .unwrap();
    let mut out = vec![Backend {
        name: "sqlite",
        store: Box::new(sqlite),
        cleanup: Cleanup::File(path),
    }];
    if let Ok(admin_url) = std::env::var("HUSH_TEST_POSTGRES_URL") {
        let (url, name) = fresh_postgres(&admin_url).await;
        let pg = PgStore::migrate(service_kit::db::connect_postgres(&url, 4).await.unwrap())
            .await
            .unwrap();
        out.push(Backend {
            name: "postgres",
            store: Box::new(pg),
            cleanup: Cleanup::Database { admin_url, name },
        });
    }
    out
}

/// Creates `hush_t_<random hex>` on the server `admin_url` names; returns its URL and name.
async fn fresh_postgres(admin_url: &str) -> (String, String) {
    use sqlx::Connection as _;
    let name = format!("hush_t_{}", Uuid::new_v4().simple());
    let mut c = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("HUSH_TEST_POSTGRES_URL must reach a Postgres server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .expect("creating the test database");
    (with_database(admin_url, &name), name)
}

/// `admin_url` with its database path replaced by `name` (query parameters kept).
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h/db?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}

#[tokio::test]
async fn ping_answers_on_every_backend() {
    for b in backends().await {
        b.store
            .ping()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        b.finish().await;
    }
}

#[tokio::test]
async fn connecting_again_finds_the_schema_migrated() {
    let (path, url) = temp_sqlite();
    for _ in 0..2 {
        let store = super::connect(&url, 2).await.unwrap();
        store.ping().await.unwrap();
    }
    remove_sqlite(&path);
}

#[tokio::test]
async fn invite_codes_are_unique_by_hash() {
    for b in backends().await {
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

#[tokio::test]
async fn invite_uses_stay_within_the_maximum() {
    for b in backends().await {
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

#[tokio::test]
async fn one_pending_request_per_person_and_group() {
    for b in backends().await {
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
        b.store
            .insert_request(g, "alice", "rejected")
            .await
            .unwrap();
        assert!(
            b.store.insert_request(g, "carol", "maybe").await.is_err(),
            "{}",
            b.name
        );
        b.finish().await;
    }
}
