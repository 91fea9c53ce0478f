//! A bounded random-request run against Envoy with the full policy (JWT, authorization, rate limit,
//! schema, request and response redaction, discovery): for `APIGUARD_FUZZ_SECONDS` (default 60) one
//! thread sends malformed and odd HTTP/1.1 on raw sockets (odd methods, bad chunking, huge and odd
//! headers, non-UTF-8 bytes, random paths, trailers) and one sends odd HTTP/2 (through the `h2` crate:
//! bytes in values, trailers, resets mid-body; and hand-made frames: odd pseudo-headers, upper-case
//! names, frames on closed streams). `APIGUARD_FUZZ_SEED` repeats a run (the seed is printed).
//!
//! Afterwards: Envoy's log shows no wasm panic, trap or failed `proxy_on_*` call; Envoy still answers
//! over both protocols; and the counters add up: the filter saw no more requests than Envoy did, every
//! request the upstream got passed the filter, the refusals and the stage outcomes are each at most the
//! requests, and 20 clean requests per protocol afterwards move `requests` by exactly 40.
//!
//! Set `APIGUARD_FUZZ_ASCII=1` to leave out the bytes >= 0x80 in header values (to check the rest of the
//! run while non-UTF-8 headers are known to break the filter).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::collector::Collector;
use common::h2::{frame, hpack};
use common::token::{good_claims, Alg, Keys, AUDIENCE, ISSUER};
use common::{e2e_paths, Echo, Envoy, EnvoyOpts, Proto, Req};
use serde_json::{json, Value};

const P: &str = "apiguard";

/// xorshift64*: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn bytes(&mut self, len: usize, ascii_only: bool) -> Vec<u8> {
        (0..len)
            .map(|_| loop {
                let b = (self.next() & 0xff) as u8;
                // Field-value bytes (RFC 9110 5.5): visible ASCII, space, tab, obs-text 0x80-0xFF;
                // control bytes would make a different request (or one the h2 crate refuses to send).
                if (b < 0x20 && b != b'\t') || b == 0x7f || (ascii_only && b >= 0x80) {
                    continue;
                }
                break b;
            })
            .collect()
    }
}

fn config(keys: &Keys) -> Value {
    json!({
        "jwt_providers": {"idp": {"issuer": ISSUER, "audiences": [AUDIENCE],
                                  "local_jwks": {"inline_string": keys.jwks().to_string()},
                                  "claim_to_headers": [{"header_name": "x-user", "claim_name": "sub"}]}},
        "rate_limits": {"per_user": {"requests": 100000, "period": "3600s", "key": [{"jwt_claim": "sub"}]},
                        "per_ip": {"requests": 100000, "period": "3600s"}},
        "schemas": {"order": {"json_schema": {"type": "object", "required": ["qty"],
                                              "properties": {"qty": {"type": "integer", "minimum": 1}}}}},
        "redaction": {"pii": {"action": "redact"},
                      "req_blocker": {"action": "block", "bodies": ["request"]},
                      "resp_blocker": {"action": "block"}},
        "discovery": {"collector": {"cluster": "collector", "uri": "http://collector/v1/apiguard"},
                      "flush_interval": "1s"},
        "rules": [
            {"name": "orders", "match": {"prefix": "/orders"}, "jwt": {"provider": "idp"},
             "authz": {"scopes": ["orders:write"]}, "rate_limits": "per_user", "schema": "order",
             "redaction": "pii"},
            {"name": "scan", "match": {"prefix": "/scan"}, "redaction": "req_blocker", "rate_limits": "per_ip"},
            {"name": "masked", "match": {"prefix": "/r/"}, "redaction": "pii"},
            {"name": "blocked", "match": {"prefix": "/b/"}, "redaction": "resp_blocker"},
            {"name": "open", "match": {"prefix": "/"}}
        ]
    })
}

struct Material {
    token: String,
    ascii_only: bool,
}

