//! The request life without Envoy, through [`super::sim`]: what the upstream and the client would
//! have received, and how many host calls each request shape costs.

use super::sim::{Sim, SimHost};
use super::*;
use crate::config::Policy;
use serde_json::{json, Value};

const CARD: &str = "4111 1111 1111 1111";

fn worker(config: Value) -> Worker {
    let policy = Rc::new(Policy::from_value(&config).unwrap());
    let jwks = policy.jwks_coordinator(1);
    Worker::new(policy, jwks)
}

/// A request driven through the simulated proxy, with text helpers for the tests.
struct Drive(Sim);

impl Drive {
    fn new(config: Value) -> Drive {
        Drive(Sim::new(Rc::new(Policy::from_value(&config).unwrap())))
    }
    fn request(&mut self, headers: &[(&str, &str)], end_of_stream: bool) -> Flow {
        self.0.request(Headers::of(headers), end_of_stream)
    }
    fn response(&mut self, headers: &[(&str, &str)], end_of_stream: bool) -> Flow {
        self.0.response(Headers::of(headers), end_of_stream)
    }
    fn body(&mut self, side: Side, chunks: &[&[u8]], trailers: bool) -> Vec<Flow> {
        let flows = self.0.body(side, chunks, trailers);
        assert!(
            self.0.host.violations.is_empty(),
            "{:?}",
            self.0.host.violations
        );
        flows
    }
    fn upstream_got(&self) -> String {
        String::from_utf8_lossy(self.0.upstream_got()).into_owned()
    }
    fn client_got(&self) -> String {
        String::from_utf8_lossy(self.0.client_got()).into_owned()
    }
    fn status(&self) -> Option<u16> {
        self.0.status()
    }
}

fn post(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "POST"),
        (":path", path),
        (":authority", "api.example.com"),
        (":scheme", "http"),
        ("content-type", "application/json"),
    ]
}

fn config() -> Value {
    json!({
        "schemas": {"order": {"json_schema": {
            "type": "object", "required": ["qty"],
            "properties": {"qty": {"type": "integer", "minimum": 1}}
        }, "max_body_bytes": 1024}},
        "redaction": {
            "pii": {"action": "redact"},
            "blocker": {"action": "block"},
            "req_blocker": {"action": "block", "bodies": ["request"]},
            "watcher": {"action": "report"},
            "guarded": {"action": "redact", "on_unknown_encoding": "block"},
            "hdr": {"action": "redact", "headers": ["location", "content-disposition"]},
            "hdrblock": {"action": "block", "headers": ["location"]}
        },
        "rules": [
            {"name": "orders", "match": {"prefix": "/orders"}, "schema": "order"},
            {"name": "redact", "match": {"prefix": "/r/"}, "redaction": "pii"},
            {"name": "block", "match": {"prefix": "/b/"}, "redaction": "blocker"},
            {"name": "reqblock", "match": {"prefix": "/rb/"}, "redaction": "req_blocker"},
            {"name": "report", "match": {"prefix": "/w/"}, "redaction": "watcher", "mode": "report"},
            {"name": "guarded", "match": {"prefix": "/g/"}, "redaction": "guarded"},
            {"name": "hdr", "match": {"prefix": "/h/"}, "redaction": "hdr"},
            {"name": "hdrblock", "match": {"prefix": "/hb/"}, "redaction": "hdrblock"}
        ]
    })
}

fn split(body: &[u8], at: &[usize]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut last = 0;
    for &cut in at {
        parts.push(body[last..cut].to_vec());
        last = cut;
    }
    parts.push(body[last..].to_vec());
    parts
}

fn schema_verdict(body: &[u8], cuts: &[usize], trailers: bool) -> (Option<u16>, String) {
    let mut d = Drive::new(config());
    assert_eq!(d.request(&post("/orders"), false), Flow::Continue);
    let parts = split(body, cuts);
    let chunks: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    d.body(Side::Request, &chunks, trailers);
    (d.status(), d.upstream_got())
}

#[test]
fn a_schema_violation_ended_by_trailers_is_refused_and_never_reaches_the_upstream() {
    for body in [&br#"{"qty":-5}"#[..], b"not json"] {
        let (status, upstream) = schema_verdict(body, &[3], true);
        assert_eq!(status, Some(400), "{}", String::from_utf8_lossy(body));
        assert_eq!(upstream, "");
    }
}

