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
    let mut store = state
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
        .and_then(|mut s| Some((s.counts().ok()?.1, s.schema_version().ok()?)))
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

/// Items of a list endpoint returned when `limit` is not given, and at most.
pub const PAGE_DEFAULT: usize = 500;
pub const PAGE_MAX: usize = 1000;

/// Where a list resumes: after the item whose order key is this (hex of the key's JSON, opaque to
/// clients).
fn cursor_token(key: &Value) -> String {
    key.to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn cursor_key(token: &str) -> Option<Value> {
    let b = token.as_bytes();
    if !b.len().is_multiple_of(2) || b.len() > 8192 {
        return None;
    }
    let bytes: Option<Vec<u8>> = b
        .chunks(2)
        .map(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
        .collect();
    serde_json::from_slice(&bytes?).ok()
}

/// Orders two keys as the lists are sorted: arrays member by member, numbers as numbers.
fn key_cmp(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = key_cmp(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Number(x), Value::Number(y)) => x
            .as_u64()
            .unwrap_or(u64::MAX)
            .cmp(&y.as_u64().unwrap_or(u64::MAX)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// One page of a list, from the `limit` and `cursor` of the query: keyset pagination over
/// `order_key` (the list is sorted by it here), so a page never repeats or skips an item that
/// stayed in the list while the client paged, whatever was added or swept in between. The answer
/// is the page (a JSON array) with a `Link: <...>; rel="next"` header when more items follow.
pub fn paged(
    path: &str,
    query: &str,
    mut items: Vec<Value>,
    order_key: fn(&Value) -> Value,
) -> Answer {
    let mut limit = PAGE_DEFAULT;
    let mut after: Option<Value> = None;
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=PAGE_MAX).contains(&n) => limit = n,
                _ => {
                    return Answer::error(
                        400,
                        &format!("limit must be a number from 1 to {PAGE_MAX}"),
                    )
                }
            },
            "cursor" => match cursor_key(&v) {
                Some(key) => after = Some(key),
                None => {
                    return Answer::error(
                        400,
                        "cursor is not one this service gave (take it from the Link header)",
                    )
                }
            },
            _ => {}
        }
    }
    let mut keyed: Vec<(Value, Value)> = items.drain(..).map(|v| (order_key(&v), v)).collect();
    keyed.sort_by(|a, b| key_cmp(&a.0, &b.0));
    let start = after.map_or(0, |after| {
        keyed.partition_point(|(k, _)| key_cmp(k, &after) != std::cmp::Ordering::Greater)
    });
    let rest = keyed.len().saturating_sub(start);
    let mut page: Vec<(Value, Value)> = keyed.into_iter().skip(start).take(limit).collect();
    let next = (rest > limit)
        .then(|| page.last().map(|(k, _)| cursor_token(k)))
        .flatten();
    let mut a = Answer::json(200, &Value::Array(page.drain(..).map(|(_, v)| v).collect()));
    if let Some(token) = next {
        // The query again, without its own limit and cursor, then the next page's.
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("limit=") && !p.starts_with("cursor="))
            .take(32)
            .collect();
        let mut q = kept.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        a.headers.push((
            "Link",
            format!("<{path}?{q}limit={limit}&cursor={token}>; rel=\"next\""),
        ));
    }
    a
}

/// The order of `GET /api/v1/endpoints`: service, template key, method, id.
fn endpoint_order(v: &Value) -> Value {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    json!([
        s("service"),
        super::merge::template_key(s("path_template")),
        s("method"),
        v.get("id").cloned().unwrap_or(Value::Null)
    ])
}

