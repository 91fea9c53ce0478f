//! Helpers shared by the discovery integration tests.
#![allow(dead_code, reason = "each test file uses a part of the helpers")]
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a panic fails the test"
)]

use apiguard::discovery::delivery::Outcome;
use apiguard::discovery::event::Source;
use apiguard::discovery::observe::{Observation, Side};
use apiguard::discovery::{compile, Discovery, DiscoveryWorker};
use apiguard::reader::Node;
use apiguard::request::Request;
use serde_json::{json, Value};

pub fn conformance(path: &str) -> String {
    let full = format!(
        "{}/../shared/conformance/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

pub fn petstore() -> Value {
    serde_json::from_str(&conformance("openapi/swagger-petstore-v3.openapi.json")).unwrap()
}

/// A `discovery` section with a collector, plus `extra` members.
pub fn discovery(extra: Value) -> Discovery {
    let mut doc =
        json!({"collector": {"cluster": "collector", "uri": "http://collector/v1/apiguard"}});
    if let (Some(d), Value::Object(e)) = (doc.as_object_mut(), extra) {
        d.extend(e);
    }
    compile(&Node::root(&doc)).unwrap()
}

pub fn source() -> Source {
    Source {
        plugin: "apiguard".into(),
        worker: "worker-1".into(),
        node: Some("sidecar~10.0.0.1~app.default".into()),
    }
}

/// One request/response exchange as the host would feed it.
pub struct Exchange<'a> {
    pub request: Vec<(&'a str, &'a str)>,
    pub request_body: Option<&'a str>,
    pub response: Vec<(&'a str, &'a str)>,
    pub response_body: Option<&'a str>,
    pub response_classes: Vec<&'a str>,
}

impl<'a> Exchange<'a> {
    pub fn get(path: &'a str) -> Exchange<'a> {
        Exchange {
            request: vec![
                (":method", "GET"),
                (":path", path),
                (":authority", "petstore.example.com"),
                (":scheme", "https"),
            ],
            request_body: None,
            response: vec![(":status", "200"), ("content-type", "application/json")],
            response_body: None,
            response_classes: Vec::new(),
        }
    }

    pub fn method(mut self, m: &'a str) -> Self {
        if let Some(slot) = self.request.iter_mut().find(|(k, _)| *k == ":method") {
            slot.1 = m;
        }
        self
    }

    pub fn header(mut self, k: &'a str, v: &'a str) -> Self {
        self.request.retain(|(name, _)| *name != k);
        self.request.push((k, v));
        self
    }

    pub fn body(mut self, content_type: &'a str, body: &'a str) -> Self {
        self.request.push(("content-type", content_type));
        self.request_body = Some(body);
        self
    }

    pub fn status(mut self, s: &'a str) -> Self {
        self.response[0] = (":status", s);
        self
    }

    pub fn response_header(mut self, k: &'a str, v: &'a str) -> Self {
        self.response.retain(|(name, _)| *name != k);
        self.response.push((k, v));
        self
    }

    pub fn response_body(mut self, body: &'a str) -> Self {
        self.response_body = Some(body);
        self
    }

    pub fn classes(mut self, classes: &[&'a str]) -> Self {
        self.response_classes = classes.to_vec();
        self
    }

    pub fn observe(&self, d: &Discovery) -> Observation {
        let mut obs = Observation::request(d, &Request::of(&self.request));
        if let Some(b) = self.request_body {
            obs.request_body(d, b.as_bytes(), true);
        }
        obs.response(d, &Request::of(&self.response));
        if let Some(b) = self.response_body {
            obs.response_body(d, b.as_bytes(), true);
        }
        obs.add_data_classes(Side::Response, &self.response_classes);
        obs
    }
}

/// Plays a collector that answers 200 until the worker has nothing more to send; returns the
/// parsed batches.
pub fn deliver_all(worker: &mut DiscoveryWorker, d: &Discovery, now_ms: u64) -> Vec<Value> {
    let first = worker.next_call(now_ms);
    deliver_from(worker, d, first, now_ms)
}

/// As [`deliver_all`], for a call already started (by `tick`).
pub fn deliver_from(
    worker: &mut DiscoveryWorker,
    d: &Discovery,
    first: Option<u64>,
    now_ms: u64,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next = first;
    while let Some(id) = next {
        let call = worker.callout(d, id).unwrap();
        assert_eq!(call.cluster, "collector");
        out.push(serde_json::from_slice(call.body).unwrap());
        worker.finish_call(id, Outcome::Status(200), now_ms);
        next = worker.next_call(now_ms);
    }
    out
}

/// Every endpoint entry of the given batches.
pub fn endpoints(batches: &[Value]) -> Vec<Value> {
    batches
        .iter()
        .flat_map(|b| b["endpoints"].as_array().cloned().unwrap_or_default())
        .collect()
}