const METHODS: [&str; 14] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO", "get", "M-SEARCH",
    "PROPFIND", "POST", "GET",
];
const PREFIXES: [&str; 9] = [
    "/orders",
    "/orders/7",
    "/scan",
    "/r/x",
    "/b/x",
    "/open/",
    "/",
    "/api/v1/users/42",
    "/orders?x=",
];
const BODIES: [&[u8]; 8] = [
    br#"{"qty":2}"#,
    br#"{"qty":-5}"#,
    b"not json",
    br#"{"card":"4111 1111 1111 1111","email":"jane@example.com"}"#,
    b"",
    br#"{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
    b"\xff\xfe\x00\x01binary",
    br#"{"qty":1,"note":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"}"#,
];

fn random_path(rng: &mut Rng) -> String {
    let mut path = rng.pick(&PREFIXES).to_string();
    match rng.below(8) {
        0 => path.push_str("/../admin"),
        1 => path.push_str("//x/%2e%2e/%2F"),
        2 => path.push_str(&"a/".repeat(rng.below(400))),
        3 => path.push_str(&format!(";jsessionid={}", rng.next())),
        4 => path.push_str(&format!("%{:02X}%{:02x}", rng.below(256), rng.below(256))),
        5 => path.push_str(&format!("?q={}&q={}", rng.next(), rng.below(9))),
        _ => {}
    }
    path
}

/// (name, value) header pairs: ordinary, odd, huge, non-UTF-8, duplicated authorization.
fn random_headers(rng: &mut Rng, m: &Material) -> Vec<(String, Vec<u8>)> {
    let mut headers = Vec::new();
    if rng.chance(40) {
        headers.push(("content-type".into(), b"application/json".to_vec()));
    }
    if rng.chance(30) {
        headers.push((
            "authorization".into(),
            format!("Bearer {}", m.token).into_bytes(),
        ));
    }
    for _ in 0..rng.below(6) {
        let value_len = if rng.chance(3) { 70_000 } else { rng.below(64) };
        let value = rng.bytes(value_len, m.ascii_only);
        let name = rng
            .pick(&[
                "x-name",
                "authorization",
                "cookie",
                "x-forwarded-for",
                "content-encoding",
                "x-api-key",
                "accept-encoding",
                "X-Mixed-Case",
                "x-echo-raw",
                "te",
            ])
            .to_string();
        let value = if name == "x-echo-raw" {
            b"application/json".to_vec()
        } else {
            value
        };
        headers.push((name, value));
    }
    headers
}

/// One odd HTTP/1.1 exchange on a raw socket. Returns whether a response head came back.
fn h1_once(port: u16, rng: &mut Rng, m: &Material) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(150)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let method = rng.pick(&METHODS).to_string();
    let mut path = random_path(rng).into_bytes();
    if rng.chance(5) {
        path.extend(rng.bytes(3, m.ascii_only)); // raw bytes in the request target
        path.retain(|b| *b != b' ');
    }
    let mut out = Vec::new();
    out.extend(method.as_bytes());
    out.push(b' ');
    out.extend(&path);
    out.extend(if rng.chance(3) {
        &b" HTTP/1.0\r\n"[..]
    } else {
        &b" HTTP/1.1\r\n"[..]
    });
    if !rng.chance(3) {
        out.extend(b"host: api.test\r\n");
    }
    let odd_colon = rng.chance(3);
    for (n, v) in random_headers(rng, m) {
        out.extend(n.as_bytes());
        out.extend(if odd_colon { &b" : "[..] } else { &b": "[..] });
        out.extend(&v);
        out.extend(b"\r\n");
    }
    let body = rng.pick(&BODIES).to_vec();
    match rng.below(6) {
        // content-length, honest
        0 | 1 => {
            out.extend(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend(&body);
        }
        // content-length that lies (longer: Envoy waits; we stop reading soon)
        2 => {
            out.extend(format!("content-length: {}\r\n\r\n", body.len() + 10).as_bytes());
            out.extend(&body);
        }
        // chunked, with trailers and maybe bad sizes or a missing end
        3 | 4 => {
            out.extend(b"transfer-encoding: chunked\r\n\r\n");
            let bad_size = rng.chance(10);
            for piece in body.chunks(rng.below(7) + 1) {
                if bad_size && rng.chance(30) {
                    out.extend(b"zz\r\n");
                } else {
                    out.extend(format!("{:x}\r\n", piece.len()).as_bytes());
                }
                out.extend(piece);
                out.extend(b"\r\n");
            }
            if !rng.chance(10) {
                out.extend(b"0\r\n");
                if rng.chance(50) {
                    out.extend(b"x-checksum: ");
                    out.extend(rng.bytes(8, m.ascii_only));
                    out.extend(b"\r\n");
                }
                out.extend(b"\r\n");
            }
        }
        // both framings (the request-smuggling shape), now and then
        _ if rng.chance(30) => {
            out.extend(b"content-length: 3\r\ntransfer-encoding: chunked\r\n\r\n");
            out.extend(b"3\r\nabc\r\n0\r\n\r\n");
        }
        // no body
        _ => out.extend(b"\r\n"),
    }
    if s.write_all(&out).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && buf.starts_with(b"HTTP/1."))
}

