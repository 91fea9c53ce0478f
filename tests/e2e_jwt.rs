//! JWT authentication end to end: the built filter inside a real Envoy, real HTTP requests, real replies.
//!
//! Run with `make test` (builds the `.wasm`, fetches Envoy). Without Envoy or the `.wasm` these tests
//! fail and say what is missing (`cargo test --lib` runs the unit tests alone).
//!
//! Each test starts its own Envoy (ports picked by Envoy), upstream echo server and, where needed, JWKS
//! server, so tests run in parallel. Every wait is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use std::thread;
use std::time::Duration;

use common::token::{self, good_claims, Alg, Keys, AUDIENCE, ISSUER};
use common::{e2e_paths, Echo, Envoy, EnvoyOpts, JwksServer, Response};
use serde_json::{json, Value};

/// The default metric prefix (the config's `name`).
const P: &str = "apiguard";

/// The public JWKS with every fixture key (RSA, P-256, P-384, Ed25519, and the HS256 secret).
fn all_keys_jwks(keys: &Keys) -> Value {
    let mut jwks = keys.jwks();
    let hs = keys.hs_jwks()["keys"][0].clone();
    jwks["keys"].as_array_mut().unwrap().push(hs);
    jwks
}

/// Provider `example`: local JWKS with every fixture key, `sub` to `x-jwt-sub`, payload to `x-jwt-payload`.
fn local_provider(keys: &Keys) -> Value {
    json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": all_keys_jwks(keys).to_string()},
        "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
        "forward_payload_header": "x-jwt-payload",
        "require_expiration": true,
        "max_lifetime": "24h",
        "max_token_bytes": 4096
    })
}

/// The configuration most tests use:
/// - `/healthz`: no authentication;
/// - `/api/`: provider `example` required;
/// - `/report/`: as `/api/`, but in report mode;
/// - `/optional/`: a token is optional, but a bad one is refused (Envoy's `requires_any` with `allow_missing`).
fn base_config(keys: &Keys) -> Value {
    json!({
        "mode": "enforce",
        "on_no_match": "allow",
        "jwt_providers": {"example": local_provider(keys)},
        "rules": [
            {"name": "health", "match": {"prefix": "/healthz"}},
            {"name": "api", "match": {"prefix": "/api/"}, "jwt": {"provider": "example"}},
            {"name": "report", "match": {"prefix": "/report/"}, "mode": "report",
             "jwt": {"provider": "example"}},
            {"name": "optional", "match": {"prefix": "/optional/"},
             "jwt": {"any": [{"provider": "example"}, {"allow_missing": true}]}}
        ]
    })
}

/// Envoy with `config`, an echo upstream and (optionally) a JWKS server.
struct Stack {
    envoy: Envoy,
    echo: Echo,
}

impl Stack {
    fn start(config: &Value) -> Option<Stack> {
        Stack::start_with(config, None)
    }

    fn start_with(config: &Value, jwks: Option<&JwksServer>) -> Option<Stack> {
        let paths = e2e_paths()?;
        let echo = Echo::start();
        let mut opts = EnvoyOpts::new(&echo);
        if let Some(jwks) = jwks {
            opts = opts.jwks(jwks);
        }
        let envoy = Envoy::start(&paths, &config.to_string(), &opts);
        Some(Stack { envoy, echo })
    }
}

/// Asserts a refusal exactly as Envoy's `jwt_authn` makes it.
#[track_caller]
fn assert_refused(r: &Response, status: u16, body: &str, realm: &str, invalid_token: bool) {
    assert_eq!(r.status, status, "{}", r.describe());
    assert!(
        !r.reached_upstream(),
        "refused request reached the upstream: {}",
        r.describe()
    );
    assert_eq!(r.text(), body, "{}", r.describe());
    let expected = if invalid_token {
        format!("Bearer realm=\"{realm}\", error=\"invalid_token\"")
    } else {
        format!("Bearer realm=\"{realm}\"")
    };
    assert_eq!(
        r.header("www-authenticate"),
        Some(expected.as_str()),
        "{}",
        r.describe()
    );
}

#[track_caller]
fn assert_passed(r: &Response) {
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.reached_upstream(), "{}", r.describe());
}

// ---------------------------------------------------------------------------------------------------------
// The harness itself

fn harness_envoy_without_the_filter_proxies_to_the_echo_upstream() {
    let Some(paths) = e2e_paths() else { return };
    let echo = Echo::start();
    let envoy = Envoy::start(&paths, "{}", &EnvoyOpts::new(&echo).without_filter());
    let r = envoy.get("/anything?q=1", &[("x-test", "yes")]);
    assert_passed(&r);
    let up = r.upstream();
    assert_eq!(up.method, "GET");
    assert_eq!(up.path, "/anything?q=1");
    assert_eq!(up.header("x-test"), Some("yes"));
    assert_eq!(echo.requests(), 1);
    // The client spoke the protocol the test name says.
    let (h1, h2) = match envoy.proto {
        common::Proto::H1 => (1, 0),
        common::Proto::H2 => (0, 1),
    };
    let stats = envoy.stats("downstream_rq_http");
    assert_eq!(
        stats.get("http.ingress.downstream_rq_http1_total"),
        Some(&h1),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("http.ingress.downstream_rq_http2_total"),
        Some(&h2),
        "{stats:?}"
    );
}

