//! The HTTP layers every service wears, and serving with graceful shutdown.
//!
//! Order matters: the request id is set first so the trace span and any error carry it; the
//! problem mapper sits inside the trace layer so the logged status is the one the client saw.

use crate::Problem;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{header, HeaderName, HeaderValue, StatusCode};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// The header that carries the request id in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a caller; a longer one is replaced by a fresh one.
pub const MAX_REQUEST_ID: usize = 128;

/// The id of the request being handled (`x-request-id`): the caller's, when it is 1 to
/// [`MAX_REQUEST_ID`] characters of letters, digits and `-_.:@+/=`, else a fresh UUID (the
/// common layers replace any other before anything logs it). Handlers take it as an extractor
/// and hand it to the clients of other services, which forward it, so one id follows a request
/// from the public service into the tenant's audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// `id` if it is a request id we keep (see the type's docs).
    pub fn parse(id: &str) -> Option<Self> {
        let ok = (1..=MAX_REQUEST_ID).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:@+/=".contains(&b));
        if !ok {
            return None;
        }
        HeaderValue::from_str(id).ok().map(Self)
    }

    /// A fresh id (a UUID).
    pub fn fresh() -> Self {
        Self(
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a header value"),
        )
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("checked to be ASCII")
    }

    /// The id as a header value, to forward.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    /// The request's id; a fresh one outside the common layers (unit tests of a router).
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
            .unwrap_or_else(Self::fresh))
    }
}

/// Drops a caller's `x-request-id` that [`RequestId::parse`] refuses, so the next layer sets a
/// fresh one: a hostile id (control characters, a megabyte, a JSON fragment) never reaches a
/// log line, a trace or the tenant's audit chain.
async fn drop_bad_request_id(mut req: Request) -> Request {
    let bad = req
        .headers()
        .get(&REQUEST_ID)
        .is_some_and(|v| v.to_str().ok().and_then(RequestId::parse).is_none());
    if bad {
        req.headers_mut().remove(&REQUEST_ID);
    }
    req
}

/// Limits every service applies to every request. Each is documented in the README.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Largest accepted request body, in bytes; larger bodies get 413.
    #[arg(long, env = "HUSH_BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,
    /// Longest a request may take, in seconds, before it is answered 408.
    #[arg(long, env = "HUSH_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Who may read `/metrics`.
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

impl Default for HttpArgs {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout_secs: 30,
            metrics: crate::metrics::MetricsArgs::default(),
        }
    }
}

/// Wraps a service's router in the common layers: request id, tracing on the route template,
/// body limit, timeout, and problem+json for every error a layer or the router produces itself.
pub fn with_common_layers(router: Router, limits: &HttpArgs) -> Router {
    with_common_layers_and_own_limits(router, Router::new(), limits)
}

/// [`with_common_layers`] for a service with a few routes that carry their own, explicit body
/// limit (a bulk upload, a batch): `own_limits` gets every common layer but the common body
/// limit, so each of its routes must set its own (e.g. `DefaultBodyLimit::max(n)` for routes
/// that read their body with an extractor, plus `RequestBodyLimitLayer::new(n)` for routes that
/// stream it raw; [`explicit_body_limit`] applies both). Everything in `router` keeps the common
/// limit.
pub fn with_common_layers_and_own_limits(
    router: Router,
    own_limits: Router,
    limits: &HttpArgs,
) -> Router {
    router
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        .layer(RequestBodyLimitLayer::new(limits.body_limit_bytes))
        .merge(own_limits)
        .fallback(|| async { Problem::from_status(StatusCode::NOT_FOUND) })
        .layer(axum::middleware::map_response(problemize))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_secs),
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // INV-6: the route template, never the URI (which may hold a group id) and never
            // anything about the caller.
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched");
            let request_id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), route, request_id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_bad_request_id))
}

/// A route's own body limit of `bytes`, for the routes given to
/// [`with_common_layers_and_own_limits`]: larger bodies get 413 whether the handler reads the
/// body with an extractor or streams it.
pub fn explicit_body_limit<S>(router: Router<S>, bytes: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(DefaultBodyLimit::max(bytes))
        .layer(RequestBodyLimitLayer::new(bytes))
}

