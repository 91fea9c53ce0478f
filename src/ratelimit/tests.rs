use super::key::fake::Facts;
use super::*;
use crate::reader::ConfigError;
use crate::store::memory::MemoryStore;
use crate::store::Versioned;
use serde_json::{json, Value};

const NOW_MS: u64 = 1_700_000_000_000;
const SEED: Seed = Seed(11, 22);

fn limits(doc: Value) -> RateLimits {
    compile(&Node::root(&doc), "apiguard").unwrap()
}

fn refused(doc: Value) -> ConfigError {
    compile(&Node::root(&doc), "apiguard").unwrap_err()
}

fn user(sub: &str) -> Facts {
    Facts::new().with_claims(json!({"sub": sub}))
}

fn allowed_count(
    l: &RateLimits,
    applied: &[usize],
    facts: &Facts,
    store: &MemoryStore,
    n: usize,
) -> usize {
    (0..n)
        .filter(|_| {
            l.check(applied, "rule", facts, store, &SEED, NOW_MS)
                .refusal
                .is_none()
        })
        .count()
}

fn header<'d>(d: &'d Decision, name: &str) -> Option<&'d str> {
    d.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_full_policy_compiles_with_every_part_and_option() {
    let l = limits(json!({"per_user": {
        "requests": 100, "period": "60s", "burst": 20,
        "key": [{"jwt_claim": "sub"}, {"api_key": true}, {"header": "X-Tenant"},
                {"client_address": {"use_remote_address": true, "trusted_hops": 1}}, {"path_template": true}, {"method": true}],
        "fallback_key": [{"client_address": {"use_remote_address": true}}],
        "on_missing_key": "fallback", "scope": "shared", "on_cas_exhausted": "deny",
        "headers": "x-ratelimit", "headers_on_allowed": true, "max_keys": 500, "cas_attempts": 4
    }}));
    let p = &l.policies[0];
    assert_eq!((p.requests, p.period_ms, p.burst), (100, 60_000, 20));
    assert_eq!(p.key.len(), 6);
    assert_eq!(p.key[2], KeyPart::Header("x-tenant".into()));
    assert_eq!(
        p.key[3],
        KeyPart::ClientAddress {
            trusted_hops: 1,
            ipv6_prefix: 64
        }
    );
    assert_eq!(p.scope, Scope::Shared);
    assert_eq!(p.on_cas_exhausted, OnFailure::Deny);
    assert_eq!(p.headers, HeaderStyle::XRateLimit);
    assert_eq!((p.max_keys, p.cas_attempts), (500, 4));
}

#[test]
fn defaults_are_a_burst_of_the_whole_budget_per_rule_fail_open_and_draft_headers() {
    let l = limits(json!({"p": {"requests": 10, "period": "1s"}}));
    let p = &l.policies[0];
    assert_eq!(p.burst, 10);
    assert!(p.key.is_empty());
    assert_eq!(p.on_missing_key, OnMissingKey::Fallback);
    assert_eq!(p.scope, Scope::Rule);
    assert_eq!(p.on_cas_exhausted, OnFailure::Allow);
    assert_eq!(p.headers, HeaderStyle::Draft);
    assert!(!p.headers_on_allowed);
    assert_eq!(p.max_keys as usize, DEFAULT_MAX_KEYS);
}

