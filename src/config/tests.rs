use super::*;
use serde_json::json;

fn remote() -> Value {
    json!({"cluster": "jwks", "uri": "http://idp.example/keys"})
}

fn error_of(doc: Value) -> ConfigError {
    Policy::from_value(&doc).expect_err("config should be refused")
}

#[test]
fn an_empty_document_is_a_valid_policy_with_safe_defaults() {
    let policy = Policy::from_json(b"{}").unwrap();
    assert_eq!(policy.name, "apiguard");
    assert_eq!(policy.mode, Mode::Enforce);
    assert_eq!(policy.on_no_match, NoMatch::Allow);
    assert_eq!(policy.jwt_cache_max_entries, 1024);
    assert!(policy.rules.is_empty());
}

#[test]
fn unknown_fields_are_refused_with_their_json_path() {
    let e =
        error_of(json!({"jwt_providers": {"example": {"isuer": "x", "remote_jwks": remote()}}}));
    assert_eq!(e.path, "jwt_providers.example.isuer");
    assert!(e.message.contains("unknown field"), "{}", e.message);
    assert!(
        e.message.contains("issuer"),
        "the message lists the known fields: {}",
        e.message
    );

    let e = error_of(json!({"rules": [{"match": {"prefix": "/"}}, {"match": {"prefx": "/a"}}]}));
    assert_eq!(e.path, "rules[1].match.prefx");
    assert_eq!(error_of(json!({"modes": "report"})).path, "modes");
}

#[test]
fn wrong_types_and_values_name_the_path_and_the_expectation() {
    let e = error_of(json!({"mode": "dry-run"}));
    assert_eq!(e.path, "mode");
    assert!(
        e.message.contains("\"enforce\", \"report\""),
        "{}",
        e.message
    );

    let e = error_of(
        json!({"jwt_providers": {"p": {"remote_jwks": {"cluster": "c", "uri": "http://h/", "timeout": "5"}}}}),
    );
    assert_eq!(e.path, "jwt_providers.p.remote_jwks.timeout");

    let e = error_of(json!({"rules": [{"match": {"prefix": "/", "methods": ["get"]}}]}));
    assert_eq!(e.path, "rules[0].match.methods");

    let e = error_of(json!({"rules": [{"match": {"template": "/a/**/b"}}]}));
    assert_eq!(e.path, "rules[0].match.template");

    let e = error_of(json!({"jwt_cache": {"max_entries": -1}}));
    assert_eq!(e.path, "jwt_cache.max_entries");

    assert_eq!(Policy::from_json(b"{not json").unwrap_err().path, "$");
    assert_eq!(error_of(json!([1, 2])).path, "$");
}

#[test]
fn a_rule_naming_an_unknown_provider_is_refused() {
    let e = error_of(json!({
        "jwt_providers": {"a": {"remote_jwks": remote()}},
        "rules": [{"match": {"prefix": "/"}, "jwt": {"any": [{"provider": "a"}, {"provider": "b"}]}}]
    }));
    assert_eq!(e.path, "rules[0].jwt.any[1].provider");
    assert!(e.message.contains("\"b\""), "{}", e.message);
}

#[test]
fn a_requirement_with_two_forms_is_refused() {
    let e = error_of(json!({
        "jwt_providers": {"a": {"remote_jwks": remote()}},
        "rules": [{"match": {"prefix": "/"}, "jwt": {"provider": "a", "allow_missing": true}}]
    }));
    assert_eq!(e.path, "rules[0].jwt");
    assert!(e.message.contains("exactly one"), "{}", e.message);
}

#[test]
fn a_provider_needs_exactly_one_key_source() {
    assert_eq!(
        error_of(json!({"jwt_providers": {"a": {}}})).path,
        "jwt_providers.a"
    );
    let e = error_of(
        json!({"jwt_providers": {"a": {"remote_jwks": remote(), "local_jwks": {"pem": "x"}}}}),
    );
    assert_eq!(e.path, "jwt_providers.a");
}

