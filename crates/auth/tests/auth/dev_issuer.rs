//! The dev issuer: a key kept across runs, a JWKS served over HTTP, and tokens that a dev-mode
//! verifier accepts end to end.

use auth::{DevClaims, DevIssuer, JwtArgs, Verifier, DEV_ISSUER, DEV_KEY_FILE, JWKS_PATH};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::IdentityKind;
use std::time::Duration;

fn alice() -> DevClaims {
    DevClaims {
        sub: "alice".into(),
        email: Some("alice@corp.example".into()),
        kind: IdentityKind::Agent,
        roles: vec!["operator".into()],
    }
}

#[test]
fn the_key_is_created_once_with_owner_only_permissions_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("not-yet-there");

    let first = DevIssuer::load_or_create(&data).unwrap();
    let pem = std::fs::read(data.join(DEV_KEY_FILE)).unwrap();
    let second = DevIssuer::load_or_create(&data).unwrap();

    assert_eq!(first.kid(), second.kid());
    assert_eq!(first.jwks(), second.jwks());
    assert_eq!(
        std::fs::read(data.join(DEV_KEY_FILE)).unwrap(),
        pem,
        "the file is not rewritten"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join(DEV_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let elsewhere = DevIssuer::load_or_create(&dir.path().join("other")).unwrap();
    assert_ne!(
        elsewhere.kid(),
        first.kid(),
        "the kid is derived from the key"
    );
}

#[test]
fn the_jwks_names_one_es256_signature_key() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = DevIssuer::load_or_create(dir.path()).unwrap();

    let jwks = issuer.jwks();

    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(
        (k["kty"].as_str(), k["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!(
        (k["alg"].as_str(), k["use"].as_str()),
        (Some("ES256"), Some("sig"))
    );
    assert_eq!(k["kid"].as_str(), Some(issuer.kid()));
    assert!(k.get("d").is_none(), "no private part");
}

#[test]
fn minted_tokens_carry_the_documented_claims() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = DevIssuer::load_or_create(dir.path()).unwrap();

    let token = issuer.mint(&alice(), "hush", Duration::from_secs(600));

    let payload = token.split('.').nth(1).unwrap();
    let c: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(c["iss"], DEV_ISSUER);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["email"], "alice@corp.example");
    assert_eq!(c["hush_kind"], "agent");
    assert_eq!(c["roles"], serde_json::json!(["operator"]));
    assert_eq!(c["aud"], "hush");
    let (iat, nbf, exp) = (
        c["iat"].as_u64().unwrap(),
        c["nbf"].as_u64().unwrap(),
        c["exp"].as_u64().unwrap(),
    );
    assert_eq!(nbf, iat);
    assert_eq!(exp, iat + 600);
}

#[tokio::test]
async fn a_dev_mode_verifier_accepts_its_tokens_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = DevIssuer::load_or_create(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}{JWKS_PATH}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let router = issuer.router();
        async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            let _ = tokio::time::timeout(Duration::from_secs(60), serve).await;
        }
    });
    let verifier = Verifier::new(issuer.jwt_args("hush", &jwks_url)).unwrap();

    let caller = verifier
        .verify(&issuer.mint(&alice(), "hush", Duration::from_secs(60)))
        .await
        .unwrap();

    assert_eq!(caller.subject.as_str(), "alice");
    assert_eq!(caller.kind, IdentityKind::Agent);
    assert_eq!(caller.roles, ["operator"]);
    let other_audience = issuer.mint(&alice(), "other", Duration::from_secs(60));
    assert!(verifier.verify(&other_audience).await.is_err());
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_in_process_verifier_needs_no_http_and_checks_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = DevIssuer::load_or_create(dir.path()).unwrap();
    let verifier = issuer.verifier("hush").unwrap();

    assert!(verifier
        .verify(&issuer.mint(&alice(), "hush", Duration::from_secs(60)))
        .await
        .is_ok());
    let bad_subject = DevClaims {
        sub: String::new(),
        ..alice()
    };
    assert!(verifier
        .verify(&issuer.mint(&bad_subject, "hush", Duration::from_secs(60)))
        .await
        .is_err());
    let expired = issuer.mint(&alice(), "hush", Duration::ZERO);
    // Zero lifetime is still inside the leeway; a verifier sees it as valid for 30 s more.
    assert!(verifier.verify(&expired).await.is_ok());
}

#[test]
fn a_production_config_refuses_the_dev_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = DevIssuer::load_or_create(dir.path()).unwrap();
    let mut args = issuer.jwt_args("hush", "http://127.0.0.1:1/jwks.json");
    args.dev_mode = false;

    assert!(Verifier::new(&args).is_err());
    assert!(Verifier::with_jwks(args, &issuer.jwks()).is_err());
    assert!(Verifier::new(JwtArgs::new(
        "https://idp.example",
        "hush",
        "https://idp.example/jwks"
    ))
    .is_ok());
}
