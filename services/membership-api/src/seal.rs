//! Join requests sealed at rest (INV-5, issue 16). A pending request must name its requester
//! to the group's owners, so it cannot be a hash alone; it is sealed instead, with
//! XChaCha20-Poly1305 under membership-api's key, bound to its group (associated data), and
//! padded to one length, so a dump or a file-level copy of the database names nobody and does not
//! tell a long address from a short one. The requester's own view ("my requests") and "one
//! pending request per person and group" find rows by a keyed hash of the subject (HMAC-SHA256
//! under a subkey), which says nothing without the key.

use chacha20poly1305::XChaCha20Poly1305;
use domain::{Email, GroupId, IdentityKind, Subject};
use serde::{Deserialize, Serialize};
use service_kit::seal as cipher;
use std::path::Path;
use zeroize::Zeroizing;

/// Every sealed requester is this long before sealing: a subject (≤ 256) and an address
/// (≤ 254) as JSON fit, padded with spaces.
const PADDED: usize = 640;

/// The key join requests are sealed with, and the subkey requester tags are made with.
#[derive(Clone)]
pub struct RequestKey {
    aead: XChaCha20Poly1305,
    tag: Zeroizing<[u8; 32]>,
    limits: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for RequestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestKey(<redacted>)")
    }
}

/// Who asked to join, as a pending request holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// Who asks.
    #[serde(rename = "s")]
    pub subject: String,
    /// Their address.
    #[serde(rename = "e")]
    pub email: String,
    /// Their kind when they asked.
    #[serde(rename = "k")]
    pub kind: String,
}

impl Requester {
    /// The requester of a new request.
    pub fn new(subject: &Subject, email: &Email, kind: IdentityKind) -> Self {
        Self {
            subject: subject.as_str().to_string(),
            email: email.as_str().to_string(),
            kind: kind.as_str().to_string(),
        }
    }
}

impl RequestKey {
    /// The key in `text`: 32 bytes, base64 (surrounding whitespace ignored).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let bytes = cipher::parse_key(text, "the membership seal key")?;
        let seal = Zeroizing::new(cipher::hmac(
            bytes.as_ref(),
            &[b"hush/membership/requests/seal"],
        ));
        Ok(Self {
            aead: cipher::cipher(&seal),
            tag: Zeroizing::new(cipher::hmac(
                bytes.as_ref(),
                &[b"hush/membership/requests/tag"],
            )),
            limits: Zeroizing::new(cipher::hmac(bytes.as_ref(), &[b"hush/membership/limits"])),
        })
    }

    /// A random key, for tests and for running without a configured key.
    pub fn random() -> Self {
        Self::parse(&cipher::generate_key_text()).expect("a fresh key parses")
    }

    /// The subkey rate-limit budgets are named under ([`crate::limits`]): every replica
    /// configured with this seal key derives the same one, so they share each caller's budget.
    pub fn limit_key(&self) -> Zeroizing<[u8; 32]> {
        self.limits.clone()
    }

    /// The keyed hash a requester's rows are found by.
    pub fn tag(&self, subject: &Subject) -> Vec<u8> {
        cipher::hmac(self.tag.as_ref(), &[subject.as_str().as_bytes()]).to_vec()
    }

    /// Seals `who` for a request of `group`.
    pub fn seal(&self, group: GroupId, who: &Requester) -> Vec<u8> {
        let mut plain = Zeroizing::new(serde_json::to_vec(who).expect("a requester serializes"));
        let padded = PADDED.max(plain.len());
        plain.resize(padded, b' ');
        cipher::seal(&self.aead, &plain, group.as_uuid().as_bytes())
    }

    /// Opens a requester sealed for a request of `group`; `None` when it does not open (another
    /// key, another group, altered).
    pub fn open(&self, group: GroupId, sealed: &[u8]) -> Option<Requester> {
        let plain = cipher::open(&self.aead, sealed, group.as_uuid().as_bytes())?;
        serde_json::from_slice(plain.trim_ascii_end()).ok()
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
    fn requesters_open_only_for_their_group_and_seal_to_one_length() {
        let key = RequestKey::random();
        let g = GroupId::new();
        let short = Requester::new(
            &Subject::parse("al").unwrap(),
            &Email::parse("al@corp.example").unwrap(),
            IdentityKind::Member,
        );
        let long = Requester::new(
            &Subject::parse("a-very-long-subject-".repeat(10)).unwrap(),
            &Email::parse(format!("{}@corp.example", "x".repeat(60))).unwrap(),
            IdentityKind::Guest,
        );
        let (a, b) = (key.seal(g, &short), key.seal(g, &long));
        assert_eq!(a.len(), b.len(), "lengths tell nothing");
        assert!(!a.windows(2).any(|w| w == b"al"));
        assert_eq!(key.open(g, &a), Some(short.clone()));
        assert_eq!(key.open(g, &b), Some(long));
        assert_eq!(key.open(GroupId::new(), &a), None, "bound to its group");
        assert_eq!(RequestKey::random().open(g, &a), None);
        let s = Subject::parse("al").unwrap();
        assert_eq!(key.tag(&s), key.tag(&s));
        assert_ne!(key.tag(&s), RequestKey::random().tag(&s));
        assert!(format!("{key:?}").contains("redacted"));
    }
}
