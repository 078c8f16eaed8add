//! The chain itself: what an event is, how its hash is computed, and how a batch of new events
//! is linked onto the head. Pure: no I/O, so `hush audit verify` and the tenant compute the
//! same bytes.

use domain::GroupId;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// Domain separation of the event hash (its version: a new encoding gets a new tag).
const HASH_DOMAIN: &[u8] = b"hush-audit-event/v1\0";

/// One event of the chain, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When it was appended, milliseconds since the Unix epoch (the tenant's clock).
    pub at_ms: i64,
    /// The service whose call caused it (`control-api`, `bulk-api`, …) or `isolated-tenant`
    /// for the tenant's own work (re-sealing).
    pub service: String,
    /// Who acted: `self` (the person the event is about, present with a token), a keyed
    /// pseudonym `kid:hex` of a person, or none (a service acting on its own authority).
    pub actor: Option<String>,
    /// What happened, e.g. `membership.added`.
    pub action: String,
    /// The group concerned, if any (in clear, as in the membership table).
    pub group_id: Option<String>,
    /// Whom it concerned, as a keyed pseudonym `kid:hex`, if anyone.
    pub subject: Option<String>,
    /// The `x-request-id` of the call that caused it.
    pub request_id: Option<String>,
    /// The hash of the event before it ([`GENESIS`] for the first).
    pub prev_hash: Vec<u8>,
    /// SHA-256 over the canonical encoding of every field above ([`event_hash`]).
    pub hash: Vec<u8>,
}

impl Event {
    /// The hash this event's fields (and its `prev_hash`) call for.
    pub fn computed_hash(&self) -> [u8; 32] {
        event_hash(
            self.seq,
            self.at_ms,
            &self.service,
            self.actor.as_deref(),
            &self.action,
            self.group_id.as_deref(),
            self.subject.as_deref(),
            self.request_id.as_deref(),
            &self.prev_hash,
        )
    }
}

/// An event to append; the chain adds sequence, time, service, request id and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// What happened.
    pub action: String,
    /// Who acted (see [`Event::actor`]).
    pub actor: Option<String>,
    /// The group concerned.
    pub group: Option<GroupId>,
    /// Whom it concerned, as a pseudonym.
    pub subject: Option<String>,
}

impl NewEvent {
    /// An event about `group` (or none), with no person in it.
    pub fn new(action: &str, group: Option<GroupId>) -> Self {
        Self {
            action: action.to_string(),
            actor: None,
            group,
            subject: None,
        }
    }

    /// The same event about `subject` (a pseudonym).
    #[must_use]
    pub fn about(mut self, subject: String) -> Self {
        self.subject = Some(subject);
        self
    }

    /// The same event, acted by `actor` (`self` or a pseudonym).
    #[must_use]
    pub fn by(mut self, actor: Option<String>) -> Self {
        self.actor = actor;
        self
    }
}

fn field(h: &mut Sha256, value: Option<&[u8]>) {
    match value {
        None => h.update([0u8]),
        Some(v) => {
            h.update([1u8]);
            h.update((v.len() as u64).to_be_bytes());
            h.update(v);
        }
    }
}

/// SHA-256 over the canonical encoding of an event: a domain tag, `seq` and `at_ms` as 8-byte
/// big-endian integers, then each text field as a presence byte (0 absent, 1 present) followed
/// by its 8-byte big-endian length and its UTF-8 bytes, then `prev_hash` the same way. No two
/// different events encode alike.
#[allow(clippy::too_many_arguments)]
pub fn event_hash(
    seq: i64,
    at_ms: i64,
    service: &str,
    actor: Option<&str>,
    action: &str,
    group_id: Option<&str>,
    subject: Option<&str>,
    request_id: Option<&str>,
    prev_hash: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    field(&mut h, Some(service.as_bytes()));
    field(&mut h, actor.map(str::as_bytes));
    field(&mut h, Some(action.as_bytes()));
    field(&mut h, group_id.map(str::as_bytes));
    field(&mut h, subject.map(str::as_bytes));
    field(&mut h, request_id.map(str::as_bytes));
    field(&mut h, Some(prev_hash));
    h.finalize().into()
}

/// Links `new` onto a head at `(seq, hash)`: numbers them from `seq + 1`, stamps them with
/// `at_ms`, `service` and `request_id`, and hashes each over the one before.
pub fn link(
    head_seq: i64,
    head_hash: &[u8],
    at_ms: i64,
    service: &str,
    request_id: Option<&str>,
    new: &[NewEvent],
) -> Vec<Event> {
    let mut prev = head_hash.to_vec();
    let mut out = Vec::with_capacity(new.len());
    for (i, e) in new.iter().enumerate() {
        let mut event = Event {
            seq: head_seq + 1 + i as i64,
            at_ms,
            service: service.to_string(),
            actor: e.actor.clone(),
            action: e.action.clone(),
            group_id: e.group.map(|g| g.as_uuid().to_string()),
            subject: e.subject.clone(),
            request_id: request_id.map(str::to_string),
            prev_hash: prev,
            hash: Vec::new(),
        };
        event.hash = event.computed_hash().to_vec();
        prev = event.hash.clone();
        out.push(event);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linked_events_chain_and_every_field_counts() {
        let g = GroupId::from(uuid::Uuid::new_v4());
        let new = [
            NewEvent::new("group.provisioned", Some(g)),
            NewEvent::new("membership.added", Some(g)).about("k:ab".into()),
        ];
        let chain = link(0, &GENESIS, 5, "control-api", Some("r1"), &new);
        assert_eq!(chain[0].seq, 1);
        assert_eq!(chain[0].prev_hash, GENESIS.to_vec());
        assert_eq!(chain[1].prev_hash, chain[0].hash);
        assert_eq!(chain[1].computed_hash().to_vec(), chain[1].hash);
        // Moving a value from one field to the next changes the hash.
        let a = event_hash(1, 1, "s", Some("x"), "a", None, None, None, &GENESIS);
        let b = event_hash(1, 1, "s", None, "a", Some("x"), None, None, &GENESIS);
        let c = event_hash(1, 1, "s", Some(""), "a", None, None, None, &GENESIS);
        let d = event_hash(1, 1, "s", None, "a", None, None, None, &GENESIS);
        assert!(a != b && a != c && c != d);
        let mut altered = chain[1].clone();
        altered.seq = 3;
        assert_ne!(altered.computed_hash().to_vec(), altered.hash);
    }
}