#[test]
fn harness_jwks_server_starts_late_goes_down_and_answers_503() {
    let jwks = JwksServer::reserve(r#"{"keys":[]}"#);
    let get = || common::http_request(jwks.port, "GET", "/jwks.json", &[], b"");
    assert!(get().is_err(), "reserved, not listening yet");
    jwks.up();
    let r = get().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"keys":[]}"#));
    jwks.set_status(503);
    assert_eq!(get().unwrap().status, 503);
    jwks.down();
    thread::sleep(Duration::from_millis(100));
    assert!(get().is_err(), "down: connection refused");
    jwks.up();
    assert_eq!(get().unwrap().status, 200);
    assert_eq!(jwks.hits(), 3);
}

// ---------------------------------------------------------------------------------------------------------
// Outcomes as responses

fn missing_token_is_refused_with_401_and_a_bearer_challenge() {
    let keys = Keys::load();
    let Some(s) = Stack::start(&base_config(&keys)) else {
        return;
    };
    let r = s.envoy.get("/api/items?page=2", &[]);
    assert_refused(
        &r,
        401,
        "Jwt is missing",
        "http://api.test/api/items",
        false,
    );
    let r = s.envoy.get("/api/items", &[("host", "shop.example:8080")]);
    assert_refused(
        &r,
        401,
        "Jwt is missing",
        "http://shop.example:8080/api/items",
        false,
    );
    assert_eq!(s.echo.requests(), 0);
    assert_eq!(s.envoy.counter(&format!("{P}_jwt_missing")), 2);
    assert_eq!(s.envoy.counter(&format!("{P}_jwt_denied")), 2);
    assert_eq!(s.envoy.counter(&format!("{P}_jwt_allowed")), 0);
}

fn valid_tokens_of_every_algorithm_reach_the_upstream_with_claim_and_payload_headers() {
    let keys = Keys::load();
    let Some(s) = Stack::start(&base_config(&keys)) else {
        return;
    };
    for alg in Alg::ALL {
        let token = keys.sign(alg, &good_claims());
        let r = s.envoy.get_bearer("/api/items", &token);
        assert_eq!(r.status, 200, "{}: {}", alg.name(), r.describe());
        let up = r.upstream();
        assert_eq!(up.header("x-jwt-sub"), Some("alice"), "{}", alg.name());
        assert_eq!(
            up.header("x-jwt-payload"),
            Some(token::payload_segment(&token)),
            "{}: payload header is the base64url payload, as Envoy's forward_payload_header",
            alg.name()
        );
        assert!(
            !up.has_header("authorization"),
            "{}: the token is removed unless forward: true",
            alg.name()
        );
    }
    assert_eq!(s.envoy.counter(&format!("{P}_jwt_allowed")), 5);
    assert_eq!(s.envoy.counter(&format!("{P}_jwt_denied")), 0);
}

