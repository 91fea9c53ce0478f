//! Redaction end to end: response (and request) bodies through a real Envoy, from upstream replies with
//! content-length and chunked encoding, redacted exactly, untouched bodies byte-identical, block and
//! report modes.
//!
//! The upstream is the echo server in raw mode: it answers with the request's own body
//! (`x-echo-raw: <content-type>`), chunked in N-byte chunks with `x-echo-chunk: N`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use common::{e2e_paths, Echo, Envoy, EnvoyOpts, Response};
use serde_json::{json, Value};

const P: &str = "apiguard";

const PII: &[u8] = br#"{"user": {"email": "jane.doe@example.com", "card": "4111 1111 1111 1111", "password": "hunter2"}, "order": 1234567890123, "note": "call +1 415 555 2671"}"#;
const REDACTED: &[u8] = br#"{"user": {"email": "[REDACTED:email]", "card": "[REDACTED:card]", "password": "[REDACTED:password]"}, "order": 1234567890123, "note": "call [REDACTED:phone]"}"#;
const CLEAN: &[u8] =
    br#"{"id": 42, "items": ["a", "b"], "total": 12.5, "when": "2026-11-28T12:00:00Z"}"#;

fn config() -> Value {
    json!({
        "redaction": {
            "pii": {"fields": ["password"], "action": "redact"},
                        "blocker": {"action": "block"},
            "small_blocker": {"action": "block", "max_buffer_bytes": 1024},
            "watcher": {"action": "report"},
            "both": {"bodies": ["request", "response"]}
        },
        "rules": [
            {"name": "redact", "match": {"prefix": "/r/"}, "redaction": "pii"},
                        {"name": "block", "match": {"prefix": "/b/"}, "redaction": "blocker"},
            {"name": "small", "match": {"prefix": "/s/"}, "redaction": "small_blocker"},
            {"name": "report", "match": {"prefix": "/w/"}, "redaction": "watcher"},
            {"name": "both", "match": {"prefix": "/q/"}, "redaction": "both"}
        ]
    })
}

fn start_with(opts: impl FnOnce(&mut EnvoyOpts)) -> Option<(Envoy, Echo)> {
    let paths = e2e_paths()?;
    let echo = Echo::start();
    let mut o = EnvoyOpts::new(&echo);
    opts(&mut o);
    let mut cfg = config();
    cfg["allow_on_headers_stop_iteration"] = json!(o.allow_on_headers_stop_iteration);
    let envoy = Envoy::start(&paths, &cfg.to_string(), &o);
    Some((envoy, echo))
}

fn start() -> Option<(Envoy, Echo)> {
    start_with(|_| {})
}

/// The upstream answers `body` as `application/json`, chunked in `chunk`-byte pieces (0: content-length).
fn reply_of(envoy: &Envoy, path: &str, body: &[u8], chunk: usize) -> Response {
    let chunk = chunk.to_string();
    let mut headers = vec![
        ("x-echo-raw", "application/json"),
        ("content-type", "application/octet-stream"),
    ];
    if chunk != "0" {
        headers.push(("x-echo-chunk", chunk.as_str()));
    }
    envoy.request("POST", path, &headers, body)
}

fn assert_length_consistent(r: &Response) {
    if let Some(length) = r.header("content-length") {
        assert_eq!(
            length.parse::<usize>().unwrap(),
            r.body.len(),
            "content-length must match: {}",
            r.describe()
        );
    }
}

fn a_content_length_response_is_redacted_exactly() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    let r = reply_of(&envoy, "/r/x", PII, 0);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        String::from_utf8_lossy(REDACTED)
    );
    assert_length_consistent(&r);
    assert_eq!(envoy.counter(&format!("{P}_redaction_pii_card")), 1);
    assert_eq!(envoy.counter(&format!("{P}_redaction_pii_email")), 1);
    assert_eq!(envoy.counter(&format!("{P}_redaction_bodies_changed")), 1);
}

fn a_chunked_response_is_redacted_exactly_whatever_the_chunk_size() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    for chunk in [1, 7, 16, 50] {
        let r = reply_of(&envoy, "/r/x", PII, chunk);
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            String::from_utf8_lossy(REDACTED),
            "chunk size {chunk}"
        );
        assert_length_consistent(&r);
    }
}

