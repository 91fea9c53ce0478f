//! Credentials a request could be read two ways, end to end: the built filter inside a real Envoy
//! (HTTP/1.1), on an `allow_missing` route where "no token" passes. Each forged token must be refused,
//! never read as "no token" nor as one chosen copy; query tokens must not reach the upstream; and a
//! client-address rate limit must hold against a rotating `x-forwarded-for`.
//!
//! Run with `make test` (or `make build envoy` then `cargo test --test e2e_credentials`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use common::token::{good_claims, Alg, Keys, AUDIENCE, ISSUER};
use common::{e2e_paths, Echo, Envoy, EnvoyOpts, Response};
use serde_json::{json, Value};

fn provider(keys: &Keys, forward: bool) -> Value {
    json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": keys.hs_jwks().to_string()},
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "from_params": ["access_token"],
        "from_cookies": ["session"],
        "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
        "forward": forward
    })
}

fn config(keys: &Keys) -> Value {
    json!({
        "mode": "enforce",
        "on_no_match": "allow",
        "jwt_providers": {"idp": provider(keys, false), "fwd": provider(keys, true)},
        "rate_limits": {
            "per_client": {"requests": 10, "period": "1h", "headers": "none",
                           "key": [{"client_address": {"use_remote_address": true}}]}
        },
        "rules": [
            {"name": "optional", "match": {"prefix": "/optional/"}, "jwt": {"allow_missing": true}},
            {"name": "api", "match": {"prefix": "/api/"}, "jwt": {"provider": "idp"}},
            {"name": "forward", "match": {"prefix": "/forward/"}, "jwt": {"provider": "fwd"}},
            {"name": "limited", "match": {"prefix": "/limited/"}, "rate_limits": "per_client"}
        ]
    })
}

struct Stack {
    envoy: Envoy,
    _echo: Echo,
    keys: Keys,
}

fn start() -> Option<Stack> {
    let paths = e2e_paths()?;
    let keys = Keys::load();
    let echo = Echo::start();
    let envoy = Envoy::start(&paths, &config(&keys).to_string(), &EnvoyOpts::new(&echo));
    Some(Stack {
        envoy,
        _echo: echo,
        keys,
    })
}

impl Stack {
    fn valid(&self) -> String {
        self.keys.sign(Alg::Hs256, &good_claims())
    }

    /// Signed with a secret the provider does not know.
    fn forged(&self) -> String {
        let mut claims = good_claims();
        claims["sub"] = json!("admin");
        let t = self.keys.sign(Alg::Hs256, &claims);
        common::token::tamper_signature(&t)
    }
}

#[track_caller]
fn assert_refused_401(r: &Response) {
    assert_eq!(r.status, 401, "{}", r.describe());
    assert!(!r.reached_upstream(), "{}", r.describe());
}

#[track_caller]
fn assert_passed(r: &Response) {
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.reached_upstream(), "{}", r.describe());
}

fn the_allow_missing_route_passes_no_token_and_refuses_a_plainly_forged_one() {
    let Some(s) = start() else { return };
    assert_passed(&s.envoy.get("/optional/x", &[]));
    assert_passed(&s.envoy.get_bearer("/optional/x", &s.valid()));
    assert_refused_401(&s.envoy.get_bearer("/optional/x", &s.forged()));
}

fn an_encoded_access_token_parameter_is_verified() {
    let Some(s) = start() else { return };
    let r = s
        .envoy
        .get(&format!("/optional/x?access%5Ftoken={}", s.forged()), &[]);
    assert_refused_401(&r);
}

fn two_spaces_after_bearer_are_refused() {
    let Some(s) = start() else { return };
    let value = format!("Bearer  {}", s.forged());
    assert_refused_401(&s.envoy.get("/optional/x", &[("authorization", &value)]));
}