fn every_failure_is_refused_with_envoys_status_body_and_counted() {
    let keys = Keys::load();
    let Some(s) = Stack::start(&base_config(&keys)) else {
        return;
    };
    let now = token::now();
    let realm = "http://api.test/api/orders";
    let with = |member: &str, value: Value| {
        let mut c = good_claims();
        c[member] = value;
        c
    };
    let without = |member: &str| {
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove(member);
        c
    };
    let good = keys.sign(Alg::Rs256, &good_claims());
    let unknown_kid = keys.sign_with_header(
        Alg::Rs256,
        &json!({"alg": "RS256", "typ": "JWT", "kid": "no-such-key"}),
        &good_claims(),
    );
    let alg_none = format!(
        "{}.{}.",
        base64url(&json!({"alg": "none", "typ": "JWT"}).to_string()),
        token::payload_segment(&good)
    );
    let huge = keys.sign(Alg::Es256, &with("pad", json!("x".repeat(5000))));
    // (case, token, status, body, metric outcome)
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        (
            "expired",
            keys.sign(Alg::Rs256, &with("exp", json!(now - 3600))),
            401,
            "Jwt is expired",
            "expired",
        ),
        (
            "not yet valid",
            keys.sign(Alg::Es256, &with("nbf", json!(now + 3600))),
            401,
            "Jwt not yet valid",
            "not_yet_valid",
        ),
        (
            "foreign issuer",
            keys.sign(Alg::EdDsa, &with("iss", json!("https://evil.example"))),
            401,
            "Jwt issuer is not configured",
            "unknown_issuer",
        ),
        (
            "wrong audience",
            keys.sign(Alg::Rs256, &with("aud", json!("other.example"))),
            403,
            "Audiences in Jwt are not allowed",
            "audience_not_allowed",
        ),
        (
            "tampered signature",
            token::tamper_signature(&good),
            401,
            "Jwt verification fails",
            "signature_invalid",
        ),
        (
            "unknown kid",
            unknown_kid,
            401,
            "Jwks doesn't have key to match kid or alg from Jwt",
            "no_matching_key",
        ),
        (
            "not a JWT",
            "abc.def".to_string(),
            401,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
            "malformed",
        ),
        (
            "alg none",
            alg_none,
            401,
            "Jwt header [alg] is not supported",
            "malformed",
        ),
        ("too large", huge, 401, "Jwt is too large", "too_large"),
        (
            "no exp",
            keys.sign(Alg::Rs256, &without("exp")),
            401,
            "Jwt has no expiration",
            "lifetime",
        ),
        (
            "lifetime above max_lifetime",
            keys.sign(Alg::Rs256, &with("exp", json!(now + 3 * 86_400))),
            401,
            "Jwt lifetime is too long",
            "lifetime",
        ),
    ];
    let mut failures = Vec::new();
    for (case, token, status, body, _) in &cases {
        let r = s.envoy.get_bearer("/api/orders?id=7", token);
        let expected_challenge = format!("Bearer realm=\"{realm}\", error=\"invalid_token\"");
        let ok = r.status == *status
            && !r.reached_upstream()
            && r.text() == *body
            && r.header("www-authenticate") == Some(expected_challenge.as_str());
        if !ok {
            failures.push(format!(
                "{case}: expected {status} {body:?} + {expected_challenge}, got {}",
                r.describe()
            ));
        }
    }
    assert_eq!(
        s.echo.requests(),
        0,
        "no refused request may reach the upstream"
    );
    let mut expected_counts = std::collections::BTreeMap::<&str, u64>::new();
    for (_, _, _, _, outcome) in &cases {
        *expected_counts.entry(outcome).or_default() += 1;
    }
    for (outcome, count) in expected_counts {
        let got = s.envoy.counter(&format!("{P}_jwt_{outcome}"));
        if got != count {
            failures.push(format!(
                "counter {P}_jwt_{outcome}: expected {count}, got {got}"
            ));
        }
    }
    let denied = s.envoy.counter(&format!("{P}_jwt_denied"));
    if denied != cases.len() as u64 {
        failures.push(format!(
            "counter {P}_jwt_denied: expected {}, got {denied}",
            cases.len()
        ));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn base64url(text: &str) -> String {
    use base64ct::{Base64UrlUnpadded, Encoding};
    Base64UrlUnpadded::encode_string(text.as_bytes())
}

fn strip_failure_response_replies_with_empty_body_and_no_challenge() {
    let keys = Keys::load();
    let mut config = base_config(&keys);
    config["strip_failure_response"] = json!(true);
    let Some(s) = Stack::start(&config) else {
        return;
    };
    let r = s.envoy.get("/api/items", &[]);
    assert_eq!(r.status, 401, "{}", r.describe());
    assert!(r.body.is_empty(), "{}", r.describe());
    assert_eq!(r.header("www-authenticate"), None, "{}", r.describe());
    let mut claims = good_claims();
    claims["aud"] = json!("other.example");
    let r = s
        .envoy
        .get_bearer("/api/items", &keys.sign(Alg::Rs256, &claims));
    assert_eq!(r.status, 403, "{}", r.describe());
    assert!(r.body.is_empty(), "{}", r.describe());
    assert_eq!(r.header("www-authenticate"), None, "{}", r.describe());
}

// ---------------------------------------------------------------------------------------------------------
// Headers towards the upstream

fn spoofed_claim_and_payload_headers_from_the_client_are_removed() {
    let keys = Keys::load();
    let Some(s) = Stack::start(&base_config(&keys)) else {
        return;
    };
    let token = keys.sign(Alg::Es256, &good_claims());
    let bearer = format!("Bearer {token}");
    let spoofed = [
        ("x-jwt-sub", "mallory"),
        ("x-jwt-payload", "eyJzdWIiOiJtYWxsb3J5In0"),
        ("X-JWT-Sub", "mallory2"),
    ];
    let mut headers = vec![("authorization", bearer.as_str())];
    headers.extend(spoofed);
    let up = s.envoy.get("/api/me", &headers).upstream();
    let subs: Vec<_> = up
        .headers
        .iter()
        .filter(|(n, _)| n == "x-jwt-sub")
        .collect();
    assert_eq!(
        subs.len(),
        1,
        "exactly one x-jwt-sub, from the token: {:?}",
        up.headers
    );
    assert_eq!(up.header("x-jwt-sub"), Some("alice"));
    assert_eq!(
        up.header("x-jwt-payload"),
        Some(token::payload_segment(&token))
    );

    // A route where the token is optional: no token, so no claim headers at all.
    let up = s.envoy.get("/optional/me", &spoofed).upstream();
    assert!(!up.has_header("x-jwt-sub"), "{:?}", up.headers);
    assert!(!up.has_header("x-jwt-payload"), "{:?}", up.headers);
}

fn authorization_is_forwarded_only_with_forward_true() {
    let keys = Keys::load();
    let mut config = base_config(&keys);
    let mut fwd = local_provider(&keys);
    fwd["forward"] = json!(true);
    config["jwt_providers"]["fwd"] = fwd;
    config["rules"].as_array_mut().unwrap().insert(
        0,
        json!({"match": {"prefix": "/fwd/"}, "jwt": {"provider": "fwd"}}),
    );
    let Some(s) = Stack::start(&config) else {
        return;
    };
    let token = keys.sign(Alg::Rs256, &good_claims());
    let bearer = format!("Bearer {token}");

    let up = s.envoy.get_bearer("/fwd/x", &token).upstream();
    assert_eq!(up.header("authorization"), Some(bearer.as_str()));
    assert_eq!(up.header("x-jwt-sub"), Some("alice"));

    let up = s.envoy.get_bearer("/api/x", &token).upstream();
    assert!(!up.has_header("authorization"), "{:?}", up.headers);
}

// ---------------------------------------------------------------------------------------------------------
// Where the token comes from

fn default_locations_are_the_bearer_header_and_the_access_token_parameter() {
    let keys = Keys::load();
    let Some(s) = Stack::start(&base_config(&keys)) else {
        return;
    };
    let token = keys.sign(Alg::EdDsa, &good_claims());
    let r = s
        .envoy
        .get(&format!("/api/q?access_token={token}&x=1"), &[]);
    assert_passed(&r);
    assert_eq!(r.upstream().header("x-jwt-sub"), Some("alice"));
    // A token in some other parameter, or without the Bearer prefix, is not looked at.
    let r = s.envoy.get(&format!("/api/q?token={token}"), &[]);
    assert_refused(&r, 401, "Jwt is missing", "http://api.test/api/q", false);
    let r = s.envoy.get("/api/q", &[("authorization", &token)]);
    assert_eq!(r.status, 401, "{}", r.describe());
}

fn token_is_found_in_configured_header_parameter_and_cookie() {
    let keys = Keys::load();
    let mut config = base_config(&keys);
    let provider = &mut config["jwt_providers"]["example"];
    provider["from_headers"] = json!([{"name": "x-api-token"}]);
    provider["from_params"] = json!(["jwt"]);
    provider["from_cookies"] = json!(["session"]);
    let Some(s) = Stack::start(&config) else {
        return;
    };
    let token = keys.sign(Alg::Es384, &good_claims());

    let up = s.envoy.get("/api/a", &[("x-api-token", &token)]).upstream();
    assert_eq!(up.header("x-jwt-sub"), Some("alice"));
    assert!(
        !up.has_header("x-api-token"),
        "token header removed: {:?}",
        up.headers
    );

    let r = s.envoy.get(&format!("/api/a?jwt={token}"), &[]);
    assert_passed(&r);
    assert_eq!(r.upstream().header("x-jwt-sub"), Some("alice"));

    let cookie = format!("theme=dark; session={token}; lang=en");
    let r = s.envoy.get("/api/a", &[("cookie", &cookie)]);
    assert_passed(&r);
    assert_eq!(r.upstream().header("x-jwt-sub"), Some("alice"));

    // Configured locations replace the defaults: a Bearer header is not looked at any more.
    let r = s.envoy.get_bearer("/api/a", &token);
    assert_refused(&r, 401, "Jwt is missing", "http://api.test/api/a", false);
}

// ---------------------------------------------------------------------------------------------------------
// Rules, requirements and modes

fn routes_without_jwt_and_unmatched_requests_pass_by_default() {
    let keys = Keys::load();
    let Some(s) = Stack::start(&base_config(&keys)) else {
        return;
    };
    assert_passed(&s.envoy.get("/healthz", &[]));
    assert_passed(&s.envoy.get("/elsewhere", &[]));
    assert_eq!(s.envoy.counter(&format!("{P}_no_rule_match")), 1);
}

fn on_no_match_deny_refuses_requests_matching_no_rule_with_403() {
    let keys = Keys::load();
    let mut config = base_config(&keys);
    config["on_no_match"] = json!("deny");
    let Some(s) = Stack::start(&config) else {
        return;
    };
    let r = s.envoy.get("/elsewhere", &[]);
    assert_eq!(r.status, 403, "{}", r.describe());
    assert!(!r.reached_upstream());
    // A valid token does not help where no rule matches.
    let r = s
        .envoy
        .get_bearer("/elsewhere", &keys.sign(Alg::Rs256, &good_claims()));
    assert_eq!(r.status, 403, "{}", r.describe());
    assert_passed(&s.envoy.get("/healthz", &[]));
    assert_eq!(s.echo.requests(), 1);
    assert_eq!(s.envoy.counter(&format!("{P}_no_rule_match")), 2);
}

fn rules_match_on_exact_path_template_method_and_host() {
    let keys = Keys::load();
    let mut config = base_config(&keys);
    config["on_no_match"] = json!("deny");
    config["rules"] = json!([
        {"name": "status", "match": {"exact": "/status"}},
        {"name": "orders", "match": {"template": "/users/{id}/orders/**"}, "jwt": {"provider": "example"}},
        {"name": "read", "match": {"prefix": "/data/", "methods": ["GET"]}},
        {"name": "write", "match": {"prefix": "/data/", "methods": ["POST"]}, "jwt": {"provider": "example"}},
        {"name": "internal", "match": {"prefix": "/", "hosts": ["internal.test"]}}
    ]);
    let Some(s) = Stack::start(&config) else {
        return;
    };
    let token = keys.sign(Alg::Rs256, &good_claims());
    let bearer = format!("Bearer {token}");
    assert_passed(&s.envoy.get("/status", &[]));
    assert_eq!(s.envoy.get("/status/more", &[]).status, 403);
    assert_eq!(s.envoy.get("/users/42/orders/7/items", &[]).status, 401);
    assert_passed(
        &s.envoy
            .get("/users/42/orders/7/items", &[("authorization", &bearer)]),
    );
    assert_eq!(s.envoy.get("/users/42/carts/7", &[]).status, 403);
    assert_passed(&s.envoy.get("/data/x", &[]));
    assert_eq!(s.envoy.request("POST", "/data/x", &[], b"{}").status, 401);
    assert_passed(
        &s.envoy
            .request("POST", "/data/x", &[("authorization", &bearer)], b"{}"),
    );
    assert_eq!(s.envoy.request("DELETE", "/data/x", &[], b"").status, 403);
    assert_passed(&s.envoy.get("/anything", &[("host", "internal.test")]));
}

fn allow_missing_passes_without_token_but_refuses_a_bad_one() {
    let keys = Keys::load();
    let Some(s) = Stack::start(&base_config(&keys)) else {
        return;
    };
    let r = s.envoy.get("/optional/x", &[]);
    assert_passed(&r);
    let mut claims = good_claims();
    claims["exp"] = json!(token::now() - 3600);
    let r = s
        .envoy
        .get_bearer("/optional/x", &keys.sign(Alg::Rs256, &claims));
    assert_refused(
        &r,
        401,
        "Jwt is expired",
        "http://api.test/optional/x",
        true,
    );
    let r = s
        .envoy
        .get_bearer("/optional/x", &keys.sign(Alg::Rs256, &good_claims()));
    assert_eq!(r.upstream().header("x-jwt-sub"), Some("alice"));
}

fn any_all_and_allow_missing_or_failed_requirements() {
    let keys = Keys::load();
    let mut config = base_config(&keys);
    let mut other = local_provider(&keys);
    other["issuer"] = json!("https://other.example");
    other["claim_to_headers"] = json!([{"header_name": "x-other-sub", "claim_name": "sub"}]);
    other["from_headers"] = json!([{"name": "x-other-token"}]);
    config["jwt_providers"]["other"] = other;
    config["rules"] = json!([
        {"match": {"prefix": "/any/"}, "jwt": {"any": [{"provider": "example"}, {"provider": "other"}]}},
        {"match": {"prefix": "/all/"}, "jwt": {"all": [{"provider": "example"}, {"provider": "other"}]}},
        {"match": {"prefix": "/lenient/"}, "jwt": {"allow_missing_or_failed": true}}
    ]);
    let Some(s) = Stack::start(&config) else {
        return;
    };
    let mine = keys.sign(Alg::Rs256, &good_claims());
    let mut other_claims = good_claims();
    other_claims["iss"] = json!("https://other.example");
    other_claims["sub"] = json!("bob");
    let theirs = keys.sign(Alg::Es256, &other_claims);
    let bearer_mine = format!("Bearer {mine}");

    assert_passed(&s.envoy.get_bearer("/any/x", &mine));
    let up = s
        .envoy
        .get("/any/x", &[("x-other-token", &theirs)])
        .upstream();
    assert_eq!(up.header("x-other-sub"), Some("bob"));
    assert_eq!(s.envoy.get("/any/x", &[]).status, 401);

    assert_eq!(
        s.envoy.get_bearer("/all/x", &mine).status,
        401,
        "only one of two"
    );
    let both = [
        ("authorization", bearer_mine.as_str()),
        ("x-other-token", theirs.as_str()),
    ];
    let up = s.envoy.get("/all/x", &both).upstream();
    assert_eq!(up.header("x-jwt-sub"), Some("alice"));
    assert_eq!(up.header("x-other-sub"), Some("bob"));

    assert_passed(&s.envoy.get("/lenient/x", &[]));
    let r = s
        .envoy
        .get_bearer("/lenient/x", &token::tamper_signature(&mine));
    assert_passed(&r);
    assert!(
        !r.upstream().has_header("x-jwt-sub"),
        "a failed token yields no claims"
    );
}

fn report_mode_lets_a_bad_token_through_and_counts_it() {
    let keys = Keys::load();
    let Some(s) = Stack::start(&base_config(&keys)) else {
        return;
    };
    let mut claims = good_claims();
    claims["exp"] = json!(token::now() - 3600);
    let r = s
        .envoy
        .get_bearer("/report/x", &keys.sign(Alg::Rs256, &claims));
    assert_passed(&r);
    assert!(
        !r.upstream().has_header("x-jwt-sub"),
        "no claims from a refused token"
    );
    // A refused token passes in report mode, but never with the client's own claim headers.
    let r = s.envoy.get(
        "/report/x",
        &[("x-jwt-sub", "mallory"), ("x-jwt-payload", "e30")],
    );
    assert_passed(&r);
    let up = r.upstream();
    assert!(
        !up.has_header("x-jwt-sub"),
        "spoofed claim header reached the upstream: {:?}",
        up.headers
    );
    assert!(
        !up.has_header("x-jwt-payload"),
        "spoofed payload header reached the upstream: {:?}",
        up.headers
    );
    assert_eq!(s.envoy.counter(&format!("{P}_report_only_denied")), 2);
    assert_eq!(s.envoy.counter(&format!("{P}_jwt_expired")), 1);
    assert_eq!(s.envoy.counter(&format!("{P}_jwt_missing")), 1);
    // The same request on an enforcing route is refused.
    assert_eq!(s.envoy.get("/api/x", &[]).status, 401);
}

fn global_report_mode_applies_to_every_rule() {
    let keys = Keys::load();
    let mut config = base_config(&keys);
    config["mode"] = json!("report");
    config["on_no_match"] = json!("deny");
    let Some(s) = Stack::start(&config) else {
        return;
    };
    assert_passed(&s.envoy.get("/api/x", &[]));
    assert_passed(&s.envoy.get_bearer("/api/x", "not-a-token"));
    assert_passed(&s.envoy.get("/elsewhere", &[]));
    assert_eq!(s.envoy.counter(&format!("{P}_report_only_denied")), 3);
}

// ---------------------------------------------------------------------------------------------------------
// Configuration errors

#[test]
fn a_misspelled_provider_field_is_refused_and_the_log_names_its_json_path() {
    let keys = Keys::load();
    let Some(paths) = e2e_paths() else { return };
    let mut config = base_config(&keys);
    let provider = config["jwt_providers"]["example"].as_object_mut().unwrap();
    provider.remove("issuer");
    provider.insert("isuer".into(), json!(ISSUER));
    let echo = Echo::start();
    let log = Envoy::start_refused(&paths, &config.to_string(), &EnvoyOpts::new(&echo));
    assert!(
        log.contains("jwt_providers.example.isuer"),
        "Envoy's log does not name the JSON path:\n{}",
        common::tail(&log, 30)
    );
}

#[test]
fn a_rule_naming_an_unknown_provider_is_refused() {
    let keys = Keys::load();
    let Some(paths) = e2e_paths() else { return };
    let mut config = base_config(&keys);
    config["rules"][1]["jwt"]["provider"] = json!("exmaple");
    let echo = Echo::start();
    let log = Envoy::start_refused(&paths, &config.to_string(), &EnvoyOpts::new(&echo));
    assert!(log.contains("rules[1]"), "{}", common::tail(&log, 30));
    assert!(log.contains("exmaple"), "{}", common::tail(&log, 30));
}

// ---------------------------------------------------------------------------------------------------------
// Remote JWKS

fn remote_config(extra: Value) -> Value {
    let mut remote = json!({
        "uri": "http://jwks.local/jwks.json",
        "cluster": "jwks",
        "timeout": "2s",
        "cache_duration": "600s",
        "retry": {"base_interval": "1s", "max_interval": "2s"}
    });
    for (k, v) in extra.as_object().unwrap() {
        remote[k] = v.clone();
    }
    json!({
        "jwt_providers": {"example": {
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "remote_jwks": remote,
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
        }},
        "rules": [{"match": {"prefix": "/api/"}, "jwt": {"provider": "example"}}]
    })
}

/// Waits (at most 15 s) until `token` is accepted; returns the last response.
fn wait_until_accepted(envoy: &Envoy, token: &str) -> Response {
    let mut last = None;
    envoy.eventually(Duration::from_secs(15), |e| {
        let r = e.get_bearer("/api/x", token);
        let ok = r.status == 200;
        last = Some(r);
        ok
    });
    last.unwrap()
}

fn remote_jwks_is_fetched_once_for_all_workers() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.jwks().to_string());
    let Some(s) = Stack::start_with(&remote_config(json!({})), Some(&jwks)) else {
        return;
    };
    let token = keys.sign(Alg::Rs256, &good_claims());
    let r = wait_until_accepted(&s.envoy, &token);
    assert_passed(&r);
    // Many connections (each may land on either worker), different tokens (no cache help).
    for i in 0..40 {
        let alg = [Alg::Rs256, Alg::Es256, Alg::Es384, Alg::EdDsa][i % 4];
        let mut claims = good_claims();
        claims["jti"] = json!(format!("t{i}"));
        let r = s.envoy.get_bearer("/api/x", &keys.sign(alg, &claims));
        assert_eq!(r.status, 200, "request {i}: {}", r.describe());
    }
    // Give a duplicate fetch (another worker, the main thread's VM) the time to show up.
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        jwks.hits(),
        1,
        "JWKS fetched once, then served from shared data"
    );
    assert_eq!(s.envoy.counter(&format!("{P}_jwks_fetch_ok")), 1);
    assert_eq!(s.envoy.counter(&format!("{P}_jwks_fetch_failed")), 0);
}

