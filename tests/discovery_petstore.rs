//! The Swagger Petstore v3 document as the declared inventory: declared, shadow and zombie
//! verdicts for a mixed traffic sample, including path-normalisation tricks.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic fails the test"
)]

mod discovery_common;

use apiguard::discovery::DiscoveryWorker;
use discovery_common::*;
use serde_json::{json, Value};

fn petstore_discovery() -> apiguard::discovery::Discovery {
    let mut doc = petstore();
    // The published document deprecates nothing; mark one operation as the spec allows.
    doc["paths"]["/pet/findByTags"]["get"]["deprecated"] = json!(true);
    discovery(json!({"declared_openapi": doc, "retired_prefixes": ["/api/v2/"]}))
}

#[test]
fn mixed_traffic_gets_declared_shadow_and_zombie_verdicts() {
    let d = petstore_discovery();
    let mut w = DiscoveryWorker::new(&d, source(), 1_000);
    // (method, raw path, expected template, expected declaration)
    let sample: &[(&str, &str, &str, &str)] = &[
        ("GET", "/api/v3/pet/42", "/api/v3/pet/{petId}", "declared"),
        ("GET", "/api/v3/pet/43/", "/api/v3/pet/{petId}", "declared"),
        // OpenAPI paths are case-sensitive: a server that folds case serves an undeclared path.
        ("GET", "/API/V3/PET/44", "/api/v3/pet/{id}", "shadow"),
        (
            "GET",
            "/api/v3/store/%2e%2e/pet/45",
            "/api/v3/pet/{petId}",
            "declared",
        ),
        (
            "DELETE",
            "/api/v3//pet///46",
            "/api/v3/pet/{petId}",
            "declared",
        ),
        (
            "GET",
            "/api/v3/pet;jsessionid=0AB1C2/findByStatus?status=sold",
            "/api/v3/pet/findByStatus",
            "declared",
        ),
        (
            "GET",
            "/api/v3/user/login?username=a&password=b",
            "/api/v3/user/login",
            "declared",
        ),
        (
            "GET",
            "/api/v3/user/jane",
            "/api/v3/user/{username}",
            "declared",
        ),
        (
            "POST",
            "/api/v3/store/order",
            "/api/v3/store/order",
            "declared",
        ),
        ("PATCH", "/api/v3/pet/42", "/api/v3/pet/{petId}", "shadow"),
        (
            "GET",
            "/api/v3/admin/users/17",
            "/api/v3/admin/users/{id}",
            "shadow",
        ),
        (
            "GET",
            "/api/v3/internal/Debug/",
            "/api/v3/internal/debug",
            "shadow",
        ),
        ("GET", "/pet/42", "/pet/{id}", "shadow"),
        (
            "GET",
            "/api/v3/pet/findByTags?tags=a",
            "/api/v3/pet/findByTags",
            "zombie",
        ),
        ("GET", "/api/v2/pet/42", "/api/v2/pet/{id}", "zombie"),
        (
            "GET",
            "/api/v3/pet/%2E%2E/%2e%2e/v2/pet/1",
            "/api/v2/pet/{id}",
            "zombie",
        ),
    ];
    for (i, (method, path, _, _)) in sample.iter().enumerate() {
        let obs = Exchange::get(path).method(method).observe(&d);
        w.record(&d, obs, 1_000 + i as u64);
    }
    assert_eq!(w.flush(&d, 2_000), 1);
    let batches = deliver_all(&mut w, &d, 2_000);
    let got = endpoints(&batches);
    let find = |method: &str, template: &str| -> Option<&Value> {
        got.iter()
            .find(|e| e["method"] == method && e["path_template"] == template)
    };
    for (method, path, template, declaration) in sample {
        let e = find(method, template)
            .unwrap_or_else(|| panic!("{method} {path}: no endpoint {template}"));
        assert_eq!(e["declaration"], *declaration, "{method} {path}");
    }
    // Tricks fold into the endpoint they most likely reach: three requests, one entry.
    assert_eq!(find("GET", "/api/v3/pet/{petId}").unwrap()["count"], 3);
    assert_eq!(
        find("GET", "/api/v3/pet/{petId}").unwrap()["template_source"],
        "declared"
    );
    assert_eq!(
        find("GET", "/api/v3/admin/users/{id}").unwrap()["template_source"],
        "inferred"
    );
    // A session id in the path and a password in the query are credentials in the URL.
    for template in ["/api/v3/pet/findByStatus", "/api/v3/user/login"] {
        let findings = find("GET", template).unwrap()["findings"]
            .as_array()
            .unwrap()
            .clone();
        assert!(
            findings.contains(&json!("credentials_in_query")),
            "{template}: {findings:?}"
        );
    }
    assert_eq!(
        find("GET", "/api/v3/pet/findByStatus").unwrap()["query_params"],
        json!(["status"])
    );
    // Ambiguous paths (an encoded dot segment, matrix parameters) mark the endpoint they reached.
    let findings_of = |method: &str, template: &str| -> Vec<Value> {
        find(method, template).unwrap()["findings"]
            .as_array()
            .unwrap()
            .clone()
    };
    for (method, template) in [
        ("GET", "/api/v3/pet/{petId}"),
        ("GET", "/api/v3/pet/findByStatus"),
        ("GET", "/api/v2/pet/{id}"),
    ] {
        assert!(
            findings_of(method, template).contains(&json!("path_confusion")),
            "{method} {template}"
        );
    }
    for (method, template) in [
        ("DELETE", "/api/v3/pet/{petId}"),
        ("GET", "/api/v3/user/login"),
    ] {
        assert!(
            !findings_of(method, template).contains(&json!("path_confusion")),
            "{method} {template}"
        );
    }
    assert_eq!(got.len(), 13);
}

