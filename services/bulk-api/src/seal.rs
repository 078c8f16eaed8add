//! Job input sealed at rest (INV-5): each chunk's operations are sealed with XChaCha20-Poly1305
//! under bulk-api's key, bound to their job and position (associated data), so a database dump
//! shows neither who is added or removed nor lets a chunk be moved to another job.

use chacha20poly1305::XChaCha20Poly1305;
use service_kit::seal as cipher;
use std::path::Path;
use uuid::Uuid;

/// The position a job's file name is sealed under: no chunk has it.
const NAME_SEQ: u64 = u64::MAX;

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
        let key = cipher::parse_key(text, "the bulk seal key")?;
        Ok(Self(cipher::cipher(&key)))
    }

    /// A random key, for tests and for running without a configured key.
    pub fn random() -> Self {
        Self::parse(&cipher::generate_key_text()).expect("a fresh key parses")
    }

    fn aad(job: Uuid, seq: u64) -> [u8; 24] {
        let mut aad = [0u8; 24];
        aad[..16].copy_from_slice(job.as_bytes());
        aad[16..].copy_from_slice(&seq.to_be_bytes());
        aad
    }

    /// Seals chunk `seq` of `job`.
    pub fn seal(&self, job: Uuid, seq: u64, plain: &[u8]) -> Vec<u8> {
        cipher::seal(&self.0, plain, &Self::aad(job, seq))
    }

    /// Seals the name of the file `job` came from (under a position no chunk takes).
    pub fn seal_name(&self, job: Uuid, name: &str) -> Vec<u8> {
        self.seal(job, NAME_SEQ, name.as_bytes())
    }

    /// Opens the name of the file `job` came from; `None` when it does not open (sealed under
    /// another key).
    pub fn open_name(&self, job: Uuid, sealed: &[u8]) -> Option<String> {
        let plain = self.open(job, NAME_SEQ, sealed).ok()?;
        String::from_utf8(plain).ok()
    }

    /// Opens chunk `seq` of `job`.
    pub fn open(&self, job: Uuid, seq: u64, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        cipher::open(&self.0, sealed, &Self::aad(job, seq))
            .map(|plain| plain.to_vec())
            .ok_or(SealError)
    }
}

/// Writes a fresh key to `path` (mode 0600) unless a file is there already.
pub fn generate_seal_key_file(path: &Path) -> anyhow::Result<()> {
    cipher::generate_key_file(path)
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
