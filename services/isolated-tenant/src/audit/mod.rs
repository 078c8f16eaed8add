//! The tamper-evident audit chain (INV-8).
//!
//! Every state change in the tenant — groups provisioned and deprovisioned, identities created,
//! bound and offboarded, memberships added and removed, key rotation — and every privileged
//! read appends an event in the same transaction as the change itself, as its last statements
//! ([`Append::append`]), so a change that rolls back leaves no event and the chain's head is
//! locked only briefly. Each event carries the hash of the one before ([`chain`]); the table
//! refuses UPDATE, DELETE and TRUNCATE (migration `0003_audit.sql`); signed [`checkpoint`]s
//! outside the database catch a rewrite of the whole table; [`verify`] names the first break.
//!
//! # What an event says about people (INV-5, INV-6)
//!
//! Nothing in clear: no subject, no address. A person appears as a keyed pseudonym
//! (`kid:hex`, HMAC-SHA256 under the `audit-pseudonym` subkey of the active seal key, see
//! [`crate::seal::SealKey::audit_pseudonym`]):
//!
//! - the subject of a membership or identity event about a group: [`member`], over
//!   (group, identity id) — the same person has unrelated pseudonyms in two groups, as their
//!   membership rows do;
//! - an acting person identified by a token (break-glass officers and auditors): [`person`],
//!   over (group, subject), per group too;
//! - `self` as actor when the person acted for themselves (self-join, leave);
//! - offboarding, which concerns every group of a person at once, is ONE event with no group,
//!   whose subject is [`identity_alone`] over the identity id under its own purpose: it cannot
//!   be joined to the per-group pseudonyms without the key, and no per-group event is written,
//!   since a burst of per-group events in one transaction would link the person's groups.
//!
//! A pseudonym can be recomputed by whoever holds the seal keys (an investigation with the key
//! custodian), never by a reader of the database alone. After a key rotation new events use
//! the new key's pseudonyms; the key id prefix says which.
//!
//! # Adds and removes (INV-3)
//!
//! The first add of a person creates their identity; that is recorded as the add itself, not
//! as a separate `identity.created` event, because the add must run the same statements
//! whether or not the tenant knew the person (INV-3), and an extra event would be one more row
//! in the chain's INSERT. Binding a subject to an identity first known by address (a rare path
//! that already runs its own statements) is recorded as `identity.bound`.
//!
//! Add and remove record the attempt (`membership.added` / `membership.removed`) whenever the
//! write ran, never whether the person already was (or was not) a member: the store does not
//! know it without an extra query, and the chain must not say more than the owner-facing API.
//! Refusals (label, unknown group) write nothing, so they append nothing.

pub mod chain;
pub mod checkpoint;
pub mod context;
pub mod db;
pub mod lookup;
pub mod verify;

pub use chain::{Event, NewEvent};
pub use context::Context;
pub use db::{Append, Db};

use crate::seal::SealKey;
use domain::{GroupId, Subject};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// The pseudonym of identity `identity` in `group`.
pub fn member(key: &SealKey, group: GroupId, identity: Uuid) -> String {
    key.audit_pseudonym(&[b"member", group.as_uuid().as_bytes(), identity.as_bytes()])
}

/// The pseudonym of the person signed in as `subject`, acting about `group`.
pub fn person(key: &SealKey, group: GroupId, subject: &Subject) -> String {
    key.audit_pseudonym(&[
        b"person",
        group.as_uuid().as_bytes(),
        subject.as_str().as_bytes(),
    ])
}

/// The pseudonym of identity `identity` in an event about no group (offboarding); unrelated to
/// its per-group pseudonyms without the key.
pub fn identity_alone(key: &SealKey, identity: Uuid) -> String {
    key.audit_pseudonym(&[b"identity", identity.as_bytes()])
}

/// The actor of a membership write: `self` when the person is present with a token (the
/// request carries their kind), none when a service or an owner acts for them.
pub fn self_or_service(present: bool) -> Option<String> {
    present.then(|| "self".to_string())
}

