//! What a queued chunk holds, and the format it is stored in (sealed, in `job_chunks.sealed`).
//!
//! The format is bulk-api's own, with an explicit version, and only the worker turns it into
//! the tenant's wire type ([`tenant_api::BatchOp`]) when it sends a batch. So a change to the
//! tenant's API never changes what is on disk, and a job queued before an upgrade is still read
//! after it.
//!
//! Versions:
//! - **0**, the format before versions: a bare JSON array of operations, which was the tenant's
//!   wire type as it stood then: `[{"op":"add","group_id":"<uuid>","subject":"…",
//!   "email":"…"}, …]` (`subject` and `email` each optional). Read, never written.
//! - **1**: `{"format":1,"ops":[…]}`, each operation as in version 0 but with `subject` and
//!   `email` always present (`null` when unknown).
//!
//! Chunks in version 0 are read as they are, not migrated: a chunk row lives only as long as its
//! job (its input is purged when the job ends: INV-5), so the old format drains with the jobs
//! queued before the upgrade, and a migration would have to open and reseal people's data only
//! to write the same operations again.

use crate::seal::{JobKey, SealError};
use domain::{Email, GroupId, Subject};
use serde::{Deserialize, Serialize};
use std::fmt;
use tenant_api::{BatchOp, BatchOpKind};
use uuid::Uuid;

/// The version [`seal`] writes.
pub const FORMAT: u32 = 1;

/// One operation of a job: add or remove one person (by subject, address, or both) in one
/// group.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Op {
    /// Add or remove.
    pub op: OpKind,
    /// The catalog's id of the group.
    pub group_id: GroupId,
    /// The IdP's subject, when the person is known by it (`null` when not; absent in
    /// version 0).
    pub subject: Option<Subject>,
    /// The person's address, when known (likewise).
    pub email: Option<Email>,
}

/// INV-6: the operation and the group, never the person.
impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Op {{ op: {:?}, group_id: {}, .. }}",
            self.op, self.group_id
        )
    }
}

/// Whether an operation adds or removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// Make the person a member.
    Add,
    /// Make sure the person is not a member.
    Remove,
}

impl From<Op> for BatchOp {
    fn from(o: Op) -> Self {
        Self {
            op: match o.op {
                OpKind::Add => BatchOpKind::Add,
                OpKind::Remove => BatchOpKind::Remove,
            },
            group_id: o.group_id,
            subject: o.subject,
            email: o.email,
        }
    }
}

/// Why a stored chunk could not be read. The texts name no person (they end up in a job's
/// `error`).
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// Not sealed by the configured key, or altered.
    #[error("a chunk did not open with the configured seal key")]
    Seal(#[from] SealError),
    /// Written by a newer bulk-api, in a format this one does not know.
    #[error("a job chunk is in format {0}, which this version of bulk-api does not read")]
    UnknownFormat(u32),
    /// Opened, but does not hold operations in any known format.
    #[error("a job chunk does not hold operations in a known format")]
    Malformed,
}

/// Version 1 as written.
#[derive(Serialize)]
struct V1Out<'a> {
    format: u32,
    ops: &'a [Op],
}

/// Version 1 as read (its `format` already read by [`Head`]).
#[derive(Deserialize)]
struct V1 {
    ops: Vec<Op>,
}

/// Just the version of a versioned chunk.
#[derive(Deserialize)]
struct Head {
    format: u32,
}

/// `ops` in the current format, sealed as chunk `seq` of `job`.
pub fn seal(key: &JobKey, job: Uuid, seq: u64, ops: &[Op]) -> Vec<u8> {
    key.seal(job, seq, &encode(ops))
}

/// Opens chunk `seq` of `job`, in whichever format it was written.
pub fn open(key: &JobKey, job: Uuid, seq: u64, sealed: &[u8]) -> Result<Vec<Op>, ChunkError> {
    decode(&key.open(job, seq, sealed)?)
}

fn encode(ops: &[Op]) -> Vec<u8> {
    serde_json::to_vec(&V1Out {
        format: FORMAT,
        ops,
    })
    .expect("operations always serialize")
}

