//! Whole requests through the pure core ([`Exchange`] and a [`Worker`], no Envoy), in a loop, for one
//! request shape at a time: the driver `make profile` runs under callgrind to count the instructions
//! apiguard spends per request outside the host calls.
//!
//! ```text
//! cargo run --release --example request_path -- SHAPE [REQUESTS]   # SHAPE: one of `list`
//! ```
//! The configurations follow `scripts/bench.py`'s suites. The host here is lean on purpose (unlike
//! `exchange::sim::SimHost`, it records nothing): headers are cloned once per read, as the proxy-wasm
//! SDK builds them once per `get_map` call, and counters cost nothing, so what is counted is the core's
//! own work. Callgrind counts only [`Driver::measured`] (one request, its headers already built); the
//! warm-up before the measured requests fills the token cache, the rate-limit slots and the discovery
//! table.

#[allow(
    dead_code,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "shared with the e2e tests, where a bad fixture should fail loudly"
)]
#[path = "../tests/common/token.rs"]
mod token;

use apiguard::config::Policy;
use apiguard::discovery::event::Source;
use apiguard::discovery::observe::Side;
use apiguard::discovery::DiscoveryWorker;
use apiguard::exchange::{Counter, Exchange, Flow, HostFault, StreamHost, Worker};
use apiguard::pipeline::Event;
use apiguard::ratelimit::key::Seed;
use apiguard::ratelimit::LimitEvent;
use apiguard::reply::Reply;
use apiguard::request::Headers;
use apiguard::store::memory::MemoryStore;
use apiguard::store::SharedStore;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::hint::black_box;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

/// The proxy side of a request, recording nothing.
struct LeanHost {
    request: Headers,
    response: Headers,
    /// What the proxy holds of the body being buffered (one side at a time here).
    held: Vec<u8>,
    store: MemoryStore,
    now: u64,
    replies: u64,
    /// Metric ids by counter, and by name for configured names, as `host::metrics` keeps them.
    ids: Vec<Option<u32>>,
    named: HashMap<String, u32>,
}

impl StreamHost for LeanHost {
    fn request_headers(&mut self) -> Result<Headers, HostFault> {
        Ok(self.request.clone())
    }
    fn response_headers(&mut self) -> Result<Headers, HostFault> {
        Ok(self.response.clone())
    }
    fn source_address(&mut self) -> Option<String> {
        Some("10.0.0.1:5555".into())
    }
    fn body(&mut self, _side: Side, max: usize) -> Result<Vec<u8>, HostFault> {
        Ok(self
            .held
            .get(..max.min(self.held.len()))
            .unwrap_or_default()
            .to_vec())
    }
    fn set_body(&mut self, _side: Side, len: usize, bytes: &[u8]) -> Result<(), HostFault> {
        let len = len.min(self.held.len());
        self.held.splice(..len, bytes.iter().copied());
        Ok(())
    }
    fn set_header(&mut self, _: Side, _: &str, _: Option<&[u8]>) -> Result<(), HostFault> {
        Ok(())
    }
    fn add_header(&mut self, _: Side, _: &str, _: &[u8]) -> Result<(), HostFault> {
        Ok(())
    }
    fn send_reply(&mut self, _reply: &Reply) -> Result<(), HostFault> {
        self.replies += 1;
        Ok(())
    }
    fn reset(&mut self) {
        self.replies += 1;
    }
    fn store(&self) -> &dyn SharedStore {
        &self.store
    }
    fn now_ms(&mut self) -> u64 {
        self.now
    }
    // Counting resolves a metric id the way `host::metrics` does (the increment itself is a host call).
    fn event(&mut self, event: &Event) {
        for counter in Counter::of_event(event).into_iter().flatten() {
            black_box(self.ids.get(counter.index()));
        }
        if let Event::RateLimit(policy, event) = event {
            black_box((policy, LimitEvent::ALL.iter().position(|e| e == event)));
        }
    }
    fn count(&mut self, counter: Counter, n: u64) {
        black_box((self.ids.get(counter.index()), n));
    }
    fn count_named(&mut self, name: &str, n: u64) {
        black_box((self.named.get(name), n));
    }
    // No shape here uses a rate limit service.
    fn call_service(&mut self, _: &str, _: &[u8], _: u64) -> Result<(), HostFault> {
        Err(HostFault(1))
    }
    fn now_us(&mut self) -> u64 {
        0
    }
    fn service_latency(&mut self, policy: usize, micros: u64) {
        black_box((policy, micros));
    }
}

/// One request shape: its configuration, and how the n-th request looks.
struct Shape {
    name: &'static str,
    config: Value,
    /// Extra request headers of the n-th request (e.g. a tenant key).
    vary: fn(usize, &mut Vec<(String, String)>),
    method: &'static str,
    token: bool,
    request_body: Option<String>,
    response_body: Option<String>,
}

const ISSUER: &str = token::ISSUER;