#[test]
fn bad_policies_are_refused_with_their_path() {
    let path = |doc: Value| refused(doc).path;
    assert_eq!(path(json!({"p": {"period": "1s"}})), "p.requests");
    assert_eq!(path(json!({"p": {"requests": 1}})), "p.period");
    assert_eq!(
        path(json!({"p": {"requests": 1, "period": "0s"}})),
        "p.period"
    );
    assert_eq!(
        path(json!({"p": {"requests": 1, "period": "60"}})),
        "p.period"
    );
    assert_eq!(
        path(json!({"p": {"requests": -1, "period": "1s"}})),
        "p.requests"
    );
    assert_eq!(
        path(json!({"p": {"requests": 1, "period": "1s", "burst": 0}})),
        "p.burst"
    );
    assert_eq!(
        path(json!({"p": {"requests": 1, "period": "1s", "limit": 1}})),
        "p.limit"
    );
    assert_eq!(
        path(json!({"Bad-Name": {"requests": 1, "period": "1s"}})),
        "Bad-Name"
    );
    assert_eq!(
        path(
            json!({"p": {"requests": 1, "period": "1s", "key": [{"jwt_claim": "sub", "method": true}]}})
        ),
        "p.key[0]"
    );
    assert_eq!(
        path(json!({"p": {"requests": 1, "period": "1s", "key": [{"cookie": "x"}]}})),
        "p.key[0].cookie"
    );
    assert_eq!(
        path(json!({"p": {"requests": 1, "period": "1s", "key": [{"method": false}]}})),
        "p.key[0].method"
    );
    assert_eq!(
        path(json!({"p": {"requests": 1, "period": "1s", "key": [{"header": "a b"}]}})),
        "p.key[0].header"
    );
    assert_eq!(
        path(
            json!({"p": {"requests": 1, "period": "1s", "key": [{"client_address": {"use_remote_address": true, "trusted_hops": 99}}]}})
        ),
        "p.key[0].client_address.trusted_hops"
    );
    assert_eq!(
        path(json!({"p": {"requests": 1, "period": "1s", "key": [{"client_address": {}}]}})),
        "p.key[0].client_address"
    );
    assert_eq!(
        path(
            json!({"p": {"requests": 1, "period": "1s", "key": [{"client_address": {"use_remote_address": false}}]}})
        ),
        "p.key[0].client_address.use_remote_address"
    );
    assert_eq!(
        path(json!({"p": {"requests": 1, "period": "1s", "key": [{"jwt_claim": "a."}]}})),
        "p.key[0].jwt_claim"
    );
    assert_eq!(
        path(
            json!({"p": {"requests": 1, "period": "1s", "on_missing_key": "deny", "fallback_key": []}})
        ),
        "p.fallback_key"
    );
    assert_eq!(
        path(json!({"p": {"requests": 1, "period": "1s", "max_keys": 0}})),
        "p.max_keys"
    );
    assert_eq!(
        path(json!({"p": {"requests": 1, "period": "1s", "headers": "ietf"}})),
        "p.headers"
    );
}

#[test]
fn rules_name_policies_that_exist_once_each() {
    let l =
        limits(json!({"a": {"requests": 1, "period": "1s"}, "b": {"requests": 1, "period": "1s"}}));
    let refs = |doc: Value| compile_rule_refs(&Node::root(&doc), &l);
    assert_eq!(refs(json!("b")).unwrap(), vec![1]);
    assert_eq!(refs(json!(["b", "a"])).unwrap(), vec![1, 0]);
    assert_eq!(refs(json!(["a", "c"])).unwrap_err().path, "$[1]");
    assert_eq!(refs(json!(["a", "a"])).unwrap_err().path, "$[1]");
    assert_eq!(refs(json!(3)).unwrap_err().path, "$");
}

#[test]
fn each_user_has_their_own_budget() {
    let l = limits(json!({"p": {"requests": 3, "period": "60s", "key": [{"jwt_claim": "sub"}]}}));
    let store = MemoryStore::default();
    assert_eq!(allowed_count(&l, &[0], &user("alice"), &store, 10), 3);
    assert_eq!(allowed_count(&l, &[0], &user("bob"), &store, 10), 3);
    assert_eq!(allowed_count(&l, &[0], &user("alice"), &store, 10), 0);
}

#[test]
fn a_refusal_is_429_with_retry_after_and_draft_headers() {
    let l =
        limits(json!({"orders": {"requests": 2, "period": "60s", "key": [{"jwt_claim": "sub"}]}}));
    let store = MemoryStore::default();
    let alice = user("alice");
    let first = l.check(&[0], "r", &alice, &store, &SEED, NOW_MS);
    assert_eq!(first.refusal, None);
    assert!(
        first.headers.is_empty(),
        "headers_on_allowed is off by default"
    );
    l.check(&[0], "r", &alice, &store, &SEED, NOW_MS);
    let d = l.check(&[0], "r", &alice, &store, &SEED, NOW_MS);
    assert_eq!(
        d.refusal,
        Some(Refusal::Limited {
            policy: 0,
            retry_after_secs: 30
        })
    );
    assert_eq!(header(&d, "retry-after"), Some("30"));
    assert_eq!(header(&d, "ratelimit-policy"), Some("\"orders\";q=2;w=60"));
    assert_eq!(header(&d, "ratelimit"), Some("\"orders\";r=0;t=60"));
    assert!(d.events.contains(&(0, LimitEvent::Limited)));
    let reply = headers::reply(&d.refusal.unwrap(), &l, &d.headers, false);
    assert_eq!(reply.status, 429);
    assert!(reply.headers.contains(&("retry-after", "30".to_string())));
    let stripped = headers::reply(&d.refusal.unwrap(), &l, &d.headers, true);
    assert_eq!(stripped.body, "");
    assert!(stripped
        .headers
        .contains(&("retry-after", "30".to_string())));
}