fn remote_jwks_down_at_start_refuses_then_recovers_when_it_comes_up() {
    let keys = Keys::load();
    let jwks = JwksServer::reserve(keys.jwks().to_string());
    let Some(s) = Stack::start_with(&remote_config(json!({})), Some(&jwks)) else {
        return;
    };
    let token = keys.sign(Alg::Es256, &good_claims());
    let r = s.envoy.get_bearer("/api/x", &token);
    assert_refused(
        &r,
        401,
        "Jwks remote fetch is failed",
        "http://api.test/api/x",
        true,
    );
    assert!(s.envoy.counter(&format!("{P}_jwt_keys_unavailable")) >= 1);
    assert!(
        s.envoy.eventually(Duration::from_secs(10), |e| e
            .counter(&format!("{P}_jwks_fetch_failed"))
            >= 1),
        "a failed fetch is counted"
    );

    jwks.up();
    let r = wait_until_accepted(&s.envoy, &token);
    assert_passed(&r);
    assert_eq!(r.upstream().header("x-jwt-sub"), Some("alice"));
    assert!(s.envoy.counter(&format!("{P}_jwks_fetch_ok")) >= 1);
}

fn remote_jwks_answering_503_counts_failures_and_recovers() {
    let keys = Keys::load();
    let jwks = JwksServer::reserve(keys.jwks().to_string());
    jwks.set_status(503);
    let Some(s) = Stack::start_with(&remote_config(json!({})), Some(&jwks)) else {
        return;
    };
    let token = keys.sign(Alg::EdDsa, &good_claims());
    assert!(
        s.envoy
            .eventually(Duration::from_secs(10), |e| jwks.hits() >= 2
                && e.counter(&format!("{P}_jwks_fetch_failed")) >= 2),
        "fetches are retried with back-off and counted (hits {})",
        jwks.hits()
    );
    let r = s.envoy.get_bearer("/api/x", &token);
    assert_refused(
        &r,
        401,
        "Jwks remote fetch is failed",
        "http://api.test/api/x",
        true,
    );
    jwks.up();
    assert_passed(&wait_until_accepted(&s.envoy, &token));
}

