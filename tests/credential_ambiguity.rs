//! Forged tokens hidden where a request can be read two ways: each must be refused on an
//! `allow_missing` route (where "no token" passes), never read as "no token" nor as one chosen copy.
//! The pure pipeline, with a request double that keeps repeated and non-UTF-8 headers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

use apiguard::config::Policy;
use apiguard::jwt::cache::TokenCache;
use apiguard::jwt::keys::KeySet;
use apiguard::jwt::Status;
use apiguard::pipeline::{self, HeaderChange, KeyLookup, Verdict, WorkerEnv};
use apiguard::ratelimit::Seed;
use apiguard::refusal::Denial;
use apiguard::request::Request;
use apiguard::store::memory::MemoryStore;
use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{Algorithm, AlgorithmSignature};
use serde_json::{json, Value};
use std::sync::Arc;

const SECRET: &[u8] = b"an HMAC secret of at least 32 bytes long";
const NOW: u64 = 1_700_000_000;

fn sign(payload: &Value, secret: &[u8]) -> String {
    let header = json!({"alg": "HS256", "kid": "hs1", "typ": "JWT"});
    let input = format!(
        "{}.{}",
        Base64UrlUnpadded::encode_string(header.to_string().as_bytes()),
        Base64UrlUnpadded::encode_string(payload.to_string().as_bytes())
    );
    let sig = Hs256.sign(&Hs256Key::new(secret), input.as_bytes());
    format!(
        "{input}.{}",
        Base64UrlUnpadded::encode_string(sig.as_bytes().as_ref())
    )
}

fn claims(sub: &str) -> Value {
    json!({"iss": "https://idp", "aud": "api", "sub": sub, "exp": NOW + 600, "iat": NOW})
}

fn valid() -> String {
    sign(&claims("alice"), SECRET)
}

/// Signed with a key the provider does not have: what an attacker can make.
fn forged() -> String {
    sign(
        &claims("admin"),
        b"not the provider's secret, but 32+ bytes",
    )
}

fn policy() -> Policy {
    let jwks = json!({"keys": [{"kty": "oct", "kid": "hs1", "alg": "HS256",
                                 "k": Base64UrlUnpadded::encode_string(SECRET)}]});
    Policy::from_value(&json!({
        "jwt_providers": {
            "idp": {
                "issuer": "https://idp", "audiences": ["api"],
                "local_jwks": {"inline_string": jwks.to_string()},
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                "from_params": ["access_token"], "from_cookies": ["session"],
                "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}]
            },
            "fwd": {
                "issuer": "https://idp", "audiences": ["api"],
                "local_jwks": {"inline_string": jwks.to_string()},
                "from_headers": [{"name": "x-token", "value_prefix": ""}],
                "from_params": ["token"],
                "forward": true
            }
        },
        "rate_limits": {"per_tenant": {"requests": 100, "period": "60s", "key": [{"header": "x-tenant"}]}},
        "rules": [
            {"name": "optional", "match": {"prefix": "/optional"}, "jwt": {"allow_missing": true}},
            {"name": "forward", "match": {"prefix": "/forward"}, "jwt": {"provider": "fwd"}},
            {"name": "limited", "match": {"prefix": "/limited"}, "rate_limits": "per_tenant"},
            {"name": "api", "match": {"prefix": "/api"}, "jwt": {"provider": "idp"}}
        ]
    }))
    .unwrap()
}

/// A GET from 192.0.2.7 to `https://api.example`; headers are added with `with_header`.
fn get(path: &str) -> Request {
    Request::of(&[
        (":method", "GET"),
        (":path", path),
        (":authority", "api.example"),
        (":scheme", "https"),
    ])
    .with_source_address(Some("192.0.2.7:40000".into()))
}

/// A value that is not UTF-8.
const NOT_UTF8: &[u8] = b"\xff";

struct NoRemote;

impl KeyLookup for NoRemote {
    fn remote_keys(&mut self, _: usize) -> Option<(Arc<KeySet>, u64)> {
        None
    }
}

