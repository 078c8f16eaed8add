//! Dev mode stays on loopback: the app's dev sign-in mints a token for anyone with any role,
//! so `hush up` and `hush edge --dev-mode` refuse an address other than loopback unless told,
//! with a flag whose help says what it exposes.

use std::process::Output;
use std::time::Duration;
use tokio::process::Command;

/// Runs the real `hush` binary with `args`, bounded at 30 s (a refused start ends at once).
async fn hush(args: &[&str], data_dir: &std::path::Path) -> Output {
    let run = Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(args)
        .env("HUSH_DATA_DIR", data_dir)
        .env_remove("HUSH_PUBLIC_HOST")
        .env_remove("HUSH_EXPOSE_DEV_SIGN_IN")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("hush ends by itself")
        .unwrap()
}

fn refused_for_reach(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {err}");
    assert!(
        err.contains("refusing to serve dev sign-in on 0.0.0.0")
            && err.contains("sign in as anyone, with any role")
            && err.contains("--expose-dev-sign-in"),
        "says why and what to do: {err}"
    );
}

#[tokio::test]
async fn hush_up_refuses_a_public_host_while_dev_sign_in_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = hush(&["up", "--host", "0.0.0.0", "--port-base", "0"], dir.path()).await;
    refused_for_reach(&out);
    assert!(
        !dir.path().join("keys").exists(),
        "refused before anything started"
    );
}

#[tokio::test]
async fn hush_edge_refuses_dev_mode_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = hush(
        &[
            "edge",
            "--dev-mode",
            "--listen",
            "0.0.0.0:0",
            "--control-url",
            "http://127.0.0.1:9",
            "--membership-url",
            "http://127.0.0.1:9",
            "--bulk-url",
            "http://127.0.0.1:9",
        ],
        dir.path(),
    )
    .await;
    refused_for_reach(&out);
}

#[tokio::test]
async fn the_flag_that_allows_it_says_what_it_exposes() {
    let dir = tempfile::tempdir().unwrap();
    let out = hush(&["up", "--help"], dir.path()).await;
    // Wrapped or not, the same words.
    let help = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(out.status.success());
    // The flag's own entry: the text after its last mention (the --host entry names it too).
    let flag = help
        .rsplit("--expose-dev-sign-in")
        .next()
        .filter(|f| f.starts_with(" Allow"))
        .expect("the flag is documented");
    assert!(
        flag.contains("sign in as anyone") && flag.contains("break-glass by one person"),
        "{help}"
    );
}

#[tokio::test]
async fn hush_up_on_a_port_in_use_says_to_choose_another_port_base() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = hush(&["up", "--port-base", &port], dir.path()).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {err}");
    // Usually `port` itself; the six after it may be taken by another test's stack meanwhile,
    // and then that port is named the same way.
    assert!(
        err.contains("is in use") && err.contains("--port-base N"),
        "says what is wrong and what to do: {err}"
    );
    drop(taken);
}

#[tokio::test]
async fn hush_token_refuses_a_folder_where_no_stack_made_a_key_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("not-the-data-dir");
    let out = hush(
        &[
            "token",
            "--sub",
            "alice",
            "--data-dir",
            empty.to_str().unwrap(),
        ],
        dir.path(),
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {err}");
    assert!(out.stdout.is_empty(), "no token printed");
    assert!(
        err.contains("no dev issuer key under") && err.contains("hush up"),
        "says why and what to do: {err}"
    );
    assert!(!empty.exists(), "no key, no folder made");
}
