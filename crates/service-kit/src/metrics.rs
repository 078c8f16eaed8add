//! `/metrics`: what every service counts about itself, in the Prometheus (OpenMetrics) text
//! format, for whoever runs Hush to scrape.
//!
//! Every service gets the same request families, recorded by one layer ([`record`]):
//! `hush_http_requests_total` and `hush_http_request_duration_seconds`, by method, route
//! template and status. A service adds its own families (queues, jobs, retries) to the
//! [`MetricsBuilder`] before it serves, and may refresh gauges from its database at each
//! scrape ([`MetricsBuilder::on_scrape`]).
//!
//! INV-1 and INV-6 bind here as in the logs, and harder, because metrics are kept for months
//! and read by people who may not read the database: no label holds a group id, a person, an
//! address or anything a caller chose (the route is the template `MatchedPath` gives, never the
//! URI; an unmatched request is [`UNMATCHED`]; a method outside the standard ones is `other`),
//! and no value moves by the size of one group. `docs/architecture.md` lists every family and
//! why it is safe; the end-to-end test `metrics` scrapes every service after a flow and checks.
//!
//! The registry is the service's own, never a process-global one: `hush up` and the tests run
//! four services in one process, and each must show only its own.

use crate::{Problem, Redacted};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderMap, Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// The metric types services register, so they need not depend on the crate themselves.
pub use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};

/// Where metrics are served: outside every API prefix, like `/healthz`, so the edge (which
/// proxies `/control/…`, `/membership/…` and `/bulk/…` only) never serves it.
pub const PATH: &str = "/metrics";

/// The route label of a request no route matched (its path may hold anything, a group id
/// included, so it is never recorded).
pub const UNMATCHED: &str = "unmatched";

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the request latency histogram: 5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Who may read `/metrics` (`HUSH_METRICS_TOKEN_FILE`), beside the HTTP limits.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsArgs {
    /// A file holding the bearer token a scraper must send to read `/metrics` (one line).
    /// Unset: `/metrics` is open to whoever reaches the port (it holds counts only; keep the
    /// port off the public network all the same).
    #[arg(long = "metrics-token-file", env = "HUSH_METRICS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

impl MetricsArgs {
    /// Reads the token file, if one is set; an empty file is an error (it would let nobody in
    /// by accident, or everybody by a bug).
    pub fn load_token(&self) -> anyhow::Result<Option<Redacted>> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("reading the metrics token file {}: {e}", path.display())
        })?;
        let token = text.trim();
        anyhow::ensure!(
            !token.is_empty(),
            "the metrics token file {} is empty",
            path.display()
        );
        Ok(Some(Redacted::new(token)))
    }
}

/// The labels of a request: method, route template, status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

/// Something to do before each scrape (refresh gauges from a database).
type Refresh = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A service's metrics while it registers them; [`MetricsBuilder::build`] freezes them.
pub struct MetricsBuilder {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    refresh: Vec<Refresh>,
    token: Option<Redacted>,
}

impl Default for MetricsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl MetricsBuilder {
    /// A registry with the request families every service has.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hush");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by method, route template and status",
            latency.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            refresh: Vec::new(),
            token: None,
        }
    }

    /// Registers a family of the service's own as `hush_<name>` (counters get `_total`). The
    /// caller keeps a clone of `metric` to update it. Say in `help` what one unit is, and make
    /// sure of INV-1 (see the module docs).
    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// Runs `refresh` before every scrape (after the token is checked), e.g. to set gauges
    /// from the database. A refresh that fails should leave its gauges as they were and log.
    pub fn on_scrape<F, Fut>(&mut self, refresh: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.refresh.push(Arc::new(move || Box::pin(refresh())));
    }

    /// Scrapers must send `Authorization: Bearer <token>`.
    #[must_use]
    pub fn with_token(mut self, token: Option<Redacted>) -> Self {
        self.token = token;
        self
    }

    /// The finished metrics, cheap to clone.
    pub fn build(self) -> Metrics {
        Metrics {
            inner: Arc::new(Inner {
                token_digest: self
                    .token
                    .as_ref()
                    .map(|t| Sha256::digest(t.expose().as_bytes()).into()),
                registry: self.registry,
                requests: self.requests,
                latency: self.latency,
                refresh: self.refresh,
            }),
        }
    }
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    refresh: Vec<Refresh>,
    /// SHA-256 of the scrape token: comparing digests takes the same time however much of a
    /// guess is right.
    token_digest: Option<[u8; 32]>,
}

