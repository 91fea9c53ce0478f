//! `apiguard check` warns about valid but risky choices, each at the value at fault, and `--strict`
//! and `--allow` change what fails.

mod common;

use common::{apiguard, check_json, scratch};
use serde_json::Value;

/// The (rule, path, line) of every warning for a YAML policy.
fn warnings(name: &str, yaml: &str) -> Vec<(String, String, u64)> {
    let dir = scratch(&format!("warn-{name}"));
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let (code, findings) = check_json(&file);
    assert_eq!(code, 0, "{findings:#?}");
    findings
        .iter()
        .map(|f: &Value| {
            assert_eq!(f["level"], "warning");
            (
                f["rule"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn has(ws: &[(String, String, u64)], rule: &str, path: &str, line: u64) {
    assert!(
        ws.iter()
            .any(|(r, p, l)| r == rule && p == path && *l == line),
        "no {rule} at {path} line {line}: {ws:#?}"
    );
}

#[test]
fn report_mode_globally_and_per_rule() {
    let ws = warnings(
        "report",
        "mode: report\non_no_match: deny\nrules:\n  - match: {prefix: /}\n",
    );
    has(&ws, "policy/report-mode", "mode", 1);
    let ws = warnings(
        "report-rule",
        "on_no_match: deny\nrules:\n  - name: new\n    match: {prefix: /v2/}\n    mode: report\n",
    );
    has(&ws, "policy/report-mode", "rules[0].mode", 5);
}

#[test]
fn allow_without_a_catch_all() {
    let ws = warnings(
        "allow",
        "on_no_match: allow\nrules:\n  - match: {prefix: /api/}\n",
    );
    has(&ws, "policy/allow-without-catch-all", "on_no_match", 1);
    // A catch-all rule (any method, any host) or deny: no warning.
    assert!(warnings(
        "catch-all",
        "rules:\n  - match: {prefix: /api/}\n  - match: {template: /**}\n"
    )
    .is_empty());
    assert!(warnings("deny", "on_no_match: deny\n").is_empty());
    let ws = warnings(
        "methods",
        "rules:\n  - match: {prefix: /, methods: [GET]}\n",
    );
    assert_eq!(ws.len(), 1);
}

const LIMITED: &str = "on_no_match: deny
rate_limits:
  per_ip:
    requests: 10
    period: 1s
    key:
      - client_address: {use_remote_address: true, trusted_hops: 1}
  per_tenant:
    requests: 10
    period: 1s
    key:
      - header: x-tenant
rules:
  - match: {prefix: /}
    rate_limits: [per_ip, per_tenant]
";

#[test]
fn client_address_keys_and_keys_that_can_be_missing() {
    let ws = warnings("limits", LIMITED);
    has(
        &ws,
        "policy/trusted-hops",
        "rate_limits.per_ip.key[0].client_address.trusted_hops",
        7,
    );
    has(
        &ws,
        "policy/limit-key-missing",
        "rate_limits.per_tenant.key[0]",
        12,
    );
    assert_eq!(ws.len(), 2, "{ws:#?}");
    // A fallback key, or deny, covers the missing header.
    let covered = LIMITED.replace(
        "      - header: x-tenant\n",
        "      - header: x-tenant\n    on_missing_key: deny\n",
    );
    assert!(warnings("covered", &covered)
        .iter()
        .all(|(r, _, _)| r != "policy/limit-key-missing"));
}

#[test]
fn the_connection_manager_around_the_filter_is_read() {
    let dir = scratch("warn-hcm");
    // The policy inside an Envoy bootstrap whose connection manager lacks use_remote_address.
    let policy = serde_json::json!({"on_no_match": "deny",
        "rate_limits": {"ip": {"requests": 1, "period": "1s", "key": [{"client_address": {"use_remote_address": true}}]}},
        "rules": [{"match": {"prefix": "/"}, "rate_limits": "ip"}]});
    let bootstrap = serde_json::json!({"static_resources": {"listeners": [{"filter_chains": [{"filters": [{"typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "http_filters": [{"name": "envoy.filters.http.wasm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {"root_id": "apiguard", "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": policy.to_string()}}}}]}}]}]}]}});
    let file = dir.join("bootstrap.json");
    std::fs::write(&file, serde_json::to_string_pretty(&bootstrap).unwrap()).unwrap();
    let (code, findings) = check_json(&file);
    assert_eq!(code, 0);
    let f = findings
        .iter()
        .find(|f| f["rule"] == "policy/trusted-hops")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("does not set use_remote_address"),
        "{f}"
    );
    // With use_remote_address: true, nothing to say.
    let fixed = serde_json::to_string_pretty(&bootstrap).unwrap().replace(
        "\"http_filters\"",
        "\"use_remote_address\": true, \"http_filters\"",
    );
    std::fs::write(&file, fixed).unwrap();
    let (_, findings) = check_json(&file);
    assert!(
        findings.iter().all(|f| f["rule"] != "policy/trusted-hops"),
        "{findings:#?}"
    );
}