fn remote_jwks_is_refetched_for_an_unknown_kid() {
    let keys = Keys::load();
    // At first the endpoint publishes only the RSA key.
    let mut rsa_only = keys.jwks();
    rsa_only["keys"].as_array_mut().unwrap().truncate(1);
    let jwks = JwksServer::start(rsa_only.to_string());
    let config = remote_config(json!({"refetch_on_unknown_kid": "1s"}));
    let Some(s) = Stack::start_with(&config, Some(&jwks)) else {
        return;
    };
    assert_passed(&wait_until_accepted(
        &s.envoy,
        &keys.sign(Alg::Rs256, &good_claims()),
    ));
    assert_eq!(jwks.hits(), 1);

    // The issuer rotates in an EC key; a token signed with it makes the filter look again.
    jwks.set_body(keys.jwks().to_string());
    let ec = keys.sign(Alg::Es256, &good_claims());
    let r = wait_until_accepted(&s.envoy, &ec);
    assert_passed(&r);
    assert!((2..=4).contains(&jwks.hits()), "hits {}", jwks.hits());
}

// ---------------------------------------------------------------------------------------------------------
// Metrics and cache

fn metrics_are_in_admin_stats_with_the_configured_prefix_and_the_cache_is_used() {
    let keys = Keys::load();
    let mut config = base_config(&keys);
    config["name"] = json!("edge");
    config["jwt_cache"] = json!({"max_entries": 16});
    let Some(s) = Stack::start(&config) else {
        return;
    };
    let token = keys.sign(Alg::Rs256, &good_claims());
    for i in 0..10 {
        let r = s.envoy.get_bearer("/api/x", &token);
        assert_passed(&r);
        let up = r.upstream();
        assert_eq!(
            up.header("x-jwt-sub"),
            Some("alice"),
            "request {i} (cache hit or miss)"
        );
        assert_eq!(
            up.header("x-jwt-payload"),
            Some(token::payload_segment(&token)),
            "request {i}"
        );
    }
    assert_eq!(s.envoy.get("/api/x", &[]).status, 401);
    let stats = s.envoy.stats("edge_");
    let get = |name: &str| stats.get(&format!("wasmcustom.edge_{name}")).copied();
    assert_eq!(get("jwt_allowed"), Some(10), "{stats:?}");
    assert_eq!(get("jwt_denied"), Some(1), "{stats:?}");
    assert_eq!(get("jwt_missing"), Some(1), "{stats:?}");
    let (hit, miss) = (
        get("jwt_cache_hit").unwrap_or(0),
        get("jwt_cache_miss").unwrap_or(0),
    );
    assert!(
        (1..=2).contains(&miss),
        "one miss per worker at most: {stats:?}"
    );
    assert_eq!(hit + miss, 10, "{stats:?}");
    assert!(
        s.envoy
            .stats("apiguard_")
            .keys()
            .all(|k| !k.starts_with("wasmcustom.")),
        "nothing under the default prefix when name is set"
    );
}

