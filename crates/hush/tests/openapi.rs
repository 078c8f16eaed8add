//! Every service's OpenAPI document: what the code generates must equal the snapshot committed
//! beside the service's Cargo.toml (`services/<service>/openapi.json`), so every change to an
//! API shows in review, and every document must be valid OpenAPI 3.1. The four documents are
//! checked here, in the one crate that links every service.
//!
//! After a deliberate change to an API, rewrite the snapshots and commit them:
//! `HUSH_UPDATE_OPENAPI=1 cargo test -p hush --test openapi`.
//! The validity check runs Python's reference validator (`python3 -m pip install
//! openapi-spec-validator`), so a plain `cargo test` lists it as ignored; run it with
//! `cargo test -p hush --test openapi -- --include-ignored` (CI does). Run without the
//! validator, it fails.

use service_kit::testing::openapi;
use std::path::PathBuf;

/// Each service's generated document and where its snapshot lives.
fn documents() -> [(PathBuf, utoipa::openapi::OpenApi); 4] {
    let snapshot = |service: &str| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../services"))
            .join(service)
            .join("openapi.json")
    };
    [
        (snapshot("control-api"), control_api::openapi()),
        (snapshot("membership-api"), membership_api::openapi()),
        (snapshot("bulk-api"), bulk_api::openapi()),
        (snapshot("isolated-tenant"), isolated_tenant::openapi()),
    ]
}

#[test]
fn every_document_matches_its_committed_snapshot() {
    for (snapshot, document) in documents() {
        openapi::assert_snapshot(&document, &snapshot);
    }
}

#[test]
#[ignore = "needs python3 -m openapi_spec_validator"]
fn every_document_is_valid_openapi_3_1() {
    for (_, document) in documents() {
        openapi::assert_valid(&document);
    }
}
