use super::*;
use crate::config::Policy;
use crate::store::memory::MemoryStore;
use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{Algorithm, AlgorithmSignature};
use serde_json::json;
use sha2::Digest;

const SECRET: &[u8] = b"an HMAC secret of at least 32 bytes long";
const NOW: u64 = 1_700_000_000;

pub(crate) fn jwks() -> String {
    json!({"keys": [{"kty": "oct", "kid": "hs1", "alg": "HS256", "k": Base64UrlUnpadded::encode_string(SECRET)}]})
        .to_string()
}

fn sign(header: Value, payload: Value) -> String {
    let input = format!(
        "{}.{}",
        Base64UrlUnpadded::encode_string(header.to_string().as_bytes()),
        Base64UrlUnpadded::encode_string(payload.to_string().as_bytes())
    );
    let sig = Hs256.sign(&Hs256Key::new(SECRET), input.as_bytes());
    format!(
        "{input}.{}",
        Base64UrlUnpadded::encode_string(sig.as_bytes().as_ref())
    )
}

pub(crate) fn token(payload: Value) -> String {
    sign(json!({"alg": "HS256", "kid": "hs1", "typ": "JWT"}), payload)
}

fn good_claims() -> Value {
    json!({"iss": "https://idp", "aud": "api", "sub": "alice", "exp": NOW + 600, "realm": {"role": "admin"}, "groups": ["a", "b"]})
}

fn policy(extra_rule: Value) -> Policy {
    Policy::from_value(&json!({
        "jwt_providers": {"idp": {
            "issuer": "https://idp", "audiences": ["api"],
            "local_jwks": {"inline_string": jwks()},
            "forward_payload_header": "x-jwt-payload",
            "claim_to_headers": [
                {"header_name": "x-sub", "claim_name": "sub"},
                {"header_name": "x-role", "claim_name": "realm.role"},
                {"header_name": "x-groups", "claim_name": "groups"}
            ]
        }},
        "rules": [
            {"name": "open", "match": {"prefix": "/public"}},
            extra_rule,
            {"name": "api", "match": {"prefix": "/api"}, "jwt": {"provider": "idp"}}
        ]
    }))
    .unwrap()
}

fn default_policy() -> Policy {
    policy(
        json!({"name": "dry", "match": {"prefix": "/dry"}, "mode": "report", "jwt": {"provider": "idp"}}),
    )
}

/// A request to `api.example` from `192.0.2.7:40000` (GET unless set), as the host would hand it over.
struct Request {
    method: &'static str,
    path: &'static str,
    authority: &'static str,
    headers: Vec<(String, String)>,
}

impl Request {
    fn get(path: &'static str) -> Self {
        Request {
            method: "GET",
            path,
            authority: "api.example",
            headers: Vec::new(),
        }
    }
    fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }
    fn host(mut self, authority: &'static str) -> Self {
        self.authority = authority;
        self
    }
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Another copy of a header the request already has.
    fn also(self, name: &str, value: &str) -> Self {
        self.header(name, value)
    }
    fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }
    fn view(&self) -> crate::request::Request {
        let mut pairs = vec![
            (":method", self.method),
            (":path", self.path),
            (":authority", self.authority),
            (":scheme", "http"),
        ];
        pairs.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        crate::request::Request::of(&pairs).with_source_address(Some("192.0.2.7:40000".into()))
    }
}

struct NoRemote;
impl KeyLookup for NoRemote {
    fn remote_keys(&mut self, _: usize) -> Option<(Arc<KeySet>, u64)> {
        None
    }
}

fn run(policy: &Policy, request: &Request, cache: &mut TokenCache) -> Verdict {
    run_at(policy, request, cache, NOW)
}

fn run_at(policy: &Policy, request: &Request, cache: &mut TokenCache, now: u64) -> Verdict {
    let store = MemoryStore::default();
    let seed = Seed::from_bytes(&[7; 16]);
    let mut env = WorkerEnv {
        keys: &mut NoRemote,
        cache,
        store: &store,
        seed: Some(&seed),
        now_ms: now * 1000,
    };
    decide(policy, &request.view(), &mut env)
}

