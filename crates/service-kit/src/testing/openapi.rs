//! Checks of a service's OpenAPI document, for its tests: the document as generated must equal
//! the snapshot committed beside the service (so a change to the API shows in review as a change
//! to `openapi.json`), and must be valid OpenAPI 3.1 by the reference validator.
//!
//! To accept a changed document, rewrite the snapshots and commit them:
//! `HUSH_UPDATE_OPENAPI=1 cargo test -p hush --test openapi` (all four documents are there).

use std::path::Path;
use std::process::Command;
use utoipa::openapi::OpenApi;

/// Set to `1` to write the generated documents over their snapshots instead of comparing.
pub const UPDATE_VAR: &str = "HUSH_UPDATE_OPENAPI";

/// The document as it is committed: pretty JSON with a final newline. utoipa keeps paths,
/// schemas and properties in sorted maps, so the same API always prints the same text.
pub fn to_snapshot_text(doc: &OpenApi) -> String {
    let mut text = serde_json::to_string_pretty(doc).expect("an OpenAPI document serialises");
    text.push('\n');
    text
}

/// Panics with a unified diff when `doc` differs from the snapshot at `path` (or the snapshot
/// is missing); with [`UPDATE_VAR`]`=1`, writes `doc` there instead.
pub fn assert_snapshot(doc: &OpenApi, path: &Path) {
    let generated = to_snapshot_text(doc);
    if std::env::var(UPDATE_VAR).is_ok_and(|v| v == "1") {
        std::fs::write(path, &generated)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed == generated {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fresh = dir.path().join("generated.json");
    std::fs::write(&fresh, &generated).expect("writing the generated document");
    panic!(
        "the OpenAPI document differs from its snapshot {}; if the change is meant, run the \
         tests with {UPDATE_VAR}=1 and commit the file.\n{}",
        path.display(),
        diff(path, &fresh, &committed, &generated)
    );
}

/// `diff -u` of the two files when the tool is there; else the first line that differs.
fn diff(old: &Path, new: &Path, old_text: &str, new_text: &str) -> String {
    if let Ok(out) = Command::new("diff").arg("-u").arg(old).arg(new).output() {
        if out.status.code() == Some(1) {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
    }
    let (mut a, mut b) = (old_text.lines(), new_text.lines());
    for n in 1.. {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) if x == y => {}
            (x, y) => {
                return format!(
                    "first difference at line {n}:\n- {}\n+ {}",
                    x.unwrap_or("(end of file)"),
                    y.unwrap_or("(end of file)")
                )
            }
        }
    }
    "the files differ only in line endings".into()
}

/// Panics unless `python3 -m openapi_spec_validator` (the reference validator,
/// `python3 -m pip install openapi-spec-validator`) accepts `doc` as OpenAPI 3.1. A missing
/// tool fails too: a test that calls this is `#[ignore]`d where the tool may be absent, never
/// passed without checking.
pub fn assert_valid(doc: &OpenApi) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, to_snapshot_text(doc)).expect("writing the document");
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .args(["--validation-errors", "all"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 did not run ({e}); install it and openapi-spec-validator")
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !said.contains("No module named openapi_spec_validator"),
        "the validator is missing: python3 -m pip install openapi-spec-validator"
    );
    assert!(
        out.status.success(),
        "the OpenAPI document is not valid OpenAPI 3.1:\n{said}"
    );
}
