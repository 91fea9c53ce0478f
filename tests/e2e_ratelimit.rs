//! Authorization, API keys and rate limiting end to end: the built filter in a real Envoy with two (and
//! four) workers, real parallel HTTP traffic.
//!
//! Run with `make test`. Without Envoy or the `.wasm` these tests fail and say what is missing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use apiguard::apikey::digest_hex;
use common::token::{good_claims, Alg, Keys, AUDIENCE, ISSUER};
use common::{e2e_paths, Echo, Envoy, EnvoyOpts, Req, Response};
use serde_json::{json, Value};

const P: &str = "apiguard";

fn provider(keys: &Keys) -> Value {
    json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": keys.jwks().to_string()},
        "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
    })
}

/// Sends `total` GET requests from `threads` threads in parallel, each on its own connection;
/// returns how many got each status.
fn flood(
    envoy: &Envoy,
    path: &str,
    headers: &[(&str, &str)],
    total: usize,
    threads: usize,
) -> HashMap<u16, usize> {
    let next = Arc::new(AtomicUsize::new(0));
    let owned: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let (port, proto) = (envoy.port, envoy.proto);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let next = Arc::clone(&next);
            let path = path.to_string();
            let owned = owned.clone();
            thread::spawn(move || {
                let headers: Vec<(&str, &str)> = owned
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let mut seen = HashMap::new();
                while next.fetch_add(1, Ordering::SeqCst) < total {
                    let r = common::send(proto, port, &Req::get(&path).headers(&headers))
                        .expect("request");
                    *seen.entry(r.status).or_insert(0) += 1;
                }
                seen
            })
        })
        .collect();
    let mut all = HashMap::new();
    for h in handles {
        for (status, n) in h.join().unwrap() {
            *all.entry(status).or_insert(0) += n;
        }
    }
    all
}

fn start(config: Value, workers: u32) -> Option<(Envoy, Echo)> {
    let paths = e2e_paths()?;
    let echo = Echo::start();
    let mut opts = EnvoyOpts::new(&echo);
    opts.concurrency = workers;
    let envoy = Envoy::start(&paths, &config.to_string(), &opts);
    Some((envoy, echo))
}

fn exact_budget_across_workers(workers: u32) {
    // A long period: the refill during the test is far below one request.
    let config = json!({
        "rate_limits": {"global": {"requests": 40, "period": "3600s"}},
        "rules": [{"name": "api", "match": {"prefix": "/api/"}, "rate_limits": "global"}]
    });
    let Some((envoy, echo)) = start(config, workers) else {
        return;
    };
    let seen = flood(&envoy, "/api/x", &[], 200, 16);
    assert_eq!(
        seen.get(&200).copied().unwrap_or(0),
        40,
        "exactly the budget passes: {seen:?}"
    );
    assert_eq!(seen.get(&429).copied().unwrap_or(0), 160, "{seen:?}");
    assert_eq!(
        echo.requests(),
        40,
        "refused requests never reach the upstream"
    );
    assert_eq!(envoy.counter(&format!("{P}_rl_global_allowed")), 40);
    assert_eq!(envoy.counter(&format!("{P}_rl_global_limited")), 160);
}

fn the_budget_is_exact_across_two_workers_not_budget_times_workers() {
    exact_budget_across_workers(2);
}

fn the_budget_is_exact_across_four_workers() {
    exact_budget_across_workers(4);
}

fn a_limited_request_gets_429_with_retry_after_and_draft_headers() {
    let config = json!({
        "rate_limits": {"per_tenant": {"requests": 2, "period": "60s", "key": [{"header": "x-tenant"}],
                                       "headers": "draft", "headers_on_allowed": true}},
        "rules": [{"match": {"prefix": "/"}, "rate_limits": ["per_tenant"]}]
    });
    let Some((envoy, _echo)) = start(config, 2) else {
        return;
    };
    let tenant = [("x-tenant", "acme")];
    let first = envoy.get("/x", &tenant);
    assert_eq!(first.status, 200, "{}", first.describe());
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"per_tenant\";q=2;w=60"),
        "{}",
        first.describe()
    );
    assert!(
        first
            .header("ratelimit")
            .unwrap()
            .starts_with("\"per_tenant\";r=1;t="),
        "{}",
        first.describe()
    );
    assert_eq!(envoy.get("/x", &tenant).status, 200);
    let limited: Response = envoy.get("/x", &tenant);
    assert_eq!(limited.status, 429, "{}", limited.describe());
    let retry: u64 = limited
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert!(
        limited
            .header("ratelimit")
            .unwrap()
            .starts_with("\"per_tenant\";r=0;t="),
        "{}",
        limited.describe()
    );
    assert!(!limited.reached_upstream());
    // Another key has its own budget.
    assert_eq!(envoy.get("/x", &[("x-tenant", "globex")]).status, 200);
}

