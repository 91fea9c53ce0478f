//! The service backend: configuration, the one call per request, and what each answer decides.

use super::proto::{self, Code};
use super::*;
use crate::config::Policy;
use crate::ratelimit::key::RequestFacts;
use serde_json::{Map, Value};

struct Req {
    user: Option<&'static str>,
    twice: bool,
}

impl RequestFacts for Req {
    fn claims(&self) -> Option<&Map<String, Value>> {
        None
    }
    fn api_key_name(&self) -> Option<&str> {
        None
    }
    fn header(&self, name: &str) -> Option<&str> {
        (name == "x-user").then_some(self.user).flatten()
    }
    fn header_count(&self, name: &str) -> usize {
        match (name == "x-user", self.user, self.twice) {
            (true, Some(_), true) => 2,
            (true, Some(_), false) => 1,
            _ => 0,
        }
    }
    fn source_address(&self) -> Option<&str> {
        None
    }
    fn path_template(&self) -> &str {
        "/r"
    }
    fn method(&self) -> &str {
        "GET"
    }
}

fn limits(extra: &str) -> RateLimits {
    let json = format!(
        r#"{{"rate_limits": {{
            "global": {{"key": [{{"header": "x-user"}}], "service": {{"cluster": "rls", "domain": "d"{extra}}}}},
            "share": {{"requests": 2, "period": "60s", "tier": "local_then_service", "key": [{{"header": "x-user"}}],
                       "service": {{"cluster": "rls", "domain": "d", "failure_mode": "deny", "timeout": "50ms",
                                    "descriptors": [{{"key": "policy", "value": "share"}}, {{"key": "u", "from": {{"header": "x-user"}}}}]}}}}
        }}}}"#
    );
    Policy::from_json(json.as_bytes()).unwrap().rate_limits
}

fn user(u: &'static str) -> Req {
    Req {
        user: Some(u),
        twice: false,
    }
}

#[test]
fn a_service_policy_defaults_to_its_name_and_key_parts_as_descriptor_entries() {
    let l = limits("");
    let p = &l.policies[0];
    assert_eq!(p.tier, Tier::Service);
    let s = p.service.as_ref().unwrap();
    assert_eq!(s.timeout_ms, DEFAULT_TIMEOUT_MS);
    assert_eq!(s.failure_mode, OnFailure::Allow);
    assert_eq!(s.hits_addend, 1);
    assert_eq!(
        s.entries,
        vec![
            ("policy".to_string(), EntryValue::Static("global".into())),
            (
                "x-user".to_string(),
                EntryValue::Part(KeyPart::Header("x-user".into()))
            ),
        ]
    );
}

#[test]
fn one_call_carries_every_policy_with_the_shortest_timeout() {
    let l = limits("");
    let call = l.service_call(&[0, 1], &user("alice")).unwrap().unwrap();
    assert_eq!(call.cluster, "rls");
    assert_eq!(call.timeout_ms, 20);
    assert_eq!(call.policies, vec![0, 1]);
    let expected = proto::encode_request(
        "d",
        &[
            proto::Descriptor {
                entries: vec![("policy", "global".into()), ("x-user", "alice".into())],
                hits_addend: None,
            },
            proto::Descriptor {
                entries: vec![("policy", "share".into()), ("u", "alice".into())],
                hits_addend: None,
            },
        ],
        1,
    );
    assert_eq!(call.message, expected);
}

#[test]
fn different_hits_addends_go_on_each_descriptor() {
    let l = limits(r#", "hits_addend": 3"#);
    let call = l.service_call(&[0, 1], &user("a")).unwrap().unwrap();
    let expected = proto::encode_request(
        "d",
        &[
            proto::Descriptor {
                entries: vec![("policy", "global".into()), ("x-user", "a".into())],
                hits_addend: Some(3),
            },
            proto::Descriptor {
                entries: vec![("policy", "share".into()), ("u", "a".into())],
                hits_addend: Some(1),
            },
        ],
        0,
    );
    assert_eq!(call.message, expected);
}

#[test]
fn a_missing_part_is_sent_as_a_marker_or_refused() {
    let l = limits("");
    let call = l
        .service_call(
            &[0],
            &Req {
                user: None,
                twice: false,
            },
        )
        .unwrap()
        .unwrap();
    assert!(call.message.windows(3).any(|w| w == [18, 1, b'-']));
    let json = r#"{"rate_limits": {"g": {"key": [{"header": "x-user"}], "on_missing_key": "deny",
        "service": {"cluster": "rls", "domain": "d"}}}}"#;
    let l = Policy::from_json(json.as_bytes()).unwrap().rate_limits;
    assert_eq!(
        l.service_call(
            &[0],
            &Req {
                user: None,
                twice: false
            }
        ),
        Err(DescribeFailure::Missing {
            policy: 0,
            part: "header"
        })
    );
    assert_eq!(
        l.service_call(
            &[0],
            &Req {
                user: Some("a"),
                twice: true
            }
        ),
        Err(DescribeFailure::Ambiguous {
            policy: 0,
            part: "header"
        })
    );
}