#[test]
fn an_encoded_dot_segment_is_a_path_confusion_finding_not_a_clean_declared_call() {
    let d = petstore_discovery();
    let mut w = DiscoveryWorker::new(&d, source(), 0);
    let obs = Exchange::get("/api/v3/pet/%2e%2e/store/inventory").observe(&d);
    assert_eq!(obs.template, "/api/v3/store/inventory");
    let codes: Vec<&str> = obs.findings().iter().map(|f| f.code()).collect();
    assert!(codes.contains(&"path_confusion"), "{codes:?}");
    w.record(&d, obs, 5);
    // The same call with a clean path has no such finding.
    let clean = Exchange::get("/api/v3/store/inventory").observe(&d);
    assert!(!clean
        .findings()
        .iter()
        .any(|f| f.code() == "path_confusion"));
    w.flush(&d, 10);
    let got = endpoints(&deliver_all(&mut w, &d, 10));
    let e = got
        .iter()
        .find(|e| e["path_template"] == "/api/v3/store/inventory")
        .unwrap();
    assert!(e["findings"]
        .as_array()
        .unwrap()
        .contains(&json!("path_confusion")));
}

#[test]
fn declared_paths_match_case_sensitively_and_head_follows_get() {
    let d = petstore_discovery();
    let upper = Exchange::get("/api/v3/store/Inventory").observe(&d);
    assert_eq!(upper.declaration.as_str(), "shadow");
    let head = Exchange::get("/api/v3/store/inventory")
        .method("HEAD")
        .observe(&d);
    assert_eq!(head.declaration.as_str(), "declared");
    assert_eq!(head.template, "/api/v3/store/inventory");
}

#[test]
fn without_a_document_verdicts_are_unknown_except_retired_prefixes() {
    let d = discovery(json!({"retired_prefixes": ["/v1/"]}));
    let mut w = DiscoveryWorker::new(&d, source(), 0);
    for path in ["/v1/orders/7", "/v2/orders/7"] {
        w.record(&d, Exchange::get(path).observe(&d), 5);
    }
    w.flush(&d, 10);
    let got = endpoints(&deliver_all(&mut w, &d, 10));
    let verdict =
        |t: &str| got.iter().find(|e| e["path_template"] == t).unwrap()["declaration"].clone();
    assert_eq!(verdict("/v1/orders/{id}"), "zombie");
    assert_eq!(verdict("/v2/orders/{id}"), "unknown");
}
