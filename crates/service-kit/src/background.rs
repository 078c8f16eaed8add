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

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

/// The nice value background threads run at unless configured otherwise: well below routine
/// work (0), above the floor (19) so that it still outranks the machine's idle chores.
pub const DEFAULT_NICE: i32 = 10;

/// How bulk work stands back from routine work: its nice value and, when set, the CPUs it may
/// run on. A lower priority only decides who runs first on a busy core; CPUs of its own keep
/// bulk work off the others altogether, so routine calls find a free core when they wake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Priority {
    /// Nice value, clamped to 0..=19; 0 keeps the caller's.
    pub nice: i32,
    /// The CPUs bulk work may use; `None`, every CPU the process may use.
    pub cpus: Option<Cpus>,
}

impl Priority {
    /// Nice value `nice` on every CPU.
    pub fn nice(nice: i32) -> Self {
        Self { nice, cpus: None }
    }
}

/// A set of CPUs, written as Linux writes them (`taskset -c`, cpusets): numbers and ranges
/// separated by commas, as in `1` or `0,2-3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpus(Vec<usize>);

impl Cpus {
    /// The CPUs, in ascending order.
    pub fn list(&self) -> &[usize] {
        &self.0
    }

    fn set(&self) -> rustix::thread::CpuSet {
        let mut set = rustix::thread::CpuSet::new();
        for &cpu in &self.0 {
            set.set(cpu);
        }
        set
    }

    /// Fails, naming the CPU, unless this process may run on every CPU of the set (each
    /// online, and inside the process's own affinity, as a container's cpuset limits it).
    pub fn check_available(&self) -> std::io::Result<()> {
        let allowed = rustix::thread::sched_getaffinity(None)?;
        match self.0.iter().find(|&&cpu| !allowed.is_set(cpu)) {
            None => Ok(()),
            Some(cpu) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("CPU {cpu} is not available to this process (bulk work's CPUs: {self})"),
            )),
        }
    }
}

