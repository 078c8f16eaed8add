//! DKIM signing (RFC 6376) and ARC sealing (RFC 8617) of the copies, with the group domain's
//! key, through Stalwart's `mail-auth` on `ring` (constant-time RSA; the `rsa` crate's timing
//! side channel, RUSTSEC-2023-0071, is gone from this path).
//!
//! The copies of a message are identical, so a message is signed (and sealed) once, when it
//! is stored, and the signature holds for every copy. An RSA-2048 signature with `ring` takes
//! about a millisecond, so it stays in line with the `DATA` reply; what can be slow (the DNS
//! lookups that verify an incoming ARC chain) is bounded by `HUSH_MAIL_DNS_TIMEOUT_SECS`
//! and done once per message, before the sender policy is applied, so the answer's timing
//! does not depend on the policy (see [`super::dmarc`]).
//!
//! - DKIM covers the headers a receiver shows or filters on ([`SIGNED`]) and the body,
//!   `relaxed/relaxed`, `d=` the group's domain.
//! - ARC: the chain the message arrived with is verified, and the next instance is added with
//!   `i=` one past the last and `cv=` `none` (no chain), `pass` or `fail`. The
//!   ARC-Message-Signature covers the DKIM-Signature too, so a later hop that checks it sees the
//!   tenant's signature was intact. A chain whose last seal already says `cv=fail` is not
//!   sealed again (RFC 8617, 5.1.2), nor is a chain that could not be checked because DNS did
//!   not answer in time (a `cv=fail` would then be a false claim).
//!
//! Keys: RSA (PKCS#1 or PKCS#8 PEM), at least 2048 bits (smaller keys are refused at start:
//! RFC 8301 makes 1024 the floor, and receivers increasingly demand 2048), or Ed25519 (PKCS#8
//! PEM, RFC 8463; DKIM only: ARC knows only `rsa-sha256`).

use super::headers;
use mail_auth::common::crypto::{Algorithm, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter as _, Writable};
use mail_auth::dkim::{Canonicalization, Done};
use mail_auth::{ArcOutput, AuthenticationResults, DkimResult};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;

/// Headers signed when present.
pub const SIGNED: &[&str] = &[
    "From",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Post",
];

/// The smallest RSA key accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The private key, shared by the DKIM signer and the ARC sealer (which each own a key).
#[derive(Clone)]
struct Key(Arc<KeyPair>);

enum KeyPair {
    Rsa(RsaKey<Sha256>),
    Ed25519(Ed25519Key),
}

impl SigningKey for Key {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        match &*self.0 {
            KeyPair::Rsa(k) => k.sign(input),
            KeyPair::Ed25519(k) => k.sign(input),
        }
    }

    fn algorithm(&self) -> Algorithm {
        match &*self.0 {
            KeyPair::Rsa(_) => Algorithm::RsaSha256,
            KeyPair::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }
}

/// A DKIM (and ARC) key for one domain.
pub struct DkimSigner {
    domain: String,
    selector: String,
    /// The DNS TXT record to publish at `<selector>._domainkey.<domain>`.
    record: String,
    dkim: mail_auth::dkim::DkimSigner<Key, Done>,
    /// The key, for ARC (RSA keys only: ARC has no Ed25519 algorithm).
    key: Key,
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
    /// A signer for `domain` with `selector`, from a private key in PEM: RSA (PKCS#1 or
    /// PKCS#8, at least [`MIN_RSA_BITS`]) or Ed25519 (PKCS#8).
    pub fn from_pem(domain: &str, selector: &str, pem: &[u8]) -> anyhow::Result<Self> {
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|_| anyhow::anyhow!("not a private key in PEM (PKCS#1 or PKCS#8)"))?;
        let (pair, record) = match &der {
            PrivateKeyDer::Pkcs1(_) | PrivateKeyDer::Pkcs8(_) => match rsa_key(&der)? {
                Some(pair) => pair,
                None => ed25519_key(&der)?,
            },
            _ => anyhow::bail!("the DKIM key must be RSA or Ed25519 (PKCS#1 or PKCS#8 PEM)"),
        };
        let domain = domain.to_ascii_lowercase();
        let key = Key(Arc::new(pair));
        let dkim = mail_auth::dkim::DkimSigner::from_key(key.clone())
            .domain(domain.clone())
            .selector(selector)
            .headers(SIGNED.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        Ok(Self {
            domain,
            selector: selector.to_string(),
            record,
            dkim,
            key,
        })
    }