fn decide(request: &Request) -> Verdict {
    let store = MemoryStore::default();
    let seed = Seed::from_bytes(&[7; 16]);
    let mut cache = TokenCache::new(16);
    let mut env = WorkerEnv {
        keys: &mut NoRemote,
        cache: &mut cache,
        store: &store,
        seed: Some(&seed),
        now_ms: NOW * 1000,
    };
    pipeline::decide(&policy(), request, &mut env)
}

fn refused_as(request: &Request) -> Option<Status> {
    let v = decide(request);
    assert!(v.enforced);
    match v.denial {
        Some(Denial::Jwt(status)) => Some(status),
        None => None,
        Some(other) => panic!("unexpected denial {other:?}"),
    }
}

#[test]
fn the_baseline_passes_with_no_token_and_with_a_valid_one_and_refuses_a_forged_one() {
    assert_eq!(refused_as(&get("/optional/x")), None);
    let ok = get("/optional/x").with_header("authorization", format!("Bearer {}", valid()));
    assert_eq!(refused_as(&ok), None);
    let bad = get("/optional/x").with_header("authorization", format!("Bearer {}", forged()));
    assert_eq!(refused_as(&bad), Some(Status::JwtVerificationFail));
}

#[test]
fn an_encoded_parameter_name_is_the_parameter() {
    for name in ["access%5Ftoken", "access%5ftoken", "%61ccess_token"] {
        let r = get(&format!("/optional/x?{name}={}", forged()));
        assert_eq!(refused_as(&r), Some(Status::JwtVerificationFail), "{name}");
    }
}

#[test]
fn a_second_space_after_the_prefix_is_refused() {
    for value in [
        format!("Bearer  {}", forged()),
        format!("Bearer \t{}", forged()),
        format!("Bearer {} extra", valid()),
    ] {
        let r = get("/optional/x").with_header("authorization", &value);
        assert_eq!(refused_as(&r), Some(Status::JwtBadFormat), "{value:?}");
    }
}

#[test]
fn a_credential_list_in_the_token_header_is_refused() {
    for value in [
        format!("Basic dXNlcg==, Bearer {}", forged()),
        format!("Bearer {},Bearer {}", valid(), forged()),
        format!("Bearer {}, Bearer {}", forged(), valid()),
    ] {
        let r = get("/optional/x").with_header("authorization", &value);
        assert_eq!(refused_as(&r), Some(Status::JwtBadFormat), "{value:?}");
    }
}

#[test]
fn two_authorization_headers_are_refused_whichever_comes_first() {
    let (v, f) = (
        format!("Bearer {}", valid()),
        format!("Bearer {}", forged()),
    );
    for (first, second) in [
        (&v, &f),
        (&f, &v),
        (&v, &v),
        (&"Basic dXNlcg==".to_string(), &f),
    ] {
        let r = get("/optional/x")
            .with_header("authorization", first)
            .with_header("authorization", second);
        assert_eq!(refused_as(&r), Some(Status::JwtBadFormat));
    }
}

#[test]
fn a_second_cookie_header_or_a_repeated_cookie_is_refused() {
    let r = get("/optional/x")
        .with_header("cookie", "theme=dark")
        .with_header("cookie", format!("session={}", forged()));
    assert_eq!(refused_as(&r), Some(Status::JwtBadFormat));
    let r = get("/optional/x").with_header(
        "cookie",
        format!("session={}; session={}", valid(), forged()),
    );
    assert_eq!(refused_as(&r), Some(Status::JwtBadFormat));
    let r = get("/optional/x").with_header("cookie", format!("session={}", valid()));
    assert_eq!(refused_as(&r), None);
}

#[test]
fn a_token_header_that_is_not_utf8_is_refused() {
    let r = get("/optional/x").with_header("authorization", NOT_UTF8);
    assert_eq!(refused_as(&r), Some(Status::JwtBadFormat));
}

