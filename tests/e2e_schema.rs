//! Schema enforcement end to end: JSON Schema and OpenAPI policies in a real Envoy, real bodies
//! (content-length and chunked), exact limits, problem+json replies, untouched bodies upstream.
//!
//! Run with `make test`. Without Envoy or the `.wasm` these tests fail and say what is missing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use common::{e2e_paths, Echo, Envoy, EnvoyOpts, Req, Response};
use serde_json::{json, Value};

const P: &str = "apiguard";
const PETSTORE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/conformance/openapi/swagger-petstore-v3.openapi.json"
);

fn config() -> Value {
    let petstore: Value =
        serde_json::from_str(&std::fs::read_to_string(PETSTORE).unwrap()).unwrap();
    json!({
        "schemas": {
            "order": {"json_schema": {
                "type": "object", "required": ["id", "items"], "additionalProperties": false,
                "properties": {"id": {"type": "integer", "minimum": 1},
                               "items": {"type": "array", "minItems": 1, "items": {"type": "string", "maxLength": 16}},
                               "note": {"type": "string"}}
            }, "max_body_bytes": 1024},
            "petstore": {"openapi": petstore, "base_path": "/api/v3", "undeclared": "405"}
        },
        "rules": [
            {"name": "orders", "match": {"prefix": "/orders"}, "schema": "order"},
            {"name": "dry", "match": {"prefix": "/dry"}, "schema": "order", "mode": "report"},
            {"name": "petstore", "match": {"prefix": "/api/v3/"}, "schema": "petstore"}
        ]
    })
}

fn start() -> Option<(Envoy, Echo)> {
    let paths = e2e_paths()?;
    let echo = Echo::start();
    let envoy = Envoy::start(&paths, &config().to_string(), &EnvoyOpts::new(&echo));
    Some((envoy, echo))
}

fn post(envoy: &Envoy, path: &str, content_type: &str, body: &[u8]) -> Response {
    envoy.request("POST", path, &[("content-type", content_type)], body)
}

fn problem(r: &Response) -> Value {
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.describe()
    );
    serde_json::from_slice(&r.body).unwrap()
}

/// A POST with a body without a length (HTTP/1.1 chunked, HTTP/2 no `content-length`), sent in the
/// given pieces 20 ms apart.
fn post_chunked(envoy: &Envoy, path: &str, pieces: &[&[u8]]) -> Response {
    envoy.send(
        &Req::new("POST", path)
            .header("content-type", "application/json")
            .pieces(pieces),
    )
}

fn a_valid_body_reaches_the_upstream_byte_for_byte() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    let body = br#"{"id": 7,   "items": ["a", "b"], "note": "caf\u00e9 \ud83d\ude00"}"#;
    let r = post(&envoy, "/orders", "application/json", body);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.upstream().body.as_bytes(),
        body,
        "the upstream sees exactly what the client sent"
    );
    assert_eq!(envoy.counter(&format!("{P}_schema_validated")), 1);
}

fn violations_get_400_problem_json_with_pointers_and_no_values() {
    let Some((envoy, echo)) = start() else { return };
    let r = post(
        &envoy,
        "/orders",
        "application/json",
        br#"{"id": 0, "items": ["secret-value-123456789"], "extra": 1}"#,
    );
    assert_eq!(r.status, 400, "{}", r.describe());
    let p = problem(&r);
    assert_eq!(p["status"], 400);
    let errors = p["errors"].as_array().unwrap();
    let pointers: Vec<&str> = errors
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert!(pointers.contains(&"/id"), "{p}");
    assert!(pointers.contains(&"/items/0"), "{p}");
    assert!(
        errors
            .iter()
            .any(|e| e["keyword"] == "additionalProperties"),
        "{p}"
    );
    assert!(
        !r.text().contains("secret-value"),
        "values are never echoed: {}",
        r.text()
    );
    assert_eq!(echo.requests(), 0, "nothing reached the upstream");
    assert_eq!(
        envoy.counter(&format!("{P}_schema_rejected_schema_violation")),
        1
    );
}

fn unparsable_json_gets_400_and_a_wrong_content_type_415() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    let r = post(
        &envoy,
        "/orders",
        "application/json",
        b"{\"id\": 1, \"items\": [",
    );
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(problem(&r)["status"], 400);
    let r = post(
        &envoy,
        "/orders",
        "text/plain",
        br#"{"id": 1, "items": ["a"]}"#,
    );
    assert_eq!(r.status, 415, "{}", r.describe());
    assert_eq!(
        envoy.counter(&format!("{P}_schema_rejected_invalid_json")),
        1
    );
    assert_eq!(
        envoy.counter(&format!("{P}_schema_rejected_unsupported_media_type")),
        1
    );
}

