//! Tokens at the public edge: every malformed, forged or out-of-date token is a 401
//! problem+json, and says nothing more.

use crate::helpers::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

fn claims(iss: &str, aud: &str, exp_offset: i64) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({"sub": "mallory", "email": "mallory@corp.example", "hush_kind": "member", "roles": ["label-admin"],
           "iss": iss, "aud": aud, "iat": now, "nbf": now - 5, "exp": now + exp_offset})
}

async fn forged_expired_and_misaddressed_tokens_are_refused_with_401_problem_json(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let key_pem = std::fs::read(app.dir.path().join("dev-issuer/dev-issuer.key.pem"))
        .expect("dev issuer key");
    let key = EncodingKey::from_ec_pem(&key_pem).unwrap();
    let kid = app.stack.issuer().jwks()["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let es256 = |c: &Value, kid: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.to_string());
        jsonwebtoken::encode(&h, c, &key).unwrap()
    };
    let good = es256(&claims(auth::DEV_ISSUER, "hush", 300), &kid);
    let url = app.control("/labels");
    assert_eq!(
        app.get(&url, &good).await.status,
        200,
        "the well-formed token is accepted"
    );

    // alg: none — a header and payload with an empty signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#)),
        URL_SAFE_NO_PAD.encode(claims(auth::DEV_ISSUER, "hush", 300).to_string())
    );
    // HS256 with the issuer's public key as the HMAC secret (algorithm confusion).
    use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let secret = p256::SecretKey::from_pkcs8_pem(std::str::from_utf8(&key_pem).unwrap()).unwrap();
    let public_pem = secret
        .public_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims(auth::DEV_ISSUER, "hush", 300),
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap();
    // A payload changed after signing.
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(
        claims(auth::DEV_ISSUER, "hush", 300)
            .to_string()
            .replace("mallory", "alice"),
    );
    let tampered = parts.join(".");

    let cases = [
        ("alg none", none),
        ("HS256 with the public key", confused),
        (
            "expired",
            es256(&claims(auth::DEV_ISSUER, "hush", -120), &kid),
        ),
        (
            "wrong issuer",
            es256(&claims("https://evil.example", "hush", 300), &kid),
        ),
        (
            "wrong audience",
            es256(&claims(auth::DEV_ISSUER, "other-app", 300), &kid),
        ),
        (
            "unknown kid",
            es256(&claims(auth::DEV_ISSUER, "hush", 300), "no-such-key"),
        ),
        ("tampered payload", tampered),
        ("garbage", "abc.def.ghi".to_string()),
    ];
    for (what, token) in cases {
        let res = app.get(&url, &token).await;
        res.assert_problem(401);
        assert!(
            res.headers.contains_key("www-authenticate"),
            "{what}: WWW-Authenticate"
        );
        assert!(
            !res.text.contains(&token),
            "{what}: the token is not echoed"
        );
    }
    let anon = app.call(Method::GET, &url, None, None).await;
    anon.assert_problem(401);

    app.stop().await;
}

service_kit::backend_tests!(
    forged_expired_and_misaddressed_tokens_are_refused_with_401_problem_json,
);