impl FromStr for Cpus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let max = rustix::thread::CpuSet::MAX_CPU;
        let cpu = |n: &str| -> Result<usize, String> {
            let n: usize = n.trim().parse().map_err(|_| {
                format!("`{n}` is not a CPU number (CPUs are listed as in `1` or `0,2-3`)")
            })?;
            if n < max {
                Ok(n)
            } else {
                Err(format!(
                    "CPU {n} is past the largest this system can name ({})",
                    max - 1
                ))
            }
        };
        let mut cpus = Vec::new();
        for part in s.split(',') {
            match part.split_once('-') {
                Some((first, last)) => {
                    let (first, last) = (cpu(first)?, cpu(last)?);
                    if first > last {
                        return Err(format!("the CPU range `{}` runs backwards", part.trim()));
                    }
                    cpus.extend(first..=last);
                }
                None => cpus.push(cpu(part)?),
            }
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(Self(cpus))
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

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
    /// Starts `threads` worker threads named `name`, each at `priority`'s nice value (0 keeps
    /// the caller's priority; values are clamped to 0..=19) and, when it names CPUs, on those
    /// CPUs alone. Fails when it names a CPU this process may not use.
    pub fn start(name: &str, threads: usize, priority: &Priority) -> std::io::Result<Self> {
        let nice = priority.nice.clamp(0, 19);
        let cpus = match &priority.cpus {
            Some(cpus) => {
                cpus.check_available()?;
                Some(cpus.set())
            }
            None => None,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
            .on_thread_start(move || {
                lower_this_thread(nice);
                if let Some(set) = &cpus {
                    keep_this_thread_on(set);
                }
            })
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

/// Keeps the calling thread (on Linux, affinity is per thread) on the CPUs of `set`. A failure
/// is logged and otherwise ignored: the work still runs, on any CPU.
fn keep_this_thread_on(set: &rustix::thread::CpuSet) {
    if let Err(e) = rustix::thread::sched_setaffinity(None, set) {
        tracing::warn!(error = %e, "could not keep a background thread on its CPUs");
    }
}

/// Sets the nice value of process `pid` on this machine to `priority`'s (0–19) and, when it
/// names CPUs, keeps the process on them, if its command is
/// `command` (so that a process number learnt from elsewhere never touches an unrelated local
/// process). Answers whether it was changed; an error when the OS refused (lowering another
/// user's process needs the right to).
///
/// Where the kernel groups processes by session for scheduling (Linux's autogroup, on by
/// default on desktops and many servers), a process's nice value only ranks it against the
/// other processes of its session, and each session gets an equal share of the CPU. A process
/// that leads its own session (a Postgres backend: each calls `setsid`) then keeps a full
/// share whatever its nice value, so its session's nice value is lowered too.
pub fn lower_local_process(pid: i32, command: &str, priority: &Priority) -> std::io::Result<bool> {
    let raw = pid;
    let matches = runs_command(raw.into(), command);
    let Some(pid) = rustix::process::Pid::from_raw(raw).filter(|_| matches) else {
        return Ok(false);
    };
    let nice = priority.nice.clamp(0, 19);
    let mut changed = false;
    if rustix::process::getpriority_process(Some(pid))? < nice {
        rustix::process::setpriority_process(Some(pid), nice)?;
        changed = true;
    }
    if session_of(raw) == Some(raw) && session_nice(raw).is_some_and(|n| n < nice) {
        std::fs::write(format!("/proc/{raw}/autogroup"), nice.to_string())?;
        changed = true;
    }
    if let Some(cpus) = &priority.cpus {
        if listed(&rustix::thread::sched_getaffinity(Some(pid))?) != cpus.0 {
            rustix::thread::sched_setaffinity(Some(pid), &cpus.set())?;
            changed = true;
        }
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
    session_in_stat(&read_stat(pid)?)
}

/// The session field of a `/proc/PID/stat` line; `None` for 0 (a leader outside this PID
/// namespace).
fn session_in_stat(stat: &str) -> Option<i32> {
    field_in_stat(stat, 3)
        .and_then(|s| i32::try_from(s).ok())
        .filter(|&s| s > 0)
}

/// Numeric field `index` of `/proc/PID/stat` (Linux), counted from the field after the
/// command (0: state, 3: session, 16: nice); `None` when the process is gone or the field is
/// not a number.
pub fn stat_field(pid: i32, index: usize) -> Option<i64> {
    field_in_stat(&read_stat(pid)?, index)
}

fn read_stat(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// Field `index` of a `/proc/PID/stat` line after the command, which is in parentheses and may
/// itself hold spaces and parentheses, so fields are counted from the last `)`:
/// "42 (a b) S 1 42 42 …", field 3 → 42.
fn field_in_stat(stat: &str, index: usize) -> Option<i64> {
    let after_command = &stat[stat.rfind(')')? + 1..];
    after_command.split_whitespace().nth(index)?.parse().ok()
}

/// The CPUs process `pid` (`None`: the calling thread) may run on, for tests and diagnostics.
pub fn cpus_of(pid: Option<i32>) -> std::io::Result<Vec<usize>> {
    let pid = pid.and_then(rustix::process::Pid::from_raw);
    Ok(listed(&rustix::thread::sched_getaffinity(pid)?))
}

fn listed(set: &rustix::thread::CpuSet) -> Vec<usize> {
    (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&cpu| set.is_set(cpu))
        .collect()
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
        let bg = Background::start("bg-test", 1, &Priority::nice(before + 7)).unwrap();
        let inside = bg.run(async { this_thread_nice().unwrap() }).await;
        assert_eq!(inside, (before + 7).clamp(0, 19).max(before));
        assert_eq!(
            this_thread_nice().unwrap(),
            before,
            "the caller's priority is untouched"
        );
        let unchanged = Background::start("bg-test-0", 1, &Priority::nice(0)).unwrap();
        assert_eq!(
            unchanged.run(async { this_thread_nice().unwrap() }).await,
            before
        );
    }

    #[test]
    fn cpu_lists_read_as_linux_writes_them_and_say_what_is_wrong() {
        let cpus = |s: &str| s.parse::<Cpus>().map(|c| c.list().to_vec());
        assert_eq!(cpus("1"), Ok(vec![1]));
        assert_eq!(cpus("0,2-3"), Ok(vec![0, 2, 3]));
        assert_eq!(cpus(" 3 , 1-2,2"), Ok(vec![1, 2, 3]), "sorted, each once");
        assert_eq!("0,2-3".parse::<Cpus>().unwrap().to_string(), "0,2,3");
        for (bad, says) in [
            ("", "is not a CPU number"),
            ("one", "is not a CPU number"),
            ("1,", "is not a CPU number"),
            ("-1", "is not a CPU number"),
            ("3-1", "runs backwards"),
            ("100000", "past the largest"),
        ] {
            let e = bad.parse::<Cpus>().unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[tokio::test]
    async fn background_work_runs_on_its_cpus_alone_and_the_caller_keeps_its_own() {
        let mine = cpus_of(None).unwrap();
        let last = *mine.last().unwrap();
        let priority = Priority {
            nice: 0,
            cpus: Some(last.to_string().parse().unwrap()),
        };
        let bg = Background::start("bg-cpus", 1, &priority).unwrap();
        assert_eq!(bg.run(async { cpus_of(None).unwrap() }).await, vec![last]);
        assert_eq!(
            cpus_of(None).unwrap(),
            mine,
            "the caller's CPUs are untouched"
        );
    }

    #[test]
    fn a_cpu_this_process_may_not_use_is_refused_at_start() {
        let past = rustix::thread::CpuSet::MAX_CPU - 1;
        let priority = Priority {
            nice: 0,
            cpus: Some(past.to_string().parse().unwrap()),
        };
        let e = Background::start("bg-nocpu", 1, &priority).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .contains(&format!("CPU {past} is not available")),
            "{e}"
        );
    }

    #[test]
    fn a_process_named_is_kept_on_the_cpus_given() {
        let (mut child, pid) = sleeping_child(&["sleep", "30"]);
        let first = cpus_of(None).unwrap()[0];
        let priority = Priority {
            nice: 0,
            cpus: Some(first.to_string().parse().unwrap()),
        };
        let before = cpus_of(Some(pid)).unwrap();
        assert!(!lower_local_process(pid, "postgres", &priority).unwrap());
        assert_eq!(
            cpus_of(Some(pid)).unwrap(),
            before,
            "not a postgres process"
        );
        assert_eq!(
            lower_local_process(pid, "sleep", &priority).unwrap(),
            before != vec![first]
        );
        assert_eq!(cpus_of(Some(pid)).unwrap(), vec![first]);
        assert!(
            !lower_local_process(pid, "sleep", &priority).unwrap(),
            "already there"
        );
        child.kill().unwrap();
        child.wait().unwrap();
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
            !lower_local_process(pid, "postgres", &Priority::nice(12)).unwrap(),
            "not a postgres process"
        );
        assert_eq!(nice_of(pid), before);
        assert_eq!(
            lower_local_process(pid, "sleep", &Priority::nice(12)).unwrap(),
            before < 12
        );
        assert_eq!(nice_of(pid), 12.max(before));
        assert!(
            !lower_local_process(pid, "sleep", &Priority::nice(5)).unwrap(),
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
        assert!(lower_local_process(pid, "sleep", &Priority::nice(13)).unwrap());
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
        assert_eq!(
            field_in_stat("42 (post) gres: x) S 1 40 41 0 -1 4194304", 0),
            None,
            "the state is not a number"
        );
        assert_eq!(
            field_in_stat("42 (post) gres: x) S 1 40 41 0 -1 4194304", 5),
            Some(-1)
        );

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
        let bg = Background::start("bg-panic", 1, &Priority::default()).unwrap();
        let caught = tokio::spawn(async move { bg.run(async { panic!("boom") }).await }).await;
        assert!(caught.unwrap_err().is_panic());
    }
}
