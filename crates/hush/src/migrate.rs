//! `hush migrate FILE`: imports a legacy export — one group per line (NDJSON): name, contact
//! address, label, owners and members — creating each group through control-api and its
//! membership through bulk jobs (label checked per member by the tenant, as on every path).
//! Resumable: the catalog ids of groups already created are kept in `FILE.hush-state`, and
//! membership jobs carry idempotency keys derived from the file, so a rerun after a crash
//! creates nothing twice and resubmits nothing. Tells its progress on standard error, and ends
//! with a summary: counts, and each group it could not import (line, name, control-api's
//! reason). `hush migrate` exits 2 when anything was refused.
//!
//! `hush-dev gen-legacy` writes a synthetic export of this format for tests and benchmarks.

use crate::bulk::{BulkClient, Submit};
use crate::groups::GroupsClient;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One group of a legacy export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LegacyGroup {
    /// Display name.
    pub name: String,
    /// The group's mail address in the old system (its local part is kept).
    pub contact_address: String,
    /// Sensitivity label: General, Confidential or Highly Confidential.
    pub label: String,
    /// Owners' subjects.
    pub owners: Vec<String>,
    /// Members, by subject and/or address.
    pub members: Vec<LegacyMember>,
}

/// One member of a legacy group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LegacyMember {
    /// The IdP subject, when the old system had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The member's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Options of `hush migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// The legacy export (NDJSON, one group per line).
    pub file: PathBuf,
    /// control-api's base URL.
    #[arg(
        long,
        env = "HUSH_CONTROL_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub control_url: String,
    /// bulk-api's base URL.
    #[arg(long, env = "HUSH_BULK_URL", default_value = "http://127.0.0.1:8082")]
    pub bulk_url: String,
    /// An operator's token (a member-kind user with the operator role).
    #[arg(long, env = "HUSH_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Operations per membership job.
    #[arg(long, default_value_t = 200_000)]
    pub ops_per_job: usize,
    /// Where progress is kept for a rerun (default: FILE.hush-state).
    #[arg(long)]
    pub state: Option<PathBuf>,
}

/// A group of the export that was not imported, or whose owners were not set: where it is in
/// the file, its name (from the operator's own file) and why, in control-api's words. Never a
/// member: a membership is only ever counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupRefusal {
    /// The group's line in the export, from 1.
    pub line: usize,
    /// The group's name in the export.
    pub name: String,
    /// What was refused.
    pub what: Refused,
    /// control-api's status and the problem's detail.
    pub reason: String,
}

/// What of a group the migration could not import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Refused {
    /// The group itself: not created, none of its members imported.
    Group,
    /// Its owners: the group was created without them.
    Owners,
}

/// What a migration did: counts, and the groups it could not import with the reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrateSummary {
    /// Groups created by this run.
    pub groups_created: u64,
    /// Groups an earlier run had created.
    pub groups_existing: u64,
    /// Groups control-api refused (e.g. an unknown label, an address taken), with no members
    /// imported.
    pub groups_refused: u64,
    /// Memberships of refused groups, not imported.
    pub members_of_refused_groups: u64,
    /// Each refused group, and each group whose owners were not set, in file order.
    pub refusals: Vec<GroupRefusal>,
    /// Membership jobs run (or found done).
    pub jobs: u64,
    /// Memberships applied.
    pub applied: u64,
    /// Memberships refused by a group's label.
    pub label_refused: u64,
    /// Memberships naming nobody the tenant could resolve.
    pub unknown_identity: u64,
    /// Memberships of a group that was not active.
    pub unknown_group: u64,
    /// Wall time.
    pub seconds: f64,
}

impl MigrateSummary {
    /// Whether anything of the export was not imported: a group, its owners, or a membership
    /// (refused by a label, naming nobody known, or of a group not active).
    #[must_use]
    pub fn anything_refused(&self) -> bool {
        !self.refusals.is_empty()
            || self.groups_refused > 0
            || self.label_refused > 0
            || self.unknown_identity > 0
            || self.unknown_group > 0
    }