/// Turns any error response that is not already problem+json (404 from the router, 405, 408 from
/// the timeout, 413 from the body limit, 415, …) into one, keeping headers such as `Allow`.
async fn problemize(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    // problem+json, or the error body of SCIM (RFC 7644 §3.12), a protocol with its own.
    let is_problem = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(crate::problem::PROBLEM_JSON.as_bytes())
            || v.starts_with(b"application/scim+json")
    });
    if is_problem {
        return res;
    }
    let (mut parts, _) = res.into_parts();
    let mut fresh = Problem::from_status(status).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in fresh.headers() {
        parts.headers.insert(name, value.clone());
    }
    *fresh.headers_mut() = parts.headers;
    fresh
}

/// Serves `router` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

    fn app() -> Router {
        let r = Router::new().route("/echo", post(|body: String| async move { body }));
        with_common_layers(
            r,
            &HttpArgs {
                body_limit_bytes: 16,
                request_timeout_secs: 5,
                ..HttpArgs::default()
            },
        )
    }

    async fn send(req: Request) -> Response {
        app().oneshot(req).await.unwrap()
    }

    fn ctype(res: &Response) -> &str {
        res.headers()[header::CONTENT_TYPE].to_str().unwrap()
    }

    #[tokio::test]
    async fn unknown_routes_are_problem_json_404_with_a_request_id() {
        let res = send(Request::get("/nope").body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(ctype(&res), "application/problem+json");
        assert!(res.headers().contains_key(&REQUEST_ID));
    }

    #[tokio::test]
    async fn oversized_bodies_are_problem_json_413() {
        let res = send(
            Request::post("/echo")
                .body(Body::from("x".repeat(17)))
                .unwrap(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(ctype(&res), "application/problem+json");
        let ok = send(
            Request::post("/echo")
                .body(Body::from("x".repeat(16)))
                .unwrap(),
        )
        .await;
        assert_eq!(ok.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_route_with_its_own_limit_takes_larger_bodies_and_others_keep_the_common_one() {
        let common = Router::new().route("/echo", post(|body: String| async move { body }));
        let own = explicit_body_limit(
            Router::new().route("/upload", post(|body: String| async move { body })),
            64,
        );
        let app = with_common_layers_and_own_limits(
            common,
            own,
            &HttpArgs {
                body_limit_bytes: 16,
                request_timeout_secs: 5,
                ..HttpArgs::default()
            },
        );
        let post_to =
            |path: &str, n: usize| Request::post(path).body(Body::from("x".repeat(n))).unwrap();
        let res = app.clone().oneshot(post_to("/upload", 64)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = app.clone().oneshot(post_to("/upload", 65)).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(ctype(&res), "application/problem+json");
        let res = app.clone().oneshot(post_to("/echo", 17)).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let res = app
            .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn wrong_methods_keep_allow_and_become_problem_json() {
        let res = send(Request::get("/echo").body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(ctype(&res), "application/problem+json");
        assert!(res.headers().contains_key(header::ALLOW));
    }

    #[tokio::test]
    async fn a_given_request_id_is_echoed() {
        let res = send(
            Request::get("/nope")
                .header("x-request-id", "abc")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(res.headers()[&REQUEST_ID], "abc");
    }

    #[tokio::test]
    async fn a_hostile_request_id_is_replaced_by_a_fresh_one() {
        let long = "a".repeat(MAX_REQUEST_ID + 1);
        for hostile in ["a b", "x\"\"y", "{\"id\":1}", long.as_str(), "caf\u{e9}"] {
            let value = HeaderValue::from_bytes(hostile.as_bytes()).unwrap();
            let res = send(
                Request::get("/nope")
                    .header("x-request-id", value)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            let id = res.headers()[&REQUEST_ID].to_str().unwrap();
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{hostile:?} became {id}");
        }
        assert_eq!(
            RequestId::parse("req-1_a.b:c@d+e/f=").map(|r| r.to_string()),
            Some("req-1_a.b:c@d+e/f=".into())
        );
        assert!(RequestId::parse("").is_none());
        assert!(RequestId::parse(&"a".repeat(MAX_REQUEST_ID)).is_some());
    }
}
