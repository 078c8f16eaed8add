//! A person's client of control-api's groups: create one, read it, set its owners, and wait
//! until the provisioning saga has put it in the tenant. `hush migrate` uses it, and so do the
//! benchmarks and the process tests, which create groups the way people do.

use crate::bulk::answer;
use anyhow::Context as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How often [`GroupsClient::wait_provisioned`] asks.
const POLL: Duration = Duration::from_millis(25);

/// control-api's groups, as one person (their bearer token) sees them.
#[derive(Debug, Clone)]
pub struct GroupsClient {
    groups: String,
    token: String,
    http: reqwest::Client,
}

impl GroupsClient {
    /// A client of control-api at `control_url` (its origin, `http://host:port`) with a bearer
    /// `token`. Each request gives up after 30 s.
    pub fn new(control_url: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            groups: format!("{}/control/v1/groups", control_url.trim_end_matches('/')),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    /// `POST /control/v1/groups`; answers the status and the group (or the problem).
    pub async fn create(&self, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
        self.send(self.http.post(&self.groups).json(body)).await
    }

    /// `GET /control/v1/groups/{id}`.
    pub async fn get(&self, id: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.send(self.http.get(format!("{}/{id}", self.groups)))
            .await
    }

    /// `PATCH /control/v1/groups/{id}`.
    pub async fn patch(&self, id: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
        self.send(self.http.patch(format!("{}/{id}", self.groups)).json(body))
            .await
    }

    /// Polls group `id` until the saga has settled it — `active`, or `archived` when the tenant
    /// refused it — and answers that view; an error if `limit` passes first. Errors reaching
    /// control-api are waited out.
    pub async fn wait_provisioned(&self, id: &str, limit: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let seen = match self.get(id).await {
                Ok((StatusCode::OK, g)) if g["state"] == "active" || g["state"] == "archived" => {
                    return Ok(g)
                }
                Ok((_, g)) => g.to_string(),
                Err(e) => format!("{e:#}"),
            };
            anyhow::ensure!(
                Instant::now() < deadline,
                "group {id} was not provisioned within {limit:?}: {seen}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Creates a group named `name` under `label` with `join_policy` and waits until it is
    /// active; answers its view (`id`, `contact_address`, …). For tools and tests: an error
    /// says what control-api answered.
    pub async fn create_active(
        &self,
        name: &str,
        label: &str,
        join_policy: &str,
    ) -> anyhow::Result<Value> {
        let body =
            json!({"name": name, "description": "", "label": label, "join_policy": join_policy});
        let (status, created) = self.create(&body).await?;
        anyhow::ensure!(
            status.is_success(),
            "creating group {name}: {status} {created}"
        );
        let id = created["id"].as_str().context("no group id")?;
        let g = self.wait_provisioned(id, Duration::from_secs(60)).await?;
        anyhow::ensure!(g["state"] == "active", "group {name} ended {g}");
        Ok(g)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
        let res = req
            .bearer_auth(&self.token)
            .send()
            .await
            .context("reaching control-api")?;
        answer(res).await
    }
}
