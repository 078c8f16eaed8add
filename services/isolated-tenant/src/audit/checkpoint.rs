//! Signed checkpoints: every so many events or seconds the tenant signs the chain's last
//! `(seq, hash)` with an Ed25519 key and appends it as one JSON line to a file outside the
//! database. Whoever rewrites the whole table (triggers off, hashes recomputed) cannot make the
//! rewritten chain match a checkpoint signed before, and cannot sign a new one without the key.
//!
//! Key files are text: the secret key file holds the 32-byte Ed25519 seed in base64 (mode
//! 0600); the public key file holds the 32-byte public key in base64. A key's id is the first
//! 8 bytes of SHA-256 of its public key, in hex.

use super::db::Db;
use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// One line of the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last event's sequence number when it was signed.
    pub seq: i64,
    /// That event's hash, hex.
    pub hash: String,
    /// When it was signed, RFC 3339 (UTC).
    pub time: String,
    /// The signing key's id.
    pub key_id: String,
    /// Ed25519 signature over [`Checkpoint::message`], base64.
    pub signature: String,
}

impl Checkpoint {
    /// What is signed: a domain tag and every other field, one per line.
    pub fn message(seq: i64, hash: &str, time: &str, key_id: &str) -> Vec<u8> {
        format!("hush-audit-checkpoint/v1\n{seq}\n{hash}\n{time}\n{key_id}").into_bytes()
    }

    /// Whether the signature is `key`'s over this checkpoint.
    pub fn verifies(&self, key: &VerifyingKey) -> bool {
        let Ok(sig) = STANDARD.decode(&self.signature) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&sig) else {
            return false;
        };
        key.verify(
            &Self::message(self.seq, &self.hash, &self.time, &self.key_id),
            &sig,
        )
        .is_ok()
    }
}

/// The id of a public key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The checkpoint signing key.
pub struct Signer {
    key: SigningKey,
    id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("key_id", &self.id).finish()
    }
}

impl Signer {
    /// Reads a secret key file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the audit signing key {}", path.display()))?,
        );
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| {
            anyhow::anyhow!("{}: not an audit signing key (base64)", path.display())
        })?);
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| anyhow::anyhow!("{}: an audit signing key is 32 bytes", path.display()))?;
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(&key.verifying_key());
        Ok(Self { key, id })
    }

    /// The key's id.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// The public half.
    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// A checkpoint of `(seq, hash)`, signed now.
    pub fn sign(&self, seq: i64, hash: &[u8]) -> Checkpoint {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let hash = hex::encode(hash);
        let signature = self
            .key
            .sign(&Checkpoint::message(seq, &hash, &time, &self.id));
        Checkpoint {
            seq,
            hash,
            time,
            key_id: self.id.clone(),
            signature: STANDARD.encode(signature.to_bytes()),
        }
    }
}

/// Reads a public key file (base64 of the 32-byte key).
pub fn load_public_key(path: &Path) -> anyhow::Result<VerifyingKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the audit public key {}", path.display()))?;
    parse_public_key(&text).with_context(|| format!("{}", path.display()))
}

/// Parses a public key (base64 of the 32-byte key).
pub fn parse_public_key(text: &str) -> anyhow::Result<VerifyingKey> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| anyhow::anyhow!("not an audit public key (base64)"))?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("an audit public key is 32 bytes"))?;
    Ok(VerifyingKey::from_bytes(&bytes)?)
}

/// Where the public key of the secret key file `secret` is written: beside it, `.pub` added.
pub fn public_key_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes a fresh signing key to `path` (mode 0600) and its public key to
/// [`public_key_path`], unless `path` exists (then only the public file is written if missing).
/// For `hush up` and `hush deploy-init`; a key that signed checkpoints is never replaced.
pub fn generate_signing_key_file(path: &Path) -> anyhow::Result<()> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
    let text = Zeroizing::new(format!("{}\n", STANDARD.encode(seed.as_ref())));
    service_kit::files::create_secret(path, &text)?;
    let public = public_key_path(path);
    if !public.exists() {
        let signer = Signer::load(path)?;
        let text = format!("{}\n", STANDARD.encode(signer.public().as_bytes()));
        service_kit::files::write_new(&public, &text, service_kit::files::Access::Public)
            .with_context(|| format!("writing {}", public.display()))?;
    }
    Ok(())
}

