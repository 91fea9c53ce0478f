//! Batches for the collector: the versioned apiguard JSON document (`docs/events.md`,
//! `docs/events.schema.json`) or the same events as OTLP/HTTP JSON logs for an OpenTelemetry
//! Collector (`resourceLogs` → `scopeLogs` → `logRecords`, one log record per endpoint plus one
//! per batch).
//!
//! A window larger than `max_batch_bytes` is split into parts (`part.index` of `part.count`); the
//! window-wide members (`overflow`, `overflowed`) travel in part 0 only.

use super::classify::{ApiType, Operation};
use super::inventory::{Drained, EndpointKey, EndpointStats, OverflowStats, StatusHistogram};
use serde_json::{json, Map, Value};

/// Version of the batch document; bumped on any incompatible change.
pub const SCHEMA_VERSION: u64 = 1;
/// OTLP scope name and the `event.name` attribute values.
pub const OTLP_SCOPE: &str = "apiguard.discovery";
pub const OTLP_ENDPOINT_EVENT: &str = "apiguard.discovery.endpoint";
pub const OTLP_BATCH_EVENT: &str = "apiguard.discovery.batch";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The apiguard batch document (`application/json`).
    Apiguard,
    /// OTLP/HTTP JSON logs (`application/json`, to `/v1/logs`).
    Otlp,
}

/// Who sends the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The plugin's configured name (`apiguard` by default).
    pub plugin: String,
    /// Identifies the worker VM within its Envoy (chosen by the host).
    pub worker: String,
    /// Envoy's node id, when the host knows it.
    pub node: Option<String>,
}

/// Counters carried by every batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Batches this worker dropped since it started (collector down or slow past the queue cap,
    /// rejected, or out of attempts).
    pub dropped_batches: u64,
    /// Endpoint entries in those batches.
    pub dropped_endpoints: u64,
}

/// One encoded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    pub body: Vec<u8>,
    /// Endpoint entries inside (for drop accounting).
    pub endpoints: u64,
}

pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
}

fn operation_json(op: &Operation) -> Value {
    let mut m = Map::new();
    if let Some(k) = op.kind {
        m.insert("kind".into(), k.into());
    }
    if let Some(s) = &op.service {
        m.insert("service".into(), s.as_str().into());
    }
    if let Some(n) = &op.name {
        m.insert("name".into(), n.as_str().into());
    }
    Value::Object(m)
}

fn status_json(h: &StatusHistogram) -> Value {
    // Inserts rather than `collect()` (no sort copy for this map; see discovery::shape::node_json).
    let mut m = Map::new();
    for (label, n) in StatusHistogram::LABELS.iter().zip(h.0) {
        m.insert((*label).to_string(), Value::from(n));
    }
    Value::Object(m)
}

/// One endpoint entry of the batch document.
pub fn endpoint_json(key: &EndpointKey, s: &EndpointStats) -> Value {
    let mut endpoint = json!({
        "host": key.host,
        "method": key.method,
        "path_template": key.template,
        "template_source": s.template_source.as_str(),
        "api_type": key.api_type.as_str(),
        "operation": key.operation.as_ref().map(operation_json),
        "declaration": s.declaration.as_str(),
        "count": s.count,
        "first_seen_ms": s.first_seen_ms,
        "last_seen_ms": s.last_seen_ms,
        "status": status_json(&s.status),
        "request_bytes_max": s.request_bytes_max,
        "response_bytes_max": s.response_bytes_max,
        "query_params": s.query_params,
        "request_content_types": s.request_content_types,
        "response_content_types": s.response_content_types,
        "auth": s.auth.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "jwt_issuers": s.issuers,
        "data_classes": {"request": s.request_classes, "response": s.response_classes},
        "findings": s.findings.iter().map(|f| f.code()).collect::<Vec<_>>(),
        "request_shape": s.request_shape.as_ref().map(|x| x.to_json()),
        "response_shape": s.response_shape.as_ref().map(|x| x.to_json()),
    });
    // Present only when the endpoint carries a second API type (GraphQL over WebSocket).
    if let (Some(carried), Some(obj)) = (key.carried, endpoint.as_object_mut()) {
        obj.insert("carried_api_type".into(), ApiType::as_str(carried).into());
    }
    endpoint
}