#[test]
fn an_empty_body_ended_by_trailers_does_not_satisfy_a_required_body() {
    let mut d = Drive::new(config());
    d.request(&post("/orders"), false);
    let flows = d.body(Side::Request, &[], true);
    assert_eq!(flows, vec![Flow::Pause]);
    assert_eq!(d.status(), Some(400));
    let reply = d.0.host.reply.as_ref().unwrap();
    assert!(
        reply.body.contains("Request body required"),
        "{}",
        reply.body
    );
}

#[test]
fn the_schema_verdict_is_the_same_for_any_chunking_with_or_without_trailers() {
    let bodies: [&[u8]; 4] = [
        br#"{"qty":3}"#,
        br#"{"qty":-5}"#,
        b"not json",
        br#"{"qty": 2, "x": [1,2,3]}"#,
    ];
    for body in bodies {
        let (whole, _) = schema_verdict(body, &[], false);
        for trailers in [false, true] {
            for a in 0..=body.len() {
                for b in a..=body.len() {
                    let (status, upstream) = schema_verdict(body, &[a, b], trailers);
                    assert_eq!(status, whole, "cuts {a},{b} trailers {trailers}");
                    if status.is_none() {
                        assert_eq!(upstream.as_bytes(), body);
                    } else {
                        assert_eq!(upstream, "");
                    }
                }
            }
        }
    }
}

