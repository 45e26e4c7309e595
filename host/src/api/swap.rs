//! `POST /v1/jobs/{id}/swap`: replaces the component of one operator (or window function) of a
//! running job, keeping its keyed state. Before anything happens to the job the new component
//! is checked: an artifact of the operator's world, whose `open` runs once with the operator's
//! config in a scratch instance; one that fails there is refused with the reason and the job is
//! untouched; so is one without checkpoint hooks for an operator whose newest checkpoint holds
//! private state (it could not take it back). `live` (the default) then
//! swaps it in at a checkpoint barrier, the job running on (see `coordinator::swap`);
//! `restart` takes a savepoint and deploys the job again with the new component, every task
//! restored from it.

use super::{ApiError, Param, Shared, blocking};
use crate::net::blobs::is_hash;
use crate::plan::{JobGraph, NodeKind};
use crate::wasm::{InstanceSpec, World};
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use std::sync::Arc;

/// The body of a swap request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapBody {
    /// The operator's uid.
    operator: String,
    /// The new component: `sha256:<hash>`, or the name of an uploaded artifact.
    artifact: String,
    /// `live` (the default) or `restart`.
    #[serde(default)]
    mode: Option<String>,
}

/// The hash of the artifact `reference` names: `sha256:<hash>`, a bare hash, or the name of
/// an artifact (the newest of that name).
fn artifact_hash(api: &Shared, reference: &str) -> Result<String, ApiError> {
    let hash = reference.strip_prefix("sha256:").unwrap_or(reference);
    if is_hash(hash) {
        return Ok(hash.to_string());
    }
    (api.cluster.artifacts()?.into_iter())
        .find(|a| a.name.as_deref() == Some(reference))
        .map(|a| a.hash)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "no artifact named {reference:?}: upload it first (POST /v1/artifacts), or give sha256:<hash>"
            ))
        })
}

/// The interface a component takes its private state back through.
const HOOKS: &str = "weir:operator/checkpoint-hooks@0.1.0";

/// The newest complete checkpoint of `graph`'s job, if it holds private state of node `uid`
/// (which a component swapped in must restore).
fn private_state_in(graph: &JobGraph, uid: &str) -> Option<u64> {
    let dir = crate::state::checkpoints::CheckpointDir::new(&graph.checkpoint.as_ref()?.dir);
    let latest = dir.latest().ok()?;
    let holds = (latest.tasks.iter().flat_map(|t| &t.private))
        .any(|(u, state)| u == uid && !state.is_empty());
    holds.then_some(latest.metadata.id)
}

/// Opens the new component once, as subtask 0 of operator `index` of `graph` with its config,
/// in a scratch instance (its state in memory, dropped after).
fn scratch_open(api: &Shared, graph: &JobGraph, index: usize, hash: &str) -> Result<(), ApiError> {
    let node = &graph.nodes[index];
    let (Some(op), Some(world)) = (node.kind.component(), World::of(&node.kind)) else {
        return Err(ApiError::invalid(format!(
            "`{}` runs no component",
            node.uid
        )));
    };
    let path = api.cluster.component_path(hash)?;
    let refused = |why: String| {
        ApiError::invalid(format!(
            "the new component for `{}` cannot take its place: {why}",
            node.uid
        ))
    };
    let runtime = api.runtime()?;
    let component = runtime
        .load(&path, world, graph.limits.component_bytes)
        .map_err(|e| refused(e.to_string().replace(&path.display().to_string(), hash)))?;
    if let Some(id) = private_state_in(graph, &node.uid) {
        let exports = crate::wasm::inspect(runtime, &path, graph.limits.component_bytes)
            .map(|i| i.exports)
            .map_err(|e| refused(e.to_string()))?;
        if !exports.iter().any(|e| e.starts_with(HOOKS)) {
            return Err(refused(format!(
                "`{}` keeps private state in checkpoints (checkpoint {id} holds some), which it could not restore: it does not export {HOOKS}",
                node.uid
            )));
        }
    }
    let spec = InstanceSpec {
        operator: node.uid.as_str().into(),
        subtask: 0,
        parallelism: node.parallelism,
        max_parallelism: graph.max_parallelism,
        limits: graph.limits,
        config_json: op.config_json.clone(),
        side_outputs: Arc::from(Vec::<String>::new()),
        cancel: crate::cancel::CancelToken::default(),
        attempt: 0,
        state_dir: None,
        incremental: false,
        logs: None,
    };
    let opened = match &node.kind {
        NodeKind::Window(_) => component.instantiate_window(&spec).map(drop),
        _ => component.instantiate(&spec).map(drop),
    };
    opened.map_err(|e| refused(format!("its open failed: {e}")))
}

/// `POST /v1/jobs/{id}/swap`: checks the new component, then swaps it in (a request to poll,
/// as a savepoint's).
pub(super) async fn swap(
    State(api): State<Shared>,
    Param(id): Param,
    request: axum::extract::Request,
) -> Result<impl IntoResponse, ApiError> {
    let body: SwapBody = super::jobs::json_body(&api, request).await?;
    if body.operator.is_empty() || body.artifact.is_empty() {
        return Err(ApiError::invalid(
            "say the `operator` (its uid) and the `artifact` (sha256:<hash> or its name)",
        ));
    }
    let live = match body.mode.as_deref() {
        Some("live") | None => true,
        Some("restart") => false,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "unknown mode {other:?}: use live or restart"
            )));
        }
    };
    let hash = artifact_hash(&api, &body.artifact)?;
    let (graph, index) = api.cluster.swap_target(&id, &body.operator, &hash)?;
    let checked = api.clone();
    let checked_hash = hash.clone();
    blocking(move || scratch_open(&checked, &graph, index, &checked_hash)).await?;
    let request = match live {
        true => api.cluster.swap_live(&id, &body.operator, &hash).await?,
        false => api.cluster.swap(&id, &body.operator, &hash).await?,
    };
    Ok(super::jobs::accepted(&id, &request))
}
