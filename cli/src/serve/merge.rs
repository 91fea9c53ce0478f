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

/// What identifies an endpoint record: (service, method, template key, API type, operation).
pub type Key = (String, String, String, String, String);

/// The key of an endpoint entry: (service, method, template key, API type, operation).
pub fn key(e: &Value) -> Key {
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

fn u(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

/// Members copied from the first entry (the key and how it is spelled).
const HEAD: &[&str] = &[
    "host",
    "method",
    "path_template",
    "template_source",
    "api_type",
    "carried_api_type",
    "operation",
];

/// A merged endpoint record, typed: what the writer keeps in memory between batches, so that a
/// merge touches counters and sets instead of JSON values, and shapes stay parsed. Its JSON form
/// ([`Record::to_json`]) is what the store keeps and the API shows.
#[derive(Debug, Clone, Default)]
pub struct Record {
    head: Map<String, Value>,
    count: u64,
    first_seen_ms: u64,
    last_seen_ms: u64,
    request_bytes_max: u64,
    response_bytes_max: u64,
    status: std::collections::BTreeMap<String, u64>,
    lists: [std::collections::BTreeSet<String>; 6],
    request_classes: std::collections::BTreeSet<String>,
    response_classes: std::collections::BTreeSet<String>,
    reported_declarations: std::collections::BTreeSet<String>,
    proxies: std::collections::BTreeSet<String>,
    request_shape: Option<Shape>,
    response_shape: Option<Shape>,
}

fn add_all<'a>(
    set: &mut std::collections::BTreeSet<String>,
    items: impl Iterator<Item = &'a str>,
    max: usize,
) {
    for item in items {
        if set.len() < max && !set.contains(item) {
            set.insert(item.to_string());
        }
    }
}

/// `from` added to `set`, while `set` has fewer than `max` (strings moved, not copied).
fn union(
    set: &mut std::collections::BTreeSet<String>,
    from: std::collections::BTreeSet<String>,
    max: usize,
) {
    for item in from {
        if set.len() >= max {
            return;
        }
        set.insert(item);
    }
}

/// The strings of an array member (none when it is missing or not an array).
pub(super) fn strs(v: Option<&Value>) -> impl Iterator<Item = &str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn merge_shape_into(slot: &mut Option<Shape>, from: Option<&Value>) {
    let Some(new) = from
        .filter(|v| !v.is_null())
        .and_then(|v| Shape::from_json(v, SHAPE_LIMITS))
    else {
        return;
    };
    match slot {
        Some(old) => old.merge(&new, SHAPE_LIMITS),
        None => *slot = Some(new),
    }
}

/// Writes one JSON object into a buffer, member by member.
struct ObjWriter {
    out: Vec<u8>,
    first: bool,
}

impl ObjWriter {
    fn open(mut out: Vec<u8>) -> ObjWriter {
        out.push(b'{');
        ObjWriter { out, first: true }
    }
    fn close(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        let _ = serde_json::to_writer(&mut self.out, k);
        self.out.push(b':');
    }
    fn value(&mut self, k: &str, v: &Value) {
        self.key(k);
        let _ = serde_json::to_writer(&mut self.out, v);
    }
    fn num(&mut self, k: &str, n: u64) {
        use std::io::Write;
        self.key(k);
        let _ = write!(self.out, "{n}");
    }
    fn set(&mut self, k: &str, set: &std::collections::BTreeSet<String>) {
        self.key(k);
        self.out.push(b'[');
        for (i, item) in set.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            let _ = serde_json::to_writer(&mut self.out, item);
        }
        self.out.push(b']');
    }
}

impl Record {
    /// A new record from a batch entry, seen by `proxy`.
    pub fn new(e: &Value, proxy: &str) -> Record {
        let mut r = Record::default();
        for name in HEAD {
            if let Some(v) = e.get(*name) {
                r.head.insert((*name).to_string(), v.clone());
            }
        }
        r.first_seen_ms = u(e.get("first_seen_ms"));
        r.merge(e, proxy);
        r
    }

