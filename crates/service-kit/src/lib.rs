//! What every Hush service shares at its edge. Services differ in what they own; they should not
//! differ in how they fail, log, limit, shut down or connect to their database, so that lives
//! here once.

pub mod app;
pub mod background;
pub mod db;
pub mod failure;
pub mod files;
pub mod health;
pub mod http;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod redacted;
pub mod retry;
pub mod seal;
pub mod sql;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use app::{assemble, assemble_with_own_limits};
pub use http::{
    explicit_body_limit, serve, shutdown_signal, with_common_layers,
    with_common_layers_and_own_limits, HttpArgs, RequestId,
};
pub use json::AppJson;
pub use problem::Problem;
pub use redacted::Redacted;