/// A valid body of exactly `len` bytes (padding in the `note` string).
fn body_of_len(len: usize) -> Vec<u8> {
    let head = br#"{"id": 1, "items": ["a"], "note": ""#;
    let tail = br#""}"#;
    let mut body = head.to_vec();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail);
    assert_eq!(body.len(), len);
    body
}

fn a_body_exactly_at_the_cap_passes_and_one_byte_over_gets_413() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    let at = post(&envoy, "/orders", "application/json", &body_of_len(1024));
    assert_eq!(at.status, 200, "{}", at.describe());
    let over = post(&envoy, "/orders", "application/json", &body_of_len(1025));
    assert_eq!(over.status, 413, "{}", over.describe());
    assert_eq!(problem(&over)["status"], 413);
    // The same without content-length: a chunked body, refused while it is being buffered.
    let body = body_of_len(1025);
    let (a, b) = body.split_at(600);
    let chunked = post_chunked(&envoy, "/orders", &[a, b]);
    assert_eq!(chunked.status, 413, "{}", chunked.describe());
}

fn a_chunked_body_is_validated_whole_and_forwarded_intact() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    let body = br#"{"id": 42, "items": ["x", "y", "z"]}"#;
    let (a, rest) = body.split_at(9);
    let (b, c) = rest.split_at(11);
    let ok = post_chunked(&envoy, "/orders", &[a, b, c]);
    assert_eq!(ok.status, 200, "{}", ok.describe());
    assert_eq!(ok.upstream().body.as_bytes(), body);
    let bad = br#"{"id": "42", "items": []}"#;
    let (a, b) = bad.split_at(10);
    let refused = post_chunked(&envoy, "/orders", &[a, b]);
    assert_eq!(refused.status, 400, "{}", refused.describe());
}

fn report_mode_counts_a_violation_and_lets_it_through() {
    let Some((envoy, echo)) = start() else { return };
    let r = post(&envoy, "/dry", "application/json", br#"{"id": "nope"}"#);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(echo.requests(), 1);
    assert_eq!(envoy.counter(&format!("{P}_report_only_denied")), 1);
}

fn openapi_operations_check_path_query_and_body() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    let pet = br#"{"name": "doggie", "photoUrls": ["http://x/y.png"], "status": "available"}"#;
    let ok = post(&envoy, "/api/v3/pet", "application/json", pet);
    assert_eq!(ok.status, 200, "{}", ok.describe());
    let bad = post(
        &envoy,
        "/api/v3/pet",
        "application/json",
        br#"{"name": "doggie", "status": "lost"}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.describe());

    assert_eq!(envoy.get("/api/v3/pet/12", &[]).status, 200);
    let not_int = envoy.get("/api/v3/pet/twelve", &[]);
    assert_eq!(not_int.status, 400, "{}", not_int.describe());
    assert_eq!(
        envoy
            .get("/api/v3/pet/findByStatus?status=sold", &[])
            .status,
        200
    );
    let bad_enum = envoy.get("/api/v3/pet/findByStatus?status=lost", &[]);
    assert_eq!(bad_enum.status, 400, "{}", bad_enum.describe());

    let unknown = envoy.get("/api/v3/nothing-here", &[]);
    assert_eq!(unknown.status, 404, "{}", unknown.describe());
    let wrong_method = envoy.request("PATCH", "/api/v3/pet", &[], b"");
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.describe());
    let allow = wrong_method.header("allow").unwrap();
    assert!(allow.contains("POST") && allow.contains("PUT"), "{allow}");
}

// Each test above without `#[test]` runs twice: `http1::<name>` and `http2::<name>`.
crate::per_protocol!(
    a_valid_body_reaches_the_upstream_byte_for_byte,
    violations_get_400_problem_json_with_pointers_and_no_values,
    unparsable_json_gets_400_and_a_wrong_content_type_415,
    a_body_exactly_at_the_cap_passes_and_one_byte_over_gets_413,
    a_chunked_body_is_validated_whole_and_forwarded_intact,
    report_mode_counts_a_violation_and_lets_it_through,
    openapi_operations_check_path_query_and_body,
);
