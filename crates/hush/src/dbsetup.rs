//! `hush db-setup`: makes each service's Postgres database and its own login role, brings the
//! schema up to date as the owner, and leaves the service's role only the rights to read and
//! write rows. Run it before the services start, after every upgrade (docker-compose and the
//! Helm chart do: a one-shot service and a pre-install/pre-upgrade Job).
//!
//! Why: a service that connects as the owner (or a superuser) can change its schema, switch
//! off triggers and rewrite the audit chain; the tenant's `audit_events` is append-only only
//! for roles that neither own it nor hold UPDATE or DELETE on it. Here the owner is the admin
//! role (`HUSH_DB_ADMIN_URL`); each service's role comes from the user name, password and
//! database of the URL that service itself connects with, so nothing is configured twice.

use anyhow::Context as _;
use reqwest::Url;
use sqlx::migrate::Migrator;
use sqlx::{ConnectOptions as _, Connection as _, PgConnection};

/// The service whose database a URL names, and so which migrations it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// control-api.
    Control,
    /// membership-api.
    Membership,
    /// bulk-api.
    Bulk,
    /// isolated-tenant: its audit table is append-only for its role.
    Tenant,
}

impl Service {
    fn migrator(self) -> &'static Migrator {
        use service_kit::sql::Schema as _;
        match self {
            Self::Control => &control_api::store::Schema::migrations().postgres,
            Self::Membership => &membership_api::store::Schema::migrations().postgres,
            Self::Bulk => &bulk_api::store::Schema::migrations().postgres,
            Self::Tenant => isolated_tenant::store::postgres_migrations(),
        }
    }

    /// Tables a migration left for the service to empty, which db-setup drops once empty (the
    /// service's role may not drop them). membership-api seals the join requests written in
    /// clear before issue 16 from `join_requests_legacy`.
    fn dropped_when_empty(self) -> &'static [&'static str] {
        match self {
            Self::Membership => &["join_requests_legacy"],
            _ => &[],
        }
    }

    /// Tables the service's role may add to and read but never change or remove rows from.
    fn append_only(self) -> &'static [&'static str] {
        match self {
            Self::Tenant => &["audit_events"],
            _ => &[],
        }
    }
}

/// `hush db-setup`'s settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DbSetupArgs {
    /// A role that may create databases and roles (the Postgres image's POSTGRES_USER, or your
    /// managed server's admin). It owns every database and table; no service connects as it.
    #[arg(long, env = "HUSH_DB_ADMIN_URL")]
    pub admin_url: String,
    /// control-api's database URL: its user, password and database are created from it.
    #[arg(long, env = "HUSH_CONTROL_DATABASE_URL")]
    pub control_url: Option<String>,
    /// membership-api's database URL.
    #[arg(long, env = "HUSH_MEMBERSHIP_DATABASE_URL")]
    pub membership_url: Option<String>,
    /// bulk-api's database URL.
    #[arg(long, env = "HUSH_BULK_DATABASE_URL")]
    pub bulk_url: Option<String>,
    /// isolated-tenant's database URL.
    #[arg(long, env = "HUSH_TENANT_DATABASE_URL")]
    pub tenant_url: Option<String>,
}

/// A service's role and database, read from the URL it connects with.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    role: String,
    password: String,
    database: String,
}

/// A name we put into SQL unquoted-safe: lower-case letters, digits and `_`, not starting with
/// a digit, at most 63 bytes (Postgres' limit). Anything else is refused rather than quoted.
fn identifier(what: &str, s: &str) -> anyhow::Result<String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(
        ok,
        "{what} {s:?}: use lower-case letters, digits and _ (at most 63, not starting with a digit)"
    );
    Ok(s.to_string())
}

fn target(url: &str) -> anyhow::Result<Target> {
    let u = Url::parse(url).context("a service's database URL is not a URL")?;
    anyhow::ensure!(
        matches!(u.scheme(), "postgres" | "postgresql"),
        "db-setup is for Postgres URLs (postgres://…)"
    );
    let password = percent_decode(u.password().unwrap_or_default())?;
    anyhow::ensure!(
        !password.is_empty(),
        "a service's database URL has no password"
    );
    Ok(Target {
        role: identifier("user", u.username())?,
        password,
        database: identifier("database", u.path().trim_start_matches('/'))?,
    })
}

fn percent_decode(s: &str) -> anyhow::Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .context("a broken %-escape in a password")?;
            out.push(u8::from_str_radix(hex, 16).context("a broken %-escape in a password")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("a password that is not UTF-8")
}

