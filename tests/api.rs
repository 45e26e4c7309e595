//! The HTTP API, end to end with a real client: a coordinator and workers as real processes on
//! 127.0.0.1, components uploaded over HTTP, jobs submitted as JSON, as one multipart request and
//! through `weir submit`, each followed to its end and its output compared with local mode's;
//! and every kind of bad request, refused with the right status and a JSON error, the process
//! serving on.

mod common;

use common::procs::*;
use common::*;
use serde_json::Value;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

/// A client of one coordinator's API.
struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// An answer: its status and its JSON (`Null` when the body is not JSON).
struct Answer {
    status: u16,
    json: Value,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.json)
    }
}

impl Api {
    fn of(dir: &Path, coord: &Proc) -> Api {
        let token = std::fs::read_to_string(dir.join("coord/api-token")).unwrap();
        Api {
            base: api_of(coord),
            token: token.trim().to_string(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .new_agent(),
        }
    }

    /// `method path` with `body` of `content_type`, with the token if `auth`.
    fn call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        auth: Option<&str>,
    ) -> Answer {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = content_type {
            request = request.header("Content-Type", t);
        }
        if let Some(token) = auth {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let request = request.body(body.to_vec()).unwrap();
        let mut response = match self.agent.run(request.clone()) {
            // A kept-alive connection the server had closed meanwhile (after refusing a
            // malformed request): a GET is sent again, once, on a new one; so is any request
            // whose sending broke off, which the server cannot have taken.
            Err(ureq::Error::Io(e))
                if method == "GET" || e.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                self.agent.run(request)
            }
            other => other,
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        Answer {
            status,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, b"", Some(&self.token))
    }

    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Answer {
        self.call("POST", path, Some(content_type), body, Some(&self.token))
    }

    fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.post(path, "application/json", body.to_string().as_bytes())
    }

    /// Uploads component `file` as `name`; its hash.
    fn upload(&self, file: &str, name: &str) -> String {
        let bytes = std::fs::read(file).unwrap();
        let a = self.post(
            &format!("/v1/artifacts?name={name}"),
            "application/wasm",
            &bytes,
        );
        assert_eq!(a.status, 201, "{a:?}");
        a.json["artifacts"][0]["hash"].as_str().unwrap().to_string()
    }

