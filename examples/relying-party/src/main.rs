//! A minimal relying party: an app that protects one page with a Hush access decision.
//!
//! `GET /report` shows the page to a person Hush says may use the resource `--resource`, and
//! refuses everyone else with 403. The person proves who they are in one of two ways:
//!
//! - `Authorization: Bearer <their access token>`: the app exchanges it at Hush
//!   (`POST /membership/v1/decisions/token`, RFC 8693) with its own credential and gets a
//!   signed decision for that person;
//! - `X-Hush-Assertion: <assertion>`: an assertion the person fetched from Hush for this app
//!   (`POST /membership/v1/me/assertions`); the app checks it offline.
//!
//! Either way the app checks the signature against Hush's JWKS (fetched once, and again when a
//! decision names a key it does not know), the issuer, its own audience and the expiry, then
//! looks for its resource in the signed `resources`. It never learns who else may use it.
//!
//! Run: `hush-sample-rp --hush-url http://127.0.0.1:8081 --client-id <id>
//! --client-secret-file secret.txt --audience https://reports.example --resource report`.

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to run the sample app.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hush-sample-rp",
    about = "A page protected by a Hush access decision."
)]
struct Config {
    /// Where to listen.
    #[arg(long, env = "RP_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// membership-api's base URL.
    #[arg(long, env = "RP_HUSH_URL")]
    hush_url: String,
    /// This app's id, as Hush's operator registered it.
    #[arg(long, env = "RP_CLIENT_ID")]
    client_id: String,
    /// A file holding this app's credential (shown once when it was registered).
    #[arg(long, env = "RP_CLIENT_SECRET_FILE")]
    client_secret_file: std::path::PathBuf,
    /// This app's audience, as registered.
    #[arg(long, env = "RP_AUDIENCE")]
    audience: String,
    /// The resource the page needs.
    #[arg(long, env = "RP_RESOURCE", default_value = "report")]
    resource: String,
    /// The issuer Hush signs decisions as (`HUSH_DECISION_ISSUER`).
    #[arg(long, env = "RP_ISSUER", default_value = "urn:hush:decisions")]
    issuer: String,
}

struct App {
    config: Config,
    secret: String,
    http: reqwest::Client,
    jwks: Mutex<JwkSet>,
}

/// The claims the page looks at.
#[derive(Debug, Deserialize)]
struct Decision {
    sub: String,
    resources: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ExchangeAnswer {
    access_token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let secret = std::fs::read_to_string(&config.client_secret_file)
        .context("reading the client secret file")?
        .trim()
        .to_owned();
    let app = Arc::new(App {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?,
        secret,
        jwks: Mutex::new(JwkSet { keys: Vec::new() }),
        config: config.clone(),
    });
    let router = Router::new()
        .route("/report", get(report))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    // One line a test (or a person) can wait for: where the app listens.
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}

/// The protected page.
async fn report(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match decide(&app, &headers).await {
        Ok(Some(who)) => Html(format!(
            "<h1>Quarterly report</h1><p>Shown to {who}, whom Hush lets use this report.</p>"
        ))
        .into_response(),
        Ok(None) => (
            StatusCode::FORBIDDEN,
            "Hush says you may not use this report.",
        )
            .into_response(),
        Err(e) => (StatusCode::UNAUTHORIZED, format!("no valid decision: {e}")).into_response(),
    }
}

/// The person, when Hush's signed decision lets them use the resource; `None` when it does
/// not; an error when there is no valid decision at all.
async fn decide(app: &App, headers: &HeaderMap) -> anyhow::Result<Option<String>> {
    let signed = if let Some(assertion) = headers.get("x-hush-assertion") {
        assertion.to_str()?.to_owned()
    } else {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .context("present your token (Authorization: Bearer) or a Hush assertion")?;
        exchange(app, token).await?
    };
    let decision = verify(app, &signed).await?;
    Ok(decision
        .resources
        .contains(&app.config.resource)
        .then_some(decision.sub))
}

/// RFC 8693 token exchange at Hush, with this app's credential.
async fn exchange(app: &App, person_token: &str) -> anyhow::Result<String> {
    let res = app
        .http
        .post(format!(
            "{}/membership/v1/decisions/token",
            app.config.hush_url.trim_end_matches('/')
        ))
        .basic_auth(&app.config.client_id, Some(&app.secret))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &subject_token={person_token}"
        ))
        .send()
        .await?;
    anyhow::ensure!(
        res.status().is_success(),
        "Hush refused the exchange ({})",
        res.status()
    );
    Ok(res.json::<ExchangeAnswer>().await?.access_token)
}

/// Checks the signature (Hush's JWKS), issuer, audience and expiry.
async fn verify(app: &App, signed: &str) -> anyhow::Result<Decision> {
    let kid = jsonwebtoken::decode_header(signed)?
        .kid
        .context("the decision names no key")?;
    let mut key = find_key(app, &kid);
    if key.is_none() {
        let jwks: JwkSet = app
            .http
            .get(format!(
                "{}/membership/v1/decisions/jwks.json",
                app.config.hush_url.trim_end_matches('/')
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        *app.jwks.lock().expect("not poisoned") = jwks;
        key = find_key(app, &kid);
    }
    let key = key.context("the decision is signed with a key Hush does not publish")?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[&app.config.audience]);
    validation.set_issuer(&[&app.config.issuer]);
    Ok(jsonwebtoken::decode::<Decision>(signed, &key, &validation)?.claims)
}

fn find_key(app: &App, kid: &str) -> Option<DecodingKey> {
    let jwks = app.jwks.lock().expect("not poisoned");
    jwks.find(kid)
        .and_then(|jwk| DecodingKey::from_jwk(jwk).ok())
}
