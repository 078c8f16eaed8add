//! The tenant's keys and everything it does with them (INV-5).
//!
//! An operator configures one or more *master keys* (`kid:base64`, the first one active). From
//! each master key five subkeys are derived with HMAC-SHA256, one per purpose, so that no key
//! is ever used for two things:
//!
//! - `subject-tag`: the keyed hash of a subject that finds an identity without storing the
//!   subject in clear;
//! - `email-tag`: the keyed hash of a (lowercased) address that finds an identity first known
//!   by its address only, without storing the address in clear;
//! - `member-tag`: the keyed hash of (group, identity) that finds a membership row without
//!   saying whose it is, and differs between groups for the same person;
//! - `mail-tag`: the keyed hash of a delivery address in the mail module's own tables (bad
//!   addresses), which links to no identity or membership row;
//! - `seal`: the XChaCha20-Poly1305 key that seals profiles and the identity id inside a
//!   membership row, and the mail module's messages, delivery recipients and group
//!   owners;
//! - `audit-pseudonym`: the keyed hash behind the audit chain's pseudonyms of people
//!   ([`SealKey::audit_pseudonym`], see [`crate::audit`]).
//!
//! Every sealed value is `nonce (24 random bytes) || ciphertext`, and its associated data names
//! the purpose and the row it belongs to, so a value copied into another row (or another
//! column) does not open. Plaintexts are padded so a ciphertext's length says nothing useful:
//! a profile to a multiple of [`PROFILE_BLOCK`] bytes. (There is no per-person list of groups:
//! a person's groups are found by probing membership tags, so no row is rewritten per person on
//! a membership write; see [`crate::store`].)
//!
//! Writes always use the active key; reads try every configured key, so keys can be rotated by
//! putting a new one first and keeping the old ones until every row has been rewritten
//! ([`crate::reseal`] rewrites them all at once).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use domain::{Email, GroupId, IdentityKind, Subject};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Length of a master key, in bytes.
pub const KEY_LEN: usize = 32;
/// Length of the random nonce in front of every sealed value.
const NONCE_LEN: usize = 24;
/// A profile's plaintext is padded to a multiple of this many bytes, so the ciphertext's length
/// hides the length of the subject and the address.
pub const PROFILE_BLOCK: usize = 256;
/// Longest accepted key id.
const MAX_KID_LEN: usize = 32;
/// Domain separation for everything derived or sealed here.
const DOMAIN: &[u8] = b"hush-tenant/v1/";

type HmacSha256 = Hmac<Sha256>;

/// Why the configured keys were refused. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyConfigError {
    /// No key at all.
    #[error("no seal key is configured; expected kid:base64-32-bytes[,kid2:…]")]
    Empty,
    /// An entry is not `kid:base64`.
    #[error("seal key #{0} is not of the form kid:base64-32-bytes")]
    Malformed(usize),
    /// A key id has characters other than letters, digits, `-`, `_`, or is too long.
    #[error("seal key #{0} has an invalid id: use 1 to 32 letters, digits, '-' or '_'")]
    BadKid(usize),
    /// The key is not base64 of exactly 32 bytes.
    #[error("seal key #{0} is not base64 of exactly 32 bytes")]
    BadKey(usize),
    /// Two keys share an id.
    #[error("seal key id '{0}' is configured twice")]
    DuplicateKid(String),
}

/// A sealed value did not open: the wrong key, or a value that was altered or moved to another
/// row. Either way the database is not what this tenant wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The row names a key id that is not configured.
    #[error("a row is sealed with key '{0}', which is not configured")]
    UnknownKey(String),
    /// Authentication failed or the plaintext is malformed.
    #[error("a sealed {0} does not open or is malformed")]
    Corrupt(&'static str),
}

/// What a sealed value is for; part of its associated data.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    Profile,
    Membership,
    BreakGlass,
    Mail(MailSeal),
    Directory,
}