    /// `hush migrate`'s exit status: 0 when everything was imported, 2 when the migration ran to
    /// its end but refused something (the summary says what), so a script notices (1 is an
    /// error that stopped it).
    #[must_use]
    pub fn exit_status(&self) -> u8 {
        if self.anything_refused() {
            2
        } else {
            0
        }
    }
}

/// What a refused request's answer says, for an operator: status and the problem's detail.
fn reason(status: reqwest::StatusCode, body: &serde_json::Value) -> String {
    match body["detail"].as_str() {
        Some(detail) => format!("{status}: {detail}"),
        None => status.to_string(),
    }
}

fn join_policy(label: &str) -> &'static str {
    match label {
        "General" => "open",
        "Confidential" => "approval",
        _ => "invite",
    }
}

/// A stable key for this export, for idempotency keys.
fn file_key(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest as _;
    let meta = std::fs::metadata(path)?;
    let mut h = sha2::Sha256::new();
    h.update(path.canonicalize()?.display().to_string());
    h.update(meta.len().to_le_bytes());
    Ok(hex::encode(&h.finalize()[..8]))
}

/// How often the group phase says how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Runs a migration, telling its progress on standard error.
pub async fn migrate(args: &MigrateArgs) -> anyhow::Result<MigrateSummary> {
    let started = Instant::now();
    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.hush-state", args.file.display())));
    let mut created: HashMap<usize, String> = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(&state_path) {
        for l in text.lines() {
            if let Some((i, id)) = l.split_once('\t') {
                created.insert(i.parse()?, id.to_string());
            }
        }
    }
    let mut state = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&state_path)
        .with_context(|| format!("opening {}", state_path.display()))?;
    let groups = GroupsClient::new(&args.control_url, &args.token)?;
    let mut summary = MigrateSummary::default();

    // Phase 1: the groups, in file order.
    let file = std::fs::File::open(&args.file)?;
    let size = file.metadata()?.len().max(1);
    let mut read = 0u64;
    let reader = std::io::BufReader::new(file);
    let mut told = Instant::now();
    for (i, text) in reader.lines().enumerate() {
        let text = text?;
        read += text.len() as u64 + 1;
        if told.elapsed() >= PROGRESS_EVERY {
            eprintln!("groups: line {}, {}% of the file", i + 1, read * 100 / size);
            told = Instant::now();
        }
        if text.trim().is_empty() {
            continue;
        }
        if created.contains_key(&i) {
            summary.groups_existing += 1;
            continue;
        }
        let g: LegacyGroup =
            serde_json::from_str(&text).with_context(|| format!("line {}", i + 1))?;
        let local = g
            .contact_address
            .split('@')
            .next()
            .unwrap_or("")
            .to_string();
        let (status, body) = groups
            .create(
                &json!({"name": g.name, "description": "Imported from the legacy system",
                "label": g.label, "join_policy": join_policy(&g.label), "address": local}),
            )
            .await?;
        if !status.is_success() {
            summary.groups_refused += 1;
            summary.members_of_refused_groups += g.members.len() as u64;
            summary.refusals.push(GroupRefusal {
                line: i + 1,
                name: g.name,
                what: Refused::Group,
                reason: reason(status, &body),
            });
            continue;
        }
        let id = body["id"].as_str().context("no group id")?.to_string();
        if !g.owners.is_empty() {
            let (status, body) = groups.patch(&id, &json!({"owners": g.owners})).await?;
            if !status.is_success() {
                summary.refusals.push(GroupRefusal {
                    line: i + 1,
                    name: g.name.clone(),
                    what: Refused::Owners,
                    reason: reason(status, &body),
                });
            }
        }
        writeln!(state, "{i}\t{id}")?;
        created.insert(i, id);
        summary.groups_created += 1;
    }
    state.flush()?;

    // Wait until every group is provisioned, so no membership meets a group still in the saga.
    eprintln!(
        "groups: {} created, {} already there, {} refused; waiting for them to be provisioned",
        summary.groups_created, summary.groups_existing, summary.groups_refused
    );
    let started_waiting = Instant::now();
    let limit = Duration::from_secs(600);
    for id in created.values() {
        let left = limit.saturating_sub(started_waiting.elapsed());
        groups.wait_provisioned(id, left).await?;
    }

    // Phase 2: membership, in jobs of about `ops_per_job` operations cut at group boundaries
    // in file order, so a rerun cuts the same jobs and their idempotency keys find them.
    let bulk = BulkClient::new(&args.bulk_url, &args.token)?;
    let key = file_key(&args.file)?;
    let reader = std::io::BufReader::new(std::fs::File::open(&args.file)?);
    let dir = tempfile::tempdir()?;
    let mut batch = 0usize;
    let mut ops = 0usize;
    let input = dir.path().join("job.ndjson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&input)?);
    let mut lines = reader.lines().enumerate().peekable();
    while let Some((i, text)) = lines.next() {
        let text = text?;
        if let (Some(id), false) = (created.get(&i), text.trim().is_empty()) {
            let g: LegacyGroup = serde_json::from_str(&text)?;
            for m in &g.members {
                let mut op = json!({"op": "add", "group_id": id});
                if let Some(s) = &m.subject {
                    op["subject"] = json!(s);
                }
                if let Some(e) = &m.email {
                    op["email"] = json!(e);
                }
                serde_json::to_writer(&mut out, &op)?;
                out.write_all(b"\n")?;
                ops += 1;
            }
        }
        if ops > 0 && (ops >= args.ops_per_job || lines.peek().is_none()) {
            out.flush()?;
            let how = Submit {
                on_bad_lines: Some("skip".into()),
                idempotency_key: Some(format!("migrate-{key}-{batch}")),
                csv: false,
                name: Some(format!("hush migrate, batch {batch}")),
            };
            let (status, job) = bulk.submit_file(&input, &how).await?;
            anyhow::ensure!(
                status.is_success(),
                "bulk-api refused a membership job: {job}"
            );
            let id = job["id"].as_str().context("no job id")?.to_string();
            eprintln!(
                "memberships: job {} ({ops} operations) submitted as {id}",
                batch + 1
            );
            let done = bulk.wait(&id, Duration::from_secs(24 * 3600)).await?;
            anyhow::ensure!(
                done["state"] == "succeeded",
                "membership job {id} ended {}",
                done["state"]
            );
            summary.jobs += 1;
            summary.applied += done["applied"].as_u64().unwrap_or(0);
            let r = &done["rejected_by_reason"];
            summary.label_refused += r["label_refused"].as_u64().unwrap_or(0);
            summary.unknown_identity += r["unknown_identity"].as_u64().unwrap_or(0);
            summary.unknown_group += r["unknown_group"].as_u64().unwrap_or(0);
            eprintln!(
                "memberships: job {} done; {} applied so far",
                batch + 1,
                summary.applied
            );
            batch += 1;
            ops = 0;
            out = std::io::BufWriter::new(std::fs::File::create(&input)?);
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_migration_that_refused_anything_exits_2() {
        let clean = MigrateSummary {
            groups_created: 3,
            applied: 10,
            ..MigrateSummary::default()
        };
        assert_eq!(clean.exit_status(), 0);
        let refusals = [
            MigrateSummary {
                groups_refused: 1,
                ..clean.clone()
            },
            MigrateSummary {
                label_refused: 1,
                ..clean.clone()
            },
            MigrateSummary {
                unknown_identity: 1,
                ..clean.clone()
            },
            MigrateSummary {
                unknown_group: 1,
                ..clean.clone()
            },
            MigrateSummary {
                refusals: vec![GroupRefusal {
                    line: 1,
                    name: "Owners".into(),
                    what: Refused::Owners,
                    reason: "403 Forbidden".into(),
                }],
                ..clean.clone()
            },
        ];
        for s in refusals {
            assert_eq!(s.exit_status(), 2, "{s:?}");
        }
    }
}
