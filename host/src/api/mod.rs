//! The HTTP API (axum, JSON, under `/v1`), shaped after Flink's REST API: artifacts (components
//! uploaded and checked against the weir worlds), jobs (submit, list, get, cancel, checkpoint
//! history), `/metrics`, `/healthz` and an OpenAPI 3 document of the routes.
//!
//! Every route but `/healthz` needs `Authorization: Bearer <token>` (the token is kept in the
//! coordinator's `api-token` file) unless the API was started without auth, which only a
//! loopback address allows. Errors are `{ "error": { "code", "message" } }` with the status
//! that says what went wrong; no request input can make a handler panic.

mod artifacts;
pub mod client;
mod jobs;
pub mod openapi;
mod swap;

use crate::coordinator::service::{Cluster, ServiceError};
use anyhow::{Context as _, Result, bail};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the API is served.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    pub listen: SocketAddr,
    /// Serve without a token (refused on any address but loopback).
    pub no_auth: bool,
    /// The largest request body accepted (an upload), in bytes.
    pub max_body: u64,
    /// Serve over TLS with this certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Where a started API listens, and where its token is kept.
#[derive(Debug, Clone)]
pub struct Serving {
    pub addr: SocketAddr,
    pub token_file: Option<PathBuf>,
    /// Over TLS.
    pub tls: bool,
}

impl Serving {
    /// The API's base URL, e.g. `https://127.0.0.1:8081`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// The API's state, shared by its handlers.
pub(crate) struct Api {
    pub(crate) cluster: Cluster,
    /// The bearer token, unless auth is off.
    token: Option<String>,
    pub(crate) max_body: u64,
    /// Compiles uploaded components to check them (made at the first upload).
    runtime: std::sync::OnceLock<Result<crate::wasm::Runtime, String>>,
}

impl Api {
    /// The WASM runtime that checks uploads.
    pub(crate) fn runtime(&self) -> Result<&crate::wasm::Runtime, ApiError> {
        self.runtime
            .get_or_init(crate::wasm::Runtime::new)
            .as_ref()
            .map_err(|e| ApiError::unavailable(e.clone()))
    }
}

type Shared = Arc<Api>;

/// The API token in `dir/api-token`, created there (readable by its owner only) the first
/// time: 32 random bytes, hex.
pub fn load_token(dir: &Path) -> Result<(String, PathBuf)> {
    let path = dir.join("api-token");
    if let Ok(text) = crate::files::read_small_text(&path) {
        let token = text.trim().to_string();
        if token.len() >= 32 {
            return Ok((token, path));
        }
    }
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness for the API token"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::files::write_private(&path, &format!("{token}\n"))?;
    Ok((token, path))
}

/// Starts the API of `cluster` on the current tokio runtime (called within it). Returns where
/// it listens.
pub fn serve(cluster: Cluster, options: ApiOptions) -> Result<Serving> {
    if options.no_auth && !options.listen.ip().is_loopback() {
        bail!(
            "--no-auth is refused on {}: the API runs code on the cluster, so without a token it may only listen on loopback",
            options.listen
        );
    }
    let (token, token_file) = if options.no_auth {
        (None, None)
    } else {
        let (token, file) = load_token(cluster.data_dir())?;
        (Some(token), Some(file))
    };
    let tls = match &options.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let listen = || format!("cannot listen on {} for the HTTP API", options.listen);
    let listener = std::net::TcpListener::bind(options.listen).with_context(listen)?;
    listener.set_nonblocking(true).with_context(listen)?;
    let listener = tokio::net::TcpListener::from_std(listener).with_context(listen)?;
    let addr = listener.local_addr()?;
    let api = Arc::new(Api {
        cluster,
        token,
        max_body: options.max_body,
        runtime: std::sync::OnceLock::new(),
    });
    let app = router(api);
    let serving = Serving {
        addr,
        token_file,
        tls: tls.is_some(),
    };
    match tls {
        None => {
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!("the HTTP API stopped: {e}");
                }
            });
        }
        Some(acceptor) => {
            tokio::spawn(serve_tls(listener, acceptor, app));
        }
    }
    Ok(serving)
}

/// A TLS acceptor for the certificate chain and key in these PEM files.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("--tls-cert {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--tls-cert {}: not PEM certificates", cert.display()))?;
    if chain.is_empty() {
        bail!("--tls-cert {}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("--tls-key {}: no PEM private key in it", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .context("TLS versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("--tls-cert and --tls-key do not make a usable pair")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS: each connection's handshake, then HTTP/1.1, on a task of its own.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
) {
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait a moment rather than spin.
                tracing::warn!("the HTTP API cannot accept a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%from, "a TLS handshake failed: {e}"),
                Err(_) => return tracing::debug!(%from, "a TLS handshake timed out"),
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%from, "an API connection ended: {e}");
            }
        });
    }
}