fn a_disabled_cache_verifies_every_request() {
    let keys = Keys::load();
    let mut config = base_config(&keys);
    config["jwt_cache"] = json!({"max_entries": 0});
    let Some(s) = Stack::start(&config) else {
        return;
    };
    let token = keys.sign(Alg::Es256, &good_claims());
    for _ in 0..4 {
        assert_passed(&s.envoy.get_bearer("/api/x", &token));
    }
    assert_eq!(s.envoy.counter(&format!("{P}_jwt_cache_hit")), 0);
    // A tampered copy of a token that was accepted is still refused.
    let r = s
        .envoy
        .get_bearer("/api/x", &token::tamper_signature(&token));
    assert_eq!(r.status, 401, "{}", r.describe());
}

fn a_cached_token_is_refused_once_it_expires() {
    let keys = Keys::load();
    let mut config = base_config(&keys);
    config["jwt_providers"]["example"]["clock_skew"] = json!("0s");
    let Some(s) = Stack::start(&config) else {
        return;
    };
    let mut claims = good_claims();
    claims["exp"] = json!(token::now() + 2);
    let token = keys.sign(Alg::Rs256, &claims);
    assert_passed(&s.envoy.get_bearer("/api/x", &token));
    assert_passed(&s.envoy.get_bearer("/api/x", &token));
    thread::sleep(Duration::from_millis(3200));
    let r = s.envoy.get_bearer("/api/x", &token);
    assert_refused(&r, 401, "Jwt is expired", "http://api.test/api/x", true);
}