fn two_keys_never_share_a_budget_under_parallel_load() {
    let config = json!({
        "rate_limits": {"per_tenant": {"requests": 10, "period": "3600s", "key": [{"header": "x-tenant"}]}},
        "rules": [{"match": {"prefix": "/"}, "rate_limits": "per_tenant"}]
    });
    let Some((envoy, _echo)) = start(config, 2) else {
        return;
    };
    let a = flood(&envoy, "/x", &[("x-tenant", "a")], 30, 8);
    let b = flood(&envoy, "/x", &[("x-tenant", "b")], 30, 8);
    assert_eq!(a.get(&200).copied(), Some(10), "{a:?}");
    assert_eq!(b.get(&200).copied(), Some(10), "{b:?}");
}

fn missing_scopes_and_roles_are_refused_with_403_and_the_right_challenge() {
    let keys = Keys::load();
    let config = json!({
        "jwt_providers": {"idp": provider(&keys)},
        "rules": [
            {"name": "read", "match": {"prefix": "/orders"}, "jwt": {"provider": "idp"},
             "authz": {"scopes": ["orders:read"]}},
            {"name": "admin", "match": {"prefix": "/admin"}, "jwt": {"provider": "idp"},
             "authz": {"roles": ["admin"]}}
        ]
    });
    let Some((envoy, _echo)) = start(config, 2) else {
        return;
    };
    let mut claims = good_claims();
    claims["scope"] = json!("profile orders:read");
    claims["roles"] = json!(["user"]);
    let token = keys.sign(Alg::Es256, &claims);
    let ok = envoy.get_bearer("/orders/1", &token);
    assert_eq!(ok.status, 200, "{}", ok.describe());

    let mut claims = good_claims();
    claims["scope"] = json!("profile");
    let weak = keys.sign(Alg::Es256, &claims);
    let refused = envoy.get_bearer("/orders/1", &weak);
    assert_eq!(refused.status, 403, "{}", refused.describe());
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", scope=\"orders:read\""),
        "{}",
        refused.describe()
    );
    assert!(!refused.reached_upstream());

    let no_role = envoy.get_bearer("/admin/x", &token);
    assert_eq!(no_role.status, 403, "{}", no_role.describe());
    assert_eq!(envoy.counter(&format!("{P}_authz_denied")), 2);
    assert_eq!(envoy.counter(&format!("{P}_authz_allowed")), 1);
}

fn an_api_key_is_the_identity_of_the_limiter_and_is_never_forwarded() {
    let config = json!({
        "api_keys": {"partners": {"from_header": "x-api-key", "keys": [
            {"name": "acme", "sha256": digest_hex(b"acme-secret-key-1")},
            {"name": "globex", "sha256": digest_hex(b"globex-secret-key-2")}
        ]}},
        "rate_limits": {"per_partner": {"requests": 3, "period": "3600s", "key": [{"api_key": true}]}},
        "rules": [{"match": {"prefix": "/"}, "api_key": "partners", "rate_limits": "per_partner"}]
    });
    let Some((envoy, _echo)) = start(config, 2) else {
        return;
    };
    let acme = [("x-api-key", "acme-secret-key-1")];
    let first = envoy.get("/x", &acme);
    assert_eq!(first.status, 200, "{}", first.describe());
    assert!(
        !first.upstream().has_header("x-api-key"),
        "the key is removed before forwarding"
    );
    assert_eq!(envoy.get("/x", &acme).status, 200);
    assert_eq!(envoy.get("/x", &acme).status, 200);
    assert_eq!(envoy.get("/x", &acme).status, 429);
    assert_eq!(
        envoy
            .get("/x", &[("x-api-key", "globex-secret-key-2")])
            .status,
        200,
        "own budget"
    );

    let missing = envoy.get("/x", &[]);
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (401, "API key is missing"),
        "{}",
        missing.describe()
    );
    let wrong = envoy.get("/x", &[("x-api-key", "guess")]);
    assert_eq!(
        (wrong.status, wrong.text().as_str()),
        (401, "API key is invalid"),
        "{}",
        wrong.describe()
    );
    assert!(
        !envoy.log().contains("acme-secret-key-1"),
        "the key never reaches the log"
    );
}

fn report_mode_counts_limited_requests_but_refuses_none() {
    let config = json!({
        "mode": "report",
        "rate_limits": {"global": {"requests": 2, "period": "3600s"}},
        "rules": [{"match": {"prefix": "/"}, "rate_limits": "global"}]
    });
    let Some((envoy, echo)) = start(config, 2) else {
        return;
    };
    for _ in 0..5 {
        assert_eq!(envoy.get("/x", &[]).status, 200);
    }
    assert_eq!(echo.requests(), 5);
    assert_eq!(envoy.counter(&format!("{P}_report_only_denied")), 3);
    assert_eq!(envoy.counter(&format!("{P}_rl_global_limited")), 3);
}

// Each test above without `#[test]` runs twice: `http1::<name>` and `http2::<name>`.
crate::per_protocol!(
    the_budget_is_exact_across_two_workers_not_budget_times_workers,
    the_budget_is_exact_across_four_workers,
    a_limited_request_gets_429_with_retry_after_and_draft_headers,
    two_keys_never_share_a_budget_under_parallel_load,
    missing_scopes_and_roles_are_refused_with_403_and_the_right_challenge,
    an_api_key_is_the_identity_of_the_limiter_and_is_never_forwarded,
    report_mode_counts_limited_requests_but_refuses_none,
);
