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

/// A port base N with N..=N+6 all free on loopback (what `hush up` takes).
fn free_port_base() -> u16 {
    for i in 0..200u32 {
        let base =
            20_000 + u16::try_from((std::process::id() * 7919 + i * 104_729) % 40_000).unwrap();
        if (base..=base + 6).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no seven free ports in a row");
}

/// `hush up`'s stdout, piped, up to its "Hush is up" banner; `None` when it ended before (a
/// port of the base was taken meanwhile by another test's stack).
async fn piped_start(data_dir: &std::path::Path, base: u16) -> Option<String> {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(["up", "--port-base", &base.to_string()])
        .env("HUSH_DATA_DIR", data_dir)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("HUSH_LOG_FORMAT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let up = line.contains("Hush is up");
            seen.push(line);
            if up {
                return true;
            }
        }
        false
    };
    let up = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("hush up starts or stops within a minute");
    child.kill().await.ok();
    up.then(|| seen.join("\n"))
}

/// Logs written anywhere but a terminal (a file, a pipe, a log collector) carry no colour
/// codes: `hush up` with its output piped logs plain lines.
#[tokio::test]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = None;
    for _ in 0..3 {
        text = piped_start(dir.path(), free_port_base()).await;
        if text.is_some() {
            break;
        }
    }
    let text = text.expect("hush up started on one of three port bases");
    assert!(text.contains(" INFO "), "log lines were written: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "no escape codes in piped logs: {text:?}"
    );
}
