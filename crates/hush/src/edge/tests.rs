//! The edge against a fake upstream that records what reaches it.

use super::*;
use axum::extract::OriginalUri;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// What the fake upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

struct Upstream {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

/// A service that records every request and answers by path: `/x/v1/problem` with a
/// problem+json 429 and `Retry-After`, `/x/v1/hop` with hop-by-hop headers, anything else
/// 200 with a JSON echo.
async fn upstream() -> Upstream {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    let app = Router::new().fallback(move |OriginalUri(uri): OriginalUri, req: Request| {
        let rec = rec.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec();
            rec.lock().unwrap().push(Seen {
                method: parts.method.to_string(),
                uri: uri.to_string(),
                headers: parts.headers.clone(),
                body: body.clone(),
            });
            match uri.path() {
                "/control/v1/problem" => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [
                        (header::CONTENT_TYPE, "application/problem+json"),
                        (header::RETRY_AFTER, "7"),
                    ],
                    r#"{"type":"urn:hush:problem:rate-limited","title":"Too many requests","status":429}"#,
                )
                    .into_response(),
                "/control/v1/hop" => (
                    [
                        (header::CONNECTION, "x-secret-hop"),
                        (HeaderName::from_static("x-secret-hop"), "1"),
                        (HeaderName::from_static("keep-alive"), "timeout=5"),
                        (HeaderName::from_static("x-kept"), "yes"),
                    ],
                    "hop",
                )
                    .into_response(),
                _ => Json(json!({ "path": uri.path(), "len": body.len() })).into_response(),
            }
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Upstream {
        url,
        seen,
        _stop: tx,
    }
}

fn config(up: &str) -> EdgeConfig {
    EdgeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        control_url: format!("{up}/"),
        membership_url: up.to_string(),
        bulk_url: up.to_string(),
        oidc: OidcArgs::default(),
        dev_mode: false,
        expose_dev_sign_in: false,
        data_dir: PathBuf::from("unused"),
        dev_audience: "hush".into(),
        body_limit_bytes: 1024,
        upstream_timeout_secs: 5,
        request_timeout_secs: 10,
    }
}

fn oidc(mut cfg: EdgeConfig) -> EdgeConfig {
    cfg.oidc = OidcArgs {
        oidc_issuer: Some("https://idp.corp.example".into()),
        oidc_ca_file: None,
        oidc_authorization_endpoint: Some("https://idp.corp.example/authorize".into()),
        oidc_token_endpoint: Some("https://login.corp.example:8443/token".into()),
        oidc_end_session_endpoint: None,
        oidc_client_id: Some("hush-web".into()),
        oidc_scope: "openid email".into(),
        oidc_audience: None,
        oidc_token: "access_token".into(),
    };
    cfg
}

/// The edge in front of `up`, served on a free port; its base URL.
async fn serve(edge: Edge) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        service_kit::serve(listener, router(edge), std::future::pending())
            .await
            .unwrap();
    });
    url
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The JSON body of a GET of `url`.
async fn json_at(url: String) -> Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

