//! membership-api's router, driven in-process with `tower::ServiceExt::oneshot`. The tenant and
//! control-api are in-memory stand-ins behind the service's `Directory` and `Catalog` traits,
//! so each test can see exactly what would have been written to the tenant, and prove that
//! nothing was when it should not be. The store runs on a fresh SQLite file per test.
//! (The real services together are tested end to end in `crates/hush/tests`.)

mod fakes;
mod helpers;
mod join;
mod logs;
mod mine;
mod service;