#[test]
fn a_valid_token_passes_and_its_claims_become_headers() {
    let p = default_policy();
    let t = token(good_claims());
    let v = run(
        &p,
        &Request::get("/api/orders").bearer(&t),
        &mut TokenCache::new(10),
    );
    assert!(!v.refuses());
    assert_eq!(v.denial, None);
    assert!(v
        .headers
        .contains(&HeaderChange::Set("x-sub".into(), "alice".into())));
    assert!(v
        .headers
        .contains(&HeaderChange::Set("x-role".into(), "admin".into())));
    assert!(v
        .headers
        .contains(&HeaderChange::Set("x-groups".into(), "a,b".into())));
    let payload_b64 = t.split('.').nth(1).unwrap().to_string();
    assert!(v
        .headers
        .contains(&HeaderChange::Set("x-jwt-payload".into(), payload_b64)));
    assert!(
        v.headers
            .contains(&HeaderChange::Remove("authorization".into())),
        "token not forwarded by default"
    );
    assert!(v.events.contains(&Event::JwtAllowed));
}

#[test]
fn owned_headers_are_removed_before_any_are_set_even_on_open_routes() {
    let p = default_policy();
    let mut spoofed = Request::get("/public/x");
    for name in ["x-groups", "x-jwt-payload", "x-role", "x-sub"] {
        spoofed = spoofed.header(name, "forged");
    }
    let v = run(&p, &spoofed, &mut TokenCache::new(10));
    assert_eq!(
        v.headers,
        vec![
            HeaderChange::Remove("x-groups".into()),
            HeaderChange::Remove("x-jwt-payload".into()),
            HeaderChange::Remove("x-role".into()),
            HeaderChange::Remove("x-sub".into())
        ]
    );
    let spoofed = Request::get("/api/x")
        .bearer(&token(good_claims()))
        .header("x-sub", "mallory");
    let v = run(&p, &spoofed, &mut TokenCache::new(10));
    let first_set = v
        .headers
        .iter()
        .position(|h| matches!(h, HeaderChange::Set(..)))
        .unwrap();
    let last_remove_of_owned = v
        .headers
        .iter()
        .rposition(|h| *h == HeaderChange::Remove("x-sub".into()))
        .unwrap();
    assert!(last_remove_of_owned < first_set);
}

#[test]
fn owned_headers_the_client_did_not_send_cost_no_removal() {
    let v = run(
        &default_policy(),
        &Request::get("/public/x"),
        &mut TokenCache::new(10),
    );
    assert!(v.headers.is_empty());
}

#[test]
fn each_failure_is_refused_with_envoys_status() {
    let p = default_policy();
    let cases = [
        (None, Status::JwtMissed),
        (
            Some(token(
                json!({"iss": "https://idp", "aud": "api", "exp": NOW - 61}),
            )),
            Status::JwtExpired,
        ),
        (
            Some(token(
                json!({"iss": "https://idp", "aud": "other", "exp": NOW + 60}),
            )),
            Status::JwtAudienceNotAllowed,
        ),
        (
            Some(token(
                json!({"iss": "https://evil", "aud": "api", "exp": NOW + 60}),
            )),
            Status::JwtUnknownIssuer,
        ),
        (
            Some(format!("{}x", token(good_claims()))),
            Status::JwtVerificationFail,
        ),
        (Some("not-a-jwt".to_string()), Status::JwtBadFormat),
        (Some("a".repeat(9000)), Status::JwtTooLarge),
    ];
    for (t, expected) in cases {
        let mut request = Request::get("/api/x");
        if let Some(t) = &t {
            request = request.bearer(t);
        }
        let v = run(&p, &request, &mut TokenCache::new(10));
        assert_eq!(v.denial, Some(Denial::Jwt(expected)), "{t:?}");
        assert!(v.refuses());
        assert!(v.events.contains(&Event::JwtDenied(expected)));
        assert!(
            !v.headers.iter().any(|h| matches!(h, HeaderChange::Set(..))),
            "no claim header on failure"
        );
    }
}

#[test]
fn report_mode_decides_and_counts_but_lets_the_request_through() {
    let p = default_policy();
    let v = run(&p, &Request::get("/dry/x"), &mut TokenCache::new(10));
    assert_eq!(v.denial, Some(Denial::Jwt(Status::JwtMissed)));
    assert!(!v.refuses());
    assert!(v.events.contains(&Event::ReportOnlyDenied));
}

#[test]
fn a_repeated_token_is_served_from_the_cache_until_it_expires() {
    let p = default_policy();
    let t = token(json!({"iss": "https://idp", "aud": "api", "exp": NOW + 10}));
    let mut cache = TokenCache::new(10);
    let first = run(&p, &Request::get("/api/x").bearer(&t), &mut cache);
    assert!(first.events.contains(&Event::CacheMiss));
    let second = run(&p, &Request::get("/api/x").bearer(&t), &mut cache);
    assert!(second.events.contains(&Event::CacheHit));
    assert_eq!(first.headers, second.headers);
    let later = run_at(&p, &Request::get("/api/x").bearer(&t), &mut cache, NOW + 71);
    assert_eq!(
        later.denial,
        Some(Denial::Jwt(Status::JwtExpired)),
        "exp + 60 s skew has passed"
    );
}