#[test]
fn sensitive_fields_without_redaction() {
    let yaml = r#"on_no_match: deny
schemas:
  signup:
    json_schema:
      type: object
      properties:
        email: {type: string}
        password: {type: string}
        name: {type: string}
rules:
  - match: {prefix: /signup}
    schema: signup
  - match: {prefix: /}
"#;
    let ws = warnings("redaction", yaml);
    has(&ws, "policy/redaction-off", "rules[0]", 11);
    let with = yaml
        .replace(
            "    schema: signup\n",
            "    schema: signup\n    redaction: pii\n",
        )
        .replace(
            "rules:\n",
            "redaction:\n  pii: {fields: [password]}\nrules:\n",
        );
    assert!(warnings("redacted", &with).is_empty());
}

#[test]
fn short_hmac_secrets() {
    // "secret" (6 bytes) as an HS256 key.
    let yaml = "on_no_match: deny\njwt_providers:\n  local:\n    local_jwks:\n      inline:\n        keys:\n          - {kty: oct, alg: HS256, k: c2VjcmV0}\nrules:\n  - match: {prefix: /}\n    jwt: {provider: local}\n";
    let ws = warnings("hmac", yaml);
    has(
        &ws,
        "policy/hs256-short-secret",
        "jwt_providers.local.local_jwks.inline.keys[0].k",
        7,
    );
    let long = yaml.replace("c2VjcmV0", "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE");
    assert!(warnings("hmac-long", &long).is_empty());
}

#[test]
fn strict_and_allow() {
    let dir = scratch("warn-strict");
    let file = dir.join("p.yaml");
    std::fs::write(&file, "mode: report\non_no_match: deny\n").unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(apiguard(&["check", f]).code, 0);
    assert_eq!(apiguard(&["check", "--strict", f]).code, 1);
    assert_eq!(
        apiguard(&["check", "--strict", "--allow", "policy/report-mode", f]).code,
        0
    );
    assert_eq!(apiguard(&["check", "--format", "xml", f]).code, 2);
    assert_eq!(apiguard(&["check"]).code, 2);
    assert_eq!(apiguard(&["check", "/nonexistent/policy.json"]).code, 2);
}

#[test]
fn every_independent_error_in_one_run() {
    let dir = scratch("errors");
    let file = dir.join("p.yaml");
    std::fs::write(
        &file,
        "mode: enforced
jwt_providers:
  corp:
    isuer: https://idp.example.com
    remote_jwks: {cluster: idp, uri: https://idp.example.com/jwks}
rules:
  - match: {prefix: /api/}
    jwt: {provider: corp}
  - match: {prefix: admin}
",
    )
    .unwrap();
    let (code, findings) = check_json(&file);
    assert_eq!(code, 1);
    let got: Vec<(&str, u64, u64)> = findings
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap(),
                f["line"].as_u64().unwrap(),
                f["column"].as_u64().unwrap(),
            )
        })
        .collect();
    // The filter's first error, then the others; rules[0] only fails because `corp` was refused,
    // so it is not reported.
    assert_eq!(
        got,
        [
            ("mode", 1, 1),
            ("jwt_providers.corp.isuer", 4, 5),
            ("rules[1].match.prefix", 9, 13)
        ]
    );
}

#[test]
fn a_member_written_twice() {
    let dir = scratch("dup");
    let json = dir.join("p.json");
    std::fs::write(
        &json,
        "{\"mode\": \"report\",\n \"on_no_match\": \"deny\",\n \"mode\": \"enforce\"}",
    )
    .unwrap();
    let (code, findings) = check_json(&json);
    assert_eq!(code, 0);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(
        (findings[0]["rule"].as_str(), findings[0]["line"].as_u64()),
        (Some("policy/duplicate-key"), Some(3))
    );
    // YAML requires unique keys: a syntax error at the second one.
    let yaml = dir.join("p.yaml");
    std::fs::write(&yaml, "mode: report\non_no_match: deny\nmode: enforce\n").unwrap();
    let (code, findings) = check_json(&yaml);
    assert_eq!(code, 1);
    assert_eq!(
        (findings[0]["rule"].as_str(), findings[0]["line"].as_u64()),
        (Some("syntax"), Some(3))
    );
}