fn status(code: Code, remaining: u32, reset_ms: u64) -> Vec<u8> {
    // DescriptorStatus { code, current_limit { 10 per MINUTE }, limit_remaining, duration_until_reset }
    let mut s = vec![8, code_wire(code), 18, 4, 8, 10, 16, 2, 24, remaining as u8];
    let secs = reset_ms / 1000;
    let nanos = (reset_ms % 1000) * 1_000_000;
    let mut d = vec![8, secs as u8];
    if nanos > 0 {
        d.push(16);
        let mut n = nanos;
        while n >= 0x80 {
            d.push((n as u8) | 0x80);
            n >>= 7;
        }
        d.push(n as u8);
    }
    s.push(34);
    s.push(d.len() as u8);
    s.extend(d);
    s
}

fn code_wire(code: Code) -> u8 {
    match code {
        Code::Unknown => 0,
        Code::Ok => 1,
        Code::OverLimit => 2,
    }
}

fn response(overall: Code, statuses: &[Vec<u8>], headers: &[(&str, &str)]) -> Vec<u8> {
    let mut m = vec![8, code_wire(overall)];
    for s in statuses {
        m.push(18);
        m.push(s.len() as u8);
        m.extend_from_slice(s);
    }
    for (k, v) in headers {
        let mut h = vec![10, k.len() as u8];
        h.extend_from_slice(k.as_bytes());
        h.push(18);
        h.push(v.len() as u8);
        h.extend_from_slice(v.as_bytes());
        m.push(26);
        m.push(h.len() as u8);
        m.extend(h);
    }
    m
}

#[test]
fn over_limit_refuses_with_the_service_limit_in_the_headers_and_its_own_headers() {
    let l = limits("");
    let call = l.service_call(&[0], &user("a")).unwrap().unwrap();
    let reply = response(
        Code::OverLimit,
        &[status(Code::OverLimit, 0, 1500)],
        &[
            ("x-from-rls", "yes"),
            ("bad name", "x"),
            ("x-crlf", "a\r\nb"),
        ],
    );
    let d = l.service_outcome(&call, &ServiceResult::Reply(reply));
    assert_eq!(
        d.refusal,
        Some(Refusal::Limited {
            policy: 0,
            retry_after_secs: 2
        })
    );
    assert_eq!(
        d.headers,
        vec![
            ("ratelimit-policy", "\"global\";q=10;w=60".to_string()),
            ("ratelimit", "\"global\";r=0;t=2".to_string()),
            ("retry-after", "2".to_string()),
        ]
    );
    assert_eq!(
        d.response_headers,
        vec![("x-from-rls".to_string(), "yes".to_string())]
    );
    assert!(d.events.contains(&(0, LimitEvent::ServiceCall)));
    assert!(d.events.contains(&(0, LimitEvent::ServiceOverLimit)));
    assert!(d.events.contains(&(0, LimitEvent::Limited)));
}

#[test]
fn ok_allows_and_counts_each_policy() {
    let l = limits("");
    let call = l.service_call(&[0, 1], &user("a")).unwrap().unwrap();
    let reply = response(
        Code::Ok,
        &[status(Code::Ok, 4, 1000), status(Code::Ok, 9, 1000)],
        &[],
    );
    let d = l.service_outcome(&call, &ServiceResult::Reply(reply));
    assert_eq!(d.refusal, None);
    assert!(d.headers.is_empty(), "headers_on_allowed is off");
    assert!(d.events.contains(&(0, LimitEvent::Allowed)));
    assert!(d.events.contains(&(1, LimitEvent::Allowed)));
}

#[test]
fn failures_follow_each_policys_failure_mode_and_are_counted() {
    let l = limits("");
    let only_allow = l.service_call(&[0], &user("a")).unwrap().unwrap();
    let with_deny = l.service_call(&[0, 1], &user("a")).unwrap().unwrap();
    for (result, event) in [
        (ServiceResult::Failed(4), LimitEvent::ServiceTimeout),
        (ServiceResult::Failed(14), LimitEvent::ServiceError),
        (ServiceResult::NotSent, LimitEvent::ServiceError),
        (ServiceResult::Reply(vec![8, 0]), LimitEvent::ServiceError),
        (ServiceResult::Reply(vec![0xff]), LimitEvent::ServiceError),
    ] {
        let d = l.service_outcome(&only_allow, &result);
        assert_eq!(d.refusal, None, "{result:?}");
        assert!(d.events.contains(&(0, event)));
        assert!(d.events.contains(&(0, LimitEvent::ServiceFailureAllowed)));
        let d = l.service_outcome(&with_deny, &result);
        assert_eq!(
            d.refusal,
            Some(Refusal::ServiceUnavailable { policy: 1 }),
            "{result:?}"
        );
        assert!(d.events.contains(&(1, LimitEvent::ServiceFailureDenied)));
        assert_eq!(d.headers, vec![("retry-after", "1".to_string())]);
    }
}

