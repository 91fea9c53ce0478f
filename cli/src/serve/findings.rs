//! Findings: one per endpoint and code (deduplicated by construction: the inventory keeps each
//! endpoint's findings as a set), with a severity and the OWASP API Security Top 10 2023 category.
//! The table is documented in `docs/inventory.md`.

use super::merge::strs;
use super::spec::{drift, Catalogue, Judged};
use serde_json::{json, Map, Value};

/// (code, severity, OWASP category, title). Codes from the filter (`docs/events.md`) first, then
/// those the service derives from declared-vs-observed.
pub const TABLE: &[(&str, &str, &str, &str)] = &[
    (
        "no_authentication",
        "medium",
        "API2:2023",
        "Served without any credential",
    ),
    (
        "sensitive_data_unauthenticated",
        "high",
        "API3:2023",
        "Sensitive data served without credentials",
    ),
    (
        "credentials_in_query",
        "high",
        "API2:2023",
        "Credentials in the URL",
    ),
    (
        "credentials_over_plain_http",
        "high",
        "API2:2023",
        "Credentials over plain HTTP",
    ),
    (
        "missing_hsts",
        "low",
        "API8:2023",
        "Sensitive response without Strict-Transport-Security",
    ),
    (
        "missing_x_content_type_options",
        "low",
        "API8:2023",
        "Sensitive response without X-Content-Type-Options",
    ),
    (
        "missing_cache_control_no_store",
        "low",
        "API8:2023",
        "Sensitive response without Cache-Control: no-store",
    ),
    (
        "version_banner",
        "low",
        "API8:2023",
        "Software version disclosed in headers",
    ),
    (
        "stack_trace_in_error",
        "medium",
        "API8:2023",
        "Stack trace in an error response",
    ),
    (
        "sql_error_in_error",
        "medium",
        "API8:2023",
        "Database error in an error response",
    ),
    (
        "cors_any_origin_with_credentials",
        "high",
        "API8:2023",
        "CORS: any origin with credentials",
    ),
    (
        "cors_origin_reflected",
        "high",
        "API8:2023",
        "CORS: foreign origin reflected",
    ),
    (
        "path_confusion",
        "medium",
        "API5:2023",
        "Ambiguous path (authorization bypass attempt)",
    ),
    (
        "jsonrpc_invalid_batch_member",
        "low",
        "API8:2023",
        "Invalid JSON-RPC batch members",
    ),
    (
        "shadow_endpoint",
        "medium",
        "API9:2023",
        "Shadow API: observed, not declared",
    ),
    (
        "zombie_endpoint",
        "high",
        "API9:2023",
        "Zombie API: observed on a retired or deprecated version",
    ),
    (
        "unused_operation",
        "info",
        "API9:2023",
        "Declared operation never observed",
    ),
    (
        "undeclared_query_parameter",
        "low",
        "API9:2023",
        "Drift: query parameter the spec lacks",
    ),
    (
        "undeclared_request_field",
        "medium",
        "API3:2023",
        "Drift: request field the spec lacks (mass assignment risk)",
    ),
    (
        "undeclared_response_field",
        "medium",
        "API3:2023",
        "Drift: response field the spec lacks (excessive data exposure)",
    ),
];

pub const SEVERITIES: &[&str] = &["critical", "high", "medium", "low", "info"];

pub const OWASP: &[(&str, &str)] = &[
    ("API1:2023", "Broken Object Level Authorization"),
    ("API2:2023", "Broken Authentication"),
    ("API3:2023", "Broken Object Property Level Authorization"),
    ("API4:2023", "Unrestricted Resource Consumption"),
    ("API5:2023", "Broken Function Level Authorization"),
    (
        "API6:2023",
        "Unrestricted Access to Sensitive Business Flows",
    ),
    ("API7:2023", "Server Side Request Forgery"),
    ("API8:2023", "Security Misconfiguration"),
    ("API9:2023", "Improper Inventory Management"),
    ("API10:2023", "Unsafe Consumption of APIs"),
];

fn finding(
    code: &str,
    endpoint: Option<(i64, &Map<String, Value>)>,
    detail: Option<String>,
) -> Value {
    let (severity, owasp, title) = TABLE
        .iter()
        .find(|(c, ..)| *c == code)
        .map_or(("info", "API9:2023", code), |(_, s, o, t)| (*s, *o, *t));
    let owasp_title = OWASP
        .iter()
        .find(|(o, _)| *o == owasp)
        .map_or("", |(_, t)| t);
    let mut f = json!({
        "code": code,
        "severity": severity,
        "owasp": owasp,
        "owasp_title": owasp_title,
        "title": title,
    });
    if let (Some(obj), Some((id, r))) = (f.as_object_mut(), endpoint) {
        obj.insert("id".into(), format!("{id}:{code}").into());
        obj.insert("endpoint_id".into(), id.into());
        for k in [
            "host",
            "method",
            "path_template",
            "first_seen_ms",
            "last_seen_ms",
        ] {
            if let Some(v) = r.get(k) {
                let name = if k == "host" { "service" } else { k };
                obj.insert(name.into(), v.clone());
            }
        }
    }
    if let (Some(obj), Some(d)) = (f.as_object_mut(), detail) {
        obj.insert("detail".into(), d.into());
    }
    f
}

/// Findings of one endpoint record: those the proxies reported, its verdict and its drift.
pub fn of_endpoint(cat: &Catalogue, id: i64, r: &Map<String, Value>) -> Vec<Value> {
    let mut out: Vec<Value> = strs(r.get("findings"))
        .map(|code| finding(code, Some((id, r)), None))
        .collect();
    let judged: Judged<'_> = cat.judge(r);
    match judged.verdict {
        "shadow" => out.push(finding("shadow_endpoint", Some((id, r)), None)),
        "zombie" => out.push(finding("zombie_endpoint", Some((id, r)), None)),
        _ => {}
    }
    if let Some((d, op)) = judged.declared {
        let mut by_kind: Vec<(&str, Vec<String>)> = Vec::new();
        for (kind, name) in drift(r, d, op) {
            match by_kind.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, names)) => names.push(name),
                None => by_kind.push((kind, vec![name])),
            }
        }
        for (kind, names) in by_kind {
            out.push(finding(
                &format!("undeclared_{kind}"),
                Some((id, r)),
                Some(names.join(", ")),
            ));
        }
    }
    out
}

/// Every finding, most severe first.
pub fn all(
    cat: &Catalogue,
    records: &[(i64, Map<String, Value>)],
    unused_since_ms: u64,
) -> Vec<Value> {
    let mut out: Vec<Value> = records
        .iter()
        .flat_map(|(id, r)| of_endpoint(cat, *id, r))
        .collect();
    for (service, op) in cat.unused(records, unused_since_ms) {
        let mut f = finding("unused_operation", None, None);
        if let Some(obj) = f.as_object_mut() {
            obj.insert(
                "id".into(),
                format!("unused:{service}:{} {}", op.method, op.template).into(),
            );
            obj.insert("service".into(), service.into());
            obj.insert("method".into(), op.method.into());
            obj.insert("path_template".into(), op.template.into());
        }
        out.push(f);
    }
    let rank = |f: &Value| {
        let s = f.get("severity").and_then(Value::as_str).unwrap_or("info");
        SEVERITIES
            .iter()
            .position(|x| *x == s)
            .unwrap_or(SEVERITIES.len())
    };
    out.sort_by_key(rank);
    out
}