    /// Loads the key from a PEM file.
    pub fn load(domain: &str, selector: &str, path: &Path) -> anyhow::Result<Self> {
        let pem = zeroize::Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("reading the DKIM key {}: {e}", path.display()))?,
        );
        Self::from_pem(domain, selector, &pem)
            .map_err(|e| anyhow::anyhow!("the DKIM key {}: {e}", path.display()))
    }

    /// The domain it signs for.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The DNS TXT record to publish at `<selector>._domainkey.<domain>`
    /// (`v=DKIM1; k=rsa; p=…` or `k=ed25519`).
    pub fn dns_record(&self) -> &str {
        &self.record
    }

    /// Whether the key can seal ARC sets (RSA keys only).
    pub fn can_seal(&self) -> bool {
        matches!(&*self.key.0, KeyPair::Rsa(_))
    }

    /// The message with a `DKIM-Signature` header in front.
    pub fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let signature = self
            .dkim
            .sign(message)
            .map_err(|e| anyhow::anyhow!("DKIM signing failed: {e}"))?;
        let header = signature.to_header();
        let mut out = Vec::with_capacity(header.len() + message.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(message);
        Ok(out)
    }

    /// The message with the next ARC set in front: `chain` is the verified chain the message
    /// arrived with, `results` what this hop found (they become the
    /// ARC-Authentication-Results). `None` when it must not be sealed (see the module docs) or
    /// the key cannot seal.
    ///
    /// The set is written here rather than by `mail-auth`'s sealer, which hashes repeated
    /// headers top-down; RFC 6376, 5.4.2 takes them bottom-up, and a copy carries two
    /// DKIM-Signatures (the sender's and ours) that the ARC-Message-Signature covers.
    pub fn arc_seal(
        &self,
        message: &[u8],
        results: &AuthenticationResults<'_>,
        chain: &ArcOutput<'_>,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        if !self.can_seal() || !chain.can_be_sealed() {
            return Ok(None);
        }
        let (fields, body_at) = headers::split(message);
        let Some(prior) = prior_sets(&fields) else {
            return Ok(None);
        };
        if prior.len() != chain.sets().len() {
            // A set that did not parse: the chain's length is unknown, so no `i=` is right.
            return Ok(None);
        }
        let i = prior.len() + 1;
        let cv = match (prior.is_empty(), chain.result()) {
            (true, _) => "none",
            (false, DkimResult::Pass) => "pass",
            (false, _) => "fail",
        };
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let found = results.to_header();
        let found = found
            .split_once(':')
            .map_or("", |(_, v)| v)
            .trim()
            .to_string();
        // With no result at all, the value says so (RFC 8601, 2.2: `none`).
        let found = match found.strip_suffix(';') {
            Some(authserv_id) => format!("{authserv_id}; none"),
            None => found,
        };
        let aar = format!("ARC-Authentication-Results: i={i}; {found}");
        let body = &message[body_at.min(message.len())..];
        let bh = b64(ring::digest::digest(&ring::digest::SHA256, &relaxed_body(body)).as_ref());
        let (names, mut hashed) = signed_fields(&fields, SIGNED.iter().chain(&["DKIM-Signature"]));
        let ams = format!(
            "ARC-Message-Signature: i={i}; a=rsa-sha256; c=relaxed/relaxed; d={}; s={};\r\n\tt={t}; h={};\r\n\tbh={bh}; b=",
            self.domain,
            self.selector,
            names.join(":"),
        );
        hashed.extend_from_slice(&relaxed_header(ams.as_bytes()));
        let ams = format!("{ams}{}", self.rsa_sign(&hashed)?);
        let seal = format!(
            "ARC-Seal: i={i}; a=rsa-sha256; cv={cv}; d={}; s={}; t={t}; b=",
            self.domain, self.selector
        );
        let mut sealed = Vec::new();
        for f in prior
            .iter()
            .flatten()
            .copied()
            .chain([aar.as_bytes(), ams.as_bytes()])
        {
            sealed.extend_from_slice(&relaxed_header(f));
            sealed.extend_from_slice(b"\r\n");
        }
        sealed.extend_from_slice(&relaxed_header(seal.as_bytes()));
        let seal = format!("{seal}{}", self.rsa_sign(&sealed)?);
        let mut out = Vec::with_capacity(message.len() + 2048);
        for h in [&seal, &ams, &aar] {
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(message);
        Ok(Some(out))
    }

    /// Base64 of the RSA-SHA256 signature of `data`.
    fn rsa_sign(&self, data: &[u8]) -> anyhow::Result<String> {
        let signature = self
            .key
            .sign(data)
            .map_err(|e| anyhow::anyhow!("ARC signing failed: {e}"))?;
        Ok(b64(&signature))
    }
}