/// Every route: method, path (axum's syntax, as in the OpenAPI document) and handler.
fn routes() -> Vec<(&'static str, &'static str, MethodRouter<Shared>)> {
    use axum::routing::{delete, get, post};
    vec![
        ("get", "/healthz", get(healthz)),
        ("get", "/metrics", get(metrics)),
        ("get", "/v1/openapi.json", get(openapi_json)),
        ("post", "/v1/artifacts", post(artifacts::upload)),
        ("get", "/v1/artifacts", get(artifacts::list)),
        ("get", "/v1/artifacts/{hash}", get(artifacts::get)),
        ("delete", "/v1/artifacts/{hash}", delete(artifacts::remove)),
        ("post", "/v1/jobs", post(jobs::submit)),
        ("get", "/v1/jobs", get(jobs::list)),
        ("get", "/v1/jobs/{id}", get(jobs::get)),
        ("post", "/v1/jobs/{id}/cancel", post(jobs::cancel)),
        ("get", "/v1/jobs/{id}/checkpoints", get(jobs::checkpoints)),
        ("get", "/v1/jobs/{id}/logs", get(jobs::logs)),
        ("post", "/v1/jobs/{id}/savepoints", post(jobs::savepoint)),
        ("get", "/v1/jobs/{id}/savepoints", get(jobs::savepoints)),
        (
            "get",
            "/v1/jobs/{id}/savepoints/{request}",
            get(jobs::savepoint_status),
        ),
        ("post", "/v1/jobs/{id}/stop", post(jobs::stop)),
        ("post", "/v1/jobs/{id}/rescale", post(jobs::rescale)),
        ("post", "/v1/jobs/{id}/swap", post(swap::swap)),
        (
            "get",
            "/v1/jobs/{id}/state/{operator}/{state}",
            get(jobs::state),
        ),
    ]
}

fn router(api: Shared) -> axum::Router {
    let mut by_path: Vec<(&'static str, MethodRouter<Shared>)> = Vec::new();
    for (_, path, route) in routes() {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, r)) => *r = std::mem::take(r).merge(route),
            None => by_path.push((path, route)),
        }
    }
    let mut app = axum::Router::new();
    for (path, route) in by_path {
        app = app.route(path, route.fallback(method_not_allowed));
    }
    app.fallback(no_route)
        .layer(axum::middleware::from_fn_with_state(api.clone(), authorize))
        .layer(axum::middleware::from_fn(close_after_errors))
        // The limit is enforced as the body is read; an upload over it is refused whole.
        .layer(DefaultBodyLimit::max(
            usize::try_from(api.max_body).unwrap_or(usize::MAX),
        ))
        .with_state(api)
}

/// Refuses a request without the API's bearer token (but `/healthz`).
async fn authorize(State(api): State<Shared>, request: Request, next: Next) -> Response {
    let Some(token) = &api.token else {
        return next.run(request).await;
    };
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong API token".into(),
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs `Authorization: Bearer <token>` (the coordinator keeps the token in DATA_DIR/api-token)".into(),
        )
        .into_response(),
    }
}

/// Closes the connection after a client error: its request's body may be left unread (an
/// upload refused for its size, or for want of a token), and the connection cannot carry
/// another request after it. Saying so keeps the client from reusing it.
async fn close_after_errors(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if response.status().is_client_error() {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Compares two secrets in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn metrics(State(api): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.cluster.metrics(),
    )
}

async fn openapi_json() -> impl IntoResponse {
    axum::Json(openapi::document())
}

async fn no_route(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!(
            "no route {} {} (see /v1/openapi.json)",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not a method of {} (see /v1/openapi.json)",
            request.method(),
            request.uri().path()
        ),
    )
}

/// An error as the API answers it: `{ "error": { "code", "message", ...details } }`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// More fields of the error object (a manifest error's file, line, column and field).
    details: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            code,
            message,
            details: serde_json::Map::new(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message.into())
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            message.into(),
        )
    }

    pub(crate) fn too_large(limit: u64) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over the limit of {limit} bytes (--max-upload-mib)"),
        )
    }

    pub(crate) fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, code) = match &e {
            ServiceError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ServiceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        error.extend(self.details);
        (
            self.status,
            axum::Json(serde_json::json!({ "error": error })),
        )
            .into_response()
    }
}

/// A request's whole body: over the limit, 413; cut short, 400.
pub(crate) async fn read_body(api: &Shared, request: Request) -> Result<bytes::Bytes, ApiError> {
    <bytes::Bytes as axum::extract::FromRequest<Shared>>::from_request(request, api)
        .await
        .map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(api.max_body)
            } else {
                ApiError::invalid(format!("cannot read the request body: {e}"))
            }
        })
}

/// A multipart request's fields, one after the other ([`next_field`]).
pub(crate) async fn read_multipart(
    api: &Shared,
    request: Request,
) -> Result<axum::extract::Multipart, ApiError> {
    <axum::extract::Multipart as axum::extract::FromRequest<Shared>>::from_request(request, api)
        .await
        .map_err(|e| ApiError::invalid(format!("a malformed multipart request: {e}")))
}

/// The next field of a multipart body, if any: over the limit, 413; malformed, 400.
pub(crate) async fn next_field<'a>(
    api: &Api,
    multipart: &'a mut axum::extract::Multipart,
) -> Result<Option<axum::extract::multipart::Field<'a>>, ApiError> {
    multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(api, &e))
}

/// The media type of a request, lowercase, without parameters.
pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A multipart field read whole: over the limit (413), cut short (400).
pub(crate) async fn field_bytes(
    api: &Api,
    field: axum::extract::multipart::Field<'_>,
) -> Result<bytes::Bytes, ApiError> {
    field.bytes().await.map_err(|e| multipart_error(api, &e))
}

fn multipart_error(api: &Api, e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(api.max_body)
    } else {
        ApiError::invalid(format!("a malformed multipart body: {}", e.body_text()))
    }
}

/// A path parameter (a job id, an artifact hash), or a 400 naming what is wrong with it.
pub(crate) struct Param<T = String>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for Param<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(p)| Param(p))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}

/// The query string's parameters, or a 400.
pub(crate) struct QueryMap(pub std::collections::HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| QueryMap(q))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}

/// Runs `work` (compiling, reading files) off the I/O threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(ApiError::unavailable(format!(
            "the request's work failed: {e}"
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let doc = openapi::document();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(p, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.clone(), p.clone()))
            })
            .collect();
        let mut routed: Vec<(String, String)> = routes()
            .into_iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