#[test]
fn a_repeated_or_empty_query_token_is_refused() {
    for query in [
        format!("access_token={}&access_token={}", valid(), forged()),
        format!("access_token={}&access%5Ftoken={}", valid(), valid()),
        "access_token=".to_string(),
        "a=1&access_token".to_string(),
    ] {
        let r = get(&format!("/optional/x?{query}"));
        assert_eq!(refused_as(&r), Some(Status::JwtBadFormat), "{query}");
    }
}

#[test]
fn a_verified_query_token_is_stripped_from_the_path_before_forwarding() {
    let r = get(&format!("/api/x?b=%2F&access_token={}&c=1+2", valid()));
    let v = decide(&r);
    assert_eq!(v.denial, None);
    assert!(
        v.headers.contains(&HeaderChange::Set(
            ":path".into(),
            "/api/x?b=%2F&c=1+2".into()
        )),
        "{:?}",
        v.headers
    );
    let r = get(&format!("/api/x?access%5Ftoken={}", valid()));
    let v = decide(&r);
    assert!(v
        .headers
        .contains(&HeaderChange::Set(":path".into(), "/api/x".into())));
}

#[test]
fn forward_keeps_a_single_token_and_refuses_duplicates() {
    let r = get(&format!("/forward/x?token={}", valid()));
    let v = decide(&r);
    assert_eq!(v.denial, None);
    assert!(!v
        .headers
        .iter()
        .any(|h| matches!(h, HeaderChange::Set(name, _) if name == ":path")));
    let r = get("/forward/x")
        .with_header("x-token", valid())
        .with_header("x-token", forged());
    assert_eq!(refused_as(&r), Some(Status::JwtBadFormat));
    let r = get(&format!("/forward/x?token={}&token={}", valid(), forged()));
    assert_eq!(refused_as(&r), Some(Status::JwtBadFormat));
}

#[test]
fn a_rate_limit_key_header_sent_twice_is_a_bad_request() {
    let once = get("/limited/x").with_header("x-tenant", "a");
    assert_eq!(decide(&once).denial, None);
    let twice = get("/limited/x")
        .with_header("x-tenant", "a")
        .with_header("x-tenant", "b");
    assert_eq!(
        decide(&twice).denial,
        Some(Denial::BadRequest("ambiguous_rate_limit_key"))
    );
    let bytes = get("/limited/x").with_header("x-tenant", NOT_UTF8);
    assert_eq!(
        decide(&bytes).denial,
        Some(Denial::BadRequest("ambiguous_rate_limit_key"))
    );
}

#[test]
fn a_future_iat_does_not_escape_max_lifetime() {
    let jwks = json!({"keys": [{"kty": "oct", "kid": "hs1", "alg": "HS256",
                                 "k": Base64UrlUnpadded::encode_string(SECRET)}]});
    let p = Policy::from_value(&json!({
        "jwt_providers": {"idp": {"issuer": "https://idp", "local_jwks": {"inline_string": jwks.to_string()},
                                  "max_lifetime": "1h"}},
        "rules": [{"match": {"prefix": "/"}, "jwt": {"provider": "idp"}}]
    }))
    .unwrap();
    // Valid for a year from now, claiming to be issued a year minus an hour from now.
    let year = 365 * 24 * 3600;
    let t = sign(
        &json!({"iss": "https://idp", "exp": NOW + year, "iat": NOW + year - 3600}),
        SECRET,
    );
    let r = get("/x").with_header("authorization", format!("Bearer {t}"));
    let store = MemoryStore::default();
    let mut cache = TokenCache::new(4);
    let mut env = WorkerEnv {
        keys: &mut NoRemote,
        cache: &mut cache,
        store: &store,
        seed: None,
        now_ms: NOW * 1000,
    };
    let v = pipeline::decide(&p, &r, &mut env);
    assert_eq!(v.denial, Some(Denial::Jwt(Status::JwtNotYetValid)));
}