#[test]
fn allowed_responses_carry_headers_when_asked_in_either_style() {
    let l = limits(json!({
        "a": {"requests": 10, "period": "10s", "headers_on_allowed": true, "headers": "x-ratelimit"},
        "b": {"requests": 100, "period": "500ms", "headers_on_allowed": true}
    }));
    let store = MemoryStore::default();
    let d = l.check(&[0, 1], "r", &Facts::new(), &store, &SEED, NOW_MS);
    assert_eq!(d.refusal, None);
    assert_eq!(header(&d, "x-ratelimit-limit"), Some("10, 10;w=10"));
    assert_eq!(header(&d, "x-ratelimit-remaining"), Some("9"));
    assert_eq!(header(&d, "x-ratelimit-reset"), Some("1"));
    // 100 per 500 ms is advertised per second.
    assert_eq!(header(&d, "ratelimit-policy"), Some("\"b\";q=200;w=1"));
    assert_eq!(header(&d, "ratelimit"), Some("\"b\";r=99;t=1"));
    assert_eq!(header(&d, "retry-after"), None);
}

#[test]
fn the_strictest_policy_decides_and_a_refused_request_spends_no_budget() {
    let l = limits(json!({
        "per_user": {"requests": 2, "period": "60s", "key": [{"jwt_claim": "sub"}]},
        "global": {"requests": 5, "period": "60s", "scope": "shared"}
    }));
    let (u, g) = (l.find("per_user").unwrap(), l.find("global").unwrap());
    let store = MemoryStore::default();
    // Alice spends her 2 (and 2 of the global 5), then is refused 10 times by per_user alone.
    assert_eq!(allowed_count(&l, &[u, g], &user("alice"), &store, 12), 2);
    // The refusals spent nothing of the global budget: 3 remain for Bob.
    assert_eq!(allowed_count(&l, &[u, g], &user("bob"), &store, 2), 2);
    assert_eq!(allowed_count(&l, &[u, g], &user("carol"), &store, 2), 1);
    let d = l.check(&[u, g], "rule", &user("dave"), &store, &SEED, NOW_MS);
    assert_eq!(
        d.refusal,
        Some(Refusal::Limited {
            policy: g,
            retry_after_secs: 12
        })
    );
    assert_eq!(d.events, vec![(g, LimitEvent::Limited)]);
}

#[test]
fn the_longest_retry_is_advertised_when_several_policies_refuse() {
    let l = limits(json!({
        "fast": {"requests": 1, "period": "1s"},
        "slow": {"requests": 1, "period": "1h"}
    }));
    let store = MemoryStore::default();
    l.check(&[0, 1], "r", &Facts::new(), &store, &SEED, NOW_MS);
    let d = l.check(&[0, 1], "r", &Facts::new(), &store, &SEED, NOW_MS);
    assert_eq!(
        d.refusal,
        Some(Refusal::Limited {
            policy: 1,
            retry_after_secs: 3600
        })
    );
    assert_eq!(header(&d, "retry-after"), Some("3600"));
    assert_eq!(
        header(&d, "ratelimit-policy"),
        Some("\"slow\";q=1;w=3600, \"fast\";q=1;w=1")
    );
}

#[test]
fn per_rule_scope_separates_rules_and_shared_scope_joins_them() {
    let l = limits(json!({
        "per_rule": {"requests": 1, "period": "60s"},
        "shared": {"requests": 1, "period": "60s", "scope": "shared"}
    }));
    let store = MemoryStore::default();
    let f = Facts::new();
    assert!(l
        .check(&[0], "a", &f, &store, &SEED, NOW_MS)
        .refusal
        .is_none());
    assert!(l
        .check(&[0], "b", &f, &store, &SEED, NOW_MS)
        .refusal
        .is_none());
    assert!(l
        .check(&[1], "a", &f, &store, &SEED, NOW_MS)
        .refusal
        .is_none());
    assert!(l
        .check(&[1], "b", &f, &store, &SEED, NOW_MS)
        .refusal
        .is_some());
}

