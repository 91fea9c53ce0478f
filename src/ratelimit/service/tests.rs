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