fn overflow_json(o: &OverflowStats) -> Value {
    json!({
        "count": o.count,
        "first_seen_ms": o.first_seen_ms,
        "last_seen_ms": o.last_seen_ms,
        "status": status_json(&o.status),
        "request_bytes_max": o.request_bytes_max,
        "response_bytes_max": o.response_bytes_max,
    })
}

fn source_json(source: &Source) -> Value {
    let mut m = Map::new();
    m.insert("plugin".into(), source.plugin.as_str().into());
    m.insert("worker".into(), source.worker.as_str().into());
    if let Some(node) = &source.node {
        m.insert("node".into(), node.as_str().into());
    }
    Value::Object(m)
}

/// The header of part `index` of `count` (everything but `endpoints`).
fn header_json(
    source: &Source,
    window: &Window,
    sample_rate: f64,
    counters: Counters,
    overflow: Option<&OverflowStats>,
    index: usize,
    count: usize,
) -> Map<String, Value> {
    let first = index == 0;
    let mut m = Map::new();
    m.insert("schema_version".into(), SCHEMA_VERSION.into());
    m.insert("source".into(), source_json(source));
    m.insert(
        "window".into(),
        json!({"start_ms": window.start_ms, "end_ms": window.end_ms}),
    );
    m.insert("part".into(), json!({"index": index, "count": count}));
    m.insert("sample_rate".into(), json!(sample_rate));
    m.insert(
        "overflow".into(),
        overflow
            .filter(|_| first)
            .map_or(Value::Null, overflow_json),
    );
    m.insert(
        "overflowed".into(),
        overflow.filter(|_| first).map_or(0, |o| o.count).into(),
    );
    m.insert("dropped".into(), counters.dropped_batches.into());
    m.insert(
        "dropped_endpoints".into(),
        counters.dropped_endpoints.into(),
    );
    m
}

/// Encodes a drained window into one or more batches of at most `max_batch_bytes` each (a single
/// endpoint larger than that still travels, alone). An empty window gives no batch.
pub fn encode(
    encoding: Encoding,
    source: &Source,
    window: &Window,
    sample_rate: f64,
    counters: Counters,
    drained: &Drained,
    max_batch_bytes: usize,
) -> Vec<EncodedBatch> {
    if drained.endpoints.is_empty() && drained.overflow.is_none() {
        return Vec::new();
    }
    let items: Vec<String> = drained
        .endpoints
        .iter()
        .map(|(k, s)| {
            let v = endpoint_json(k, s);
            match encoding {
                Encoding::Apiguard => v.to_string(),
                Encoding::Otlp => endpoint_log_record(&v, window).to_string(),
            }
        })
        .collect();
    // Room for the header and the overflow entry, then as many items as fit.
    let reserve = 2048;
    let budget = max_batch_bytes.saturating_sub(reserve).max(1);
    let mut groups: Vec<Vec<&str>> = vec![Vec::new()];
    let mut size = 0usize;
    for item in &items {
        if size + item.len() + 1 > budget && groups.last().is_some_and(|g| !g.is_empty()) {
            groups.push(Vec::new());
            size = 0;
        }
        size += item.len() + 1;
        if let Some(g) = groups.last_mut() {
            g.push(item);
        }
    }
    let count = groups.len();
    groups
        .iter()
        .enumerate()
        .map(|(index, group)| {
            let header = header_json(
                source,
                window,
                sample_rate,
                counters,
                drained.overflow.as_ref(),
                index,
                count,
            );
            let body = match encoding {
                Encoding::Apiguard => splice(&Value::Object(header), "endpoints", group),
                Encoding::Otlp => otlp_document(source, window, &header, group),
            };
            EncodedBatch {
                body: body.into_bytes(),
                endpoints: group.len() as u64,
            }
        })
        .collect()
}