#[test]
fn bad_service_sections_name_their_path() {
    for (json, path) in [
        (
            r#"{"rate_limits": {"g": {"service": {"domain": "d"}}}}"#,
            "rate_limits.g.service",
        ),
        (
            r#"{"rate_limits": {"g": {"tier": "local_then_service", "requests": 1, "period": "1s"}}}"#,
            "rate_limits.g.tier",
        ),
        (
            r#"{"rate_limits": {"g": {"service": {"cluster": "c", "domain": "d", "timeout": "11s"}}}}"#,
            "rate_limits.g.service.timeout",
        ),
        (
            r#"{"rate_limits": {"g": {"service": {"cluster": "c", "domain": "d", "descriptors": [{"key": "k"}]}}}}"#,
            "rate_limits.g.service.descriptors[0]",
        ),
        (
            r#"{"rate_limits": {"g": {"tier": "local", "requests": 1, "period": "1s", "service": {"cluster": "c", "domain": "d"}}}}"#,
            "rate_limits.g.service",
        ),
        (
            r#"{"rate_limits": {"a": {"service": {"cluster": "c", "domain": "d"}}, "b": {"service": {"cluster": "c2", "domain": "d"}}},
                "rules": [{"match": {"prefix": "/"}, "rate_limits": ["a", "b"]}]}"#,
            "rules[0].rate_limits",
        ),
    ] {
        let e = Policy::from_json(json.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(path), "{json}: {e}");
    }
}

#[test]
fn a_body_checking_rule_cannot_call_the_service_while_headers_are_held() {
    let json = r#"{"allow_on_headers_stop_iteration": true,
        "schemas": {"s": {"json_schema": {"type": "object"}}},
        "rate_limits": {"g": {"service": {"cluster": "c", "domain": "d"}}},
        "rules": [{"match": {"prefix": "/"}, "schema": "s", "rate_limits": "g"}]}"#;
    let e = Policy::from_json(json.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("rules[0]"), "{e}");
    let ok = json.replace(r#""allow_on_headers_stop_iteration": true,"#, "");
    assert!(Policy::from_json(ok.as_bytes()).is_ok());
}

/// `local_then_service` from the local decision to the remembered answer, at an explicit clock.
mod local_then_service {
    use super::*;
    use crate::ratelimit::Decision;
    use crate::store::memory::MemoryStore;

    const NOW: u64 = 1_700_000_000_000;
    const SEED: key::Seed = key::Seed(3, 4);

