//! control-api's HTTP behaviour: the router driven with `tower::ServiceExt::oneshot` (and, for
//! the saga and the client, served on port 0) around a stand-in tenant, on SQLite — and on
//! Postgres too when `HUSH_TEST_POSTGRES_URL` is set.

mod discover;
mod groups;
mod helpers;
mod identities;
mod internal;
mod labels;
mod openapi;
mod service;
