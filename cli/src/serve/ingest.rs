//! Ingest: turns one HTTP body into validated batches. Two formats arrive:
//! - the apiguard batch document (`docs/events.md`), validated against `docs/events.schema.json`
//!   with the filter's own JSON Schema validator;
//! - OTLP/HTTP logs (`ExportLogsServiceRequest`) in JSON or protobuf, as an OpenTelemetry
//!   Collector forwards the filter's `"encoding": "otlp"` batches. Each resource's
//!   `apiguard.discovery` scope becomes one apiguard batch again (the batch record's attributes give
//!   the header, each endpoint record's `body` the endpoint), which is then validated the same way.
//!
//! Nothing here panics on input: sizes are capped before parsing, nesting is pre-scanned, and
//! every failure is a [`Reject`] that says why.

use apiguard::discovery::event::{Source, OTLP_BATCH_EVENT, OTLP_ENDPOINT_EVENT, OTLP_SCOPE};
use apiguard::schema::validate::{parse_body, Verdict};
use apiguard::schema::{Draft, Limits, Options, Rejection, Schema};
use serde_json::{Map, Value};

/// The batch format's JSON Schema, compiled into the binary (the one the filter's tests use).
const EVENTS_SCHEMA: &str = include_str!("../../../docs/events.schema.json");

/// Endpoints accepted in one batch (the filter sends at most `max_endpoints`, ≤ 100000, per
/// window, split into parts of `max_batch_bytes`).
pub const MAX_ENDPOINTS_PER_BATCH: usize = 20_000;
/// Nesting accepted in a body (shapes are at most 4 deep by default, 16 at most in the filter).
pub const MAX_DEPTH: usize = 64;

/// Why a body was refused (400, or 413 for `TooLarge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub message: String,
}

impl Reject {
    pub fn bad(message: impl Into<String>) -> Reject {
        Reject {
            status: 400,
            message: message.into(),
        }
    }
}

/// One validated batch.
#[derive(Debug, Clone)]
pub struct Batch {
    pub source: Source,
    pub window_start_ms: u64,
    pub window_end_ms: u64,
    pub part_index: u64,
    pub part_count: u64,
    /// Validated endpoint entries, as the batch document writes them.
    pub endpoints: Vec<Value>,
}

impl Batch {
    /// What identifies this batch for its proxy: a retry of the same window part carries the same
    /// key, a new window or another worker a new one.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}-{}|{}/{}",
            self.source.plugin,
            self.source.node.as_deref().unwrap_or("-"),
            self.source.worker,
            self.window_start_ms,
            self.window_end_ms,
            self.part_index,
            self.part_count
        )
    }

    /// The proxy as the inventory names it: Envoy's node id, or the worker's plugin name.
    pub fn proxy_name(&self, token_name: &str) -> String {
        match &self.source.node {
            Some(node) => format!("{token_name}/{node}"),
            None => token_name.to_string(),
        }
    }
}

/// The compiled batch schema.
pub struct Validator {
    schema: Schema,
    limits: Limits,
}

impl Validator {
    pub fn new(max_body_bytes: usize) -> Result<Validator, String> {
        let doc: Value = serde_json::from_str(EVENTS_SCHEMA).map_err(|e| e.to_string())?;
        let schema = Schema::compile(&doc, Options::new(Draft::Draft2020))
            .map_err(|e| format!("docs/events.schema.json: {e:?}"))?;
        Ok(Validator {
            schema,
            limits: Limits {
                max_body_bytes,
                max_depth: MAX_DEPTH,
                max_errors: 5,
            },
        })
    }

    fn parse(&self, body: &[u8]) -> Result<Value, Reject> {
        parse_body(body, &self.limits).map_err(refusal)
    }

    /// Checks one batch document and reads its header.
    pub fn batch(&self, doc: Value) -> Result<Batch, Reject> {
        let verdict = self.schema.validate(&doc, self.limits.max_errors);
        self.read_batch(doc, verdict)
    }

