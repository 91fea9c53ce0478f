//! Ambiguous paths, methods and hosts end to end: with Envoy's defaults (no path normalisation, so raw
//! paths reach the filter), every way around a protected prefix is refused by the filter itself (400)
//! or lands on the protected rule (401), and the upstream never sees one of them. A second Envoy with
//! the connection-manager settings `docs/deployment.md` recommends shows that they and the filter
//! agree.
//!
//! Run with `make test`, or `make build` then
//! `cargo test --test e2e_paths -- --test-threads=2` after `make build envoy`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use common::token::{good_claims, Alg, Keys, AUDIENCE, ISSUER};
use common::{e2e_paths, Echo, Envoy, EnvoyOpts, Proto, Req, Response};
use serde_json::{json, Value};

const P: &str = "apiguard";

/// - `/api/` (any case: the upstream is taken to fold case): a JWT is required;
/// - `/reports/`, GET only: a JWT is required (HEAD follows GET);
/// - host `admin.example.com`: a JWT is required;
/// - `/forms/`: a JWT is required, method overrides allowed;
/// - everything else passes (`on_no_match: allow`).
fn config(keys: &Keys, extra: &Value) -> Value {
    let mut doc = json!({
        "on_no_match": "allow",
        "jwt_providers": {"example": {
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "local_jwks": {"inline_string": keys.jwks().to_string()}
        }},
        "rules": [
            {"name": "admin", "match": {"prefix": "/", "hosts": ["admin.example.com"]},
             "jwt": {"provider": "example"}},
            {"name": "api", "match": {"prefix": "/api/", "case_insensitive": true},
             "jwt": {"provider": "example"}},
            {"name": "reports", "match": {"prefix": "/reports/", "methods": ["GET"]},
             "jwt": {"provider": "example"}},
            {"name": "forms", "match": {"prefix": "/forms/"}, "jwt": {"provider": "example"},
             "allow_method_override": true}
        ]
    });
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    doc
}

fn start(extra: &Value, opts: impl FnOnce(EnvoyOpts) -> EnvoyOpts) -> Option<(Envoy, Echo, Keys)> {
    let paths = e2e_paths()?;
    let keys = Keys::load();
    let echo = Echo::start();
    let envoy = Envoy::start(
        &paths,
        &config(&keys, extra).to_string(),
        &opts(EnvoyOpts::new(&echo)),
    );
    Some((envoy, echo, keys))
}

fn send(envoy: &Envoy, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    envoy.request(method, path, headers, b"")
}

/// Refused by the filter with 400 and this reason.
fn assert_bad_request(r: &Response, reason: &str, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.describe());
    assert!(!r.reached_upstream(), "{what}: {}", r.describe());
    assert_eq!(r.text(), format!("Bad request: {reason}"), "{what}");
}

/// Landed on a protected rule: 401 for the missing token.
fn assert_protected(r: &Response, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.describe());
    assert!(!r.reached_upstream(), "{what}: {}", r.describe());
}

fn every_way_around_a_protected_prefix_is_refused_with_raw_paths() {
    let Some((envoy, echo, _keys)) = start(&json!({}), EnvoyOpts::raw_paths) else {
        return;
    };
    // The control: an open path reaches the upstream unchanged.
    let r = send(&envoy, "GET", "/public/x", &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.upstream().path, "/public/x");
    let before = echo.requests();

    // Canonicalised, then routed to the protected rule.
    for path in [
        "/public/../api/x",
        "/./api/x",
        "//api/x",
        "/%61pi/x",
        "/API/x",
        "/Api/x?q=1",
        "/public/x/../../api/x",
    ] {
        assert_protected(&send(&envoy, "GET", path, &[]), path);
    }
    // Ambiguous after canonicalisation: refused before routing.
    for path in [
        "/public/%2e%2e/api/x",
        "/public/%2E%2E/api/x",
        "/public/.%2e/api/x",
        "/public%2F..%2Fapi/x",
        "/public/..%2Fapi/x",
        "/api%2Fx",
        "/public/%2e%2e%5capi/x",
        "/api/x%00",
        "/public/%c0%ae%c0%ae/api/x",
    ] {
        assert_bad_request(&send(&envoy, "GET", path, &[]), "ambiguous_path", path);
    }
    // Matrix parameters on a protected rule.
    for path in [
        "/api;jsessionid=0A1B2C/x",
        "/api/x;jsessionid=0A1B2C",
        "/public/..;/api/x",
    ] {
        assert_bad_request(&send(&envoy, "GET", path, &[]), "matrix_parameters", path);
    }
    // HEAD follows the GET rule.
    assert_protected(&send(&envoy, "HEAD", "/reports/q1", &[]), "HEAD");
    // A trailing dot (and a port) on a protected host.
    for host in [
        "admin.example.com",
        "admin.example.com.",
        "Admin.Example.Com.:80",
    ] {
        assert_protected(
            &send(&envoy, "GET", "/anything", &[("host", host)]),
            &format!("host {host}"),
        );
    }
    // Method overrides on a protected rule.
    for header in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ] {
        assert_bad_request(
            &send(&envoy, "GET", "/api/x", &[(header, "DELETE")]),
            "method_override",
            header,
        );
    }
    assert_eq!(
        echo.requests(),
        before,
        "the upstream received a bypass request"
    );

    assert!(envoy.counter(&format!("{P}_path_ambiguous")) >= 9);
    assert!(envoy.counter(&format!("{P}_path_matrix_parameters")) >= 3);
    assert!(envoy.counter(&format!("{P}_method_override")) >= 3);
}

