//! Owners sealed at rest (INV-5, issue 16). A group's owners are its public contacts — the API
//! shows them to whoever may see the group — but a dump or a file-level copy of control-api's
//! database (Postgres WAL and dead tuples, SQLite's log and freed pages) must not name them:
//! not as owners, not as the people who invited, proposed or approved, not in the catalog's
//! audit. So every person-naming value control-api stores — an owner's or invitee's subject,
//! an owner's display name and address, who proposed a change, who acted in an audit event,
//! each event's detail — is sealed with XChaCha20-Poly1305 under control-api's key
//! (`HUSH_CONTROL_SEAL_KEY_FILE`), padded so a short name and a long one seal to one length.
//!
//! Values the store looks rows up by (owners by subject, contacts by subject) are sealed
//! *deterministically*: the nonce is a keyed hash of the value, so one subject always seals to
//! the same text and `WHERE subject = $1` still works; a dump can tell that two rows name the
//! same owner, never who. The audit's detail, never looked up, is sealed with a fresh nonce.
//! Who created a group is kept only as a keyed tag (it is never read back).
//!
//! A value written before sealing (no [`PREFIX`]) reads as it is; `connect` rewrites such
//! rows at start-up, except the append-only audit's.

use chacha20poly1305::XChaCha20Poly1305;
use domain::Subject;
use service_kit::seal as cipher;
use std::path::Path;
use zeroize::Zeroizing;

/// Marks a sealed value: `hs1.` then the sealed bytes, base64url without padding.
pub const PREFIX: &str = "hs1.";
/// Marks a creator's tag: `ht1.` then 64 hex digits.
const TAG_PREFIX: &str = "ht1.";
/// A value is padded to this many bytes (after a four-byte length) before sealing, or to the
/// next multiple of it when longer (subjects, names and addresses are all shorter).
const PADDED: usize = 256;

/// What a sealed value is; the associated data, so a value cannot be moved to another column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An IdP subject: owners, invitees, proposers, audit actors.
    Subject,
    /// An owner's display name.
    Name,
    /// An owner's e-mail address.
    Email,
    /// An audit event's detail (JSON).
    Detail,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Self::Subject => b"hush/control/subject",
            Self::Name => b"hush/control/name",
            Self::Email => b"hush/control/email",
            Self::Detail => b"hush/control/detail",
        }
    }
}

/// control-api's seal key, and the subkeys derived from it.
#[derive(Clone)]
pub struct OwnerKey {
    aead: XChaCha20Poly1305,
    nonce: Zeroizing<[u8; 32]>,
    tag: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnerKey(<redacted>)")
    }
}

/// A stored value did not open: sealed under another key, or altered.
#[derive(Debug, thiserror::Error)]
#[error("a sealed {0:?} did not open with the configured control seal key")]
pub struct Unopened(pub Purpose);