#[test]
fn a_missing_key_part_is_refused_or_falls_back_as_configured() {
    let l = limits(json!({
        "deny": {"requests": 5, "period": "60s", "key": [{"jwt_claim": "sub"}], "on_missing_key": "deny"},
        "by_ip": {"requests": 2, "period": "60s", "key": [{"jwt_claim": "sub"}], "fallback_key": [{"client_address": {"use_remote_address": true}}]},
        "marker": {"requests": 1, "period": "60s", "key": [{"api_key": true}]}
    }));
    let (deny, by_ip, marker) = (
        l.find("deny").unwrap(),
        l.find("by_ip").unwrap(),
        l.find("marker").unwrap(),
    );
    let store = MemoryStore::default();
    let anon = Facts::new();
    let d = l.check(&[deny], "r", &anon, &store, &SEED, NOW_MS);
    assert_eq!(
        d.refusal,
        Some(Refusal::MissingKey {
            policy: deny,
            part: "jwt_claim"
        })
    );
    assert_eq!(
        headers::reply(&d.refusal.unwrap(), &l, &d.headers, false).status,
        403
    );
    // Anonymous callers are limited per address; a user whose sub is that address is not them.
    assert_eq!(allowed_count(&l, &[by_ip], &anon, &store, 5), 2);
    let other_ip = Facts::new().with_source(Some("10.9.9.9:1"));
    assert_eq!(allowed_count(&l, &[by_ip], &other_ip, &store, 5), 2);
    assert_eq!(allowed_count(&l, &[by_ip], &user("10.0.0.1"), &store, 5), 2);
    // Without fallback_key, all callers lacking the part share one budget.
    assert_eq!(allowed_count(&l, &[marker], &anon, &store, 5), 1);
    assert_eq!(allowed_count(&l, &[marker], &other_ip, &store, 5), 0);
    assert_eq!(
        allowed_count(&l, &[marker], &anon.clone().with_api_key("acme"), &store, 5),
        1
    );
    let d = l.check(&[marker], "r", &other_ip, &store, &SEED, NOW_MS);
    assert!(d.events.contains(&(marker, LimitEvent::FallbackKey)));
}

#[test]
fn an_api_key_identity_is_a_limiter_key() {
    let l = limits(json!({"p": {"requests": 2, "period": "60s", "key": [{"api_key": true}]}}));
    let store = MemoryStore::default();
    let acme = Facts::new().with_api_key("acme");
    let globex = Facts::new().with_api_key("globex");
    assert_eq!(allowed_count(&l, &[0], &acme, &store, 5), 2);
    assert_eq!(allowed_count(&l, &[0], &globex, &store, 5), 2);
}

#[test]
fn method_and_path_template_parts_split_budgets() {
    let l = limits(
        json!({"p": {"requests": 1, "period": "60s", "key": [{"method": true}, {"path_template": true}]}}),
    );
    let store = MemoryStore::default();
    assert_eq!(allowed_count(&l, &[0], &Facts::new(), &store, 3), 1);
    assert_eq!(
        allowed_count(&l, &[0], &Facts::new().with_method("POST"), &store, 3),
        1
    );
    let mut other = Facts::new();
    other.template = "/users/{id}".into();
    assert_eq!(allowed_count(&l, &[0], &other, &store, 3), 1);
}

#[test]
fn time_refills_the_budget_as_the_period_says() {
    let l = limits(json!({"p": {"requests": 60, "period": "60s"}}));
    let store = MemoryStore::default();
    let f = Facts::new();
    let mut allowed = 0;
    for s in 0..120u64 {
        for _ in 0..5 {
            if l.check(&[0], "r", &f, &store, &SEED, NOW_MS + s * 1000)
                .refusal
                .is_none()
            {
                allowed += 1;
            }
        }
    }
    assert_eq!(allowed, 60 + 119);
}

/// A store whose writes always lose the race.
struct AlwaysConflicting(MemoryStore);

impl SharedStore for AlwaysConflicting {
    fn get(&self, key: &str) -> std::result::Result<Versioned, StoreError> {
        self.0.get(key)
    }
    fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> std::result::Result<(), StoreError> {
        Err(StoreError::CasMismatch)
    }
}

struct Failing;

impl SharedStore for Failing {
    fn get(&self, _: &str) -> std::result::Result<Versioned, StoreError> {
        Err(StoreError::Host("InternalFailure".into()))
    }
    fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> std::result::Result<(), StoreError> {
        Err(StoreError::Host("InternalFailure".into()))
    }
}

