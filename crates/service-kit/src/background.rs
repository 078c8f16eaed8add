//! A runtime of its own for bulk work.
//!
//! Bulk batches and routine calls share the service. Work spawned on a [`Background`] runtime
//! runs on threads of its own, with as many of them as bulk work may use at once, so a burst of
//! batches never fills the worker threads that routine requests are served on.
//!
//! Anything that does I/O for bulk work (database pools, HTTP clients) should be created and
//! used from the background runtime too: a socket is driven by the runtime it was first used
//! on, and a routine call must never wait for a bulk thread to notice its reply.

use std::future::Future;
use std::sync::Arc;

/// A tokio runtime of its own for bulk work. Cheap to clone; the threads stop when the last
/// clone is dropped (without waiting for what still runs on them).
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
    /// Starts `threads` worker threads named `name`.
    pub fn start(name: &str, threads: usize) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn background_work_runs_on_the_runtime_s_own_threads() {
        let bg = Background::start("bg-test", 1).unwrap();
        let name = bg
            .run(async { std::thread::current().name().map(str::to_string) })
            .await;
        assert_eq!(name.as_deref(), Some("bg-test"));
    }

    #[tokio::test]
    async fn a_panic_in_background_work_reaches_the_caller() {
        let bg = Background::start("bg-panic", 1).unwrap();
        let caught = tokio::spawn(async move { bg.run(async { panic!("boom") }).await }).await;
        assert!(caught.unwrap_err().is_panic());
    }
}