/// The order of `GET /api/v1/findings`: severity (most severe first), endpoint id (unused
/// operations, which have none, last), id.
fn finding_order(v: &Value) -> Value {
    let severity = v.get("severity").and_then(Value::as_str).unwrap_or("info");
    let rank = findings::SEVERITIES
        .iter()
        .position(|x| *x == severity)
        .unwrap_or(findings::SEVERITIES.len());
    json!([
        rank,
        v.get("endpoint_id")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX),
        v.get("id").and_then(Value::as_str).unwrap_or("")
    ])
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
        "endpoints" => paged(path, query, endpoints(&cat, &records, &Filter::from_query(query)), endpoint_order),
        "findings" => paged(path, query, findings_list(state, &cat, &records, query), finding_order),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: i64, service: &str, path: &str) -> Value {
        json!({"id": id, "service": service, "method": "GET", "path_template": path})
    }

    /// Follows the Link headers from `query`; the ids of every page.
    fn walk(items: &dyn Fn() -> Vec<Value>, query: &str) -> Vec<Vec<i64>> {
        let mut pages = Vec::new();
        let mut q = query.to_string();
        loop {
            let a = paged("/api/v1/endpoints", &q, items(), endpoint_order);
            assert_eq!(a.status, 200);
            let body: Value = serde_json::from_slice(&a.body).unwrap();
            pages.push(
                body.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v["id"].as_i64().unwrap())
                    .collect(),
            );
            let Some((_, link)) = a.headers.iter().find(|(k, _)| *k == "Link") else {
                return pages;
            };
            let url = link
                .strip_prefix("</api/v1/endpoints?")
                .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                .unwrap();
            q = url.to_string();
            assert!(pages.len() < 10);
        }
    }

    #[test]
    fn pages_follow_the_cursor_in_order_without_repeats_or_gaps() {
        let all = || {
            vec![
                ep(3, "b", "/z"),
                ep(1, "a", "/x/{id}"),
                ep(5, "a", "/x/{petId}"),
                ep(2, "a", "/y"),
                ep(4, "c", "/w"),
            ]
        };
        // Sorted by service, template key, method, id; the filters in the query are kept.
        assert_eq!(
            walk(&all, "service=&limit=2"),
            vec![vec![1, 5], vec![2, 3], vec![4]]
        );
        assert_eq!(walk(&all, ""), vec![vec![1, 5, 2, 3, 4]]);
        let a = paged("/api/v1/endpoints", "limit=2", all(), endpoint_order);
        let link = &a.headers[0].1;
        assert!(
            link.starts_with("</api/v1/endpoints?limit=2&cursor="),
            "{link}"
        );
        // An item added before the cursor and the cursor's own item swept: the next page is
        // still what follows.
        let token = link
            .split("cursor=")
            .nth(1)
            .unwrap()
            .split('>')
            .next()
            .unwrap();
        let changed = vec![
            ep(9, "a", "/a"),
            ep(2, "a", "/y"),
            ep(3, "b", "/z"),
            ep(4, "c", "/w"),
        ];
        let a = paged(
            "/api/v1/endpoints",
            &format!("limit=2&cursor={token}"),
            changed,
            endpoint_order,
        );
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body, json!([ep(2, "a", "/y"), ep(3, "b", "/z")]));
        // Bounded and checked.
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "cursor=zz",
            "cursor=abc",
        ] {
            assert_eq!(paged("/p", bad, all(), endpoint_order).status, 400, "{bad}");
        }
        let many: Vec<Value> = (0..1500).map(|i| ep(i, "s", "/p")).collect();
        let a = paged("/p", "", many, endpoint_order);
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body.as_array().unwrap().len(), PAGE_DEFAULT);
    }

    #[test]
    fn findings_order_by_severity_then_endpoint() {
        let f = |id: &str, sev: &str, ep: Option<i64>| json!({"id": id, "severity": sev, "endpoint_id": ep});
        let items = vec![
            f("unused:s:GET /a", "info", None),
            f("10:x", "high", Some(10)),
            f("2:y", "low", Some(2)),
            f("2:x", "high", Some(2)),
        ];
        let a = paged("/api/v1/findings", "", items, finding_order);
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        let ids: Vec<&str> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["2:x", "10:x", "2:y", "unused:s:GET /a"]);
    }
}
