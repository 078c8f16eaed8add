//! membership-api's router, driven in-process with `tower::ServiceExt::oneshot`. The tenant,
//! control-api and the clock are in-memory stand-ins behind the service's `Directory`,
//! `Catalog` and `Clock` traits, so each test can see exactly what would have been written to
//! the tenant, and prove that nothing was when it should not be. The store runs on a fresh
//! SQLite file per test (the store's own tests run on both backends).
//! (The real services together are tested end to end in `crates/hush/tests`.)

mod claims;
mod decisions;
mod fakes;
mod helpers;
mod invites;
mod join;
mod labels;
mod logs;
mod mine;
mod owners;
mod rate_limits;
mod requests;
mod service;