    /// Reads a stored record back.
    pub fn from_json(m: &Map<String, Value>) -> Record {
        let mut r = Record::default();
        for name in HEAD {
            if let Some(v) = m.get(*name) {
                r.head.insert((*name).to_string(), v.clone());
            }
        }
        r.count = u(m.get("count"));
        r.first_seen_ms = u(m.get("first_seen_ms"));
        r.last_seen_ms = u(m.get("last_seen_ms"));
        r.request_bytes_max = u(m.get("request_bytes_max"));
        r.response_bytes_max = u(m.get("response_bytes_max"));
        for (class, n) in m
            .get("status")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            r.status.insert(class.clone(), n.as_u64().unwrap_or(0));
        }
        for (set, name) in r.lists.iter_mut().zip(LISTS) {
            add_all(set, strs(m.get(*name)), usize::MAX);
        }
        add_all(
            &mut r.response_classes,
            strs(m.get("data_classes").and_then(|d| d.get("response"))),
            usize::MAX,
        );
        add_all(
            &mut r.request_classes,
            strs(m.get("data_classes").and_then(|d| d.get("request"))),
            usize::MAX,
        );
        add_all(
            &mut r.reported_declarations,
            strs(m.get("reported_declarations")),
            usize::MAX,
        );
        add_all(&mut r.proxies, strs(m.get("proxies")), usize::MAX);
        r.request_shape = m
            .get("request_shape")
            .and_then(|v| Shape::from_json(v, SHAPE_LIMITS));
        r.response_shape = m
            .get("response_shape")
            .and_then(|v| Shape::from_json(v, SHAPE_LIMITS));
        r
    }

    /// Folds one batch entry into the record.
    pub fn merge(&mut self, e: &Value, proxy: &str) {
        if rank(e.get("template_source").and_then(Value::as_str))
            > rank(self.head.get("template_source").and_then(Value::as_str))
        {
            for name in ["path_template", "template_source"] {
                if let Some(v) = e.get(name) {
                    self.head.insert(name.to_string(), v.clone());
                }
            }
        }
        self.count = self.count.saturating_add(u(e.get("count")));
        self.first_seen_ms = self.first_seen_ms.min(u(e.get("first_seen_ms")));
        self.last_seen_ms = self.last_seen_ms.max(u(e.get("last_seen_ms")));
        self.request_bytes_max = self.request_bytes_max.max(u(e.get("request_bytes_max")));
        self.response_bytes_max = self.response_bytes_max.max(u(e.get("response_bytes_max")));
        for (class, n) in e
            .get("status")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let slot = self.status.entry(class.clone()).or_insert(0);
            *slot = slot.saturating_add(n.as_u64().unwrap_or(0));
        }
        for (set, name) in self.lists.iter_mut().zip(LISTS) {
            add_all(set, strs(e.get(*name)), MAX_LIST);
        }
        let classes = e.get("data_classes");
        add_all(
            &mut self.request_classes,
            strs(classes.and_then(|c| c.get("request"))),
            MAX_LIST,
        );
        add_all(
            &mut self.response_classes,
            strs(classes.and_then(|c| c.get("response"))),
            MAX_LIST,
        );
        if let Some(d) = e.get("declaration").and_then(Value::as_str) {
            add_all(&mut self.reported_declarations, std::iter::once(d), 8);
        }
        add_all(&mut self.proxies, std::iter::once(proxy), MAX_PROXIES);
        merge_shape_into(&mut self.request_shape, e.get("request_shape"));
        merge_shape_into(&mut self.response_shape, e.get("response_shape"));
    }

    /// Folds another record of the same key into this one: the same as merging, one by one, the
    /// entries `other` was made of (with [`Record::new`] and [`Record::merge`]). The HTTP workers
    /// turn each batch entry into a record ([`Record::new`]), so the single writer merges typed
    /// records and never parses an entry or a shape, nor drops a JSON tree.
    pub fn merge_record(&mut self, other: Record) {
        if rank(other.head.get("template_source").and_then(Value::as_str))
            > rank(self.head.get("template_source").and_then(Value::as_str))
        {
            for name in ["path_template", "template_source"] {
                if let Some(v) = other.head.get(name) {
                    self.head.insert(name.to_string(), v.clone());
                }
            }
        }
        self.count = self.count.saturating_add(other.count);
        self.first_seen_ms = self.first_seen_ms.min(other.first_seen_ms);
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        self.request_bytes_max = self.request_bytes_max.max(other.request_bytes_max);
        self.response_bytes_max = self.response_bytes_max.max(other.response_bytes_max);
        for (class, n) in other.status {
            let slot = self.status.entry(class).or_insert(0);
            *slot = slot.saturating_add(n);
        }
        for (set, from) in self.lists.iter_mut().zip(other.lists) {
            union(set, from, MAX_LIST);
        }
        union(&mut self.request_classes, other.request_classes, MAX_LIST);
        union(&mut self.response_classes, other.response_classes, MAX_LIST);
        union(
            &mut self.reported_declarations,
            other.reported_declarations,
            8,
        );
        union(&mut self.proxies, other.proxies, MAX_PROXIES);
        for (slot, new) in [
            (&mut self.request_shape, other.request_shape),
            (&mut self.response_shape, other.response_shape),
        ] {
            match (slot.as_mut(), new) {
                (Some(old), Some(new)) => old.merge(&new, SHAPE_LIMITS),
                (None, Some(new)) => *slot = Some(new),
                (_, None) => {}
            }
        }
    }

    pub fn first_seen_ms(&self) -> u64 {
        self.first_seen_ms
    }

    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms
    }

    /// The JSON form, as text: the entry's members, merged, plus `proxies` and
    /// `reported_declarations`. Written directly (no map is built): what the writer stores for
    /// every record a commit touched, and what the API shows.
    pub fn to_json_text(&self) -> String {
        let mut w = ObjWriter::open(Vec::with_capacity(2048));
        for (k, v) in &self.head {
            w.value(k, v);
        }
        w.num("count", self.count);
        w.num("first_seen_ms", self.first_seen_ms);
        w.num("last_seen_ms", self.last_seen_ms);
        w.num("request_bytes_max", self.request_bytes_max);
        w.num("response_bytes_max", self.response_bytes_max);
        w.key("status");
        let mut status = ObjWriter::open(w.out);
        for (class, n) in &self.status {
            status.num(class, *n);
        }
        w.out = status.close();
        for (set, name) in self.lists.iter().zip(LISTS) {
            w.set(name, set);
        }
        w.key("data_classes");
        let mut classes = ObjWriter::open(w.out);
        classes.set("request", &self.request_classes);
        classes.set("response", &self.response_classes);
        w.out = classes.close();
        w.set("reported_declarations", &self.reported_declarations);
        w.set("proxies", &self.proxies);
        for (name, shape) in [
            ("request_shape", &self.request_shape),
            ("response_shape", &self.response_shape),
        ] {
            match shape {
                Some(shape) => w.value(name, &shape.to_json()),
                None => w.value(name, &Value::Null),
            }
        }
        // Only valid UTF-8 was written (every string through serde_json).
        String::from_utf8(w.close()).unwrap_or_default()
    }
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
        let mut rec = Record::new(&a, "p1");
        rec.merge(&b, "p2");
        // Records made from each entry and merged (what the writer does) are the same.
        for (x, px, y, py) in [(&a, "p1", &b, "p2"), (&b, "p2", &a, "p1")] {
            let mut one = Record::new(x, px);
            one.merge(y, py);
            let mut two = Record::new(x, px);
            two.merge_record(Record::new(y, py));
            assert_eq!(one.to_json_text(), two.to_json_text());
        }
        let json =
            |r: &Record| -> Map<String, Value> { serde_json::from_str(&r.to_json_text()).unwrap() };
        let empty = Value::Object(json(&Record::default()));
        assert_eq!(empty["count"], 0);
        assert_eq!(
            empty["data_classes"],
            json!({"request": [], "response": []})
        );
        assert_eq!(empty["response_shape"], Value::Null);
        // Through its stored form and back: nothing is lost.
        let rec = Record::from_json(&json(&rec));
        assert_eq!(
            rec.to_json_text(),
            Record::from_json(&json(&rec)).to_json_text()
        );
        let r = Value::Object(json(&rec));
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