/// What a sealed piece of mail data is (the mail module's values, each with its own associated
/// data so one cannot be moved into another's place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailSeal {
    /// A stored message, bound to its message id.
    Message,
    /// The recipient addresses of one delivery, bound to its delivery id.
    Recipients,
    /// A group's owners' addresses, bound to the group id.
    Owners,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Self::Profile => "identity-profile",
            Self::Membership => "membership-identity",
            Self::BreakGlass => "break-glass-request",
            Self::Directory => "directory-user",
            Self::Mail(MailSeal::Message) => "mail-message",
            Self::Mail(MailSeal::Recipients) => "mail-recipients",
            Self::Mail(MailSeal::Owners) => "mail-owners",
        }
    }
}

/// One master key, as the subkeys derived from it.
pub struct SealKey {
    id: String,
    subject_tag: Zeroizing<[u8; 32]>,
    email_tag: Zeroizing<[u8; 32]>,
    /// The member-tag subkey itself, kept for tests only (tags are made with `member_mac`).
    #[cfg(test)]
    member_tag: Zeroizing<[u8; 32]>,
    /// HMAC under `member_tag` with its key schedule done once: "my groups" makes one tag per
    /// group in the tenant, and cloning this halves what each costs.
    member_mac: HmacSha256,
    group_ref: Zeroizing<[u8; 32]>,
    mail_tag: Zeroizing<[u8; 32]>,
    directory_tag: Zeroizing<[u8; 32]>,
    seal: Zeroizing<[u8; 32]>,
    audit: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl SealKey {
    fn derive(id: String, master: &[u8; KEY_LEN]) -> Self {
        let sub = |purpose: &[u8]| Zeroizing::new(hmac(master, &[DOMAIN, b"subkey/", purpose]));
        let member_tag = sub(b"member-tag");
        Self {
            id,
            subject_tag: sub(b"subject-tag"),
            email_tag: sub(b"email-tag"),
            member_mac: <HmacSha256 as Mac>::new_from_slice(member_tag.as_ref())
                .expect("HMAC takes keys of any length"),
            #[cfg(test)]
            member_tag,
            group_ref: sub(b"group-ref"),
            mail_tag: sub(b"mail-tag"),
            directory_tag: sub(b"directory-tag"),
            seal: sub(b"seal"),
            audit: sub(b"audit-pseudonym"),
        }
    }

    /// The key's id, stored beside every value it sealed.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The keyed hash that finds `subject`'s identity.
    pub fn subject_tag(&self, subject: &Subject) -> Vec<u8> {
        hmac(self.subject_tag.as_ref(), &[subject.as_str().as_bytes()]).to_vec()
    }

    /// The keyed hash that finds the identity whose address is `email`. Addresses are compared
    /// lowercased (the same person whatever the case they were typed in).
    pub fn email_tag(&self, email: &Email) -> Vec<u8> {
        let lower = Zeroizing::new(email.as_str().to_lowercase());
        hmac(self.email_tag.as_ref(), &[lower.as_bytes()]).to_vec()
    }

    /// The keyed hash that finds the membership of `identity` in `group`.
    pub fn member_tag(&self, group: GroupId, identity: Uuid) -> Vec<u8> {
        let mut mac = self.member_mac.clone();
        mac.update(group.as_uuid().as_bytes());
        mac.update(identity.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// What a membership row says of its group: a keyed hash of the group's id (16 bytes,
    /// stored as a UUID), not the id, so a dump without the keys cannot say which group has how
    /// many members (issue 16). The same group under another key has another reference.
    pub fn group_ref(&self, group: GroupId) -> Uuid {
        let h = hmac(self.group_ref.as_ref(), &[group.as_uuid().as_bytes()]);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&h[..16]);
        Uuid::from_bytes(bytes)
    }

    /// A keyed pseudonym for the audit chain: HMAC-SHA256 under the audit subkey over
    /// `parts` (each length-prefixed, so no two different part lists collide), as
    /// `<key id>:<hex>`. Callers put a purpose and a group first, so one person's pseudonyms
    /// differ from group to group (INV-5).
    pub fn audit_pseudonym(&self, parts: &[&[u8]]) -> String {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(self.audit.as_ref()).expect("any key length");
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        let out: [u8; 32] = mac.finalize().into_bytes().into();
        let hex = hex::encode(out);
        format!("{}:{hex}", self.id)
    }

    /// The keyed hash of an address in the mail module's own tables (bad delivery addresses),
    /// under its own subkey, so it links to no identity row and no membership row.
    pub fn mail_tag(&self, address: &str) -> Vec<u8> {
        hmac(self.mail_tag.as_ref(), &[address.as_bytes()]).to_vec()
    }

    /// The keyed tag of `address` as a recipient of the delivery whose bounce token is `token`:
    /// under the mail subkey, bound to the token, so the same address's tags in two deliveries
    /// differ and link nothing.
    pub fn bounce_tag(&self, token: &str, address: &str) -> Vec<u8> {
        hmac(
            self.mail_tag.as_ref(),
            &[b"bounce\0", token.as_bytes(), b"\0", address.as_bytes()],
        )
        .to_vec()
    }

    /// Seals mail data (a message, a delivery's recipients, a group's owners), bound to the
    /// row `context` names.
    pub fn seal_mail(&self, what: MailSeal, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.seal(Purpose::Mail(what), context, plaintext)
    }

    /// Opens mail data sealed by [`Self::seal_mail`] for the same row.
    pub fn open_mail(
        &self,
        what: MailSeal,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.open(Purpose::Mail(what), context, sealed)
    }

    fn aad(purpose: Purpose, context: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(DOMAIN.len() + 32 + context.len());
        aad.extend_from_slice(DOMAIN);
        aad.extend_from_slice(purpose.name().as_bytes());
        aad.push(0);
        aad.extend_from_slice(context);
        aad
    }

    fn seal(&self, purpose: Purpose, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new(self.seal.as_ref().into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = Self::aad(purpose, context);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any plaintext that fits in memory");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    fn open(
        &self,
        purpose: Purpose,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let corrupt = || SealError::Corrupt(purpose.name());
        if sealed.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(self.seal.as_ref().into());
        let aad = Self::aad(purpose, context);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| corrupt())
    }

    /// Seals an identity's profile, bound to the identity's id.
    pub fn seal_profile(&self, identity: Uuid, profile: &Profile) -> Vec<u8> {
        let json = Zeroizing::new(serde_json::to_vec(profile).expect("a profile serialises"));
        let len = u16::try_from(json.len()).expect("a profile is far below 64 KiB");
        let padded_len = (2 + json.len()).div_ceil(PROFILE_BLOCK) * PROFILE_BLOCK;
        let mut plain = Zeroizing::new(Vec::with_capacity(padded_len));
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(&json);
        plain.resize(padded_len, 0);
        self.seal(Purpose::Profile, identity.as_bytes(), &plain)
    }

    /// Opens a profile sealed by [`Self::seal_profile`] for the same identity.
    pub fn open_profile(&self, identity: Uuid, sealed: &[u8]) -> Result<Profile, SealError> {
        let corrupt = || SealError::Corrupt(Purpose::Profile.name());
        let plain = self.open(Purpose::Profile, identity.as_bytes(), sealed)?;
        let (len, rest) = plain.split_first_chunk::<2>().ok_or_else(corrupt)?;
        let json = rest
            .get(..usize::from(u16::from_be_bytes(*len)))
            .ok_or_else(corrupt)?;
        serde_json::from_slice(json).map_err(|_| corrupt())
    }

    /// Seals the identity id of a membership row, bound to the row's group.
    pub fn seal_member(&self, group: GroupId, identity: Uuid) -> Vec<u8> {
        self.seal(
            Purpose::Membership,
            group.as_uuid().as_bytes(),
            identity.as_bytes(),
        )
    }

    /// The keyed hash of a directory user's `field` (`userName`, lowercased, or `externalId`),
    /// under its own subkey: finds a provisioned user by what the IdP's client asks for, and
    /// links to no identity or membership row.
    pub fn directory_tag(&self, field: &str, value: &str) -> Vec<u8> {
        hmac(
            self.directory_tag.as_ref(),
            &[field.as_bytes(), &[0], value.as_bytes()],
        )
        .to_vec()
    }

    /// Seals a directory user (the SCIM resource the IdP provisioned), bound to its id: its
    /// length (4 bytes) and the bytes, padded with zeros to a multiple of [`PROFILE_BLOCK`]
    /// bytes so the ciphertext's length says little.
    pub fn seal_directory(&self, user: Uuid, plaintext: &[u8]) -> Vec<u8> {
        let len = u32::try_from(plaintext.len()).expect("a directory user is far below 4 GiB");
        let mut padded = len.to_be_bytes().to_vec();
        padded.extend_from_slice(plaintext);
        padded.resize(padded.len().div_ceil(PROFILE_BLOCK) * PROFILE_BLOCK, 0);
        self.seal(Purpose::Directory, user.as_bytes(), &padded)
    }

    /// Opens what [`Self::seal_directory`] sealed for the same user.
    pub fn open_directory(&self, user: Uuid, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let padded = self.open(Purpose::Directory, user.as_bytes(), sealed)?;
        let corrupt = || SealError::Corrupt("directory user");
        let len = padded
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(corrupt)? as usize;
        padded
            .get(4..4 + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(corrupt)
    }

    /// Seals one field (`field`: its name) of break-glass request `request`: the person asked
    /// about, the justification.
    pub fn seal_break_glass(&self, request: Uuid, field: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut context = request.as_bytes().to_vec();
        context.extend_from_slice(field.as_bytes());
        self.seal(Purpose::BreakGlass, &context, plaintext)
    }

    /// Opens what [`Self::seal_break_glass`] sealed.
    pub fn open_break_glass(
        &self,
        request: Uuid,
        field: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let mut context = request.as_bytes().to_vec();
        context.extend_from_slice(field.as_bytes());
        self.open(Purpose::BreakGlass, &context, sealed)
    }

    /// Opens the identity id of a membership row of `group`.
    pub fn open_member(&self, group: GroupId, sealed: &[u8]) -> Result<Uuid, SealError> {
        let plain = self.open(Purpose::Membership, group.as_uuid().as_bytes(), sealed)?;
        let bytes: [u8; 16] = plain
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Corrupt(Purpose::Membership.name()))?;
        Ok(Uuid::from_bytes(bytes))
    }
}

/// Who an identity is, as only the tenant (holding the keys) can read it. At least one of
/// `subject` and `email` is known; both once the person has been seen with a token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The IdP's subject, once known (an identity created by address alone has none until the
    /// person is seen with a token). Profiles sealed before addresses could stand alone always
    /// carry one, so they still open.
    #[serde(default)]
    pub subject: Option<Subject>,
    /// Where the groups' mail goes, when known.
    pub email: Option<Email>,
    /// Member, guest or agent.
    pub kind: IdentityKind,
}

/// INV-6: a profile never reaches a log line, not even by `{:?}`.
impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The configured master keys, the first one active. Cheap to share behind an `Arc`.
pub struct SealKeys {
    keys: Vec<SealKey>,
}

impl fmt::Debug for SealKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(SealKey::id))
            .finish()
    }
}

