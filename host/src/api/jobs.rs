//! `/v1/jobs`: submit a job (a manifest naming its components by artifact hash or name, as JSON;
//! or the manifest and its components in one multipart request), list, get, cancel, and the
//! checkpoint history.

use super::artifacts::{accept, artifact_name};
use super::{
    Api, ApiError, Param, Shared, blocking, content_type, field_bytes, next_field, read_body,
    read_multipart,
};
use crate::coordinator::store::Artifact;
use crate::manifest::{self, ManifestError, Override};
use crate::net::blobs::is_hash;
use crate::plan::JobGraph;
use crate::wasm::World;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A submission as JSON (`POST /v1/jobs` with `application/json`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitRequest {
    /// The manifest (TOML text).
    pub manifest: String,
    /// As `--set`: `KEY=VALUE`, applied to the manifest.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// A savepoint (or a checkpoint) to start from, on a path the cluster's processes reach.
    #[serde(default)]
    pub from_savepoint: Option<String>,
    #[serde(default)]
    pub allow_non_restored_state: bool,
    /// The manifest's file name, as errors name it.
    #[serde(default)]
    pub manifest_name: Option<String>,
}

/// A component sent with the submission: the multipart field's name, its file name, and the
/// artifact it became.
struct Inline {
    field: Option<String>,
    file: Option<String>,
    artifact: Artifact,
}

/// Resolves the components a manifest names: an artifact's hash (`sha256:` optional), a
/// component sent with the submission (by field or file name), or an artifact's name (the
/// newest of that name).
struct Resolver<'a> {
    inline: &'a [Inline],
    artifacts: Vec<Artifact>,
    api: &'a Api,
}

impl manifest::Components for Resolver<'_> {
    fn resolve(&self, _base: &Path, name: &str) -> Result<PathBuf, String> {
        let hash = name.strip_prefix("sha256:").unwrap_or(name);
        if is_hash(hash) {
            return if self.api.cluster.has_component(hash) {
                Ok(PathBuf::from(hash))
            } else {
                Err(format!(
                    "no artifact {hash}: upload it first (POST /v1/artifacts)"
                ))
            };
        }
        let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
        let inline = self.inline.iter().find(|i| {
            [i.field.as_deref(), i.file.as_deref()]
                .into_iter()
                .flatten()
                .any(|n| n == name || n == file)
        });
        if let Some(i) = inline {
            return Ok(PathBuf::from(&i.artifact.hash));
        }
        // `artifacts` is newest first.
        if let Some(a) = self
            .artifacts
            .iter()
            .find(|a| a.name.as_deref().is_some_and(|n| n == name || n == file))
        {
            return Ok(PathBuf::from(&a.hash));
        }
        Err(format!(
            "no artifact named {name:?}: upload it first (POST /v1/artifacts), send it in the same multipart request, or name it by its hash"
        ))
    }
}

/// A manifest error as the API answers it: 400 with the file, line, column and field.
fn manifest_error(e: &ManifestError) -> ApiError {
    let mut error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_manifest", e.to_string())
        .with("file", e.file.display().to_string())
        .with("field", e.field.clone());
    if let Some((line, column)) = e.at {
        error = error.with("line", line).with("column", column);
    }
    error
}

