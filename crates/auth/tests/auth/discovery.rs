//! Configured by issuer: the key set is found through the issuer's discovery document, whose
//! `issuer` must be the configured one exactly; an IdP on a private CA is reached with the CA
//! file (made with openssl here) and not without it.

use crate::helpers::*;
use auth::{AuthError, JwtArgs, Verifier};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An IdP on 127.0.0.1:0 serving a discovery document (whose `issuer` is `said`, or its own
/// URL) and a key set; counts the key set's fetches.
struct Idp {
    issuer: String,
    jwks: Arc<Mutex<Value>>,
    jwks_hits: Arc<AtomicUsize>,
}

async fn idp(said: Option<&str>, keys: Value) -> Idp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let said = said.map_or_else(|| issuer.clone(), str::to_owned);
    let jwks = Arc::new(Mutex::new(keys));
    let jwks_hits = Arc::new(AtomicUsize::new(0));
    let doc = json!({
        "issuer": said,
        "jwks_uri": format!("{issuer}/keys"),
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
    });
    let (j, h) = (jwks.clone(), jwks_hits.clone());
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { Json(doc) }),
        )
        .route(
            "/keys",
            get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                let body = j.lock().unwrap().clone();
                async move { Json(body) }
            }),
        );
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(120), axum::serve(listener, app)).await;
    });
    Idp {
        issuer,
        jwks,
        jwks_hits,
    }
}

fn claims_for(issuer: &str) -> Value {
    claims_with(&json!({ "iss": issuer }))
}

#[tokio::test]
async fn a_verifier_configured_by_issuer_finds_the_keys_through_discovery() {
    let key = EcKey::new("k1");
    let idp = idp(None, jwks(&[key.jwk()])).await;
    let verifier = Verifier::new(JwtArgs::discovered(&idp.issuer, AUDIENCE)).unwrap();
    let caller = verifier
        .verify(&key.sign(&claims_for(&idp.issuer)))
        .await
        .expect("verified with the discovered key set");
    assert_eq!(caller.subject.as_str(), "alice");
    assert_eq!(idp.jwks_hits.load(Ordering::SeqCst), 1);
    // The issuer is what `iss` is checked against.
    let msg = refusal(&verifier, &key.sign(&claims())).await;
    assert!(msg.contains("issuer"), "{msg}");
}

