//! Spec work: the reconstructed OpenAPI 3.1 document of a service, and the declared-vs-observed
//! verdicts (shadow, zombie, unused, drift) against declared documents compiled by the filter's own
//! [`DeclaredApi`] (the same matching as in the proxy: canonical paths, case-sensitive templates,
//! most literal segments first, HEAD declared by GET).

use super::merge::strs;
use super::merge::template_key;
use apiguard::discovery::declared::{verdict, DeclaredApi, DeclaredOperation, RetiredPrefixes};
use apiguard::discovery::template::normalise;
use apiguard::reader::Node;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A declared document for one service (`*`: every service without one of its own).
pub struct Declared {
    pub service: String,
    pub document: Value,
    pub api: DeclaredApi,
    pub operations: Vec<DeclaredOperation>,
}

impl Declared {
    pub fn compile(
        service: &str,
        document: Value,
        base_paths: Option<&[String]>,
    ) -> Result<Declared, String> {
        let api = DeclaredApi::compile(&Node::root(&document), base_paths)
            .map_err(|e| format!("{}: {}", e.path, e.message))?;
        let operations = api.operations();
        Ok(Declared {
            service: service.to_string(),
            document,
            api,
            operations,
        })
    }
}

/// Every declared document and the retired prefixes, as the service knows them now.
#[derive(Default)]
pub struct Catalogue {
    pub declared: Vec<Declared>,
    pub retired: RetiredPrefixes,
}

/// The verdict of one observed endpoint, with the declared operation it fell under.
pub struct Judged<'a> {
    pub verdict: &'static str,
    pub declared: Option<(&'a Declared, &'a DeclaredOperation)>,
}

impl Catalogue {
    pub fn for_service(&self, service: &str) -> Option<&Declared> {
        self.declared
            .iter()
            .find(|d| d.service == service)
            .or_else(|| self.declared.iter().find(|d| d.service == "*"))
    }

    /// Judges an endpoint record: against the service's declared document when there is one,
    /// else by what the proxies reported (zombie over shadow over declared over unknown).
    pub fn judge(&self, record: &Map<String, Value>) -> Judged<'_> {
        let s = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or("");
        let path = normalise(s("path_template"));
        let Some(d) = self.for_service(s("host")) else {
            let reported: Vec<&str> = strs(record.get("reported_declarations")).collect();
            let v = if self.retired.matches(&path) {
                "zombie"
            } else {
                ["zombie", "shadow", "declared"]
                    .into_iter()
                    .find(|v| reported.contains(v))
                    .unwrap_or("unknown")
            };
            return Judged {
                verdict: v,
                declared: None,
            };
        };
        let method = s("method");
        let found = d.api.lookup(method, &path);
        let v = verdict(Some(&d.api), &self.retired, &path, found.as_ref()).as_str();
        let op = found.as_ref().filter(|m| m.method_declared).and_then(|m| {
            d.operations.iter().find(|o| {
                o.template == m.template
                    && (o.method == method || (method == "HEAD" && o.method == "GET"))
            })
        });
        Judged {
            verdict: v,
            declared: op.map(|o| (d, o)),
        }
    }

    /// Declared operations of `service` with no endpoint seen since `since_ms`.
    pub fn unused(
        &self,
        records: &[(i64, Map<String, Value>)],
        since_ms: u64,
    ) -> Vec<(String, DeclaredOperation)> {
        let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
        for (_, r) in records {
            let last = r.get("last_seen_ms").and_then(Value::as_u64).unwrap_or(0);
            if last < since_ms {
                continue;
            }
            if let Judged {
                declared: Some((d, op)),
                ..
            } = self.judge(r)
            {
                seen.insert((d.service.clone(), op.template.clone(), op.method.clone()));
            }
        }
        let mut out = Vec::new();
        for d in &self.declared {
            for op in &d.operations {
                if !seen.contains(&(d.service.clone(), op.template.clone(), op.method.clone())) {
                    out.push((d.service.clone(), op.clone()));
                }
            }
        }
        out
    }
}

/// Follows local `$ref`s (`#/components/...`), at most 8 hops.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..8 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with("#/") => match doc.pointer(&r[1..]) {
                Some(t) => v = t,
                None => return v,
            },
            _ => return v,
        }
    }
    v
}

