//! The JSON API (`/api/v1/...`, documented in `docs/inventory.md`). The page ([`super::page`])
//! renders the same views.

use super::findings;
use super::spec::{drift, reconstruct, Catalogue};
use super::{may_read, now_ms, read_body, Answer, State};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub use super::store::Records;

/// `a=1&b=x%20y` → pairs, percent-decoded (`+` is a space), bounded to 32 pairs.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .take(32)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn load(state: &State) -> Result<Records, Answer> {
    let store = state
        .reader
        .lock()
        .map_err(|_| Answer::retry(503, "store unavailable", 1))?;
    store.endpoints().map_err(|e| Answer::retry(503, &e, 1))
}

/// An endpoint as the API shows it: the merged record, its id, service and verdict.
pub fn view(cat: &Catalogue, id: i64, r: &Map<String, Value>) -> Value {
    let mut v = r.clone();
    let judged = cat.judge(r);
    v.insert("id".into(), id.into());
    v.insert(
        "service".into(),
        r.get("host").cloned().unwrap_or(Value::Null),
    );
    v.insert("verdict".into(), judged.verdict.into());
    if let Some((_, op)) = judged.declared {
        v.insert("declared_template".into(), op.template.clone().into());
    }
    Value::Object(v)
}

/// Filters of the inventory table (all optional, all must match).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub service: String,
    pub api_type: String,
    pub verdict: String,
    pub auth: String,
    pub data_class: String,
    pub method: String,
}

impl Filter {
    pub fn from_query(query: &str) -> Filter {
        let mut f = Filter::default();
        for (k, v) in query_pairs(query) {
            let slot = match k.as_str() {
                "service" => &mut f.service,
                "api_type" => &mut f.api_type,
                "verdict" => &mut f.verdict,
                "auth" => &mut f.auth,
                "data_class" => &mut f.data_class,
                "method" => &mut f.method,
                _ => continue,
            };
            *slot = v;
        }
        f
    }

    pub fn matches(&self, v: &Value) -> bool {
        let eq =
            |want: &str, k: &str| want.is_empty() || v.get(k).and_then(Value::as_str) == Some(want);
        let has = |want: &str, p: &str| {
            want.is_empty()
                || v.pointer(p)
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(want)))
        };
        eq(&self.service, "service")
            && eq(&self.api_type, "api_type")
            && eq(&self.verdict, "verdict")
            && eq(&self.method, "method")
            && has(&self.auth, "/auth")
            && (has(&self.data_class, "/data_classes/request")
                || has(&self.data_class, "/data_classes/response"))
    }
}

pub fn endpoints(cat: &Catalogue, records: &Records, f: &Filter) -> Vec<Value> {
    records
        .iter()
        .map(|(id, r)| view(cat, *id, r))
        .filter(|v| f.matches(v))
        .collect()
}