    fn share(refresh: &str) -> RateLimits {
        let json = format!(
            r#"{{"rate_limits": {{"share": {{"requests": 1, "period": "3600s", "tier": "local_then_service",
                "key": [{{"header": "x-user"}}],
                "service": {{"cluster": "rls", "domain": "d"{refresh}}}}}}}}}"#
        );
        Policy::from_json(json.as_bytes()).unwrap().rate_limits
    }

    fn check(l: &RateLimits, store: &MemoryStore, u: &'static str, now: u64) -> Decision {
        l.check(&[0], "r", &user(u), store, &SEED, now)
    }

    fn call_for(l: &RateLimits, d: &Decision) -> ServiceCall {
        let call = l.service_call(&[0], &user("alice")).unwrap().unwrap();
        ServiceCall {
            local_keys: d.escalated.clone(),
            ..call
        }
    }

    #[test]
    fn refresh_defaults_to_a_second_and_is_validated() {
        assert_eq!(
            share("").policies[0].service.as_ref().unwrap().refresh_ms,
            DEFAULT_REFRESH_MS
        );
        assert_eq!(
            share(r#", "refresh": "250ms""#).policies[0]
                .service
                .as_ref()
                .unwrap()
                .refresh_ms,
            250
        );
        for (json, path) in [
            (
                r#"{"rate_limits": {"g": {"tier": "local_then_service", "requests": 1, "period": "1s",
                    "service": {"cluster": "c", "domain": "d", "refresh": "2h"}}}}"#,
                "rate_limits.g.service.refresh: refresh must be between 1ms and 1h",
            ),
            (
                r#"{"rate_limits": {"g": {"tier": "local_then_service", "requests": 1, "period": "1s",
                    "service": {"cluster": "c", "domain": "d", "refresh": 5}}}}"#,
                "rate_limits.g.service.refresh",
            ),
            (
                r#"{"rate_limits": {"g": {"service": {"cluster": "c", "domain": "d", "refresh": "1s"}}}}"#,
                "rate_limits.g.service.refresh: refresh is used only with tier \"local_then_service\"",
            ),
        ] {
            let e = Policy::from_json(json.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(path), "{json}: {e}");
        }
    }

    #[test]
    fn an_over_limit_answer_is_remembered_until_its_reset_without_a_call() {
        let l = share(r#", "refresh": "1h""#);
        let store = MemoryStore::default();
        assert!(check(&l, &store, "alice", NOW).escalated.is_empty());
        // The share (1) is spent: the service decides, and says OVER_LIMIT for 30 s.
        let d = check(&l, &store, "alice", NOW + 1);
        assert_eq!(d.escalated.len(), 1);
        let call = call_for(&l, &d);
        let answer = response(Code::OverLimit, &[status(Code::OverLimit, 0, 30_000)], &[]);
        let out = l.service_outcome(&call, &ServiceResult::Reply(answer));
        assert_eq!(out.over, vec![(0, 30_000, (10, 60))]);
        l.remember_over_limit(&call, &out.over, &store, &SEED, NOW + 2);
        // Later requests are refused here, with the service's limit, counting down.
        let d = check(&l, &store, "alice", NOW + 10_002);
        assert!(d.escalated.is_empty(), "no call");
        assert_eq!(
            d.refusal,
            Some(Refusal::Limited {
                policy: 0,
                retry_after_secs: 20
            })
        );
        assert_eq!(
            d.headers,
            vec![
                ("ratelimit-policy", "\"share\";q=10;w=60".to_string()),
                ("ratelimit", "\"share\";r=0;t=20".to_string()),
                ("retry-after", "20".to_string()),
            ]
        );
        assert!(d
            .events
            .contains(&(0, LimitEvent::ServiceOverLimitRemembered)));
        assert!(d.events.contains(&(0, LimitEvent::Limited)));
        // Another key is not affected: it has its own share.
        assert!(check(&l, &store, "bob", NOW + 10_002).refusal.is_none());
        // Once the refusal has ended, the service is asked again.
        let d = check(&l, &store, "alice", NOW + 30_002);
        assert_eq!(d.refusal, None);
        assert_eq!(d.escalated.len(), 1);
    }

    #[test]
    fn an_over_limit_without_a_reset_is_remembered_for_refresh() {
        let l = share(r#", "refresh": "2s""#);
        let call = ServiceCall {
            local_keys: vec![(0, "k".into())],
            ..l.service_call(&[0], &user("alice")).unwrap().unwrap()
        };
        // A status with its code only: no limit, no duration_until_reset.
        let answer = response(Code::OverLimit, &[vec![8, 2]], &[]);
        let out = l.service_outcome(&call, &ServiceResult::Reply(answer));
        assert_eq!(out.over, vec![(0, 2_000, (0, 0))]);
        // A `service` tier policy is never remembered (every request is one call).
        let g = limits("");
        let call = g.service_call(&[0], &user("a")).unwrap().unwrap();
        let answer = response(Code::OverLimit, &[status(Code::OverLimit, 0, 30_000)], &[]);
        assert!(g
            .service_outcome(&call, &ServiceResult::Reply(answer))
            .over
            .is_empty());
    }

    #[test]
    fn a_stale_local_state_asks_the_service_while_the_share_lasts() {
        let json = r#"{"rate_limits": {"share": {"requests": 100, "period": "3600s", "tier": "local_then_service",
            "key": [{"header": "x-user"}], "service": {"cluster": "rls", "domain": "d", "refresh": "5s"}}}}"#;
        let l = Policy::from_json(json.as_bytes()).unwrap().rate_limits;
        let store = MemoryStore::default();
        for t in [0, 1_000, 4_999] {
            let d = check(&l, &store, "alice", NOW + t);
            assert!(d.escalated.is_empty() && d.refusal.is_none(), "at {t}");
        }
        // Older than refresh: this request (which took its part of the share) asks the service.
        let d = check(&l, &store, "alice", NOW + 5_000);
        assert_eq!(d.escalated, vec![(0, d.escalated[0].1.clone())]);
        assert!(d.events.contains(&(0, LimitEvent::LocalShareStale)));
        assert_eq!(d.refusal, None);
        // Its age restarts with that request: the next ones answer locally again.
        assert!(check(&l, &store, "alice", NOW + 5_001).escalated.is_empty());
        assert!(check(&l, &store, "alice", NOW + 9_999).escalated.is_empty());
        assert_eq!(check(&l, &store, "alice", NOW + 10_000).escalated.len(), 1);
    }
}
