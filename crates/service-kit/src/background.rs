//! A runtime for bulk work that yields the CPU to routine requests.
//!
//! Bulk batches and routine calls share the machine's cores. Run on the service's main runtime,
//! a batch competes with joins and leaves as an equal, and on a busy machine the slowest routine
//! calls wait for it. Work spawned on a [`Background`] runtime runs on its own threads at a
//! lower OS priority (a higher nice value, Linux; no privilege is needed to lower a priority),
//! so the scheduler gives the CPU to routine work first and to bulk work whatever is left.
//!
//! Anything that does I/O for bulk work (database pools, HTTP clients) should be created and
//! used from the background runtime too: a socket is driven by the runtime it was first used
//! on, and a routine call must never wait for a low-priority thread to notice its reply.

use std::future::Future;
use std::sync::Arc;

/// The nice value background threads run at unless configured otherwise: well below routine
/// work (0), above the floor (19) so that it still outranks the machine's idle chores.
pub const DEFAULT_NICE: i32 = 10;

/// A tokio runtime whose threads run at a lower OS priority. Cheap to clone; the threads stop
/// when the last clone is dropped (without waiting for what still runs on them).
#[derive(Clone, Debug)]
pub struct Background(Arc<Owned>);

#[derive(Debug)]
struct Owned(Option<tokio::runtime::Runtime>);

impl Drop for Owned {
    fn drop(&mut self) {
        // `shutdown_background` may be called from async code, where a plain drop panics.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Background {
    /// Starts `threads` worker threads named `name`, each at nice value `nice` (0 keeps the
    /// caller's priority; values are clamped to 0..=19).
    pub fn start(name: &str, threads: usize, nice: i32) -> std::io::Result<Self> {
        let nice = nice.clamp(0, 19);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
            .on_thread_start(move || lower_this_thread(nice))
            .build()?;
        Ok(Self(Arc::new(Owned(Some(rt)))))
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.0 .0.as_ref().expect("running until dropped").handle()
    }

    /// Runs `task` on the background threads and waits for its result. A panic in `task` is
    /// resumed here.
    pub async fn run<F>(&self, task: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle().spawn(task).await {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the background runtime stopped under a running task: {e}"),
        }
    }
}

/// Sets the calling thread's nice value (on Linux a per-thread attribute). A failure is logged
/// and otherwise ignored: the work still runs, at the caller's priority.
fn lower_this_thread(nice: i32) {
    if nice == 0 || this_thread_nice().is_ok_and(|now| now >= nice) {
        return;
    }
    if let Err(e) = rustix::process::setpriority_process(None, nice) {
        tracing::warn!(error = %e, nice, "could not lower a background thread's priority");
    }
}

/// Sets the nice value of process `pid` on this machine to `nice` (0–19), if its command is
/// `command` (so that a process number learnt from elsewhere never touches an unrelated local
/// process). Answers whether it was changed; an error when the OS refused (lowering another
/// user's process needs the right to).
///
/// Where the kernel groups processes by session for scheduling (Linux's autogroup, on by
/// default on desktops and many servers), a process's nice value only ranks it against the
/// other processes of its session, and each session gets an equal share of the CPU. A process
/// that leads its own session (a Postgres backend: each calls `setsid`) then keeps a full
/// share whatever its nice value, so its session's nice value is lowered too.
pub fn lower_local_process(pid: i32, command: &str, nice: i32) -> std::io::Result<bool> {
    let raw = pid;
    let matches = runs_command(raw.into(), command);
    let Some(pid) = rustix::process::Pid::from_raw(raw).filter(|_| matches) else {
        return Ok(false);
    };
    let nice = nice.clamp(0, 19);
    let mut changed = false;
    if rustix::process::getpriority_process(Some(pid))? < nice {
        rustix::process::setpriority_process(Some(pid), nice)?;
        changed = true;
    }
    if session_of(raw) == Some(raw) && session_nice(raw).is_some_and(|n| n < nice) {
        std::fs::write(format!("/proc/{raw}/autogroup"), nice.to_string())?;
        changed = true;
    }
    Ok(changed)
}

/// The nice value of the scheduling group of `pid`'s session (`/proc/PID/autogroup`, Linux with
/// autogroup enabled); `None` where the kernel does not group by session.
pub fn session_nice(pid: i32) -> Option<i32> {
    if std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled")
        .ok()?
        .trim()
        != "1"
    {
        return None;
    }
    // "/autogroup-42 nice 0"
    let line = std::fs::read_to_string(format!("/proc/{pid}/autogroup")).ok()?;
    line.split_whitespace().last()?.parse().ok()
}

/// The session id of process `pid` as this process's PID namespace sees it (`/proc/PID/stat`,
/// Linux); `None` when the process is gone, or when its session's leader lives outside this
/// namespace (the kernel then reports 0, as it does for processes started by a supervisor in
/// another namespace). `getsid` is not used: rustix treats such a 0 as impossible and panics.
pub fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    session_in_stat(&stat)
}

