//! `apiguard policy from-inventory`: batches produced by the filter's own discovery code (the same
//! path the e2e tests drive through Envoy) become a report-mode policy that `apiguard check` and the
//! filter accept, with JWT where bearer tokens were seen, a schema from the request shape and
//! redaction where data classes were seen.

mod common;

#[path = "../../tests/discovery_common/mod.rs"]
mod discovery_common;

use apiguard::config::Policy;
use apiguard::discovery::DiscoveryWorker;
use common::{apiguard, check_json, scratch};
use discovery_common::{deliver_all, discovery, source, Exchange};
use serde_json::{json, Value};

// {"alg":"RS256"} . {"iss":"https://issuer.example"} . sig
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.c2ln";

fn batches() -> Vec<Value> {
    let d = discovery(json!({}));
    let mut w = DiscoveryWorker::new(&d, source(), 0);
    let bearer = format!("Bearer {JWT}");
    let exchanges = [
        Exchange::get("/shop/pets/42")
            .header("authorization", &bearer)
            .response_body(r#"{"id":42,"name":"rex","owner":{"email":"x@example.com"}}"#)
            .classes(&["email"]),
        Exchange::get("/shop/pets/43").header("authorization", &bearer),
        Exchange::get("/shop/orders")
            .method("POST")
            .header("authorization", &bearer)
            .body("application/json", r#"{"sku":"a-1","qty":2,"tags":["x"]}"#),
        Exchange::get("/health"),
    ];
    for (i, ex) in exchanges.iter().enumerate() {
        w.record(&d, ex.observe(&d), 100 + i as u64);
    }
    assert_eq!(w.flush(&d, 1_000), 1);
    deliver_all(&mut w, &d, 1_000)
}

#[test]
fn batches_become_a_report_mode_policy_the_filter_accepts() {
    let dir = scratch("from-inventory");
    let input = dir.join("batches.jsonl");
    let lines: Vec<String> = batches().iter().map(|b| b.to_string()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.join("policy.json");
    let r = apiguard(&[
        "policy",
        "from-inventory",
        "-o",
        out.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    Policy::from_plugin_configuration(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (code, findings) = check_json(&out);
    assert_eq!(code, 0, "{findings:#?}");
    assert!(findings.iter().any(|f| f["rule"] == "policy/report-mode"));

    assert_eq!(policy["mode"], "report");
    assert_eq!(
        policy["jwt_providers"]["idp0"]["issuer"],
        "https://issuer.example"
    );
    assert_eq!(
        policy["jwt_providers"]["idp0"]["remote_jwks"]["uri"],
        "https://issuer.example/.well-known/jwks.json"
    );
    let rules = policy["rules"].as_array().unwrap();
    let rule = |template: &str| {
        rules
            .iter()
            .find(|r| r["match"]["template"] == template)
            .unwrap_or_else(|| panic!("no rule for {template}: {text}"))
    };
    // Two pet ids are one endpoint, with a JWT requirement and report-only redaction of e-mails.
    let pets = rule("/shop/pets/{id}");
    assert_eq!(pets["jwt"], json!({"provider": "idp0"}));
    let redaction = &policy["redaction"][pets["redaction"].as_str().unwrap()];
    assert_eq!(redaction["action"], "report");
    assert_eq!(redaction["detectors"], json!(["email"]));
    // The POST's body shape is its schema.
    let orders = rule("/shop/orders");
    assert_eq!(orders["match"]["methods"], json!(["POST"]));
    let schema = &policy["schemas"][orders["schema"].as_str().unwrap()]["json_schema"];
    assert_eq!(schema["properties"]["qty"]["type"], json!(["integer"]));
    assert_eq!(
        schema["properties"]["tags"]["items"]["type"],
        json!(["string"])
    );
    // No credential seen: no requirement.
    assert!(rule("/health").get("jwt").is_none());

    // YAML output says the same.
    let r = apiguard(&[
        "policy",
        "from-inventory",
        "--format",
        "yaml",
        input.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0);
    let yaml = dir.join("policy.yaml");
    std::fs::write(&yaml, &r.stdout).unwrap();
    assert_eq!(check_json(&yaml).0, 0);
}

#[test]
fn a_batch_that_breaks_the_event_schema_is_refused() {
    let dir = scratch("from-inventory-bad");
    let mut batch = batches().remove(0);
    batch["endpoints"][0]["count"] = json!("many");
    let input = dir.join("bad.json");
    std::fs::write(&input, json!([batch]).to_string()).unwrap();
    let r = apiguard(&["policy", "from-inventory", input.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("does not match docs/events.schema.json at /endpoints/0/count"),
        "{}",
        r.stderr
    );
    assert_eq!(apiguard(&["policy", "from-inventory"]).code, 2);
}
