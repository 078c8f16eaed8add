//! `hush bulk`: operators' client of bulk-api. `submit FILE` streams an NDJSON or CSV file
//! (never read whole into memory) and follows the job with a progress bar (rate, ETA, counts);
//! Ctrl-C stops following, not the job. `status|pause|resume|cancel ID` steer a job.

use anyhow::Context as _;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where bulk-api is and who is asking: shared by every `hush bulk` command.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// bulk-api's base URL.
    #[arg(long, env = "HUSH_BULK_URL", default_value = "http://127.0.0.1:8082")]
    pub bulk_url: String,
    /// A bearer token of an operator (or of an owner, for jobs on their own groups).
    #[arg(long, env = "HUSH_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// What to do with malformed lines of a job's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnBadLines {
    /// Refuse the whole job (nothing is queued) and list the bad lines.
    Reject,
    /// Queue the well-formed lines and count the others.
    Skip,
}

impl OnBadLines {
    fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Skip => "skip",
        }
    }
}

/// Which job a command is about, and how to print the answer.
#[derive(Debug, Clone, clap::Args)]
pub struct JobArgs {
    /// The job's id, or a prefix of it only one of the newest 200 jobs has (as the web app
    /// shows them; listing needs the operator role).
    pub id: String,
    /// Print bulk-api's answer as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// `hush bulk …`: each prints a human summary, or with `--json` bulk-api's answer as it is.
#[derive(Debug, clap::Subcommand)]
pub enum BulkCommand {
    /// Submit a job from FILE (NDJSON, or CSV by its .csv name) and follow it.
    Submit {
        #[command(flatten)]
        target: Target,
        /// The job's input.
        file: PathBuf,
        /// What to do with malformed lines.
        #[arg(long, value_enum, default_value_t = OnBadLines::Reject)]
        on_bad_lines: OnBadLines,
        /// Makes a resubmit of the same job answer the job the first submission created.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Do not follow the job; print it and return.
        #[arg(long)]
        no_follow: bool,
        /// Print bulk-api's answer as JSON instead of a summary (no progress bar).
        #[arg(long)]
        json: bool,
    },
    /// A job's state and counts.
    Status {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Pause a job (chunks in flight finish).
    Pause {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Resume a paused job from its checkpoint.
    Resume {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Cancel a job for good (its input is purged).
    Cancel {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        job: JobArgs,
    },
}

/// A client of bulk-api for one caller.
#[derive(Debug, Clone)]
pub struct BulkClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// How a job is submitted.
#[derive(Debug, Clone, Default)]
pub struct Submit {
    /// `reject` or `skip`.
    pub on_bad_lines: Option<String>,
    /// The `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// CSV rather than NDJSON.
    pub csv: bool,
    /// The name to show for the job (the file's name; sealed at rest by bulk-api).
    pub name: Option<String>,
}

impl BulkClient {
    /// A client of bulk-api at `base` with a bearer `token`.
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    /// Submits `body`; answers the status and the job (or the problem).
    pub async fn submit(
        &self,
        body: reqwest::Body,
        how: &Submit,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .post(format!("{}/bulk/v1/jobs", self.base))
            .bearer_auth(&self.token)
            .header(
                reqwest::header::CONTENT_TYPE,
                if how.csv {
                    "text/csv"
                } else {
                    "application/x-ndjson"
                },
            )
            .body(body);
        if let Some(m) = &how.on_bad_lines {
            req = req.query(&[("on_bad_lines", m)]);
        }
        if let Some(k) = &how.idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(n) = &how.name {
            req = req.query(&[("name", n)]);
        }
        answer(req.send().await.context("reaching bulk-api")?).await
    }

    /// Submits the file at `path`, streamed.
    pub async fn submit_file(
        &self,
        path: &Path,
        how: &Submit,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        self.submit(reqwest::Body::from(file), how).await
    }

    /// The full id of the job `id` names: `id` itself when it is a UUID, else the one job among
    /// the newest 200 whose id starts with it (the web app shows 8 characters). Listing jobs
    /// needs the operator role; anyone else gives the full id.
    pub async fn resolve(&self, id: &str) -> anyhow::Result<String> {
        if uuid::Uuid::parse_str(id).is_ok() {
            return Ok(id.to_string());
        }
        let prefix = id.to_ascii_lowercase();
        anyhow::ensure!(
            !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
            "{id:?} is not a job id or the start of one"
        );
        let (status, list) = self
            .call(
                self.http
                    .get(format!("{}/bulk/v1/jobs?limit=200", self.base)),
            )
            .await?;
        anyhow::ensure!(
            status.is_success(),
            "{id:?} is not a full job id, and the newest jobs could not be listed to find it ({status}); give the full id"
        );
        let matching: Vec<&str> = list["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| j["id"].as_str())
            .filter(|j| j.starts_with(&prefix))
            .collect();
        match matching.as_slice() {
            [one] => Ok((*one).to_string()),
            [] => anyhow::bail!("no job among the newest 200 has an id starting {id:?}"),
            many => anyhow::bail!(
                "{} jobs have an id starting {id:?}; give more of it",
                many.len()
            ),
        }
    }

    /// `GET /bulk/v1/jobs/{id}`.
    pub async fn job(&self, id: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(self.http.get(format!("{}/bulk/v1/jobs/{id}", self.base)))
            .await
    }

    /// `POST /bulk/v1/jobs/{id}/{action}` (pause, resume, cancel).
    pub async fn steer(&self, id: &str, action: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(
            self.http
                .post(format!("{}/bulk/v1/jobs/{id}/{action}", self.base)),
        )
        .await
    }

    /// A short call about one job: given up after 10 s.
    async fn call(&self, req: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
        let res = req
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .context("reaching bulk-api")?;
        answer(res).await
    }

    /// Polls the job until it ends or `limit` passes; answers its last view. Errors reaching
    /// bulk-api (a replica restarting) are waited out.
    pub async fn wait(&self, id: &str, limit: Duration) -> anyhow::Result<Value> {
        self.wait_polling(id, limit, Duration::from_millis(100))
            .await
    }

    /// [`Self::wait`], asking every `every` (the benchmark asks often, so its timing of a job
    /// of a few seconds is not off by a poll).
    pub async fn wait_polling(
        &self,
        id: &str,
        limit: Duration,
        every: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok((StatusCode::OK, job)) = self.job(id).await {
                if is_final(&job) {
                    return Ok(job);
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "job {id} did not end in time: {job}"
                );
            } else {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "job {id}: bulk-api did not answer in time"
                );
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// A response's status and its body as JSON (a body that is not JSON as a string).
pub(crate) async fn answer(res: reqwest::Response) -> anyhow::Result<(StatusCode, Value)> {
    let status = res.status();
    let text = res.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Whether a job view is in an ending state.
pub fn is_final(job: &Value) -> bool {
    matches!(
        job["state"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// One line about a job.
pub fn summary(job: &Value) -> String {
    let r = &job["rejected_by_reason"];
    let from = job["name"]
        .as_str()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    format!(
        "{state}{from}: {applied}/{total} applied, {rejected} rejected (unknown identity {ui}, label refused {lr}, unknown group {ug}), {invalid} malformed lines, {retrying} retrying",
        state = job["state"].as_str().unwrap_or("?"),
        applied = job["applied"],
        total = job["total"],
        rejected = job["rejected"],
        ui = r["unknown_identity"],
        lr = r["label_refused"],
        ug = r["unknown_group"],
        invalid = job["invalid_lines"],
        retrying = job["retrying"],
    )
}

/// Follows a job with a progress bar until it ends; Ctrl-C stops following (the job goes on).
pub async fn follow(client: &BulkClient, id: &str) -> anyhow::Result<Value> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} ops  {msg}",
        )?
        .progress_chars("=> "),
    );
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let job = match client.job(id).await {
            Ok((StatusCode::OK, job)) => Some(job),
            _ => None,
        };
        if let Some(job) = &job {
            bar.set_length(job["total"].as_u64().unwrap_or(0));
            bar.set_position(
                job["applied"].as_u64().unwrap_or(0) + job["rejected"].as_u64().unwrap_or(0),
            );
            bar.set_message(format!(
                "{} · {:.0} ops/s · ETA {} · rejected {} · retrying {}",
                job["state"].as_str().unwrap_or("?"),
                job["rate_per_sec"].as_f64().unwrap_or(0.0),
                job["eta_secs"]
                    .as_u64()
                    .map_or("-".to_string(), |s| format!("{s}s")),
                job["rejected"],
                job["retrying"],
            ));
            if is_final(job) {
                bar.finish();
                return Ok(job.clone());
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = &mut interrupted => {
                bar.abandon_with_message("stopped following; the job goes on");
                let (_, job) = client.job(id).await?;
                return Ok(job);
            }
        }
    }
}

/// Runs one `hush bulk` command; answers whether it went as asked.
pub async fn run(cmd: BulkCommand) -> anyhow::Result<bool> {
    match cmd {
        BulkCommand::Submit {
            target,
            file,
            on_bad_lines,
            idempotency_key,
            no_follow,
            json,
        } => {
            let client = BulkClient::new(&target.bulk_url, &target.token)?;
            let csv = file
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            refuse_empty(&file, csv)?;
            let how = Submit {
                on_bad_lines: Some(on_bad_lines.as_str().into()),
                idempotency_key,
                csv,
                // The file's own name, at most as long as bulk-api takes.
                name: file
                    .file_name()
                    .map(|n| n.to_string_lossy().chars().take(200).collect()),
            };
            let (status, job) = client.submit_file(&file, &how).await?;
            if !status.is_success() {
                print_refusal(status, &job, json)?;
                return Ok(false);
            }
            let id = job["id"]
                .as_str()
                .context("the answer names no job")?
                .to_string();
            if !json {
                println!("job {id}");
            }
            let job = if no_follow || json {
                job
            } else {
                follow(&client, &id).await?
            };
            print_job(&job, json)?;
            Ok(job["state"] != "failed")
        }
        BulkCommand::Status { target, job } => about(&target, &job, None).await,
        BulkCommand::Pause { target, job } => about(&target, &job, Some("pause")).await,
        BulkCommand::Resume { target, job } => about(&target, &job, Some("resume")).await,
        BulkCommand::Cancel { target, job } => about(&target, &job, Some("cancel")).await,
    }
}

/// Reads the job `job.id` names, or with `action` steers it, and prints the answer.
async fn about(target: &Target, job: &JobArgs, action: Option<&str>) -> anyhow::Result<bool> {
    let client = BulkClient::new(&target.bulk_url, &target.token)?;
    let id = client.resolve(&job.id).await?;
    let (status, answer) = match action {
        None => client.job(&id).await?,
        Some(action) => client.steer(&id, action).await?,
    };
    if status.is_success() {
        print_job(&answer, job.json)?;
    } else {
        print_refusal(status, &answer, job.json)?;
    }
    Ok(status.is_success())
}

/// Refuses, before any request, a file with no operation in it: empty, blank lines only, or (CSV)
/// a header alone. bulk-api refuses such a job too; this says so without a round trip.
fn refuse_empty(file: &Path, csv: bool) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let mut lines = 0usize;
    for line in reader.lines() {
        if !line?.trim().is_empty() {
            lines += 1;
            if lines > usize::from(csv) {
                return Ok(());
            }
        }
    }
    anyhow::bail!(
        "{} holds no operation{}; nothing was submitted",
        file.display(),
        if csv { " (a CSV header at most)" } else { "" }
    )
}

/// A job: one line of summary, or the JSON.
fn print_job(job: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(job)?);
    } else {
        println!("{}", summary(job));
    }
    Ok(())
}

/// A refusal: status and detail, and the first malformed lines (line number and reason), or the
/// problem as JSON.
fn print_refusal(status: StatusCode, problem: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(problem)?);
        return Ok(());
    }
    let detail = problem["detail"]
        .as_str()
        .map_or_else(|| problem.to_string(), str::to_string);
    eprintln!("refused ({status}): {detail}");
    for e in problem["errors"].as_array().into_iter().flatten() {
        eprintln!(
            "  line {}: {}",
            e["line"],
            e["reason"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