fn a_bearer_token_after_another_scheme_is_refused() {
    let Some(s) = start() else { return };
    let value = format!("Basic dXNlcjpwYXNz, Bearer {}", s.forged());
    assert_refused_401(&s.envoy.get("/optional/x", &[("authorization", &value)]));
}

fn two_authorization_headers_are_refused_whichever_is_valid() {
    let Some(s) = start() else { return };
    let (v, f) = (
        format!("Bearer {}", s.valid()),
        format!("Bearer {}", s.forged()),
    );
    for (first, second) in [(&v, &f), (&f, &v)] {
        let r = s.envoy.get(
            "/optional/x",
            &[("authorization", first), ("authorization", second)],
        );
        assert_refused_401(&r);
    }
}

// HTTP/1 `Cookie` lines reach the filter unmerged; the pure core refuses a second one (see
// tests/credential_ambiguity.rs) once the host's request view counts repeated headers
// (`TokenSource::header_count` in `HostRequest`, the lead's `src/host/request.rs`).
fn a_second_cookie_header_with_a_forged_session_is_refused() {
    let Some(s) = start() else { return };
    let cookie = format!("session={}", s.forged());
    let r = s.envoy.get(
        "/optional/x",
        &[("cookie", "theme=dark"), ("cookie", &cookie)],
    );
    assert_refused_401(&r);
}

fn query_tokens_are_stripped_before_the_upstream_and_repeated_ones_refused() {
    let Some(s) = start() else { return };
    let t = s.valid();
    let r = s
        .envoy
        .get(&format!("/api/x?a=%2F&access_token={t}&b=1+2"), &[]);
    assert_passed(&r);
    let up = r.upstream();
    assert_eq!(up.path, "/api/x?a=%2F&b=1+2");
    assert_eq!(up.header("x-jwt-sub"), Some("alice"), "{:?}", up.headers);
    let r = s.envoy.get(
        &format!("/api/x?access_token={t}&access_token={}", s.forged()),
        &[],
    );
    assert_refused_401(&r);
    // forward: true keeps a single query token.
    let r = s.envoy.get(&format!("/forward/x?access_token={t}"), &[]);
    assert_passed(&r);
    assert_eq!(r.upstream().path, format!("/forward/x?access_token={t}"));
}

fn forward_with_two_authorization_headers_is_refused_not_forwarded() {
    let Some(s) = start() else { return };
    let v = format!("Bearer {}", s.valid());
    let f = format!("Bearer {}", s.forged());
    assert_passed(&s.envoy.get("/forward/x", &[("authorization", &v)]));
    let r = s.envoy.get(
        "/forward/x",
        &[("authorization", &v), ("authorization", &f)],
    );
    assert_refused_401(&r);
}

fn a_rotating_x_forwarded_for_does_not_escape_a_client_address_limit() {
    let Some(s) = start() else { return };
    let mut passed = 0;
    for i in 0..60 {
        let xff = format!("203.0.113.{}", i + 1);
        let r = s.envoy.get("/limited/x", &[("x-forwarded-for", &xff)]);
        match r.status {
            200 => passed += 1,
            429 => {}
            other => panic!("unexpected {other}: {}", r.describe()),
        }
    }
    assert_eq!(passed, 10);
}

// Each test above without `#[test]` runs twice: `http1::<name>` and `http2::<name>`.
crate::per_protocol!(
    the_allow_missing_route_passes_no_token_and_refuses_a_plainly_forged_one,
    an_encoded_access_token_parameter_is_verified,
    two_spaces_after_bearer_are_refused,
    a_bearer_token_after_another_scheme_is_refused,
    two_authorization_headers_are_refused_whichever_is_valid,
    a_second_cookie_header_with_a_forged_session_is_refused,
    query_tokens_are_stripped_before_the_upstream_and_repeated_ones_refused,
    forward_with_two_authorization_headers_is_refused_not_forwarded,
    a_rotating_x_forwarded_for_does_not_escape_a_client_address_limit,
);