/// Reads, checks and starts a submission. Blocking: it compiles the components sent with it and
/// reads the files the manifest names.
fn start(
    api: &Api,
    request: SubmitRequest,
    sent: Vec<(Option<String>, Option<String>, Bytes)>,
) -> Result<String, ApiError> {
    let overrides = request
        .overrides
        .iter()
        .map(|o| {
            o.parse::<Override>()
                .map_err(|e| ApiError::invalid(format!("override {o:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut inline = Vec::new();
    for (field, file, bytes) in sent {
        let name = file.clone().or(field.clone());
        let artifact = accept(api, name, &bytes)?;
        inline.push(Inline {
            field,
            file,
            artifact,
        });
    }
    let resolver = Resolver {
        inline: &inline,
        artifacts: api.cluster.artifacts()?,
        api,
    };
    let file = PathBuf::from(request.manifest_name.as_deref().unwrap_or("manifest.toml"));
    // Relative paths in a submitted manifest are the coordinator's (its working directory).
    let base = std::env::current_dir().unwrap_or_default();
    let graph = manifest::load_text(&request.manifest, &file, &base, &overrides, &resolver)
        .map_err(|e| manifest_error(&e))?;
    check_worlds(&graph, &resolver)?;
    crate::worker::check(&graph).map_err(|e| ApiError::invalid(e.to_string()))?;
    let from = match request.from_savepoint.as_deref() {
        Some(p) if !p.trim().is_empty() => Some(
            std::path::absolute(p)
                .map_err(|e| ApiError::invalid(format!("from_savepoint {p:?}: {e}")))?,
        ),
        _ => None,
    };
    Ok(api
        .cluster
        .start(graph, from, request.allow_non_restored_state)?)
}

/// Each component is used as a world it implements (an operator's as an operator, a wasm
/// source's as a source), as far as its artifact says.
fn check_worlds(graph: &JobGraph, resolver: &Resolver) -> Result<(), ApiError> {
    for node in &graph.nodes {
        let (Some(op), Some(world)) = (node.kind.component(), World::of(&node.kind)) else {
            continue;
        };
        let hash = op.component.to_string_lossy();
        let known = resolver
            .artifacts
            .iter()
            .chain(resolver.inline.iter().map(|i| &i.artifact))
            .find(|a| a.hash == hash);
        if let Some(a) = known
            && !a.worlds.iter().any(|w| w == world.name())
        {
            return Err(ApiError::invalid(format!(
                "`{}` needs a component of the {} world; artifact {} ({}) implements {}",
                node.uid,
                world.name(),
                a.hash,
                a.name.as_deref().unwrap_or("unnamed"),
                a.worlds.join(", ")
            )));
        }
    }
    Ok(())
}

/// `POST /v1/jobs`: JSON ([`SubmitRequest`]), or multipart: a `manifest` field (its file name
/// names it in errors), `set` fields (repeatable), `from_savepoint`,
/// `allow_non_restored_state`, and components as the other fields (by field or file name).
pub(super) async fn submit(
    State(api): State<Shared>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<impl IntoResponse, ApiError> {
    let (submission, sent) = match content_type(&headers).as_str() {
        "multipart/form-data" => read_submission_form(&api, request).await?,
        "application/json" => {
            let body = read_body(&api, request).await?;
            let submission: SubmitRequest = serde_json::from_slice(&body)
                .map_err(|e| ApiError::invalid(format!("the request is not a submission: {e}")))?;
            (submission, Vec::new())
        }
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "a submission is application/json or multipart/form-data, not {:?}",
                    if other.is_empty() { "nothing" } else { other }
                ),
            ));
        }
    };
    let api2 = Arc::clone(&api);
    let id = blocking(move || start(&api2, submission, sent)).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "id": id })),
    ))
}

type Sent = Vec<(Option<String>, Option<String>, Bytes)>;

async fn read_submission_form(
    api: &Shared,
    request: axum::extract::Request,
) -> Result<(SubmitRequest, Sent), ApiError> {
    let mut multipart = read_multipart(api, request).await?;
    let mut submission = SubmitRequest::default();
    let mut manifest = None;
    let mut sent = Vec::new();
    while let Some(field) = next_field(api, &mut multipart).await? {
        let name = field.name().map(str::to_string);
        let file = field.file_name().map(artifact_name).transpose()?;
        let text = |bytes: Bytes, what: &str| {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::invalid(format!("field `{what}` is not UTF-8 text")))
        };
        match name.as_deref() {
            Some("manifest") => {
                submission.manifest_name = file.clone();
                manifest = Some(text(field_bytes(api, field).await?, "manifest")?);
            }
            Some("set") => {
                let o = text(field_bytes(api, field).await?, "set")?;
                submission.overrides.push(o);
            }
            Some("from_savepoint") => {
                submission.from_savepoint =
                    Some(text(field_bytes(api, field).await?, "from_savepoint")?);
            }
            Some("allow_non_restored_state") => {
                let v = text(field_bytes(api, field).await?, "allow_non_restored_state")?;
                submission.allow_non_restored_state = match v.trim() {
                    "true" | "1" => true,
                    "false" | "0" | "" => false,
                    other => {
                        return Err(ApiError::invalid(format!(
                            "allow_non_restored_state is true or false, not {other:?}"
                        )));
                    }
                };
            }
            _ => {
                let bytes = field_bytes(api, field).await?;
                sent.push((name, file, bytes));
            }
        }
    }
    submission.manifest = manifest
        .ok_or_else(|| ApiError::invalid("the multipart submission has no `manifest` field"))?;
    Ok((submission, sent))
}