#[tokio::test]
async fn the_start_up_warm_up_loads_the_keys_before_any_request() {
    let key = EcKey::new("k1");
    let idp = idp(None, jwks(&[key.jwk()])).await;
    let verifier = Verifier::new(JwtArgs::discovered(&idp.issuer, AUDIENCE)).unwrap();
    tokio::time::timeout(Duration::from_secs(10), verifier.spawn_warm_up())
        .await
        .expect("the warm-up ends once the keys are in")
        .unwrap();
    assert_eq!(idp.jwks_hits.load(Ordering::SeqCst), 1);
    verifier
        .verify(&key.sign(&claims_for(&idp.issuer)))
        .await
        .unwrap();
    assert_eq!(
        idp.jwks_hits.load(Ordering::SeqCst),
        1,
        "the request used the warmed cache"
    );
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused_and_its_keys_never_fetched() {
    let key = EcKey::new("k1");
    let idp = idp(Some("https://evil.example"), jwks(&[key.jwk()])).await;
    let verifier = Verifier::new(JwtArgs::discovered(&idp.issuer, AUDIENCE)).unwrap();
    let err = verifier
        .verify(&key.sign(&claims_for(&idp.issuer)))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
    assert_eq!(err.to_problem().status, 503);
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("not the configured issuer"), "{chain}");
    assert_eq!(idp.jwks_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_removed_key_stops_verifying_once_a_new_kid_has_made_us_refetch() {
    let old = EcKey::new("old");
    let new = EcKey::new("new");
    let idp = idp(None, jwks(&[old.jwk()])).await;
    let mut args = JwtArgs::discovered(&idp.issuer, AUDIENCE);
    args.jwks_min_refetch_secs = 1;
    let verifier = Verifier::new(args).unwrap();
    let c = claims_for(&idp.issuer);
    verifier.verify(&old.sign(&c)).await.unwrap();
    *idp.jwks.lock().unwrap() = jwks(&[new.jwk()]);
    // Within the rate limit, the unknown kid is refused without a fetch…
    refusal(&verifier, &new.sign(&c)).await;
    assert_eq!(idp.jwks_hits.load(Ordering::SeqCst), 1);
    // …and once it has passed, the new kid is fetched and the old key is gone.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verifier.verify(&new.sign(&c)).await.unwrap();
    assert_eq!(idp.jwks_hits.load(Ordering::SeqCst), 2);
    let msg = refusal(&verifier, &old.sign(&c)).await;
    assert!(msg.contains("does not know"), "{msg}");
}

#[test]
fn the_issuer_settings_must_agree_and_the_refetch_limit_cannot_be_turned_off() {
    let mut both = JwtArgs::discovered("https://a.example", AUDIENCE);
    both.jwt_issuer = Some("https://b.example".into());
    let err = Verifier::new(&both).unwrap_err().to_string();
    assert!(err.contains("disagree"), "{err}");
    both.jwt_issuer = Some("https://a.example".into());
    Verifier::new(&both).expect("equal is fine");

    let mut none = JwtArgs::discovered("https://a.example", AUDIENCE);
    none.oidc_issuer = None;
    let err = Verifier::new(&none).unwrap_err().to_string();
    assert!(err.contains("HUSH_OIDC_ISSUER"), "{err}");

    let mut zero = JwtArgs::discovered("https://a.example", AUDIENCE);
    zero.jwks_min_refetch_secs = 0;
    assert!(Verifier::new(&zero).is_err());

    let not_url = JwtArgs::discovered("idp.example", AUDIENCE);
    assert!(Verifier::new(&not_url).is_err(), "discovery needs a URL");
}

#[test]
fn the_dev_issuer_is_refused_by_its_new_name_too() {
    let args = JwtArgs::discovered(auth::DEV_ISSUER, AUDIENCE);
    let err = Verifier::new(&args).unwrap_err().to_string();
    assert!(err.contains("dev mode"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// HTTPS on a private CA: openssl makes the CA and the certificate
// (`service_kit::testing::test_certs`), and serves the IdP's two documents (`s_server -WWW`
// serves files from its working directory).

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn an_idp_on_a_private_ca_is_trusted_with_the_ca_file_and_not_without() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = service_kit::testing::test_certs(d, "idp", "IP:127.0.0.1");

    // A free port for s_server (it cannot report one it chose).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("https://127.0.0.1:{port}");
    let key = EcKey::new("tls-key");
    let www = d.join("www");
    std::fs::create_dir_all(www.join(".well-known")).unwrap();
    std::fs::write(
        www.join(".well-known/openid-configuration"),
        json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/keys.json") }).to_string(),
    )
    .unwrap();
    std::fs::write(www.join("keys.json"), jwks(&[key.jwk()]).to_string()).unwrap();
    let _server = Killed(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&certs.cert)
            .arg("-key")
            .arg(&certs.key)
            .current_dir(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "s_server did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let token = key.sign(&claims_for(&issuer));
    let untrusting = Verifier::new(JwtArgs::discovered(&issuer, AUDIENCE)).unwrap();
    let err = untrusting.verify(&token).await.unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("discovery document"), "{chain}");

    let mut args = JwtArgs::discovered(&issuer, AUDIENCE);
    args.oidc_ca_file = Some(certs.ca.clone());
    let trusting = Verifier::new(args).unwrap();
    trusting
        .verify(&token)
        .await
        .expect("discovery and keys over HTTPS, trusted through the CA file");
}
