//! Every service's OpenAPI document: what the code generates must equal the snapshot committed
//! beside the service's Cargo.toml (`services/<service>/openapi.json`), so every change to an
//! API shows in review, and every document must be valid OpenAPI 3.1. The four documents are
//! checked here, in the one crate that links every service.
//!
//! The same documents render `docs/api-reference.md`, the route-by-route reference, which must
//! equal what they render now.
//!
//! After a deliberate change to an API, rewrite the snapshots and the reference and commit them:
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

/// Where each service serves its document, by name.
const SERVED: [(&str, &str); 4] = [
    ("control-api", "/control/v1/openapi.json"),
    ("membership-api", "/membership/v1/openapi.json"),
    ("bulk-api", "/bulk/v1/openapi.json"),
    (
        "isolated-tenant",
        "/tenant/v1/openapi.json (service tokens only)",
    ),
];

/// One line of a Markdown table cell: no line breaks, no stray pipes.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The statuses a route documents, in order (`200`, `4XX`, …).
fn statuses(op: &serde_json::Value) -> String {
    let mut codes: Vec<&str> = op["responses"]
        .as_object()
        .map(|r| r.keys().map(String::as_str).collect())
        .unwrap_or_default();
    codes.sort_unstable();
    codes.join(", ")
}

/// The reference: per service, its purpose and a table of every route with what it does, who
/// may call it and what it answers.
fn reference() -> String {
    let mut out = String::from(
        "# API reference\n\n\
         Generated from the services' OpenAPI documents by `crates/hush/tests/openapi.rs`; do not \
         edit by hand. After changing an API: `HUSH_UPDATE_OPENAPI=1 cargo test -p hush --test \
         openapi`. Each route's parameters, bodies and every answer are in the service's \
         document (`services/<service>/openapi.json`, also served by the running service); \
         [api.md](api.md) explains the API as a whole. Every error is \
         `application/problem+json`. A running edge (`hush up`, `hush edge`) also renders these \
         documents at `/api` (Swagger UI, vendored; see \
         [web.md](web.md#the-api-reference-page)).\n",
    );
    for ((_, document), (name, served)) in documents().into_iter().zip(SERVED) {
        let doc = serde_json::to_value(&document).unwrap();
        out.push_str(&format!(
            "\n## {name}\n\n{}\n\nDocument: `{served}`.\n\n\
             | method | route | what it does | caller | answers |\n|---|---|---|---|---|\n",
            cell(doc["info"]["description"].as_str().unwrap_or_default()),
        ));
        let mut rows = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let summary = op["summary"]
                    .as_str()
                    .or_else(|| op["description"].as_str())
                    .unwrap_or_default();
                // The route's own security, else the document's.
                let security = if op["security"].is_array() {
                    &op["security"]
                } else {
                    &doc["security"]
                };
                let caller = match security[0].as_object().and_then(|s| s.keys().next()) {
                    Some(scheme) if scheme == "bearer" => "user token",
                    Some(_) => "service token",
                    None => "anyone",
                };
                rows.push(format!(
                    "| `{}` | `{path}` | {} | {caller} | {} |\n",
                    method.to_uppercase(),
                    cell(summary),
                    statuses(op)
                ));
            }
        }
        rows.sort();
        out.extend(rows);
    }
    out
}

#[test]
fn the_api_reference_is_rendered_from_the_documents() {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/api-reference.md"
    ));
    let now = reference();
    if std::env::var_os("HUSH_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == now,
        "docs/api-reference.md is not what the documents render: run \
         HUSH_UPDATE_OPENAPI=1 cargo test -p hush --test openapi and commit it"
    );
}

#[test]
#[ignore = "needs python3 -m openapi_spec_validator"]
fn every_document_is_valid_openapi_3_1() {
    for (_, document) in documents() {
        openapi::assert_valid(&document);
    }
}
