//! `apiguard serve` over HTTP: ingest (validation, auth, size caps, idempotence, OTLP JSON and
//! protobuf), the merged inventory of two proxies, declared-vs-observed verdicts and findings,
//! the reconstructed OpenAPI 3.1 checked by `openapi-spec-validator`, a restart that loses nothing
//! acknowledged, the page and the metrics.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod serve_common;

use serde_json::{json, Value};
use serve_common::*;

const P1: &str = "token-proxy-1";
const P2: &str = "token-proxy-2";
const READ: &str = "read-token";

fn server(name: &str, extra: &[&str]) -> Server {
    server_on(None, name, extra)
}

/// `server` on a given store (None: a fresh SQLite file): the checks below that take a store run
/// on both SQLite and PostgreSQL.
fn server_on(store: Option<String>, name: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "--proxy-token",
        "proxy1=token-proxy-1",
        "--proxy-token",
        "proxy2=token-proxy-2",
        "--read-token",
        READ,
    ];
    args.extend_from_slice(extra);
    Server::start_on(store, name, &args)
}

fn find<'a>(endpoints: &'a Value, method: &str, template: &str) -> &'a Value {
    endpoints
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["method"] == method && e["path_template"] == template)
        .unwrap_or_else(|| panic!("no {method} {template} in {endpoints:#}"))
}

#[test]
fn ingest_refuses_what_it_must_and_counts_a_retry_once() {
    ingest_checks(None);
}