#[test]
fn remote_jwks_uri_is_split_into_authority_and_path_with_defaults() {
    let policy = Policy::from_value(&json!({"jwt_providers": {"a": {"remote_jwks": {
        "cluster": "idp", "uri": "https://idp.example:8443/.well-known/jwks.json", "retry": {"base_interval": "250ms"}
    }}}}))
    .unwrap();
    let (index, remote) = policy.remote_jwks().next().unwrap();
    assert_eq!(index, 0);
    assert_eq!(remote.authority, "idp.example:8443");
    assert_eq!(remote.path, "/.well-known/jwks.json");
    assert_eq!(remote.cache_duration, Duration::from_secs(600));
    assert_eq!(remote.retry_base, Duration::from_millis(250));
    assert_eq!(remote.max_bytes, 64 * 1024);
    assert_eq!(remote.refetch_on_unknown_kid, Some(Duration::from_secs(30)));
}

#[test]
fn an_unknown_kid_refetch_interval_under_a_second_is_refused() {
    let e = error_of(json!({"jwt_providers": {"a": {"remote_jwks": {
        "cluster": "idp", "uri": "https://idp.example/jwks", "refetch_on_unknown_kid": "100ms"
    }}}}));
    assert_eq!(e.path, "jwt_providers.a.remote_jwks.refetch_on_unknown_kid");
}

#[test]
fn provider_defaults_follow_envoy() {
    let policy =
        Policy::from_value(&json!({"jwt_providers": {"a": {"remote_jwks": remote()}}})).unwrap();
    let p = &policy.providers[0];
    assert_eq!(p.locations, TokenLocation::envoy_defaults());
    assert!(!p.forward);
    assert!(p.claims.require_expiration);
    assert_eq!(p.claims.clock_skew_secs, 60);
    assert_eq!(p.max_token_bytes, 8192);
}

#[test]
fn headers_written_by_any_provider_are_owned_and_lower_cased() {
    let policy = Policy::from_value(&json!({"jwt_providers": {
        "a": {"remote_jwks": remote(), "forward_payload_header": "X-Jwt-Payload",
              "claim_to_headers": [{"header_name": "X-Sub", "claim_name": "sub"}]},
        "b": {"remote_jwks": remote(), "claim_to_headers": [{"header_name": "x-sub", "claim_name": "realm.role"}]}
    }}))
    .unwrap();
    assert_eq!(
        policy.owned_headers,
        vec!["x-jwt-payload".to_string(), "x-sub".to_string()]
    );
    assert_eq!(
        policy.providers[1].claim_to_headers[0].claim_path,
        vec!["realm", "role"]
    );
}

#[test]
fn first_matching_rule_wins() {
    let policy = Policy::from_value(&json!({"rules": [
        {"name": "health", "match": {"exact": "/healthz"}},
        {"name": "writes", "match": {"prefix": "/api/", "methods": ["POST"]}},
        {"name": "api", "match": {"prefix": "/api/", "hosts": ["api.example"]}, "mode": "report"}
    ]}))
    .unwrap();
    assert_eq!(
        policy.route("GET", "/healthz", "x").map(|(i, _)| i),
        Some(0)
    );
    assert_eq!(
        policy
            .route("POST", "/api/a", "api.example")
            .map(|(i, _)| i),
        Some(1)
    );
    let (_, rule) = policy.route("GET", "/api/a", "api.example:80").unwrap();
    assert_eq!(rule.name, "api");
    assert_eq!(rule.mode(&policy), Mode::Report);
    assert!(policy.route("GET", "/api/a", "other").is_none());
}

#[test]
fn oversized_documents_are_refused_before_parsing() {
    let big = vec![b' '; MAX_CONFIG_BYTES + 1];
    assert!(Policy::from_json(&big)
        .unwrap_err()
        .message
        .contains("limit"));
}

