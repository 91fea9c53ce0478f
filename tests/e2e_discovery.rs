//! API discovery end to end: a real Envoy with two workers sends batches to a collector on loopback;
//! every batch validates against docs/events.schema.json; the collector going down affects no traffic
//! and drops are counted; a flood of distinct paths stays within the table's bound.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use std::time::Duration;

use apiguard::schema::{Draft, Options, Schema};
use common::collector::{Collector, DOWN};
use common::{e2e_paths, Echo, Envoy, EnvoyOpts};
use serde_json::{json, Value};

const P: &str = "apiguard";

fn batch_schema() -> Schema {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/events.schema.json"
    ))
    .unwrap();
    Schema::compile(
        &serde_json::from_str(&text).unwrap(),
        Options::new(Draft::Draft2020),
    )
    .unwrap()
}

fn start(collector: &Collector, discovery: Value) -> Option<(Envoy, Echo)> {
    let paths = e2e_paths()?;
    let echo = Echo::start();
    let config = json!({
        "discovery": discovery,
        "rules": [{"name": "all", "match": {"prefix": "/"}}]
    });
    let envoy = Envoy::start(
        &paths,
        &config.to_string(),
        &EnvoyOpts::new(&echo).collector(collector.port),
    );
    Some((envoy, echo))
}

fn discovery(extra: Value) -> Value {
    let mut d = json!({"collector": {"cluster": "collector", "uri": "http://collector/v1/apiguard", "timeout": "1s",
                                     "retry": {"base_interval": "200ms", "max_interval": "1s"}},
                       "flush_interval": "1s"});
    for (k, v) in extra.as_object().unwrap() {
        d[k] = v.clone();
    }
    d
}

/// Every endpoint of every batch the collector has, as (method, path_template) with counts summed.
fn endpoints(collector: &Collector) -> Vec<(String, String, u64, Value)> {
    let mut all = Vec::new();
    for (_, body) in collector.batches() {
        let batch: Value = serde_json::from_slice(&body).unwrap();
        for e in batch["endpoints"].as_array().unwrap() {
            all.push((
                e["method"].as_str().unwrap().to_string(),
                e["path_template"].as_str().unwrap().to_string(),
                e["count"].as_u64().unwrap(),
                e.clone(),
            ));
        }
    }
    all
}

fn batches_arrive_validate_and_describe_the_traffic_without_values() {
    let collector = Collector::start();
    let Some((envoy, _echo)) = start(&collector, discovery(json!({}))) else {
        return;
    };
    for id in [17, 18, 19] {
        assert_eq!(
            envoy
                .get(&format!("/users/{id}/orders?token=abc&page=2"), &[])
                .status,
            200
        );
    }
    let gql = envoy.request(
        "POST",
        "/graphql",
        &[("content-type", "application/json")],
        br#"{"query": "query GetUser { user(id: 1) { name } }", "operationName": "GetUser"}"#,
    );
    assert_eq!(gql.status, 200);
    let arrived = envoy.eventually(Duration::from_secs(10), |_| {
        let e = endpoints(&collector);
        e.iter()
            .filter(|(_, p, _, _)| p == "/users/{id}/orders")
            .map(|(_, _, c, _)| c)
            .sum::<u64>()
            == 3
            && e.iter().any(|(_, p, _, _)| p == "/graphql")
    });
    assert!(arrived, "batches: {:?}", endpoints(&collector));
    let schema = batch_schema();
    for (content_type, body) in collector.batches() {
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        let batch: Value = serde_json::from_slice(&body).unwrap();
        assert!(schema.is_valid(&batch), "batch does not validate: {batch}");
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("abc"),
            "query values never leave the filter: {text}"
        );
        assert!(!text.contains("/17/"), "raw ids are templated: {text}");
    }
    let gql = endpoints(&collector)
        .into_iter()
        .find(|(_, p, _, _)| p == "/graphql")
        .unwrap()
        .3;
    assert_eq!(gql["api_type"], "graphql", "{gql}");
    let users = endpoints(&collector)
        .into_iter()
        .find(|(_, p, _, _)| p == "/users/{id}/orders")
        .unwrap()
        .3;
    let query: Vec<&str> = users["query_params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(query, vec!["page", "token"]);
    // Counters follow on the next tick after a delivery.
    assert!(envoy.eventually(Duration::from_secs(5), |e| e
        .counter(&format!("{P}_discovery_batches_sent"))
        >= 1));
}

fn a_collector_that_is_down_affects_no_traffic_and_recovery_delivers() {
    let collector = Collector::start();
    collector.set_status(DOWN);
    let Some((envoy, _echo)) = start(&collector, discovery(json!({}))) else {
        return;
    };
    for i in 0..20 {
        let r = envoy.get(&format!("/items/{i}"), &[]);
        assert_eq!(r.status, 200, "traffic is unaffected: {}", r.describe());
    }
    assert!(
        envoy.eventually(Duration::from_secs(10), |e| e
            .counter(&format!("{P}_discovery_attempts_failed"))
            >= 2),
        "failed attempts are counted"
    );
    collector.set_status(503);
    std::thread::sleep(Duration::from_millis(1500));
    collector.set_status(200);
    let total = || -> u64 {
        endpoints(&collector)
            .iter()
            .filter(|(_, p, _, _)| p == "/items/{id}")
            .map(|(_, _, c, _)| c)
            .sum()
    };
    let settled = envoy.eventually(Duration::from_secs(15), |e| {
        total() == 20 || e.counter(&format!("{P}_discovery_batches_dropped")) > 0
    });
    assert!(
        settled,
        "every observation is delivered or its drop counted ({} delivered)",
        total()
    );
}

fn a_flood_of_distinct_paths_stays_within_the_table_bound() {
    let collector = Collector::start();
    let Some((envoy, _echo)) = start(&collector, discovery(json!({"max_endpoints": 20}))) else {
        return;
    };
    // Literal segments that do not look like ids, so that each path is its own endpoint. From 8
    // threads: a full table is flushed early (at most once a second), so the flood must outrun that
    // even on a loaded machine.
    std::thread::scope(|scope| {
        for t in 0..8 {
            let envoy = &envoy;
            scope.spawn(move || {
                for i in (t..400).step_by(8) {
                    let word: String = format!("{i:03}")
                        .chars()
                        .map(|c| (b'a' + (c as u8 - b'0')) as char)
                        .collect();
                    assert_eq!(envoy.get(&format!("/flood/{word}"), &[]).status, 200);
                }
            });
        }
    });
    // Generous: counters move on timer ticks, which lag on a loaded 2-core machine.
    assert!(envoy.eventually(Duration::from_secs(30), |e| e
        .counter(&format!("{P}_discovery_overflowed"))
        > 0));
    let gauge = envoy.stats(&format!("{P}_discovery_endpoints_tracked"));
    let tracked = gauge
        .get(&format!("wasmcustom.{P}_discovery_endpoints_tracked"))
        .copied()
        .unwrap_or(0);
    // Two worker VMs, each with its own table of at most 20 (plus the overflow entry).
    assert!(tracked <= 2 * 21, "endpoints tracked {tracked}");
}

// Each test above without `#[test]` runs twice: `http1::<name>` and `http2::<name>`.
crate::per_protocol!(
    batches_arrive_validate_and_describe_the_traffic_without_values,
    a_collector_that_is_down_affects_no_traffic_and_recovery_delivers,
    a_flood_of_distinct_paths_stays_within_the_table_bound,
);
