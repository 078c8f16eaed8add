//! Bulk jobs across real processes: the tenant, control-api and one or two bulk-api replicas,
//! each a `hush-dev serve` process (the same code as `hush serve`) on loopback, each test on
//! SQLite (`sqlite::…`) and on fresh Postgres databases (`postgres::…`, ignored unless run with
//! `--include-ignored` and HUSH_TEST_POSTGRES_URL). kill -9 is a real SIGKILL of a service's
//! process.
//!
//! `cargo test -p hush-dev --test bulk`

mod harness;
mod jobs;
mod migrate;
mod recovery;
