//! A client of the HTTP API (blocking, ureq): what the CLI's verbs and the API benchmark use.
//! An answer that is an error becomes an error carrying the API's message and status.

use crate::manifest::{self, Override};
use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A client of the API.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the API at `base` (`http://HOST:PORT`), with `token`, trusting `cacert` (a
    /// PEM file) besides the usual roots.
    pub fn new(base: &str, token: Option<&str>, cacert: Option<&Path>) -> Result<Self> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = cacert {
            let pem = crate::files::read_small_text(path)?;
            let certs = ureq::tls::parse_pem(pem.as_bytes())
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect::<Vec<_>>();
            if certs.is_empty() {
                bail!("--cacert {}: no certificate in it", path.display());
            }
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .tls_config(tls.build())
            .build();
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(|t| t.trim().to_string()),
            agent: config.new_agent(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => request.header("Authorization", format!("Bearer {t}")),
            None => request,
        }
    }

    /// The JSON of a response, or the API's error as an error.
    fn answer(
        &self,
        what: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value> {
        let mut response =
            response.with_context(|| format!("cannot reach the API at {}", self.base))?;
        let status = response.status();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .with_context(|| format!("{what}: cannot read the answer"))?;
        let json: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{what}: the API answered {status} with {text:?}"))?
        };
        if !status.is_success() {
            let message = json["error"]["message"].as_str().unwrap_or(&text);
            bail!("{what}: {message} ({status})");
        }
        Ok(json)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let mut r = self.authorized(self.agent.get(self.url(path))).call();
        if matches!(r, Err(ureq::Error::Io(_))) {
            // A kept-alive connection the server had closed meanwhile: a GET is asked again,
            // once, on a new one.
            r = self.authorized(self.agent.get(self.url(path))).call();
        }
        self.answer(&format!("GET {path}"), r)
    }

    /// Polls savepoint (stop, rescale) request `request` of job `id` every `every` until it
    /// ends, for up to `limit`; the savepoint's path, or why it failed.
    pub fn wait_savepoint(
        &self,
        id: &str,
        request: &str,
        every: Duration,
        limit: Duration,
    ) -> Result<String> {
        self.wait_request(id, request, "savepoint", every, limit)
    }

    /// Polls request `request` of job `id` (a `what`: a savepoint, a swap) every `every`
    /// until it ends, for up to `limit`; the path it completed with, or why it failed.
    pub fn wait_request(
        &self,
        id: &str,
        request: &str,
        what: &str,
        every: Duration,
        limit: Duration,
    ) -> Result<String> {
        let path = format!(
            "/v1/jobs/{}/savepoints/{}",
            query_value(id),
            query_value(request)
        );
        let since = std::time::Instant::now();
        loop {
            let r = self.get(&path)?;
            match r["status"].as_str() {
                Some("completed") => {
                    return r["path"]
                        .as_str()
                        .map(str::to_string)
                        .with_context(|| format!("the API did not say the {what}'s path"));
                }
                Some("failed") => bail!(
                    "the {what} failed: {}",
                    r["error"].as_str().unwrap_or("no cause given")
                ),
                _ if since.elapsed() > limit => bail!(
                    "the {what} did not complete within {} s (request {request} goes on)",
                    limit.as_secs()
                ),
                _ => std::thread::sleep(every),
            }
        }
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self
            .authorized(self.agent.post(self.url(path)))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes());
        self.answer(&format!("POST {path}"), r)
    }

    pub fn post_bytes(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Value> {
        let r = self
            .authorized(self.agent.post(self.url(path)))
            .header("Content-Type", content_type)
            .send(body);
        self.answer(&format!("POST {path}"), r)
    }
}

/// Percent-encodes a query parameter's value.
pub fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A job to submit: checked, as read from its manifest with its overrides, and where it starts.
pub struct Submission<'a> {
    pub job: &'a crate::plan::JobGraph,
    pub manifest_path: &'a Path,
    pub overrides: &'a [Override],
    pub from: Option<&'a Path>,
    pub allow_non_restored_state: bool,
}

/// Uploads the component file `file` (at most `limit` bytes) as an artifact named by its file
/// name, unless the coordinator holds it already; its hash.
pub fn upload_component(client: &Client, file: &Path, limit: u64) -> Result<String> {
    let bytes = crate::files::read_limited(file, limit, Some("limits.component_mib"))
        .with_context(|| format!("component {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    // A component the coordinator has already is not sent again.
    let hash = crate::net::blobs::content_hash(&bytes);
    if client.get(&format!("/v1/artifacts/{hash}")).is_ok() {
        return Ok(hash);
    }
    let answer = client.post_bytes(
        &format!("/v1/artifacts?name={}", query_value(&name)),
        "application/wasm",
        &bytes,
    )?;
    Ok(answer["artifacts"][0]["hash"]
        .as_str()
        .context("the API did not say the artifact's hash")?
        .to_string())
}

/// Uploads the components of a submission's job and submits it with its paths made absolute;
/// the job's id.
pub fn submit_job(client: &Client, submission: &Submission) -> Result<String> {
    let Submission {
        job,
        manifest_path,
        overrides,
        from,
        allow_non_restored_state,
    } = *submission;
    let mut uploaded: Vec<(PathBuf, String)> = Vec::new();
    let text = manifest::portable(manifest_path, overrides, |file| {
        if let Some((_, hash)) = uploaded.iter().find(|(f, _)| f == file) {
            return Ok(format!("sha256:{hash}"));
        }
        let hash = upload_component(client, file, job.limits.component_bytes)
            .map_err(|e| format!("{e:#}"))?;
        uploaded.push((file.to_path_buf(), hash.clone()));
        Ok(format!("sha256:{hash}"))
    })
    .map_err(anyhow::Error::msg)?;
    let from = match from {
        Some(p) => Some(std::path::absolute(p).context("--from")?),
        None => None,
    };
    let body = serde_json::json!({
        "manifest": text,
        "manifest_name": manifest_path.display().to_string(),
        "from_savepoint": from.map(|p| p.display().to_string()),
        "allow_non_restored_state": allow_non_restored_state,
    });
    let answer = client.post_json("/v1/jobs", &body)?;
    Ok(answer["id"]
        .as_str()
        .context("the API did not say the job's id")?
        .to_string())
}