    /// Reads a batch document that the schema judged (`verdict`).
    fn read_batch(&self, mut doc: Value, verdict: Verdict) -> Result<Batch, Reject> {
        if let Err((violations, _)) = verdict {
            let list: Vec<String> = violations
                .iter()
                .map(|v| {
                    let at = if v.pointer.is_empty() {
                        "/"
                    } else {
                        &v.pointer
                    };
                    if v.keyword == "required" {
                        format!("{at} is missing")
                    } else {
                        format!("{at} fails `{}`", v.keyword)
                    }
                })
                .collect();
            return Err(Reject::bad(format!(
                "not an apiguard batch (docs/events.schema.json): {}",
                list.join("; ")
            )));
        }
        let u = |p: &str| doc.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        let s = |p: &str| doc.pointer(p).and_then(Value::as_str).map(str::to_string);
        let batch = Batch {
            source: Source {
                plugin: s("/source/plugin").unwrap_or_default(),
                worker: s("/source/worker").unwrap_or_default(),
                node: s("/source/node"),
            },
            window_start_ms: u("/window/start_ms"),
            window_end_ms: u("/window/end_ms"),
            part_index: u("/part/index"),
            part_count: u("/part/count"),
            // Moved out of the document, not copied.
            endpoints: match doc.get_mut("endpoints").map(Value::take) {
                Some(Value::Array(list)) => list,
                _ => Vec::new(),
            },
        };
        if batch.window_end_ms < batch.window_start_ms {
            return Err(Reject::bad("/window: end_ms is before start_ms"));
        }
        if batch.part_index >= batch.part_count {
            return Err(Reject::bad("/part: index must be below count"));
        }
        if batch.endpoints.len() > MAX_ENDPOINTS_PER_BATCH {
            return Err(Reject::bad(format!(
                "/endpoints: {} entries, at most {MAX_ENDPOINTS_PER_BATCH} per batch",
                batch.endpoints.len()
            )));
        }
        for (i, e) in batch.endpoints.iter().enumerate() {
            let first = e.get("first_seen_ms").and_then(Value::as_u64).unwrap_or(0);
            let last = e.get("last_seen_ms").and_then(Value::as_u64).unwrap_or(0);
            if last < first {
                return Err(Reject::bad(format!(
                    "/endpoints/{i}: last_seen_ms is before first_seen_ms"
                )));
            }
        }
        Ok(batch)
    }

    /// An apiguard batch document (`application/json`).
    pub fn apiguard(&self, body: &[u8]) -> Result<Batch, Reject> {
        // One pass of the tape judges the body as sent, instead of re-serialising the parsed tree.
        let (doc, verdict) = self
            .schema
            .parse_and_validate(body, &self.limits)
            .map_err(refusal)?;
        self.read_batch(doc, verdict)
    }

    /// OTLP/HTTP JSON logs: the batches inside, and how many log records were refused (with the
    /// first reason), for `partial_success`.
    pub fn otlp_json(&self, body: &[u8]) -> Result<Otlp, Reject> {
        let doc = self.parse(body)?;
        self.otlp(&doc)
    }

    /// OTLP/HTTP protobuf logs (decoded into the JSON mapping first, see [`super::otlp_pb`]).
    pub fn otlp_protobuf(&self, body: &[u8]) -> Result<Otlp, Reject> {
        if body.len() > self.limits.max_body_bytes {
            return Err(Reject {
                status: 413,
                message: format!("body larger than {} bytes", self.limits.max_body_bytes),
            });
        }
        let doc = super::otlp_pb::decode_logs_request(body)
            .map_err(|e| Reject::bad(format!("not an OTLP ExportLogsServiceRequest: {e}")))?;
        self.otlp(&doc)
    }

    fn otlp(&self, doc: &Value) -> Result<Otlp, Reject> {
        let Some(resources) = doc.get("resourceLogs").and_then(Value::as_array) else {
            return Err(Reject::bad(
                "not an OTLP ExportLogsServiceRequest: no resourceLogs array",
            ));
        };
        let mut out = Otlp::default();
        for (r, resource) in resources.iter().enumerate() {
            let attrs = attributes(resource.pointer("/resource/attributes"));
            let scopes = resource
                .get("scopeLogs")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for (s, scope) in scopes.iter().enumerate() {
                let records = scope
                    .get("logRecords")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let name = scope.pointer("/scope/name").and_then(Value::as_str);
                if name != Some(OTLP_SCOPE) {
                    out.reject(
                        records.len(),
                        format!("/resourceLogs/{r}/scopeLogs/{s}: scope is not {OTLP_SCOPE}"),
                    );
                    continue;
                }
                match batch_document(&attrs, records) {
                    Ok(doc) => match self.batch(doc) {
                        Ok(b) => out.batches.push(b),
                        Err(e) => out.reject(
                            records.len(),
                            format!("/resourceLogs/{r}/scopeLogs/{s}: {}", e.message),
                        ),
                    },
                    Err(e) => out.reject(
                        records.len(),
                        format!("/resourceLogs/{r}/scopeLogs/{s}: {e}"),
                    ),
                }
            }
        }
        if out.batches.is_empty() && out.rejected > 0 {
            return Err(Reject::bad(out.error.unwrap_or_default()));
        }
        Ok(out)
    }
}

