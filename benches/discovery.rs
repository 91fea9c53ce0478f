//! Discovery cost per request: observations per second for representative requests (headers only,
//! small JSON bodies, GraphQL, gRPC), the cost of a flush of a full table, and the memory of the
//! table at its cap (estimated from the capacities it holds).
//!
//! Run: `cargo bench --bench discovery`

#![allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark code: a panic aborts the run"
)]

use apiguard::discovery::event::Source;
use apiguard::discovery::observe::{Observation, Side};
use apiguard::discovery::{compile, Discovery, DiscoveryWorker};
use apiguard::reader::Node;
use apiguard::request::Request;
use serde_json::{json, Value};
use std::time::Instant;

const JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic3ViIjoiMTIzNDUiLCJhdWQiOiJwZXRzdG9yZSIsImV4cCI6MTkwMDAwMDAwMH0.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU";

fn discovery() -> Discovery {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/conformance/openapi/swagger-petstore-v3.openapi.json"
    ))
    .expect("petstore");
    let petstore: Value = serde_json::from_str(&text).expect("json");
    let doc = json!({
        "collector": {"cluster": "collector", "uri": "http://collector/v1/apiguard"},
        "declared_openapi": petstore,
        "retired_prefixes": ["/api/v2/"]
    });
    compile(&Node::root(&doc)).expect("config")
}

fn headers(list: &[(&str, &str)]) -> Request {
    Request::of(list)
}

struct Case {
    name: &'static str,
    request: Request,
    request_body: Option<&'static str>,
    response: Request,
    response_body: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    let bearer = format!("Bearer {JWT}");
    let base = |path: &'static str, method: &'static str| {
        vec![
            (":method", method),
            (":path", path),
            (":authority", "petstore.example.com"),
            (":scheme", "https"),
            ("user-agent", "bench/1.0"),
            ("accept", "application/json"),
            ("x-request-id", "7f6c1c1e-0b7a-4c53-9d1f-0d2b7a3c9e11"),
        ]
    };
    let json_response = headers(&[
        (":status", "200"),
        ("content-type", "application/json"),
        ("content-length", "96"),
        ("strict-transport-security", "max-age=31536000"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("server", "envoy"),
    ]);
    let mut rest_jwt = base("/api/v3/pet/12345?fields=name,status", "GET");
    rest_jwt.push(("authorization", &bearer));
    let mut graphql = base("/graphql", "POST");
    graphql.push(("content-type", "application/json"));
    let mut grpc = base("/helloworld.Greeter/SayHello", "POST");
    grpc.push(("content-type", "application/grpc"));
    vec![
        Case {
            name: "REST GET, JWT, declared (headers only)",
            request: headers(&rest_jwt),
            request_body: None,
            response: json_response.clone(),
            response_body: None,
        },
        Case {
            name: "REST GET, shadow path, no credentials",
            request: headers(&base(
                "/internal/users/3fa85f64-5717-4562-b3fc-2c963f66afa6/orders/2024-01-02",
                "GET",
            )),
            request_body: None,
            response: json_response.clone(),
            response_body: None,
        },
        Case {
            name: "REST GET + 100 B JSON response shape",
            request: headers(&rest_jwt),
            request_body: None,
            response: json_response.clone(),
            response_body: Some(
                r#"{"id":12345,"name":"rex","status":"available","tags":[{"id":1,"name":"good"}],"category":{"id":2}}"#,
            ),
        },
        Case {
            name: "GraphQL POST (body classified + shape)",
            request: headers(&graphql),
            request_body: Some(
                r#"{"query":"query GetPet($id: ID!) { pet(id: $id) { id name owner { email } } }","operationName":"GetPet","variables":{"id":"12345"}}"#,
            ),
            response: json_response.clone(),
            response_body: None,
        },
        Case {
            name: "gRPC unary (headers only)",
            request: headers(&grpc),
            request_body: None,
            response: headers(&[(":status", "200"), ("content-type", "application/grpc")]),
            response_body: None,
        },
    ]
}

fn observe(d: &Discovery, c: &Case) -> Observation {
    let mut obs = Observation::request(d, &c.request);
    if let Some(b) = c.request_body {
        obs.request_body(d, b.as_bytes(), true);
    }
    obs.response(d, &c.response);
    if let Some(b) = c.response_body {
        obs.response_body(d, b.as_bytes(), true);
    }
    obs.add_data_classes(Side::Response, &["email"]);
    obs
}

fn source() -> Source {
    Source {
        plugin: "apiguard".into(),
        worker: "bench".into(),
        node: None,
    }
}

/// Nanoseconds this thread has run on a CPU (Linux `schedstat`): on a shared, loaded machine wall
/// time also counts the time other processes held the CPU. Falls back to wall time.
fn cpu_ns(wall: Instant) -> u128 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| wall.elapsed().as_nanos())
}

fn main() {
    let d = discovery();
    const ROUNDS: usize = 5;
    const N: u64 = 200_000;
    println!("| case | observations/s, one core (best of {ROUNDS}) | CPU ns per observation |");
    println!("|---|---:|---:|");
    for case in cases() {
        let mut best = f64::MAX;
        for _ in 0..ROUNDS {
            let mut w = DiscoveryWorker::new(&d, source(), 0);
            let wall = Instant::now();
            let start = cpu_ns(wall);
            for i in 0..N {
                let obs = observe(&d, &case);
                w.record(&d, obs, i / 1000);
            }
            let per = (cpu_ns(wall) - start) as f64 / N as f64;
            best = best.min(per);
            std::hint::black_box(w.stats());
        }
        println!("| {} | {:.0} | {:.0} |", case.name, 1e9 / best, best);
    }

    // A full table: 1000 distinct endpoints with shapes, then one flush (encode + queue).
    let all = cases();
    let fill = |w: &mut DiscoveryWorker| {
        for i in 0..1000u64 {
            let case = &all[(i % all.len() as u64) as usize];
            let mut obs = observe(&d, case);
            obs.template = format!("/bench/endpoint{}", char::from(b'a' + (i % 26) as u8))
                + &"x".repeat((i / 26) as usize);
            w.record(&d, obs, 1);
        }
    };
    let mut w = DiscoveryWorker::new(&d, source(), 0);
    fill(&mut w);
    let s = w.stats();
    println!();
    println!(
        "table at cap: {} endpoints, {} KiB heap (estimate; {} B per endpoint)",
        s.endpoints_tracked,
        s.table_bytes / 1024,
        s.table_bytes / s.endpoints_tracked.max(1)
    );
    let mut best = f64::MAX;
    let mut batches = 0;
    let mut bytes = 0;
    for _ in 0..ROUNDS {
        let mut w = DiscoveryWorker::new(&d, source(), 0);
        fill(&mut w);
        let wall = Instant::now();
        let start = cpu_ns(wall);
        batches = w.flush(&d, 5_000);
        best = best.min((cpu_ns(wall) - start) as f64 / 1e6);
        bytes = w.stats().delivery.queued_bytes;
    }
    println!(
        "flush of a full table: {best:.2} ms, {batches} batches, {} KiB queued",
        bytes / 1024
    );
}