    /// Waits for job `id` to end; its view.
    fn wait_end(&self, id: &str, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let a = self.get(&format!("/v1/jobs/{id}"));
            assert_eq!(a.status, 200, "{a:?}");
            if ["finished", "failed", "cancelled"].contains(&a.json["status"].as_str().unwrap()) {
                return a.json;
            }
            assert!(start.elapsed() < limit, "job {id} did not end: {a:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A multipart/form-data body of `parts` (name, file name, bytes); its content type and bytes.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "weir-test-boundary-7d1c";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        )
        .unwrap();
        if let Some(f) = file {
            write!(body, "; filename=\"{f}\"").unwrap();
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Sends `request` as raw bytes to the API's address; what came back before the server closed
/// (or within 10 s). The request should close the connection (`Connection: close`, or be one
/// the server refuses).
fn raw(base: &str, request: &[u8]) -> String {
    let addr = base
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The write side stays open: a server may take a half-closed connection for a client gone.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

/// The word count's input, and what local mode writes for it at parallelism 2.
fn wordcount_expected(dir: &Path) -> (std::path::PathBuf, Vec<(String, Vec<String>)>) {
    let input = dir.join("input.txt");
    std::fs::write(&input, text(200_000, 11)).unwrap();
    let local = dir.join("local");
    std::fs::create_dir_all(&local).unwrap();
    let manifest = wordcount_manifest(&local, &input, "");
    let out = run_ok(&[
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "job.parallelism=2",
    ]);
    assert!(out.status.success());
    (input, parts_sorted(&local.join("out")))
}

/// Components uploaded over HTTP, then the word count submitted three ways (JSON naming them by
/// hash and by name; one multipart request with the manifest and both components; `weir
/// submit`), on two one-slot workers: each writes exactly what local mode writes, and the job's
/// view shows its vertices placed on both workers.
#[test]
fn a_job_uploaded_over_http_runs_to_its_exact_output() {
    let dir = scratch();
    let (input, expected) = wordcount_expected(dir.path());
    let cluster = Cluster::start(dir.path(), &[1, 1]);
    let api = Api::of(dir.path(), &cluster.coord);

    // Upload, list.
    let split = api.upload(&component("wordcount_split"), "split.wasm");
    let count = api.upload(&component("wordcount_count"), "wordcount_count.wasm");
    assert_ne!(split, count);
    let listed = api.get("/v1/artifacts");
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.json["artifacts"].as_array().unwrap().len(),
        2,
        "{listed:?}"
    );
    let one = api.get(&format!("/v1/artifacts/{split}"));
    assert_eq!(one.json["name"], "split.wasm");
    assert_eq!(one.json["worlds"][0], "weir:operator/operator@0.1.0");

    // JSON: split by hash, count by name.
    let by_json = dir.path().join("json");
    std::fs::create_dir_all(&by_json).unwrap();
    let manifest = wordcount_manifest_with(
        &by_json,
        &input,
        &format!("sha256:{split}"),
        "wordcount_count.wasm",
        "",
    );
    let submitted = api.post_json(
        "/v1/jobs",
        &serde_json::json!({
            "manifest": std::fs::read_to_string(&manifest).unwrap(),
            "overrides": ["job.parallelism=2"],
        }),
    );
    assert_eq!(submitted.status, 201, "{submitted:?}");
    let id = submitted.json["id"].as_str().unwrap().to_string();
    let job = api.wait_end(&id, Duration::from_secs(60));
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(parts_sorted(&by_json.join("out")), expected);
    // Its vertices, spread over both workers.
    let vertices = job["vertices"].as_array().unwrap();
    assert_eq!(vertices.len(), 2, "{job}");
    let mut workers: Vec<&str> = vertices[1]["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["worker"].as_str().unwrap())
        .collect();
    workers.sort();
    workers.dedup();
    assert_eq!(workers.len(), 2, "{job}");
    assert!(job["records_out"].as_u64().unwrap() > 0, "{job}");

    // One multipart request: the manifest and its components.
    let by_form = dir.path().join("form");
    std::fs::create_dir_all(&by_form).unwrap();
    let manifest = wordcount_manifest_with(&by_form, &input, "split.wasm", "count.wasm", "");
    let (split_bytes, count_bytes) = (
        std::fs::read(component("wordcount_split")).unwrap(),
        std::fs::read(component("wordcount_count")).unwrap(),
    );
    let manifest_text = std::fs::read(&manifest).unwrap();
    let (content_type, body) = multipart(&[
        ("manifest", Some("job.toml"), &manifest_text),
        ("set", None, b"job.parallelism=2"),
        ("split.wasm", Some("split.wasm"), &split_bytes),
        ("count", Some("count.wasm"), &count_bytes),
    ]);
    let submitted = api.post("/v1/jobs", &content_type, &body);
    assert_eq!(submitted.status, 201, "{submitted:?}");
    let id2 = submitted.json["id"].as_str().unwrap().to_string();
    let job = api.wait_end(&id2, Duration::from_secs(60));
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(parts_sorted(&by_form.join("out")), expected);

    // `weir submit --follow`, its components uploaded by the command.
    let by_cli = dir.path().join("cli");
    std::fs::create_dir_all(&by_cli).unwrap();
    let manifest = wordcount_manifest(&by_cli, &input, "");
    let out = run_bounded(
        {
            let mut c = weir();
            c.args(["submit", manifest.to_str().unwrap(), "--set"])
                .arg("job.parallelism=2")
                .arg("--follow")
                .env("WEIR_API", &api.base)
                .env("WEIR_TOKEN", &api.token);
            c
        },
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("finished"), "{stderr}");
    let id3 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(id3.starts_with("wordcount-test-"), "{id3}");
    assert_eq!(parts_sorted(&by_cli.join("out")), expected);

    // The list, newest first; `weir list` and `weir status` show the same.
    let jobs = api.get("/v1/jobs");
    let ids: Vec<&str> = jobs.json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{jobs:?}");
    assert_eq!(ids[0], id3, "{jobs:?}");
    let listed = run_bounded(
        {
            let mut c = weir();
            c.arg("list")
                .args(["--api", &api.base, "--token", &api.token]);
            c
        },
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && text.contains(&id) && text.contains(&id2),
        "{text}"
    );
    let status = run_bounded(
        {
            let mut c = weir();
            c.args(["status", &id, "--api", &api.base, "--token", &api.token]);
            c
        },
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("status: finished"), "{text}");
    // A finished job cannot be cancelled.
    let again = api.post(&format!("/v1/jobs/{id}/cancel"), "application/json", b"");
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(again.json["error"]["code"], "conflict");
    // No job runs: an artifact can go.
    let gone = api.call(
        "DELETE",
        &format!("/v1/artifacts/{split}"),
        None,
        b"",
        Some(&api.token),
    );
    assert_eq!(gone.status, 204, "{gone:?}");
    assert_eq!(api.get(&format!("/v1/artifacts/{split}")).status, 404);
    let left = api.get("/v1/artifacts").json;
    assert!(
        left["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["hash"] != split.as_str()),
        "{left}"
    );
}

/// A running job is cancelled over HTTP (and `weir cancel`): it ends cancelled and its slots
/// are free again.
#[test]
fn a_running_job_is_cancelled_over_http() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[2]);
    let api = Api::of(dir.path(), &cluster.coord);
    let manifest = format!(
        "edges = [\"gen -> out\"]\n[job]\nname = \"endless\"\nparallelism = 2\n[sources.gen]\nkind = \"datagen\"\nrate = 1000.0\n[sinks.out]\nkind = \"file\"\npath = \"{}\"\n",
        dir.path().join("out").display()
    );
    for by_cli in [false, true] {
        let a = api.post_json("/v1/jobs", &serde_json::json!({ "manifest": manifest }));
        assert_eq!(a.status, 201, "{a:?}");
        let id = a.json["id"].as_str().unwrap().to_string();
        // Running, with its records counted.
        let start = Instant::now();
        loop {
            let job = api.get(&format!("/v1/jobs/{id}")).json;
            if job["status"] == "running" && job["records_in"].as_u64().unwrap_or(0) > 0 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{job}");
            std::thread::sleep(Duration::from_millis(50));
        }
        if by_cli {
            let out = run_bounded(
                {
                    let mut c = weir();
                    c.args(["cancel", &id, "--api", &api.base, "--token", &api.token]);
                    c
                },
                Duration::from_secs(30),
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            let a = api.post(&format!("/v1/jobs/{id}/cancel"), "application/json", b"");
            assert_eq!(a.status, 202, "{a:?}");
        }
        let job = api.wait_end(&id, Duration::from_secs(30));
        assert_eq!(job["status"], "cancelled", "{job}");
    }
}

/// Bad requests of every kind get the right status and a JSON error, uploads over the limit are
/// not kept, and the coordinator serves on.
#[test]
fn the_api_refuses_bad_requests_with_clear_errors() {
    let dir = scratch();
    let (coord, _) = coordinator_with(
        dir.path(),
        "coord",
        "127.0.0.1:0",
        &["--max-upload-mib", "1"],
    );
    let api = Api::of(dir.path(), &coord);
    let error = |a: &Answer, status: u16, code: &str| {
        assert_eq!(a.status, status, "{a:?}");
        assert_eq!(a.json["error"]["code"], code, "{a:?}");
        assert!(
            a.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{a:?}"
        );
    };

    // Auth: every route but /healthz needs the token.
    assert_eq!(api.call("GET", "/healthz", None, b"", None).status, 200);
    for (method, path) in [
        ("GET", "/v1/jobs"),
        ("GET", "/metrics"),
        ("POST", "/v1/artifacts"),
    ] {
        error(
            &api.call(method, path, None, b"", None),
            401,
            "unauthorized",
        );
        error(
            &api.call(method, path, None, b"", Some("wrong")),
            401,
            "unauthorized",
        );
    }

    // Uploads: over the limit (not kept), not a component, a component of no weir world.
    let big = vec![0u8; 2 << 20];
    error(
        &api.post("/v1/artifacts?name=big.wasm", "application/wasm", &big),
        413,
        "too_large",
    );
    let (ct, body) = multipart(&[("file", Some("big.wasm"), &big)]);
    error(&api.post("/v1/artifacts", &ct, &body), 413, "too_large");
    error(
        &api.post("/v1/artifacts?name=t.wasm", "application/wasm", b"not wasm"),
        400,
        "invalid",
    );
    let empty_component = b"\0asm\x0d\x00\x01\x00";
    let a = api.post(
        "/v1/artifacts?name=empty.wasm",
        "application/wasm",
        empty_component,
    );
    error(&a, 400, "invalid");
    let message = a.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("implements no weir world"), "{message}");
    assert!(
        message.contains("weir:operator"),
        "names what is missing: {message}"
    );
    error(
        &api.post("/v1/artifacts", "application/wasm", b""),
        400,
        "invalid",
    );
    let (ct, body) = multipart(&[]);
    error(&api.post("/v1/artifacts", &ct, &body), 400, "invalid");
    let listed = api.get("/v1/artifacts");
    assert_eq!(
        listed.json["artifacts"],
        serde_json::json!([]),
        "nothing kept: {listed:?}"
    );
    assert!(
        std::fs::read_dir(dir.path().join("coord/components"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "no component kept"
    );

    // Submissions.
    let bad_manifest = "edges = [\"a -> b\"]\n[sources.a]\nkind = \"datagen\"\ncount = 1\nbogus = 3\n[sinks.b]\nkind = \"stdout\"\n";
    let a = api.post_json("/v1/jobs", &serde_json::json!({ "manifest": bad_manifest }));
    error(&a, 400, "invalid_manifest");
    assert_eq!(
        (
            a.json["error"]["line"].as_u64(),
            a.json["error"]["column"].as_u64()
        ),
        (Some(5), Some(1)),
        "{a:?}"
    );
    assert_eq!(a.json["error"]["file"], "manifest.toml");
    let unknown = "edges = [\"a -> op\", \"op -> b\"]\n[sources.a]\nkind = \"datagen\"\ncount = 1\n[operators.op]\ncomponent = \"nowhere.wasm\"\n[sinks.b]\nkind = \"stdout\"\n";
    let a = api.post_json("/v1/jobs", &serde_json::json!({ "manifest": unknown }));
    error(&a, 400, "invalid_manifest");
    assert_eq!(a.json["error"]["field"], "operators.op.component", "{a:?}");
    let a = api.post_json(
        "/v1/jobs",
        &serde_json::json!({ "manifest": unknown.replace("nowhere.wasm", &"ab".repeat(32)) }),
    );
    error(&a, 400, "invalid_manifest");
    let extra_field = serde_json::json!({ "manifest": "", "extra": 1 }).to_string();
    for (content_type, body, status, code) in [
        ("application/json", &b"{\"manifest\": "[..], 400, "invalid"),
        ("application/json", b"[1,2]", 400, "invalid"),
        ("application/json", extra_field.as_bytes(), 400, "invalid"),
        ("text/plain", b"x", 415, "unsupported_media_type"),
        ("", b"x", 415, "unsupported_media_type"),
    ] {
        error(&api.post("/v1/jobs", content_type, body), status, code);
    }
    let (ct, body) = multipart(&[("set", None, b"job.parallelism=2")]);
    error(&api.post("/v1/jobs", &ct, &body), 400, "invalid");
    let (ct, body) = multipart(&[("manifest", Some("job.toml"), bad_manifest.as_bytes())]);
    error(
        &api.post("/v1/jobs", &ct, &body[..body.len() / 2]),
        400,
        "invalid",
    );
    error(
        &api.post("/v1/jobs", "multipart/form-data", b"--x\r\n"),
        400,
        "invalid",
    );
    let fits_not = "edges = [\"a -> b\"]\n[job]\nparallelism = 4\n[sources.a]\nkind = \"datagen\"\ncount = 1\n[sinks.b]\nkind = \"stdout\"\n";
    let a = api.post_json("/v1/jobs", &serde_json::json!({ "manifest": fits_not }));
    error(&a, 503, "unavailable");
    assert!(
        api.get("/v1/jobs").json["jobs"] == serde_json::json!([]),
        "nothing half-deployed"
    );
    let from_nowhere = api.post_json(
        "/v1/jobs",
        &serde_json::json!({ "manifest": fits_not, "from_savepoint": "/no/such/savepoint" }),
    );
    error(&from_nowhere, 404, "not_found");

    // Unknown ids, names with path traversal, unknown routes and methods.
    for path in [
        "/v1/jobs/nope",
        "/v1/jobs/..%2F..%2Fjobs.redb",
        "/v1/jobs/nope/checkpoints",
        "/v1/artifacts/nope",
        "/v1/artifacts/..%2Fjobs.redb",
    ] {
        error(&api.get(path), 404, "not_found");
    }
    error(
        &api.post("/v1/jobs/nope/cancel", "application/json", b""),
        404,
        "not_found",
    );
    error(
        &api.call(
            "DELETE",
            "/v1/artifacts/..%2F..%2Fapi-token",
            None,
            b"",
            Some(&api.token),
        ),
        404,
        "not_found",
    );
    error(&api.get("/v1/nothing"), 404, "no_route");
    error(
        &api.call("PUT", "/v1/jobs", None, b"", Some(&api.token)),
        405,
        "method_not_allowed",
    );
    // A name with a path is kept as its file name only.
    let hash = api.upload(&component("wordcount_split"), "..%2F..%2Fsplit.wasm");
    assert_eq!(
        api.get(&format!("/v1/artifacts/{hash}")).json["name"],
        "split.wasm"
    );
    assert!(dir.path().join("coord/api-token").exists());

    // Huge headers: refused by the HTTP layer, the process serves on.
    let huge = format!(
        "GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let answer = raw(&api.base, huge.as_bytes());
    assert!(
        !answer.contains(" 200 ") && !answer.contains(" 500 "),
        "{answer}"
    );
    let answer = raw(&api.base, b"GARBAGE\r\n\r\n");
    assert!(!answer.contains(" 500 "), "{answer}");

    // Every documented route answers (never "no such route", never 500).
    let doc = api.get("/v1/openapi.json");
    assert_eq!(doc.status, 200);
    for (path, ops) in doc.json["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "nope").replace("{hash}", "nope");
        for method in ops.as_object().unwrap().keys() {
            let a = api.call(
                &method.to_uppercase(),
                &concrete,
                Some("application/json"),
                b"{}",
                Some(&api.token),
            );
            assert_ne!(
                a.json["error"]["code"], "no_route",
                "{method} {path}: {a:?}"
            );
            assert!(a.status < 500 || a.status == 503, "{method} {path}: {a:?}");
        }
    }
    let metrics = api.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(api.call("GET", "/healthz", None, b"", None).status, 200);
    assert!(
        coord.stderr().find("panicked").is_none(),
        "{}",
        coord.stderr()
    );
}

/// Without auth the API only listens on loopback: `--no-auth` elsewhere stops the coordinator
/// with a clear message; on loopback, requests need no token.
#[test]
fn no_auth_is_for_loopback_only() {
    let dir = scratch();
    let data = dir.path().join("coord");
    let out = run_bounded(
        {
            let mut c = weir();
            c.args(["coordinator", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&data)
                .args(["--http", "0.0.0.0:0", "--no-auth"]);
            c
        },
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-auth is refused on 0.0.0.0"), "{err}");
    let (coord, _) = coordinator_with(
        dir.path(),
        "open",
        "127.0.0.1:0",
        &["--http", "127.0.0.1:0", "--no-auth"],
    );
    let base = api_of(&coord);
    let out = raw(
        &base,
        b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("{\"jobs\":[]}"), "{out}");
}

/// The checkpointed word count over a 3 MiB input, its sink slowed so that it runs a few
/// seconds, checkpointing every 100 ms on `backend`; its manifest (in `dir`) and the input's
/// text.
fn slow_wordcount(dir: &Path, backend: &str) -> (std::path::PathBuf, String) {
    let text = text_with_vocabulary(3 << 20, 5, 5000);
    let input = dir.join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let manifest = wordcount_manifest(
        dir,
        &input,
        &format!(
            "delay_us = 10\n[checkpoint]\ninterval = \"100ms\"\nretain = 2\nbackend = \"{backend}\"\ndir = \"{}\"\n",
            dir.join("checkpoints").display()
        ),
    );
    (manifest, text)
}

/// A cluster of workers with `slots`, running `manifest` at parallelism 2 (submitted with
/// `weir submit`), a checkpoint of it complete and some output published; its API and the
/// job's id. Its buffers are small (4 KiB): the sources are held back by the slow sinks and run
/// nearly as long as the job, so that savepoints (which need a running source) can be taken
/// until near its end.
fn submit_running(dir: &Path, manifest: &Path, slots: &[u32]) -> (Cluster, Api, String) {
    let cluster = Cluster::start(dir, slots);
    let api = Api::of(dir, &cluster.coord);
    let args = [
        "submit",
        manifest.to_str().unwrap(),
        "--set",
        "job.parallelism=2",
        "--set",
        "job.buffer_bytes=4096",
    ];
    let id = verb(&api, &args).trim().to_string();
    wait_running(&api, &id, 0);
    (cluster, api, id)
}

/// `weir VERB ARGS... --api ... --token ...`, bounded; its stdout (it must succeed).
fn verb(api: &Api, args: &[&str]) -> String {
    let out = run_bounded(
        {
            let mut c = weir();
            c.args(args)
                .args(["--api", &api.base, "--token", &api.token]);
            c
        },
        Duration::from_secs(180),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(
        out.status.success(),
        "weir {args:?} failed:\n{stdout}{stderr}"
    );
    stdout
}

/// Waits until job `id` runs attempt `attempt` or later and has published a checkpoint and
/// some output.
fn wait_running(api: &Api, id: &str, attempt: u64) -> Value {
    let start = Instant::now();
    loop {
        let job = api.get(&format!("/v1/jobs/{id}")).json;
        if job["status"] == "running"
            && job["attempt"].as_u64().unwrap_or(0) >= attempt
            && job["checkpoints_completed"].as_u64().unwrap_or(0) > 0
            && job["records_out"].as_u64().unwrap_or(0) > 0
        {
            return job;
        }
        assert!(
            !["finished", "failed", "cancelled"].contains(&job["status"].as_str().unwrap_or("")),
            "the job ended too soon: {job}"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "{job}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `weir stop` takes a savepoint and stops the job; the job resumes from it at another
/// parallelism on the other state backend (`weir submit --from`), then the input ends: every
/// running count is published exactly once. The savepoint is a directory of its own, in the
/// documented layout.
#[test]
fn stop_with_a_savepoint_then_resume_at_another_parallelism_and_backend() {
    let dir = scratch();
    let (manifest, text) = slow_wordcount(dir.path(), "memory");
    let (_cluster, api, id) = submit_running(dir.path(), &manifest, &[2, 2]);
    let id = id.as_str();
    let savepoint = verb(&api, &["stop", id]);
    let savepoint = Path::new(savepoint.trim());
    assert!(
        savepoint.starts_with(dir.path().join("checkpoints/savepoints")),
        "{savepoint:?}"
    );
    let job = api.get(&format!("/v1/jobs/{id}")).json;
    assert_eq!(job["status"], "finished", "{job}");
    assert!(
        job["why"]
            .as_str()
            .unwrap()
            .contains("stopped with savepoint"),
        "{job}"
    );
    assert_eq!(
        job["savepoints"][0]["path"],
        savepoint.display().to_string(),
        "{job}"
    );
    // The layout: _savepoint, one checkpoint with its metadata and files.
    let marker: Value =
        serde_json::from_slice(&std::fs::read(savepoint.join("_savepoint")).unwrap()).unwrap();
    assert_eq!(marker["format"], 1);
    assert_eq!(marker["job"], id);
    let chk = savepoint.join(format!("chk-{}", marker["checkpoint"]));
    assert!(chk.join("_metadata").exists(), "{chk:?}");
    let before = published(dir.path()).len();
    assert!(before > 0 && before < text.split_whitespace().count());

    // Resume at parallelism 3 on redb, to the end.
    let out = verb(
        &api,
        &[
            "submit",
            manifest.to_str().unwrap(),
            "--set",
            "job.parallelism=3",
            "--set",
            "checkpoint.backend=redb",
            "--from",
            savepoint.to_str().unwrap(),
            "--follow",
        ],
    );
    let resumed = out.trim();
    let job = api.get(&format!("/v1/jobs/{resumed}")).json;
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["vertices"][1]["parallelism"], 3, "{job}");
    assert_running_counts(&published(dir.path()), &count_words(&text), 1);
    // The savepoint is still there, whatever retention did.
    assert!(chk.join("_metadata").exists());
}

/// A savepoint taken on the redb backend (the job goes on) restores into embedded mode
/// (`weir run --from`) on the memory backend at parallelism 1, with a new component for
/// `count` (the C one, which keeps its counts in the same encoding), exactly once.
#[test]
fn a_savepoint_restores_into_embedded_mode_on_the_other_backend() {
    let dir = scratch();
    let (manifest, text) = slow_wordcount(dir.path(), "redb");
    let (_cluster, api, id) = submit_running(dir.path(), &manifest, &[2]);
    let id = id.as_str();
    let elsewhere = dir.path().join("mine");
    let savepoint = verb(
        &api,
        &["savepoint", id, "--dir", elsewhere.to_str().unwrap()],
    );
    let savepoint = savepoint.trim();
    assert!(Path::new(savepoint).starts_with(&elsewhere), "{savepoint}");
    // The job goes on after a savepoint; cancelled, it leaves what it published after the
    // savepoint, which the restore removes.
    assert_eq!(api.get(&format!("/v1/jobs/{id}")).json["status"], "running");
    verb(&api, &["cancel", id]);
    api.wait_end(id, Duration::from_secs(30));
    let out = run_ok(&[
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "job.parallelism=1",
        "--set",
        "checkpoint.backend=memory",
        "--set",
        &format!(
            "operators.count.component={}",
            c_component("wordcount_count")
        ),
        "--from",
        savepoint,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_running_counts(&published(dir.path()), &count_words(&text), 1);
}

/// A running job rescaled 2 -> 4 -> 1 (`weir rescale`, each a savepoint and a redeployment)
/// runs to its end with every running count published exactly once.
#[test]
fn a_running_job_rescales_2_4_1_exactly_once() {
    let dir = scratch();
    let (manifest, text) = slow_wordcount(dir.path(), "memory");
    let (_cluster, api, id) = submit_running(dir.path(), &manifest, &[2, 2]);
    let id = id.as_str();
    for (p, attempt) in [(4, 1), (1, 2)] {
        verb(&api, &["rescale", id, "--parallelism", &p.to_string()]);
        let job = wait_running(&api, id, attempt);
        for v in job["vertices"].as_array().unwrap() {
            assert_eq!(v["parallelism"], p, "{job}");
        }
        assert_eq!(job["restarts"], attempt, "{job}");
    }
    let job = api.wait_end(id, Duration::from_secs(120));
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["savepoints"].as_array().unwrap().len(), 2, "{job}");
    assert_running_counts(&published(dir.path()), &count_words(&text), 1);
}

/// Savepoint requests the job cannot serve are refused: a job without checkpoints, an unknown
/// job or request, a job that has ended, a relative directory; a rescale beyond the slots or
/// the key groups.
#[test]
fn savepoint_requests_a_job_cannot_serve_are_refused() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[2]);
    let api = Api::of(dir.path(), &cluster.coord);
    let endless = |checkpoint: &str| {
        format!(
            "edges = [\"gen -> out\"]\n[job]\nname = \"endless\"\nmax_parallelism = 8\n[sources.gen]\nkind = \"datagen\"\nrate = 1000.0\n[sinks.out]\nkind = \"file\"\npartition = \"rebalance\"\npath = \"{}\"\n{checkpoint}",
            dir.path().join("out").display()
        )
    };
    let a = api.post_json("/v1/jobs", &serde_json::json!({ "manifest": endless("") }));
    let plain = a.json["id"].as_str().unwrap().to_string();
    let a = api.post(
        &format!("/v1/jobs/{plain}/savepoints"),
        "application/json",
        b"",
    );
    assert_eq!(a.status, 409, "{a:?}");
    assert!(
        a.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[checkpoint]"),
        "{a:?}"
    );
    api.post(&format!("/v1/jobs/{plain}/cancel"), "application/json", b"");
    api.wait_end(&plain, Duration::from_secs(30));
    let a = api.post(&format!("/v1/jobs/{plain}/stop"), "application/json", b"");
    assert_eq!(a.status, 409, "{a:?}");
    let a = api.post("/v1/jobs/nope/savepoints", "application/json", b"");
    assert_eq!(a.status, 404, "{a:?}");
    let checkpointed = endless(&format!(
        "[checkpoint]\ninterval = \"100ms\"\ndir = \"{}\"\n",
        dir.path().join("checkpoints").display()
    ));
    let a = api.post_json("/v1/jobs", &serde_json::json!({ "manifest": checkpointed }));
    let id = a.json["id"].as_str().unwrap().to_string();
    let a = api.post_json(
        &format!("/v1/jobs/{id}/savepoints"),
        &serde_json::json!({ "dir": "relative/dir" }),
    );
    assert_eq!(a.status, 400, "{a:?}");
    let a = api.post_json(
        &format!("/v1/jobs/{id}/savepoints"),
        &serde_json::json!({ "where": 1 }),
    );
    assert_eq!(a.status, 400, "{a:?}");
    for (body, status) in [
        (serde_json::json!({ "parallelism": 3 }), 503),
        (serde_json::json!({ "parallelism": 9 }), 400),
        (serde_json::json!({ "parallelism": 0 }), 400),
        (serde_json::json!({}), 400),
        (serde_json::json!({ "operators": { "nope": 1 } }), 404),
    ] {
        let a = api.post_json(&format!("/v1/jobs/{id}/rescale"), &body);
        assert_eq!(a.status, status, "{body}: {a:?}");
    }
    let a = api.get(&format!("/v1/jobs/{id}/savepoints/nope"));
    assert_eq!(a.status, 404, "{a:?}");
    // Its checkpoint history, oldest first.
    let start = Instant::now();
    let history = loop {
        let h = api.get(&format!("/v1/jobs/{id}/checkpoints")).json;
        if h["checkpoints"].as_array().is_some_and(|c| c.len() >= 2) {
            break h;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{h}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let ids: Vec<u64> = history["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{history}");
    // One that works, polled to its end.
    let a = api.post(
        &format!("/v1/jobs/{id}/savepoints"),
        "application/json",
        b"",
    );
    assert_eq!(a.status, 202, "{a:?}");
    let request = a.json["request"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let r = api.get(&format!("/v1/jobs/{id}/savepoints/{request}"));
        assert_eq!(r.status, 200, "{r:?}");
        if r.json["status"] == "completed" {
            assert!(
                Path::new(r.json["path"].as_str().unwrap())
                    .join("_savepoint")
                    .exists()
            );
            break;
        }
        assert_eq!(r.json["status"], "in_progress", "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(30), "{r:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let listed = api.get(&format!("/v1/jobs/{id}/savepoints"));
    assert_eq!(
        listed.json["savepoints"].as_array().unwrap().len(),
        1,
        "{listed:?}"
    );
    // One operator rescaled: the sink to 2 (the two slots), the source staying at 1.
    let a = api.post_json(
        &format!("/v1/jobs/{id}/rescale"),
        &serde_json::json!({ "operators": { "out": 2 } }),
    );
    assert_eq!(a.status, 202, "{a:?}");
    let job = wait_running(&api, &id, 1);
    let parallelism: Vec<u64> = job["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["parallelism"].as_u64().unwrap())
        .collect();
    assert_eq!(parallelism, [1, 2], "{job}");
}

/// A postcard varint (how the Rust SDK keeps a `u64` in state), from hex.
fn decode_varint(hex: &str) -> u64 {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    varint(&bytes)
}

/// Live keyed state, read over HTTP while the word count runs on two workers: each value read
/// is a running count the sink publishes; an unknown key, state or operator is a 404.
#[test]
fn live_keyed_state_is_read_over_http() {
    let dir = scratch();
    let (manifest, text) = slow_wordcount(dir.path(), "memory");
    // Slower still: the job runs while it is queried.
    let slower = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("delay_us = 10", "delay_us = 40");
    std::fs::write(&manifest, slower).unwrap();
    let (_cluster, api, id) = submit_running(dir.path(), &manifest, &[1, 1]);
    let counts = count_words(&text);
    let mut words: Vec<&str> = counts.keys().map(String::as_str).collect();
    words.sort();
    let words: Vec<&str> = words.into_iter().step_by(97).take(40).collect();
    // A running job's component cannot be deleted.
    let artifacts = api.get("/v1/artifacts").json;
    let count = artifacts["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "wordcount_count.wasm")
        .unwrap_or_else(|| panic!("{artifacts}"))["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let a = api.call(
        "DELETE",
        &format!("/v1/artifacts/{count}"),
        None,
        b"",
        Some(&api.token),
    );
    assert_eq!(a.status, 409, "{a:?}");
    for (path, why) in [
        (
            format!("/v1/jobs/{id}/state/count/count?key=no-such-word-zz"),
            "an unknown key",
        ),
        (
            format!("/v1/jobs/{id}/state/count/nope?key={}", words[0]),
            "an unknown state",
        ),
        (
            format!("/v1/jobs/{id}/state/nope/count?key={}", words[0]),
            "an unknown operator",
        ),
        (
            format!("/v1/jobs/{id}/state/out/count?key={}", words[0]),
            "a sink",
        ),
        (
            format!("/v1/jobs/nope/state/count/count?key={}", words[0]),
            "an unknown job",
        ),
    ] {
        let a = api.get(&path);
        assert_eq!(a.status, 404, "{why}: {a:?}");
    }
    for bad in ["", "?key_hex=zz", "?key=a&key_hex=61"] {
        let a = api.get(&format!("/v1/jobs/{id}/state/count/count{bad}"));
        assert_eq!(a.status, 400, "{bad}: {a:?}");
    }
    let mut reads: Vec<(String, u64)> = Vec::new();
    let mut workers = std::collections::BTreeSet::new();
    for _ in 0..3 {
        for w in &words {
            let a = api.get(&format!("/v1/jobs/{id}/state/count/count?key={w}"));
            match a.status {
                200 => {
                    assert_eq!(a.json["kind"], "value", "{a:?}");
                    assert_eq!(a.json["key_utf8"], *w);
                    workers.insert(a.json["worker"].as_str().unwrap().to_string());
                    reads.push((
                        w.to_string(),
                        decode_varint(a.json["value_hex"].as_str().unwrap()),
                    ));
                }
                // Not counted yet.
                404 => assert_eq!(a.json["error"]["code"], "not_found", "{a:?}"),
                // The subtask owning the key, or the job, ended meanwhile (a slow machine):
                // what was read still counts.
                409 => {}
                _ => panic!("{w}: {a:?}\n{}", api.get(&format!("/v1/jobs/{id}")).json),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(reads.len() >= 20, "{reads:?}");
    assert_eq!(
        workers.len(),
        2,
        "keys are read from both workers' subtasks"
    );
    let job = api.wait_end(&id, Duration::from_secs(120));
    assert_eq!(job["status"], "finished", "{job}");
    let published = published(dir.path());
    let published: std::collections::HashSet<&str> = published.iter().map(String::as_str).collect();
    let counts = count_words(&text);
    for (word, count) in &reads {
        assert!(
            *count >= 1 && *count <= counts[word.as_str()],
            "{word} {count}"
        );
        assert!(
            published.contains(format!("{word} {count}").as_str()),
            "{word} {count}"
        );
    }
    // Once the job has ended, its state is no longer read.
    let a = api.get(&format!("/v1/jobs/{id}/state/count/count?key={}", words[0]));
    assert_eq!(a.status, 409, "{a:?}");
}

/// A guest's stdout, stderr and log calls reach `GET /v1/jobs/{id}/logs` (and `weir logs`),
/// tagged with operator, subtask and worker, numbered so that a client asks for what is new.
#[test]
fn guest_lines_are_served_by_the_api() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[1]);
    let api = Api::of(dir.path(), &cluster.coord);
    let manifest = one_operator_manifest(
        dir.path(),
        "parallelism = 1",
        "kind = \"datagen\"\ncount = 3\nshape = \"sequence\"",
        "bad",
        &component("faulty_hostile"),
        r#"{ mode = "print", n = 2 }"#,
        &dir.path().join("out"),
    );
    let id = verb(&api, &["submit", manifest.to_str().unwrap(), "--follow"]);
    let id = id.trim();
    // Three records, two lines each to stdout and stderr: 12 lines, all under the limit.
    let start = Instant::now();
    let lines = loop {
        let a = api.get(&format!("/v1/jobs/{id}/logs"));
        assert_eq!(a.status, 200, "{a:?}");
        let lines = a.json["lines"].as_array().unwrap().clone();
        if lines.len() >= 12 {
            break a.json;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{a:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let all = lines["lines"].as_array().unwrap();
    assert_eq!(all.len(), 12, "{lines}");
    let first = &all[0];
    assert_eq!(first["operator"], "bad");
    assert_eq!(first["subtask"], 0);
    assert!(
        first["worker"].as_str().unwrap().starts_with("w-"),
        "{first}"
    );
    let levels: Vec<&str> = all.iter().map(|l| l["level"].as_str().unwrap()).collect();
    assert_eq!(
        levels.iter().filter(|l| **l == "stdout").count(),
        6,
        "{levels:?}"
    );
    assert_eq!(
        levels.iter().filter(|l| **l == "stderr").count(),
        6,
        "{levels:?}"
    );
    assert!(all.iter().any(|l| l["message"] == "out line 1"), "{lines}");
    // Numbered: asking after the last gives nothing new.
    let next = lines["next"].as_u64().unwrap();
    let again = api.get(&format!("/v1/jobs/{id}/logs?since={next}"));
    assert_eq!(again.json["lines"], serde_json::json!([]), "{again:?}");
    let half = api.get(&format!("/v1/jobs/{id}/logs?since={}&limit=3", next - 6));
    assert_eq!(half.json["lines"].as_array().unwrap().len(), 3, "{half:?}");
    assert_eq!(api.get(&format!("/v1/jobs/{id}/logs?since=x")).status, 400);
    assert_eq!(api.get("/v1/jobs/nope/logs").status, 404);
    let printed = verb(&api, &["logs", id]);
    assert_eq!(printed.lines().count(), 12, "{printed}");
    assert!(
        printed.contains("bad[0]@w-") && printed.contains("err line 0"),
        "{printed}"
    );
}

/// `weir run --http`: the embedded mode serves the same API while its job runs: the job is
/// listed, a savepoint is taken, live state is read; the job ends with its exact output.
#[test]
fn embedded_mode_serves_the_api_while_its_job_runs() {
    let dir = scratch();
    let (manifest, text) = slow_wordcount(dir.path(), "memory");
    let mut cmd = weir();
    cmd.args([
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "job.parallelism=2",
    ])
    .args(["--set", "job.buffer_bytes=4096", "--http", "127.0.0.1:0"])
    .env("WEIR_LOG", "warn,weir=info")
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(dir.path().join("run.err")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let err = dir.path().join("run.err");
    let start = Instant::now();
    let (base, token_file) = loop {
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("HTTP API at ")) {
            let base = line.split_whitespace().nth(3).unwrap();
            let file = line.rsplit_once("is in ").unwrap().1.trim_end_matches(')');
            break (base.trim_end_matches("/v1").to_string(), file.to_string());
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let api = Api {
        base,
        token: std::fs::read_to_string(token_file)
            .unwrap()
            .trim()
            .to_string(),
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent(),
    };
    let id = loop {
        let jobs = api.get("/v1/jobs").json;
        if let Some(id) = jobs["jobs"][0]["id"].as_str() {
            break id.to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{jobs}");
        std::thread::sleep(Duration::from_millis(20));
    };
    wait_running(&api, &id, 0);
    let savepoint = verb(&api, &["savepoint", &id]);
    assert!(
        Path::new(savepoint.trim()).join("_savepoint").exists(),
        "{savepoint}"
    );
    let counts = count_words(&text);
    let word = counts.keys().next().unwrap();
    let a = api.get(&format!("/v1/jobs/{id}/state/count/count?key={word}"));
    assert!([200, 404, 409].contains(&a.status), "{a:?}");
    let status = wait_bounded_child(&mut child, Duration::from_secs(120));
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&err).unwrap()
    );
    assert_running_counts(&published(dir.path()), &counts, 1);
}

/// Waits for `child` to exit, up to `limit`.
fn wait_bounded_child(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `--tls-cert/--tls-key`: the API is served over TLS only; a client that trusts the
/// certificate (`--cacert`) works, plain HTTP and clients that do not trust it are refused.
#[test]
fn the_api_serves_over_tls() {
    let dir = scratch();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("api.pem"), dir.path().join("api.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (coord, _) = coordinator_with(
        dir.path(),
        "coord",
        "127.0.0.1:0",
        &[
            "--http",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let base = api_of(&coord);
    assert!(base.starts_with("https://"), "{base}");
    let token = std::fs::read_to_string(dir.path().join("coord/api-token")).unwrap();
    let listed = run_bounded(
        {
            let mut c = weir();
            c.args(["list", "--api", &base, "--token", token.trim(), "--cacert"])
                .arg(&cert);
            c
        },
        Duration::from_secs(30),
    );
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(out.contains("no jobs"), "{out}");
    // Without the certificate trusted, or in plain HTTP: refused.
    let untrusted = run_bounded(
        {
            let mut c = weir();
            c.args(["list", "--api", &base, "--token", token.trim()]);
            c
        },
        Duration::from_secs(30),
    );
    assert!(!untrusted.status.success());
    let plain = raw(
        &base.replace("https://", "http://"),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(!plain.contains("200 OK"), "{plain}");
}

/// Every documented route, sent malformed JSON, a wrong content type, a truncated multipart
/// body, path traversal in its names and a huge header, answers with a client error in JSON
/// (or, for the header, the HTTP layer's refusal), never a server error; the coordinator serves
/// on and nothing panicked.
#[test]
fn every_route_refuses_malformed_input_cleanly() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[1]);
    let api = Api::of(dir.path(), &cluster.coord);
    let endless = format!(
        "edges = [\"gen -> out\"]\n[job]\nname = \"endless\"\n[sources.gen]\nkind = \"datagen\"\nrate = 100.0\n[sinks.out]\nkind = \"file\"\npath = \"{}\"\n[checkpoint]\ninterval = \"1s\"\ndir = \"{}\"\n",
        dir.path().join("out").display(),
        dir.path().join("checkpoints").display()
    );
    let a = api.post_json("/v1/jobs", &serde_json::json!({ "manifest": endless }));
    let id = a.json["id"].as_str().unwrap().to_string();
    let (ct, whole) = multipart(&[("manifest", Some("job.toml"), endless.as_bytes())]);
    let truncated = &whole[..whole.len() / 2];
    let doc = api.get("/v1/openapi.json").json;
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for names in [
            [id.as_str(), "count", "count", "r"],
            [
                "..%2F..%2Fapi-token",
                "..%2Fx",
                "%2e%2e",
                "..%5C..%5Cjobs.redb",
            ],
        ] {
            let concrete = path
                .replace("{id}", names[0])
                .replace("{hash}", names[1])
                .replace("{operator}", names[1])
                .replace("{state}", names[2])
                .replace("{request}", names[3]);
            for method in ops.as_object().unwrap().keys() {
                let method = method.to_uppercase();
                for (content_type, body) in [
                    ("application/json", &b"{\"manifest\": "[..]),
                    ("text/plain", b"hello"),
                    (ct.as_str(), truncated),
                ] {
                    let a = api.call(
                        &method,
                        &concrete,
                        Some(content_type),
                        body,
                        Some(&api.token),
                    );
                    assert!(
                        a.status < 500 || a.status == 503,
                        "{method} {concrete} {content_type}: {a:?}"
                    );
                    if a.status >= 400 {
                        assert!(
                            a.json["error"]["code"].is_string()
                                && a.json["error"]["message"].is_string(),
                            "{method} {concrete} {content_type}: {a:?}"
                        );
                        assert_ne!(a.json["error"]["code"], "no_route", "{method} {concrete}");
                    }
                    checked += 1;
                }
                let huge = format!(
                    "{method} {concrete} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
                    api.token,
                    "a".repeat(1 << 20)
                );
                let answer = raw(&api.base, huge.as_bytes());
                assert!(
                    !answer.contains(" 500 ") && !answer.contains(" 200 "),
                    "{method} {concrete}: {answer}"
                );
            }
        }
    }
    assert!(checked > 100, "{checked}");
    assert!(!dir.path().join("coord/x").exists() && dir.path().join("coord/api-token").exists());
    assert_eq!(api.call("GET", "/healthz", None, b"", None).status, 200);
    // (The cancel route, sent any body, cancels the job: it takes none.)
    assert_eq!(api.get(&format!("/v1/jobs/{id}")).status, 200);
    assert!(
        !cluster.coord.stderr().contains("panicked"),
        "{}",
        cluster.coord.stderr()
    );
}

/// A job whose operator fails once restarts from its checkpoint: its view shows the restart,
/// the failed attempt and its cause, and the job finishes.
#[test]
fn a_jobs_view_shows_its_restarts_and_their_causes() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[2]);
    let api = Api::of(dir.path(), &cluster.coord);
    let manifest = format!(
        "edges = [\"src -> flaky\", \"flaky -> out\"]\n[job]\nparallelism = 2\n[checkpoint]\ninterval = \"50ms\"\ndir = \"{}\"\n[restart]\nstrategy = \"fixed_delay\"\nattempts = 1\ndelay = \"10ms\"\n[sources.src]\nkind = \"datagen\"\ncount = 20000\nrate = 20000\nshape = \"sequence\"\n[operators.flaky]\ncomponent = \"{}\"\nconfig = {{ fail_at = 8000 }}\n[sinks.out]\nkind = \"file\"\npath = \"{}\"\n",
        dir.path().join("checkpoints").display(),
        component("faulty_flaky"),
        dir.path().join("out").display()
    );
    let flaky = std::fs::read(component("faulty_flaky")).unwrap();
    let (ct, body) = multipart(&[
        ("manifest", Some("flaky.toml"), manifest.as_bytes()),
        ("flaky", Some("faulty_flaky.wasm"), &flaky),
    ]);
    let a = api.post("/v1/jobs", &ct, &body);
    assert_eq!(a.status, 201, "{a:?}");
    let id = a.json["id"].as_str().unwrap().to_string();
    let job = api.wait_end(&id, Duration::from_secs(60));
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(
        (job["restarts"].as_u64(), job["attempt"].as_u64()),
        (Some(1), Some(1)),
        "{job}"
    );
    let failure = &job["failures"][0];
    assert_eq!(failure["attempt"], 0, "{job}");
    assert!(
        failure["cause"]
            .as_str()
            .unwrap()
            .contains("failing on purpose at record 8000"),
        "{job}"
    );
}

/// `weir swap --mode restart`: the count operator's Rust component swapped for the C one (a new
/// version) while the job runs; the job goes on from the savepoint with the new component, its
/// keyed state carried, and every running count is published exactly once. A new component
/// that cannot take the operator's place (another world, an `open` that fails with the
/// operator's config) and a swap of a source are refused with the reason, the job untouched.
#[test]
fn a_running_operator_is_swapped_by_a_restart_exactly_once() {
    let dir = scratch();
    let (manifest, text) = slow_wordcount(dir.path(), "memory");
    let (_cluster, api, id) = submit_running(dir.path(), &manifest, &[2, 2]);
    let id = id.as_str();
    let swap = |operator: &str, component: &str| {
        let hash = api.upload(component, "new.wasm");
        api.post_json(
            &format!("/v1/jobs/{id}/swap"),
            &serde_json::json!({
                "operator": operator,
                "artifact": format!("sha256:{hash}"),
                "mode": "restart",
            }),
        )
    };
    let a = swap("count", &component("bench_gen"));
    assert_eq!(a.status, 400, "{a:?}");
    assert!(
        a.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not implement weir:operator/operator@0.1.0"),
        "{a:?}"
    );
    // `tally` needs a `reads` config, which `count`'s config has not: its open fails.
    let a = swap("count", &component("bench_tally"));
    assert_eq!(a.status, 400, "{a:?}");
    let why = a.json["error"]["message"].as_str().unwrap();
    assert!(
        why.contains("cannot take its place: its open failed") && why.contains("reads"),
        "{a:?}"
    );
    let a = swap("lines", &component("wordcount_count"));
    assert_eq!(a.status, 400, "{a:?}");
    assert!(
        a.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`lines` is a source"),
        "{a:?}"
    );
    let job = api.get(&format!("/v1/jobs/{id}")).json;
    assert_eq!(
        (job["status"].clone(), job["attempt"].clone()),
        ("running".into(), 0.into())
    );

    let savepoint = verb(
        &api,
        &[
            "swap",
            id,
            "count",
            &c_component("wordcount_count"),
            "--mode",
            "restart",
        ],
    );
    assert!(Path::new(savepoint.trim()).exists(), "{savepoint}");
    let job = wait_running(&api, id, 1);
    assert_eq!(job["restarts"], 1, "{job}");
    // The version runs, and the history says so.
    let hash = api.upload(&c_component("wordcount_count"), "wordcount_count.wasm");
    assert_eq!(job["components"]["count"], hash.as_str(), "{job}");
    assert_eq!(job["swaps"].as_array().unwrap().len(), 1, "{job}");
    assert_eq!(job["swaps"][0]["to"], hash.as_str(), "{job}");
    let status = verb(&api, &["status", id]);
    assert!(
        status.contains("swap of count (restart, checkpoint ") && status.contains(&hash),
        "{status}"
    );
    let job = api.wait_end(id, Duration::from_secs(120));
    assert_eq!(job["status"], "finished", "{job}");
    assert_running_counts(&published(dir.path()), &count_words(&text), 1);
}

/// The word count over an unbounded source of 5-word lines (a vocabulary of 200 words) at
/// 4000 lines/s, counted by the word count's `count` (v1 of the swap example; with `count_config` as its config),
/// checkpointing every 300 ms; its manifest, in `dir`.
fn endless_wordcount(dir: &Path, count_config: &str) -> std::path::PathBuf {
    endless_wordcount_with(dir, &component("wordcount_count"), count_config)
}

/// [`endless_wordcount`] counted by component `count`.
fn endless_wordcount_with(dir: &Path, count: &str, count_config: &str) -> std::path::PathBuf {
    let manifest = dir.join("endless.toml");
    let text = format!(
        r#"edges = ["lines -> split", "split -> count", "count -> out"]
[job]
name = "endless-wordcount"
parallelism = 2
max_parallelism = 128
[sources.lines]
kind = "datagen"
shape = "lines"
words_per_line = 5
vocabulary = 200
rate = 4000.0
[operators.split]
component = "{split}"
[operators.count]
component = "{count}"
partition = "hash"
config = {{ {count_config} }}
[sinks.out]
kind = "file"
path = "{out}"
[checkpoint]
interval = "300ms"
dir = "{checkpoints}"
"#,
        split = component("wordcount_split"),
        out = dir.join("out").display(),
        checkpoints = dir.join("checkpoints").display(),
    );
    std::fs::write(&manifest, text).unwrap();
    manifest
}

/// A cluster of two workers running `manifest` (see [`endless_wordcount`]), a checkpoint of
/// it complete; its API and the job's id.
fn endless_running(dir: &Path, manifest: &Path) -> (Cluster, Api, String) {
    let cluster = Cluster::start(dir, &[2, 2]);
    let api = Api::of(dir, &cluster.coord);
    let id = verb(&api, &["submit", manifest.to_str().unwrap()]);
    let id = id.trim().to_string();
    wait_running(&api, &id, 0);
    (cluster, api, id)
}

/// Each word's running counts in `lines` (v1's `<word> <n>` and v2's JSON), which must be
/// 1..=n exactly once; and, per part file, v1's lines before v2's. Returns how many words
/// have lines of both versions.
fn assert_counts_continue(out: &Path) -> usize {
    let mut counts: std::collections::HashMap<String, Vec<(u64, bool)>> = Default::default();
    for file in std::fs::read_dir(out).unwrap().flatten() {
        let text = std::fs::read_to_string(file.path()).unwrap();
        let mut v2_seen = false;
        for line in text.lines() {
            let (word, n, v2) = match serde_json::from_str::<Value>(line) {
                Ok(v) => (
                    v["word"].as_str().unwrap().to_string(),
                    v["count"].as_u64().unwrap(),
                    true,
                ),
                Err(_) => {
                    let (w, n) = line.split_once(' ').unwrap();
                    (w.to_string(), n.parse().unwrap(), false)
                }
            };
            assert!(
                v2 || !v2_seen,
                "{}: a v1 line after v2's: {line}",
                file.path().display()
            );
            v2_seen |= v2;
            counts.entry(word).or_default().push((n, v2));
        }
    }
    assert!(!counts.is_empty(), "no output");
    let mut both = 0;
    for (word, mut seen) in counts {
        seen.sort_unstable();
        let ns: Vec<u64> = seen.iter().map(|s| s.0).collect();
        let want: Vec<u64> = (1..=ns.len() as u64).collect();
        assert!(ns == want, "{word}: running counts {ns:?}");
        // Counted by v1 first, then by v2: v2 went on from v1's state.
        let first_v2 = seen.iter().position(|s| s.1).unwrap_or(seen.len());
        assert!(seen[first_v2..].iter().all(|s| s.1), "{word}: {seen:?}");
        both += usize::from(first_v2 > 0 && first_v2 < seen.len());
    }
    both
}

/// Polls request `request` of job `id` until it ends; its final status.
fn wait_request(api: &Api, id: &str, request: &str) -> Value {
    let start = Instant::now();
    loop {
        let r = api.get(&format!("/v1/jobs/{id}/savepoints/{request}")).json;
        if r["status"] != "in_progress" {
            return r;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{r}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A live swap under load: the word count on two workers, count v1 -> v2 (another output
/// format, its state in another encoding migrated lazily by v2's hook) while the source runs;
/// no task restarts, another swap or a savepoint meanwhile is refused (409), and once the
/// input ends (a stop with a savepoint) every word's running counts appear exactly once, v1's
/// lines before v2's, v2's counts going on from v1's.
#[test]
fn a_running_word_count_is_swapped_live_exactly_once_its_state_migrated() {
    let dir = scratch();
    let manifest = endless_wordcount(dir.path(), "");
    let (_cluster, api, id) = endless_running(dir.path(), &manifest);
    let id = id.as_str();
    let v2 = api.upload(&component("swap_count_v2"), "v2.wasm");
    let swap = api.post_json(
        &format!("/v1/jobs/{id}/swap"),
        &serde_json::json!({ "operator": "count", "artifact": format!("sha256:{v2}") }),
    );
    assert_eq!(swap.status, 202, "{swap:?}");
    let again = api.post_json(
        &format!("/v1/jobs/{id}/swap"),
        &serde_json::json!({ "operator": "count", "artifact": format!("sha256:{v2}") }),
    );
    assert_eq!(again.status, 409, "{again:?}");
    let savepoint = api.post_json(&format!("/v1/jobs/{id}/savepoints"), &serde_json::json!({}));
    assert_eq!(savepoint.status, 409, "{savepoint:?}");
    let request = swap.json["request"].as_str().unwrap();
    let done = wait_request(&api, id, request);
    assert_eq!(done["status"], "completed", "{done}");
    let job = api.get(&format!("/v1/jobs/{id}")).json;
    assert_eq!(
        (job["attempt"].clone(), job["restarts"].clone()),
        (0.into(), 0.into()),
        "{job}"
    );
    assert_eq!(job["components"]["count"], v2.as_str(), "{job}");
    assert_eq!(job["versions"]["count"], 2, "{job}");
    let s = &job["swaps"][0];
    assert_eq!(
        (s["mode"].as_str(), s["status"].as_str()),
        (Some("live"), Some("confirmed")),
        "{job}"
    );
    let status = verb(&api, &["status", id]);
    assert!(status.contains(&format!("count: v2 {v2}")), "{status}");
    // v2 runs on a while, then the input ends.
    std::thread::sleep(Duration::from_millis(500));
    let savepoint = verb(&api, &["stop", id]);
    let job = api.wait_end(id, Duration::from_secs(60));
    assert_eq!(job["status"], "finished", "{job}");
    let both = assert_counts_continue(&dir.path().join("out"));
    assert!(
        both > 100,
        "only {both} words were counted by both versions"
    );
    // The same manifest (naming v1) from the savepoint: the job restored after its swap runs v2.
    let args = [
        "submit",
        manifest.to_str().unwrap(),
        "--from",
        savepoint.trim(),
    ];
    let again = verb(&api, &args);
    let again = again.trim();
    let job = wait_running(&api, again, 0);
    assert_eq!(job["components"]["count"], v2.as_str(), "{job}");
    verb(&api, &["cancel", again]);
}

/// A v2 that fails on its tenth batch, swapped in live: the job goes back to v1 from the
/// swap's checkpoint (one restart, not counted as a failure), the swap request and the job's
/// history say why, and the output stays exactly-once with none of v2's lines.
#[test]
fn a_live_swap_whose_new_version_fails_is_rolled_back_exactly_once() {
    let dir = scratch();
    let manifest = endless_wordcount(dir.path(), "fail_at_batch = 10");
    let (_cluster, api, id) = endless_running(dir.path(), &manifest);
    let id = id.as_str();
    let out = run_bounded(
        {
            let mut c = weir();
            c.args(["swap", id, "count", &component("swap_count_v2")])
                .args(["--api", &api.base, "--token", &api.token]);
            c
        },
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the swap failed: rolled back to ")
            && stderr.contains("failing at batch 10 as configured"),
        "{stderr}"
    );
    let job = wait_running(&api, id, 1);
    let v1 = api.upload(&component("wordcount_count"), "v1.wasm");
    assert_eq!(job["components"]["count"], v1.as_str(), "{job}");
    assert_eq!(job["versions"]["count"], 1, "{job}");
    assert_eq!(job["swaps"][0]["status"], "rolled_back", "{job}");
    assert!(
        (job["swaps"][0]["why"].as_str().unwrap()).contains("failing at batch 10"),
        "{job}"
    );
    verb(&api, &["stop", id]);
    let job = api.wait_end(id, Duration::from_secs(60));
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(assert_counts_continue(&dir.path().join("out")), 0);
    let lines = published(dir.path());
    assert!(
        lines.iter().all(|l| !l.starts_with('{')),
        "v2's output was published"
    );
}

/// A new version whose migration hook panics on a value: the swap is rolled back, the error
/// names the state and the key, and the job goes on on v1.
#[test]
fn a_migration_that_fails_rolls_the_swap_back_naming_the_state_and_key() {
    let dir = scratch();
    let manifest = endless_wordcount(dir.path(), "");
    let cluster = Cluster::start(dir.path(), &[2, 2]);
    let api = Api::of(dir.path(), &cluster.coord);
    let id = verb(&api, &["submit", manifest.to_str().unwrap()]);
    let id = id.trim();
    // Long enough that some word's count is a multiple of 13.
    wait_running(&api, id, 0);
    std::thread::sleep(Duration::from_secs(1));
    let bad = api.upload(&component("faulty_bad_migration"), "bad.wasm");
    let swap = api.post_json(
        &format!("/v1/jobs/{id}/swap"),
        &serde_json::json!({ "operator": "count", "artifact": bad, "mode": "live" }),
    );
    assert_eq!(swap.status, 202, "{swap:?}");
    let done = wait_request(&api, id, swap.json["request"].as_str().unwrap());
    assert_eq!(done["status"], "failed", "{done}");
    let why = done["error"].as_str().unwrap();
    assert!(
        why.contains("rolled back to ")
            && why.contains("cannot migrate state `count` of key \"w")
            && why.contains("from version 1 to 2")
            && why.contains("unlucky count"),
        "{why}"
    );
    let job = wait_running(&api, id, 1);
    assert_eq!(job["versions"]["count"], 1, "{job}");
    verb(&api, &["stop", id]);
    let job = api.wait_end(id, Duration::from_secs(60));
    assert_eq!(job["status"], "finished", "{job}");
    assert_counts_continue(&dir.path().join("out"));
}

/// The same live swap in Python: the word count's Python `count` swapped for the Python v2 of
/// the swap example (JSON output, its state migrated by its Python hook).
#[test]
fn a_python_count_is_swapped_live_to_its_python_v2() {
    let dir = scratch();
    let manifest = endless_wordcount_with(dir.path(), &python_component("wordcount_count"), "");
    let (_cluster, api, id) = endless_running(dir.path(), &manifest);
    let id = id.as_str();
    verb(
        &api,
        &["swap", id, "count", &python_component("swap_count_v2")],
    );
    std::thread::sleep(Duration::from_millis(500));
    verb(&api, &["stop", id]);
    let job = api.wait_end(id, Duration::from_secs(60));
    assert_eq!(job["status"], "finished", "{job}");
    assert!(assert_counts_continue(&dir.path().join("out")) > 100);
}

/// A worker killed while a live swap is on probation: the job recovers to one version (the
/// new one, from the swap's checkpoint, or the old one, if the swap's checkpoint did not
/// complete), and the output is exactly-once.
#[test]
fn a_worker_killed_during_a_live_swap_leaves_one_version_and_exact_output() {
    let dir = scratch();
    let manifest = endless_wordcount(dir.path(), "");
    let (mut cluster, api, id) = endless_running(dir.path(), &manifest);
    let id = id.as_str();
    // A third worker takes the killed one's place.
    cluster.add_worker(2);
    let v2 = api.upload(&component("swap_count_v2"), "v2.wasm");
    let swap = api.post_json(
        &format!("/v1/jobs/{id}/swap"),
        &serde_json::json!({ "operator": "count", "artifact": format!("sha256:{v2}") }),
    );
    assert_eq!(swap.status, 202, "{swap:?}");
    std::thread::sleep(Duration::from_millis(300));
    cluster.workers[0].kill();
    let job = wait_running(&api, id, 1);
    let versions = job["versions"]["count"].as_u64().unwrap();
    let swap = &job["swaps"][0];
    match versions {
        2 => assert!(
            ["applied", "confirmed"].contains(&swap["status"].as_str().unwrap()),
            "{job}"
        ),
        1 => assert_eq!(swap["status"], "failed", "{job}"),
        _ => panic!("{job}"),
    }
    std::thread::sleep(Duration::from_millis(500));
    verb(&api, &["stop", id]);
    let job = api.wait_end(id, Duration::from_secs(60));
    assert_eq!(job["status"], "finished", "{job}");
    assert_counts_continue(&dir.path().join("out"));
}

/// A new component without checkpoint hooks for an operator whose checkpoints hold private
/// state is refused before anything happens: it could not take that state back.
#[test]
fn a_swap_that_would_lose_private_state_is_refused() {
    let dir = scratch();
    let manifest = endless_wordcount_with(
        dir.path(),
        &component("faulty_flaky"),
        "fail_at = 1000000000000",
    );
    let (_cluster, api, id) = endless_running(dir.path(), &manifest);
    let id = id.as_str();
    let hash = api.upload(&js_component("wordcount_count"), "count.js.wasm");
    let swap = api.post_json(
        &format!("/v1/jobs/{id}/swap"),
        &serde_json::json!({ "operator": "count", "artifact": format!("sha256:{hash}") }),
    );
    assert_eq!(swap.status, 400, "{swap:?}");
    let why = swap.json["error"]["message"].as_str().unwrap();
    assert!(
        why.contains("`count` keeps private state in checkpoints")
            && why.contains("does not export weir:operator/checkpoint-hooks@0.1.0"),
        "{why}"
    );
    let job = api.get(&format!("/v1/jobs/{id}")).json;
    assert_eq!(
        (job["attempt"].clone(), job["versions"]["count"].clone()),
        (0.into(), 1.into())
    );
    verb(&api, &["cancel", id]);
}

/// The same swap by restart, on the same job, after the refusals of what cannot be swapped (an
/// unknown operator: 404; a sink: 400): one restart, from its savepoint, on v2, its state
/// migrated, every running count exactly once, v1's lines before v2's.
#[test]
fn the_running_word_count_is_swapped_by_a_restart_its_state_migrated() {
    let dir = scratch();
    let manifest = endless_wordcount(dir.path(), "");
    let (_cluster, api, id) = endless_running(dir.path(), &manifest);
    let id = id.as_str();
    let v2 = api.upload(&component("swap_count_v2"), "v2.wasm");
    let swap = |operator: &str| {
        api.post_json(
            &format!("/v1/jobs/{id}/swap"),
            &serde_json::json!({ "operator": operator, "artifact": format!("sha256:{v2}") }),
        )
    };
    let unknown = swap("nope");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(
        unknown.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has no node `nope`")
    );
    let sink = swap("out");
    assert_eq!(sink.status, 400, "{sink:?}");
    assert!(
        sink.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`out` is a sink")
    );
    let v2_path = component("swap_count_v2");
    verb(&api, &["swap", id, "count", &v2_path, "--mode", "restart"]);
    let job = wait_running(&api, id, 1);
    assert_eq!(job["versions"]["count"], 2, "{job}");
    assert_eq!(job["swaps"][0]["mode"], "restart", "{job}");
    std::thread::sleep(Duration::from_millis(500));
    verb(&api, &["stop", id]);
    let job = api.wait_end(id, Duration::from_secs(60));
    assert_eq!(job["status"], "finished", "{job}");
    assert!(assert_counts_continue(&dir.path().join("out")) > 100);
}