#[test]
fn rules_refer_to_api_key_sets_rate_limits_and_authz_by_name() {
    let digest = "a".repeat(64);
    let policy = Policy::from_value(&json!({
        "api_keys": {"partners": {"from_header": "x-api-key", "keys": [{"name": "acme", "sha256": digest}]}},
        "rate_limits": {"global": {"requests": 10, "period": "1s"}, "per_key": {"requests": 1, "period": "1s", "key": [{"api_key": true}]}},
        "rules": [{"match": {"template": "/orders/{id}"}, "api_key": "partners", "rate_limits": ["per_key", "global"],
                   "authz": {"scopes": ["orders:read"]}}]
    }))
    .unwrap();
    let rule = &policy.rules[0];
    assert_eq!(rule.api_key, Some(0));
    assert_eq!(rule.rate_limits.len(), 2);
    assert!(rule.authz.is_some());
    assert_eq!(rule.path_label, "/orders/{id}");

    let e = error_of(json!({"rules": [{"match": {"prefix": "/"}, "api_key": "nope"}]}));
    assert_eq!(e.path, "rules[0].api_key");
    let e = error_of(json!({"rules": [{"match": {"prefix": "/"}, "rate_limits": "nope"}]}));
    assert_eq!(e.path, "rules[0].rate_limits");
}

#[test]
fn path_options_default_to_the_strict_behaviour() {
    let policy = Policy::from_value(&json!({"rules": [{"match": {"prefix": "/a/"}}]})).unwrap();
    assert_eq!(policy.ambiguous_paths, AmbiguousPaths::Reject);
    let rule = &policy.rules[0];
    assert!(!rule.matcher.case_insensitive && !rule.allow_method_override && !rule.guarded());
    let policy = Policy::from_value(&json!({"ambiguous_paths": "report", "rules": [
        {"match": {"prefix": "/a/", "case_insensitive": true, "hosts": ["Admin.Example.com."]},
         "allow_method_override": true}
    ]}))
    .unwrap();
    assert_eq!(policy.ambiguous_paths, AmbiguousPaths::Report);
    let rule = &policy.rules[0];
    assert!(rule.matcher.case_insensitive && rule.allow_method_override);
    assert_eq!(rule.matcher.hosts, vec!["admin.example.com"]);
    assert_eq!(
        error_of(json!({"ambiguous_paths": "allow"})).path,
        "ambiguous_paths"
    );
    assert_eq!(
        error_of(json!({"rules": [{"match": {"prefix": "/", "case_insensitive": 1}}]})).path,
        "rules[0].match.case_insensitive"
    );
}

#[test]
fn rule_paths_must_be_written_in_canonical_form() {
    for (bad, hint) in [
        (json!({"prefix": "/a/%7euser"}), "\"/a/~user\""),
        (json!({"exact": "//a"}), "\"/a\""),
        (json!({"prefix": "/a/../b"}), "\"/b\""),
        (json!({"template": "/a/./{id}"}), "\"/a/{id}\""),
        (json!({"prefix": "/a;x"}), "matrix"),
        (json!({"prefix": "/a%2Fb"}), "encoded"),
        (json!({"exact": "/a?x=1"}), "query"),
    ] {
        let e = error_of(json!({"rules": [{"match": bad.clone()}]}));
        assert!(e.path.starts_with("rules[0].match."), "{bad}: {}", e.path);
        assert!(e.message.contains(hint), "{bad}: {}", e.message);
    }
}

#[test]
fn the_plugin_configuration_as_envoy_hands_it_over() {
    // What on_configure (and `apiguard check`) compiles: empty means `{}`, anything else is JSON.
    let empty = Policy::from_plugin_configuration(b"").unwrap();
    assert_eq!((empty.mode, empty.rules.len()), (Mode::Enforce, 0));
    let e = Policy::from_plugin_configuration(b" ").unwrap_err();
    assert_eq!(e.path, "$");
    let e = Policy::from_plugin_configuration(br#"{"mode": "x"}"#).unwrap_err();
    assert_eq!(e.path, "mode");
}