#[test]
fn a_request_matching_no_rule_follows_on_no_match() {
    let allow = default_policy();
    let v = run(&allow, &Request::get("/elsewhere"), &mut TokenCache::new(1));
    assert!(!v.refuses());
    assert!(v.events.contains(&Event::NoRuleMatch));
    let deny = Policy::from_value(&json!({"on_no_match": "deny"})).unwrap();
    let v = run(&deny, &Request::get("/elsewhere"), &mut TokenCache::new(1));
    assert_eq!(v.denial, Some(Denial::NoRuleMatched));
    assert!(v.refuses());
}

#[test]
fn remote_keys_not_yet_fetched_give_jwks_fetch_fail_after_the_claims_checks() {
    let p = Policy::from_value(&json!({
        "jwt_providers": {"idp": {"issuer": "https://idp", "remote_jwks": {"cluster": "c", "uri": "http://idp/k"}}},
        "rules": [{"match": {"prefix": "/"}, "jwt": {"provider": "idp"}}]
    }))
    .unwrap();
    let v = run(
        &p,
        &Request::get("/x").bearer(&token(good_claims())),
        &mut TokenCache::new(1),
    );
    assert_eq!(v.denial, Some(Denial::Jwt(Status::JwksFetchFail)));
    let expired = token(json!({"iss": "https://idp", "exp": NOW - 100}));
    let v = run(
        &p,
        &Request::get("/x").bearer(&expired),
        &mut TokenCache::new(1),
    );
    assert_eq!(v.denial, Some(Denial::Jwt(Status::JwtExpired)));
}

#[test]
fn the_original_uri_has_no_query_and_is_bounded() {
    assert_eq!(
        original_uri(&Request::get("/api/x?access_token=secret").view()),
        "http://api.example/api/x"
    );
    let long: &'static str = Box::leak(format!("/{}", "é".repeat(300)).into_boxed_str());
    assert!(original_uri(&Request::get(long).view()).len() <= 256);
}

fn path_policy(extra: Value) -> Policy {
    let mut doc = json!({
        "jwt_providers": {"idp": {"issuer": "https://idp", "audiences": ["api"],
            "local_jwks": {"inline_string": jwks()}}},
        "rules": [
            {"name": "head", "match": {"prefix": "/files/", "methods": ["HEAD"]}},
            {"name": "files", "match": {"prefix": "/files/", "methods": ["GET"]}, "jwt": {"provider": "idp"}},
            {"name": "admin", "match": {"prefix": "/admin/", "hosts": ["admin.example.com"]}, "jwt": {"provider": "idp"}},
            {"name": "legacy", "match": {"prefix": "/legacy/", "case_insensitive": true}, "jwt": {"provider": "idp"}},
            {"name": "forms", "match": {"prefix": "/forms/"}, "jwt": {"provider": "idp"}, "allow_method_override": true},
            {"name": "api", "match": {"prefix": "/api/"}, "jwt": {"provider": "idp"}},
            {"name": "open", "match": {"prefix": "/"}}
        ]
    });
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            d.insert(k.clone(), v.clone());
        }
    }
    Policy::from_value(&doc).unwrap()
}

fn verdict_for(p: &Policy, r: &Request) -> Verdict {
    run(p, r, &mut TokenCache::new(10))
}

fn rule_name<'p>(p: &'p Policy, v: &Verdict) -> Option<&'p str> {
    v.rule.and_then(|i| p.rules.get(i)).map(|r| r.name.as_str())
}

#[test]
fn paths_that_stay_ambiguous_are_refused_before_routing() {
    let p = path_policy(json!({}));
    for path in [
        "/public/%2e%2e/api/x",
        "/public/.%2E/api/x",
        "/public%2F..%2Fapi/x",
        "/public\\..\\api/x",
        "/api/x%00",
        "/api/%c0%ae",
        "/api/x%zz",
    ] {
        let v = verdict_for(&p, &Request::get(path));
        assert_eq!(
            v.denial,
            Some(Denial::BadRequest("ambiguous_path")),
            "{path}"
        );
        assert!(v.refuses() && v.rule.is_none(), "{path}");
        assert!(v.events.contains(&Event::PathAmbiguous), "{path}");
    }
}