/// The ARC sets already on the message, in instance order, each as its
/// ARC-Authentication-Results, ARC-Message-Signature and ARC-Seal fields; `None` when a set is
/// incomplete, doubled or out of sequence (the chain cannot be extended correctly).
fn prior_sets<'m>(fields: &[headers::Field<'m>]) -> Option<Vec<[&'m [u8]; 3]>> {
    let mut sets: std::collections::BTreeMap<usize, [Option<&'m [u8]>; 3]> = Default::default();
    for f in fields {
        let slot = match f.name.to_ascii_lowercase().as_str() {
            "arc-authentication-results" => 0,
            "arc-message-signature" => 1,
            "arc-seal" => 2,
            _ => continue,
        };
        let value = f.value();
        let i = value.split(';').find_map(|t| {
            let (k, v) = t.split_once('=')?;
            (k.trim() == "i").then(|| v.trim().parse::<usize>().ok())?
        })?;
        let set = sets.entry(i).or_default();
        if set[slot].replace(f.raw).is_some() {
            return None;
        }
    }
    let mut out = Vec::with_capacity(sets.len());
    for (n, (i, set)) in sets.into_iter().enumerate() {
        if i != n + 1 {
            return None;
        }
        out.push([set[0]?, set[1]?, set[2]?]);
    }
    Some(out)
}

/// The `h=` list and the relaxed canonical form of the headers a signature covers: for each
/// name, every instance the message has, the bottom one first (RFC 6376, 5.4.2).
fn signed_fields<'n>(
    fields: &[headers::Field<'_>],
    names: impl Iterator<Item = &'n &'static str>,
) -> (Vec<&'static str>, Vec<u8>) {
    let mut listed = Vec::new();
    let mut hashed = Vec::new();
    for name in names {
        for f in fields
            .iter()
            .rev()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
        {
            listed.push(*name);
            hashed.extend_from_slice(&relaxed_header(f.raw));
            hashed.extend_from_slice(b"\r\n");
        }
    }
    (listed, hashed)
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

/// The key as RSA, with its DNS record; `None` when it is not an RSA key at all.
fn rsa_key(der: &PrivateKeyDer<'_>) -> anyhow::Result<Option<(KeyPair, String)>> {
    // `ring` refuses RSA keys under 2048 bits; ask it directly to tell that apart from a key
    // that is not RSA at all, so the error says what to do.
    let parsed = match der {
        PrivateKeyDer::Pkcs1(k) => ring::signature::RsaKeyPair::from_der(k.secret_pkcs1_der()),
        PrivateKeyDer::Pkcs8(k) => ring::signature::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        _ => return Ok(None),
    };
    let pair = match parsed {
        Ok(pair) => pair,
        Err(e) if e.to_string() == "TooSmall" => anyhow::bail!(
            "RSA keys under {MIN_RSA_BITS} bits are refused; generate a new one with \
             `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`"
        ),
        Err(e) if matches!(der, PrivateKeyDer::Pkcs1(_)) => {
            anyhow::bail!("not a usable RSA private key ({e})")
        }
        Err(_) => return Ok(None),
    };
    if pair.public().modulus_len() * 8 < MIN_RSA_BITS {
        anyhow::bail!("RSA keys under {MIN_RSA_BITS} bits are refused");
    }
    let spki = rsa_spki(pair.public().as_ref());
    let key = RsaKey::<Sha256>::from_key_der(der.clone_key())
        .map_err(|e| anyhow::anyhow!("not a usable RSA private key ({e})"))?;
    Ok(Some((
        KeyPair::Rsa(key),
        format!("v=DKIM1; k=rsa; p={}", b64(&spki)),
    )))
}

fn ed25519_key(der: &PrivateKeyDer<'_>) -> anyhow::Result<(KeyPair, String)> {
    let PrivateKeyDer::Pkcs8(k) = der else {
        anyhow::bail!("the DKIM key must be RSA or Ed25519 (PKCS#8)");
    };
    let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(k.secret_pkcs8_der())
        .map_err(|_| anyhow::anyhow!("the DKIM key must be RSA or Ed25519 (PKCS#8)"))?;
    let record = format!("v=DKIM1; k=ed25519; p={}", b64(&key.public_key()));
    Ok((KeyPair::Ed25519(key), record))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A DER length.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// The SubjectPublicKeyInfo (RFC 5280) around a PKCS#1 `RSAPublicKey`: the form DKIM records
/// carry in practice (RFC 6376, 3.6.1), which every verifier reads.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x03];
    der_len(pkcs1.len() + 1, &mut bit_string);
    bit_string.push(0);
    bit_string.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(ALGORITHM.len() + bit_string.len(), &mut out);
    out.extend_from_slice(&ALGORITHM);
    out.extend_from_slice(&bit_string);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openssl_key(args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .output()
            .expect("openssl makes the test key");
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_refused_with_a_clear_error() {
        let small = openssl_key(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
        let e = DkimSigner::from_pem("groups.example", "s", &small).unwrap_err();
        assert!(e.to_string().contains("under 2048 bits"), "{e}");
        let fine = openssl_key(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
        let signer = DkimSigner::from_pem("Groups.Example", "s", &fine).unwrap();
        assert!(signer.can_seal());
        assert_eq!(signer.domain(), "groups.example");
        assert!(signer
            .dns_record()
            .starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"));
    }

    #[test]
    fn ed25519_keys_sign_but_do_not_seal() {
        let key = openssl_key(&["-algorithm", "ED25519"]);
        let signer = DkimSigner::from_pem("groups.example", "ed", &key).unwrap();
        assert!(!signer.can_seal());
        assert!(signer.dns_record().starts_with("v=DKIM1; k=ed25519; p="));
        let signed = signer
            .sign(b"From: a@b.example\r\nSubject: x\r\n\r\nhi\r\n")
            .unwrap();
        let text = String::from_utf8(signed).unwrap();
        assert!(text.starts_with("DKIM-Signature:"), "{text}");
        assert!(text.contains("a=ed25519-sha256"), "{text}");
    }

    #[test]
    fn canonicalization_follows_rfc_6376_examples() {
        // RFC 6376, 3.4.5.
        assert_eq!(relaxed_header(b"A: X"), b"a:X");
        assert_eq!(relaxed_header(b"B : Y\t\r\n\tZ  "), b"b:Y Z");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(DkimSigner::from_pem("d.example", "s", b"not pem").is_err());
    }
}
