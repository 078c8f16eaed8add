//! Tracing set-up shared by all services and `hush up`. Plain text by default (coloured only on a
//! terminal, and never with `NO_COLOR` set); JSON when `HUSH_LOG_FORMAT=json`. Filter with `RUST_LOG` (default `info`).
//! With `HUSH_OTLP_ENDPOINT` set, spans are also exported as OpenTelemetry traces (OTLP over
//! HTTP, protobuf) to that collector.
//!
//! INV-6: spans are named after the route template (`MatchedPath`), never the raw URI, and no
//! layer here records a caller's identity; handlers on membership paths must not either. The
//! trace export carries spans only, never log events: a span holds the method, the route
//! template and the request id, and whatever log line a request writes stays in the log.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::OnceLock;
use tracing_subscriber::{filter, fmt, prelude::*, EnvFilter, Layer};

/// The variable that turns the trace export on: the collector's OTLP/HTTP base URL
/// (`http://otel-collector:4318`; `/v1/traces` is added unless the URL already ends with it).
pub const OTLP_ENDPOINT: &str = "HUSH_OTLP_ENDPOINT";

/// How long one export to the collector may take.
const OTLP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's trace exporter, kept so [`flush`] can reach it.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber once; later calls are no-ops (tests and `hush up` may call it
/// more than once). Fails only when `HUSH_OTLP_ENDPOINT` is set and not a usable URL.
pub fn init() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("HUSH_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let otlp = match std::env::var(OTLP_ENDPOINT) {
        Ok(endpoint) if !endpoint.trim().is_empty() => {
            let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "hush".into());
            let (layer, provider) = otlp_layer(endpoint.trim(), &service)?;
            let _ = PROVIDER.set(provider);
            Some(layer)
        }
        _ => None,
    };
    let registry = tracing_subscriber::registry().with(otlp).with(filter);
    let _ = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init()
    } else {
        // Colour only when a person reads the log on a terminal: written to a file or a pipe,
        // escape codes are noise (and `NO_COLOR` turns them off everywhere).
        let colour = std::io::IsTerminal::is_terminal(&std::io::stdout())
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        registry.with(fmt::layer().with_ansi(colour)).try_init()
    };
    Ok(())
}

/// Sends the spans still waiting to the collector (at shutdown; they go every 5 s otherwise).
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.force_flush() {
            tracing::warn!(error = %e, "flushing traces to the collector failed");
        }
    }
}

/// The traces URL for a collector `endpoint`.
fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// A layer that exports spans (only spans: events are filtered out, see the module docs) as
/// `service` to the OTLP/HTTP collector at `endpoint`, in batches from a thread of its own, and
/// its provider (to flush). Spans carry the `info` level and above, whatever `RUST_LOG` says.
pub fn otlp_layer<S>(
    endpoint: &str,
    service: &str,
) -> anyhow::Result<(Box<dyn Layer<S> + Send + Sync>, SdkTracerProvider)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let url = traces_url(endpoint);
    anyhow::ensure!(
        url.starts_with("http://") || url.starts_with("https://"),
        "{OTLP_ENDPOINT} must be an http(s) URL, not {endpoint:?}"
    );
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(OTLP_TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("setting up the trace export ({OTLP_ENDPOINT}): {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .build();
    let tracer = provider.tracer("hush");
    let spans_only =
        filter::filter_fn(|meta| meta.is_span() && *meta.level() <= tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_filter(spans_only);
    Ok((Box::new(layer), provider))
}

/// For tests: output captured by the test harness, filtered by `RUST_LOG` (default `warn`).
pub fn init_for_test() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_test_writer())
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::Registry;

    #[test]
    fn the_traces_url_is_the_base_plus_v1_traces_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn a_bad_endpoint_is_refused() {
        assert!(otlp_layer::<Registry>("collector:4318", "t").is_err());
    }

    /// A loopback OTLP receiver gets the request span with its route template and request id,
    /// and neither the raw path (a group id) nor any log event written inside the span.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_reach_a_collector_with_the_route_template_and_nothing_else() {
        let got: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
        let seen = got.clone();
        let receiver = axum::Router::new().route(
            "/v1/traces",
            post(move |headers: http::HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    let ctype = headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.lock().unwrap().push((ctype, body));
                    ""
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, receiver).await });

        let (layer, provider) =
            otlp_layer::<Registry>(&format!("http://{addr}"), "test-svc").unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        let group = uuid::Uuid::new_v4().to_string();
        let app = crate::with_common_layers(
            axum::Router::new().route(
                "/groups/{id}/join",
                post(
                    |axum::extract::Path(id): axum::extract::Path<String>| async move {
                        tracing::warn!(group_id = %id, "an event inside the span");
                        "ok"
                    },
                ),
            ),
            &crate::HttpArgs::default(),
        );
        let dispatch = tracing::Dispatch::new(subscriber);
        {
            use tower::ServiceExt as _;
            let _guard = tracing::dispatcher::set_default(&dispatch);
            let res = app
                .oneshot(
                    http::Request::post(format!("/groups/{group}/join"))
                        .header("x-request-id", "trace-req-1")
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(res.status(), http::StatusCode::OK);
        }
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .unwrap()
            .unwrap();
        let got = got.lock().unwrap();
        assert!(!got.is_empty(), "the collector got nothing");
        let (ctype, body) = &got[0];
        assert_eq!(ctype, "application/x-protobuf");
        let holds = |needle: &str| body.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(
            holds("/groups/{id}/join"),
            "the route template is on the span"
        );
        assert!(holds("trace-req-1"), "the request id is on the span");
        assert!(holds("test-svc"), "the service name is on the resource");
        assert!(!holds(&group), "the group id reached the collector");
        assert!(
            !holds("an event inside the span"),
            "a log event reached the collector"
        );
    }
}
