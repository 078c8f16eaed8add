//! End-to-end tests: the four real services on their own loopback ports, real HTTP between
//! them, each test on SQLite (`sqlite::…`) and on Postgres (`postgres::…`, ignored unless run
//! with `--include-ignored` and HUSH_TEST_POSTGRES_URL). Each test gets a fresh stack and fresh
//! databases, and stops them when it ends.

mod at_rest;
mod breakglass;
mod bulk_cli;
mod cancelled;
mod catalog_audit;
mod cli_docs;
mod compose;
mod decisions;
mod dev_mode;
mod group_types;
mod helpers;
mod jwt;
mod labels;
mod membership;
mod metrics;
mod privacy;
mod replicas;
mod scim;
mod slice;