impl SealKeys {
    /// Parses `kid:base64[,kid2:base64…]` (commas or line breaks between entries; blank lines
    /// and lines starting with `#` are ignored). The first key is the active one.
    pub fn parse(text: &str) -> Result<Self, KeyConfigError> {
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty());
        let mut keys: Vec<SealKey> = Vec::new();
        for (i, entry) in entries.enumerate() {
            let n = i + 1;
            let (kid, b64) = entry.split_once(':').ok_or(KeyConfigError::Malformed(n))?;
            let kid = kid.trim();
            if kid.is_empty()
                || kid.len() > MAX_KID_LEN
                || !kid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(KeyConfigError::BadKid(n));
            }
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(b64.trim())
                    .map_err(|_| KeyConfigError::BadKey(n))?,
            );
            let master: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| KeyConfigError::BadKey(n))?,
            );
            if keys.iter().any(|k| k.id == kid) {
                return Err(KeyConfigError::DuplicateKid(kid.to_string()));
            }
            keys.push(SealKey::derive(kid.to_string(), &master));
        }
        if keys.is_empty() {
            return Err(KeyConfigError::Empty);
        }
        Ok(Self { keys })
    }

    /// A fresh random key in the configuration format, `k<8 hex>:<base64>`.
    pub fn generate_text() -> Zeroizing<String> {
        let mut master = Zeroizing::new([0u8; KEY_LEN]);
        rand::thread_rng().fill_bytes(master.as_mut());
        let mut kid = [0u8; 4];
        rand::thread_rng().fill_bytes(&mut kid);
        let kid: String = kid.iter().map(|b| format!("{b:02x}")).collect();
        Zeroizing::new(format!("k{kid}:{}", STANDARD.encode(master.as_ref())))
    }

    /// The key every write uses.
    pub fn active(&self) -> &SealKey {
        &self.keys[0]
    }

    /// Every configured key, the active one first: reads try them in this order.
    pub fn all(&self) -> &[SealKey] {
        &self.keys
    }

    /// The references `group`'s membership rows may carry: one per configured key.
    pub fn group_refs(&self, group: GroupId) -> Vec<Uuid> {
        self.keys.iter().map(|k| k.group_ref(group)).collect()
    }

    /// The configured keys other than the active one.
    pub fn retired(&self) -> &[SealKey] {
        &self.keys[1..]
    }

    /// The key with id `kid`, as stored beside a sealed value.
    pub fn get(&self, kid: &str) -> Result<&SealKey, SealError> {
        self.keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or_else(|| SealError::UnknownKey(kid.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> SealKeys {
        SealKeys::parse(text).unwrap()
    }

    fn one() -> SealKeys {
        keys(&SealKeys::generate_text())
    }

    fn profile() -> Profile {
        Profile {
            subject: Some(Subject::parse("alice").unwrap()),
            email: Some(Email::parse("alice@corp.example").unwrap()),
            kind: IdentityKind::Member,
        }
    }

    #[test]
    fn key_text_parses_with_commas_or_lines_and_the_first_is_active() {
        let a = SealKeys::generate_text();
        let b = SealKeys::generate_text();
        let ring = keys(&format!("{},{}", a.as_str(), b.as_str()));
        assert_eq!(ring.all().len(), 2);
        assert_eq!(ring.active().id(), a.split(':').next().unwrap());
        let ring = keys(&format!("# rotated\n{}\n\n{}\n", b.as_str(), a.as_str()));
        assert_eq!(ring.active().id(), b.split(':').next().unwrap());
        assert_eq!(ring.retired().len(), 1);
    }

    #[test]
    fn bad_key_text_is_refused_without_echoing_key_material() {
        let k32 = STANDARD.encode([7u8; 32]);
        let k31 = STANDARD.encode([7u8; 31]);
        assert_eq!(SealKeys::parse("").unwrap_err(), KeyConfigError::Empty);
        assert_eq!(
            SealKeys::parse("nocolon").unwrap_err(),
            KeyConfigError::Malformed(1)
        );
        assert_eq!(
            SealKeys::parse(&format!("a b:{k32}")).unwrap_err(),
            KeyConfigError::BadKid(1)
        );
        assert_eq!(
            SealKeys::parse(&format!("a:{k31}")).unwrap_err(),
            KeyConfigError::BadKey(1)
        );
        assert_eq!(
            SealKeys::parse("a:!!!").unwrap_err(),
            KeyConfigError::BadKey(1)
        );
        assert_eq!(
            SealKeys::parse(&format!("a:{k32},a:{k32}")).unwrap_err(),
            KeyConfigError::DuplicateKid("a".into())
        );
        let err = SealKeys::parse(&format!("a:{k31}"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains(&k31));
        assert!(!format!("{:?}", keys(&format!("a:{k32}"))).contains(&k32));
    }

    #[test]
    fn subkeys_differ_per_purpose_and_tags_per_key() {
        let k = SealKey::derive("a".into(), &[1u8; 32]);
        assert_ne!(*k.subject_tag, *k.member_tag);
        assert_ne!(*k.subject_tag, *k.email_tag);
        assert_ne!(*k.email_tag, *k.member_tag);
        assert_ne!(*k.member_tag, *k.seal);
        let other = SealKey::derive("b".into(), &[2u8; 32]);
        let s = Subject::parse("alice").unwrap();
        assert_ne!(k.subject_tag(&s), other.subject_tag(&s));
        assert_eq!(k.subject_tag(&s), k.subject_tag(&s));
        let e = Email::parse("Alice@Corp.Example").unwrap();
        assert_eq!(
            k.email_tag(&e),
            k.email_tag(&Email::parse("alice@corp.example").unwrap())
        );
        assert_ne!(k.email_tag(&e), other.email_tag(&e));
        // A subject that reads like an address is not tagged like the address.
        assert_ne!(
            k.email_tag(&e),
            k.subject_tag(&Subject::parse("alice@corp.example").unwrap())
        );
    }

    #[test]
    fn profiles_sealed_before_addresses_stood_alone_still_open() {
        // The profile JSON of the first schema: a subject always present.
        let old: Profile =
            serde_json::from_str(r#"{"subject":"alice","email":null,"kind":"guest"}"#).unwrap();
        assert_eq!(old.subject.unwrap().as_str(), "alice");
        let by_email: Profile =
            serde_json::from_str(r#"{"email":"a@corp.example","kind":"member"}"#).unwrap();
        assert!(by_email.subject.is_none());
    }

    #[test]
    fn member_tags_differ_between_groups_for_the_same_identity() {
        let k = one();
        let id = Uuid::new_v4();
        let (g1, g2) = (GroupId::new(), GroupId::new());
        assert_ne!(k.active().member_tag(g1, id), k.active().member_tag(g2, id));
        // The kept key schedule gives the plain HMAC (tags written before it still match).
        let plain = hmac(
            k.active().member_tag.as_ref(),
            &[g1.as_uuid().as_bytes(), id.as_bytes()],
        );
        assert_eq!(k.active().member_tag(g1, id), plain.to_vec());
    }

    #[test]
    fn profiles_round_trip_and_are_bound_to_their_identity() {
        let k = one();
        let id = Uuid::new_v4();
        let sealed = k.active().seal_profile(id, &profile());
        assert_eq!(k.active().open_profile(id, &sealed).unwrap(), profile());
        assert!(k.active().open_profile(Uuid::new_v4(), &sealed).is_err());
        assert!(
            k.active().open_member(GroupId::new(), &sealed).is_err(),
            "purpose is bound"
        );
        assert_eq!((sealed.len() - NONCE_LEN - 16) % PROFILE_BLOCK, 0);
    }

    #[test]
    fn profiles_of_different_lengths_seal_to_the_same_length() {
        let k = one();
        let mut long = profile();
        long.subject = Some(Subject::parse("s".repeat(100)).unwrap());
        long.email = Some(Email::parse(format!("{}@corp.example", "e".repeat(60))).unwrap());
        let short = Profile {
            email: None,
            ..profile()
        };
        let id = Uuid::new_v4();
        assert_eq!(
            k.active().seal_profile(id, &long).len(),
            k.active().seal_profile(id, &short).len()
        );
    }

    #[test]
    fn membership_seals_are_bound_to_their_group_and_fresh_each_time() {
        let k = one();
        let (g, id) = (GroupId::new(), Uuid::new_v4());
        let a = k.active().seal_member(g, id);
        let b = k.active().seal_member(g, id);
        assert_ne!(a, b, "a fresh nonce every time");
        assert_eq!(k.active().open_member(g, &a).unwrap(), id);
        assert!(k.active().open_member(GroupId::new(), &a).is_err());
        let mut tampered = a.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(k.active().open_member(g, &tampered).is_err());
    }

    #[test]
    fn values_sealed_with_a_retired_key_still_open_by_its_id() {
        let old = SealKeys::generate_text();
        let ring_before = keys(&old);
        let (g, id) = (GroupId::new(), Uuid::new_v4());
        let sealed = ring_before.active().seal_member(g, id);
        let kid = ring_before.active().id().to_string();
        let ring_after = keys(&format!(
            "{},{}",
            SealKeys::generate_text().as_str(),
            old.as_str()
        ));
        assert_ne!(ring_after.active().id(), kid);
        assert_eq!(
            ring_after
                .get(&kid)
                .unwrap()
                .open_member(g, &sealed)
                .unwrap(),
            id
        );
        assert!(matches!(
            ring_after.get("nope"),
            Err(SealError::UnknownKey(_))
        ));
    }

    #[test]
    fn profile_debug_shows_neither_subject_nor_email() {
        let d = format!("{:?}", profile());
        assert!(!d.contains("alice"));
    }
}