/// One HTTP/2 request through the `h2` crate: odd but encodable. Returns whether a status came back.
fn h2_once(port: u16, rng: &mut Rng, m: &Material) -> bool {
    let method = rng.pick(&METHODS).to_string();
    let mut req = Req::new(&method, &random_path(rng));
    for (n, v) in random_headers(rng, m) {
        if n == "te" {
            continue; // h2 refuses `te` other than "trailers" before sending
        }
        req = req.header_bytes(&n.to_ascii_lowercase(), &v);
    }
    let body = rng.pick(&BODIES).to_vec();
    if rng.chance(50) {
        let (a, b) = body.split_at(body.len() / 2);
        req = req.pieces(&[a, b]);
    } else {
        req = req.body(&body);
    }
    if rng.chance(40) {
        req = req.trailer_bytes("x-checksum", &rng.bytes(8, m.ascii_only));
    }
    common::h2::send(port, &req).is_ok()
}

/// Hand-made HTTP/2 frames the `h2` crate would refuse to send. Returns whether anything came back.
fn h2_raw_once(port: u16, rng: &mut Rng, m: &Material) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(150)));
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    let path = random_path(rng).into_bytes();
    let b = |s: &str| s.as_bytes().to_vec();
    let method: &str = rng.pick(&METHODS);
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b(":method"), b(method)),
        (b(":scheme"), b("http")),
        (b(":authority"), b("api.test")),
        (b(":path"), path),
    ];
    match rng.below(9) {
        0 => {
            headers.remove(3); // no :path
        }
        1 => headers.push((b(":method"), b("POST"))), // twice
        2 => headers.push((b(":foo"), b("bar"))),     // unknown pseudo-header
        3 => headers.insert(0, (b("x-early"), b("1"))), // regular before pseudo
        4 => headers.push((b("X-Upper"), b("1"))),    // upper-case name
        5 => headers.push((b("connection"), b("keep-alive"))),
        6 => headers[3].1 = Vec::new(), // empty :path
        7 => headers.push((b("x-name"), rng.bytes(16, m.ascii_only))),
        _ => headers.push((
            b("authorization"),
            format!("Bearer {}", m.token).into_bytes(),
        )),
    }
    let end_stream = rng.chance(50);
    out.extend(frame(1, 0x4 | u8::from(end_stream), 1, &hpack(&headers)));
    if !end_stream {
        let body: &[u8] = rng.pick(&BODIES);
        out.extend(frame(0, 0, 1, body));
        match rng.below(4) {
            0 => out.extend(frame(3, 0, 1, &8u32.to_be_bytes())), // RST_STREAM CANCEL
            1 => out.extend(frame(1, 0x5, 1, &hpack(&[(b("x-trailer"), b("1"))]))),
            2 => out.extend(frame(0, 1, 3, b"data on an idle stream")),
            _ => out.extend(frame(0, 1, 1, b"")),
        }
    }
    if s.write_all(&out).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    matches!(s.read(&mut buf), Ok(n) if n > 0)
}

