//! The OpenAPI 3 document of the API, served at `/v1/openapi.json`. A unit test checks that it
//! lists exactly the routes the router serves.

use serde_json::{Value, json};

/// One operation: method, path, summary, what its body is, its success status.
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    body: Body,
    ok: &'static str,
}

enum Body {
    None,
    /// A component's bytes, or a multipart form of files.
    Upload,
    /// A submission: JSON, or a multipart form of the manifest and its components.
    Submit,
    /// JSON of this schema (optional).
    Json(&'static str),
}

const OPS: &[Op] = &[
    Op {
        method: "get",
        path: "/healthz",
        summary: "Whether the process serves (no token needed).",
        body: Body::None,
        ok: "200",
    },
    Op {
        method: "get",
        path: "/metrics",
        summary: "The cluster's figures, Prometheus text.",
        body: Body::None,
        ok: "200",
    },
    Op {
        method: "get",
        path: "/v1/openapi.json",
        summary: "This document.",
        body: Body::None,
        ok: "200",
    },
    Op {
        method: "post",
        path: "/v1/artifacts",
        summary: "Upload components (raw body with ?name=, or multipart files): checked against the weir worlds, kept by SHA-256.",
        body: Body::Upload,
        ok: "201",
    },
    Op {
        method: "get",
        path: "/v1/artifacts",
        summary: "The artifacts, newest first.",
        body: Body::None,
        ok: "200",
    },
    Op {
        method: "get",
        path: "/v1/artifacts/{hash}",
        summary: "One artifact.",
        body: Body::None,
        ok: "200",
    },
    Op {
        method: "delete",
        path: "/v1/artifacts/{hash}",
        summary: "Delete an artifact no running job uses.",
        body: Body::None,
        ok: "204",
    },
    Op {
        method: "post",
        path: "/v1/jobs",
        summary: "Submit a job: a manifest naming components by artifact hash or name (JSON), or the manifest with its components (multipart).",
        body: Body::Submit,
        ok: "201",
    },
    Op {
        method: "get",
        path: "/v1/jobs",
        summary: "The jobs, newest first.",
        body: Body::None,
        ok: "200",
    },
    Op {
        method: "get",
        path: "/v1/jobs/{id}",
        summary: "A job: status, vertices with parallelism, placement and figures, checkpoints, restarts and failure causes.",
        body: Body::None,
        ok: "200",
    },
    Op {
        method: "post",
        path: "/v1/jobs/{id}/cancel",
        summary: "Cancel a job.",
        body: Body::None,
        ok: "202",
    },
    Op {
        method: "get",
        path: "/v1/jobs/{id}/checkpoints",
        summary: "A job's completed checkpoints, oldest first.",
        body: Body::None,
        ok: "200",
    },
    Op {
        method: "post",
        path: "/v1/jobs/{id}/savepoints",
        summary: "Trigger a savepoint (body: optional {\"dir\"}); answers with a request to poll.",
        body: Body::Json("SavepointRequest"),
        ok: "202",
    },
    Op {
        method: "get",
        path: "/v1/jobs/{id}/savepoints",
        summary: "The savepoints taken of a job.",
        body: Body::None,
        ok: "200",
    },
    Op {
        method: "get",
        path: "/v1/jobs/{id}/savepoints/{request}",
        summary: "Where a savepoint, stop or rescale request stands: in_progress, completed (with the path) or failed (with the error).",
        body: Body::None,
        ok: "200",
    },
    Op {
        method: "post",
        path: "/v1/jobs/{id}/stop",
        summary: "Stop a job with a savepoint (body: optional {\"dir\"}); answers with a request to poll.",
        body: Body::Json("SavepointRequest"),
        ok: "202",
    },
    Op {
        method: "post",
        path: "/v1/jobs/{id}/rescale",
        summary: "Rescale a running job: a savepoint, then the job deployed again with the new parallelism, restored from it.",
        body: Body::Json("RescaleRequest"),
        ok: "202",
    },
    Op {
        method: "post",
        path: "/v1/jobs/{id}/swap",
        summary: "Swap the component of one operator (or window function), keeping its state: the new artifact is checked (its world, and its open with the operator's config in a scratch instance) before the job is touched; mode restart takes a savepoint and deploys the job again with it. Answers with a request to poll.",
        body: Body::Json("SwapRequest"),
        ok: "202",
    },
    Op {
        method: "get",
        path: "/v1/jobs/{id}/state/{operator}/{state}",
        summary: "Read a key's value (value state) or entries (map state) in a running job: ?key= (text) or ?key_hex=, and optionally ?map_key= or ?map_key_hex=.",
        body: Body::None,
        ok: "200",
    },
    Op {
        method: "get",
        path: "/v1/jobs/{id}/logs",
        summary: "A job's recent guest lines (log calls, stdout, stderr; rate-limited per subtask), numbered: ?since=N for those after N, ?limit=M (at most 1000).",
        body: Body::None,
        ok: "200",
    },
];

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for op in OPS {
        let mut operation = json!({
            "summary": op.summary,
            "responses": {
                op.ok: { "description": "done" },
                "400": error_response("the request is wrong"),
                "401": error_response("no token, or the wrong one"),
                "404": error_response("no such job or artifact"),
                "409": error_response("the job is in the wrong state for the request"),
                "413": error_response("the body is over the limit"),
            }
        });
        let params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if !params.is_empty() {
            operation["parameters"] = Value::Array(params);
        }
        match op.body {
            Body::None => {}
            Body::Json(schema) => {
                operation["requestBody"] = json!({
                    "required": false,
                    "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
                });
            }
            Body::Upload => {
                operation["requestBody"] = json!({
                    "required": true,
                    "content": {
                        "application/wasm": { "schema": { "type": "string", "format": "binary" } },
                        "multipart/form-data": { "schema": { "type": "object", "additionalProperties": { "type": "string", "format": "binary" } } }
                    }
                });
                operation["parameters"] = json!([{ "name": "name", "in": "query", "required": false, "schema": { "type": "string" } }]);
            }
            Body::Submit => {
                operation["requestBody"] = json!({
                    "required": true,
                    "content": {
                        "application/json": { "schema": { "$ref": "#/components/schemas/Submission" } },
                        "multipart/form-data": { "schema": {
                            "type": "object",
                            "required": ["manifest"],
                            "properties": {
                                "manifest": { "type": "string", "format": "binary" },
                                "set": { "type": "array", "items": { "type": "string" } },
                                "from_savepoint": { "type": "string" },
                                "allow_non_restored_state": { "type": "boolean" }
                            },
                            "additionalProperties": { "type": "string", "format": "binary" }
                        } }
                    }
                });
            }
        }
        paths
            .entry(op.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item is an object")
            .insert(op.method.to_string(), operation);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "weir",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Upload WebAssembly components, run jobs, take savepoints."
        },
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": { "type": "string" },
                            "message": { "type": "string" }
                        }
                    } }
                },
                "SavepointRequest": {
                    "type": "object",
                    "properties": { "dir": { "type": "string", "description": "an absolute directory the cluster reaches; default: savepoints/ in the job's checkpoint directory" } }
                },
                "SwapRequest": {
                    "type": "object",
                    "required": ["operator", "artifact", "mode"],
                    "properties": {
                        "operator": { "type": "string", "description": "the operator's uid" },
                        "artifact": { "type": "string", "description": "sha256:<hash>, or an uploaded artifact's name" },
                        "mode": { "type": "string", "enum": ["restart"] }
                    }
                },
                "RescaleRequest": {
                    "type": "object",
                    "properties": {
                        "parallelism": { "type": "integer", "minimum": 1 },
                        "operators": { "type": "object", "additionalProperties": { "type": "integer", "minimum": 1 } }
                    }
                },
                "Submission": {
                    "type": "object",
                    "required": ["manifest"],
                    "properties": {
                        "manifest": { "type": "string", "description": "the manifest, TOML" },
                        "overrides": { "type": "array", "items": { "type": "string" }, "description": "KEY=VALUE, as --set" },
                        "from_savepoint": { "type": "string" },
                        "allow_non_restored_state": { "type": "boolean" },
                        "manifest_name": { "type": "string" }
                    }
                }
            }
        }
    })
}
