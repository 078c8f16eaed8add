//! Fresh databases and OpenAPI document checks for tests (feature `testing`, for
//! `[dev-dependencies]` only).
//!
//! Every test that touches a store gets a database of its own, so tests never share state nor
//! depend on their order: a new SQLite file always, and a new Postgres database `hush_t_<hex>`
//! on the server [`POSTGRES_URL_VAR`] names, when it names one. The stateful services' tests all
//! make them the same way, so they are made here once.

pub mod openapi;

pub use crate::db::with_database;
use crate::db::{connect_postgres, Backend};
use std::path::PathBuf;
use tempfile::TempDir;
use uuid::Uuid;

/// The variable that names a Postgres server for tests (e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`). Unset or empty: tests run on SQLite only.
pub const POSTGRES_URL_VAR: &str = "HUSH_TEST_POSTGRES_URL";

/// A database made for one test; [`TestDatabase::remove`] removes it once the test is done.
///
/// Nothing is migrated: the test opens it with the service's own `connect` or `migrate`, or
/// runs migrations by hand. A SQLite file lives in a temporary directory, removed with the
/// value even when the test panics; a Postgres database lives until [`TestDatabase::remove`].
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    place: Place,
}

/// Where the database lives, to remove it.
#[derive(Debug)]
enum Place {
    Sqlite(TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A new, empty SQLite file.
    pub fn sqlite() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hush_t_")
            .tempdir()
            .expect("creating a temporary directory for the test database");
        let path: PathBuf = dir.path().join("test.db");
        Self {
            url: format!("sqlite://{}", path.display()),
            place: Place::Sqlite(dir),
        }
    }

    /// A new, empty Postgres database `hush_t_<random hex>` on the server [`POSTGRES_URL_VAR`]
    /// names; `None` when it names none. Panics when the server does not answer: a test run
    /// asked for Postgres must not quietly run without it.
    pub async fn postgres() -> Option<Self> {
        let admin_url = std::env::var(POSTGRES_URL_VAR)
            .ok()
            .filter(|u| !u.is_empty())?;
        let name = format!("hush_t_{}", Uuid::new_v4().simple());
        let admin = connect_postgres(&admin_url, 1)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} must reach a Postgres server: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("creating the test database");
        admin.close().await;
        Some(Self {
            url: with_database(&admin_url, &name),
            place: Place::Postgres { admin_url, name },
        })
    }

    /// The URL the service's `connect` takes.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which backend it is, for tests that reach past the store to the tables.
    pub fn backend(&self) -> Backend {
        match self.place {
            Place::Sqlite(_) => Backend::Sqlite,
            Place::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Removes the database. A Postgres database is dropped even while pools still hold
    /// connections to it (`WITH (FORCE)`); failing to drop it panics, since every failure
    /// would leave one more database on the server.
    pub async fn remove(self) {
        match self.place {
            Place::Sqlite(dir) => drop(dir),
            Place::Postgres { admin_url, name } => {
                let admin = connect_postgres(&admin_url, 1)
                    .await
                    .expect("reaching Postgres to drop the test database");
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await
                    .expect("dropping the test database");
                admin.close().await;
            }
        }
    }
}

/// A fresh database for a test that runs on one backend: Postgres when [`POSTGRES_URL_VAR`]
/// names a server (so the same suite runs there in CI), SQLite otherwise.
pub async fn fresh_database() -> TestDatabase {
    match TestDatabase::postgres().await {
        Some(db) => db,
        None => TestDatabase::sqlite(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "hush_t_1"),
            "postgres://postgres@127.0.0.1:5432/hush_t_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
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
    async fn a_sqlite_database_is_gone_once_removed() {
        let db = TestDatabase::sqlite();
        assert_eq!(db.backend(), Backend::Sqlite);
        let pool = crate::db::connect_sqlite(db.url(), 1).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let path = db.url().trim_start_matches("sqlite://").to_string();
        assert!(std::path::Path::new(&path).exists());
        db.remove().await;
        assert!(!std::path::Path::new(&path).exists());
    }

    #[tokio::test]
    async fn a_postgres_database_is_made_and_dropped_when_a_server_is_named() {
        let Some(db) = TestDatabase::postgres().await else {
            eprintln!("{POSTGRES_URL_VAR} is not set; skipping the Postgres run");
            return;
        };
        assert_eq!(db.backend(), Backend::Postgres);
        let url = db.url().to_string();
        let pool = connect_postgres(&url, 1).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        db.remove().await;
        assert!(connect_postgres(&url, 1).await.is_err(), "still there");
    }
}