fn decode(plain: &[u8]) -> Result<Vec<Op>, ChunkError> {
    // No serde error text is passed on: it may quote a value, and values name people.
    let malformed = |_| ChunkError::Malformed;
    match plain.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(plain).map_err(malformed),
        Some(b'{') => match serde_json::from_slice::<Head>(plain)
            .map_err(malformed)?
            .format
        {
            1 => Ok(serde_json::from_slice::<V1>(plain).map_err(malformed)?.ops),
            n => Err(ChunkError::UnknownFormat(n)),
        },
        _ => Err(ChunkError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "0b8e6f0e-8a5c-4f57-9d2e-2f1f4c6a9b10";

    fn ops() -> Vec<Op> {
        let group_id = GroupId::from(Uuid::parse_str(GROUP).unwrap());
        vec![
            Op {
                op: OpKind::Add,
                group_id,
                subject: Some(Subject::parse("alice").unwrap()),
                email: Some(Email::parse("alice@corp.example").unwrap()),
            },
            Op {
                op: OpKind::Remove,
                group_id,
                subject: None,
                email: Some(Email::parse("bob@corp.example").unwrap()),
            },
        ]
    }

    #[test]
    fn chunks_are_written_in_version_1_and_read_back() {
        let text = String::from_utf8(encode(&ops())).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"format":1,"ops":[{{"op":"add","group_id":"{GROUP}","subject":"alice","email":"alice@corp.example"}},{{"op":"remove","group_id":"{GROUP}","subject":null,"email":"bob@corp.example"}}]}}"#
            ),
            "the stored format is pinned: change it only with a new version"
        );
        assert_eq!(decode(text.as_bytes()).unwrap(), ops());
    }

    #[test]
    fn chunks_queued_before_versions_are_read_as_version_0() {
        // Byte for byte what bulk-api stored before chunks had a version.
        let v0 = format!(
            r#"[{{"op":"add","group_id":"{GROUP}","subject":"alice","email":"alice@corp.example"}},{{"op":"remove","group_id":"{GROUP}","email":"bob@corp.example"}}]"#
        );
        assert_eq!(decode(v0.as_bytes()).unwrap(), ops());
        let key = JobKey::random();
        let job = Uuid::new_v4();
        let sealed = key.seal(job, 7, v0.as_bytes());
        assert_eq!(open(&key, job, 7, &sealed).unwrap(), ops());
    }

    #[test]
    fn sealed_chunks_open_only_with_their_key_and_place() {
        let key = JobKey::random();
        let job = Uuid::new_v4();
        let sealed = seal(&key, job, 2, &ops());
        assert_eq!(open(&key, job, 2, &sealed).unwrap(), ops());
        assert!(matches!(
            open(&key, job, 3, &sealed),
            Err(ChunkError::Seal(_))
        ));
    }

    #[test]
    fn unknown_and_malformed_chunks_are_refused_without_naming_anyone() {
        let newer = r#"{"format":2,"ops":[],"more":"alice@corp.example"}"#;
        let err = decode(newer.as_bytes()).unwrap_err();
        assert!(matches!(err, ChunkError::UnknownFormat(2)), "{err}");
        for bad in [
            r#"[{"op":"zap","group_id":"x","email":"alice@corp.example"}]"#,
            r#"{"format":1,"ops":[{"op":"add","group_id":"x","email":"alice@corp.example"}]}"#,
            r#"{"ops":[]}"#,
            "alice@corp.example",
            "",
        ] {
            let err = decode(bad.as_bytes()).unwrap_err();
            assert!(matches!(err, ChunkError::Malformed), "{bad}: {err}");
            assert!(!err.to_string().contains("alice"));
        }
    }

    #[test]
    fn operations_go_to_the_tenant_as_its_wire_type() {
        let wire: Vec<BatchOp> = ops().into_iter().map(BatchOp::from).collect();
        assert_eq!(wire[0].op, BatchOpKind::Add);
        assert_eq!(wire[1].op, BatchOpKind::Remove);
        assert_eq!(wire[1].email.as_ref().unwrap().as_str(), "bob@corp.example");
        assert!(!format!("{:?}", ops()).contains("alice"));
    }
}