fn a_body_without_sensitive_data_is_byte_identical() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    for chunk in [0, 5] {
        let r = reply_of(&envoy, "/r/x", CLEAN, chunk);
        assert_eq!(r.body, CLEAN, "chunk size {chunk}: {}", r.describe());
        assert_length_consistent(&r);
    }
}

fn the_upstream_is_asked_for_an_identity_encoded_response() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    let r = envoy.get("/r/x", &[("accept-encoding", "gzip, br")]);
    assert!(
        !r.upstream().has_header("accept-encoding"),
        "{}",
        r.describe()
    );
}

fn block_mode_never_passes_the_upstream_body_on() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    let r = reply_of(&envoy, "/b/x", PII, 0);
    assert!(
        !String::from_utf8_lossy(&r.body).contains("4111"),
        "{}",
        r.describe()
    );
    assert!(
        String::from_utf8_lossy(&r.body).contains("response blocked"),
        "{}",
        r.describe()
    );
    let clean = reply_of(&envoy, "/b/x", CLEAN, 0);
    assert_eq!(clean.body, CLEAN);
    assert_eq!(envoy.counter(&format!("{P}_redaction_blocked")), 1);
}

fn block_mode_with_held_headers_replaces_the_response_with_502() {
    let Some((envoy, _echo)) = start_with(|o| o.allow_on_headers_stop_iteration = true) else {
        return;
    };
    let r = reply_of(&envoy, "/b/x", PII, 9);
    assert_eq!(r.status, 502, "{}", r.describe());
    assert!(!String::from_utf8_lossy(&r.body).contains("4111"));
    let clean = reply_of(&envoy, "/b/x", CLEAN, 9);
    assert_eq!(
        (clean.status, clean.body.as_slice()),
        (200, CLEAN),
        "{}",
        clean.describe()
    );
}

fn report_mode_counts_classes_and_changes_nothing() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    let r = reply_of(&envoy, "/w/x", PII, 11);
    assert_eq!(r.body, PII, "{}", r.describe());
    assert_eq!(envoy.counter(&format!("{P}_redaction_watcher_card")), 1);
    assert_eq!(envoy.counter(&format!("{P}_redaction_watcher_phone")), 1);
}

fn request_bodies_are_redacted_before_the_upstream_sees_them() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    let r = envoy.request(
        "POST",
        "/q/x",
        &[("content-type", "application/json")],
        br#"{"card": "5555555555554444"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let upstream = r.upstream();
    assert_eq!(upstream.body, r#"{"card": "[REDACTED:card]"}"#);
    // The echo's JSON reply carries the (already redacted) body; nothing else to redact.
    assert!(!String::from_utf8_lossy(&r.body).contains("5555555555554444"));
}

fn a_blocked_body_too_large_to_inspect_never_reaches_the_client_in_part() {
    let Some((envoy, _echo)) = start() else {
        return;
    };
    let mut body = b"{\"filler\": \"".to_vec();
    body.resize(4000, b'x');
    body.extend_from_slice(b"\", \"card\": \"4111 1111 1111 1111\"}");
    let r = reply_of(&envoy, "/s/x", &body, 512);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        !text.contains("4111"),
        "no byte past the cap leaks: {}",
        r.describe()
    );
    assert!(
        !text.contains("xxxxxxxx"),
        "nor any of the upstream body: {}",
        r.describe()
    );
    assert!(text.contains("response blocked"), "{}", r.describe());
    assert_eq!(envoy.counter(&format!("{P}_redaction_too_large")), 1);
}

// Each test above without `#[test]` runs twice: `http1::<name>` and `http2::<name>`.
crate::per_protocol!(
    a_content_length_response_is_redacted_exactly,
    a_chunked_response_is_redacted_exactly_whatever_the_chunk_size,
    a_body_without_sensitive_data_is_byte_identical,
    the_upstream_is_asked_for_an_identity_encoded_response,
    block_mode_never_passes_the_upstream_body_on,
    block_mode_with_held_headers_replaces_the_response_with_502,
    report_mode_counts_classes_and_changes_nothing,
    request_bodies_are_redacted_before_the_upstream_sees_them,
    a_blocked_body_too_large_to_inspect_never_reaches_the_client_in_part,
);
