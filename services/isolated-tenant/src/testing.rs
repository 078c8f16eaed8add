//! Real mail peers for tests (feature `testing`, for `[dev-dependencies]` only; the tenant's
//! own tests have it too): `aiosmtpd` as the corporate relay and Python's `smtplib` as a
//! sender, the scripts in `services/isolated-tenant/tests/mail/`. The tenant's mail tests and
//! the process tests in hush-dev drive the tenant with the same ones.
//!
//! Tests that use them are `#[ignore = "needs python3 with aiosmtpd and dkimpy"]` and call
//! [`service_kit::testing::require_mail_tools`] first.

use serde_json::Value;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the Python peers live.
pub const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mail");

/// The aiosmtpd relay, recording every message it receives; killed when dropped.
pub struct PyRelay {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl PyRelay {
    /// A relay on a free loopback port, recording into `dir/relay.jsonl`.
    pub fn start(dir: &Path) -> Self {
        Self::start_on(&dir.join("relay.jsonl"), None)
    }

    /// A relay recording into `out`, on `port` when given (a tenant already configured with
    /// that relay), else on a free one. Returns once it listens.
    pub fn start_on(out: &Path, port: Option<u16>) -> Self {
        Self::start_with(out, port, &[])
    }

    /// [`Self::start_on`] with relay.py's options: `--starttls CERT KEY` (offered and
    /// required), `--implicit CERT KEY`, `--auth USER:PASSWORD`.
    pub fn start_with(out: &Path, port: Option<u16>, options: &[&str]) -> Self {
        let mut command = Command::new("python3");
        command.arg(format!("{SCRIPTS}/relay.py")).arg(out);
        if let Some(port) = port {
            command.arg(port.to_string());
        }
        command.args(options);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the aiosmtpd relay");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("the relay's stdout"))
            .read_line(&mut line)
            .expect("reading the relay's first line");
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("relay said {line:?}"));
        Self {
            child,
            port,
            out: out.to_path_buf(),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Every message received so far: `{"from", "rcpts", "data"}`.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Every envelope recipient received so far, in order of arrival.
    pub fn recipients(&self) -> Vec<String> {
        self.received()
            .iter()
            .flat_map(|m| {
                m["rcpts"]
                    .as_array()
                    .map(|rcpts| {
                        rcpts
                            .iter()
                            .filter_map(|r| r.as_str().map(str::to_string))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Waits until `n` recipients have been received (or panics after `limit`); answers the
    /// messages.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let got = self.recipients().len();
            if got >= n {
                return self.received();
            }
            assert!(
                start.elapsed() < limit,
                "only {got} of {n} recipients reached the relay in {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PyRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `message` from `from` to `rcpts` through the SMTP server at `addr` with smtplib, with
/// `extra` arguments for send.py (STARTTLS and the like); answers its JSON verdict
/// (`{"ok": true}` or the refusal's `code` and `message`).
pub async fn send(
    addr: SocketAddr,
    from: &str,
    rcpts: &[&str],
    message: &str,
    extra: &[&str],
) -> Value {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("message.eml");
    std::fs::write(&path, message).expect("writing the message");
    let out = tokio::process::Command::new("python3")
        .arg(format!("{SCRIPTS}/send.py"))
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(from)
        .arg(rcpts.join(","))
        .arg(&path)
        .args(extra)
        .output()
        .await
        .expect("running send.py");
    assert!(
        out.status.success(),
        "send.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("send.py's verdict")
}
