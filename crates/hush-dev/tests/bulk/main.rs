//! Bulk jobs across real processes: the tenant, control-api and one or two bulk-api replicas,
//! each a `hush-dev serve` process (the same code as `hush serve`) on loopback, on SQLite or
//! (with HUSH_TEST_POSTGRES_URL) on fresh Postgres databases. kill -9 is a real SIGKILL of a
//! service's process.
//!
//! `cargo test -p hush-dev --test bulk`

mod harness;
mod jobs;
mod migrate;
mod recovery;
