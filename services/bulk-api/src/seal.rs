//! Job input sealed at rest (INV-5): each chunk's operations are sealed with XChaCha20-Poly1305
//! under bulk-api's key, bound to their job and position (associated data), so a database dump
//! shows neither who is added or removed nor lets a chunk be moved to another job.

use anyhow::Context as _;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use std::path::Path;
use uuid::Uuid;

const NONCE: usize = 24;

/// The key job input is sealed with.
#[derive(Clone)]
pub struct JobKey(XChaCha20Poly1305);

impl std::fmt::Debug for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobKey(<redacted>)")
    }
}

/// A sealed value did not open: not sealed by this key, or altered.
#[derive(Debug, thiserror::Error)]
#[error("a job chunk did not open with the configured seal key")]
pub struct SealError;

impl JobKey {
    /// The key in `text`: 32 bytes, base64 (surrounding whitespace ignored).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .context("the bulk seal key is not base64")?;
        anyhow::ensure!(bytes.len() == 32, "the bulk seal key must be 32 bytes");
        Ok(Self(XChaCha20Poly1305::new_from_slice(&bytes)?))
    }

    /// A random key, for tests and for running without a configured key.
    pub fn random() -> Self {
        Self::parse(&Self::generate_text()).expect("a fresh key parses")
    }

    /// A fresh key in the form [`Self::parse`] reads.
    pub fn generate_text() -> String {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        base64::engine::general_purpose::STANDARD.encode(bytes.as_ref())
    }

    fn aad(job: Uuid, seq: u64) -> [u8; 24] {
        let mut aad = [0u8; 24];
        aad[..16].copy_from_slice(job.as_bytes());
        aad[16..].copy_from_slice(&seq.to_be_bytes());
        aad
    }

    /// Seals chunk `seq` of `job`.
    pub fn seal(&self, job: Uuid, seq: u64, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = Self::aad(job, seq);
        let sealed = self
            .0
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("sealing cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens chunk `seq` of `job`.
    pub fn open(&self, job: Uuid, seq: u64, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE {
            return Err(SealError);
        }
        let (nonce, body) = sealed.split_at(NONCE);
        let aad = Self::aad(job, seq);
        self.0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError)
    }
}

/// Writes a fresh key to `path` (mode 0600) unless a file is there already.
pub fn generate_seal_key_file(path: &Path) -> anyhow::Result<()> {
    service_kit::files::create_secret(path, &format!("{}\n", JobKey::generate_text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_chunks_open_only_for_their_job_and_position() {
        let key = JobKey::random();
        let job = Uuid::new_v4();
        let sealed = key.seal(job, 3, b"alice@corp.example");
        assert!(!sealed.windows(5).any(|w| w == b"alice"));
        assert_eq!(key.open(job, 3, &sealed).unwrap(), b"alice@corp.example");
        assert!(key.open(job, 4, &sealed).is_err());
        assert!(key.open(Uuid::new_v4(), 3, &sealed).is_err());
        assert!(JobKey::random().open(job, 3, &sealed).is_err());
        assert!(format!("{key:?}").contains("redacted"));
    }
}
