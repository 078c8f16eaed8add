//! `hush audit verify`: walks the whole chain, recomputing every hash, checking that sequence
//! numbers run from 1 without gaps and that every event names the hash of the one before, then
//! checks every checkpoint's signature and that the chain still holds the hash it signed.
//! Answers every finding in sequence order; the first is where to look.

use super::chain::GENESIS;
use super::checkpoint::{key_id, Checkpoint};
use super::db::Db;
use ed25519_dalek::VerifyingKey;
use std::fmt;

/// Events read per query.
const PAGE: i64 = 5_000;

/// What is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A checkpoint line whose signature does not verify (or is by another key).
    BadCheckpoint {
        /// 1-based line in the checkpoint file.
        line: usize,
        /// Why.
        why: &'static str,
    },
    /// Events `from..=to` are missing from the table (a gap, or the end cut off).
    Missing {
        /// The first missing sequence number.
        from: i64,
        /// The last one known to be missing.
        to: i64,
    },
    /// The event's hash is not the hash of its fields: edited, or moved from another position.
    Altered {
        /// Its sequence number.
        seq: i64,
    },
    /// The event does not name the hash of the event before it: one was inserted, removed or
    /// reordered before it.
    Unlinked {
        /// Its sequence number.
        seq: i64,
    },
    /// The chain is self-consistent but a signed checkpoint does not match it: events after
    /// the last matching checkpoint were rewritten.
    Rewritten {
        /// The first sequence number that may have been rewritten.
        from: i64,
        /// The checkpoint that no longer matches.
        checkpoint: i64,
    },
}

impl Finding {
    /// The sequence number the finding is at (0 for the checkpoint file itself).
    pub fn seq(&self) -> i64 {
        match self {
            Self::BadCheckpoint { .. } => 0,
            Self::Missing { from, .. } => *from,
            Self::Altered { seq } | Self::Unlinked { seq } => *seq,
            Self::Rewritten { from, .. } => *from,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadCheckpoint { line, why } => write!(f, "checkpoint file line {line}: {why}"),
            Self::Missing { from, to } if from == to => write!(f, "event {from}: missing"),
            Self::Missing { from, to } => write!(f, "events {from} to {to}: missing"),
            Self::Altered { seq } => write!(
                f,
                "event {seq}: altered (its hash does not match its content, or it was moved from another position)"
            ),
            Self::Unlinked { seq } => write!(
                f,
                "event {seq}: does not follow the event before it (an event was removed, inserted or reordered)"
            ),
            Self::Rewritten { from, checkpoint } => write!(
                f,
                "events {from} to {checkpoint}: rewritten (the signed checkpoint at {checkpoint} does not match the chain)"
            ),
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Events read.
    pub events: u64,
    /// The last event's sequence number and hash (hex), if any.
    pub head: Option<(i64, String)>,
    /// Checkpoints read.
    pub checkpoints: usize,
    /// What is wrong, in sequence order; empty when the chain holds.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// The first finding, by sequence number.
    pub fn first(&self) -> Option<&Finding> {
        self.findings.first()
    }
}

/// Verifies the chain in `db` against `checkpoints`, signed by `key`.
pub async fn verify(
    db: &Db,
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
) -> Result<Report, sqlx::Error> {
    let mut report = Report {
        checkpoints: checkpoints.len(),
        ..Report::default()
    };
    // The hash at each checkpointed sequence number, as found while walking.
    let mut wanted: std::collections::BTreeMap<i64, Option<String>> =
        checkpoints.iter().map(|c| (c.seq, None)).collect();
    let mut expected = 1i64;
    let mut prev = GENESIS.to_vec();
    let mut after = 0i64;
    loop {
        let page = db.events_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in page {
            report.events += 1;
            if e.seq > expected {
                report.findings.push(Finding::Missing {
                    from: expected,
                    to: e.seq - 1,
                });
            }
            if e.computed_hash().as_slice() != e.hash.as_slice() {
                report.findings.push(Finding::Altered { seq: e.seq });
            } else if e.prev_hash != prev {
                // Reported only for events that are themselves intact, so one edit is one
                // finding, and a gap is reported as a gap.
                if e.seq == expected {
                    report.findings.push(Finding::Unlinked { seq: e.seq });
                }
            }
            if let Some(slot) = wanted.get_mut(&e.seq) {
                *slot = Some(hex::encode(&e.hash));
            }
            prev = e.hash.clone();
            expected = e.seq + 1;
            report.head = Some((e.seq, hex::encode(&e.hash)));
        }
    }
    let end = expected - 1;
    let id = key_id(key);
    let mut last_good = 0i64;
    let mut rewritten = false;
    for (i, c) in checkpoints.iter().enumerate() {
        let line = i + 1;
        if c.key_id != id {
            report.findings.push(Finding::BadCheckpoint {
                line,
                why: "signed by another key",
            });
            continue;
        }
        if !c.verifies(key) {
            report.findings.push(Finding::BadCheckpoint {
                line,
                why: "signature does not verify",
            });
            continue;
        }
        if c.seq > end {
            report.findings.push(Finding::Missing {
                from: end + 1,
                to: c.seq,
            });
            continue;
        }
        match wanted.get(&c.seq).cloned().flatten() {
            Some(h) if h == c.hash => last_good = last_good.max(c.seq),
            _ if !rewritten => {
                rewritten = true;
                report.findings.push(Finding::Rewritten {
                    from: last_good + 1,
                    checkpoint: c.seq,
                });
            }
            _ => {}
        }
    }
    report.findings.sort_by_key(Finding::seq);
    report.findings.dedup();
    Ok(report)
}