impl OwnerKey {
    /// The key in `text`: 32 bytes, base64 (surrounding whitespace ignored).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let bytes = cipher::parse_key(text, "the control seal key")?;
        let sub = |label: &[u8]| Zeroizing::new(cipher::hmac(bytes.as_ref(), &[label]));
        Ok(Self {
            aead: cipher::cipher(&sub(b"hush/control/seal")),
            nonce: sub(b"hush/control/nonce"),
            tag: sub(b"hush/control/tag"),
        })
    }

    /// A random key, for tests and for running without a configured key.
    pub fn random() -> Self {
        Self::parse(&cipher::generate_key_text()).expect("a fresh key parses")
    }

    fn padded(value: &str) -> Zeroizing<Vec<u8>> {
        let bytes = value.as_bytes();
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let body = bytes.len().min(len as usize);
        let total = (4 + body).div_ceil(PADDED).max(1) * PADDED;
        let mut plain = Zeroizing::new(Vec::with_capacity(total));
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(&bytes[..body]);
        plain.resize(total, 0);
        plain
    }

    fn encode(sealed: &[u8]) -> String {
        use base64::Engine as _;
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)
        )
    }

    /// `value` sealed deterministically: the same value and purpose always give the same text,
    /// so rows can be found by it.
    pub fn seal(&self, purpose: Purpose, value: &str) -> String {
        let digest = cipher::hmac(
            self.nonce.as_ref(),
            &[purpose.aad(), b"\0", value.as_bytes()],
        );
        let mut nonce = [0u8; cipher::NONCE];
        nonce.copy_from_slice(&digest[..cipher::NONCE]);
        let plain = Self::padded(value);
        Self::encode(&cipher::seal_with_nonce(
            &self.aead,
            &nonce,
            &plain,
            purpose.aad(),
        ))
    }

    /// `value` sealed with a fresh nonce: for what is never looked up.
    pub fn seal_fresh(&self, purpose: Purpose, value: &str) -> String {
        let plain = Self::padded(value);
        Self::encode(&cipher::seal(&self.aead, &plain, purpose.aad()))
    }

    /// A stored value opened: sealed ones with the key, ones written before sealing as they
    /// are.
    pub fn open(&self, purpose: Purpose, stored: &str) -> Result<String, Unopened> {
        use base64::Engine as _;
        let Some(body) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| Unopened(purpose))?;
        let plain = cipher::open(&self.aead, &sealed, purpose.aad()).ok_or(Unopened(purpose))?;
        let len = plain
            .get(..4)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .ok_or(Unopened(purpose))?;
        let value = plain.get(4..4 + len).ok_or(Unopened(purpose))?;
        String::from_utf8(value.to_vec()).map_err(|_| Unopened(purpose))
    }

    /// `stored` as it should be kept: sealed ([`Self::seal`]) when it was written before
    /// sealing, as it is otherwise.
    pub fn seal_if_clear(&self, purpose: Purpose, stored: &str) -> String {
        if Self::is_clear(stored) {
            self.seal(purpose, stored)
        } else {
            stored.to_string()
        }
    }

    /// Whether `stored` was written before sealing.
    pub fn is_clear(stored: &str) -> bool {
        !stored.starts_with(PREFIX) && !stored.starts_with(TAG_PREFIX)
    }

    /// A subject as the store keeps it.
    pub fn subject(&self, subject: &Subject) -> String {
        self.seal(Purpose::Subject, subject.as_str())
    }

    /// The one-way tag of a group's creator: tells creators apart under the key, names nobody,
    /// and is never read back.
    pub fn creator(&self, subject: &Subject) -> String {
        let digest = cipher::hmac(
            self.tag.as_ref(),
            &[b"creator\0", subject.as_str().as_bytes()],
        );
        format!("{TAG_PREFIX}{}", hex::encode(digest))
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
    fn a_sealed_owner_opens_only_with_its_key_and_purpose_and_names_nobody() {
        let key = OwnerKey::random();
        let short = key.seal(Purpose::Subject, "al");
        let long = key.seal(Purpose::Subject, &"a-very-long-subject-".repeat(12));
        assert_eq!(short.len(), long.len(), "lengths tell nothing");
        assert!(short.starts_with(PREFIX) && !short.contains("al@") && short.len() <= 400);
        assert_eq!(key.open(Purpose::Subject, &short).unwrap(), "al");
        assert_eq!(
            short,
            key.seal(Purpose::Subject, "al"),
            "found by its sealed form"
        );
        assert_ne!(
            short,
            key.seal(Purpose::Email, "al"),
            "bound to its purpose"
        );
        assert!(key.open(Purpose::Email, &short).is_err());
        assert!(OwnerKey::random().open(Purpose::Subject, &short).is_err());
        let fresh = key.seal_fresh(Purpose::Detail, "{\"owners\":[\"al\"]}");
        assert_ne!(
            fresh,
            key.seal_fresh(Purpose::Detail, "{\"owners\":[\"al\"]}")
        );
        assert_eq!(
            key.open(Purpose::Detail, &fresh).unwrap(),
            "{\"owners\":[\"al\"]}"
        );
        let big = "x".repeat(3000);
        assert_eq!(
            key.open(Purpose::Detail, &key.seal_fresh(Purpose::Detail, &big))
                .unwrap(),
            big
        );
        assert_eq!(key.open(Purpose::Subject, "legacy").unwrap(), "legacy");
        assert!(OwnerKey::is_clear("legacy") && !OwnerKey::is_clear(&short));
        let s = Subject::parse("al").unwrap();
        assert_eq!(key.creator(&s), key.creator(&s));
        assert!(!OwnerKey::is_clear(&key.creator(&s)) && key.creator(&s).len() <= 256);
        assert_ne!(key.creator(&s), OwnerKey::random().creator(&s));
        assert!(format!("{key:?}").contains("redacted"));
    }
}