/// `s` as an SQL string literal (standard_conforming_strings, on since Postgres 9.1).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    Ok(url
        .parse::<sqlx::postgres::PgConnectOptions>()?
        .disable_statement_logging()
        .connect()
        .await?)
}

/// Runs `hush db-setup`: for each service URL given, the role (created, or its password set),
/// the database (created if missing), the migrations (as the admin), then the grants. Safe to
/// run again. Returns one line per service.
pub async fn run(args: &DbSetupArgs) -> anyhow::Result<Vec<String>> {
    let given = [
        (Service::Control, &args.control_url),
        (Service::Membership, &args.membership_url),
        (Service::Bulk, &args.bulk_url),
        (Service::Tenant, &args.tenant_url),
    ];
    let mut report = Vec::new();
    for (service, url) in given {
        let Some(url) = url else { continue };
        let t = target(url).with_context(|| format!("{service:?}'s database URL"))?;
        setup(&args.admin_url, service, &t)
            .await
            .with_context(|| format!("setting up {} for {service:?}", t.database))?;
        report.push(format!(
            "database {} ready; role {} may read and write rows only",
            t.database, t.role
        ));
    }
    anyhow::ensure!(
        !report.is_empty(),
        "no service database URL given (HUSH_CONTROL_DATABASE_URL, HUSH_MEMBERSHIP_DATABASE_URL, \
         HUSH_BULK_DATABASE_URL, HUSH_TENANT_DATABASE_URL)"
    );
    Ok(report)
}

async fn setup(admin_url: &str, service: Service, t: &Target) -> anyhow::Result<()> {
    let mut admin = connect(admin_url)
        .await
        .context("connecting as the admin")?;
    let role_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(&t.role)
            .fetch_one(&mut admin)
            .await?;
    let verb = if role_exists { "ALTER" } else { "CREATE" };
    // No superuser, no role or database creation, no bypassing row security: rows only.
    sqlx::query(&format!(
        "{verb} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {}",
        t.role,
        literal(&t.password)
    ))
    .execute(&mut admin)
    .await?;
    let db_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&t.database)
            .fetch_one(&mut admin)
            .await?;
    if !db_exists {
        sqlx::query(&format!("CREATE DATABASE {}", t.database))
            .execute(&mut admin)
            .await?;
    }
    sqlx::raw_sql(&format!(
        "REVOKE ALL ON DATABASE {db} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {r}",
        db = t.database,
        r = t.role
    ))
    .execute(&mut admin)
    .await?;
    admin.close().await?;

    let mut db = connect(&service_kit::db::with_database(admin_url, &t.database))
        .await
        .context("connecting to the service's database as the admin")?;
    service.migrator().run(&mut db).await.context("migrating")?;
    // Postgres before 15 lets every role create tables in `public`.
    let mut grants = format!(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
         GRANT USAGE ON SCHEMA public TO {r}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r}; \
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {r}; ",
        r = t.role
    );
    for table in service.append_only() {
        grants.push_str(&format!(
            "REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {r}; ",
            r = t.role
        ));
    }
    sqlx::raw_sql(&grants).execute(&mut db).await?;
    for table in service.dropped_when_empty() {
        drop_if_empty(&mut db, table).await?;
    }
    db.close().await?;
    Ok(())
}

/// Drops `table` if it exists and holds no row: a table a migration left for the service to
/// empty (it holds the key the rows need), which only the owner may drop.
async fn drop_if_empty(db: &mut PgConnection, table: &str) -> anyhow::Result<()> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name = $1)",
    )
    .bind(table)
    .fetch_one(&mut *db)
    .await?;
    if !exists {
        return Ok(());
    }
    let empty: bool = sqlx::query_scalar(&format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"))
        .fetch_one(&mut *db)
        .await?;
    if empty {
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(&mut *db)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_read_from_the_service_url() {
        let t = target("postgres://hush_tenant:p%40ss'w@postgres:5432/hush_tenant").unwrap();
        assert_eq!(
            t,
            Target {
                role: "hush_tenant".into(),
                password: "p@ss'w".into(),
                database: "hush_tenant".into()
            }
        );
        assert_eq!(literal(&t.password), "'p@ss''w'");
    }

    #[test]
    fn names_that_would_need_quoting_are_refused() {
        for bad in [
            "postgres://Hush:pw@h/db",
            "postgres://hush;drop:pw@h/db",
            "postgres://hush:pw@h/1db",
            "postgres://hush@h/db",
            "sqlite://x.db",
        ] {
            assert!(target(bad).is_err(), "{bad} is refused");
        }
    }
}
