//! Key files and the small pieces of key arithmetic the issuers share: P-256 keys as PKCS#8 /
//! SPKI PEM, files that are created once with owner-only permissions and never overwritten,
//! and the RFC 7638 thumbprint used as a key id.

use crate::AuthError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use p256::{PublicKey, SecretKey};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Seconds since the Unix epoch, the unit of JWT time claims.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A fresh random P-256 key.
pub(crate) fn random_p256() -> SecretKey {
    SecretKey::random(&mut rand::rngs::OsRng)
}

/// An ES256 signing key: `ring`'s, for speed (a service token is signed for every call between
/// services), with the same key in `p256` behind it, so that signing never fails: should
/// `ring` ever refuse (its random number generator failing), p256 signs instead.
pub(crate) struct Es256Key {
    fast: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    fallback: p256::ecdsa::SigningKey,
}

impl Es256Key {
    /// The signing key of `secret`.
    pub(crate) fn new(secret: &SecretKey) -> Result<Self, AuthError> {
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| AuthError::Key(format!("cannot encode the private key: {e}")))?;
        let rng = ring::rand::SystemRandom::new();
        let fast = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.as_bytes(),
            &rng,
        )
        .map_err(|e| AuthError::Key(format!("the private key does not load for signing: {e}")))?;
        Ok(Self {
            fast,
            rng,
            fallback: p256::ecdsa::SigningKey::from(secret),
        })
    }

    /// Signs a compact JWS: `base64url(header).base64url(claims).base64url(r || s)`.
    pub(crate) fn sign(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match self.fast.sign(&self.rng, message.as_bytes()) {
            Ok(s) => URL_SAFE_NO_PAD.encode(s.as_ref()),
            Err(_) => {
                use p256::ecdsa::signature::Signer as _;
                let s: p256::ecdsa::Signature = self.fallback.sign(message.as_bytes());
                URL_SAFE_NO_PAD.encode(s.to_bytes())
            }
        };
        format!("{message}.{signature}")
    }
}

/// Signs a compact JWS with ES256: `base64url(header).base64url(claims).base64url(r || s)`.
///
/// Signing with p256 directly (RFC 6979 deterministic nonces) cannot fail, so minting needs no
/// error path; jsonwebtoken only verifies.
pub(crate) fn sign_es256(
    key: &p256::ecdsa::SigningKey,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> String {
    use p256::ecdsa::signature::Signer as _;
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature: p256::ecdsa::Signature = key.sign(message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// The key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the form jsonwebtoken signs with.
pub(crate) fn private_pem(key: &SecretKey) -> Result<String, AuthError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| AuthError::Key(format!("cannot encode the private key: {e}")))
}

/// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
pub(crate) fn public_pem(key: &PublicKey) -> Result<String, AuthError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| AuthError::Key(format!("cannot encode the public key: {e}")))
}

/// Reads a PKCS#8 PEM P-256 private key from `path`.
pub(crate) fn read_private(path: &Path) -> Result<SecretKey, AuthError> {
    let pem = std::fs::read_to_string(path).map_err(|e| AuthError::key_file(path, e))?;
    warn_if_readable_by_others(path);
    SecretKey::from_pkcs8_pem(&pem)
        .map_err(|_| AuthError::key_file(path, "not a PKCS#8 PEM P-256 private key"))
}

/// The RFC 7638 JWK thumbprint of a P-256 public key, base64url: a key id that is derived from
/// the key itself, so the same key always gets the same id and a new key a new one.
pub(crate) fn thumbprint(key: &PublicKey) -> String {
    let (x, y) = xy(key);
    // Members in lexicographic order, no whitespace, as the RFC requires.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The base64url affine coordinates of a P-256 public key, as a JWK carries them.
pub(crate) fn xy(key: &PublicKey) -> (String, String) {
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    let point = key.to_encoded_point(false);
    let enc = |b: Option<&p256::FieldBytes>| {
        URL_SAFE_NO_PAD.encode(b.map(|b| b.as_slice()).unwrap_or_default())
    };
    (enc(point.x()), enc(point.y()))
}

/// Writes `contents` to `path` only if no file is there yet, readable by the owner alone when
/// `private` ([`service_kit::files::write_new`]). Returns whether this call created the file.
pub(crate) fn write_new(path: &Path, contents: &str, private: bool) -> Result<bool, AuthError> {
    let access = if private {
        service_kit::files::Access::Private
    } else {
        service_kit::files::Access::Public
    };
    service_kit::files::write_new(path, contents, access).map_err(|e| AuthError::key_file(path, e))
}

/// A private key that others can read is a private key no longer; say so, but keep working
/// (the operator may have reasons, such as a mounted secret with group access).
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "private key file is readable by others; chmod 600 it");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
