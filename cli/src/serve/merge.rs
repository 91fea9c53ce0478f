//! Merging endpoint entries into the inventory: one record per (service, method, template key,
//! API type, operation), whatever proxy or window reported it.
//!
//! - counts and status classes are summed, `first_seen_ms` is the minimum, `last_seen_ms` the
//!   maximum, byte sizes the maximum;
//! - lists (query parameters, media types, auth kinds, issuers, data classes, findings, proxies)
//!   are unions, sorted, bounded ([`MAX_LIST`], [`MAX_PROXIES`]);
//! - body shapes are merged by the filter's own [`Shape::merge`], bounded by [`SHAPE_LIMITS`].
//!
//! **Templates two proxies spell differently.** The key of a template replaces every
//! `{placeholder}` by `{}`: `/pet/{petId}` (a proxy with the declared document) and `/pet/{id}`
//! (a proxy that inferred it) are one endpoint. The template shown is the best source seen:
//! `declared` over `inferred` over `literal`; between equals, the first one stays.

use apiguard::discovery::shape::{Shape, ShapeLimits};
use serde_json::{Map, Value};

pub const MAX_LIST: usize = 64;
pub const MAX_PROXIES: usize = 256;
/// Shapes merged across proxies keep at most this much (the filter's own default is 4 / 32).
pub const SHAPE_LIMITS: ShapeLimits = ShapeLimits {
    max_depth: 8,
    max_members: 256,
};

const LISTS: &[&str] = &[
    "query_params",
    "request_content_types",
    "response_content_types",
    "auth",
    "jwt_issuers",
    "findings",
];

/// The merge key of a template: placeholders are `{}`.
pub fn template_key(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut depth = false;
    for c in template.chars() {
        match c {
            '{' if !depth => {
                depth = true;
                out.push_str("{}");
            }
            '}' if depth => depth = false,
            _ if depth => {}
            _ => out.push(c),
        }
    }
    out
}

/// The key of an endpoint entry: (service, method, template key, API type, operation).
pub fn key(e: &Value) -> (String, String, String, String, String) {
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let operation = match e.get("operation") {
        None | Some(Value::Null) => String::new(),
        Some(op) => op.to_string(),
    };
    (
        s("host"),
        s("method"),
        template_key(&s("path_template")),
        s("api_type"),
        operation,
    )
}

fn rank(source: Option<&str>) -> u8 {
    match source {
        Some("declared") => 3,
        Some("inferred") => 2,
        _ => 1,
    }
}

fn union(into: &mut Map<String, Value>, name: &str, from: Option<&Value>, max: usize) {
    let mut list: Vec<String> = into
        .get(name)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for item in from.and_then(Value::as_array).into_iter().flatten() {
        if let Some(s) = item.as_str() {
            if list.len() < max && !list.iter().any(|x| x == s) {
                list.push(s.to_string());
            }
        }
    }
    list.sort();
    into.insert(
        name.to_string(),
        Value::Array(list.into_iter().map(Value::from).collect()),
    );
}

