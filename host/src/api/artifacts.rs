//! `/v1/artifacts`: components uploaded (a raw body, or files of a multipart body), checked
//! (compiled, and linked against the weir worlds) before they are kept, by the SHA-256 of their
//! bytes; listed, shown and deleted.

use super::{
    Api, ApiError, Param, QueryMap, Shared, blocking, content_type, field_bytes, next_field,
    read_body, read_multipart,
};
use crate::coordinator::store::Artifact;
use crate::net::blobs::content_hash;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use std::sync::Arc;

/// The longest artifact name kept.
const MAX_NAME: usize = 255;

/// A name a component was uploaded under: a file name (the last part of a path), printable.
pub(crate) fn artifact_name(given: &str) -> Result<String, ApiError> {
    let name = given.rsplit(['/', '\\']).next().unwrap_or("").trim();
    if name.is_empty() || name == "." || name == ".." {
        return Err(ApiError::invalid(format!(
            "{given:?} is not a usable artifact name (a file name such as split.wasm)"
        )));
    }
    if name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "an artifact name is at most {MAX_NAME} bytes, without control characters"
        )));
    }
    Ok(name.to_string())
}

/// Checks `bytes` as a component (compiled, linked against every weir world) and keeps it as
/// an artifact named `name`. Blocking: it compiles.
pub(crate) fn accept(api: &Api, name: Option<String>, bytes: &[u8]) -> Result<Artifact, ApiError> {
    let hash = content_hash(bytes);
    if let Ok(existing) = api.cluster.artifact(&hash)
        && (name.is_none() || existing.name == name)
    {
        return Ok(existing);
    }
    let runtime = api.runtime()?;
    let dir = api.cluster.data_dir().join("uploads");
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::unavailable(format!("cannot keep an upload: {e}")))?;
    let mut file = tempfile::NamedTempFile::new_in(&dir)
        .map_err(|e| ApiError::unavailable(format!("cannot keep an upload: {e}")))?;
    std::io::Write::write_all(&mut file, bytes)
        .map_err(|e| ApiError::unavailable(format!("cannot keep an upload: {e}")))?;
    let shown = name.clone().unwrap_or_else(|| "the upload".into());
    let inspection = crate::wasm::inspect(runtime, file.path(), api.max_body).map_err(|e| {
        // The temporary file's name means nothing to the client.
        let why = e
            .to_string()
            .replace(&file.path().display().to_string(), &shown);
        ApiError::invalid(why).with("artifact", shown.clone())
    })?;
    if inspection.worlds.is_empty() {
        let why = inspection
            .not_weir
            .join("; ")
            .replace(&file.path().display().to_string(), &shown);
        return Err(ApiError::invalid(format!(
            "{shown} is a component but implements no weir world: {why}"
        ))
        .with("artifact", shown));
    }
    let artifact = Artifact {
        hash,
        name,
        size: bytes.len() as u64,
        worlds: inspection.worlds,
        uploaded_ms: crate::coordinator::view::now_ms(),
    };
    api.cluster.add_artifact(&artifact, bytes)?;
    tracing::info!(
        hash = %artifact.hash,
        name = artifact.name.as_deref().unwrap_or(""),
        "artifact uploaded"
    );
    Ok(artifact)
}

/// `POST /v1/artifacts`: a raw body (`?name=` names it), or a multipart body whose file parts
/// are components (each named by its file name).
pub(super) async fn upload(
    State(api): State<Shared>,
    QueryMap(query): QueryMap,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<impl IntoResponse, ApiError> {
    let mut uploads: Vec<(Option<String>, Bytes)> = Vec::new();
    if content_type(&headers) == "multipart/form-data" {
        let mut multipart = read_multipart(&api, request).await?;
        while let Some(field) = next_field(&api, &mut multipart).await? {
            let name = field
                .file_name()
                .or(field.name())
                .map(artifact_name)
                .transpose()?;
            uploads.push((name, field_bytes(&api, field).await?));
        }
        if uploads.is_empty() {
            return Err(ApiError::invalid("the multipart body holds no file"));
        }
    } else {
        let body = read_body(&api, request).await?;
        if body.is_empty() {
            return Err(ApiError::invalid(
                "an empty body: send the component's bytes, or a multipart form with its file",
            ));
        }
        let name = query.get("name").map(|n| artifact_name(n)).transpose()?;
        uploads.push((name, body));
    }
    let api2 = Arc::clone(&api);
    let artifacts = blocking(move || {
        uploads
            .into_iter()
            .map(|(name, bytes)| accept(&api2, name, &bytes))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "artifacts": artifacts })),
    ))
}

/// `GET /v1/artifacts`.
pub(super) async fn list(State(api): State<Shared>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(
        serde_json::json!({ "artifacts": api.cluster.artifacts()? }),
    ))
}

/// `GET /v1/artifacts/{hash}`.
pub(super) async fn get(
    State(api): State<Shared>,
    Param(hash): Param,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(api.cluster.artifact(&hash)?))
}

/// `DELETE /v1/artifacts/{hash}`: refused while a running job uses it.
pub(super) async fn remove(
    State(api): State<Shared>,
    Param(hash): Param,
) -> Result<impl IntoResponse, ApiError> {
    api.cluster.remove_artifact(&hash)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names_are_file_names() {
        assert_eq!(artifact_name("split.wasm").unwrap(), "split.wasm");
        assert_eq!(artifact_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(artifact_name("C:\\x\\count.wasm").unwrap(), "count.wasm");
        for bad in ["", "..", "dir/", "a\nb", &"x".repeat(300)] {
            assert!(artifact_name(bad).is_err(), "{bad:?}");
        }
    }
}