/// Appends one checkpoint line to `path` (created if missing) and syncs it.
pub fn append_line(path: &Path, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut line = serde_json::to_string(checkpoint)?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_data())
        .with_context(|| format!("appending to {}", path.display()))?;
    Ok(())
}

/// Every line of a checkpoint file, parsed; a line that does not parse is an error naming it.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<Checkpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not a checkpoint", path.display(), i + 1))
        })
        .collect()
}

/// Signs the chain's current end into `path` unless the last checkpoint there already covers
/// it. Answers the checkpoint written, if any.
pub async fn checkpoint_now(
    db: &Db,
    signer: &Signer,
    path: &Path,
    last_seq: i64,
) -> anyhow::Result<Option<Checkpoint>> {
    let Some((seq, hash)) = db.latest().await? else {
        return Ok(None);
    };
    if seq <= last_seq {
        return Ok(None);
    }
    let cp = signer.sign(seq, &hash);
    append_line(path, &cp)?;
    Ok(Some(cp))
}

/// How often checkpoints are written.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// After this many new events…
    pub every_events: u64,
    /// …or this long since the last one, whichever comes first (only when there are new events).
    pub every: Duration,
    /// How often the chain's end is looked at.
    pub poll: Duration,
}

/// Runs forever: checks the chain's end every `schedule.poll` and writes a checkpoint when
/// `every_events` new events have been appended or `every` has passed with any new event.
/// A failure is logged and tried again at the next poll.
pub async fn run(db: Db, signer: Signer, path: PathBuf, schedule: Schedule) {
    let mut tick = tokio::time::interval(schedule.poll.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut writer = Writer::new(db, signer, path, schedule);
    loop {
        tick.tick().await;
        writer.run_once().await;
    }
}

/// The checkpoint writer's state between two looks at the chain: [`run`] calls
/// [`Writer::run_once`] every poll; tests call it themselves, so they wait for the writer's
/// decision instead of for time to pass.
pub struct Writer {
    db: Db,
    signer: Signer,
    path: PathBuf,
    schedule: Schedule,
    /// The last checkpoint's sequence number (from the file, so a restart continues it).
    last_seq: i64,
    /// When the last checkpoint was written (or the writer started).
    since: Instant,
}

impl Writer {
    /// A writer continuing the checkpoints already in `path`.
    pub fn new(db: Db, signer: Signer, path: PathBuf, schedule: Schedule) -> Self {
        let last_seq = read_file(&path)
            .ok()
            .and_then(|c| c.last().map(|c| c.seq))
            .unwrap_or(0);
        Self {
            db,
            signer,
            path,
            schedule,
            last_seq,
            since: Instant::now(),
        }
    }

    /// Looks at the chain's end once and writes a checkpoint when one is due; answers it. A
    /// failure is logged (and tried again at the next look).
    pub async fn run_once(&mut self) -> Option<Checkpoint> {
        let latest = match self.db.latest().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "audit checkpoint: reading the chain failed");
                return None;
            }
        };
        let (seq, _) = latest?;
        let due = u64::try_from(seq - self.last_seq).unwrap_or(0)
            >= self.schedule.every_events.max(1)
            || self.since.elapsed() >= self.schedule.every;
        if seq <= self.last_seq || !due {
            return None;
        }
        match checkpoint_now(&self.db, &self.signer, &self.path, self.last_seq).await {
            Ok(Some(cp)) => {
                self.last_seq = cp.seq;
                self.since = Instant::now();
                tracing::info!(seq = cp.seq, "audit checkpoint signed");
                Some(cp)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "audit checkpoint: writing failed");
                None
            }
        }
    }
}
