//! The full pipeline in one configuration: route → JWT → authorization → rate limit → schema →
//! upstream → response redaction → discovery. A refusal at one stage skips the later ones and is still
//! recorded by discovery.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use std::time::Duration;

use common::collector::Collector;
use common::token::{good_claims, Alg, Keys, AUDIENCE, ISSUER};
use common::{e2e_paths, Echo, Envoy, EnvoyOpts};
use serde_json::{json, Value};

const P: &str = "apiguard";

fn config(keys: &Keys) -> Value {
    json!({
        "jwt_providers": {"idp": {"issuer": ISSUER, "audiences": [AUDIENCE],
                                  "local_jwks": {"inline_string": keys.jwks().to_string()},
                                  "claim_to_headers": [{"header_name": "x-user", "claim_name": "sub"}]}},
        "rate_limits": {"per_user": {"requests": 3, "period": "3600s", "key": [{"jwt_claim": "sub"}]}},
        "schemas": {"order": {"json_schema": {"type": "object", "required": ["id"],
                                              "properties": {"id": {"type": "integer"}}}}},
        "redaction": {"pii": {"action": "redact"}},
        "discovery": {"collector": {"cluster": "collector", "uri": "http://collector/v1/apiguard"},
                      "flush_interval": "1s"},
        "rules": [{"name": "orders", "match": {"prefix": "/orders"}, "jwt": {"provider": "idp"},
                   "authz": {"scopes": ["orders:write"]}, "rate_limits": "per_user", "schema": "order",
                   "redaction": "pii"}]
    })
}

fn token(keys: &Keys, scope: &str, sub: &str) -> String {
    let mut claims = good_claims();
    claims["scope"] = json!(scope);
    claims["sub"] = json!(sub);
    keys.sign(Alg::Es256, &claims)
}

fn every_stage_in_order_with_refusals_skipping_later_stages_and_recorded_by_discovery() {
    let Some(paths) = e2e_paths() else { return };
    let keys = Keys::load();
    let echo = Echo::start();
    let collector = Collector::start();
    let envoy = Envoy::start(
        &paths,
        &config(&keys).to_string(),
        &EnvoyOpts::new(&echo).collector(collector.port),
    );
    let post = |token: Option<&str>, body: &[u8]| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            ("content-type", "application/json"),
            ("x-echo-raw", "application/json"),
        ];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        envoy.request("POST", "/orders", &headers, body)
    };
    let writer = token(&keys, "orders:write", "alice");

    // 1. JWT first: no token → 401, nothing else runs (no rate-limit budget spent).
    assert_eq!(post(None, br#"{"id": 1}"#).status, 401);
    // 2. Authorization: a reader may not write → 403, no budget spent.
    assert_eq!(
        post(Some(&token(&keys, "orders:read", "alice")), br#"{"id": 1}"#).status,
        403
    );
    // 3. Schema after the limiter: an invalid body spends budget, then gets 400.
    assert_eq!(post(Some(&writer), br#"{"id": "one"}"#).status, 400);
    // 4. Upstream and response redaction: the echoed body comes back redacted.
    let ok = post(Some(&writer), br#"{"id": 2, "email": "alice@example.com"}"#);
    assert_eq!(ok.status, 200, "{}", ok.describe());
    assert_eq!(
        String::from_utf8_lossy(&ok.body),
        r#"{"id": 2, "email": "[REDACTED:email]"}"#
    );
    assert_eq!(post(Some(&writer), br#"{"id": 3}"#).status, 200);
    // 5. The budget of 3: the 400, and two 200s, spent it; the 401 and 403 did not.
    assert_eq!(post(Some(&writer), br#"{"id": 4}"#).status, 429);
    assert_eq!(
        echo.requests(),
        2,
        "only the two valid requests reached the upstream"
    );

    assert_eq!(envoy.counter(&format!("{P}_jwt_missing")), 1);
    assert_eq!(envoy.counter(&format!("{P}_authz_denied")), 1);
    assert_eq!(
        envoy.counter(&format!("{P}_schema_rejected_schema_violation")),
        1
    );
    assert_eq!(envoy.counter(&format!("{P}_rl_per_user_limited")), 1);
    assert_eq!(envoy.counter(&format!("{P}_redaction_pii_email")), 1);

    // 6. Discovery saw all six, refused ones included, with their status classes.
    let seen = envoy.eventually(Duration::from_secs(10), |_| {
        let mut count = 0;
        for (_, body) in collector.batches() {
            let batch: Value = serde_json::from_slice(&body).unwrap();
            for e in batch["endpoints"].as_array().unwrap() {
                if e["path_template"] == "/orders" {
                    count += e["count"].as_u64().unwrap();
                }
            }
        }
        count == 6
    });
    assert!(
        seen,
        "batches: {:?}",
        collector
            .batches()
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b).to_string())
            .collect::<Vec<_>>()
    );
    let all: Vec<Value> = collector
        .batches()
        .iter()
        .map(|(_, b)| serde_json::from_slice(b).unwrap())
        .collect();
    let text = all.iter().map(Value::to_string).collect::<String>();
    assert!(text.contains("\"4xx\""), "refusals appear as 4xx: {text}");
    assert!(
        text.contains("email"),
        "the data class seen in responses is reported: {text}"
    );
    assert!(!text.contains("alice@example.com"), "never the value");
}

// Each test above without `#[test]` runs twice: `http1::<name>` and `http2::<name>`.
crate::per_protocol!(
    every_stage_in_order_with_refusals_skipping_later_stages_and_recorded_by_discovery,
);
