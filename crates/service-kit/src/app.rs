//! Putting a service's router together. Every service serves its API beside the same things —
//! its OpenAPI document, `/healthz` and `/readyz`, `/metrics`, the failure log — inside the
//! same layers, its requests counted by route template ([`crate::metrics`]);
//! assembling them here keeps that edge identical across services, so a service's `router`
//! only says what is its own: its routes, its document's path and the dependencies it needs.

use crate::failure::log_failures;
use crate::health::{self, Checks};
use crate::http::with_common_layers_and_own_limits;
use crate::metrics::{self, Metrics};
use crate::{openapi, HttpArgs};
use axum::middleware::{from_fn_with_state, map_response};
use axum::Router;

/// A whole service from its API (routes and state already joined): the API; its OpenAPI
/// document, served to anyone at `openapi_path`; `/healthz`, and `/readyz` asking each of
/// `checks` (see [`health::ping`]); `/metrics` from `metrics`, which counts every request; the
/// cause of every 5xx logged ([`log_failures`]); all in the common layers
/// ([`with_common_layers`](crate::with_common_layers)).
pub fn assemble(
    api: Router,
    openapi: utoipa::openapi::OpenApi,
    openapi_path: &str,
    checks: impl Into<Checks>,
    limits: &HttpArgs,
    metrics: &Metrics,
) -> Router {
    let api = api.merge(openapi::route(openapi_path, openapi));
    assemble_with_own_limits(api, Router::new(), checks, limits, metrics)
}

/// [`assemble`] for a service that serves its OpenAPI document itself (the tenant's needs a
/// service token, so it is one of its API's routes) and has routes with their own, explicit
/// body limit: `own_limits` gets every layer but the common body limit, as in
/// [`with_common_layers_and_own_limits`]. A service with a public document and such routes
/// merges [`openapi::route`] into `api`.
pub fn assemble_with_own_limits(
    api: Router,
    own_limits: Router,
    checks: impl Into<Checks>,
    limits: &HttpArgs,
    metrics: &Metrics,
) -> Router {
    let api = api
        .merge(health::router(checks))
        .merge(metrics.router())
        .layer(map_response(log_failures));
    let own_limits = own_limits.layer(map_response(log_failures));
    // Outermost, so the status counted is the one the client saw; the route template is known
    // here because `Router::layer` runs after routing (`MatchedPath`).
    with_common_layers_and_own_limits(api, own_limits, limits)
        .layer(from_fn_with_state(metrics.clone(), metrics::record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::with_cause;
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use http::{header, StatusCode};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tower::ServiceExt;

    fn limits() -> HttpArgs {
        HttpArgs {
            body_limit_bytes: 16,
            request_timeout_secs: 5,
            ..HttpArgs::default()
        }
    }

    fn doc() -> utoipa::openapi::OpenApi {
        utoipa::openapi::OpenApiBuilder::new()
            .info(utoipa::openapi::Info::new("test", "1"))
            .build()
    }

    async fn get_status(app: &Router, path: &str) -> StatusCode {
        let req = Request::get(path).body(Body::empty()).unwrap();
        app.clone().oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn the_api_its_document_and_health_are_served_in_the_common_layers() {
        let up = Arc::new(AtomicBool::new(true));
        let checks = vec![health::ping("thing", up.clone(), |up| async move {
            if up.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("down")
            }
        })];
        let api = Router::new().route(
            "/x/v1/fail",
            get(|| async {
                with_cause(
                    StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    "the cause",
                )
            }),
        );
        let metrics = Metrics::default();
        let app = assemble(
            api,
            doc(),
            "/x/v1/openapi.json",
            checks,
            &limits(),
            &metrics,
        );

        let res = app
            .clone()
            .oneshot(
                Request::get("/x/v1/openapi.json")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().contains_key("x-request-id"));
        assert_eq!(get_status(&app, "/healthz").await, StatusCode::OK);
        assert_eq!(get_status(&app, "/readyz").await, StatusCode::OK);
        up.store(false, Ordering::SeqCst);
        assert_eq!(
            get_status(&app, "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get_status(&app, "/x/v1/fail").await,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(get_status(&app, "/nope").await, StatusCode::NOT_FOUND);
        assert_eq!(get_status(&app, "/metrics").await, StatusCode::OK);
        let text = metrics.render().await;
        for counted in [
            r#"route="/x/v1/fail",status="500""#,
            r#"route="/readyz",status="503""#,
            r#"route="unmatched",status="404""#,
        ] {
            assert!(text.contains(counted), "{counted} in {text}");
        }
    }

    #[tokio::test]
    async fn routes_with_their_own_limit_keep_it_and_the_rest_keep_the_common_one() {
        let echo = || post(|body: String| async move { body });
        let api = Router::new().route("/echo", echo());
        let own = crate::explicit_body_limit(Router::new().route("/upload", echo()), 64);
        let app = assemble_with_own_limits(api, own, Vec::new(), &limits(), &Metrics::default());
        let send = |path: &str, n: usize| {
            let req = Request::post(path).body(Body::from("x".repeat(n))).unwrap();
            let app = app.clone();
            async move { app.oneshot(req).await.unwrap() }
        };
        assert_eq!(send("/upload", 64).await.status(), StatusCode::OK);
        let res: Response = send("/echo", 17).await;
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            crate::problem::PROBLEM_JSON
        );
        assert_eq!(get_status(&app, "/readyz").await, StatusCode::OK);
    }
}
