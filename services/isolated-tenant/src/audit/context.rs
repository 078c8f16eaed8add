//! Who is calling, for the events a request appends: the calling service (set by the
//! [`crate::Permit`] extractor once the service token verified) and the request id (the
//! `x-request-id` the tenant sees). Kept in a task-local around each request ([`layer`]), so the
//! store's methods need no extra parameters; outside a request (re-sealing from the command
//! line, tests calling the store) the service is `isolated-tenant` and there is no request id.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Mutex;

/// Longest request id kept in an event; longer ones are cut (they come from callers).
pub const MAX_REQUEST_ID: usize = 128;

/// The caller as far as the audit chain knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The calling service, once authenticated.
    pub service: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
}

impl Context {
    /// The service to record: the caller, or the tenant itself.
    pub fn service(&self) -> &str {
        self.service.as_deref().unwrap_or("isolated-tenant")
    }
}

tokio::task_local! {
    static CONTEXT: Mutex<Context>;
}

/// Middleware: runs the rest of the request with a fresh context holding its request id.
pub async fn layer(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(service_kit::http::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.chars()
                .filter(|c| c.is_ascii_graphic())
                .take(MAX_REQUEST_ID)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty());
    let context = Context {
        service: None,
        request_id,
    };
    CONTEXT.scope(Mutex::new(context), next.run(req)).await
}

/// Records the authenticated calling service (no effect outside a request).
pub fn set_service(service: &str) {
    let _ = CONTEXT.try_with(|c| {
        c.lock().unwrap_or_else(|p| p.into_inner()).service = Some(service.to_string());
    });
}

/// The current context (the default outside a request).
pub fn current() -> Context {
    CONTEXT
        .try_with(|c| c.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .unwrap_or_default()
}

/// Runs `fut` with `context`, for work started outside a request that should be recorded as a
/// given caller (tests).
pub async fn with<F: std::future::Future>(context: Context, fut: F) -> F::Output {
    CONTEXT.scope(Mutex::new(context), fut).await
}
