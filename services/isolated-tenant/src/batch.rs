//! Batches for bulk jobs: `POST /tenant/v1/groups/batch` applies many adds and removes in one
//! transaction and answers counts by outcome (INV-3: never who was already a member).
//!
//! Batches share the database with routine membership calls, so the tenant runs at most
//! `--batch-concurrency` of them at once: a batch that finds every slot taken waits for one (in
//! arrival order, holding no database connection) for at most [`BATCH_WAIT`], and is then
//! answered 503 with `Retry-After`, before its body is read. bulk-api backs off and retries.
//!
//! Admitted batches run in their own lane ([`BulkLane`]): on threads of their own, over database
//! connections of their own (the store's [`Store::with_own_pool`]). Routine calls then never
//! wait for a connection a batch holds, nor for a worker thread a batch is busy on.

use crate::access::{op, Permit};
use crate::audit::Context;
use crate::error::ApiError;
use crate::store::Store;
use crate::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use service_kit::background::Background;
use service_kit::{AppJson, Problem};
use std::sync::Arc;
use tenant_api::{ApplyBatch, BatchOutcome};
use tokio::sync::Semaphore;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Largest batch body the tenant reads: a chunk of a few thousand operations with subjects,
/// addresses and labels, well above bulk-api's default chunk of 1,000.
pub const BATCH_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Most operations in one batch.
pub const MAX_BATCH_OPS: usize = 10_000;
/// How long a batch waits for a slot before it is answered 503.
pub const BATCH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// What `Retry-After` says when every batch slot is taken, in seconds.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// The slots batches run in.
pub type BatchGate = Arc<Semaphore>;

/// Where admitted batches run: a runtime and a store over connections of their own.
#[derive(Clone)]
pub struct BulkLane {
    runtime: Background,
    store: Arc<dyn Store>,
}

impl BulkLane {
    /// A lane of `slots` threads, over a pool of `slots` connections of `store`'s database,
    /// made on those threads (so those threads drive their sockets).
    pub async fn start(store: &Arc<dyn Store>, slots: usize) -> std::io::Result<Self> {
        let runtime = Background::start("tenant-batches", slots)?;
        let shared = store.clone();
        let connections = u32::try_from(slots.max(1)).unwrap_or(u32::MAX);
        let store = runtime
            .run(async move { shared.with_own_pool(connections) })
            .await;
        Ok(Self { runtime, store })
    }

    /// Applies `batch` on the lane's runtime, its events recording `context`.
    async fn apply(
        &self,
        context: Context,
        batch: ApplyBatch,
    ) -> Result<BatchOutcome, crate::store::StoreError> {
        let store = self.store.clone();
        self.runtime
            .run(async move { store.apply_batch(&context, &batch).await })
            .await
    }
}

/// The batch route, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(apply_batch))
}

/// Applies a batch of adds and removes in one transaction (bulk-api only).
///
/// Each add is checked against the label given for its group with the person's resolved kind
/// (`domain::may_enter`, as for a single add) before anything is written for it; each operation
/// runs the same statements as the single call, whether or not the person was a member
/// (INV-3). The answer counts operations by outcome only. Replaying a batch changes nothing
/// and answers the same counts. A database failure rolls the whole batch back (500).
#[utoipa::path(
    post,
    path = "/tenant/v1/groups/batch",
    tag = "members",
    request_body = ApplyBatch,
    responses(
        (status = 200, description = "The batch was applied; counts by outcome.", body = BatchOutcome),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` The calling service may not apply batches. `413` The body is larger than 16 MiB. `422` A field is invalid, or the batch holds more than 10,000 operations.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; nothing of the batch was written. `503` As many batches as the tenant allows are running; retry after `Retry-After` seconds.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn apply_batch(
    permit: Permit<op::ApplyBatch>,
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    // Taken before the body is read: a batch waits a little for a slot (in arrival order),
    // then is told to come back, so waiting batches hold no database connection.
    let slot = tokio::time::timeout(BATCH_WAIT, state.batch_gate.clone().acquire_owned()).await;
    let Ok(Ok(_slot)) = slot else {
        return Ok(busy());
    };
    let AppJson(batch) =
        match <AppJson<ApplyBatch> as axum::extract::FromRequest<AppState>>::from_request(
            request, &state,
        )
        .await
        {
            Ok(b) => b,
            Err(rejection) => return Ok(rejection.into_response()),
        };
    if batch.ops.len() > MAX_BATCH_OPS {
        return Ok(
            Problem::invalid(format!("a batch holds at most {MAX_BATCH_OPS} operations"))
                .into_response(),
        );
    }
    let outcome = state.bulk.apply(permit.context().clone(), batch).await?;
    Ok(AppJson(outcome).into_response())
}

/// 503 with `Retry-After`: every batch slot is taken.
fn busy() -> Response {
    let mut res = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "Busy")
        .with_detail("the tenant is applying as many batches as it allows; retry later")
        .into_response();
    res.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(BUSY_RETRY_AFTER_SECS),
    );
    res
}