/// `GET /v1/jobs`.
pub(super) async fn list(State(api): State<Shared>) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "jobs": api.cluster.jobs() }))
}

/// `GET /v1/jobs/{id}`.
pub(super) async fn get(
    State(api): State<Shared>,
    Param(id): Param,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(api.cluster.job(&id)?))
}

/// `POST /v1/jobs/{id}/cancel`.
pub(super) async fn cancel(
    State(api): State<Shared>,
    Param(id): Param,
) -> Result<impl IntoResponse, ApiError> {
    api.cluster.cancel(&id, "cancelled through the API")?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "id": id, "status": "cancelling" })),
    ))
}

/// `GET /v1/jobs/{id}/checkpoints`: the completed checkpoints, newest last.
pub(super) async fn checkpoints(
    State(api): State<Shared>,
    Param(id): Param,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(
        serde_json::json!({ "checkpoints": api.cluster.checkpoints(&id)? }),
    ))
}

/// The body of a savepoint or stop request: where the savepoint goes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavepointBody {
    /// A directory (absolute, reached by the cluster) to put the savepoint in; by default
    /// `savepoints/` in the job's checkpoint directory.
    #[serde(default)]
    dir: Option<String>,
}

/// The body of a rescale request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RescaleBody {
    /// Every node's new parallelism.
    #[serde(default)]
    parallelism: Option<u32>,
    /// Nodes' new parallelism, by uid (after `parallelism`).
    #[serde(default)]
    operators: std::collections::BTreeMap<String, u32>,
}

/// A JSON body (an empty one, or `null`, is `T::default()`), or a 400 saying what is wrong with
/// it.
pub(super) async fn json_body<T: serde::de::DeserializeOwned + Default>(
    api: &Shared,
    request: axum::extract::Request,
) -> Result<T, ApiError> {
    let body = read_body(api, request).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let invalid = |e: serde_json::Error| ApiError::invalid(format!("the request body: {e}"));
    match serde_json::from_slice(&body).map_err(invalid)? {
        serde_json::Value::Null => Ok(T::default()),
        value => serde_json::from_value(value).map_err(invalid),
    }
}

pub(super) fn accepted(id: &str, request: &str) -> axum::response::Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({
            "request": request,
            "status": format!("/v1/jobs/{id}/savepoints/{request}"),
        })),
    )
        .into_response()
}

/// `POST /v1/jobs/{id}/savepoints`: triggers a savepoint; answers with the request to poll.
pub(super) async fn savepoint(
    State(api): State<Shared>,
    Param(id): Param,
    request: axum::extract::Request,
) -> Result<impl IntoResponse, ApiError> {
    savepoint_for(&api, &id, request, false).await
}

/// `POST /v1/jobs/{id}/stop`: a savepoint, then the job stops (ends as finished).
pub(super) async fn stop(
    State(api): State<Shared>,
    Param(id): Param,
    request: axum::extract::Request,
) -> Result<impl IntoResponse, ApiError> {
    savepoint_for(&api, &id, request, true).await
}

/// A savepoint of job `id` where the request's body says, then a `stop` if asked.
async fn savepoint_for(
    api: &Shared,
    id: &str,
    request: axum::extract::Request,
    stop: bool,
) -> Result<axum::response::Response, ApiError> {
    let body: SavepointBody = json_body(api, request).await?;
    let dir = body.dir.map(PathBuf::from);
    let request = if stop {
        api.cluster.stop(id, dir).await?
    } else {
        api.cluster.savepoint(id, dir).await?
    };
    Ok(accepted(id, &request))
}

/// `POST /v1/jobs/{id}/rescale`: a savepoint, then the job deployed again with the new
/// parallelism, restored from it.
pub(super) async fn rescale(
    State(api): State<Shared>,
    Param(id): Param,
    request: axum::extract::Request,
) -> Result<impl IntoResponse, ApiError> {
    let body: RescaleBody = json_body(&api, request).await?;
    let request = api
        .cluster
        .rescale(&id, body.parallelism, &body.operators)
        .await?;
    Ok(accepted(&id, &request))
}

