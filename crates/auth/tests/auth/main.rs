//! Integration tests of the auth crate: real tokens, a real JWKS over HTTP on 127.0.0.1:0, and
//! the extractors inside a real axum router.
//!
//! Run with `cargo test -p auth`.

mod dev_issuer;
mod discovery;
mod extractors;
mod helpers;
mod service_tokens;
mod user_tokens;
