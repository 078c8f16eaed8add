//! bulk-api's router, driven in-process with `tower::ServiceExt::oneshot`: authentication,
//! the operator role, input checks, health and the OpenAPI document. The store runs on a fresh
//! SQLite file per test; the tenant is a tiny in-process stand-in that answers `/readyz` (or a
//! closed port, when a test wants it down).

mod helpers;
mod jobs;
mod service;