fn property_names(doc: &Value, schema: Option<&Value>) -> Option<BTreeSet<String>> {
    let s = resolve(doc, schema?);
    let mut names = BTreeSet::new();
    let mut any = false;
    for part in std::iter::once(s).chain(
        ["allOf", "oneOf", "anyOf"]
            .iter()
            .filter_map(|k| s.get(*k).and_then(Value::as_array))
            .flatten()
            .map(|x| resolve(doc, x)),
    ) {
        if let Some(p) = part.get("properties").and_then(Value::as_object) {
            any = true;
            names.extend(p.keys().cloned());
        }
        if part
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
        {
            return None;
        }
    }
    any.then_some(names)
}

fn shape_members(record: &Map<String, Value>, name: &str) -> Vec<String> {
    record
        .get(name)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Drift of a declared endpoint: what it was seen to carry that its operation does not declare.
/// Each item: (kind, name), kind `query_parameter`, `request_field` or `response_field`.
pub fn drift(
    record: &Map<String, Value>,
    d: &Declared,
    op: &DeclaredOperation,
) -> Vec<(&'static str, String)> {
    let doc = &d.document;
    let Some(item) = doc.get("paths").and_then(|p| p.get(&op.path)) else {
        return Vec::new();
    };
    let Some(operation) = item.get(op.method.to_ascii_lowercase()) else {
        return Vec::new();
    };
    let mut declared_query = BTreeSet::new();
    for p in [item.get("parameters"), operation.get("parameters")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
    {
        let p = resolve(doc, p);
        if p.get("in").and_then(Value::as_str) == Some("query") {
            if let Some(n) = p.get("name").and_then(Value::as_str) {
                declared_query.insert(n.to_string());
            }
        }
    }
    let mut out = Vec::new();
    for q in strs(record.get("query_params")) {
        if !declared_query.contains(q) {
            out.push(("query_parameter", q.to_string()));
        }
    }
    let body = operation
        .get("requestBody")
        .map(|b| resolve(doc, b))
        .and_then(|b| b.pointer("/content/application~1json/schema"));
    if let Some(names) = property_names(doc, body) {
        for m in shape_members(record, "request_shape") {
            if !names.contains(&m) {
                out.push(("request_field", m));
            }
        }
    }
    let mut response_names: Option<BTreeSet<String>> = None;
    for (code, resp) in operation
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !code.starts_with('2') {
            continue;
        }
        let resp = resolve(doc, resp);
        if let Some(names) = property_names(doc, resp.pointer("/content/application~1json/schema"))
        {
            response_names
                .get_or_insert_with(BTreeSet::new)
                .extend(names);
        }
    }
    if let Some(names) = response_names {
        for m in shape_members(record, "response_shape") {
            if !names.contains(&m) {
                out.push(("response_field", m));
            }
        }
    }
    out
}

/// A body shape as a JSON Schema 2020-12 schema (the dialect of OpenAPI 3.1).
pub fn shape_schema(shape: &Value) -> Value {
    let mut m = Map::new();
    let types: Vec<Value> = shape
        .get("type")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match types.as_slice() {
        [] => {}
        [one] => {
            m.insert("type".into(), one.clone());
        }
        _ => {
            m.insert("type".into(), Value::Array(types));
        }
    }
    if let Some(props) = shape.get("properties").and_then(Value::as_object) {
        let p: Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.clone(), shape_schema(v)))
            .collect();
        m.insert("properties".into(), Value::Object(p));
    }
    if let Some(items) = shape.get("items") {
        m.insert("items".into(), shape_schema(items));
    }
    Value::Object(m)
}

const OPENAPI_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `/a/{id}/b/{id}` → (`/a/{id}/b/{id_2}`, [id, id_2]): path parameter names unique per path.
fn unique_params(template: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut names: Vec<String> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..open]);
        let raw = &rest[open + 1..close];
        let base = if raw.is_empty() { "param" } else { raw };
        let mut name = base.to_string();
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        out.push('{');
        out.push_str(&name);
        out.push('}');
        names.push(name);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    (out, names)
}

fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json")
}

fn content(types: Option<&Value>, shape: Option<&Value>) -> Map<String, Value> {
    let mut c = Map::new();
    for t in strs(types) {
        let media = if t == "other" {
            "application/octet-stream"
        } else {
            t
        };
        let schema = match shape.filter(|s| !s.is_null()) {
            Some(s) if is_json(media) => shape_schema(s),
            _ => json!({}),
        };
        c.insert(media.to_string(), json!({ "schema": schema }));
    }
    if c.is_empty() {
        if let Some(s) = shape.filter(|s| !s.is_null()) {
            c.insert(
                "application/json".into(),
                json!({ "schema": shape_schema(s) }),
            );
        }
    }
    c
}