/// What an OTLP request carried.
#[derive(Debug, Default)]
pub struct Otlp {
    pub batches: Vec<Batch>,
    /// Log records refused (for `partial_success.rejectedLogRecords`).
    pub rejected: usize,
    /// The first reason.
    pub error: Option<String>,
}

impl Otlp {
    fn reject(&mut self, records: usize, why: String) {
        self.rejected += records.max(1);
        self.error.get_or_insert(why);
    }
}

/// `[{key, value: AnyValue}]` as a JSON object.
fn attributes(list: Option<&Value>) -> Map<String, Value> {
    let mut m = Map::new();
    for kv in list.and_then(Value::as_array).into_iter().flatten() {
        if let Some(k) = kv.get("key").and_then(Value::as_str) {
            m.insert(k.to_string(), from_any(kv.get("value")));
        }
    }
    m
}

/// An OTLP `AnyValue` as plain JSON (the inverse of the filter's `event::any_value`): integers
/// come back from their decimal strings.
pub fn from_any(v: Option<&Value>) -> Value {
    let Some(Value::Object(m)) = v else {
        return Value::Null;
    };
    if let Some(s) = m.get("stringValue") {
        return s.clone();
    }
    if let Some(b) = m.get("boolValue") {
        return b.clone();
    }
    if let Some(i) = m.get("intValue") {
        return match i {
            Value::String(s) => s
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::String(s.clone())),
            other => other.clone(),
        };
    }
    if let Some(d) = m.get("doubleValue") {
        return d.clone();
    }
    if let Some(a) = m.get("arrayValue") {
        let values = a.get("values").and_then(Value::as_array);
        return Value::Array(
            values
                .into_iter()
                .flatten()
                .map(Some)
                .map(from_any)
                .collect(),
        );
    }
    if let Some(kv) = m.get("kvlistValue") {
        return Value::Object(attributes(kv.get("values")));
    }
    Value::Null
}

/// Members the OTLP encoding leaves out when they are null.
const NULLABLE_ENDPOINT: &[&str] = &["operation", "request_shape", "response_shape"];

/// The apiguard batch document one OTLP scope carries.
fn batch_document(resource: &Map<String, Value>, records: &[Value]) -> Result<Value, String> {
    let mut header: Option<Map<String, Value>> = None;
    let mut endpoints = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let attrs = attributes(record.get("attributes"));
        match attrs.get("event.name").and_then(Value::as_str) {
            Some(OTLP_BATCH_EVENT) => {
                let mut h = Map::new();
                for (k, v) in attrs {
                    if let Some(name) = k.strip_prefix("apiguard.") {
                        h.insert(name.to_string(), v);
                    }
                }
                header = Some(h);
            }
            Some(OTLP_ENDPOINT_EVENT) => {
                let mut body = from_any(record.get("body"));
                let Some(obj) = body.as_object_mut() else {
                    return Err(format!("logRecords/{i}: body is not a kvlistValue"));
                };
                for name in NULLABLE_ENDPOINT {
                    obj.entry(*name).or_insert(Value::Null);
                }
                endpoints.push(body);
            }
            _ => return Err(format!("logRecords/{i}: not an apiguard discovery event")),
        }
    }
    let mut doc = header.ok_or("no apiguard.discovery.batch record")?;
    doc.entry("overflow").or_insert(Value::Null);
    let mut source = Map::new();
    for (from, to) in [
        ("service.name", "plugin"),
        ("apiguard.worker", "worker"),
        ("service.instance.id", "node"),
    ] {
        if let Some(v) = resource.get(from) {
            source.insert(to.into(), v.clone());
        }
    }
    doc.insert("source".into(), Value::Object(source));
    doc.insert("endpoints".into(), Value::Array(endpoints));
    Ok(Value::Object(doc))
}