/// `header` with `"name": [items...]` appended, without re-parsing the already encoded items.
fn splice(header: &Value, name: &str, items: &[&str]) -> String {
    let head = header.to_string();
    let open = head.strip_suffix('}').unwrap_or(&head);
    let sep = if open.ends_with('{') { "" } else { "," };
    format!("{open}{sep}\"{name}\":[{}]}}", items.join(","))
}

/// An OTLP `AnyValue` for a JSON value (integers as strings, as the protobuf JSON mapping says).
pub fn any_value(v: &Value) -> Value {
    match v {
        Value::Null => json!({}),
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) => match n.as_i64() {
            Some(i) => json!({"intValue": i.to_string()}),
            None => json!({"doubleValue": n.as_f64().unwrap_or(0.0)}),
        },
        Value::String(s) => json!({"stringValue": s}),
        Value::Array(items) => {
            json!({"arrayValue": {"values": items.iter().map(any_value).collect::<Vec<_>>()}})
        }
        Value::Object(map) => json!({"kvlistValue": {"values": key_values(map)}}),
    }
}

fn key_values(map: &Map<String, Value>) -> Vec<Value> {
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| json!({"key": k, "value": any_value(v)}))
        .collect()
}

fn attr(key: &str, value: Value) -> Value {
    json!({"key": key, "value": any_value(&value)})
}

fn nanos(ms: u64) -> String {
    (u128::from(ms) * 1_000_000).to_string()
}

fn endpoint_log_record(endpoint: &Value, window: &Window) -> Value {
    let get = |k: &str| endpoint.get(k).cloned().unwrap_or(Value::Null);
    let last_seen = endpoint
        .get("last_seen_ms")
        .and_then(Value::as_u64)
        .unwrap_or(window.end_ms);
    json!({
        "timeUnixNano": nanos(last_seen),
        "observedTimeUnixNano": nanos(window.end_ms),
        "severityNumber": 9,
        "severityText": "INFO",
        "body": any_value(endpoint),
        "attributes": [
            attr("event.name", OTLP_ENDPOINT_EVENT.into()),
            attr("http.request.method", get("method")),
            attr("server.address", get("host")),
            attr("url.template", get("path_template")),
            attr("apiguard.api_type", get("api_type")),
            attr("apiguard.declaration", get("declaration")),
            attr("apiguard.count", get("count")),
            attr("apiguard.findings", get("findings")),
        ],
    })
}

fn otlp_document(
    source: &Source,
    window: &Window,
    header: &Map<String, Value>,
    records: &[&str],
) -> String {
    let mut resource = vec![
        attr("service.name", source.plugin.as_str().into()),
        attr("apiguard.worker", source.worker.as_str().into()),
    ];
    if let Some(node) = &source.node {
        resource.push(attr("service.instance.id", node.as_str().into()));
    }
    let batch_attributes: Vec<Value> = std::iter::once(attr("event.name", OTLP_BATCH_EVENT.into()))
        .chain(
            header
                .iter()
                .filter(|(k, v)| *k != "source" && !v.is_null())
                .map(|(k, v)| attr(&format!("apiguard.{k}"), v.clone())),
        )
        .collect();
    let summary = json!({
        "timeUnixNano": nanos(window.end_ms),
        "observedTimeUnixNano": nanos(window.end_ms),
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": "apiguard discovery batch"},
        "attributes": batch_attributes,
    });
    let mut all: Vec<&str> = Vec::with_capacity(records.len() + 1);
    let summary_text = summary.to_string();
    all.push(&summary_text);
    all.extend_from_slice(records);
    let scope = json!({"name": OTLP_SCOPE, "version": SCHEMA_VERSION.to_string()});
    format!(
        "{{\"resourceLogs\":[{{\"resource\":{{\"attributes\":{}}},\"scopeLogs\":[{{\"scope\":{},\"logRecords\":[{}]}}]}}]}}",
        Value::Array(resource),
        scope,
        all.join(",")
    )
}