/// The actions the tenant records, so readers and tests agree on the names.
pub mod action {
    /// A distribution group was created.
    pub const GROUP_PROVISIONED: &str = "group.provisioned";
    /// A group's display name changed.
    pub const GROUP_RENAMED: &str = "group.renamed";
    /// A group and its membership were removed.
    pub const GROUP_DEPROVISIONED: &str = "group.deprovisioned";
    /// A subject was bound to an identity first known by address.
    pub const IDENTITY_BOUND: &str = "identity.bound";
    /// An address moved from one identity to the person now holding it (no group: the
    /// identity losing it is named by its identity-only pseudonym).
    pub const IDENTITY_ADDRESS_RELEASED: &str = "identity.address-released";
    /// An identity was removed from every group and deleted.
    pub const IDENTITY_OFFBOARDED: &str = "identity.offboarded";
    /// An add ran (whether or not the person already was a member).
    pub const MEMBERSHIP_ADDED: &str = "membership.added";
    /// A remove ran (whether or not the person was a member).
    pub const MEMBERSHIP_REMOVED: &str = "membership.removed";
    /// A batch of re-sealing for a key rotation committed.
    pub const KEY_ROTATION_RESEALED: &str = "key-rotation.resealed";
    /// A group's mail policy (who may send, its owners) was set.
    pub const MAIL_POLICY_SET: &str = "mail.policy-set";
    /// An identity's kind changed: the person's token or the directory said another kind than
    /// the one stored (no group: the identity is named by its identity-only pseudonym).
    pub const IDENTITY_KIND_CHANGED: &str = "identity.kind-changed";
    /// A membership ended because the group's label no longer admits the member's kind (their
    /// kind changed, or the label was tightened). Nobody else is told who.
    pub const MEMBERSHIP_ENDED_BY_LABEL: &str = "membership.ended-by-label";
    /// The directory (SCIM) provisioned someone the tenant had not seen: an identity in no
    /// group, of the directory's kind.
    pub const IDENTITY_SYNCED: &str = "identity.synced";
    /// A group's entry rule (its label's name and whether it admits guests and agents) was set.
    pub const GROUP_RULE_SET: &str = "group.rule-set";
}

/// The audit chain's checkpoints. With no signing key the chain is still written and
/// verifiable link by link, but a rewrite of the whole table is not caught: production
/// configurations set a key (`hush up` and `hush deploy-init` generate one).
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// File holding the Ed25519 key that signs audit checkpoints (base64 of the 32-byte seed,
    /// mode 0600; `hush up` and `hush deploy-init` generate one, with the public key beside it
    /// as `<file>.pub` for `hush audit verify`). Unset: no checkpoints are written.
    #[arg(long = "audit-signing-key-file", env = "HUSH_AUDIT_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// Append-only file the signed checkpoints go to, one JSON line each. Default:
    /// `audit-checkpoints.jsonl` beside the signing key. Keep it (or a copy) where whoever
    /// administers the database cannot rewrite it.
    #[arg(long = "audit-checkpoints-file", env = "HUSH_AUDIT_CHECKPOINTS_FILE")]
    pub checkpoints_file: Option<PathBuf>,
    /// A checkpoint is written once this many events were appended since the last one…
    #[arg(
        long = "audit-checkpoint-every-events",
        env = "HUSH_AUDIT_CHECKPOINT_EVERY_EVENTS",
        default_value_t = 1000
    )]
    pub checkpoint_every_events: u64,
    /// …or once this many seconds passed since the last one with any new event.
    #[arg(
        long = "audit-checkpoint-every-secs",
        env = "HUSH_AUDIT_CHECKPOINT_EVERY_SECS",
        default_value_t = 60
    )]
    pub checkpoint_every_secs: u64,
}

impl AuditArgs {
    /// No checkpoints (tests, and call sites that set a key explicitly).
    pub fn without_checkpoints() -> Self {
        Self {
            signing_key_file: None,
            checkpoints_file: None,
            checkpoint_every_events: 1000,
            checkpoint_every_secs: 60,
        }
    }

    /// Checkpoints signed by the key in `key_file`, to the default file beside it.
    pub fn with_signing_key(key_file: PathBuf) -> Self {
        Self {
            signing_key_file: Some(key_file),
            ..Self::without_checkpoints()
        }
    }

    /// Where checkpoints go, if they are written at all.
    pub fn checkpoints_path(&self) -> Option<PathBuf> {
        let key = self.signing_key_file.as_ref()?;
        Some(self.checkpoints_file.clone().unwrap_or_else(|| {
            key.parent()
                .map(|d| d.join("audit-checkpoints.jsonl"))
                .unwrap_or_else(|| PathBuf::from("audit-checkpoints.jsonl"))
        }))
    }

    /// Starts the checkpoint writer on `db` when a signing key is configured (the key is
    /// loaded now, so a bad key fails start-up).
    pub fn start(&self, db: Db) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
        let (Some(key), Some(path)) = (self.signing_key_file.as_ref(), self.checkpoints_path())
        else {
            tracing::warn!(
                "no audit signing key (HUSH_AUDIT_SIGNING_KEY_FILE): the audit chain is written \
                 but no signed checkpoints are, so a rewrite of the whole table would go unnoticed"
            );
            return Ok(None);
        };
        let signer = checkpoint::Signer::load(key)?;
        let secs = self.checkpoint_every_secs.max(1);
        let schedule = checkpoint::Schedule {
            every_events: self.checkpoint_every_events.max(1),
            every: Duration::from_secs(secs),
            poll: Duration::from_secs(1).min(Duration::from_secs(secs)),
        };
        tracing::info!(key_id = signer.key_id(), path = %path.display(), "audit checkpoints on");
        Ok(Some(tokio::spawn(checkpoint::run(
            db, signer, path, schedule,
        ))))
    }
}

#[cfg(test)]
mod tests;