fn ingest_checks(store: Option<String>) {
    let s = server_on(store, "ingest", &["--max-body-bytes", "65536"]);
    let b = batch(
        "node-a",
        "1",
        1_700_000_000_000,
        vec![endpoint("shop", "GET", "/items/{id}", "inferred")],
    );

    // No token, a wrong token: 401, nothing stored.
    let r = s.request(
        "POST",
        "/v1/apiguard",
        &[("content-type", "application/json")],
        b.to_string().as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(s.post_batch("nope", &b).status, 401);

    // Malformed JSON, a schema violation, an inconsistent window: 400 that says why.
    let r = s.request(
        "POST",
        "/v1/apiguard",
        &[("authorization", "Bearer token-proxy-1")],
        b"{\"schema_version\": 1,",
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("line 1"),
        "{}",
        r.text()
    );
    let mut bad = b.clone();
    bad["endpoints"][0]["status"]["2xx"] = json!("two");
    let r = s.post_batch(P1, &bad);
    assert_eq!(r.status, 400);
    let why = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        why.contains("/endpoints/0/status/2xx") && why.contains("type"),
        "{why}"
    );
    let mut bad = b.clone();
    bad["window"] = json!({"start_ms": 10, "end_ms": 5});
    assert!(s.post_batch(P1, &bad).json()["error"]
        .as_str()
        .unwrap()
        .contains("end_ms"));
    // Deeply nested and duplicate-key bodies are refused before anything is built from them.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(
        s.request(
            "POST",
            "/v1/apiguard",
            &[("authorization", "Bearer token-proxy-1")],
            deep.as_bytes()
        )
        .status,
        400
    );
    let r = s.request(
        "POST",
        "/v1/apiguard",
        &[("authorization", "Bearer token-proxy-1")],
        br#"{"schema_version": 1, "schema_version": 1}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());

    // Oversized: 413 (declared length), wrong media type: 415.
    let big = vec![b' '; 70_000];
    assert_eq!(
        s.request(
            "POST",
            "/v1/apiguard",
            &[("authorization", "Bearer token-proxy-1")],
            &big
        )
        .status,
        413
    );
    assert_eq!(
        s.request(
            "POST",
            "/v1/apiguard",
            &[
                ("authorization", "Bearer token-proxy-1"),
                ("content-type", "text/plain")
            ],
            b"x"
        )
        .status,
        415
    );

    // Valid, then the same batch again (a retry): stored once.
    let r = s.post_batch(P1, &b);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"endpoints": 1, "duplicate": false}));
    let r = s.post_batch(P1, &b);
    assert_eq!(r.json()["duplicate"], true);
    let e = s.get_json("/api/v1/endpoints", READ);
    assert_eq!(e.as_array().unwrap().len(), 1);
    assert_eq!(e[0]["count"], 3);
    // The same window from another proxy is not a retry: it counts.
    assert_eq!(s.post_batch(P2, &b).json()["duplicate"], false);
    assert_eq!(s.get_json("/api/v1/endpoints", READ)[0]["count"], 6);

    // The read API needs the read token (the proxies' tokens do not read).
    assert_eq!(s.request("GET", "/api/v1/endpoints", &[], b"").status, 401);
    assert_eq!(
        s.request(
            "GET",
            "/api/v1/endpoints",
            &[("authorization", "Bearer token-proxy-1")],
            b""
        )
        .status,
        401
    );
    let m = s
        .request(
            "GET",
            "/metrics",
            &[("authorization", "Bearer read-token")],
            b"",
        )
        .text();
    assert!(
        m.contains("apiguard_serve_batches_total{result=\"accepted\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("apiguard_serve_batches_total{result=\"duplicate\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("apiguard_serve_rejects_total{reason=\"unauthorized\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("apiguard_serve_rejects_total{reason=\"too_large\"} 1"),
        "{m}"
    );
    assert!(m.contains("apiguard_serve_endpoints 1"), "{m}");
}

#[test]
fn two_proxies_with_overlapping_traffic_give_one_merged_inventory() {
    merge_checks(None);
}

fn merge_checks(store: Option<String>) {
    let s = server_on(store, "merge", &[]);
    // Proxy 1 has the declared document (declared templates); proxy 2 infers its templates.
    let mut a = endpoint("petstore", "GET", "/api/v3/pet/{petId}", "declared");
    a["auth"] = json!(["bearer_jwt"]);
    a["data_classes"]["response"] = json!(["email"]);
    let mut b = endpoint("petstore", "GET", "/api/v3/pet/{id}", "inferred");
    b["first_seen_ms"] = json!(1_600_000_000_000u64);
    b["response_shape"] = json!({"type": ["object"], "properties": {"tags": {"type": ["array"], "items": {"type": ["string"]}}}});
    let c = endpoint("petstore", "GET", "/api/v3/store/inventory", "inferred");
    assert_eq!(
        s.post_batch(P1, &batch("node-1", "0", 1_700_000_000_000, vec![a]))
            .status,
        200
    );
    assert_eq!(
        s.post_batch(P2, &batch("node-2", "0", 1_700_000_000_000, vec![b, c]))
            .status,
        200
    );
    let e = s.get_json("/api/v1/endpoints", READ);
    assert_eq!(e.as_array().unwrap().len(), 2, "{e:#}");
    let pet = find(&e, "GET", "/api/v3/pet/{petId}");
    assert_eq!(pet["count"], 6);
    assert_eq!(pet["template_source"], "declared");
    assert_eq!(pet["first_seen_ms"], 1_600_000_000_000u64);
    assert_eq!(pet["proxies"], json!(["proxy1/node-1", "proxy2/node-2"]));
    assert_eq!(pet["auth"], json!(["bearer_jwt", "none"]));
    assert_eq!(pet["status"]["2xx"], 4);
    assert_eq!(
        pet["response_shape"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["id", "name", "tags"]
    );
    // Filters of the table.
    let only = s.get_json("/api/v1/endpoints?data_class=email", READ);
    assert_eq!(only.as_array().unwrap().len(), 1);
    assert_eq!(
        s.get_json("/api/v1/endpoints?auth=bearer_jwt&service=petstore", READ)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get_json("/api/v1/endpoints?service=other", READ)
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

fn otlp_of(b: &Value) -> Value {
    use apiguard::discovery::event::any_value;
    let attr = |k: &str, v: Value| json!({"key": k, "value": any_value(&v)});
    let mut head = vec![attr("event.name", json!("apiguard.discovery.batch"))];
    for k in [
        "schema_version",
        "window",
        "part",
        "sample_rate",
        "overflowed",
        "dropped",
        "dropped_endpoints",
    ] {
        head.push(attr(&format!("apiguard.{k}"), b[k].clone()));
    }
    let mut records = vec![
        json!({"timeUnixNano": "1", "body": {"stringValue": "apiguard discovery batch"}, "attributes": head}),
    ];
    for e in b["endpoints"].as_array().unwrap() {
        records.push(json!({"timeUnixNano": "1", "body": any_value(e),
            "attributes": [attr("event.name", json!("apiguard.discovery.endpoint"))]}));
    }
    json!({"resourceLogs": [{"resource": {"attributes": [
        attr("service.name", b["source"]["plugin"].clone()),
        attr("apiguard.worker", b["source"]["worker"].clone()),
        attr("service.instance.id", b["source"]["node"].clone())]},
        "scopeLogs": [{"scope": {"name": "apiguard.discovery", "version": "1"}, "logRecords": records}]}]})
}

/// A small, independent protobuf writer for the OTLP JSON mapping (the service's decoder is
/// checked against it, not against itself).
mod pb {
    use serde_json::Value;
    fn varint(o: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            o.push((v as u8) | 0x80);
            v >>= 7;
        }
        o.push(v as u8);
    }
    fn ld(o: &mut Vec<u8>, field: u64, b: &[u8]) {
        varint(o, field << 3 | 2);
        varint(o, b.len() as u64);
        o.extend_from_slice(b);
    }
    fn any(v: &Value) -> Vec<u8> {
        let mut o = Vec::new();
        if let Some(s) = v["stringValue"].as_str() {
            ld(&mut o, 1, s.as_bytes());
        } else if let Some(b) = v["boolValue"].as_bool() {
            varint(&mut o, 2 << 3);
            varint(&mut o, b as u64);
        } else if let Some(i) = v["intValue"].as_str() {
            varint(&mut o, 3 << 3);
            varint(&mut o, i.parse::<i64>().unwrap() as u64);
        } else if let Some(d) = v["doubleValue"].as_f64() {
            varint(&mut o, 4 << 3 | 1);
            o.extend_from_slice(&d.to_le_bytes());
        } else if let Some(a) = v.pointer("/arrayValue/values").and_then(Value::as_array) {
            let mut inner = Vec::new();
            for x in a {
                ld(&mut inner, 1, &any(x));
            }
            ld(&mut o, 5, &inner);
        } else if let Some(kv) = v.pointer("/kvlistValue/values") {
            ld(&mut o, 6, &kvs(kv));
        }
        o
    }
    fn kv(k: &Value) -> Vec<u8> {
        let mut e = Vec::new();
        ld(&mut e, 1, k["key"].as_str().unwrap().as_bytes());
        ld(&mut e, 2, &any(&k["value"]));
        e
    }
    fn kvs(list: &Value) -> Vec<u8> {
        let mut o = Vec::new();
        for k in list.as_array().unwrap() {
            ld(&mut o, 1, &kv(k));
        }
        o
    }
    pub fn logs(doc: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        for rl in doc["resourceLogs"].as_array().unwrap() {
            let mut r = Vec::new();
            ld(&mut r, 1, &kvs(&rl["resource"]["attributes"]));
            for sl in rl["scopeLogs"].as_array().unwrap() {
                let mut s = Vec::new();
                let mut scope = Vec::new();
                ld(
                    &mut scope,
                    1,
                    sl["scope"]["name"].as_str().unwrap().as_bytes(),
                );
                ld(&mut s, 1, &scope);
                for rec in sl["logRecords"].as_array().unwrap() {
                    let mut l = Vec::new();
                    varint(&mut l, 1 << 3 | 1);
                    l.extend_from_slice(&1u64.to_le_bytes());
                    ld(&mut l, 5, &any(&rec["body"]));
                    for a in rec["attributes"].as_array().unwrap() {
                        ld(&mut l, 6, &kv(a));
                    }
                    ld(&mut s, 2, &l);
                }
                ld(&mut r, 2, &s);
            }
            ld(&mut out, 1, &r);
        }
        out
    }
}

#[test]
fn otlp_logs_in_json_and_protobuf_reach_the_same_inventory() {
    let s = server("otlp", &[]);
    let mut e = endpoint("shop", "POST", "/orders", "inferred");
    e["operation"] = json!(null);
    let b = batch("node-o", "2", 1_700_000_000_000, vec![e.clone()]);
    let doc = otlp_of(&b);
    let auth = [
        ("authorization", "Bearer token-proxy-1"),
        ("content-type", "application/json"),
    ];
    let r = s.request("POST", "/v1/logs", &auth, doc.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({}));
    // A scope that is not apiguard's is refused alone: partial success.
    let mut mixed = otlp_of(&batch("node-o", "2", 1_700_000_010_000, vec![e.clone()]));
    mixed["resourceLogs"][0]["scopeLogs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"scope": {"name": "other"}, "logRecords": [{}, {}]}));
    let r = s.request("POST", "/v1/logs", &auth, mixed.to_string().as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["partialSuccess"]["rejectedLogRecords"], "2");
    // Protobuf of a third window; then the protobuf of the first one again (a retry).
    let pb_auth = [
        ("authorization", "Bearer token-proxy-1"),
        ("content-type", "application/x-protobuf"),
    ];
    let third = pb::logs(&otlp_of(&batch(
        "node-o",
        "2",
        1_700_000_020_000,
        vec![e.clone()],
    )));
    let r = s.request("POST", "/v1/logs", &pb_auth, &third);
    assert_eq!((r.status, r.body.len()), (200, 0), "{}", r.text());
    assert_eq!(
        s.request("POST", "/v1/logs", &pb_auth, &pb::logs(&doc))
            .status,
        200
    );
    let all = s.get_json("/api/v1/endpoints", READ);
    assert_eq!(
        find(&all, "POST", "/orders")["count"],
        9,
        "three windows of 3, the retry not counted"
    );
    // Garbage protobuf: 400.
    let r = s.request("POST", "/v1/logs", &pb_auth, &[0x0a, 0xff, 0xff, 0x01]);
    assert_eq!(r.status, 400, "{}", r.text());

    // gzip, as an OpenTelemetry Collector's otlphttp exporter sends by default: protobuf and JSON
    // of two more windows, and a gzip retry of the first one (not counted).
    let gz_pb = [
        ("authorization", "Bearer token-proxy-1"),
        ("content-type", "application/x-protobuf"),
        ("content-encoding", "gzip"),
    ];
    let gz_json = [
        ("authorization", "Bearer token-proxy-1"),
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    let fourth = otlp_of(&batch("node-o", "2", 1_700_000_030_000, vec![e.clone()]));
    let r = s.request("POST", "/v1/logs", &gz_pb, &gzip(&pb::logs(&fourth)));
    assert_eq!((r.status, r.body.len()), (200, 0), "{}", r.text());
    let fifth = otlp_of(&batch("node-o", "2", 1_700_000_040_000, vec![e.clone()]));
    let r = s.request(
        "POST",
        "/v1/logs",
        &gz_json,
        &gzip(fifth.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.request(
        "POST",
        "/v1/logs",
        &gz_json,
        &gzip(doc.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        find(&s.get_json("/api/v1/endpoints", READ), "POST", "/orders")["count"],
        15
    );
    // A zip bomb (64 MiB of spaces in about 64 KB; the cap is 4 MiB): 413. Another coding: 415.
    // Corrupt gzip: 400. Nothing of them stored.
    let r = s.request("POST", "/v1/logs", &gz_json, &gzip(&vec![b' '; 64 << 20]));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("decompressed"));
    let br = [
        ("authorization", "Bearer token-proxy-1"),
        ("content-type", "application/json"),
        ("content-encoding", "br"),
    ];
    let r = s.request("POST", "/v1/logs", &br, fifth.to_string().as_bytes());
    assert_eq!(r.status, 415, "{}", r.text());
    let r = s.request("POST", "/v1/logs", &gz_json, fifth.to_string().as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("gzip"));
    // The apiguard format takes gzip too.
    let sixth = batch("node-o", "2", 1_700_000_050_000, vec![e]);
    let r = s.request(
        "POST",
        "/v1/apiguard",
        &gz_json,
        &gzip(sixth.to_string().as_bytes()),
    );
    assert_eq!(r.json(), json!({"endpoints": 1, "duplicate": false}));
    assert_eq!(
        find(&s.get_json("/api/v1/endpoints", READ), "POST", "/orders")["count"],
        18
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn petstore_traffic(s: &Server) {
    let mut eps = vec![
        endpoint("petstore", "GET", "/api/v3/pet/{petId}", "declared"),
        endpoint("petstore", "GET", "/api/v3/store/inventory", "declared"),
        // Shadow: not in the document.
        endpoint("petstore", "GET", "/api/v3/admin/users", "inferred"),
        // Zombie: deprecated in the document, and under a retired prefix.
        endpoint("petstore", "GET", "/api/v3/user/logout", "declared"),
        endpoint("petstore", "GET", "/v1/pet/{id}", "inferred"),
    ];
    // Drift: a query parameter and a response field the document lacks.
    eps[0]["query_params"] = json!(["debug"]);
    eps[0]["response_shape"] = json!({"type": ["object"], "properties": {"id": {"type": ["integer"]}, "name": {"type": ["string"]}, "ssn": {"type": ["string"]}}});
    eps[0]["findings"] = json!(["no_authentication", "version_banner"]);
    assert_eq!(
        s.post_batch(P1, &batch("node-1", "0", 1_700_000_000_000, eps))
            .status,
        200
    );
}

#[test]
fn declared_vs_observed_and_findings_with_owasp_categories() {
    let s = server(
        "verdicts",
        &["--retired-prefix", "/v1/", "--unused-after", "200000h"],
    );
    let auth = format!("Bearer {READ}");
    let r = s.request(
        "PUT",
        "/api/v1/specs/petstore",
        &[("authorization", &auth)],
        petstore().to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["operations"], 19);
    let r = s.request(
        "PUT",
        "/api/v1/specs/petstore",
        &[("authorization", &auth)],
        b"{\"openapi\": \"3.0.0\"}",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("paths"), "{}", r.text());
    petstore_traffic(&s);
    let e = s.get_json("/api/v1/endpoints", READ);
    assert_eq!(
        find(&e, "GET", "/api/v3/pet/{petId}")["verdict"],
        "declared"
    );
    assert_eq!(find(&e, "GET", "/api/v3/admin/users")["verdict"], "shadow");
    assert_eq!(find(&e, "GET", "/api/v3/user/logout")["verdict"], "zombie");
    assert_eq!(find(&e, "GET", "/v1/pet/{id}")["verdict"], "zombie");
    let report = s.get_json("/api/v1/report", READ);
    assert_eq!(report["shadow"].as_array().unwrap().len(), 1);
    assert_eq!(report["zombie"].as_array().unwrap().len(), 2);
    let unused = report["unused"].as_array().unwrap();
    assert_eq!(unused.len(), 19 - 3, "{unused:?}");
    assert!(unused
        .iter()
        .any(|u| u["method"] == "DELETE" && u["path_template"] == "/api/v3/pet/{petId}"));
    assert_eq!(
        report["drift"][0]["undeclared"],
        json!([{"kind": "query_parameter", "name": "debug"}, {"kind": "response_field", "name": "ssn"}])
    );
    let f = s.get_json("/api/v1/findings", READ);
    let codes = |code: &str| {
        f.as_array()
            .unwrap()
            .iter()
            .filter(|x| x["code"] == code)
            .cloned()
            .collect::<Vec<_>>()
    };
    // One no_authentication per endpoint (5), however many batches reported it.
    assert_eq!(codes("no_authentication").len(), 5);
    assert_eq!(codes("no_authentication")[0]["owasp"], "API2:2023");
    assert_eq!(codes("shadow_endpoint")[0]["owasp"], "API9:2023");
    assert_eq!(codes("zombie_endpoint")[0]["severity"], "high");
    assert_eq!(codes("undeclared_response_field")[0]["detail"], "ssn");
    assert_eq!(codes("undeclared_response_field")[0]["owasp"], "API3:2023");
    assert_eq!(codes("unused_operation").len(), 16);
    // The most severe first.
    assert_eq!(f[0]["severity"], "high");
    let high = s.get_json("/api/v1/findings?severity=high", READ);
    assert!(high
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["severity"] == "high"));
    // Sending the same traffic again (new windows) adds no finding.
    let before = f.as_array().unwrap().len();
    assert_eq!(
        s.post_batch(
            P2,
            &batch(
                "node-2",
                "0",
                1_700_000_100_000,
                vec![endpoint(
                    "petstore",
                    "GET",
                    "/api/v3/admin/users",
                    "inferred"
                )]
            )
        )
        .status,
        200
    );
    assert_eq!(
        s.get_json("/api/v1/findings", READ)
            .as_array()
            .unwrap()
            .len(),
        before
    );
}

#[test]
fn the_reconstructed_openapi_validates_as_3_1_and_covers_the_observed_operations() {
    let validator = openapi_validator();
    let s = server("openapi", &[]);
    petstore_traffic(&s);
    let mut post = endpoint("petstore", "POST", "/api/v3/pet", "declared");
    post["request_content_types"] = json!(["application/json"]);
    post["query_params"] = json!(["dry_run"]);
    post["request_shape"] = json!({"type": ["object"], "properties": {"name": {"type": ["string"]}, "photoUrls": {"type": ["array"], "items": {"type": ["string"]}}}});
    let dup = endpoint("petstore", "GET", "/api/v3/a/{id}/b/{id}", "inferred");
    assert_eq!(
        s.post_batch(
            P1,
            &batch("node-1", "1", 1_700_000_000_000, vec![post, dup])
        )
        .status,
        200
    );
    let r = s.request(
        "GET",
        "/api/v1/openapi/petstore",
        &[("authorization", "Bearer read-token")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-disposition")
        .unwrap()
        .contains("petstore.openapi.json"));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v3/pet/{petId}",
        "/api/v3/store/inventory",
        "/api/v3/admin/users",
        "/api/v3/pet",
        "/api/v3/a/{id}/b/{id_2}",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    let get = &doc["paths"]["/api/v3/pet/{petId}"]["get"];
    assert_eq!(
        get["parameters"][0],
        json!({"name": "petId", "in": "path", "required": true, "schema": {"type": "string"}})
    );
    assert_eq!(get["parameters"][1]["name"], "debug");
    assert_eq!(
        get["responses"]["2XX"]["content"]["application/json"]["schema"]["properties"]["ssn"],
        json!({"type": "string"})
    );
    let body = &doc["paths"]["/api/v3/pet"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        body["properties"]["photoUrls"],
        json!({"type": "array", "items": {"type": "string"}})
    );
    let file = s.dir.join("observed.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = std::process::Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator is not a rubber stamp: a broken path parameter is refused.
    let mut broken = doc.clone();
    broken["paths"]["/api/v3/pet/{petId}"]["get"]["parameters"] = json!([]);
    std::fs::write(&file, broken.to_string()).unwrap();
    let out = std::process::Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_restart_loses_nothing_acknowledged_and_still_knows_the_retries() {
    restart_checks(None);
}

fn restart_checks(store: Option<String>) {
    let mut s = server_on(store, "restart", &[]);
    let batches: Vec<Value> = (0..20)
        .map(|i| {
            batch(
                "node-r",
                "0",
                1_700_000_000_000 + i * 5000,
                vec![endpoint("svc", "GET", &format!("/r/{}", i % 5), "inferred")],
            )
        })
        .collect();
    for b in &batches[..10] {
        assert_eq!(s.post_batch(P1, b).status, 200);
    }
    s.restart(); // SIGKILL: no graceful shutdown.
    for b in &batches {
        assert_eq!(s.post_batch(P1, b).status, 200);
    }
    let e = s.get_json("/api/v1/endpoints", READ);
    assert_eq!(e.as_array().unwrap().len(), 5);
    let total: u64 = e
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 20 * 3, "each of the 20 batches once");
    assert_eq!(
        s.get_json("/api/v1/summary", READ)["store_schema_version"],
        2
    );
}

#[test]
fn the_page_renders_the_inventory_escapes_what_it_shows_and_needs_the_token() {
    let s = server("page", &["--retired-prefix", "/v1/"]);
    let mut e = endpoint("shop", "GET", "/v1/items/<b>x</b>", "inferred");
    e["data_classes"]["response"] = json!(["email"]);
    assert_eq!(
        s.post_batch(
            P1,
            &batch(
                "node-1",
                "0",
                1_700_000_000_000,
                vec![e, endpoint("shop", "GET", "/v2/items", "inferred")]
            )
        )
        .status,
        200
    );
    let r = s.request("GET", "/", &[], b"");
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    let r = s.request(
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"token=read-token",
    );
    assert_eq!(r.status, 303);
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = s.request("GET", "/", &[("cookie", &cookie)], b"").text();
    assert!(page.contains("<table id=\"inventory\">"));
    assert!(page.contains("&lt;b&gt;x&lt;/b&gt;") && !page.contains("<b>x</b>"));
    assert!(page.contains("class=\"v-zombie\">zombie"));
    let filtered = s
        .request("GET", "/?data_class=email", &[("cookie", &cookie)], b"")
        .text();
    assert_eq!(filtered.matches("<tr data-verdict").count(), 1);
    let findings = s
        .request("GET", "/findings", &[("cookie", &cookie)], b"")
        .text();
    assert!(findings.contains("API9:2023") && findings.contains("zombie_endpoint"));
    let report = s
        .request("GET", "/report", &[("cookie", &cookie)], b"")
        .text();
    assert!(report.contains("Zombie APIs (retired or deprecated, still called): 1"));
    assert_eq!(
        s.request("GET", "/endpoints/1", &[("cookie", &cookie)], b"")
            .status,
        200
    );
    assert_eq!(
        s.request("GET", "/endpoints/999", &[("cookie", &cookie)], b"")
            .status,
        404
    );
}

#[test]
fn a_non_loopback_listener_needs_tokens() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apiguard"))
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--store",
            "sqlite::memory:",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--read-token"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apiguard"))
        .args([
            "serve",
            "--store",
            "postgres://apiguard@127.0.0.1:9/x?connect_timeout=2",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    // A PostgreSQL store that cannot be reached at start: the service says so and exits (port 9
    // on loopback: nothing listens there).
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("PostgreSQL") && err.contains("connect"),
        "{err}"
    );
}

#[test]
fn overload_answers_503_or_429_with_retry_after_and_loses_nothing_acknowledged() {
    // One commit a second, two batches may wait: a burst of twelve overflows the queue.
    let s = server(
        "overload",
        &[
            "--queue",
            "2",
            "--workers",
            "16",
            "--commit-delay",
            "1s",
            "--per-proxy-queue",
            "100",
        ],
    );
    let batches: Vec<Value> = (0..12)
        .map(|i| {
            batch(
                "node-o",
                "0",
                1_700_000_000_000 + i * 5000,
                vec![endpoint("svc", "GET", "/o", "inferred")],
            )
        })
        .collect();
    let first: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = batches
            .iter()
            .map(|b| {
                scope.spawn(|| {
                    let r = s.post_batch(P1, b);
                    (r.status, r.header("retry-after").map(str::to_string))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refused: Vec<usize> = first
        .iter()
        .enumerate()
        .filter(|(_, r)| r.0 == 503)
        .map(|(i, _)| i)
        .collect();
    assert!(!refused.is_empty(), "{first:?}");
    for (status, retry_after) in &first {
        assert!(
            *status == 200 || (*status == 503 && retry_after.as_deref() == Some("1")),
            "{first:?}"
        );
    }
    let acknowledged = first.iter().filter(|r| r.0 == 200).count() as u64;
    assert_eq!(
        s.get_json("/api/v1/endpoints", READ)[0]["count"],
        acknowledged * 3
    );
    // The proxy retries what was refused, one at a time: everything arrives, once.
    for i in refused {
        assert_eq!(s.post_batch(P1, &batches[i]).status, 200);
    }
    assert_eq!(s.get_json("/api/v1/endpoints", READ)[0]["count"], 12 * 3);
    let m = s
        .request(
            "GET",
            "/metrics",
            &[("authorization", "Bearer read-token")],
            b"",
        )
        .text();
    assert!(
        !m.contains("apiguard_serve_rejects_total{reason=\"overloaded\"} 0"),
        "{m}"
    );
}

#[test]
fn one_proxy_with_too_many_batches_waiting_gets_429() {
    let s = server(
        "per-proxy",
        &[
            "--workers",
            "16",
            "--commit-delay",
            "1s",
            "--per-proxy-queue",
            "1",
        ],
    );
    let batches: Vec<Value> = (0..6)
        .map(|i| {
            batch(
                "node-p",
                "0",
                1_700_000_000_000 + i * 5000,
                vec![endpoint("svc", "GET", "/p", "inferred")],
            )
        })
        .collect();
    let statuses: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = batches
            .iter()
            .map(|b| {
                scope.spawn(|| {
                    let r = s.post_batch(P1, b);
                    (r.status, r.header("retry-after").map(str::to_string))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses
            .iter()
            .any(|r| r.0 == 429 && r.1.as_deref() == Some("1")),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|r| r.0 == 200), "{statuses:?}");
    // Another proxy is not held back by this one.
    assert_eq!(s.post_batch(P2, &batches[0]).status, 200);
}

#[test]
fn killed_mid_ingest_it_keeps_every_acknowledged_batch_and_never_half_a_batch() {
    crash_checks(None);
}

fn crash_checks(store: Option<String>) {
    let mut s = server_on(store, "crash", &["--workers", "8"]);
    // Each batch carries two endpoints with the same count: a half-stored batch would show as
    // different totals for the two.
    let make = |i: u64| {
        batch(
            "node-c",
            "0",
            1_700_000_000_000 + i * 5000,
            vec![
                endpoint("svc", "GET", "/left", "inferred"),
                endpoint("svc", "GET", "/right", "inferred"),
            ],
        )
    };
    let port = s.port;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acked: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    let mut i = t;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 4000 {
                        let body = make(i).to_string();
                        match request(
                            port,
                            "POST",
                            "/v1/apiguard",
                            &[
                                ("authorization", "Bearer token-proxy-1"),
                                ("content-type", "application/json"),
                            ],
                            body.as_bytes(),
                        ) {
                            Ok(r) if r.status == 200 => mine.push(i),
                            Ok(r) => panic!("{} {}", r.status, r.text()),
                            Err(_) => break, // the service is gone
                        }
                        i += 4;
                    }
                    mine
                })
            })
            .collect();
        // Let some batches through, then SIGKILL the service while the clients keep posting.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while s
            .try_request(
                "GET",
                "/metrics",
                &[("authorization", "Bearer read-token")],
                b"",
            )
            .map(|r| {
                !r.text()
                    .contains("apiguard_serve_batches_total{result=\"accepted\"} 0")
            })
            .map(|started| !started)
            .unwrap_or(true)
        {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        s.kill();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(!acked.is_empty());
    s.restart();
    let e = s.get_json("/api/v1/endpoints", READ);
    let count = |p: &str| find(&e, "GET", p)["count"].as_u64().unwrap();
    assert_eq!(
        count("/left"),
        count("/right"),
        "a batch is stored whole or not at all"
    );
    assert!(
        count("/left") >= acked.len() as u64 * 3,
        "every acknowledged batch survived: {} < {}",
        count("/left"),
        acked.len() * 3
    );
    // Resending everything acknowledged changes nothing: the ids survived with the data.
    for i in acked.iter().take(50) {
        assert_eq!(s.post_batch(P1, &make(*i)).json()["duplicate"], true);
    }
}

/// The checks above (ingest, merge, restart, killed mid-ingest), on a PostgreSQL store (a server of
/// the test's own, one database each), then two replicas sharing one database.
#[test]
fn postgres_store_passes_the_same_checks_and_replicas_share_one_inventory() {
    let pg = Postgres::start("checks");
    ingest_checks(Some(pg.database("ingest")));
    merge_checks(Some(pg.database("merge")));
    restart_checks(Some(pg.database("restart")));
    crash_checks(Some(pg.database("crash")));

    // Two replicas on one database; the migration ran once.
    let url = pg.database("replicas");
    let a = server_on(Some(url.clone()), "replica-a", &[]);
    let b = server_on(Some(url.clone()), "replica-b", &[]);
    // Overlapping batches from both proxies, half to each replica, at the same time: every batch
    // lands on 4 shared endpoints, and every batch is also retried on the other replica.
    let batches: Vec<Value> = (0..24u64)
        .map(|i| {
            batch(
                &format!("node-{}", i % 3),
                "0",
                1_700_000_000_000 + i * 5000,
                (0..4)
                    .map(|j| endpoint("shop", "GET", &format!("/shared/{j}"), "inferred"))
                    .collect(),
            )
        })
        .collect();
    std::thread::scope(|scope| {
        for (n, replica) in [&a, &b].into_iter().enumerate() {
            let batches = &batches;
            let other = if n == 0 { &b } else { &a };
            scope.spawn(move || {
                for (i, x) in batches.iter().enumerate() {
                    let token = if i % 2 == 0 { P1 } else { P2 };
                    let (first, retry) = if (i + n) % 2 == 0 {
                        (replica, other)
                    } else {
                        (other, replica)
                    };
                    let r = first.post_batch(token, x);
                    assert_eq!(r.status, 200, "{}", r.text());
                    let r = retry.post_batch(token, x);
                    assert_eq!(r.status, 200, "{}", r.text());
                }
            });
        }
    });
    let ea = a.get_json("/api/v1/endpoints", READ);
    let eb = b.get_json("/api/v1/endpoints", READ);
    assert_eq!(ea, eb, "both replicas show the same inventory");
    assert_eq!(ea.as_array().unwrap().len(), 4, "{ea:#}");
    for e in ea.as_array().unwrap() {
        // 24 distinct batches (each posted four times in all), 3 requests each.
        assert_eq!(e["count"], 24 * 3, "{e:#}");
        assert_eq!(
            e["proxies"],
            json!([
                "proxy1/node-0",
                "proxy1/node-1",
                "proxy1/node-2",
                "proxy2/node-0",
                "proxy2/node-1",
                "proxy2/node-2"
            ])
        );
    }
    assert_eq!(
        a.get_json("/api/v1/summary", READ)["batch_ids_remembered"],
        24
    );
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let migrations: i64 = c
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(migrations, 2, "each migration once");
}

/// PostgreSQL stops in the middle of ingestion: the service answers a retryable 503 with
/// `Retry-After` (never 200 for what it did not store), and once PostgreSQL is back ingestion
/// resumes on a new connection with nothing acknowledged lost and nothing counted twice.
#[test]
fn postgres_down_then_up_answers_503_and_loses_nothing_acknowledged() {
    let pg = Postgres::start("down");
    let s = server_on(Some(pg.database("inventory")), "pg-down", &[]);
    let total = 60u64;
    let batches: Vec<Value> = (0..total)
        .map(|i| {
            batch(
                "node-d",
                "0",
                1_700_000_000_000 + i * 5000,
                vec![endpoint("svc", "GET", &format!("/d/{}", i % 6), "inferred")],
            )
        })
        .collect();
    let acked = std::sync::atomic::AtomicU64::new(0);
    let unavailable = std::sync::atomic::AtomicU64::new(0);
    // The sender holds its 11th batch until PostgreSQL is stopped: however fast ingestion is,
    // the rest is sent during the outage.
    let stopped = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for (i, b) in batches.iter().enumerate() {
                if i == 10 {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                    while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "PostgreSQL not stopped"
                        );
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                loop {
                    let r = s.post_batch(P1, b);
                    if r.status == 200 {
                        acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                    assert_eq!(r.status, 503, "{}", r.text());
                    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
                    assert!(after >= 1);
                    unavailable.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    assert!(
                        std::time::Instant::now() < deadline,
                        "ingestion did not resume"
                    );
                    // Retry sooner than Retry-After asks, to keep the test short.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        });
        // Mid-ingest: stop PostgreSQL (every connection closed), keep it down, start it again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while acked.load(std::sync::atomic::Ordering::SeqCst) < 10 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        pg.down("fast");
        stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while unavailable.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            assert!(std::time::Instant::now() < deadline, "no 503 while down");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // While it is down, the read API is unavailable too (503, retryable), not empty.
        let r = s.request(
            "GET",
            "/api/v1/endpoints",
            &[("authorization", "Bearer read-token")],
            b"",
        );
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.header("retry-after").is_some());
        let during = acked.load(std::sync::atomic::Ordering::SeqCst);
        pg.up();
        assert!(during < total, "the outage came too late to matter");
    });
    assert_eq!(acked.load(std::sync::atomic::Ordering::SeqCst), total);
    let e = s.get_json("/api/v1/endpoints", READ);
    assert_eq!(e.as_array().unwrap().len(), 6);
    let sum: u64 = e
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["count"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, total * 3, "each acknowledged batch exactly once");
    let m = s
        .request(
            "GET",
            "/metrics",
            &[("authorization", "Bearer read-token")],
            b"",
        )
        .text();
    assert!(!m.contains("apiguard_serve_store_errors_total 0"), "{m}");
}

#[test]
fn list_endpoints_page_with_limit_and_a_next_link() {
    let s = server("pages", &[]);
    let paths = ["/a", "/b/{id}", "/c", "/d", "/e"];
    let b = batch(
        "node-p",
        "1",
        1_700_000_000_000,
        paths
            .iter()
            .map(|p| endpoint("shop", "GET", p, "inferred"))
            .collect(),
    );
    assert_eq!(s.post_batch(P1, &b).status, 200);
    let auth = [("authorization", "Bearer read-token")];
    let mut url = "/api/v1/endpoints?service=shop&limit=2".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = s.request("GET", &url, &auth, b"");
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        pages += 1;
        for e in r.json().as_array().unwrap() {
            seen.push(e["path_template"].as_str().unwrap().to_string());
        }
        let Some(link) = r.header("link") else { break };
        let next = link
            .strip_prefix('<')
            .and_then(|l| l.strip_suffix(">; rel=\"next\""))
            .unwrap_or_else(|| panic!("{link}"));
        assert!(
            next.starts_with("/api/v1/endpoints?service=shop&limit=2&cursor="),
            "{next}"
        );
        url = next.to_string();
        if pages == 2 {
            // A new endpoint sorting after the cursor arrives between pages: it is on a later page.
            let late = batch(
                "node-p",
                "1",
                1_700_000_005_000,
                vec![endpoint("shop", "GET", "/f", "inferred")],
            );
            assert_eq!(s.post_batch(P1, &late).status, 200);
        }
        assert!(pages < 10);
    }
    assert_eq!(seen, ["/a", "/b/{id}", "/c", "/d", "/e", "/f"]);
    assert_eq!(pages, 3);
    // Findings page the same way; a bad limit or cursor is a 400.
    let all = s
        .get_json("/api/v1/findings", READ)
        .as_array()
        .unwrap()
        .len();
    assert!(all >= 6, "{all}");
    let r = s.request("GET", "/api/v1/findings?limit=5", &auth, b"");
    assert_eq!(r.json().as_array().unwrap().len(), 5);
    assert!(r.header("link").unwrap().contains("cursor="));
    for bad in ["limit=0", "limit=5000", "cursor=nothex"] {
        let r = s.request("GET", &format!("/api/v1/endpoints?{bad}"), &auth, b"");
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
}

/// The retention sweep through the running service: endpoints unseen for `--retention` and batch
/// ids older than `--dedup-window` go, the rest stays. On a store given (None: SQLite).
fn sweep_checks(store: Option<String>) {
    let s = server_on(
        store,
        "sweep",
        &[
            "--retention",
            "1h",
            "--dedup-window",
            "5s",
            "--sweep-every",
            "1s",
        ],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Seen two hours ago (older than the retention), and seen now.
    let old = batch(
        "node-s",
        "1",
        now - 7_200_000,
        vec![endpoint("shop", "GET", "/old", "inferred")],
    );
    let mut recent = batch(
        "node-s",
        "1",
        now - 5_000,
        vec![endpoint("shop", "GET", "/recent", "inferred")],
    );
    recent["endpoints"][0]["first_seen_ms"] = json!(now - 4_000);
    recent["endpoints"][0]["last_seen_ms"] = json!(now - 3_000);
    let mut old = old;
    old["endpoints"][0]["first_seen_ms"] = json!(now - 7_200_000);
    old["endpoints"][0]["last_seen_ms"] = json!(now - 7_100_000);
    assert_eq!(s.post_batch(P1, &old).status, 200);
    assert_eq!(s.post_batch(P1, &recent).status, 200);
    assert_eq!(s.post_batch(P1, &recent).json()["duplicate"], true);
    // Within 20 s (a sweep every second; batch ids go 5 s after they came): /old gone, /recent kept, the
    // batch ids forgotten.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let e = s.get_json("/api/v1/endpoints", READ);
        let paths: Vec<&str> = e
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["path_template"].as_str().unwrap())
            .collect();
        let ids = s.get_json("/api/v1/summary", READ)["batch_ids_remembered"].clone();
        if paths == ["/recent"] && ids == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not swept: {paths:?}, {ids} batch ids"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let m = s
        .request(
            "GET",
            "/metrics",
            &[("authorization", "Bearer read-token")],
            b"",
        )
        .text();
    assert!(m.contains("apiguard_serve_endpoints_swept_total 1"), "{m}");
    // Its id forgotten, the same batch counts again.
    assert_eq!(s.post_batch(P1, &recent).json()["duplicate"], false);
    assert_eq!(
        find(&s.get_json("/api/v1/endpoints", READ), "GET", "/recent")["count"],
        6
    );
}

#[test]
fn retention_sweeps_sqlite() {
    sweep_checks(None);
}

#[test]
fn retention_sweeps_postgres() {
    let pg = Postgres::start("sweep");
    sweep_checks(Some(pg.database("sweep")));
}
