//! DKIM signing of the copies (RFC 6376): `rsa-sha256`, `relaxed/relaxed`, with the group
//! domain's key. The copies of a message are identical, so the message is signed once, when it
//! is stored, and the signature holds for every copy.
//!
//! The signature covers the headers a receiver shows or filters on (From, To, Cc, Subject,
//! Date, Message-ID, the MIME headers and the list headers the tenant added) and the body.
//! `d=` is the group's domain; DMARC alignment with the sender's own `From` domain needs From
//! rewriting, which this module does not do.

use super::headers;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest as _, Sha256};
use std::path::Path;

/// Headers signed when present, in this order.
const SIGNED: &[&str] = &[
    "from",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-id",
    "list-post",
];

/// The DER DigestInfo prefix of a SHA-256 hash (RFC 8017, section 9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// A DKIM key for one domain.
pub struct DkimSigner {
    domain: String,
    selector: String,
    key: RsaPrivateKey,
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimSigner")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

impl DkimSigner {
    /// A signer for `domain` with `selector`, from an RSA private key (PKCS#8 or PKCS#1 PEM).
    pub fn new(domain: &str, selector: &str, key: RsaPrivateKey) -> Self {
        Self {
            domain: domain.to_ascii_lowercase(),
            selector: selector.to_string(),
            key,
        }
    }

    /// Loads the key from a PEM file.
    pub fn load(domain: &str, selector: &str, path: &Path) -> anyhow::Result<Self> {
        let pem = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading the DKIM key {}: {e}", path.display()))?,
        );
        let key = RsaPrivateKey::from_pkcs8_pem(&pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
            .map_err(|_| anyhow::anyhow!("{} is not an RSA private key in PEM", path.display()))?;
        Ok(Self::new(domain, selector, key))
    }

    /// The domain it signs for.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The `p=` value of the DNS record `<selector>._domainkey.<domain>` (base64 of the DER
    /// public key), to publish.
    pub fn public_key_record(&self) -> String {
        let der = self
            .key
            .to_public_key()
            .to_public_key_der()
            .expect("an RSA public key encodes");
        STANDARD.encode(der.as_bytes())
    }

    /// The message with a `DKIM-Signature` header in front, signed at `time` (seconds since
    /// the epoch).
    pub fn sign(&self, message: &[u8], time: u64) -> Vec<u8> {
        let (fields, body_at) = headers::split(message);
        let body = &message[body_at.min(message.len())..];
        let bh = STANDARD.encode(Sha256::digest(relaxed_body(body)));
        let (names, mut hashed) = signed_headers(&fields);
        let value = format!(
            "v=1; a=rsa-sha256; c=relaxed/relaxed; d={}; s={}; t={time}; h={}; bh={bh}; b=",
            self.domain,
            self.selector,
            names.join(":")
        );
        let unsigned = format!("DKIM-Signature: {value}");
        hashed.extend_from_slice(&relaxed_header(unsigned.as_bytes()));
        let mut digest_info = SHA256_DIGEST_INFO.to_vec();
        digest_info.extend_from_slice(&Sha256::digest(&hashed));
        let signature = self
            .key
            .sign(Pkcs1v15Sign::new_unprefixed(), &digest_info)
            .expect("an RSA key of 1024 bits or more signs a SHA-256 digest");
        let mut out = Vec::with_capacity(message.len() + 700);
        out.extend_from_slice(unsigned.as_bytes());
        out.extend_from_slice(STANDARD.encode(signature).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(message);
        out
    }
}

impl DkimSigner {
    /// Signs `hashed` (canonical header lines) with the key: base64 of RSA PKCS#1 v1.5 over
    /// SHA-256.
    fn rsa_sign(&self, hashed: &[u8]) -> String {
        let mut digest_info = SHA256_DIGEST_INFO.to_vec();
        digest_info.extend_from_slice(&Sha256::digest(hashed));
        let signature = self
            .key
            .sign(Pkcs1v15Sign::new_unprefixed(), &digest_info)
            .expect("an RSA key of 1024 bits or more signs a SHA-256 digest");
        STANDARD.encode(signature)
    }