#[test]
fn paths_that_canonicalise_cleanly_reach_the_protected_rule() {
    let p = path_policy(json!({}));
    for path in [
        "/public/../api/x",
        "/./api/x",
        "//api/x",
        "/%61pi/x",
        "/open/../api/x?q=1",
    ] {
        let v = verdict_for(&p, &Request::get(path));
        assert_eq!(rule_name(&p, &v), Some("api"), "{path}");
        assert_eq!(v.denial, Some(Denial::Jwt(Status::JwtMissed)), "{path}");
    }
}

#[test]
fn a_path_routes_the_same_as_its_canonical_form() {
    let p = path_policy(json!({"ambiguous_paths": "report"}));
    for path in [
        "/public/../api/x",
        "//admin//x",
        "/%61pi/x",
        "/legacy;a=1/x",
        "/api/%2e%2e/files/y",
    ] {
        let canonical = crate::canonical::canonicalize(path).path.into_owned();
        let raw = verdict_for(&p, &Request::get(path));
        let clean = verdict_for(&p, &Request::get(Box::leak(canonical.into_boxed_str())));
        assert_eq!(raw.rule, clean.rule, "{path}");
    }
}

#[test]
fn report_mode_for_ambiguous_paths_counts_and_routes_by_the_canonical_path() {
    let p = path_policy(json!({"ambiguous_paths": "report"}));
    let v = verdict_for(&p, &Request::get("/public/%2e%2e/api/x"));
    assert!(v.events.contains(&Event::PathAmbiguous));
    assert_eq!(rule_name(&p, &v), Some("api"));
    assert_eq!(v.denial, Some(Denial::Jwt(Status::JwtMissed)));
    let v = verdict_for(&p, &Request::get("/api;jsessionid=1/x"));
    assert!(v.events.contains(&Event::PathMatrixParameters));
    assert_eq!(v.denial, Some(Denial::Jwt(Status::JwtMissed)));
}

#[test]
fn matrix_parameters_are_refused_on_guarded_rules_only() {
    let p = path_policy(json!({}));
    for path in ["/api;jsessionid=1/x", "/api/x;v=2", "/public/..;/api/x"] {
        let v = verdict_for(&p, &Request::get(path));
        assert_eq!(rule_name(&p, &v), Some("api"), "{path}");
        assert_eq!(
            v.denial,
            Some(Denial::BadRequest("matrix_parameters")),
            "{path}"
        );
        assert!(v.events.contains(&Event::PathMatrixParameters), "{path}");
    }
    let v = verdict_for(&p, &Request::get("/shop;jsessionid=1/cart"));
    assert_eq!(rule_name(&p, &v), Some("open"));
    assert_eq!(v.denial, None);
    assert!(v.events.contains(&Event::PathMatrixParameters));
}

#[test]
fn paths_are_case_sensitive_unless_the_rule_says_otherwise() {
    let p = path_policy(json!({}));
    let v = verdict_for(&p, &Request::get("/API/x"));
    assert_eq!(rule_name(&p, &v), Some("open"));
    let v = verdict_for(&p, &Request::get("/LEGACY/x"));
    assert_eq!(rule_name(&p, &v), Some("legacy"));
    assert_eq!(v.denial, Some(Denial::Jwt(Status::JwtMissed)));
}

#[test]
fn head_follows_get_unless_a_rule_lists_head_and_methods_fold_case() {
    let p = path_policy(json!({}));
    // An earlier rule lists HEAD: it wins for HEAD.
    let v = verdict_for(&p, &Request::get("/files/a").method("HEAD"));
    assert_eq!(rule_name(&p, &v), Some("head"));
    let v = verdict_for(&p, &Request::get("/files/a").method("get"));
    assert_eq!(rule_name(&p, &v), Some("files"));
    assert_eq!(v.denial, Some(Denial::Jwt(Status::JwtMissed)));
    let p = Policy::from_value(&json!({
        "jwt_providers": {"idp": {"issuer": "https://idp", "local_jwks": {"inline_string": jwks()}}},
        "rules": [{"name": "read", "match": {"prefix": "/", "methods": ["GET"]}, "jwt": {"provider": "idp"}}]
    }))
    .unwrap();
    for method in ["HEAD", "head", "Get"] {
        let v = verdict_for(&p, &Request::get("/x").method(method));
        assert_eq!(v.rule, Some(0), "{method}");
        assert_eq!(v.denial, Some(Denial::Jwt(Status::JwtMissed)), "{method}");
    }
}

