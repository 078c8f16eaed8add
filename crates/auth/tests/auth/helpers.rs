//! What the tests share: a real JWKS server on 127.0.0.1:0, keys of both accepted types, and
//! tokens signed independently of the crate under test (with jsonwebtoken), so a bug in our
//! signing cannot hide a bug in our verifying.

use auth::{JwtArgs, Verifier};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The issuer and audience every test token uses unless it is testing them.
pub const ISSUER: &str = "https://idp.test.example";
pub const AUDIENCE: &str = "hush";

/// Longest a test's JWKS server lives, so a failing test cannot leave it running.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A JWKS server whose document can be swapped (key rotation) and which counts its requests.
pub struct JwksServer {
    pub url: String,
    doc: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl JwksServer {
    pub async fn start(doc: Value) -> Self {
        let doc = Arc::new(Mutex::new(doc));
        let hits = Arc::new(AtomicUsize::new(0));
        let (d, h) = (doc.clone(), hits.clone());
        let app = Router::new().route(
            "/jwks.json",
            get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                let body = d.lock().unwrap().clone();
                async move { Json(body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            let _ = tokio::time::timeout(SERVER_LIFETIME, serve).await;
        });
        Self {
            url,
            doc,
            hits,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Serves `doc` from now on.
    pub fn set(&self, doc: Value) {
        *self.doc.lock().unwrap() = doc;
    }

    /// How many times the JWKS was fetched.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// A verifier for this server with the default rate limit.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(JwtArgs::new(ISSUER, AUDIENCE, &self.url)).unwrap()
    }

    /// Stops the server and waits for it (bounded).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the JWKS server stops")
                .unwrap();
        }
    }
}

/// A JWKS document holding `keys`.
pub fn jwks(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

/// An EC P-256 key for ES256.
pub struct EcKey {
    pub secret: p256::SecretKey,
    pub kid: String,
}

impl EcKey {
    pub fn new(kid: &str) -> Self {
        Self {
            secret: p256::SecretKey::random(&mut rand::rngs::OsRng),
            kid: kid.into(),
        }
    }

    pub fn jwk(&self) -> Value {
        let p = self.secret.public_key().to_encoded_point(false);
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(p.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(p.y().unwrap()),
        })
    }

    pub fn public_pem(&self) -> String {
        self.secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    pub fn private_pem(&self) -> String {
        self.secret
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap()
            .to_string()
    }

    /// Signs `claims` with ES256 and this key's kid.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_kid(claims, &self.kid)
    }

    pub fn sign_with_kid(&self, claims: &Value, kid: &str) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        let key = EncodingKey::from_ec_pem(self.private_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(&h, claims, &key).unwrap()
    }
}

/// An RSA key for RS256. Generated once per test binary: 2048-bit generation is the slow part.
pub struct RsaKey {
    pub private_pem: String,
    pub public_pem: String,
    pub n: String,
    pub e: String,
}

pub fn rsa_key() -> &'static RsaKey {
    static KEY: OnceLock<RsaKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::pkcs8::EncodePublicKey as _;
        use rsa::traits::PublicKeyParts as _;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let public = key.to_public_key();
        RsaKey {
            private_pem: key
                .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                .unwrap()
                .to_string(),
            public_pem: public
                .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                .unwrap(),
            n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        }
    })
}

impl RsaKey {
    pub fn jwk(&self, kid: &str) -> Value {
        json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": self.n, "e": self.e })
    }

    pub fn sign(&self, claims: &Value, kid: &str) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        let key = EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&h, claims, &key).unwrap()
    }
}

/// Claims of a valid token for alice: right issuer and audience, valid for five minutes.
pub fn claims() -> Value {
    let t = now();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "email": "Alice@Corp.Example",
        "hush_kind": "guest", "roles": ["operator", "auditor"],
        "iat": t, "nbf": t, "exp": t + 300,
    })
}

/// `claims()` with `changes` applied; a `null` value removes the claim.
pub fn claims_with(changes: &Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// A hand-built token: any header, any payload, any signature bytes.
pub fn raw_token(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// The refusal reason of a token, asserting it is a 401 that does not echo the token.
pub async fn refusal(verifier: &Verifier, token: &str) -> String {
    let err = verifier
        .verify(token)
        .await
        .expect_err("the token must be refused");
    assert!(err.is_unauthorized(), "expected 401, got {err:?}");
    let msg = err.to_string();
    if token.len() > 8 {
        assert!(!msg.contains(token), "the reason echoes the token");
    }
    msg
}
