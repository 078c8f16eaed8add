//! The service's OpenAPI document: what the code generates must equal the snapshot committed
//! beside Cargo.toml (`openapi.json`), so every change to the API shows in review, and the
//! document must be valid OpenAPI 3.1.
//!
//! After a deliberate change to the API, rewrite the snapshot and commit it:
//! `HUSH_UPDATE_OPENAPI=1 cargo test -p membership-api --test api openapi`.
//! The validity check runs Python's reference validator (`python3 -m pip install
//! openapi-spec-validator`), so a plain `cargo test` lists it as ignored; run it with
//! `cargo test -p membership-api --test api openapi -- --include-ignored` (CI does). Run without the
//! validator, it fails.

use service_kit::testing::openapi;
use std::path::Path;

#[test]
fn the_document_matches_its_committed_snapshot() {
    let snapshot = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"));
    openapi::assert_snapshot(&membership_api::openapi(), snapshot);
}

#[test]
#[ignore = "needs python3 -m openapi_spec_validator"]
fn the_document_is_valid_openapi_3_1() {
    openapi::assert_valid(&membership_api::openapi());
}