fn provider(jwks: &Value) -> Value {
    json!({"issuer": ISSUER, "audiences": [token::AUDIENCE],
           "local_jwks": {"inline_string": jwks.to_string()},
           "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]})
}

const NEVER_DENY_REQUESTS: u64 = 1_000_000_000;

fn json_body(size: usize) -> String {
    let mut records = Vec::new();
    let mut len = 0;
    let mut i = 0;
    while len < size.saturating_sub(64) {
        let record = format!(
            "{{\"id\": {i}, \"name\": \"Customer {i}\", \"email\": \"customer{i}@example.com\", \
             \"card\": \"4111 1111 1111 1111\", \"phone\": \"+1 415 555 {i:04}\", \"note\": \"order {i} \
             shipped to the usual address, nothing unusual\", \"iban\": \"DE89 3704 0044 0532 0130 00\"}}"
        );
        len += record.len() + 1;
        records.push(record);
        i += 1;
    }
    format!("{{\"records\": [{}]}}", records.join(","))
}

fn shapes(jwks: &Value) -> Vec<Shape> {
    let never_deny = |key: Value| json!({"requests": NEVER_DENY_REQUESTS, "period": "1s", "key": key, "max_keys": 20000});
    let order_schema = json!({"type": "object", "required": ["records"], "properties": {"records": {
        "type": "array", "items": {"type": "object", "required": ["id", "name", "email"],
        "additionalProperties": false, "properties": {
            "id": {"type": "integer", "minimum": 0}, "name": {"type": "string", "maxLength": 64},
            "email": {"type": "string", "format": "email"}, "card": {"type": "string"},
            "phone": {"type": "string"}, "note": {"type": "string", "maxLength": 256},
            "iban": {"type": "string"}}}}}});
    let none = |_: usize, _: &mut Vec<(String, String)>| {};
    let tenant = |n: usize, h: &mut Vec<(String, String)>| {
        h.push(("x-tenant".into(), format!("t{}", n % 10_000)));
    };
    let paths = |n: usize, h: &mut Vec<(String, String)>| {
        if let Some(path) = h.iter_mut().find(|(k, _)| k == ":path") {
            path.1 = format!("/api/resource{}/items", n % 100);
        }
    };
    vec![
        Shape {
            name: "noop-rule",
            config: json!({"rules": [{"match": {"prefix": "/"}}]}),
            vary: none,
            method: "GET",
            token: false,
            request_body: None,
            response_body: None,
        },
        Shape {
            name: "jwt-cached",
            config: json!({"jwt_cache": {"max_entries": 1024},
                "jwt_providers": {"bench": provider(jwks)},
                "rules": [{"match": {"prefix": "/"}, "jwt": {"provider": "bench"}}]}),
            vary: none,
            method: "GET",
            token: true,
            request_body: None,
            response_body: None,
        },
        Shape {
            name: "limit-per-key",
            config: json!({"rate_limits": {"bench": never_deny(json!([{"header": "x-tenant"}]))},
                "rules": [{"match": {"prefix": "/"}, "rate_limits": "bench"}]}),
            vary: tenant,
            method: "GET",
            token: false,
            request_body: None,
            response_body: None,
        },
        Shape {
            name: "jwt+limit",
            config: json!({"jwt_cache": {"max_entries": 1024},
                "jwt_providers": {"bench": provider(jwks)},
                "rate_limits": {"per_user": never_deny(json!([{"jwt_claim": "sub"}]))},
                "rules": [{"match": {"prefix": "/"}, "jwt": {"provider": "bench"},
                           "rate_limits": "per_user"}]}),
            vary: none,
            method: "GET",
            token: true,
            request_body: None,
            response_body: None,
        },
        Shape {
            name: "schema-post-1KiB",
            config: json!({"schemas": {"order": {"json_schema": order_schema}},
                "rules": [{"match": {"prefix": "/"}, "schema": "order"}]}),
            vary: none,
            method: "POST",
            token: false,
            request_body: Some(json_body(1024)),
            response_body: None,
        },
        Shape {
            name: "redact-4KiB-response",
            config: json!({"redaction": {"pii": {"action": "redact"}},
                "rules": [{"match": {"prefix": "/"}, "redaction": "pii"}]}),
            vary: none,
            method: "GET",
            token: false,
            request_body: None,
            response_body: Some(json_body(4096)),
        },
        Shape {
            name: "discovery",
            config: json!({"discovery": {"collector": {"cluster": "collector",
                                                       "uri": "http://collector/v1/apiguard"},
                                         "sample_rate": 1.0, "flush_interval": "5s"},
                "rules": [{"match": {"prefix": "/"}}]}),
            vary: paths,
            method: "GET",
            token: false,
            request_body: None,
            response_body: None,
        },
    ]
}

struct Driver {
    worker: Worker,
    host: LeanHost,
    base: Vec<(String, String)>,
    vary: fn(usize, &mut Vec<(String, String)>),
    request_body: Option<Vec<u8>>,
    response: Headers,
    response_body: Option<Vec<u8>>,
}

impl Driver {
    fn new(shape: &Shape, token: &str, now_ms: u64) -> Result<Driver, String> {
        let policy = Rc::new(Policy::from_value(&shape.config).map_err(|e| format!("{e:?}"))?);
        let jwks = policy.jwks_coordinator(1);
        let mut worker = Worker::new(Rc::clone(&policy), jwks);
        if !policy.rate_limits.is_empty() {
            worker.seed = Some(Seed::from_bytes(&[7; 16]));
        }
        worker.discovery = policy.discovery.as_ref().map(|d| {
            let source = Source {
                plugin: policy.name.clone(),
                worker: "0000000000000001".into(),
                node: None,
            };
            DiscoveryWorker::new(d, source, now_ms)
        });
        let mut base: Vec<(String, String)> = [
            (":authority", "127.0.0.1:10000"),
            (":path", "/api/x"),
            (":method", shape.method),
            (":scheme", "http"),
            ("user-agent", "wrk"),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "3f2a3c1e-8a7b-4c4d-9e0f-112233445566"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
        if shape.token {
            base.push(("authorization".into(), format!("Bearer {token}")));
        }
        if let Some(body) = &shape.request_body {
            base.push(("content-type".into(), "application/json".into()));
            base.push(("content-length".into(), body.len().to_string()));
        }
        let mut response = vec![
            (":status".to_string(), "200".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        if let Some(body) = &shape.response_body {
            response.push(("content-length".into(), body.len().to_string()));
        }
        Ok(Driver {
            worker,
            host: LeanHost {
                request: Headers::default(),
                response: pairs(&response),
                held: Vec::new(),
                store: MemoryStore::default(),
                now: now_ms,
                replies: 0,
                ids: (0..Counter::ALL.len())
                    .map(|i| u32::try_from(i).ok())
                    .collect(),
                named: HashMap::new(),
            },
            base,
            vary: shape.vary,
            request_body: shape.request_body.clone().map(String::into_bytes),
            response: pairs(&response),
            response_body: shape.response_body.clone().map(String::into_bytes),
        })
    }

    /// One request, not inlined: the part `make profile` counts (`--toggle-collect`).
    #[inline(never)]
    fn measured(&mut self) {
        self.one();
    }

    /// The headers of the n-th request, built outside the measured part ([`Driver::prepare`]).
    fn prepare(&mut self, n: usize) {
        let mut headers = self.base.clone();
        (self.vary)(n, &mut headers);
        self.host.request = pairs(&headers);
        self.host.response = self.response.clone();
    }

    /// One request as Envoy drives it: request headers, one body chunk, response headers, one body
    /// chunk, log.
    fn one(&mut self) {
        let mut exchange = Exchange::new();
        let host = &mut self.host;
        let worker = &mut self.worker;
        let has_request_body = self.request_body.is_some();
        exchange.on_request_headers(worker, host, !has_request_body);
        if let Some(body) = &self.request_body {
            host.held.clear();
            host.held.extend_from_slice(body);
            black_box(exchange.on_request_body(worker, host, body.len(), true));
        }
        let has_response_body = self.response_body.is_some();
        if exchange.on_response_headers(worker, host, !has_response_body) == Flow::Continue {
            if let Some(body) = &self.response_body {
                host.held.clear();
                host.held.extend_from_slice(body);
                black_box(exchange.on_response_body(worker, host, body.len(), true));
            }
        }
        exchange.on_log(worker, host);
    }
}

fn pairs(list: &[(String, String)]) -> Headers {
    Headers::from_pairs(
        list.iter()
            .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
            .collect(),
    )
}

fn run_requests(driver: &mut Driver, first: usize, count: usize) {
    for n in first..first + count {
        driver.prepare(n);
        driver.one();
    }
}

/// The measured requests: callgrind counts only inside [`Driver::measured`].
fn run_measured(driver: &mut Driver, first: usize, count: usize) {
    for n in first..first + count {
        driver.prepare(n);
        driver.measured();
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keys = token::Keys::load();
    let jwks = keys.jwks();
    let token = keys.sign(token::Alg::Es256, &token::good_claims());
    let all = shapes(&jwks);
    let Some(wanted) = args.first() else {
        eprintln!("usage: request_path SHAPE|list|all [REQUESTS]");
        return ExitCode::from(2);
    };
    if wanted == "list" {
        for shape in &all {
            println!("{}", shape.name);
        }
        return ExitCode::SUCCESS;
    }
    let requests: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(2000);
    let now_ms = u64::try_from(token::now()).unwrap_or(0) * 1000;
    for shape in all
        .iter()
        .filter(|s| wanted == "all" || s.name == wanted.as_str())
    {
        let mut driver = match Driver::new(shape, &token, now_ms) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: {e}", shape.name);
                return ExitCode::FAILURE;
            }
        };
        // Warm-up: the token cache, every rate-limit key, every discovery endpoint.
        run_requests(&mut driver, 0, 10_000);
        if driver.host.replies > 0 {
            eprintln!("{}: {} request(s) refused", shape.name, driver.host.replies);
            return ExitCode::FAILURE;
        }
        let started = Instant::now();
        run_measured(&mut driver, 10_000, requests);
        let ns = started.elapsed().as_nanos() as f64 / requests as f64;
        println!(
            "{:22} {:8.0} ns/request (native, wall clock)",
            shape.name, ns
        );
    }
    ExitCode::SUCCESS
}
