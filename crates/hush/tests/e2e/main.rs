//! End-to-end tests: the four real services on their own loopback ports, real HTTP between
//! them, on SQLite (default) or Postgres (HUSH_TEST_POSTGRES_URL). Each test gets a fresh stack
//! and fresh databases, and stops them when it ends.

mod at_rest;
mod breakglass;
mod catalog_audit;
mod compose;
mod helpers;
mod jwt;
mod labels;
mod membership;
mod privacy;
mod slice;
