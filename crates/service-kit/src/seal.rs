//! Sealing at rest, shared by the services that keep something personal (INV-5, issue 16): a
//! service's 32-byte key (base64, from a file or inline), subkeys derived from it by purpose,
//! and XChaCha20-Poly1305 with the 24-byte nonce written in front of the ciphertext.
//!
//! Each service decides what it seals and how (what the associated data binds a value to, how
//! long it is padded to); this module is only the key handling and the cipher, written once.

use anyhow::Context as _;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use std::path::Path;
use zeroize::Zeroizing;

/// Bytes of nonce in front of every sealed value.
pub const NONCE: usize = 24;
/// Bytes the cipher adds (the Poly1305 tag).
pub const TAG: usize = 16;

/// A key as configured: 32 bytes, base64 in `text` (surrounding whitespace ignored). `what`
/// names the key in errors ("the control seal key").
pub fn parse_key(text: &str, what: &str) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .with_context(|| format!("{what} is not base64"))?,
    );
    anyhow::ensure!(bytes.len() == 32, "{what} must be 32 bytes");
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// A fresh key in the form [`parse_key`] reads.
pub fn generate_key_text() -> String {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    base64::engine::general_purpose::STANDARD.encode(bytes.as_ref())
}

/// Writes a fresh key to `path` (mode 0600) unless a file is there already.
pub fn generate_key_file(path: &Path) -> anyhow::Result<()> {
    crate::files::create_secret(path, &format!("{}\n", generate_key_text()))
}

/// HMAC-SHA256 under `key` of `parts`, one after the other.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The cipher under `key`.
pub fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

/// Seals `plain` with `nonce`, binding `aad`: `nonce || ciphertext || tag`.
pub fn seal_with_nonce(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8; NONCE],
    plain: &[u8],
    aad: &[u8],
) -> Vec<u8> {
    let sealed = cipher
        .encrypt(XNonce::from_slice(nonce), Payload { msg: plain, aad })
        .expect("sealing cannot fail for in-memory buffers");
    let mut out = Vec::with_capacity(NONCE + sealed.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Seals `plain` with a fresh random nonce, binding `aad`.
pub fn seal(cipher: &XChaCha20Poly1305, plain: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    seal_with_nonce(cipher, &nonce, plain, aad)
}

/// Opens what [`seal`] or [`seal_with_nonce`] made with the same `aad`; `None` when it does not
/// open (another key, other associated data, altered, too short).
pub fn open(cipher: &XChaCha20Poly1305, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE + TAG {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE);
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_associated_data() {
        let key = parse_key(&generate_key_text(), "k").unwrap();
        let c = cipher(&key);
        let sealed = seal(&c, b"alice@corp.example", b"here");
        assert!(!sealed.windows(5).any(|w| w == b"alice"));
        assert_eq!(
            open(&c, &sealed, b"here").unwrap().as_slice(),
            b"alice@corp.example"
        );
        assert!(open(&c, &sealed, b"there").is_none());
        let other = parse_key(&generate_key_text(), "k").unwrap();
        assert!(open(&cipher(&other), &sealed, b"here").is_none());
        assert_ne!(
            seal(&c, b"x", b""),
            seal(&c, b"x", b""),
            "a fresh nonce each time"
        );
        assert!(open(&c, &sealed[..10], b"here").is_none());
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        assert!(parse_key("not base64!", "the key").is_err());
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        let err = parse_key(&short, "the key").unwrap_err().to_string();
        assert!(err.contains("32 bytes"), "{err}");
    }
}