/// The text body of a GET of `url`.
async fn text_at(url: String) -> String {
    http().get(url).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn the_app_is_served_with_strict_security_headers_and_etags() {
    let up = upstream().await;
    let edge = serve(Edge::new(&oidc(config(&up.url)), None).unwrap()).await;

    let res = http().get(format!("{edge}/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("connect-src 'self' https://login.corp.example:8443;"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
    let html = res.text().await.unwrap();
    assert!(html.contains("<script type=\"module\" src=\"/js/app.js\">"));
    assert!(!html.contains("<script>"), "no inline script");

    let etag = h[header::ETAG].to_str().unwrap().to_string();
    let again = http()
        .get(format!("{edge}/"))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let js = http()
        .get(format!("{edge}/js/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(
        js.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    let css = http().get(format!("{edge}/app.css")).send().await.unwrap();
    assert_eq!(
        css.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );

    // The browser tests are not part of the app.
    for path in ["/tests/package.json", "/tests/run.sh", "/nope.js"] {
        let res = http().get(format!("{edge}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}

#[tokio::test]
async fn the_api_reference_is_served_from_vendored_files_under_the_same_csp() {
    let up = upstream().await;
    let edge = serve(Edge::new(&oidc(config(&up.url)), None).unwrap()).await;
    let app_csp = http()
        .get(format!("{edge}/"))
        .send()
        .await
        .unwrap()
        .headers()[header::CONTENT_SECURITY_POLICY]
        .clone();
    for path in ["/api", "/api/"] {
        let res = http().get(format!("{edge}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()[header::CONTENT_SECURITY_POLICY], app_csp);
        let html = res.text().await.unwrap();
        assert!(html.contains("<script src=\"/vendor/swagger-ui/swagger-ui-bundle.js\">"));
        assert!(
            !html.contains("<script>") && !html.contains("style="),
            "nothing inline"
        );
        assert!(!html.contains("https://"), "nothing from another origin");
    }
    for (path, kind) in [
        (
            "/vendor/swagger-ui/swagger-ui-bundle.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/vendor/swagger-ui/swagger-ui.css",
            "text/css; charset=utf-8",
        ),
        ("/api/icons.css", "text/css; charset=utf-8"),
        ("/api/reference.js", "text/javascript; charset=utf-8"),
    ] {
        let res = http().get(format!("{edge}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()[header::CONTENT_TYPE], kind, "{path}");
    }
    // Every icon the override stylesheet names is served, as an image from this origin.
    let icons = text_at(format!("{edge}/api/icons.css")).await;
    let named: Vec<&str> = icons
        .split("url(\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert!(!named.is_empty());
    for icon in named {
        assert!(icon.starts_with("/api/icons/"), "{icon}");
        let res = http().get(format!("{edge}{icon}")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{icon}");
        assert_eq!(res.headers()[header::CONTENT_TYPE], "image/svg+xml");
    }
}

#[tokio::test]
async fn config_tells_the_app_how_to_sign_in() {
    let up = upstream().await;
    let edge = serve(Edge::new(&oidc(config(&up.url)), None).unwrap()).await;
    let cfg: Value = json_at(format!("{edge}/config.json")).await;
    assert_eq!(cfg["auth"]["mode"], "oidc");
    assert_eq!(cfg["auth"]["client_id"], "hush-web");
    assert_eq!(
        cfg["auth"]["authorization_endpoint"],
        "https://idp.corp.example/authorize"
    );
    assert_eq!(cfg["auth"]["token"], "access_token");

    let dir = tempfile::tempdir().unwrap();
    let issuer = auth::DevIssuer::load_or_create(dir.path()).unwrap();
    let mut dev = config(&up.url);
    dev.dev_mode = true;
    let edge = serve(Edge::new(&dev, Some(issuer)).unwrap()).await;
    let cfg: Value = json_at(format!("{edge}/config.json")).await;
    assert_eq!(cfg["auth"], json!({ "mode": "dev" }));
}

fn discovered() -> auth::Discovery {
    auth::Discovery {
        issuer: "https://idp.corp.example/tenant".into(),
        jwks_uri: "https://idp.corp.example/keys".into(),
        authorization_endpoint: Some("https://idp.corp.example/oauth2/authorize".into()),
        token_endpoint: Some("https://tokens.corp.example:9443/oauth2/token".into()),
        end_session_endpoint: Some("https://idp.corp.example/oauth2/logout".into()),
    }
}

#[tokio::test]
async fn discovered_endpoints_reach_the_app_and_the_csp_names_the_token_endpoint_alone() {
    let up = upstream().await;
    let mut cfg = config(&up.url);
    cfg.oidc.oidc_issuer = Some("https://idp.corp.example/tenant".into());
    cfg.oidc.oidc_client_id = Some("hush-web".into());
    let edge = serve(Edge::with_discovery(&cfg, &discovered()).unwrap()).await;
    let res = http().get(format!("{edge}/")).send().await.unwrap();
    let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("connect-src 'self' https://tokens.corp.example:9443;"),
        "{csp}"
    );
    let app: Value = json_at(format!("{edge}/config.json")).await;
    assert_eq!(app["auth"]["issuer"], "https://idp.corp.example/tenant");
    assert_eq!(
        app["auth"]["authorization_endpoint"],
        "https://idp.corp.example/oauth2/authorize"
    );
    assert_eq!(
        app["auth"]["token_endpoint"],
        "https://tokens.corp.example:9443/oauth2/token"
    );
    assert_eq!(
        app["auth"]["end_session_endpoint"],
        "https://idp.corp.example/oauth2/logout"
    );

    // A setting overrides what discovery found; an IdP without end-session is fine.
    cfg.oidc.oidc_token_endpoint = Some("https://idp.corp.example/token".into());
    let mut without_logout = discovered();
    without_logout.end_session_endpoint = None;
    let edge = serve(Edge::with_discovery(&cfg, &without_logout).unwrap()).await;
    let app: Value = json_at(format!("{edge}/config.json")).await;
    assert_eq!(
        app["auth"]["token_endpoint"],
        "https://idp.corp.example/token"
    );
    assert_eq!(app["auth"]["end_session_endpoint"], Value::Null);
}

#[tokio::test]
async fn the_edge_refuses_to_start_on_a_discovery_document_for_another_issuer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = format!("http://{}", listener.local_addr().unwrap());
    let doc = json!({
        "issuer": "https://someone-else.example",
        "jwks_uri": format!("{idp}/keys"),
        "authorization_endpoint": format!("{idp}/auth"),
        "token_endpoint": format!("{idp}/token"),
    });
    let app = Router::new().route(
        "/.well-known/openid-configuration",
        get(move || async move { Json(doc) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut cfg = config("http://127.0.0.1:1");
    cfg.oidc.oidc_issuer = Some(idp);
    cfg.oidc.oidc_client_id = Some("hush-web".into());
    let err = tokio::time::timeout(Duration::from_secs(10), Edge::from_config(&cfg))
        .await
        .expect("a refused document ends start-up at once, without retrying")
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("not the configured issuer"),
        "{err:#}"
    );

    // Neither an issuer nor the endpoints: told what to set.
    let mut none = config("http://127.0.0.1:1");
    none.oidc.oidc_client_id = Some("hush-web".into());
    let err = Edge::from_config(&none).await.err().expect("refused");
    assert!(err.to_string().contains("HUSH_OIDC_ISSUER"), "{err}");
}

#[test]
fn outside_dev_mode_the_oidc_settings_are_required() {
    let err = Edge::new(&config("http://127.0.0.1:1"), None)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("HUSH_OIDC_"), "{err}");
    let mut bad = oidc(config("http://127.0.0.1:1"));
    bad.oidc.oidc_token_endpoint = Some("javascript:alert(1)".into());
    assert!(Edge::new(&bad, None).is_err());
    assert!(Edge::new(&oidc(config("ftp://x")), None).is_err());
}

#[tokio::test]
async fn dev_tokens_exist_only_in_dev_mode_and_verify() {
    let up = upstream().await;
    let prod = serve(Edge::new(&oidc(config(&up.url)), None).unwrap()).await;
    let res = http()
        .post(format!("{prod}/dev/token"))
        .json(&json!({ "sub": "alice", "kind": "member" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let dir = tempfile::tempdir().unwrap();
    let issuer = auth::DevIssuer::load_or_create(dir.path()).unwrap();
    let verifier = issuer.verifier("hush").unwrap();
    let mut cfg = config(&up.url);
    cfg.dev_mode = true;
    let dev = serve(Edge::new(&cfg, Some(issuer)).unwrap()).await;
    let res = http()
        .post(format!("{dev}/dev/token"))
        .json(&json!({ "sub": "gina", "email": "Gina@Partner.example", "kind": "guest", "roles": ["operator"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let body: Value = res.json().await.unwrap();
    let caller = verifier
        .verify(body["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(caller.subject.as_str(), "gina");
    assert_eq!(caller.kind, IdentityKind::Guest);
    assert_eq!(caller.email.unwrap().to_string(), "gina@partner.example");
    assert_eq!(caller.roles, vec!["operator".to_string()]);

    for bad in [
        json!({ "sub": "" }),
        json!({ "sub": "a", "kind": "robot" }),
        json!({ "sub": "a", "email": "not-an-address" }),
        json!({ "sub": "a", "roles": ["has space"] }),
    ] {
        let res = http()
            .post(format!("{dev}/dev/token"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{bad}");
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}

#[tokio::test]
async fn requests_are_forwarded_whole_and_answers_passed_through() {
    let up = upstream().await;
    let edge = serve(Edge::new(&oidc(config(&up.url)), None).unwrap()).await;

    let res = http()
        .post(format!("{edge}/membership/v1/groups/g1/join?x=1&y=2"))
        .header(header::AUTHORIZATION, "Bearer t0k")
        .header("x-request-id", "rid-1")
        .header(header::CONNECTION, "keep-alive, x-client-hop")
        .header("x-client-hop", "secret")
        .json(&json!({ "code": "abc" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "rid-1");
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["path"], "/membership/v1/groups/g1/join");
    let seen = up.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/membership/v1/groups/g1/join?x=1&y=2");
    assert_eq!(seen.headers[header::AUTHORIZATION], "Bearer t0k");
    assert!(!seen.headers.contains_key("x-client-hop"));
    assert_eq!(seen.body, br#"{"code":"abc"}"#);

    // Problems, their status and Retry-After arrive unchanged.
    let res = http()
        .get(format!("{edge}/control/v1/problem"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()[header::RETRY_AFTER], "7");
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(res.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "urn:hush:problem:rate-limited");

    // Hop-by-hop headers from the service stop at the edge.
    let res = http()
        .get(format!("{edge}/control/v1/hop"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-kept"], "yes");
    assert!(!res.headers().contains_key("x-secret-hop"));
    assert!(!res.headers().contains_key("keep-alive"));

    let res = http()
        .delete(format!("{edge}/bulk/v1/jobs/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.seen.lock().unwrap().last().unwrap().method, "DELETE");
}

#[tokio::test]
async fn the_tenant_and_dot_segments_are_never_reached() {
    let up = upstream().await;
    let edge = serve(Edge::new(&oidc(config(&up.url)), None).unwrap()).await;
    let before = up.seen.lock().unwrap().len();
    for (method, path, status) in [
        ("GET", "/tenant/v1/ping", 404),
        ("POST", "/tenant/v1/groups", 404),
        ("GET", "/control/../tenant/v1/ping", 400),
        ("GET", "/control/%2e%2e/tenant/v1/ping", 400),
        ("GET", "/control/v1%2f..%2ftenant", 400),
    ] {
        let answer = raw_request(
            &edge,
            &format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {answer}"
        );
    }
    assert_eq!(
        up.seen.lock().unwrap().len(),
        before,
        "nothing reached a service"
    );
}

#[tokio::test]
async fn a_silent_service_is_a_502_problem_and_big_bodies_413() {
    let up = upstream().await;
    let mut cfg = oidc(config(&up.url));
    // Nothing listens on port 1.
    cfg.control_url = "http://127.0.0.1:1".into();
    let edge = serve(Edge::new(&cfg, None).unwrap()).await;
    let res = http()
        .get(format!("{edge}/control/v1/groups"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["detail"], "control-api is not answering; retry later");

    let big = vec![b'x'; 2048];
    let res = http()
        .post(format!("{edge}/bulk/v1/jobs"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    // Streamed without a length: cut off at the limit all the same.
    let mut raw = String::from(
        "POST /bulk/v1/jobs HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    );
    for _ in 0..4 {
        raw.push_str(&format!("200\r\n{}\r\n", "y".repeat(512)));
    }
    raw.push_str("0\r\n\r\n");
    let answer = raw_request(&edge, &raw).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

/// Sends `raw` as it is (an HTTP client would normalise paths and choose its own framing) and
/// reads the whole answer.
async fn raw_request(base: &str, raw: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}