/// The session field of a `/proc/PID/stat` line: the fourth after the command, which is in
/// parentheses and may itself hold spaces and parentheses, so fields are counted from the last
/// `)`: "42 (a b) S 1 42 42 …" → 42.
fn session_in_stat(stat: &str) -> Option<i32> {
    let after_command = &stat[stat.rfind(')')? + 1..];
    let session: i32 = after_command.split_whitespace().nth(3)?.parse().ok()?;
    (session > 0).then_some(session)
}

/// Whether process `pid` on this machine runs `command` (its name in `/proc/PID/comm`, Linux).
pub fn runs_command(pid: i64, command: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == command)
}

/// The calling thread's nice value (Linux), for tests and diagnostics.
pub fn this_thread_nice() -> std::io::Result<i32> {
    Ok(rustix::process::getpriority_process(None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn background_work_runs_at_the_configured_lower_priority_and_the_caller_keeps_its_own() {
        let before = this_thread_nice().unwrap();
        let bg = Background::start("bg-test", 1, before + 7).unwrap();
        let inside = bg.run(async { this_thread_nice().unwrap() }).await;
        assert_eq!(inside, (before + 7).clamp(0, 19).max(before));
        assert_eq!(
            this_thread_nice().unwrap(),
            before,
            "the caller's priority is untouched"
        );
        let unchanged = Background::start("bg-test-0", 1, 0).unwrap();
        assert_eq!(
            unchanged.run(async { this_thread_nice().unwrap() }).await,
            before
        );
    }

    /// Runs `command` (which ends up as `sleep`) and answers it and its process id once its
    /// command is `sleep` (after it has exec'd).
    fn sleeping_child(command: &[&str]) -> (std::process::Child, i32) {
        let child = std::process::Command::new(command[0])
            .args(&command[1..])
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        for _ in 0..100 {
            if runs_command(pid.into(), "sleep") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        (child, pid)
    }

    #[test]
    fn a_process_is_lowered_only_when_its_command_is_the_one_named() {
        let (mut child, pid) = sleeping_child(&["sleep", "30"]);
        let nice_of = |pid: i32| {
            rustix::process::getpriority_process(rustix::process::Pid::from_raw(pid)).unwrap()
        };
        let before = nice_of(pid);
        let session_before = session_nice(pid);
        assert!(
            !lower_local_process(pid, "postgres", 12).unwrap(),
            "not a postgres process"
        );
        assert_eq!(nice_of(pid), before);
        assert_eq!(lower_local_process(pid, "sleep", 12).unwrap(), before < 12);
        assert_eq!(nice_of(pid), 12.max(before));
        assert!(
            !lower_local_process(pid, "sleep", 5).unwrap(),
            "never raised back"
        );
        assert_eq!(
            session_nice(pid),
            session_before,
            "a process sharing its session (here the test runner's) leaves the session's priority alone"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Under autogroup, the nice value of a process that leads its own session (as a Postgres
    /// backend does) ranks it only against itself: its session must be lowered too, or it keeps
    /// a full share of the CPU beside routine work.
    #[test]
    fn a_process_leading_its_own_session_has_its_session_lowered_too() {
        // `setsid` execs `sleep` in a new session under the same process id.
        let (mut child, pid) = sleeping_child(&["setsid", "sleep", "30"]);
        let Some(before) = session_nice(pid) else {
            eprintln!("this kernel does not group by session: nothing more to check");
            child.kill().unwrap();
            child.wait().unwrap();
            return;
        };
        assert!(lower_local_process(pid, "sleep", 13).unwrap());
        assert_eq!(
            session_nice(pid),
            Some(13.max(before)),
            "the session's priority is lowered"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_session_is_read_after_the_command_and_unknown_when_outside_this_namespace() {
        assert_eq!(
            session_in_stat("42 (post) gres: x) S 1 40 41 0 -1 4194304"),
            Some(41)
        );
        assert_eq!(
            session_in_stat("2 (sleep) R 1 0 0 0 -1 4194304"),
            None,
            "a leader in another PID namespace shows as 0"
        );
        assert_eq!(session_in_stat("garbage"), None);

        let (mut leader, pid) = sleeping_child(&["setsid", "sleep", "30"]);
        assert_eq!(
            session_of(pid),
            Some(pid),
            "setsid makes it its session's leader"
        );
        let (mut member, other) = sleeping_child(&["sleep", "30"]);
        assert_ne!(
            session_of(other),
            Some(other),
            "it shares the runner's session"
        );
        for child in [&mut leader, &mut member] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[tokio::test]
    async fn a_panic_in_background_work_reaches_the_caller() {
        let bg = Background::start("bg-panic", 1, 0).unwrap();
        let caught = tokio::spawn(async move { bg.run(async { panic!("boom") }).await }).await;
        assert!(caught.unwrap_err().is_panic());
    }
}