fn count_by(views: &[Value], key: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for v in views {
        let k = v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

pub fn summary(state: &State, cat: &Catalogue, records: &Records) -> Value {
    let views = endpoints(cat, records, &Filter::default());
    let found = findings::all(
        cat,
        records,
        now_ms().saturating_sub(state.opts.unused_after_ms),
    );
    let (batches, schema) = state
        .reader
        .lock()
        .ok()
        .and_then(|s| Some((s.counts().ok()?.1, s.schema_version().ok()?)))
        .unwrap_or((0, 0));
    json!({
        "services": count_by(&views, "service").len(),
        "endpoints": views.len(),
        "by_verdict": count_by(&views, "verdict"),
        "by_api_type": count_by(&views, "api_type"),
        "findings": found.len(),
        "findings_by_severity": count_by(&found, "severity"),
        "batch_ids_remembered": batches,
        "store_schema_version": schema,
    })
}

pub fn services(cat: &Catalogue, records: &Records) -> Value {
    let views = endpoints(cat, records, &Filter::default());
    let mut out = Vec::new();
    for (service, n) in count_by(&views, "service") {
        let declared = cat.for_service(&service).map(|d| {
            if d.service == "*" {
                "filter-config"
            } else {
                "uploaded"
            }
        });
        out.push(json!({"service": service, "endpoints": n, "declared_spec": declared}));
    }
    Value::Array(out)
}

pub fn report(state: &State, cat: &Catalogue, records: &Records) -> Value {
    let views = endpoints(cat, records, &Filter::default());
    let brief = |v: &Value| {
        json!({"id": v["id"], "service": v["service"], "method": v["method"],
            "path_template": v["path_template"], "count": v["count"],
            "last_seen_ms": v["last_seen_ms"], "proxies": v["proxies"]})
    };
    let pick = |verdict: &str| -> Vec<Value> {
        views
            .iter()
            .filter(|v| v.get("verdict").and_then(Value::as_str) == Some(verdict))
            .map(brief)
            .collect()
    };
    let since = now_ms().saturating_sub(state.opts.unused_after_ms);
    let unused: Vec<Value> = cat
        .unused(records, since)
        .into_iter()
        .map(|(s, op)| json!({"service": s, "method": op.method, "path_template": op.template, "deprecated": op.deprecated}))
        .collect();
    let mut drifted = Vec::new();
    for (id, r) in records {
        if let Some((d, op)) = cat.judge(r).declared {
            let items = drift(r, d, op);
            if !items.is_empty() {
                drifted.push(json!({"id": id, "service": r.get("host"), "method": r.get("method"),
                    "path_template": op.template,
                    "undeclared": items.iter().map(|(k, n)| json!({"kind": k, "name": n})).collect::<Vec<_>>()}));
            }
        }
    }
    json!({"shadow": pick("shadow"), "zombie": pick("zombie"), "unused": unused,
        "unused_after_ms": state.opts.unused_after_ms, "drift": drifted})
}

pub fn findings_list(state: &State, cat: &Catalogue, records: &Records, query: &str) -> Vec<Value> {
    let since = now_ms().saturating_sub(state.opts.unused_after_ms);
    let wanted = query_pairs(query);
    findings::all(cat, records, since)
        .into_iter()
        .filter(|f| {
            wanted.iter().all(|(k, v)| match k.as_str() {
                "severity" | "owasp" | "service" | "code" => {
                    v.is_empty() || f.get(k).and_then(Value::as_str) == Some(v)
                }
                _ => true,
            })
        })
        .collect()
}

fn unauthorized() -> Answer {
    let mut a = Answer::error(401, "a read token is required (Authorization: Bearer)");
    a.headers.push(("WWW-Authenticate", "Bearer".into()));
    a
}

pub fn route(
    state: &State,
    req: &mut tiny_http::Request,
    method: &str,
    path: &str,
    query: &str,
) -> Answer {
    if !may_read(state, req) {
        return unauthorized();
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return Answer::error(404, "unknown API path; see docs/inventory.md");
    };
    if method == "PUT" {
        if let Some(service) = rest.strip_prefix("specs/") {
            return put_spec(state, req, &decode(service));
        }
        return Answer::error(405, "method not allowed");
    }
    if method != "GET" {
        return Answer::error(405, "method not allowed");
    }
    let records = match load(state) {
        Ok(r) => r,
        Err(a) => return a,
    };
    let Ok(cat) = state.catalogue.read() else {
        return Answer::retry(503, "catalogue unavailable", 1);
    };
    match rest {
        "summary" => Answer::json(200, &summary(state, &cat, &records)),
        "services" => Answer::json(200, &services(&cat, &records)),
        "endpoints" => Answer::json(200, &Value::Array(endpoints(&cat, &records, &Filter::from_query(query)))),
        "findings" => Answer::json(200, &Value::Array(findings_list(state, &cat, &records, query))),
        "report" => Answer::json(200, &report(state, &cat, &records)),
        "finding-codes" => Answer::json(
            200,
            &Value::Array(
                findings::TABLE
                    .iter()
                    .map(|(code, severity, owasp, title)| {
                        json!({"code": code, "severity": severity, "owasp": owasp, "title": title})
                    })
                    .collect(),
            ),
        ),
        "specs" => Answer::json(
            200,
            &Value::Array(
                cat.declared
                    .iter()
                    .map(|d| json!({"service": d.service, "operations": d.operations.len()}))
                    .collect(),
            ),
        ),
        _ => {
            if let Some(id) = rest.strip_prefix("endpoints/") {
                let found = id
                    .parse::<i64>()
                    .ok()
                    .and_then(|id| records.iter().find(|(i, _)| *i == id));
                return match found {
                    Some((id, r)) => {
                        let mut v = view(&cat, *id, r);
                        if let Some(o) = v.as_object_mut() {
                            o.insert(
                                "finding_details".into(),
                                Value::Array(findings::of_endpoint(&cat, *id, r)),
                            );
                        }
                        Answer::json(200, &v)
                    }
                    None => Answer::error(404, "no such endpoint"),
                };
            }
            if let Some(service) = rest.strip_prefix("openapi/") {
                let service = decode(service);
                let service = service.strip_suffix(".json").unwrap_or(&service);
                if !records.iter().any(|(_, r)| r.get("host").and_then(Value::as_str) == Some(service)) {
                    return Answer::error(404, "no endpoint observed for this service");
                }
                let mut a = Answer::json(200, &reconstruct(service, &records));
                let file: String = service
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
                    .collect();
                a.headers.push((
                    "Content-Disposition",
                    format!("attachment; filename=\"{file}.openapi.json\""),
                ));
                return a;
            }
            Answer::error(404, "unknown API path; see docs/inventory.md")
        }
    }
}

fn put_spec(state: &State, req: &mut tiny_http::Request, service: &str) -> Answer {
    let body = match read_body(req, state.opts.max_body_bytes) {
        Ok(b) => b,
        Err(a) => return a,
    };
    let doc: Value = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return Answer::error(400, &format!("not JSON: {e}")),
    };
    let compiled = match super::spec::Declared::compile(service, doc, None) {
        Ok(d) => d,
        Err(e) => return Answer::error(400, &format!("not a usable OpenAPI document: {e}")),
    };
    let text = compiled.document.to_string();
    let stored = state
        .reader
        .lock()
        .map_err(|_| "store lock poisoned".to_string())
        .and_then(|mut s| s.put_spec(service, &text, now_ms()));
    if let Err(e) = stored.and_then(|()| state.reload_catalogue()) {
        return Answer::retry(503, &e, 1);
    }
    Answer::json(
        200,
        &json!({"service": service, "operations": compiled.operations.len()}),
    )
}
