//! Bodies that end with trailers, end to end, over HTTP/1.1 (chunked body, trailer section; the harness
//! sets `enable_trailers` on the listener and the upstream cluster) and HTTP/2 (a trailers HEADERS frame).
//! When a body ends with trailers, no body callback has `end_of_stream`: the filter must finish its
//! work in the trailers callbacks (see `/work/shared/envoy-notes.md`, "Trailers").
//!
//! Request trailers: schema, request `block` redaction and `body_required` still refuse, and the
//! upstream never sees a refused request; a clean body passes with its trailers. Response trailers from
//! the HTTP/2 upstream ([`common::H2Echo`]): a `block` route never hands the card to the client; a `redact`
//! route returns the whole masked body and the trailers. Discovery sees trailer-ended bodies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use std::time::Duration;

use common::collector::Collector;
use common::{e2e_paths, Echo, Envoy, EnvoyOpts, H2Echo, Reply, Req, Response};
use serde_json::{json, Value};

const P: &str = "apiguard";
const CARD: &str = "4111 1111 1111 1111";
/// The documented refusal of a request body with sensitive data under `action: block`
/// (docs/responses.md, "Sensitive data").
const REQUEST_BLOCKED: &str = r#"{"error":"request blocked: it contains sensitive data"}"#;
const RESPONSE_BLOCKED: &str = r#"{"error":"response blocked: it contains sensitive data"}"#;

fn config() -> Value {
    json!({
        "schemas": {"order": {"json_schema": {
            "type": "object", "required": ["qty"],
            "properties": {"qty": {"type": "integer", "minimum": 1}}
        }}},
        "redaction": {
            "req_blocker": {"action": "block", "bodies": ["request"]},
            "masker": {"action": "redact"},
            "resp_blocker": {"action": "block"}
        },
        "discovery": {"collector": {"cluster": "collector", "uri": "http://collector/v1/apiguard"},
                      "flush_interval": "1s"},
        "rules": [
            {"name": "orders", "match": {"prefix": "/orders"}, "schema": "order"},
            {"name": "scan", "match": {"prefix": "/scan"}, "redaction": "req_blocker"},
            {"name": "masked", "match": {"prefix": "/r/"}, "redaction": "masker"},
            {"name": "blocked", "match": {"prefix": "/b/"}, "redaction": "resp_blocker"}
        ]
    })
}

/// Envoy with [`config`] in front of the HTTP/2 upstream, and a collector.
fn start() -> Option<(Envoy, H2Echo, Collector)> {
    let paths = e2e_paths()?;
    let upstream = H2Echo::start();
    let collector = Collector::start();
    let opts = EnvoyOpts::h2_upstream(&upstream).collector(collector.port);
    let envoy = Envoy::start(&paths, &config().to_string(), &opts);
    Some((envoy, upstream, collector))
}

/// A JSON POST whose body (in two pieces) ends with the trailer `x-checksum: <sum>`.
fn post_with_trailers(path: &str, body: &[u8]) -> Req {
    let (a, b) = body.split_at(body.len() / 2);
    Req::new("POST", path)
        .header("content-type", "application/json")
        .pieces(&[a, b])
        .trailer("x-checksum", "sum-1")
}

fn assert_refused(r: &Response, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.describe());
    assert!(!r.reached_upstream(), "{what}: {}", r.describe());
}