fn fuzz_seconds() -> u64 {
    std::env::var("APIGUARD_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

#[test]
fn random_requests_over_both_protocols_leave_envoy_healthy_and_the_counters_consistent() {
    let Some(paths) = e2e_paths() else { return };
    let keys = Keys::load();
    let echo = Echo::start();
    let collector = Collector::start();
    let opts = EnvoyOpts::new(&echo).collector(collector.port);
    let mut envoy = Envoy::start(&paths, &config(&keys).to_string(), &opts);
    let seed: u64 = std::env::var("APIGUARD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let seconds = fuzz_seconds();
    let ascii_only = std::env::var("APIGUARD_FUZZ_ASCII").is_ok_and(|v| v == "1");
    eprintln!("fuzz: {seconds} s, APIGUARD_FUZZ_SEED={seed}, ascii only: {ascii_only}");
    let mut claims = good_claims();
    claims["scope"] = json!("orders:write");
    let material = Material {
        token: keys.sign(Alg::Es256, &claims),
        ascii_only,
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tally: Mutex<BTreeMap<&str, (u64, u64)>> = Mutex::new(BTreeMap::new());
    let port = envoy.port;
    thread::scope(|scope| {
        for (lane, kind) in [(1u64, "h1"), (2, "h2")] {
            let (material, tally) = (&material, &tally);
            scope.spawn(move || {
                let mut rng = Rng(seed.wrapping_mul(lane).wrapping_add(lane) | 1);
                while Instant::now() < deadline {
                    let (name, answered) = match (kind, rng.below(4)) {
                        ("h1", _) => ("h1 raw", h1_once(port, &mut rng, material)),
                        (_, 0) => ("h2 raw frames", h2_raw_once(port, &mut rng, material)),
                        _ => ("h2 client", h2_once(port, &mut rng, material)),
                    };
                    let mut t = tally.lock().unwrap();
                    let e = t.entry(name).or_default();
                    e.0 += 1;
                    e.1 += u64::from(answered);
                }
            });
        }
    });
    eprintln!(
        "fuzz: (sent, answered) per kind: {:?}",
        tally.lock().unwrap()
    );

    // Let in-flight requests end (Envoy waits for bodies that never come until the client is gone).
    thread::sleep(Duration::from_millis(500));
    assert!(envoy.running(), "Envoy exited");
    let failures = envoy.wasm_failures();
    assert!(
        failures.is_empty(),
        "Envoy's log shows the filter failing (seed {seed}):\n{}",
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    let stats = envoy.stats("(wasmcustom|http.ingress.downstream_rq_)");
    let c = |name: &str| -> u64 {
        stats
            .get(&format!("wasmcustom.{P}_{name}"))
            .copied()
            .unwrap_or(0)
    };
    let downstream = stats
        .get("http.ingress.downstream_rq_total")
        .copied()
        .unwrap_or(0);
    let requests = c("requests");
    eprintln!(
        "fuzz: Envoy {downstream} requests (http1 {:?}, http2 {:?}), filter {requests}, denied {}, upstream {}",
        stats.get("http.ingress.downstream_rq_http1_total"),
        stats.get("http.ingress.downstream_rq_http2_total"),
        c("denied"),
        echo.requests()
    );
    assert!(requests > 0, "the filter saw requests");
    assert!(
        requests <= downstream,
        "the filter saw {requests} requests, Envoy only {downstream}"
    );
    assert!(
        echo.requests() as u64 <= requests,
        "every request the upstream got ({}) passed the filter ({requests})",
        echo.requests()
    );
    assert!(c("denied") <= requests);
    assert!(c("jwt_allowed") + c("jwt_denied") <= requests);
    assert!(c("schema_validated") <= requests);
    for key in ["downstream_rq_http1_total", "downstream_rq_http2_total"] {
        assert!(
            stats
                .get(&format!("http.ingress.{key}"))
                .is_some_and(|n| *n > 0),
            "{key}: {stats:?}"
        );
    }

    // Envoy still answers over both protocols, and every clean request is counted exactly once.
    for proto in Proto::ALL {
        let r = common::send(proto, envoy.port, &Req::get("/open/after"))
            .unwrap_or_else(|e| panic!("Envoy no longer answers over {}: {e}", proto.name()));
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    let before = envoy.counter(&format!("{P}_requests"));
    for proto in Proto::ALL {
        for _ in 0..20 {
            let req = Req::post("/orders", br#"{"qty":2}"#)
                .header("content-type", "application/json")
                .header("authorization", &format!("Bearer {}", material.token));
            let r = common::send(proto, envoy.port, &req).unwrap();
            assert_eq!(r.status, 200, "{}", r.describe());
        }
    }
    assert_eq!(envoy.counter(&format!("{P}_requests")), before + 40);
    assert!(envoy.running());
}