fn lower_case_methods_never_skip_a_method_rule() {
    let Some((envoy, echo, _keys)) = start(&json!({}), EnvoyOpts::raw_paths) else {
        return;
    };
    // Envoy 1.40's HTTP/1 codec refuses a lower-case method itself (400 "Bad Request"); over HTTP/2 it
    // reaches the filter, which compares methods case-insensitively (next test). Either way: no pass.
    for method in ["get", "Get", "head"] {
        let r = send(&envoy, method, "/reports/q1", &[]);
        assert!(
            matches!(r.status, 400 | 401) && !r.reached_upstream(),
            "{method}: {}",
            r.describe()
        );
    }
    assert_eq!(echo.requests(), 0);
}

// Stays single: it is about HTTP/2 itself (`:method` as sent), whatever the protocol of the run.
#[test]
fn lower_case_methods_over_http2_land_on_the_get_rule() {
    let Some((envoy, echo, _keys)) = start(&json!({}), EnvoyOpts::raw_paths) else {
        return;
    };
    let r = common::send(Proto::H2, envoy.port, &Req::new("get", "/reports/q1")).unwrap();
    let (status, body) = (r.status, r.text());
    // Envoy 1.40 hands `:method: get` to the filter, which matches it to the GET rule (401); another
    // version may refuse it itself (400). It must never pass unauthenticated.
    assert!(matches!(status, 400 | 401), "{status} {body:?}");
    if status == 401 {
        assert_eq!(body, "Jwt is missing");
    }
    let r = common::send(
        Proto::H2,
        envoy.port,
        &Req::new("GET", "/public/%2e%2e/api/x"),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(echo.requests(), 0);
}

fn authenticated_requests_pass_and_allowed_overrides_go_through() {
    let Some((envoy, _echo, keys)) = start(&json!({}), EnvoyOpts::raw_paths) else {
        return;
    };
    let token = keys.sign(Alg::Rs256, &good_claims());
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let r = send(&envoy, "GET", "/public/../api/x", &auth);
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = send(&envoy, "HEAD", "/reports/q1", &auth);
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = send(
        &envoy,
        "POST",
        "/forms/f",
        &[auth[0], ("x-http-method-override", "PUT")],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.upstream().header("x-http-method-override"), Some("PUT"));
    // Matrix parameters and ambiguous paths stay refused even with a valid token.
    let r = send(&envoy, "GET", "/api;v=1/x", &auth);
    assert_bad_request(&r, "matrix_parameters", "matrix with token");
    let r = send(&envoy, "GET", "/public/%2e%2e/api/x", &auth);
    assert_bad_request(&r, "ambiguous_path", "ambiguous with token");
}

fn report_mode_for_ambiguous_paths_routes_them_by_their_canonical_form() {
    let Some((envoy, echo, _keys)) =
        start(&json!({"ambiguous_paths": "report"}), EnvoyOpts::raw_paths)
    else {
        return;
    };
    assert_protected(
        &send(&envoy, "GET", "/public/%2e%2e/api/x", &[]),
        "reported",
    );
    assert_protected(&send(&envoy, "GET", "/api;v=1/x", &[]), "matrix reported");
    let r = send(&envoy, "GET", "/files/a%2Fb", &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.upstream().path, "/files/a%2Fb");
    assert_eq!(echo.requests(), 1);
    assert!(envoy.counter(&format!("{P}_path_ambiguous")) >= 2);
}

fn the_recommended_connection_manager_settings_and_the_filter_agree() {
    let Some((envoy, echo, keys)) = start(&json!({}), EnvoyOpts::normalised_paths) else {
        return;
    };
    for path in [
        "/public/../api/x",
        "/public/%2e%2e/api/x",
        "//api/x",
        "/API/x",
    ] {
        assert_protected(&send(&envoy, "GET", path, &[]), path);
    }
    // Envoy refuses an escaped slash itself.
    let r = send(&envoy, "GET", "/public%2F..%2Fapi/x", &[]);
    assert_eq!(r.status, 400, "{}", r.describe());
    assert!(!r.reached_upstream());
    assert_protected(
        &send(&envoy, "GET", "/x", &[("host", "admin.example.com.")]),
        "host dot",
    );
    // Matrix parameters are not Envoy's business: the filter still refuses them.
    assert_bad_request(
        &send(&envoy, "GET", "/api;jsessionid=1/x", &[]),
        "matrix_parameters",
        "matrix",
    );
    assert_eq!(echo.requests(), 0);
    // What passes reaches the upstream in normalised form.
    let token = keys.sign(Alg::Rs256, &good_claims());
    let bearer = format!("Bearer {token}");
    let r = send(
        &envoy,
        "GET",
        "/public/../api/x",
        &[("authorization", &bearer)],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.upstream().path, "/api/x");
}

// Each test above without `#[test]` runs twice: `http1::<name>` and `http2::<name>`.
crate::per_protocol!(
    every_way_around_a_protected_prefix_is_refused_with_raw_paths,
    lower_case_methods_never_skip_a_method_rule,
    authenticated_requests_pass_and_allowed_overrides_go_through,
    report_mode_for_ambiguous_paths_routes_them_by_their_canonical_form,
    the_recommended_connection_manager_settings_and_the_filter_agree,
);