fn a_schema_route_refuses_bad_bodies_that_end_with_trailers() {
    let Some((envoy, upstream, _c)) = start() else {
        return;
    };
    // Control: without trailers the same body is refused.
    let json = [("content-type", "application/json")];
    let r = envoy.request("POST", "/orders", &json, br#"{"qty":-5}"#);
    assert_refused(&r, 400, "control: qty -5 without trailers");
    let r = envoy.send(&post_with_trailers("/orders", br#"{"qty":-5}"#));
    assert_refused(&r, 400, "qty -5");
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.describe()
    );
    let r = envoy.send(&post_with_trailers("/orders", b"not json"));
    assert_refused(&r, 400, "not json");
    assert_eq!(
        upstream.requests(),
        0,
        "the upstream never sees a refused body: {:?}",
        upstream.received()
    );
    assert_eq!(
        envoy.counter(&format!("{P}_schema_rejected_schema_violation")),
        2
    );
    assert_eq!(
        envoy.counter(&format!("{P}_schema_rejected_invalid_json")),
        1
    );
}

fn a_block_route_refuses_a_card_in_a_request_body_that_ends_with_trailers() {
    let Some((envoy, upstream, _c)) = start() else {
        return;
    };
    let body = format!(r#"{{"note": "pay with {CARD} please"}}"#);
    let json = [("content-type", "application/json")];
    let r = envoy.request("POST", "/scan", &json, body.as_bytes());
    assert_refused(&r, 403, "control: card without trailers");
    let r = envoy.send(&post_with_trailers("/scan", body.as_bytes()));
    assert_refused(&r, 403, "card in the request body");
    assert_eq!(r.text(), REQUEST_BLOCKED, "{}", r.describe());
    assert_eq!(upstream.requests(), 0, "{:?}", upstream.received());
    assert_eq!(envoy.counter(&format!("{P}_redaction_blocked")), 2);
}

fn body_required_refuses_a_post_that_has_only_trailers() {
    let Some((envoy, upstream, _c)) = start() else {
        return;
    };
    // No body bytes at all: HTTP/1.1 `0\r\n` + trailer section; HTTP/2 HEADERS then trailers HEADERS.
    let req = Req::new("POST", "/orders")
        .header("content-type", "application/json")
        .trailer("x-checksum", "sum-0");
    let r = envoy.send(&req);
    assert_refused(&r, 400, "empty body with trailers");
    assert!(
        r.text().contains("Request body required"),
        "{}",
        r.describe()
    );
    assert_eq!(upstream.requests(), 0, "{:?}", upstream.received());
    assert_eq!(
        envoy.counter(&format!("{P}_schema_rejected_missing_body")),
        1
    );
}

fn a_clean_body_passes_with_its_trailers_to_either_upstream() {
    let Some((envoy, upstream, _c)) = start() else {
        return;
    };
    for path in ["/orders", "/scan"] {
        let r = envoy.send(&post_with_trailers(path, br#"{"qty":2}"#));
        assert_eq!(r.status, 200, "{path}: {}", r.describe());
        let up = r.upstream();
        assert_eq!(up.proto, "h2");
        assert_eq!(up.body, r#"{"qty":2}"#, "{path}");
        assert_eq!(up.trailer("x-checksum"), Some("sum-1"), "{path}: {up:?}");
    }
    assert_eq!(upstream.requests(), 2);
    drop(envoy);

    // The same through the HTTP/1.1 upstream (trailers in the chunked trailer section).
    let paths = e2e_paths().unwrap();
    let echo = Echo::start();
    let collector = Collector::start();
    let opts = EnvoyOpts::new(&echo).collector(collector.port);
    let envoy = Envoy::start(&paths, &config().to_string(), &opts);
    let r = envoy.send(&post_with_trailers("/orders", br#"{"qty":3}"#));
    assert_eq!(r.status, 200, "{}", r.describe());
    let up = r.upstream();
    assert_eq!(up.proto, "h1");
    assert_eq!(up.body, r#"{"qty":3}"#);
    assert_eq!(up.trailer("x-checksum"), Some("sum-1"), "{up:?}");
}

/// A JSON body of exactly 342 bytes with one card number in the middle.
fn card_body() -> (Vec<u8>, Vec<u8>) {
    let head = r#"{"order": {"id": 77, "items": ["lamp", "desk", "chair"], "card": ""#;
    let tail = r#""}, "note": "#;
    let mut body = format!("{head}{CARD}{tail}");
    let filler = 342 - body.len() - 2;
    body.push('"');
    body.push_str(&"x".repeat(filler - 1));
    body.push_str("\"}");
    let body = body.into_bytes();
    assert_eq!(body.len(), 342);
    let masked = String::from_utf8(body.clone())
        .unwrap()
        .replace(CARD, "[REDACTED:card]")
        .into_bytes();
    (body, masked)
}

fn a_redact_route_returns_the_whole_masked_body_and_the_response_trailers() {
    let Some((envoy, upstream, _c)) = start() else {
        return;
    };
    let (body, masked) = card_body();
    // Control: without trailers the body is masked.
    upstream.reply_on("/r/", Reply::new("application/json", &body));
    let r = envoy.get("/r/doc", &[]);
    assert_eq!(r.body, masked, "control without trailers: {}", r.describe());
    for chunk in [0, 64] {
        upstream.reply_on(
            "/r/",
            Reply::new("application/json", &body)
                .trailer("grpc-status", b"0")
                .trailer("x-trace", b"t-1")
                .chunked(chunk),
        );
        let r = envoy.get("/r/doc", &[]);
        assert_eq!(r.status, 200, "chunk {chunk}: {}", r.describe());
        assert!(r.reset.is_none(), "chunk {chunk}: {}", r.describe());
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            String::from_utf8_lossy(&masked),
            "chunk {chunk}: the whole body, card masked, nothing else changed"
        );
        assert_eq!(r.body, masked);
        assert_eq!(
            r.trailer("grpc-status").as_deref(),
            Some("0"),
            "{}",
            r.describe()
        );
        assert_eq!(
            r.trailer("x-trace").as_deref(),
            Some("t-1"),
            "{}",
            r.describe()
        );
    }
    assert_eq!(envoy.counter(&format!("{P}_redaction_bodies_changed")), 3);

    // gRPC-like: application/grpc is not scanned; it passes unchanged with its trailers.
    let frame = b"\x00\x00\x00\x00\x05hello";
    upstream.reply_on("/r/grpc", Reply::grpc(frame));
    let r = envoy.send(
        &Req::post("/r/grpc", b"\x00\x00\x00\x00\x00").header("content-type", "application/grpc"),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("content-type"), Some("application/grpc"));
    assert_eq!(r.body, frame);
    assert_eq!(
        r.trailer("grpc-status").as_deref(),
        Some("0"),
        "{}",
        r.describe()
    );
}

fn a_block_route_never_hands_the_client_a_card_from_a_body_that_ends_with_trailers() {
    let Some((envoy, upstream, _c)) = start() else {
        return;
    };
    let (body, _) = card_body();
    // Control: without trailers the body is replaced.
    upstream.reply_on("/b/", Reply::new("application/json", &body));
    let r = envoy.get("/b/doc", &[]);
    assert_eq!(
        r.text(),
        RESPONSE_BLOCKED,
        "control without trailers: {}",
        r.describe()
    );
    for chunk in [0, 64] {
        upstream.reply_on(
            "/b/",
            Reply::new("application/json", &body)
                .trailer("grpc-status", b"0")
                .chunked(chunk),
        );
        match envoy.try_send(&Req::get("/b/doc")) {
            Ok(r) => {
                assert!(
                    !r.text().contains(CARD) && !r.text().contains("4111"),
                    "chunk {chunk}: the card reached the client: {}",
                    r.describe()
                );
                assert!(
                    r.reset.is_some() || r.text() == RESPONSE_BLOCKED,
                    "chunk {chunk}: the documented replacement or a reset: {}",
                    r.describe()
                );
            }
            // An HTTP/1.1 response cut short is an error for the client: nothing was taken for whole.
            Err(e) => eprintln!("chunk {chunk}: the client saw an error: {e}"),
        }
    }
    assert!(envoy.counter(&format!("{P}_redaction_blocked")) >= 3);
}

/// Every endpoint the collector has: (method, path_template, the endpoint's JSON).
fn endpoints(collector: &Collector) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (_, body) in collector.batches() {
        let batch: Value = serde_json::from_slice(&body).unwrap();
        for e in batch["endpoints"].as_array().into_iter().flatten() {
            all.push((
                e["method"].as_str().unwrap_or_default().to_string(),
                e["path_template"].as_str().unwrap_or_default().to_string(),
                e.clone(),
            ));
        }
    }
    all
}

fn discovery_sees_bodies_that_end_with_trailers() {
    let Some((envoy, upstream, collector)) = start() else {
        return;
    };
    upstream.reply_on(
        "/r/",
        Reply::new("application/json", br#"{"ok": true, "n": 1}"#).trailer("grpc-status", b"0"),
    );
    upstream.reply_on(
        "/plain/",
        Reply::new("application/json", br#"{"ok": true, "n": 1}"#),
    );
    for _ in 0..3 {
        // Controls without trailers.
        let json = [("content-type", "application/json")];
        let r = envoy.request("POST", "/orders/plain", &json, br#"{"qty":2}"#);
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(envoy.get("/plain/status", &[]).status, 200);
        let r = envoy.send(&post_with_trailers("/orders", br#"{"qty":2}"#));
        assert_eq!(r.status, 200, "{}", r.describe());
        let r = envoy.get("/r/status", &[]);
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    let arrived = envoy.eventually(Duration::from_secs(20), |_| {
        let e = endpoints(&collector);
        let has = |m: &str, p: &str, field: &str| {
            e.iter()
                .any(|(em, ep, v)| em == m && ep == p && !v[field].is_null())
        };
        has("POST", "/orders/plain", "request_shape")
            && has("GET", "/plain/status", "response_shape")
            && has("POST", "/orders", "request_shape")
            && has("GET", "/r/status", "response_shape")
    });
    assert!(
        arrived,
        "discovery recorded the shapes of trailer-ended bodies: {:#?}",
        endpoints(&collector)
    );
}

// Each test above without `#[test]` runs twice: `http1::<name>` and `http2::<name>`.
crate::per_protocol!(
    a_schema_route_refuses_bad_bodies_that_end_with_trailers,
    a_block_route_refuses_a_card_in_a_request_body_that_ends_with_trailers,
    body_required_refuses_a_post_that_has_only_trailers,
    a_clean_body_passes_with_its_trailers_to_either_upstream,
    a_redact_route_returns_the_whole_masked_body_and_the_response_trailers,
    a_block_route_never_hands_the_client_a_card_from_a_body_that_ends_with_trailers,
    discovery_sees_bodies_that_end_with_trailers,
);