fn u(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

fn merge_shape(into: &mut Map<String, Value>, name: &str, from: Option<&Value>) {
    let Some(new) = from.filter(|v| !v.is_null()) else {
        into.entry(name).or_insert(Value::Null);
        return;
    };
    let Some(new_shape) = Shape::from_json(new, SHAPE_LIMITS) else {
        return;
    };
    let merged = match into
        .get(name)
        .and_then(|old| Shape::from_json(old, SHAPE_LIMITS))
    {
        Some(mut old) => {
            old.merge(&new_shape, SHAPE_LIMITS);
            old
        }
        None => new_shape,
    };
    into.insert(name.to_string(), merged.to_json());
}

/// A new record from a batch entry, seen by `proxy`.
pub fn new_record(e: &Value, proxy: &str) -> Map<String, Value> {
    let mut m = Map::new();
    for name in [
        "host",
        "method",
        "path_template",
        "template_source",
        "api_type",
        "carried_api_type",
        "operation",
    ] {
        if let Some(v) = e.get(name) {
            m.insert(name.to_string(), v.clone());
        }
    }
    m.insert("count".into(), 0.into());
    m.insert("first_seen_ms".into(), u(e.get("first_seen_ms")).into());
    m.insert("last_seen_ms".into(), 0.into());
    merge_into(&mut m, e, proxy);
    m
}

/// Folds one batch entry into a record.
pub fn merge_into(m: &mut Map<String, Value>, e: &Value, proxy: &str) {
    if rank(e.get("template_source").and_then(Value::as_str))
        > rank(m.get("template_source").and_then(Value::as_str))
    {
        for name in ["path_template", "template_source"] {
            if let Some(v) = e.get(name) {
                m.insert(name.to_string(), v.clone());
            }
        }
    }
    let count = u(m.get("count")).saturating_add(u(e.get("count")));
    m.insert("count".into(), count.into());
    let first = u(m.get("first_seen_ms")).min(u(e.get("first_seen_ms")));
    m.insert("first_seen_ms".into(), first.into());
    let last = u(m.get("last_seen_ms")).max(u(e.get("last_seen_ms")));
    m.insert("last_seen_ms".into(), last.into());
    for name in ["request_bytes_max", "response_bytes_max"] {
        let v = u(m.get(name)).max(u(e.get(name)));
        m.insert(name.into(), v.into());
    }
    let mut status = m
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (class, n) in e
        .get("status")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let sum = u(status.get(class)).saturating_add(n.as_u64().unwrap_or(0));
        status.insert(class.clone(), sum.into());
    }
    m.insert("status".into(), Value::Object(status));
    for name in LISTS {
        union(m, name, e.get(*name), MAX_LIST);
    }
    let mut classes = m
        .get("data_classes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for side in ["request", "response"] {
        union(
            &mut classes,
            side,
            e.pointer(&format!("/data_classes/{side}")),
            MAX_LIST,
        );
    }
    m.insert("data_classes".into(), Value::Object(classes));
    union(
        m,
        "reported_declarations",
        Some(&Value::Array(
            e.get("declaration").into_iter().cloned().collect(),
        )),
        8,
    );
    union(
        m,
        "proxies",
        Some(&Value::Array(vec![Value::from(proxy)])),
        MAX_PROXIES,
    );
    merge_shape(m, "request_shape", e.get("request_shape"));
    merge_shape(m, "response_shape", e.get("response_shape"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_spelled_differently_merge_and_the_declared_spelling_wins() {
        assert_eq!(template_key("/api/v3/pet/{petId}"), "/api/v3/pet/{}");
        assert_eq!(template_key("/pet/{id}"), template_key("/pet/{petId}"));
        assert_eq!(template_key("/f/{name}.{ext}"), "/f/{}.{}");
        let a = json!({"host": "h", "method": "GET", "path_template": "/pet/{id}",
            "template_source": "inferred", "api_type": "rest", "operation": null, "count": 2,
            "first_seen_ms": 50, "last_seen_ms": 60, "status": {"2xx": 2, "4xx": 0},
            "request_bytes_max": 0, "response_bytes_max": 7, "auth": ["none"],
            "query_params": ["q"], "findings": ["no_authentication"], "declaration": "unknown",
            "data_classes": {"request": [], "response": ["email"]},
            "request_shape": null, "response_shape": {"type": ["object"], "properties": {"id": {"type": ["integer"]}}}});
        let b = json!({"host": "h", "method": "GET", "path_template": "/pet/{petId}",
            "template_source": "declared", "api_type": "rest", "operation": null, "count": 3,
            "first_seen_ms": 40, "last_seen_ms": 55, "status": {"2xx": 1, "4xx": 2},
            "request_bytes_max": 0, "response_bytes_max": 9, "auth": ["bearer_jwt"],
            "query_params": [], "findings": [], "declaration": "declared",
            "data_classes": {"request": [], "response": []},
            "request_shape": null, "response_shape": {"type": ["object"], "properties": {"name": {"type": ["string"]}}}});
        assert_eq!(key(&a), key(&b));
        let mut m = new_record(&a, "p1");
        merge_into(&mut m, &b, "p2");
        let r = Value::Object(m);
        assert_eq!(r["path_template"], "/pet/{petId}");
        assert_eq!(r["count"], 5);
        assert_eq!(r["first_seen_ms"], 40);
        assert_eq!(r["last_seen_ms"], 60);
        assert_eq!(r["status"], json!({"2xx": 3, "4xx": 2}));
        assert_eq!(r["response_bytes_max"], 9);
        assert_eq!(r["auth"], json!(["bearer_jwt", "none"]));
        assert_eq!(r["proxies"], json!(["p1", "p2"]));
        assert_eq!(r["reported_declarations"], json!(["declared", "unknown"]));
        assert_eq!(r["data_classes"]["response"], json!(["email"]));
        assert_eq!(
            r["response_shape"]["properties"],
            json!({"id": {"type": ["integer"]}, "name": {"type": ["string"]}})
        );
    }
}
