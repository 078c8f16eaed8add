//! Fresh databases and OpenAPI document checks for tests (feature `testing`, for
//! `[dev-dependencies]` only).
//!
//! Every test that touches a store gets a database of its own, so tests never share state nor
//! depend on their order: a new SQLite file, or a new Postgres database `hush_t_<hex>` on the
//! server [`POSTGRES_URL_VAR`] names. The stateful services' tests all make them the same way, so
//! they are made here once.
//!
//! A test never reports `ok` having done nothing: a test that needs Postgres is its own test,
//! `#[ignore = "needs HUSH_TEST_POSTGRES_URL"]` (see [`backend_tests!`](crate::backend_tests)),
//! and fails when run without the variable. CI runs them with `--include-ignored` and a URL.

pub mod openapi;

pub use crate::db::with_database;
use crate::db::{connect_postgres, Backend};
use std::path::PathBuf;
use tempfile::TempDir;
use uuid::Uuid;

/// The variable that names a Postgres server for tests (e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`). The Postgres tests need it and fail without it.
pub const POSTGRES_URL_VAR: &str = "HUSH_TEST_POSTGRES_URL";

/// The server [`POSTGRES_URL_VAR`] names. Panics when it names none: a test that asked for
/// Postgres fails rather than pass having done nothing.
pub fn postgres_url() -> String {
    named_url(std::env::var(POSTGRES_URL_VAR).ok())
}

fn named_url(var: Option<String>) -> String {
    match var {
        Some(url) if !url.is_empty() => url,
        _ => panic!(
            "this test runs on Postgres: set {POSTGRES_URL_VAR} \
             (e.g. postgres://postgres@127.0.0.1:5432/postgres), or run without --include-ignored"
        ),
    }
}

/// Generates, for each named scenario `async fn name(backend: Backend)`, two tests:
/// `sqlite::name`, and `postgres::name`, ignored unless asked for (`--include-ignored`) since it
/// needs [`POSTGRES_URL_VAR`]. It only names the two wrappers; what the test does stays in the
/// plain function.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::db::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs HUSH_TEST_POSTGRES_URL"]
                async fn $name() {
                    super::$name($crate::db::Backend::Postgres).await
                }
            )*
        }
    };
}

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

    /// A new, empty database on `backend`.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// A new, empty Postgres database `hush_t_<random hex>` on the server [`POSTGRES_URL_VAR`]
    /// names. Panics when it names none or the server does not answer: a test that asked for
    /// Postgres must fail, not quietly run without it.
    pub async fn postgres() -> Self {
        let admin_url = postgres_url();
        let name = format!("hush_t_{}", Uuid::new_v4().simple());
        let admin = connect_postgres(&admin_url, 1)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} must reach a Postgres server: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("creating the test database");
        admin.close().await;
        Self {
            url: with_database(&admin_url, &name),
            place: Place::Postgres { admin_url, name },
        }
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

/// A loopback port free at the time of asking, for a process a test starts that must be told
/// its port in advance.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A test certificate authority and one server certificate it signed (see [`test_certs`]).
pub struct TestCerts {
    /// The CA's certificate (PEM): what a client under test is told to trust.
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

/// Makes, with `openssl`, a private CA and a server certificate it signed for `san` (a
/// subjectAltName such as `DNS:localhost` or `IP:127.0.0.1`), valid one day, as files
/// `<name>-ca.pem`, `<name>-server.pem` and `<name>-server.key` under `dir`: for tests of TLS
/// to a peer on a company CA (the mail relay, the IdP).
pub fn test_certs(dir: &std::path::Path, name: &str, san: &str) -> TestCerts {
    let file = |f: &str| dir.join(format!("{name}-{f}"));
    let (ca_key, ca, key, csr, cert, ext) = (
        file("ca.key"),
        file("ca.pem"),
        file("server.key"),
        file("server.csr"),
        file("server.pem"),
        file("server.ext"),
    );
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let path = |p: &PathBuf| p.to_str().expect("a UTF-8 temp path").to_string();
    let (ca_key_s, ca_s, key_s, csr_s, cert_s, ext_s) = (
        path(&ca_key),
        path(&ca),
        path(&key),
        path(&csr),
        path(&cert),
        path(&ext),
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca_subject = format!("/CN=Hush test CA {name}");
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-days",
        "1",
        "-subj",
        &ca_subject,
        "-keyout",
        &ca_key_s,
        "-out",
        &ca_s,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&args);
    let subject = format!("/CN={}", san.split_once(':').map_or(san, |(_, v)| v));
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-subj", &subject, "-keyout", &key_s, "-out", &csr_s]);
    openssl(&args);
    std::fs::write(
        &ext,
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("the extensions file");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr_s,
        "-CA",
        &ca_s,
        "-CAkey",
        &ca_key_s,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &ext_s,
        "-out",
        &cert_s,
    ]);
    TestCerts { ca, cert, key }
}

/// The reason on tests that drive real mail peers written in Python:
/// `#[ignore = "needs python3 with aiosmtpd and dkimpy"]`. CI installs them and runs these tests
/// with `--include-ignored`.
pub const MAIL_TOOLS: &str = "python3 with aiosmtpd and dkimpy";

/// Fails the test unless `python3` can import the mail peers' modules (`aiosmtpd`, `dkim`): a
/// test that was asked to run never passes having checked nothing.
pub fn require_mail_tools() {
    let present = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd, dkim"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        present,
        "this test needs {MAIL_TOOLS} (pip install aiosmtpd dkimpy; .ci/run installs them), \
         or run without --include-ignored"
    );
}

/// A request to an in-process router: `method uri`, with `token` as its bearer and `body` as
/// its JSON body when given.
pub fn request(
    method: http::Method,
    uri: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> http::Request<axum::body::Body> {
    let mut req = http::Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(b) => req
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(b.to_string())),
        None => req.body(axum::body::Body::empty()),
    }
    .expect("a valid request")
}

/// What an in-process router answered, read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: http::StatusCode,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body (at most 16 MiB).
    pub body: axum::body::Bytes,
}

/// Sends `req` to `router` in process and reads the whole answer.
pub async fn send(router: &axum::Router, req: http::Request<axum::body::Body>) -> Reply {
    use tower::ServiceExt as _;
    let res = router
        .clone()
        .oneshot(req)
        .await
        .expect("the router answers");
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), 16 << 20)
        .await
        .expect("reading the body");
    Reply {
        status,
        headers,
        body,
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
    #[ignore = "needs HUSH_TEST_POSTGRES_URL"]
    async fn a_postgres_database_is_made_and_dropped() {
        let db = TestDatabase::postgres().await;
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

    #[test]
    #[should_panic(expected = "set HUSH_TEST_POSTGRES_URL")]
    fn asking_for_postgres_without_a_server_fails() {
        named_url(None);
    }

    #[test]
    #[should_panic(expected = "set HUSH_TEST_POSTGRES_URL")]
    fn an_empty_server_url_names_no_server() {
        named_url(Some(String::new()));
    }
}
