//! Bounded memory: a client sending a million distinct paths cannot grow a worker's table beyond
//! `max_endpoints`; the excess folds into the overflow entry and is counted, and every observation
//! is accounted for.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic fails the test"
)]

mod discovery_common;

use apiguard::discovery::observe::Observation;
use apiguard::discovery::DiscoveryWorker;
use apiguard::request::Request;
use discovery_common::*;
use serde_json::json;

/// A path segment made of letters only, so that templating cannot fold it.
fn word(mut i: u64) -> String {
    let mut s = String::from("w");
    loop {
        s.push(char::from(b'a' + (i % 26) as u8));
        i /= 26;
        if i == 0 {
            return s;
        }
    }
}

#[test]
fn a_million_distinct_paths_stay_within_the_cap() {
    const CAP: usize = 1000;
    const REQUESTS: u64 = 1_000_000;
    let d = discovery(
        json!({"max_endpoints": CAP, "max_queue_bytes": 4_194_304, "max_batch_bytes": 262_144}),
    );
    let mut w = DiscoveryWorker::new(&d, source(), 0);
    // The host's header lists, reused: only `:path` changes from one request to the next.
    let mut request = Request::of(&Exchange::get("/").request);
    let response = Request::of(&[(":status", "404"), ("content-type", "text/html")]);
    let mut received = Vec::new();
    let mut max_tracked = 0;
    let mut path = String::from("/flood/");
    for i in 0..REQUESTS {
        // 100 requests per millisecond: 100,000 new paths a second against a cap of 1,000.
        let now = i / 100;
        path.truncate("/flood/".len());
        path.push_str(&word(i));
        request.headers_mut().replace(":path", path.as_bytes());
        let mut obs = Observation::request(&d, &request);
        obs.response(&d, &response);
        w.record(&d, obs, now);
        max_tracked = max_tracked.max(w.endpoints_tracked());
        if i % 10_000 == 0 {
            let started = w.tick(&d, now);
            received.extend(deliver_from(&mut w, &d, started, now));
        }
    }
    let end = REQUESTS / 100;
    w.flush(&d, end);
    received.extend(deliver_all(&mut w, &d, end));
    let s = w.stats();
    assert!(max_tracked <= CAP, "{max_tracked}");
    assert!(
        s.table_bytes > 0 && s.table_bytes < 4 << 20,
        "{}",
        s.table_bytes
    );
    assert!(s.overflowed > 0);
    assert_eq!(
        s.delivery.batches_dropped, 0,
        "the collector took everything"
    );
    // Every observation is in exactly one endpoint count or one overflow count.
    let in_endpoints: u64 = endpoints(&received)
        .iter()
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    let in_overflow: u64 = received
        .iter()
        .map(|b| b["overflowed"].as_u64().unwrap())
        .sum();
    assert_eq!(in_overflow, s.overflowed);
    assert_eq!(in_endpoints + in_overflow, REQUESTS);
    for b in &received {
        assert!(b["endpoints"].as_array().unwrap().len() <= CAP);
        if let Some(o) = b["overflow"].as_object() {
            assert_eq!(o["count"], b["overflowed"]);
        }
    }
}

#[test]
fn numeric_ids_fold_into_one_endpoint() {
    let d = discovery(json!({"max_endpoints": 10}));
    let mut w = DiscoveryWorker::new(&d, source(), 0);
    for i in 0..10_000u64 {
        let path = format!("/users/{i}/orders/{}", i * 7919);
        w.record(&d, Exchange::get(&path).observe(&d), 1);
    }
    assert_eq!(w.stats().endpoints_tracked, 1);
    assert_eq!(w.stats().overflowed, 0);
}