fn remote_jwks_is_available_soon_after_envoy_is_ready() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.jwks().to_string());
    // A generous fetch timeout: the first keys must not wait for it to run out.
    let config = remote_config(json!({"timeout": "5s"}));
    let Some(s) = Stack::start_with(&config, Some(&jwks)) else {
        return;
    };
    let token = keys.sign(Alg::Rs256, &good_claims());
    let started = std::time::Instant::now();
    let r = wait_until_accepted(&s.envoy, &token);
    assert_passed(&r);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "first JWKS accepted {:?} after Envoy was ready (JWKS server hits: {})",
        started.elapsed(),
        jwks.hits()
    );
}

fn a_jwks_larger_than_max_bytes_is_a_failed_fetch() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.jwks().to_string());
    let config = remote_config(json!({"max_bytes": 256}));
    let Some(s) = Stack::start_with(&config, Some(&jwks)) else {
        return;
    };
    assert!(
        s.envoy.eventually(Duration::from_secs(10), |e| e
            .counter(&format!("{P}_jwks_fetch_failed"))
            >= 1),
        "an oversized JWKS counts as a failed fetch (hits {})",
        jwks.hits()
    );
    let r = s
        .envoy
        .get_bearer("/api/x", &keys.sign(Alg::Rs256, &good_claims()));
    assert_refused(
        &r,
        401,
        "Jwks remote fetch is failed",
        "http://api.test/api/x",
        true,
    );
    assert_eq!(s.envoy.counter(&format!("{P}_jwks_fetch_ok")), 0);
}