#[test]
fn exhausted_cas_retries_follow_the_policy_and_are_counted() {
    let l = limits(json!({
        "open": {"requests": 5, "period": "1s", "cas_attempts": 3},
        "closed": {"requests": 5, "period": "1s", "on_cas_exhausted": "deny"}
    }));
    let (open, closed) = (l.find("open").unwrap(), l.find("closed").unwrap());
    let store = AlwaysConflicting(MemoryStore::default());
    let d = l.check(&[open], "r", &Facts::new(), &store, &SEED, NOW_MS);
    assert_eq!(d.refusal, None);
    assert!(d.events.contains(&(open, LimitEvent::CasExhausted)));
    assert_eq!(
        d.events
            .iter()
            .filter(|e| e.1 == LimitEvent::CasRetry)
            .count(),
        0,
        "retries of a failed decision are not reported as slot events"
    );
    let d = l.check(&[closed], "r", &Facts::new(), &store, &SEED, NOW_MS);
    assert_eq!(
        d.refusal,
        Some(Refusal::Limited {
            policy: closed,
            retry_after_secs: 1
        })
    );
    assert!(d.events.contains(&(closed, LimitEvent::CasExhausted)));
    let d = l.check(&[closed], "r", &Facts::new(), &Failing, &SEED, NOW_MS);
    assert!(d.refusal.is_some());
    assert!(d.events.contains(&(closed, LimitEvent::StoreFailed)));
    let d = l.check(&[open, closed], "r", &Facts::new(), &Failing, &SEED, NOW_MS);
    assert!(d.refusal.is_some());
}

#[test]
fn new_keys_are_counted_once_as_tracked() {
    let l = limits(json!({"p": {"requests": 5, "period": "1s", "key": [{"jwt_claim": "sub"}]}}));
    let store = MemoryStore::default();
    let tracked = |facts: &Facts| {
        l.check(&[0], "r", facts, &store, &SEED, NOW_MS)
            .events
            .contains(&(0, LimitEvent::SlotCreated))
    };
    assert!(tracked(&user("alice")));
    assert!(!tracked(&user("alice")));
    assert!(tracked(&user("bob")));
}

#[test]
fn a_zero_limit_refuses_everyone_and_a_huge_one_nobody() {
    let l = limits(json!({
        "closed": {"requests": 0, "period": "60s"},
        "open": {"requests": u64::MAX, "period": "1ms", "burst": u64::MAX}
    }));
    let store = MemoryStore::default();
    let d = l.check(&[0], "r", &Facts::new(), &store, &SEED, NOW_MS);
    assert_eq!(
        d.refusal,
        Some(Refusal::Limited {
            policy: 0,
            retry_after_secs: 60
        })
    );
    assert_eq!(allowed_count(&l, &[1], &Facts::new(), &store, 1_000), 1_000);
}

#[test]
fn the_seed_is_created_once_and_every_worker_reads_the_same() {
    let store = MemoryStore::default();
    let a = ensure_seed(&store, "apiguard", [1; 16]).unwrap();
    let b = ensure_seed(&store, "apiguard", [2; 16]).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, Seed::from_bytes(&[1; 16]));
    // An unreadable record is replaced.
    store.set(&seed_key("other"), b"junk", None).unwrap();
    assert_eq!(
        ensure_seed(&store, "other", [3; 16]).unwrap(),
        Seed::from_bytes(&[3; 16])
    );
    assert!(ensure_seed(&Failing, "apiguard", [1; 16]).is_err());
}

#[test]
fn two_workers_creating_the_seed_at_once_agree() {
    /// The other worker creates the seed between this worker's read and write.
    struct Racing(MemoryStore);
    impl SharedStore for Racing {
        fn get(&self, key: &str) -> std::result::Result<Versioned, StoreError> {
            self.0.get(key)
        }
        fn set(
            &self,
            key: &str,
            value: &[u8],
            cas: Option<u32>,
        ) -> std::result::Result<(), StoreError> {
            if self.0.get(key)?.0.is_none() {
                self.0.set(key, &[9; 16], None)?;
            }
            self.0.set(key, value, cas)
        }
    }
    let store = Racing(MemoryStore::default());
    let seed = ensure_seed(&store, "apiguard", [1; 16]).unwrap();
    assert_eq!(seed, Seed::from_bytes(&[9; 16]));
}

#[test]
fn a_key_header_sent_twice_is_refused_whatever_on_missing_key_says() {
    let l = limits(json!({
        "fallback": {"requests": 5, "period": "60s", "key": [{"header": "x-tenant"}]},
        "deny": {"requests": 5, "period": "60s", "key": [{"header": "x-tenant"}], "on_missing_key": "deny"}
    }));
    let store = MemoryStore::default();
    let twice = Facts::new()
        .with_header("x-tenant", "a")
        .with_repeated("x-tenant");
    for name in ["fallback", "deny"] {
        let policy = l.find(name).unwrap();
        let d = l.check(&[policy], "r", &twice, &store, &SEED, NOW_MS);
        assert_eq!(
            d.refusal,
            Some(Refusal::AmbiguousKey {
                policy,
                part: "header"
            })
        );
        assert_eq!(d.events, vec![(policy, LimitEvent::AmbiguousKey)]);
        assert_eq!(
            headers::reply(&d.refusal.unwrap(), &l, &d.headers, false).status,
            400
        );
    }
}