/// A service's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    /// The request families only, no token.
    fn default() -> Self {
        MetricsBuilder::new().build()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("token", &self.inner.token_digest.map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Counts one answered request.
    fn observe(&self, method: &Method, route: Option<&MatchedPath>, status: StatusCode, secs: f64) {
        let labels = RequestLabels {
            method: method_label(method),
            route: route.map_or(UNMATCHED, MatchedPath::as_str).to_owned(),
            status: status.as_u16(),
        };
        self.inner.latency.get_or_create(&labels).observe(secs);
        self.inner.requests.get_or_create(&labels).inc();
    }

    /// Whether `headers` carry the scrape token (always, when none is configured).
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(want) = self.inner.token_digest else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let got: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        got == want
    }

    /// The exposition text, after every refresh ran.
    pub async fn render(&self) -> String {
        for refresh in &self.inner.refresh {
            refresh().await;
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The `/metrics` route.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let metrics = self.clone();
        Router::new().route(
            PATH,
            get(move |headers: HeaderMap| {
                let metrics = metrics.clone();
                async move {
                    if !metrics.admits(&headers) {
                        return Problem::new(
                            StatusCode::UNAUTHORIZED,
                            "unauthorized",
                            "Unauthorized",
                        )
                        .with_detail("/metrics needs the scrape token (HUSH_METRICS_TOKEN_FILE)")
                        .into_response();
                    }
                    let body = metrics.render().await;
                    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
                }
            }),
        )
    }
}

/// The method as a label: the standard methods by name, anything else `other` (a client may
/// send any token as a method, and labels must stay few).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The layer that counts every request by method, route template and status (the status
/// the client saw, problem mapping and timeouts included: it sits outside them).
pub async fn record(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let res = next.run(req).await;
    metrics.observe(
        &method,
        route.as_ref(),
        res.status(),
        started.elapsed().as_secs_f64(),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

    fn app(metrics: &Metrics) -> Router {
        Router::new()
            .route("/groups/{id}/join", post(|| async { "ok" }))
            .merge(metrics.router())
            .layer(axum::middleware::from_fn_with_state(
                metrics.clone(),
                record,
            ))
    }

    async fn send(app: &Router, req: Request) -> Response {
        app.clone().oneshot(req).await.unwrap()
    }

    async fn text(res: Response) -> String {
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_never_by_path() {
        let metrics = Metrics::default();
        let app = app(&metrics);
        let id = uuid::Uuid::new_v4();
        let res = send(
            &app,
            Request::post(format!("/groups/{id}/join"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        let other = uuid::Uuid::new_v4();
        send(
            &app,
            Request::get(format!("/nope/{other}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        send(
            &app,
            Request::builder()
                .method("BREW")
                .uri("/groups/x/join")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        let res = send(&app, Request::get(PATH).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let body = text(res).await;
        assert!(
            body.contains(
                r#"hush_http_requests_total{method="POST",route="/groups/{id}/join",status="200"} 1"#
            ),
            "{body}"
        );
        assert!(body.contains(r#"route="unmatched",status="404""#), "{body}");
        assert!(body.contains(r#"method="other""#), "{body}");
        assert!(
            body.contains("hush_http_request_duration_seconds_bucket"),
            "{body}"
        );
        assert!(!body.contains(&id.to_string()) && !body.contains(&other.to_string()));
        assert!(!body.contains("BREW"));
    }

    #[tokio::test]
    async fn with_a_token_only_a_scraper_that_sends_it_reads() {
        let metrics = MetricsBuilder::new()
            .with_token(Some(Redacted::new("s3cret")))
            .build();
        let app = app(&metrics);
        let res = send(&app, Request::get(PATH).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            crate::problem::PROBLEM_JSON
        );
        let res = send(
            &app,
            Request::get(PATH)
                .header(header::AUTHORIZATION, "Bearer wrong")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let res = send(
            &app,
            Request::get(PATH)
                .header(header::AUTHORIZATION, "Bearer s3cret")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(text(res).await.contains("hush_http_requests_total"));
    }

    #[tokio::test]
    async fn scrapes_refresh_the_services_own_gauges_first() {
        use prometheus_client::metrics::gauge::Gauge;
        let mut b = MetricsBuilder::new();
        let g = Gauge::<i64>::default();
        b.register("things", "Things", g.clone());
        let n = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let (g2, n2) = (g.clone(), n.clone());
        b.on_scrape(move || {
            let (g, n) = (g2.clone(), n2.clone());
            async move {
                g.set(n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 7);
            }
        });
        let m = b.build();
        assert!(m.render().await.contains("hush_things 7"));
        assert!(m.render().await.contains("hush_things 8"));
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "\n").unwrap();
        let args = MetricsArgs {
            token_file: Some(path.clone()),
        };
        assert!(args.load_token().is_err());
        std::fs::write(&path, "tok\n").unwrap();
        assert_eq!(args.load_token().unwrap().unwrap().expose(), "tok");
        assert!(MetricsArgs::default().load_token().unwrap().is_none());
    }
}
