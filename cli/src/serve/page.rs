//! The web page: server-rendered HTML, no script. `/` is the inventory table (filters by
//! service, API type, verdict, auth and data class), `/endpoints/{id}` an endpoint, `/findings` the
//! findings, `/report` the shadow, zombie, unused and drift report, and each service links its
//! reconstructed OpenAPI document (`/api/v1/openapi/{service}`). With `--read-token`, `/login`
//! takes the token once and keeps it in an HttpOnly cookie.

use super::api::{self, decode, endpoints, query_pairs, Filter, Records};
use super::{may_read, read_body, Answer, State};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write;

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

fn url_enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.5rem;align-items:center}
header a{color:#cfe1ff;text-decoration:none}header h1{font-size:1.1rem;margin:0}
main{padding:1rem 1.2rem}table{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem}
th,td{border-bottom:1px solid #e2e5ea;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f5}code{font-size:.85rem}form.filters{display:flex;gap:.6rem;flex-wrap:wrap;margin-bottom:.8rem}
.v-shadow{color:#a35a00;font-weight:600}.v-zombie{color:#b00020;font-weight:600}.v-declared{color:#137333}
.s-high,.s-critical{color:#b00020;font-weight:600}.s-medium{color:#a35a00}.s-low,.s-info{color:#555}
.cards{display:flex;gap:1rem;margin-bottom:1rem}.card{background:#fff;padding:.6rem 1rem;border:1px solid #e2e5ea}
pre{background:#fff;border:1px solid #e2e5ea;padding:.6rem;overflow:auto}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · apiguard inventory</title>\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><style>{STYLE}</style></head><body>\
<header><h1>apiguard inventory</h1><a href=\"/\">Inventory</a><a href=\"/findings\">Findings</a>\
<a href=\"/report\">Shadow · zombie · unused</a><a href=\"/metrics\">Metrics</a></header><main>{body}</main></body></html>",
        esc(title)
    )
}

fn list(v: &Value, p: &str) -> String {
    v.pointer(p)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(esc)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn select(name: &str, label: &str, options: &BTreeSet<String>, current: &str) -> String {
    let mut o = format!("<label>{label} <select name=\"{name}\"><option value=\"\">any</option>");
    for opt in options {
        let sel = if opt == current { " selected" } else { "" };
        let _ = write!(o, "<option value=\"{0}\"{sel}>{0}</option>", esc(opt));
    }
    o.push_str("</select></label>");
    o
}

fn inventory(state: &State, records: &Records, query: &str) -> String {
    let Ok(cat) = state.catalogue.read() else {
        return layout("Inventory", "<p>catalogue unavailable</p>");
    };
    let all = endpoints(&cat, records, &Filter::default());
    let f = Filter::from_query(query);
    let shown: Vec<&Value> = all.iter().filter(|v| f.matches(v)).collect();
    let collect = |k: &str| {
        all.iter()
            .map(|v| s(v, k).to_string())
            .collect::<BTreeSet<_>>()
    };
    let collect_list = |ps: &[&str]| {
        all.iter()
            .flat_map(|v| {
                ps.iter()
                    .flat_map(|p| {
                        v.pointer(p)
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default()
                    })
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect::<BTreeSet<_>>()
    };
    let summary = api::summary(state, &cat, records);
    let mut b = String::new();
    let _ = write!(
        b,
        "<div class=\"cards\"><div class=\"card\"><b id=\"n-services\">{}</b> services</div>\
<div class=\"card\"><b id=\"n-endpoints\">{}</b> endpoints</div><div class=\"card\"><b id=\"n-findings\">{}</b> findings</div></div>",
        summary["services"], summary["endpoints"], summary["findings"]
    );
    b.push_str("<form class=\"filters\" method=\"get\" action=\"/\">");
    b.push_str(&select(
        "service",
        "Service",
        &collect("service"),
        &f.service,
    ));
    b.push_str(&select(
        "api_type",
        "Type",
        &collect("api_type"),
        &f.api_type,
    ));
    b.push_str(&select(
        "verdict",
        "Verdict",
        &collect("verdict"),
        &f.verdict,
    ));
    b.push_str(&select("auth", "Auth", &collect_list(&["/auth"]), &f.auth));
    b.push_str(&select(
        "data_class",
        "Data class",
        &collect_list(&["/data_classes/request", "/data_classes/response"]),
        &f.data_class,
    ));
    b.push_str("<button type=\"submit\">Filter</button></form>");
    b.push_str("<table id=\"inventory\"><thead><tr><th>Service</th><th>Method</th><th>Path template</th><th>Type</th>\
<th>Verdict</th><th>Auth</th><th>Data classes</th><th>Requests</th><th>Status</th><th>Findings</th><th>Proxies</th></tr></thead><tbody>");
    for v in &shown {
        let status: Vec<String> = v
            .get("status")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
            .map(|(k, n)| format!("{}:{n}", esc(k)))
            .collect();
        let mut classes = list(v, "/data_classes/request");
        let resp = list(v, "/data_classes/response");
        if !resp.is_empty() {
            if !classes.is_empty() {
                classes.push_str(", ");
            }
            classes.push_str(&resp);
        }
        let _ = write!(
            b,
            "<tr data-verdict=\"{verdict}\"><td>{service}</td><td>{method}</td><td><a href=\"/endpoints/{id}\"><code>{path}</code></a></td>\
<td>{api}</td><td class=\"v-{verdict}\">{verdict}</td><td>{auth}</td><td>{classes}</td><td>{count}</td><td>{status}</td><td>{findings}</td><td>{proxies}</td></tr>",
            verdict = esc(s(v, "verdict")),
            service = esc(s(v, "service")),
            method = esc(s(v, "method")),
            id = v["id"],
            path = esc(s(v, "path_template")),
            api = esc(s(v, "api_type")),
            auth = list(v, "/auth"),
            count = v["count"],
            status = status.join(" "),
            findings = list(v, "/findings"),
            proxies = list(v, "/proxies"),
        );
    }
    b.push_str("</tbody></table><h2>Reconstructed OpenAPI 3.1</h2><ul>");
    for svc in collect("service") {
        let _ = write!(
            b,
            "<li><a class=\"spec\" href=\"/api/v1/openapi/{}\">{} (download)</a></li>",
            url_enc(&svc),
            esc(&svc)
        );
    }
    b.push_str("</ul>");
    layout("Inventory", &b)
}

fn detail(state: &State, records: &Records, id: &str) -> Answer {
    let Ok(cat) = state.catalogue.read() else {
        return Answer::html(503, layout("Endpoint", "<p>catalogue unavailable</p>"));
    };
    let Some((id, r)) = id
        .parse::<i64>()
        .ok()
        .and_then(|id| records.iter().find(|(i, _)| *i == id))
    else {
        return Answer::html(404, layout("Not found", "<p>No such endpoint.</p>"));
    };
    let v = api::view(&cat, *id, r);
    let mut b = format!(
        "<h2 id=\"endpoint\"><code>{} {}</code> on {}</h2><p>Verdict: <span class=\"v-{v}\">{v}</span> · type {} · {} requests · \
first seen {} · last seen {} (Unix ms)</p>",
        esc(s(&v, "method")),
        esc(s(&v, "path_template")),
        esc(s(&v, "service")),
        esc(s(&v, "api_type")),
        v["count"],
        v["first_seen_ms"],
        v["last_seen_ms"],
        v = esc(s(&v, "verdict")),
    );
    b.push_str("<h3>Findings</h3><table id=\"endpoint-findings\"><tr><th>Severity</th><th>OWASP</th><th>Finding</th><th>Detail</th></tr>");
    for f in super::findings::of_endpoint(&cat, *id, r) {
        let _ = write!(
            b,
            "<tr><td class=\"s-{0}\">{0}</td><td>{1}</td><td>{2} (<code>{3}</code>)</td><td>{4}</td></tr>",
            esc(s(&f, "severity")),
            esc(s(&f, "owasp")),
            esc(s(&f, "title")),
            esc(s(&f, "code")),
            esc(s(&f, "detail"))
        );
    }
    b.push_str("</table><h3>Record</h3><pre>");
    b.push_str(&esc(&serde_json::to_string_pretty(&v).unwrap_or_default()));
    b.push_str("</pre>");
    Answer::html(200, layout("Endpoint", &b))
}

fn findings_page(state: &State, records: &Records, query: &str) -> String {
    let Ok(cat) = state.catalogue.read() else {
        return layout("Findings", "<p>catalogue unavailable</p>");
    };
    let list = api::findings_list(state, &cat, records, query);
    let mut b = format!("<h2>Findings ({})</h2><table id=\"findings\"><thead><tr><th>Severity</th><th>OWASP API Top 10 2023</th>\
<th>Finding</th><th>Service</th><th>Endpoint</th><th>Detail</th></tr></thead><tbody>", list.len());
    for f in &list {
        let endpoint = match f.get("endpoint_id") {
            Some(id) => format!(
                "<a href=\"/endpoints/{id}\"><code>{} {}</code></a>",
                esc(s(f, "method")),
                esc(s(f, "path_template"))
            ),
            None => format!(
                "<code>{} {}</code>",
                esc(s(f, "method")),
                esc(s(f, "path_template"))
            ),
        };
        let _ = write!(
            b,
            "<tr data-code=\"{code}\"><td class=\"s-{sev}\">{sev}</td><td>{owasp} {otitle}</td><td>{title} (<code>{code}</code>)</td><td>{svc}</td><td>{endpoint}</td><td>{detail}</td></tr>",
            sev = esc(s(f, "severity")),
            owasp = esc(s(f, "owasp")),
            otitle = esc(s(f, "owasp_title")),
            title = esc(s(f, "title")),
            code = esc(s(f, "code")),
            svc = esc(s(f, "service")),
            detail = esc(s(f, "detail")),
        );
    }
    b.push_str("</tbody></table>");
    layout("Findings", &b)
}

fn report_page(state: &State, records: &Records) -> String {
    let Ok(cat) = state.catalogue.read() else {
        return layout("Report", "<p>catalogue unavailable</p>");
    };
    let r = api::report(state, &cat, records);
    let mut b = String::new();
    for (key, title) in [
        ("shadow", "Shadow APIs (observed, not declared)"),
        (
            "zombie",
            "Zombie APIs (retired or deprecated, still called)",
        ),
    ] {
        let items = r[key].as_array().cloned().unwrap_or_default();
        let _ = write!(b, "<h2>{title}: {}</h2><table id=\"{key}\"><tr><th>Service</th><th>Endpoint</th><th>Requests</th><th>Proxies</th></tr>", items.len());
        for e in &items {
            let _ = write!(
                b,
                "<tr><td>{}</td><td><a href=\"/endpoints/{}\"><code>{} {}</code></a></td><td>{}</td><td>{}</td></tr>",
                esc(s(e, "service")),
                e["id"],
                esc(s(e, "method")),
                esc(s(e, "path_template")),
                e["count"],
                list(e, "/proxies")
            );
        }
        b.push_str("</table>");
    }
    let unused = r["unused"].as_array().cloned().unwrap_or_default();
    let _ = write!(b, "<h2>Unused declared operations: {}</h2><table id=\"unused\"><tr><th>Service</th><th>Operation</th><th>Deprecated</th></tr>", unused.len());
    for u in &unused {
        let _ = write!(
            b,
            "<tr><td>{}</td><td><code>{} {}</code></td><td>{}</td></tr>",
            esc(s(u, "service")),
            esc(s(u, "method")),
            esc(s(u, "path_template")),
            u["deprecated"]
        );
    }
    b.push_str("</table>");
    let drift = r["drift"].as_array().cloned().unwrap_or_default();
    let _ = write!(
        b,
        "<h2>Drift: {}</h2><table id=\"drift\"><tr><th>Endpoint</th><th>Undeclared</th></tr>",
        drift.len()
    );
    for d in &drift {
        let items: Vec<String> = d["undeclared"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| format!("{} <code>{}</code>", esc(s(i, "kind")), esc(s(i, "name"))))
            .collect();
        let _ = write!(
            b,
            "<tr><td><a href=\"/endpoints/{}\"><code>{} {}</code></a></td><td>{}</td></tr>",
            d["id"],
            esc(s(d, "method")),
            esc(s(d, "path_template")),
            items.join(", ")
        );
    }
    b.push_str("</table>");
    layout("Report", &b)
}

fn login(state: &State, req: &mut tiny_http::Request, method: &str) -> Answer {
    if method == "POST" {
        let body = read_body(req, 4096).unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let token = query_pairs(&text)
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
            .unwrap_or_default();
        if state.opts.read_token.as_deref() == Some(token.as_str()) {
            let mut a = Answer::html(303, String::new());
            a.headers.push(("Location", "/".into()));
            a.headers.push((
                "Set-Cookie",
                format!(
                    "apiguard_token={}; HttpOnly; SameSite=Strict; Path=/",
                    token.replace([';', ' ', ','], "")
                ),
            ));
            return a;
        }
        return Answer::html(
            401,
            layout(
                "Sign in",
                "<p>Wrong token.</p><a href=\"/login\">Try again</a>",
            ),
        );
    }
    Answer::html(
        200,
        layout(
            "Sign in",
            "<form method=\"post\" action=\"/login\"><label>Read token <input type=\"password\" name=\"token\"></label> <button>Sign in</button></form>",
        ),
    )
}

pub fn route(
    state: &State,
    req: &mut tiny_http::Request,
    method: &str,
    path: &str,
    query: &str,
) -> Answer {
    if path == "/login" {
        return login(state, req, method);
    }
    if !may_read(state, req) {
        let mut a = Answer::html(303, String::new());
        a.headers.push(("Location", "/login".into()));
        return a;
    }
    if method != "GET" {
        return Answer::error(405, "method not allowed");
    }
    let records = match api::load(state) {
        Ok(r) => r,
        Err(a) => return a,
    };
    match path {
        "/" => Answer::html(200, inventory(state, &records, query)),
        "/findings" => Answer::html(200, findings_page(state, &records, query)),
        "/report" => Answer::html(200, report_page(state, &records)),
        p => match p.strip_prefix("/endpoints/") {
            Some(id) => detail(state, &records, &decode(id)),
            None => Answer::html(404, layout("Not found", "<p>Not found.</p>")),
        },
    }
}