    /// The message with an ARC set (RFC 8617, instance 1) in front: `ARC-Authentication-Results`
    /// carrying the results the corporate MTA recorded on the way in (its
    /// `Authentication-Results`, or `none`), an `ARC-Message-Signature` over the same headers
    /// and body as the DKIM signature, and an `ARC-Seal` (`cv=none`) over the three. So a
    /// receiver that trusts this domain can see how the original message authenticated, after
    /// the tenant changed its headers.
    pub fn arc_seal(&self, message: &[u8], time: u64, authserv_id: &str) -> Vec<u8> {
        let (fields, body_at) = headers::split(message);
        let body = &message[body_at.min(message.len())..];
        let results = headers::get(&fields, "authentication-results")
            .unwrap_or_else(|| format!("{authserv_id}; none"));
        let aar = format!("ARC-Authentication-Results: i=1; {results}");
        let bh = STANDARD.encode(Sha256::digest(relaxed_body(body)));
        let (names, mut hashed) = signed_headers(&fields);
        let ams_unsigned = format!(
            "ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d={}; s={}; t={time}; h={}; bh={bh}; b=",
            self.domain,
            self.selector,
            names.join(":")
        );
        hashed.extend_from_slice(&relaxed_header(ams_unsigned.as_bytes()));
        let ams = format!("{ams_unsigned}{}", self.rsa_sign(&hashed));
        let seal_unsigned = format!(
            "ARC-Seal: i=1; a=rsa-sha256; cv=none; d={}; s={}; t={time}; b=",
            self.domain, self.selector
        );
        let mut sealed = Vec::new();
        for h in [aar.as_str(), ams.as_str()] {
            sealed.extend_from_slice(&relaxed_header(h.as_bytes()));
            sealed.extend_from_slice(b"\r\n");
        }
        sealed.extend_from_slice(&relaxed_header(seal_unsigned.as_bytes()));
        let seal = format!("{seal_unsigned}{}", self.rsa_sign(&sealed));
        let mut out = Vec::with_capacity(message.len() + 1600);
        for h in [seal.as_str(), ams.as_str(), aar.as_str()] {
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(message);
        out
    }
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Relaxed header canonicalization (RFC 6376, 3.4.2), without the final CRLF.
fn relaxed_header(raw: &[u8]) -> Vec<u8> {
    let colon = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
    let name = String::from_utf8_lossy(&raw[..colon])
        .trim()
        .to_ascii_lowercase();
    let value: Vec<u8> = raw
        .get(colon + 1..)
        .unwrap_or_default()
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    let mut out = name.into_bytes();
    out.push(b':');
    out.extend_from_slice(&collapse(&value, true));
    out
}

/// Runs of spaces and tabs as one space; with `trim`, none at either end.
fn collapse(s: &[u8], trim: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut in_wsp = false;
    for &b in s {
        if is_wsp(b) {
            in_wsp = true;
        } else {
            if in_wsp && !(trim && out.is_empty()) {
                out.push(b' ');
            }
            in_wsp = false;
            out.push(b);
        }
    }
    out
}

/// Relaxed body canonicalization (RFC 6376, 3.4.4).
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = body
        .split(|&b| b == b'\n')
        .map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            // Inner runs become one space; trailing whitespace goes.
            let mut c = collapse(l, false);
            if c.last() == Some(&b' ') {
                c.pop();
            }
            if l.first().is_some_and(|&b| is_wsp(b)) && !c.is_empty() && c[0] != b' ' {
                c.insert(0, b' ');
            }
            c
        })
        .collect();
    while lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    let mut out = Vec::with_capacity(body.len());
    for l in lines {
        out.extend_from_slice(&l);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The [`SIGNED`] headers the message has, and their relaxed canonical form as a signature
/// hashes them. The last instance of a header is the one a verifier takes first.
fn signed_headers(fields: &[headers::Field<'_>]) -> (Vec<&'static str>, Vec<u8>) {
    let mut names = Vec::new();
    let mut hashed = Vec::new();
    for name in SIGNED {
        if let Some(f) = fields
            .iter()
            .rev()
            .find(|f| f.name.eq_ignore_ascii_case(name))
        {
            names.push(*name);
            hashed.extend_from_slice(&relaxed_header(f.raw));
            hashed.extend_from_slice(b"\r\n");
        }
    }
    (names, hashed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalization_follows_rfc_6376_examples() {
        // RFC 6376, 3.4.5.
        assert_eq!(relaxed_header(b"A: X"), b"a:X");
        assert_eq!(relaxed_header(b"B : Y\t\r\n\tZ  "), b"b:Y Z");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
    }
}
