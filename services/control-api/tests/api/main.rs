//! control-api's HTTP behaviour: the router driven with `tower::ServiceExt::oneshot` (and, for
//! the saga and the client, served on port 0) around a stand-in tenant, each test on SQLite
//! (`sqlite::…`) and on Postgres (`postgres::…`, ignored unless run with `--include-ignored` and
//! `HUSH_TEST_POSTGRES_URL`).

mod apps;
mod discover;
mod groups;
mod helpers;
mod identities;
mod internal;
mod labels;
mod service;