// Each test above without `#[test]` runs twice: `http1::<name>` and `http2::<name>`.
crate::per_protocol!(
    harness_envoy_without_the_filter_proxies_to_the_echo_upstream,
    missing_token_is_refused_with_401_and_a_bearer_challenge,
    valid_tokens_of_every_algorithm_reach_the_upstream_with_claim_and_payload_headers,
    every_failure_is_refused_with_envoys_status_body_and_counted,
    strip_failure_response_replies_with_empty_body_and_no_challenge,
    spoofed_claim_and_payload_headers_from_the_client_are_removed,
    authorization_is_forwarded_only_with_forward_true,
    default_locations_are_the_bearer_header_and_the_access_token_parameter,
    token_is_found_in_configured_header_parameter_and_cookie,
    routes_without_jwt_and_unmatched_requests_pass_by_default,
    on_no_match_deny_refuses_requests_matching_no_rule_with_403,
    rules_match_on_exact_path_template_method_and_host,
    allow_missing_passes_without_token_but_refuses_a_bad_one,
    any_all_and_allow_missing_or_failed_requirements,
    report_mode_lets_a_bad_token_through_and_counts_it,
    global_report_mode_applies_to_every_rule,
    remote_jwks_is_fetched_once_for_all_workers,
    remote_jwks_down_at_start_refuses_then_recovers_when_it_comes_up,
    remote_jwks_answering_503_counts_failures_and_recovers,
    remote_jwks_is_refetched_for_an_unknown_kid,
    metrics_are_in_admin_stats_with_the_configured_prefix_and_the_cache_is_used,
    a_disabled_cache_verifies_every_request,
    a_cached_token_is_refused_once_it_expires,
    remote_jwks_is_available_soon_after_envoy_is_ready,
    a_jwks_larger_than_max_bytes_is_a_failed_fetch,
);