fn operation(record: &Map<String, Value>, params: &[String], op_id: String) -> Value {
    let mut parameters: Vec<Value> = params
        .iter()
        .map(|n| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    for q in strs(record.get("query_params")) {
        parameters.push(json!({"name": q, "in": "query", "required": false, "schema": {}}));
    }
    let mut op = Map::new();
    op.insert("operationId".into(), op_id.into());
    let api_type = record
        .get("api_type")
        .and_then(Value::as_str)
        .unwrap_or("rest");
    op.insert(
        "summary".into(),
        format!(
            "Observed {} endpoint ({} requests)",
            api_type,
            record.get("count").and_then(Value::as_u64).unwrap_or(0)
        )
        .into(),
    );
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    let req = content(
        record.get("request_content_types"),
        record.get("request_shape"),
    );
    if !req.is_empty() {
        op.insert("requestBody".into(), json!({ "content": req }));
    }
    let mut responses = Map::new();
    for (class, n) in record
        .get("status")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if n.as_u64().unwrap_or(0) == 0 || class == "none" {
            continue;
        }
        let code = class.to_ascii_uppercase();
        let mut r = Map::new();
        r.insert(
            "description".into(),
            format!("{code} responses observed").into(),
        );
        if code == "2XX" {
            let c = content(
                record.get("response_content_types"),
                record.get("response_shape"),
            );
            if !c.is_empty() {
                r.insert("content".into(), Value::Object(c));
            }
        }
        responses.insert(code, Value::Object(r));
    }
    if responses.is_empty() {
        responses.insert(
            "default".into(),
            json!({"description": "no response observed"}),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    let auth: Vec<&str> = strs(record.get("auth")).collect();
    op.insert("x-apiguard-api-type".into(), api_type.into());
    op.insert("x-apiguard-auth".into(), json!(auth));
    if let Some(o) = record.get("operation").filter(|o| !o.is_null()) {
        op.insert("x-apiguard-operation".into(), o.clone());
    }
    Value::Object(op)
}

/// The reconstructed OpenAPI 3.1 document of `service` from its endpoint records.
pub fn reconstruct(service: &str, records: &[(i64, Map<String, Value>)]) -> Value {
    // One path per template key; the best-ranked spelling names it (see merge.rs).
    let mut paths: BTreeMap<String, (String, Map<String, Value>)> = BTreeMap::new();
    for (_, r) in records {
        if r.get("host").and_then(Value::as_str) != Some(service) {
            continue;
        }
        let template = r
            .get("path_template")
            .and_then(Value::as_str)
            .unwrap_or("/");
        if !template.starts_with('/') {
            continue;
        }
        let method = r
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        if !OPENAPI_METHODS.contains(&method.as_str()) {
            continue;
        }
        let key = template_key(template);
        let entry = paths
            .entry(key)
            .or_insert_with(|| (template.to_string(), Map::new()));
        if template.contains('{')
            && r.get("template_source").and_then(Value::as_str) == Some("declared")
        {
            entry.0 = template.to_string();
        }
        if entry.1.contains_key(&method) {
            continue;
        }
        entry.1.insert(method, Value::Object(r.clone()));
    }
    let mut out = Map::new();
    for (_, (template, methods)) in paths {
        let (path, params) = unique_params(&template);
        let mut item = Map::new();
        for (method, record) in methods {
            if let Value::Object(r) = record {
                let id = format!(
                    "{method}{}",
                    path.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                );
                item.insert(method, operation(&r, &params, id));
            }
        }
        out.insert(path, Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("{service} (observed by apiguard)"),
            "version": "observed",
            "description": "Reconstructed by `apiguard serve` from discovery events: templates, parameters, media types and body shapes that were really seen. Names and types only, never values."
        },
        "paths": out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_placeholders_get_unique_names() {
        assert_eq!(
            unique_params("/a/{id}/b/{id}/{x}.{ext}"),
            (
                "/a/{id}/b/{id_2}/{x}.{ext}".to_string(),
                vec!["id".into(), "id_2".into(), "x".into(), "ext".into()]
            )
        );
    }

    #[test]
    fn shapes_become_schemas() {
        let s = json!({"type": ["object"], "truncated": true, "properties": {
            "id": {"type": ["integer", "null"]}, "tags": {"type": ["array"], "items": {"type": ["string"]}}}});
        assert_eq!(
            shape_schema(&s),
            json!({"type": "object", "properties": {"id": {"type": ["integer", "null"]},
                "tags": {"type": "array", "items": {"type": "string"}}}})
        );
    }
}
