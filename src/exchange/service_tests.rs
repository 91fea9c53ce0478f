//! A request that waits for the rate limit service, through [`super::sim`]: paused while the call
//! is in flight, then resumed or refused by the answer.

use super::sim::Sim;
use super::*;
use crate::config::Policy;
use crate::ratelimit::service::ServiceResult;
use serde_json::json;

fn sim(mode: &str, failure_mode: &str) -> Sim {
    let config = json!({
        "rate_limits": {"global": {"key": [{"header": "x-user"}],
            "service": {"cluster": "rls", "domain": "apiguard", "timeout": "50ms", "failure_mode": failure_mode}}},
        "rules": [{"match": {"prefix": "/api/"}, "rate_limits": "global", "mode": mode}]
    });
    Sim::new(Rc::new(Policy::from_value(&config).unwrap()))
}

fn get(sim: &mut Sim) -> Flow {
    sim.request(
        Headers::of(&[
            (":method", "GET"),
            (":path", "/api/x"),
            (":authority", "h"),
            (":scheme", "http"),
            ("x-user", "alice"),
        ]),
        true,
    )
}

/// `RateLimitResponse { overall_code, statuses: [{code, 10 per minute, remaining 0, 30s}],
/// response_headers_to_add: [x-rls: yes], request_headers_to_add: [x-checked: 1] }`.
fn answer(code: u8) -> ServiceResult {
    let status = [8, code, 18, 4, 8, 10, 16, 2, 24, 0, 34, 2, 8, 30];
    let mut m = vec![8, code, 18, status.len() as u8];
    m.extend_from_slice(&status);
    m.extend_from_slice(&[
        26, 12, 10, 5, b'x', b'-', b'r', b'l', b's', 18, 3, b'y', b'e', b's',
    ]);
    m.extend_from_slice(&[
        34, 14, 10, 9, b'x', b'-', b'c', b'h', b'e', b'c', b'k', b'e', b'd', 18, 1, b'1',
    ]);
    ServiceResult::Reply(m)
}

fn counted(sim: &Sim, event: crate::ratelimit::LimitEvent) -> usize {
    sim.host
        .events
        .iter()
        .filter(|e| matches!(e, crate::pipeline::Event::RateLimit(0, x) if *x == event))
        .count()
}

#[test]
fn the_request_waits_for_the_call_then_goes_on_with_the_services_headers() {
    let mut sim = sim("enforce", "allow");
    assert_eq!(get(&mut sim), Flow::Pause);
    assert_eq!(sim.host.service_calls.len(), 1);
    let (cluster, _, timeout) = &sim.host.service_calls[0];
    assert_eq!((cluster.as_str(), *timeout), ("rls", 50));
    assert!(sim.host.reply.is_none());
    sim.host.now += 3;
    assert_eq!(sim.service(answer(1)), Flow::Continue);
    assert!(sim
        .host
        .header_changes
        .iter()
        .any(|(side, n, v)| *side == Side::Request
            && n == "x-checked"
            && v.as_deref() == Some(&b"1"[..])));
    assert_eq!(sim.host.latencies, vec![(0, 3000)]);
    // The host adds the read of the answer and the resume: 4 host calls before the header it sets.
    let calls: Vec<&str> = sim
        .host
        .calls
        .iter()
        .map(String::as_str)
        .filter(|c| !c.starts_with("metric ") && *c != "now")
        .collect();
    assert_eq!(calls[..2], ["request_headers", "call_service"]);
    sim.response(Headers::of(&[(":status", "200")]), true);
    assert!(sim
        .host
        .headers_added
        .iter()
        .any(|(side, n, v)| *side == Side::Response && n == "x-rls" && v == b"yes"));
    assert_eq!(counted(&sim, crate::ratelimit::LimitEvent::Allowed), 1);
    assert_eq!(counted(&sim, crate::ratelimit::LimitEvent::ServiceCall), 1);
}

#[test]
fn over_limit_is_a_429_with_the_services_headers() {
    let mut sim = sim("enforce", "allow");
    assert_eq!(get(&mut sim), Flow::Pause);
    assert_eq!(sim.service(answer(2)), Flow::Pause);
    let reply = sim.host.reply.clone().unwrap();
    assert_eq!(reply.status, 429);
    let has = |n: &str, v: &str| reply.headers.iter().any(|(k, x)| *k == n && x == v);
    assert!(has("retry-after", "30"), "{reply:?}");
    assert!(has("ratelimit-policy", "\"global\";q=10;w=60"), "{reply:?}");
    assert!(has("ratelimit", "\"global\";r=0;t=30"), "{reply:?}");
    assert_eq!(
        reply.extra_headers,
        vec![("x-rls".to_string(), "yes".to_string())]
    );
    assert!(sim.host.header_changes.is_empty(), "nothing goes upstream");
    assert_eq!(sim.host.counter("denied"), 1);
    // A late second answer changes nothing.
    assert_eq!(sim.service(answer(1)), Flow::Pause);
}

