//! Rate-limit decisions per second against an in-memory shared store (Envoy's shared data without
//! its lock and hostcall cost), plus API-key and authorization checks for scale.
//!
//! Run: `cargo bench --bench ratelimit`

use apiguard::apikey::{self, digest_hex};
use apiguard::authz::{self, Caller};
use apiguard::ratelimit::{self, RateLimits, RequestFacts, Seed};
use apiguard::reader::Node;
use apiguard::request::Request;
use apiguard::store::memory::MemoryStore;
use serde_json::{json, Map, Value};
use std::hint::black_box;
use std::time::Instant;

const ROUNDS: usize = 5;
const OPS: usize = 200_000;
const NOW_MS: u64 = 1_700_000_000_000;

struct Facts {
    claims: Map<String, Value>,
}

impl RequestFacts for Facts {
    fn claims(&self) -> Option<&Map<String, Value>> {
        Some(&self.claims)
    }
    fn api_key_name(&self) -> Option<&str> {
        None
    }
    fn header(&self, _: &str) -> Option<&str> {
        None
    }
    fn source_address(&self) -> Option<&str> {
        Some("10.0.0.1:4000")
    }
    fn path_template(&self) -> &str {
        "/orders/{id}"
    }
    fn method(&self) -> &str {
        "GET"
    }
}

fn limits(doc: Value) -> RateLimits {
    match ratelimit::compile(&Node::root(&doc), "apiguard") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bad bench config: {e}");
            std::process::exit(1);
        }
    }
}

fn users(n: usize) -> Vec<Facts> {
    (0..n)
        .map(|i| Facts {
            claims: json!({"sub": format!("user-{i:05}")})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        })
        .collect()
}

/// Median ns per operation over [`ROUNDS`] rounds of `ops` operations.
fn measure(ops: usize, mut op: impl FnMut(usize) -> bool) -> (f64, usize) {
    let mut per_op = Vec::with_capacity(ROUNDS);
    let mut passed = 0;
    for round in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..ops {
            if black_box(op(round * ops + i)) {
                passed += 1;
            }
        }
        per_op.push(start.elapsed().as_nanos() as f64 / ops as f64);
    }
    per_op.sort_by(f64::total_cmp);
    (per_op.get(ROUNDS / 2).copied().unwrap_or(f64::NAN), passed)
}

fn row(name: &str, (ns, passed): (f64, usize), total: usize) {
    println!(
        "{name:<58} {ns:>10.0} {:>14.0} {:>9.1}%",
        1e9 / ns,
        100.0 * passed as f64 / total as f64
    );
}

#[allow(
    clippy::indexing_slicing,
    reason = "indexes vectors the benchmark built itself, never empty"
)]
fn main() {
    println!(
        "{:<58} {:>10} {:>14} {:>10}",
        "scenario", "ns/op", "ops/s", "allowed"
    );
    let never_denies =
        json!({"requests": 1_000_000_000u64, "period": "1s", "key": [{"jwt_claim": "sub"}]});
    let total = ROUNDS * OPS;
    let seed = Seed(0x5eed, 0xcafe);

    // 1 key.
    let l = limits(json!({"p": never_denies}));
    let store = MemoryStore::default();
    let one = users(1);
    row(
        "rate limit, 1 key, never denies",
        measure(OPS, |i| {
            l.check(
                &[0],
                "r",
                &one[0],
                &store,
                &seed,
                NOW_MS + (i / 1000) as u64,
            )
            .refusal
            .is_none()
        }),
        total,
    );

    // 10,000 keys, table large enough.
    let mut p = never_denies.clone();
    if let Some(o) = p.as_object_mut() {
        o.insert("max_keys".into(), json!(20_000));
    }
    let l = limits(json!({ "p": p }));
    let store = MemoryStore::default();
    let many = users(10_000);
    row(
        "rate limit, 10,000 keys (max_keys 20,000), never denies",
        measure(OPS, |i| {
            l.check(&[0], "r", &many[i % many.len()], &store, &seed, NOW_MS)
                .refusal
                .is_none()
        }),
        total,
    );

    // 10,000 keys in the default table of 10,000 (some overflow).
    let l = limits(json!({ "p": never_denies }));
    let store = MemoryStore::default();
    row(
        "rate limit, 10,000 keys (max_keys 10,000), never denies",
        measure(OPS, |i| {
            l.check(&[0], "r", &many[i % many.len()], &store, &seed, NOW_MS)
                .refusal
                .is_none()
        }),
        total,
    );

    // A limit that refuses most requests (refusals write nothing).
    let l = limits(json!({"p": {"requests": 10, "period": "60s", "key": [{"jwt_claim": "sub"}]}}));
    let store = MemoryStore::default();
    row(
        "rate limit, 1 key, over its limit (10/min)",
        measure(OPS, |_| {
            l.check(&[0], "r", &one[0], &store, &seed, NOW_MS)
                .refusal
                .is_none()
        }),
        total,
    );

    // Two policies: peek both, then take both.
    let mut global = never_denies.clone();
    if let Some(o) = global.as_object_mut() {
        o.insert("scope".into(), json!("shared"));
        o.insert("key".into(), json!([]));
    }
    let l = limits(json!({"per_user": never_denies, "global": global}));
    let store = MemoryStore::default();
    row(
        "rate limit, 2 policies (per user + global), 10,000 keys",
        measure(OPS, |i| {
            l.check(&[0, 1], "r", &many[i % many.len()], &store, &seed, NOW_MS)
                .refusal
                .is_none()
        }),
        total,
    );

    // API key: SHA-256 of the presented key and a map lookup.
    let key = "k3y-0123456789abcdef0123456789abcdef";
    let doc =
        json!({"partners": {"keys": [{"name": "acme", "sha256": digest_hex(key.as_bytes())}]}});
    let sets = match apikey::compile(&Node::root(&doc)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bad bench config: {e}");
            std::process::exit(1);
        }
    };
    let req = Request::of(&[("x-api-key", key)]);
    row(
        "api key, valid (40-byte key)",
        measure(OPS, |_| sets.sets[0].authenticate(&req).is_ok()),
        total,
    );

    // Authorization.
    let rule = json!({"all": [{"scopes": ["orders:read"]}, {"any": [{"roles": ["admin"]}, {"claim": {"name": "tenant", "equals": "acme"}}]}]});
    let a = match authz::compile(&Node::root(&rule)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bad bench config: {e}");
            std::process::exit(1);
        }
    };
    let claims = json!({"sub": "alice", "scope": "openid profile orders:read orders:write", "roles": ["user"], "tenant": "acme"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let caller = Caller {
        claims: Some(&claims),
        api_key: None,
    };
    row(
        "authz, all(scopes, any(roles, claim)), allowed",
        measure(OPS, |_| a.evaluate(&caller).is_ok()),
        total,
    );
}