#[test]
fn method_override_headers_are_refused_on_guarded_rules_unless_allowed() {
    let p = path_policy(json!({}));
    for name in METHOD_OVERRIDE_HEADERS {
        let v = verdict_for(&p, &Request::get("/api/x").header(name, "DELETE"));
        assert_eq!(
            v.denial,
            Some(Denial::BadRequest("method_override")),
            "{name}"
        );
        assert!(v.events.contains(&Event::MethodOverride));
        let v = verdict_for(&p, &Request::get("/forms/x").header(name, "DELETE"));
        assert_eq!(v.denial, Some(Denial::Jwt(Status::JwtMissed)), "{name}");
        let v = verdict_for(&p, &Request::get("/open").header(name, "DELETE"));
        assert_eq!(v.denial, None, "{name}");
    }
}

#[test]
fn hosts_match_without_a_trailing_dot_or_port() {
    let p = path_policy(json!({}));
    for host in [
        "admin.example.com",
        "admin.example.com.",
        "ADMIN.example.com.:443",
        "admin.example.com:80",
    ] {
        let v = verdict_for(&p, &Request::get("/admin/x").host(host));
        assert_eq!(rule_name(&p, &v), Some("admin"), "{host}");
    }
    let v = verdict_for(&p, &Request::get("/admin/x").host("admin.example.com.evil"));
    assert_eq!(rule_name(&p, &v), Some("open"));
}

#[test]
fn a_lower_case_method_spends_the_same_rate_limit_budget_as_its_upper_case_form() {
    let p = Policy::from_value(&json!({
        "rate_limits": {"per_method": {"requests": 1, "period": "60s", "key": [{"method": true}]}},
        "rules": [{"name": "all", "match": {"prefix": "/"}, "rate_limits": "per_method"}]
    }))
    .unwrap();
    let store = MemoryStore::default();
    let seed = Seed::from_bytes(&[7; 16]);
    let mut cache = TokenCache::new(10);
    let mut decide_one = |method: &'static str| {
        let mut env = WorkerEnv {
            keys: &mut NoRemote,
            cache: &mut cache,
            store: &store,
            seed: Some(&seed),
            now_ms: NOW * 1000,
        };
        decide(&p, &Request::get("/x").method(method).view(), &mut env)
    };
    assert_eq!(decide_one("GET").denial, None);
    assert!(matches!(
        decide_one("get").denial,
        Some(Denial::RateLimited(_))
    ));
}

#[test]
fn a_query_token_is_removed_from_the_path_and_the_rest_of_the_query_kept_as_sent() {
    let p = default_policy();
    let t = token(good_claims());
    let path: &'static str =
        Box::leak(format!("/api/x?a=%2F&access_token={t}&b=1+2").into_boxed_str());
    let v = run(&p, &Request::get(path), &mut TokenCache::new(10));
    assert!(!v.refuses(), "{v:?}");
    assert!(v.headers.contains(&HeaderChange::Set(
        ":path".into(),
        "/api/x?a=%2F&b=1+2".into()
    )));
}

#[test]
fn a_duplicated_token_header_is_refused_even_when_the_first_copy_is_valid() {
    let p = default_policy();
    let t = token(good_claims());
    let v = run(
        &p,
        &Request::get("/api/x")
            .bearer(&t)
            .also("authorization", "Bearer x.y.z"),
        &mut TokenCache::new(10),
    );
    assert_eq!(v.denial, Some(Denial::Jwt(Status::JwtBadFormat)));
}

#[test]
fn query_credentials_of_both_stages_are_stripped_from_one_path() {
    let key = "partner-key-of-some-length";
    let digest: String = sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let p = Policy::from_value(&json!({
        "jwt_providers": {"idp": {"issuer": "https://idp", "audiences": ["api"], "local_jwks": {"inline_string": jwks()}}},
        "api_keys": {"partners": {"from_param": "api_key", "keys": [{"name": "p", "sha256": digest}]}},
        "rules": [{"name": "both", "match": {"prefix": "/both"}, "jwt": {"provider": "idp"}, "api_key": "partners"}]
    }))
    .unwrap();
    let t = token(good_claims());
    let path: &'static str =
        Box::leak(format!("/both?x=1&access_token={t}&api_key={key}&y=2").into_boxed_str());
    let v = run(&p, &Request::get(path), &mut TokenCache::new(4));
    assert!(!v.refuses(), "{v:?}");
    let paths: Vec<&HeaderChange> = v
        .headers
        .iter()
        .filter(|h| matches!(h, HeaderChange::Set(n, _) if n == ":path"))
        .collect();
    assert_eq!(
        paths,
        vec![&HeaderChange::Set(":path".into(), "/both?x=1&y=2".into())]
    );
}