#[test]
fn a_held_body_is_not_released_before_its_verdict() {
    let mut d = Drive::new(config());
    d.request(&post("/orders"), false);
    let flows = d.body(Side::Request, &[b"{\"qty\"", b":3}"], true);
    assert_eq!(flows, vec![Flow::Pause, Flow::Pause, Flow::Continue]);
    assert_eq!(d.upstream_got(), r#"{"qty":3}"#);
}

#[test]
fn a_body_over_the_schema_bound_is_refused_with_413_even_when_trailers_end_it() {
    let big = format!(r#"{{"qty":1,"pad":"{}"}}"#, "x".repeat(2000));
    for trailers in [false, true] {
        let mut d = Drive::new(config());
        d.request(&post("/orders"), false);
        d.body(Side::Request, &[big.as_bytes()], trailers);
        assert_eq!(d.status(), Some(413));
        assert_eq!(d.upstream_got(), "");
    }
}

#[test]
fn request_block_redaction_refuses_a_card_ended_by_trailers() {
    let body = format!(r#"{{"card":"{CARD}"}}"#);
    let mut d = Drive::new(config());
    d.request(&post("/rb/pay"), false);
    d.body(
        Side::Request,
        &[&body.as_bytes()[..10], &body.as_bytes()[10..]],
        true,
    );
    assert_eq!(d.status(), Some(403));
    assert_eq!(d.upstream_got(), "");
}

/// A GET on the `redact` rule, then a JSON response in these chunks.
fn respond(d: &mut Drive, chunks: &[&[u8]], trailers: bool) {
    d.request(
        &[(":method", "GET"), (":path", "/r/x"), (":authority", "h")],
        true,
    );
    d.response(
        &[(":status", "200"), ("content-type", "application/json")],
        false,
    );
    d.body(Side::Response, chunks, trailers);
}

#[test]
fn a_redacted_response_ended_by_trailers_arrives_whole_and_masked() {
    let body = format!(
        r#"{{"name":"ann","card":"{CARD}","note":"{}"}}"#,
        "n".repeat(300)
    );
    let bytes = body.as_bytes();
    let whole = {
        let mut d = Drive::new(config());
        respond(&mut d, &[bytes], false);
        d.client_got()
    };
    assert!(
        !whole.contains(CARD) && whole.contains("REDACTED"),
        "{whole}"
    );
    for cut in [1, 20, 30, 200, bytes.len() - 1] {
        let mut d = Drive::new(config());
        respond(&mut d, &[&bytes[..cut], &bytes[cut..]], true);
        assert_eq!(d.client_got(), whole, "cut at {cut}");
        assert!(!d.0.host.reset);
    }
}

#[test]
fn a_long_streamed_response_ended_by_trailers_is_reset_not_truncated() {
    let filler = "y".repeat(REDACT_HOLD);
    let body = format!(r#"{{"a":"{filler}","card":"{CARD}","b":"{filler}"}}"#);
    let bytes = body.as_bytes();
    let mut d = Drive::new(config());
    let chunks: Vec<&[u8]> = bytes.chunks(64 * 1024).collect();
    respond(&mut d, &chunks, true);
    assert!(d.0.host.reset);
    assert_eq!(d.0.host.counter("redaction_trailers_reset"), 1);
    assert!(!d.client_got().contains(CARD));
    // Without trailers the same body streams through, masked.
    let mut d = Drive::new(config());
    respond(&mut d, &chunks, false);
    assert!(!d.0.host.reset);
    let mut whole = Drive::new(config());
    respond(&mut whole, &[bytes], false);
    assert_eq!(d.client_got(), whole.client_got());
    assert!(!d.client_got().contains(CARD) && d.client_got().ends_with("\"}"));
}

const REDACT_HOLD: usize = body::REDACT_HOLD_BYTES;

#[test]
fn a_blocked_response_never_hands_out_the_card_even_with_trailers() {
    let body = format!(r#"{{"card":"{CARD}"}}"#);
    for trailers in [false, true] {
        let mut d = Drive::new(config());
        d.request(
            &[(":method", "GET"), (":path", "/b/x"), (":authority", "h")],
            true,
        );
        d.response(
            &[(":status", "200"), ("content-type", "application/json")],
            false,
        );
        d.body(
            Side::Response,
            &[&body.as_bytes()[..5], &body.as_bytes()[5..]],
            trailers,
        );
        assert!(!d.client_got().contains(CARD), "{}", d.client_got());
        assert!(d.client_got().contains("sensitive data"));
    }
}

#[test]
fn a_partial_response_on_a_scanned_route_follows_the_unknown_encoding_rule() {
    let mut d = Drive::new(config());
    d.request(
        &[
            (":method", "GET"),
            (":path", "/g/doc"),
            (":authority", "h"),
            ("range", "bytes=0-36"),
        ],
        true,
    );
    let removed: Vec<&str> =
        d.0.host
            .header_changes
            .iter()
            .map(|(_, n, _)| n.as_str())
            .collect();
    assert!(removed.contains(&"range"), "{removed:?}");
    d.response(
        &[
            (":status", "206"),
            ("content-type", "application/json"),
            ("content-range", "bytes 0-36/80"),
        ],
        false,
    );
    assert_eq!(d.status(), Some(502));
    // Under "pass" the slice goes through unscanned (counted).
    let mut d = Drive::new(config());
    d.request(
        &[(":method", "GET"), (":path", "/r/doc"), (":authority", "h")],
        true,
    );
    d.response(
        &[(":status", "206"), ("content-type", "application/json")],
        false,
    );
    d.body(Side::Response, &[b"{\"a\":1}"], false);
    assert_eq!(d.0.host.counter("redaction_unscanned"), 1);
    assert_eq!(d.client_got(), "{\"a\":1}");
}

#[test]
fn header_bytes_that_are_not_utf8_pass_untouched_unless_they_must_be_judged() {
    let mut d = Drive::new(config());
    d.0.host.request = Headers::of_bytes(&[
        (":method", b"GET"),
        (":path", b"/public"),
        (":authority", b"h"),
        ("x-name", b"caf\xe9"),
    ]);
    let flow =
        d.0.exchange
            .on_request_headers(&mut d.0.worker, &mut d.0.host, true);
    assert_eq!(flow, Flow::Continue);
    assert!(d.0.host.reply.is_none());

    let mut d = Drive::new(config());
    d.0.host.request = Headers::of_bytes(&[
        (":method", b"GET"),
        (":path", b"/orders/caf\xe9"),
        (":authority", b"h"),
    ]);
    d.0.exchange
        .on_request_headers(&mut d.0.worker, &mut d.0.host, true);
    assert_eq!(d.status(), Some(400));
    assert_eq!(d.0.host.counter("unreadable_request"), 1);
}

#[test]
fn report_mode_cannot_flood_the_log() {
    // Lines are only admitted (and counted) when their level is on, as it is in Envoy.
    log::set_max_level(log::LevelFilter::Info);
    let mut w = worker(json!({"mode": "report", "on_no_match": "deny"}));
    let mut host = SimHost {
        now: 1_000,
        request: Headers::of(&[(":method", "GET"), (":path", "/x"), (":authority", "h")]),
        ..SimHost::default()
    };
    for _ in 0..1000 {
        let mut x = Exchange::new();
        assert_eq!(
            x.on_request_headers(&mut w, &mut host, true),
            Flow::Continue
        );
    }
    let counted = host
        .events
        .iter()
        .filter(|e| **e == Event::ReportOnlyDenied)
        .count();
    assert_eq!(counted, 1000);
    assert_eq!(host.counter("log_suppressed"), 1000 - LogLimiter::BURST);
}

/// Host calls per request shape: the budget that keeps the cost of a request visible. Counting
/// happens in memory, so only real host calls are listed.
#[test]
fn host_call_budget_per_request_shape() {
    // A GET that no rule guards: one read of the headers.
    let mut d = Drive::new(config());
    d.request(
        &[
            (":method", "GET"),
            (":path", "/public"),
            (":authority", "h"),
        ],
        true,
    );
    d.response(&[(":status", "200")], true);
    assert_eq!(
        d.0.host.calls,
        vec!["metric requests", "request_headers", "metric no_rule_match"]
    );

    // A POST under a schema, one chunk: headers, one body read.
    let mut d = Drive::new(config());
    d.request(&post("/orders"), false);
    d.body(Side::Request, &[br#"{"qty":3}"#], false);
    assert_eq!(
        d.0.host.calls,
        vec![
            "metric requests",
            "request_headers",
            "body Request",
            "metric schema_validated"
        ]
    );

    // A redacted JSON response in two chunks: response headers once, one read per callback, one write.
    let mut d = Drive::new(config());
    let body = format!(r#"{{"card":"{CARD}"}}"#);
    respond(
        &mut d,
        &[&body.as_bytes()[..4], &body.as_bytes()[4..]],
        false,
    );
    assert_eq!(
        d.0.host.calls,
        vec![
            "metric requests",
            "request_headers",
            "response_headers",
            "body Response",
            "metric redaction_pii_card",
            "metric redaction_bodies_changed",
            "set_body Response"
        ]
    );
}

#[test]
fn listed_response_headers_are_masked_or_blocked_even_without_a_body() {
    let mut d = Drive::new(config());
    d.request(
        &[(":method", "GET"), (":path", "/h/doc"), (":authority", "h")],
        true,
    );
    d.response(
        &[
            (":status", "302"),
            ("location", "/cards/4111%201111%201111%201111"),
            ("content-disposition", "attachment; filename=\"report.pdf\""),
            ("x-other", "4111 1111 1111 1111"),
        ],
        true,
    );
    let changes = &d.0.host.header_changes;
    assert!(
        changes
            .iter()
            .any(|(_, n, v)| n == "location" && v.is_none()),
        "{changes:?}"
    );
    let added: Vec<String> =
        d.0.host
            .headers_added
            .iter()
            .filter(|(_, n, _)| n == "location")
            .map(|(_, _, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
    assert_eq!(added.len(), 1);
    assert!(
        added[0].starts_with("/cards/") && !added[0].contains("1111"),
        "{added:?}"
    );
    assert!(!d
        .0
        .host
        .calls
        .iter()
        .any(|c| c.contains("content-disposition") || c.contains("x-other")));
    assert_eq!(d.0.host.counter("redaction_headers_changed"), 1);
    assert_eq!(d.0.host.counter("redaction_hdr_card"), 1);

    let mut d = Drive::new(config());
    d.request(
        &[
            (":method", "GET"),
            (":path", "/hb/doc"),
            (":authority", "h"),
        ],
        true,
    );
    d.response(
        &[(":status", "302"), ("location", "/u/4111-1111-1111-1111")],
        false,
    );
    assert_eq!(d.status(), Some(502));
}

/// Every host call of one request of a benchmark shape (`examples/request_path.rs`, `scripts/bench.py`)
/// once the worker is warm (token cached, limiter slot made, endpoint known): the stream calls, clock
/// reads and metric increments in order, then the shared-data reads and writes.
fn shape_calls(config: Value, extra: &[(&str, &str)]) -> (Vec<String>, usize, usize) {
    use crate::discovery::{event::Source, DiscoveryWorker};
    let mut sim = Sim::new(Rc::new(Policy::from_value(&config).unwrap()));
    if !sim.worker.policy.rate_limits.is_empty() {
        sim.worker.seed = Some(crate::ratelimit::key::Seed::from_bytes(&[7; 16]));
    }
    let source = Source {
        plugin: "apiguard".into(),
        worker: "1".into(),
        node: None,
    };
    let now = sim.host.now;
    sim.worker.discovery = sim
        .worker
        .policy
        .discovery
        .as_ref()
        .map(|d| DiscoveryWorker::new(d, source, now));
    let mut request = vec![
        (":method", "GET"),
        (":path", "/api/x"),
        (":authority", "127.0.0.1:10000"),
        (":scheme", "http"),
        ("user-agent", "wrk"),
        ("x-request-id", "3f2a3c1e-8a7b-4c4d-9e0f-112233445566"),
    ];
    request.extend_from_slice(extra);
    for _ in 0..2 {
        sim.host.calls.clear();
        *sim.host.store.reads.borrow_mut() = 0;
        *sim.host.store.writes.borrow_mut() = 0;
        sim.exchange = Exchange::new();
        assert_eq!(sim.request(Headers::of(&request), true), Flow::Continue);
        assert!(!sim.stopped(), "{:?}", sim.host.reply);
        let response = [
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-length", "2"),
        ];
        assert_eq!(sim.response(Headers::of(&response), true), Flow::Continue);
        sim.log();
    }
    let reads = *sim.host.store.reads.borrow();
    let writes = *sim.host.store.writes.borrow();
    (sim.host.calls, reads, writes)
}

/// The host-call budget of the benchmark shapes (`make profile`, `make bench`): what a warm request
/// costs outside the VM. A change that adds a call must lower another or raise this budget on purpose.
#[test]
fn host_call_budget_of_the_benchmark_shapes() {
    use crate::pipeline::tests::{jwks, token};
    let provider = json!({"issuer": "https://idp", "audiences": ["api"],
        "local_jwks": {"inline_string": jwks()},
        "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]});
    let never_deny = |key: Value| json!({"requests": 1_000_000_000u64, "period": "1s", "key": key, "max_keys": 20000});
    let bearer = format!(
        "Bearer {}",
        token(json!({"iss": "https://idp", "aud": "api", "sub": "alice", "exp": 1_800_000_000u64}))
    );
    let auth = [("authorization", bearer.as_str())];
    let tenant = [("x-tenant", "t1")];

    let noop = shape_calls(json!({"rules": [{"match": {"prefix": "/"}}]}), &[]);
    // Against the no-op filter (bench/noop: no host call at all).
    assert_eq!(
        noop,
        (strings(&["metric requests", "request_headers"]), 0, 0)
    );

    let jwt = shape_calls(
        json!({"jwt_cache": {"max_entries": 1024}, "jwt_providers": {"bench": provider},
               "rules": [{"match": {"prefix": "/"}, "jwt": {"provider": "bench"}}]}),
        &auth,
    );
    // The token (removed, as jwt_authn's `forward: false` does) and its claim header.
    let jwt_calls = [
        "metric requests",
        "request_headers",
        "now",
        "metric jwt_cache_hit",
        "metric jwt_allowed",
        "set_header x-jwt-sub",
        "set_header authorization",
    ];
    assert_eq!(jwt, (strings(&jwt_calls), 0, 0));

    let limit = shape_calls(
        json!({"rate_limits": {"bench": never_deny(json!([{"header": "x-tenant"}]))},
               "rules": [{"match": {"prefix": "/"}, "rate_limits": "bench"}]}),
        &tenant,
    );
    // One shared-data get and one CAS write for the key's slot.
    let limit_calls = [
        "metric requests",
        "request_headers",
        "now",
        "metric rl_allowed",
    ];
    assert_eq!(limit, (strings(&limit_calls), 1, 1));

    let jwt_limit = shape_calls(
        json!({"jwt_cache": {"max_entries": 1024}, "jwt_providers": {"bench": provider},
               "rate_limits": {"per_user": never_deny(json!([{"jwt_claim": "sub"}]))},
               "rules": [{"match": {"prefix": "/"}, "jwt": {"provider": "bench"}, "rate_limits": "per_user"}]}),
        &auth,
    );
    let jwt_limit_calls = [
        "metric requests",
        "request_headers",
        "now",
        "metric jwt_cache_hit",
        "metric jwt_allowed",
        "metric rl_allowed",
        "set_header x-jwt-sub",
        "set_header authorization",
    ];
    assert_eq!(jwt_limit, (strings(&jwt_limit_calls), 1, 1));

    let discovery = shape_calls(
        json!({"discovery": {"collector": {"cluster": "collector", "uri": "http://collector/v1/apiguard"},
                             "sample_rate": 1.0, "flush_interval": "5s"},
               "rules": [{"match": {"prefix": "/"}}]}),
        &[],
    );
    // The response's status and content type; the request's clock read serves the log stage too.
    let discovery_calls = [
        "metric requests",
        "request_headers",
        "now",
        "response_headers",
    ];
    assert_eq!(discovery, (strings(&discovery_calls), 0, 0));
}

fn strings(calls: &[&str]) -> Vec<String> {
    calls.iter().map(|c| (*c).to_string()).collect()
}
