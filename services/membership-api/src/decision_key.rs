//! The key access decisions are signed with (Ed25519, `EdDSA` in JOSE terms), and the JWKS that
//! publishes it so apps can check a decision offline.
//!
//! The key file holds one or more PKCS#8 `PRIVATE KEY` PEM blocks: the first signs, every one
//! is published. To rotate, put the new key first and keep the old one after it for as long as
//! a decision signed with it may live (`HUSH_DECISION_TTL_SECS`), then drop it.
//!
//! Why these crates: `ring` (already built for rustls and the service tokens) parses the keys and
//! gives the public halves; `jsonwebtoken` (already built for verifying users' tokens) writes the
//! JWTs; `pem` (already built as jsonwebtoken's dependency) reads and writes the PEM armour.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

const PEM_TAG: &str = "PRIVATE KEY";

/// One key: what signs, and what is published.
struct Key {
    kid: String,
    encoding: EncodingKey,
    public_x: String,
}

/// The decision keys: the first signs, all are published.
pub struct DecisionKey {
    keys: Vec<Key>,
}

impl std::fmt::Debug for DecisionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionKey")
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn key_from_der(der: &[u8]) -> anyhow::Result<Key> {
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
        .map_err(|_| anyhow::anyhow!("a decision key is not an Ed25519 PKCS#8 private key"))?;
    let public_x = b64(pair.public_key().as_ref());
    // RFC 7638 thumbprint: the same key always has the same id, whoever computes it.
    let thumbprint = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{public_x}"}}"#);
    Ok(Key {
        kid: b64(&Sha256::digest(thumbprint.as_bytes())),
        encoding: EncodingKey::from_ed_der(der),
        public_x,
    })
}

impl DecisionKey {
    /// Parses one or more PKCS#8 Ed25519 `PRIVATE KEY` PEM blocks.
    pub fn from_pem(text: &str) -> anyhow::Result<Self> {
        let blocks = pem::parse_many(text)
            .map_err(|_| anyhow::anyhow!("the decision key file is not PEM"))?;
        let keys = blocks
            .iter()
            .filter(|b| b.tag() == PEM_TAG)
            .map(|b| key_from_der(b.contents()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if keys.is_empty() {
            anyhow::bail!("the decision key file holds no PRIVATE KEY block");
        }
        Ok(Self { keys })
    }

    /// Reads the key file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the decision key {}: {e}", path.display()))?;
        Self::from_pem(&text)
    }

    /// A fresh random key, held in memory only.
    pub fn generate() -> Self {
        Self::from_pem(&generate_pem()).expect("a generated key parses")
    }

    /// The id of the signing key (`kid`).
    pub fn kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// The public keys as a JWKS (RFC 7517), for `GET /membership/v1/decisions/jwks.json`.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| {
                json!({"kty": "OKP", "crv": "Ed25519", "x": k.public_x, "kid": k.kid,
                       "alg": "EdDSA", "use": "sig"})
            })
            .collect();
        json!({ "keys": keys })
    }

    /// Signs `claims` as a compact JWT with the first key.
    pub fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let key = &self.keys[0];
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| anyhow::anyhow!("signing a decision: {e}"))
    }
}

/// A new Ed25519 key as a PKCS#8 PEM block.
pub fn generate_pem() -> String {
    let rng = ring::rand::SystemRandom::new();
    let der = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system's random source works");
    pem::encode(&pem::Pem::new(PEM_TAG, der.as_ref().to_vec()))
}

/// Writes a new key file at `path` (mode 0600 where the platform has modes), unless one is
/// there already. What `hush up` and `hush deploy-init` call.
pub fn generate_decision_key_file(path: &Path) -> anyhow::Result<()> {
    service_kit::files::create_secret(path, &generate_pem())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn what_the_first_key_signs_verifies_with_the_published_jwks_and_every_key_is_published() {
        let (old, new) = (generate_pem(), generate_pem());
        let keys = DecisionKey::from_pem(&format!("{new}\n{old}")).unwrap();
        let jwks = keys.jwks();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        let token = keys.sign(&json!({"sub": "alice", "aud": "app", "exp": 4_000_000_000u64}));
        let token = token.unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(keys.kid()));
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&["app"]);
        let claims =
            jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(&jwk).unwrap(), &v)
                .unwrap()
                .claims;
        assert_eq!(claims["sub"], "alice");
        // The old key's published half does not verify what the new one signed.
        let old_jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(jwks["keys"][1].clone()).unwrap();
        assert!(jsonwebtoken::decode::<Value>(
            &token,
            &DecodingKey::from_jwk(&old_jwk).unwrap(),
            &v
        )
        .is_err());
    }

    #[test]
    fn a_file_without_an_ed25519_key_is_refused_with_a_reason() {
        assert!(DecisionKey::from_pem("not pem").is_err());
        let rsa_like = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        let err = DecisionKey::from_pem(&rsa_like).unwrap_err().to_string();
        assert!(err.contains("Ed25519"), "{err}");
        let other = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        assert!(DecisionKey::from_pem(&other).is_err());
    }

    #[test]
    fn a_keys_id_is_its_thumbprint_and_stays_the_same() {
        let pem = generate_pem();
        assert_eq!(
            DecisionKey::from_pem(&pem).unwrap().kid(),
            DecisionKey::from_pem(&pem).unwrap().kid()
        );
        assert_ne!(DecisionKey::generate().kid(), DecisionKey::generate().kid());
    }
}