/// `GET /v1/jobs/{id}/savepoints`: the savepoints taken of the job.
pub(super) async fn savepoints(
    State(api): State<Shared>,
    Param(id): Param,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(
        serde_json::json!({ "savepoints": api.cluster.job(&id)?.savepoints }),
    ))
}

/// `GET /v1/jobs/{id}/savepoints/{request}`: where a savepoint (stop, rescale) request stands.
pub(super) async fn savepoint_status(
    State(api): State<Shared>,
    Param((id, request)): Param<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(api.cluster.request_status(&id, &request)?))
}

/// Bytes as JSON: hex, and UTF-8 text when they are.
fn bytes_json(prefix: &str, bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert(
        format!("{prefix}_hex"),
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into(),
    );
    m.insert(
        format!("{prefix}_utf8"),
        std::str::from_utf8(bytes).map_or(serde_json::Value::Null, |t| t.into()),
    );
    m
}

/// The bytes of a query parameter given as text (`name`) or hex (`name_hex`).
fn key_param(
    query: &std::collections::HashMap<String, String>,
    name: &str,
) -> Result<Option<Vec<u8>>, ApiError> {
    match (query.get(name), query.get(&format!("{name}_hex"))) {
        (Some(_), Some(_)) => Err(ApiError::invalid(format!(
            "give `{name}` or `{name}_hex`, not both"
        ))),
        (Some(text), None) => Ok(Some(text.as_bytes().to_vec())),
        (None, Some(hex)) => {
            let hex = hex.trim();
            if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::invalid(format!("`{name}_hex` is not hex")));
            }
            Ok(Some(
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
                    .collect(),
            ))
        }
        (None, None) => Ok(None),
    }
}

/// `GET /v1/jobs/{id}/state/{operator}/{state}?key=...` (or `key_hex`; `map_key` or
/// `map_key_hex` for one entry of map state): the key's value in a running job.
pub(super) async fn state(
    State(api): State<Shared>,
    Param((id, operator, state)): Param<(String, String, String)>,
    super::QueryMap(query): super::QueryMap,
) -> Result<impl IntoResponse, ApiError> {
    let key = key_param(&query, "key")?
        .ok_or_else(|| ApiError::invalid("say which key: `?key=` (text) or `?key_hex=`"))?;
    let map_key = key_param(&query, "map_key")?;
    let read = api
        .cluster
        .query(&id, &operator, &state, key.clone(), map_key)
        .await?;
    let mut out = serde_json::Map::new();
    out.insert("operator".into(), operator.into());
    out.insert("state".into(), state.into());
    out.extend(bytes_json("key", &key));
    out.insert("key_group".into(), read.key_group.into());
    out.insert("subtask".into(), read.subtask.into());
    out.insert("worker".into(), read.worker.into());
    match read.answer {
        crate::net::control::StateAnswer::Value { value } => {
            out.insert("kind".into(), "value".into());
            out.extend(bytes_json("value", &value));
        }
        crate::net::control::StateAnswer::Map { entries } => {
            out.insert("kind".into(), "map".into());
            let entries: Vec<serde_json::Value> = entries
                .iter()
                .map(|(k, v)| {
                    let mut e = bytes_json("map_key", k);
                    e.extend(bytes_json("value", v));
                    serde_json::Value::Object(e)
                })
                .collect();
            out.insert("entries".into(), entries.into());
        }
        other => {
            return Err(ApiError::unavailable(format!(
                "an unexpected answer: {other:?}"
            )));
        }
    }
    Ok(axum::Json(serde_json::Value::Object(out)))
}

/// `GET /v1/jobs/{id}/logs?since=N&limit=M`: the job's recent guest lines (log calls, stdout,
/// stderr) numbered after `since`, oldest first; `next` is what to pass as `since` next time.
pub(super) async fn logs(
    State(api): State<Shared>,
    Param(id): Param,
    super::QueryMap(query): super::QueryMap,
) -> Result<impl IntoResponse, ApiError> {
    let number = |name: &str, default: u64| -> Result<u64, ApiError> {
        query.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| ApiError::invalid(format!("`{name}` is a number, not {v:?}")))
        })
    };
    let since = number("since", 0)?;
    let limit = number("limit", 1000)?.clamp(1, 1000) as usize;
    let (lines, next, dropped) = api.cluster.logs(&id, since, limit)?;
    Ok(axum::Json(serde_json::json!({
        "lines": lines,
        "next": next,
        "dropped": dropped,
    })))
}