/// A body the schema module refuses before any schema (too large, too deep, not JSON...), as a
/// rejection that says why.
fn refusal(r: Rejection) -> Reject {
    Reject {
        status: r.status(),
        message: r
            .problem()
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or(r.reason())
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn endpoint(path: &str) -> Value {
        json!({"host": "petstore", "method": "GET", "path_template": path,
            "template_source": "inferred", "api_type": "rest", "operation": null,
            "declaration": "unknown", "count": 2, "first_seen_ms": 1000, "last_seen_ms": 2000,
            "status": {"1xx": 0, "2xx": 2, "3xx": 0, "4xx": 0, "5xx": 0, "none": 0},
            "request_bytes_max": 0, "response_bytes_max": 10, "query_params": [],
            "request_content_types": [], "response_content_types": ["application/json"],
            "auth": ["none"], "jwt_issuers": [], "data_classes": {"request": [], "response": []},
            "findings": ["no_authentication"], "request_shape": null,
            "response_shape": {"type": ["object"], "properties": {"id": {"type": ["integer"]}}}})
    }

    fn batch() -> Value {
        json!({"schema_version": 1, "source": {"plugin": "apiguard", "worker": "1"},
            "window": {"start_ms": 1000, "end_ms": 6000}, "part": {"index": 0, "count": 1},
            "sample_rate": 1.0, "endpoints": [endpoint("/pet/{id}")], "overflow": null,
            "overflowed": 0, "dropped": 0, "dropped_endpoints": 0})
    }

    #[test]
    fn a_valid_batch_is_read_and_an_invalid_one_says_why() {
        let v = Validator::new(1 << 20).unwrap();
        let b = v.apiguard(batch().to_string().as_bytes()).unwrap();
        assert_eq!(b.endpoints.len(), 1);
        assert_eq!(b.key(), "apiguard|-|1|1000-6000|0/1");
        let mut bad = batch();
        bad["endpoints"][0]["count"] = json!(0);
        let e = v.apiguard(bad.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("/endpoints/0/count"), "{}", e.message);
        let e = v.apiguard(b"{\"schema_version\": 1,").unwrap_err();
        assert!(e.message.contains("line"), "{}", e.message);
        let small = Validator::new(100).unwrap();
        assert_eq!(
            small
                .apiguard(batch().to_string().as_bytes())
                .unwrap_err()
                .status,
            413
        );
        let mut part = batch();
        part["part"] = json!({"index": 1, "count": 1});
        assert!(v.apiguard(part.to_string().as_bytes()).is_err());
    }

    #[test]
    fn otlp_json_carries_the_same_batch() {
        use apiguard::discovery::event::any_value;
        let b = batch();
        let record = json!({"timeUnixNano": "2000000000", "body": any_value(&b["endpoints"][0]),
            "attributes": [{"key": "event.name", "value": {"stringValue": OTLP_ENDPOINT_EVENT}}]});
        let head = json!({"body": {"stringValue": "x"}, "attributes": [
            {"key": "event.name", "value": {"stringValue": OTLP_BATCH_EVENT}},
            {"key": "apiguard.schema_version", "value": any_value(&json!(1))},
            {"key": "apiguard.window", "value": any_value(&b["window"])},
            {"key": "apiguard.part", "value": any_value(&b["part"])},
            {"key": "apiguard.sample_rate", "value": any_value(&json!(1.0))},
            {"key": "apiguard.overflowed", "value": any_value(&json!(0))},
            {"key": "apiguard.dropped", "value": any_value(&json!(0))},
            {"key": "apiguard.dropped_endpoints", "value": any_value(&json!(0))}]});
        let doc = json!({"resourceLogs": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "apiguard"}},
            {"key": "apiguard.worker", "value": {"stringValue": "1"}}]},
            "scopeLogs": [{"scope": {"name": OTLP_SCOPE}, "logRecords": [head, record]},
                          {"scope": {"name": "other"}, "logRecords": [{}]}]}]});
        let v = Validator::new(1 << 20).unwrap();
        let out = v.otlp_json(doc.to_string().as_bytes()).unwrap();
        assert_eq!(out.batches.len(), 1);
        assert_eq!(
            out.batches[0].endpoints,
            b["endpoints"].as_array().unwrap().clone()
        );
        assert_eq!(out.rejected, 1);
        assert!(out.error.unwrap().contains("scope is not"));
    }
}
