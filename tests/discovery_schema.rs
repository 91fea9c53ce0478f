//! Every emitted batch validates against `docs/events.schema.json` (with apiguard's own JSON
//! Schema 2020-12 validator); the OTLP encoding carries the same endpoints as well-formed OTLP/JSON.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic fails the test"
)]

mod discovery_common;

use apiguard::discovery::{Discovery, DiscoveryWorker};
use apiguard::schema::{Draft, Options, Schema};
use discovery_common::*;
use serde_json::{json, Value};

fn batch_schema() -> Schema {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/events.schema.json"
    ))
    .unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    Schema::compile(&doc, Options::new(Draft::Draft2020)).unwrap()
}

// {"alg":"RS256"} . {"iss":"https://issuer.example"} . sig
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.c2ln";

/// Traffic that exercises every API type, credential kind and most findings.
fn traffic(d: &Discovery, w: &mut DiscoveryWorker, now: u64) {
    let bearer = format!("Bearer {JWT}");
    let exchanges = vec![
        Exchange::get("/api/v3/pet/42?fields=name&api_key=k")
            .header("authorization", &bearer)
            .response_body(r#"{"id":42,"name":"rex","tags":[{"id":1,"name":"a"}],"owner":{"email":"x@example.com"}}"#)
            .response_header("server", "nginx/1.25.3")
            .classes(&["email"]),
        Exchange::get("/graphql")
            .method("POST")
            .body("application/json", r#"{"query":"mutation AddPet($n: String) { addPet(name: $n) { id } }","operationName":"AddPet","variables":{"n":"x"}}"#),
        Exchange::get("/rpc")
            .method("POST")
            .body("application/json", r#"[{"jsonrpc":"2.0","method":"sum","params":[1,2],"id":1},{"jsonrpc":"2.0","method":"notify"}]"#),
        Exchange::get("/StockQuote")
            .method("POST")
            .header("soapaction", "\"urn:GetQuote\"")
            .body("text/xml", "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><GetQuote/></soap:Body></soap:Envelope>"),
        Exchange::get("/RPC2")
            .method("POST")
            .body("text/xml", "<?xml version=\"1.0\"?><methodCall><methodName>examples.getStateName</methodName></methodCall>"),
        Exchange::get("/helloworld.Greeter/SayHello")
            .method("POST")
            .header("content-type", "application/grpc")
            .response_header("content-type", "application/grpc"),
        Exchange::get("/chat").header("upgrade", "websocket").status("101"),
        Exchange::get("/events").response_header("content-type", "text/event-stream"),
        Exchange::get("/login")
            .header(":scheme", "http")
            .header("authorization", "Basic dXNlcjpwYXNz")
            .header("origin", "https://evil.example.net")
            .response_header("access-control-allow-origin", "https://evil.example.net")
            .response_header("access-control-allow-credentials", "true"),
        Exchange::get("/orders/9")
            .header("cookie", "sessionid=abc")
            .status("500")
            .response_header("content-type", "text/plain")
            .response_body("ERROR: syntax error at or near \"FROM\"\n    at Object.<anonymous> (/app/index.js:10:5)"),
        Exchange::get("/reset").status("0"),
        Exchange::get("/subscriptions")
            .header("upgrade", "websocket")
            .header("sec-websocket-protocol", "graphql-transport-ws")
            .status("101"),
        Exchange::get("/jsonrpc-batch")
            .method("POST")
            .body("application/json", r#"[{"jsonrpc":"2.0","method":"sum","id":1},{"foo":"boo"}]"#),
    ];
    for ex in &exchanges {
        w.record(d, ex.observe(d), now);
    }
}

#[test]
fn every_emitted_batch_validates_against_the_published_schema() {
    let schema = batch_schema();
    // A small table and small batches: overflow and multi-part windows are exercised too.
    let d =
        discovery(json!({"max_endpoints": 8, "max_batch_bytes": 4096, "max_queue_bytes": 1048576}));
    let mut w = DiscoveryWorker::new(&d, source(), 1_700_000_000_000);
    traffic(&d, &mut w, 1_700_000_000_100);
    traffic(&d, &mut w, 1_700_000_000_200);
    w.flush(&d, 1_700_000_005_000);
    let batches = deliver_all(&mut w, &d, 1_700_000_005_000);
    assert!(batches.len() > 1, "several parts");
    for b in &batches {
        if let Err((violations, _)) = schema.validate(b, 20) {
            panic!("{violations:?}\n{b:#}");
        }
    }
    let all = endpoints(&batches);
    assert_eq!(all.len(), 8);
    let first = &batches[0];
    assert_eq!(first["part"]["index"], 0);
    assert!(first["overflowed"].as_u64().unwrap() > 0);
    assert_eq!(first["overflow"]["count"], first["overflowed"]);
    let types: Vec<&str> = all
        .iter()
        .map(|e| e["api_type"].as_str().unwrap())
        .collect();
    for t in [
        "rest",
        "graphql",
        "jsonrpc",
        "soap11",
        "xmlrpc",
        "grpc",
        "websocket",
        "sse",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
}

#[test]
fn graphql_over_websocket_and_mixed_jsonrpc_batches_are_reported() {
    let d = discovery(json!({}));
    let mut w = DiscoveryWorker::new(&d, source(), 0);
    traffic(&d, &mut w, 1);
    w.flush(&d, 2);
    let batches = deliver_all(&mut w, &d, 2);
    let all = endpoints(&batches);
    let ws = all
        .iter()
        .find(|e| e["path_template"] == "/subscriptions")
        .unwrap();
    assert_eq!(ws["api_type"], "websocket");
    assert_eq!(ws["carried_api_type"], "graphql");
    let plain = all.iter().find(|e| e["path_template"] == "/chat").unwrap();
    assert!(plain.get("carried_api_type").is_none());
    let rpc = all
        .iter()
        .find(|e| e["path_template"] == "/jsonrpc-batch")
        .unwrap();
    assert_eq!(rpc["api_type"], "jsonrpc");
    assert!(rpc["findings"]
        .as_array()
        .unwrap()
        .contains(&json!("jsonrpc_invalid_batch_member")));
}

#[test]
fn the_schema_refuses_what_the_documentation_does_not_allow() {
    let schema = batch_schema();
    let d = discovery(json!({}));
    let mut w = DiscoveryWorker::new(&d, source(), 0);
    traffic(&d, &mut w, 1);
    w.flush(&d, 2);
    let good = deliver_all(&mut w, &d, 2).remove(0);
    assert!(schema.is_valid(&good));
    let mut bad = Vec::new();
    let mut b = good.clone();
    b["schema_version"] = json!(2);
    bad.push(b);
    let mut b = good.clone();
    b["endpoints"][0]["api_type"] = json!("corba");
    bad.push(b);
    let mut b = good.clone();
    b["endpoints"][0].as_object_mut().unwrap().remove("count");
    bad.push(b);
    let mut b = good.clone();
    b["endpoints"][0]["value"] = json!("secret");
    bad.push(b);
    let mut b = good.clone();
    b["endpoints"][0]["request_shape"] = json!({"type": ["object"], "example": 1});
    bad.push(b);
    for b in bad {
        assert!(!schema.is_valid(&b), "{b}");
    }
}

#[test]
fn values_never_reach_the_batch() {
    let d = discovery(json!({}));
    let mut w = DiscoveryWorker::new(&d, source(), 0);
    traffic(&d, &mut w, 1);
    w.flush(&d, 2);
    let text = deliver_all(&mut w, &d, 2)
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    for secret in [
        "rex",
        "x@example.com",
        "dXNlcjpwYXNz",
        "abc",
        JWT,
        "sessionid=",
        "FROM",
        "index.js",
        "evil.example",
    ] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
    assert!(
        text.contains("https://issuer.example"),
        "the issuer is kept by design"
    );
}

#[test]
fn the_otlp_encoding_carries_every_endpoint_as_a_log_record() {
    let d = discovery(
        json!({"collector": {"cluster": "collector", "uri": "http://otel:4318/v1/logs", "encoding": "otlp"}}),
    );
    let mut w = DiscoveryWorker::new(&d, source(), 1_000);
    traffic(&d, &mut w, 1_500);
    w.flush(&d, 6_000);
    let batches = deliver_all(&mut w, &d, 6_000);
    assert_eq!(batches.len(), 1);
    let rl = &batches[0]["resourceLogs"][0];
    let resource = rl["resource"]["attributes"].as_array().unwrap();
    assert!(
        resource.contains(&json!({"key": "service.name", "value": {"stringValue": "apiguard"}}))
    );
    let scope = &rl["scopeLogs"][0];
    assert_eq!(scope["scope"]["name"], "apiguard.discovery");
    let records = scope["logRecords"].as_array().unwrap();
    assert_eq!(
        records.len(),
        1 + 13,
        "one batch record and one per endpoint"
    );
    for r in records {
        assert!(r["timeUnixNano"].as_str().unwrap().parse::<u128>().is_ok());
        assert_eq!(r["severityNumber"], 9);
        for a in r["attributes"].as_array().unwrap() {
            check_any_value(&a["value"]);
            assert!(a["key"].is_string());
        }
        check_any_value(&r["body"]);
    }
    assert_eq!(records[1]["timeUnixNano"], "1500000000");
    let events: Vec<&Value> = records
        .iter()
        .map(|r| &r["attributes"].as_array().unwrap()[0]["value"]["stringValue"])
        .collect();
    assert_eq!(events[0], "apiguard.discovery.batch");
    assert!(events[1..]
        .iter()
        .all(|e| *e == "apiguard.discovery.endpoint"));
}

/// An OTLP AnyValue: exactly one of the value members, ints as decimal strings.
fn check_any_value(v: &Value) {
    let obj = v.as_object().unwrap();
    assert!(obj.len() <= 1, "{v}");
    match obj.iter().next() {
        None => {}
        Some((k, inner)) => match k.as_str() {
            "stringValue" => assert!(inner.is_string()),
            "boolValue" => assert!(inner.is_boolean()),
            "intValue" => assert!(inner.as_str().unwrap().parse::<i64>().is_ok(), "{v}"),
            "doubleValue" => assert!(inner.is_number()),
            "arrayValue" => inner["values"]
                .as_array()
                .unwrap()
                .iter()
                .for_each(check_any_value),
            "kvlistValue" => inner["values"].as_array().unwrap().iter().for_each(|kv| {
                assert!(kv["key"].is_string());
                check_any_value(&kv["value"]);
            }),
            other => panic!("unknown AnyValue member {other}"),
        },
    }
}