#[test]
fn a_call_that_cannot_start_is_decided_at_once_by_failure_mode() {
    let mut allow = sim("enforce", "allow");
    allow.host.service_unreachable = true;
    assert_eq!(get(&mut allow), Flow::Continue);
    assert_eq!(
        counted(&allow, crate::ratelimit::LimitEvent::ServiceFailureAllowed),
        1
    );
    let mut deny = sim("enforce", "deny");
    deny.host.service_unreachable = true;
    assert_eq!(get(&mut deny), Flow::Pause);
    assert_eq!(deny.host.reply.as_ref().map(|r| r.status), Some(503));
}

#[test]
fn a_timeout_is_told_by_the_time_the_failed_call_took() {
    let mut sim = sim("enforce", "deny");
    assert_eq!(get(&mut sim), Flow::Pause);
    sim.host.now += 50;
    assert_eq!(sim.service(ServiceResult::Failed(14)), Flow::Pause);
    assert_eq!(
        counted(&sim, crate::ratelimit::LimitEvent::ServiceTimeout),
        1
    );
    assert_eq!(sim.host.reply.as_ref().map(|r| r.status), Some(503));
}

#[test]
fn report_mode_lets_an_over_limit_request_go_on() {
    let mut sim = sim("report", "allow");
    assert_eq!(get(&mut sim), Flow::Pause);
    assert_eq!(sim.service(answer(2)), Flow::Continue);
    assert!(sim.host.reply.is_none());
    assert_eq!(sim.host.counter("report_only_denied"), 1);
}

#[test]
fn a_body_that_arrives_while_the_call_is_in_flight_is_held() {
    let mut sim = sim("enforce", "allow");
    let mut headers = Headers::of(&[
        (":method", "POST"),
        (":path", "/api/x"),
        (":authority", "h"),
        (":scheme", "http"),
        ("x-user", "alice"),
    ]);
    sim.host.request = std::mem::take(&mut headers);
    assert_eq!(
        sim.exchange
            .on_request_headers(&mut sim.worker, &mut sim.host, false),
        Flow::Pause
    );
    assert_eq!(
        sim.exchange
            .on_request_body(&mut sim.worker, &mut sim.host, 3, true),
        Flow::Pause
    );
    assert_eq!(sim.service(answer(1)), Flow::Continue);
}

/// `local_then_service` with a local share of one request: the second request asks the service,
/// whose `OVER_LIMIT` (30 s) is then answered here, without a call, until it ends.
#[test]
fn an_over_limit_answer_is_remembered_across_requests_of_the_worker() {
    let config = json!({
        "rate_limits": {"share": {"requests": 1, "period": "3600s", "tier": "local_then_service",
            "key": [{"header": "x-user"}],
            "service": {"cluster": "rls", "domain": "apiguard", "refresh": "1h"}}},
        "rules": [{"match": {"prefix": "/api/"}, "rate_limits": "share"}]
    });
    let mut sim = Sim::new(Rc::new(Policy::from_value(&config).unwrap()));
    sim.worker.seed = Some(crate::ratelimit::Seed(5, 6));
    let next = |sim: &mut Sim| {
        sim.exchange = Exchange::new();
        sim.host.reply = None;
        get(sim)
    };
    assert_eq!(get(&mut sim), Flow::Continue, "from the local share");
    assert_eq!(next(&mut sim), Flow::Pause);
    assert_eq!(sim.host.service_calls.len(), 1);
    assert_eq!(sim.service(answer(2)), Flow::Pause);
    assert_eq!(sim.status(), Some(429));
    sim.host.now += 10_000;
    assert_eq!(next(&mut sim), Flow::Pause);
    let reply = sim.host.reply.clone().unwrap();
    assert_eq!(reply.status, 429);
    assert_eq!(sim.host.service_calls.len(), 1, "no call");
    let has = |n: &str, v: &str| reply.headers.iter().any(|(k, x)| *k == n && x == v);
    assert!(has("retry-after", "20"), "{reply:?}");
    assert!(has("ratelimit-policy", "\"share\";q=10;w=60"), "{reply:?}");
    assert!(has("ratelimit", "\"share\";r=0;t=20"), "{reply:?}");
    assert_eq!(
        counted(
            &sim,
            crate::ratelimit::LimitEvent::ServiceOverLimitRemembered
        ),
        1
    );
    sim.host.now += 20_000;
    assert_eq!(next(&mut sim), Flow::Pause);
    assert_eq!(sim.host.service_calls.len(), 2, "asked again once it ended");
    assert_eq!(sim.service(answer(1)), Flow::Continue);
}
