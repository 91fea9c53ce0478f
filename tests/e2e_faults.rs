//! Fault injection end to end: the built filter in a real Envoy while its neighbours misbehave. A slow,
//! absent or garbage-answering JWKS server; an upstream that resets mid-body; a client that aborts
//! mid-body; oversized headers and bodies; 1,000 concurrent connections; a long run of distinct keys,
//! tokens and paths with Envoy's memory measured. Each test checks the documented outcome, that nothing
//! panicked or trapped (Envoy's log), and that the filter still serves traffic afterwards.
//!
//! Protocols: the JWKS faults and the `max_buffer_bytes` refusals run over HTTP/1.1 and HTTP/2
//! (`per_protocol!` at the end). The rest stay HTTP/1.1 only, because what they test is HTTP/1.1 framing
//! on a raw socket: an upstream FIN/RST in the middle of a chunked body as the client's bytes show it, a
//! client that half-closes or aborts mid-body (`send_partial`), Envoy's HTTP/1 header-size limit (431),
//! `content-length` vs chunked over-cap bodies, and 1,000 HTTP/1.1 connections / 20,000 keep-alive
//! requests (an HTTP/2 client multiplexes instead; `e2e_bytes` and `e2e_fuzz_requests` cover HTTP/2
//! volume). Resets over HTTP/2 are in `e2e_trailers`.
//!
//! The observed figures are recorded in `docs/faults.md`. Run with `make test`, or alone:
//! `cargo test --test e2e_faults -- --test-threads=2` with `APIGUARD_ENVOY` / `APIGUARD_WASM` set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::token::{good_claims, Alg, Keys, AUDIENCE, ISSUER};
use common::{
    e2e_paths, send_partial, Abort, Echo, Envoy, EnvoyOpts, JwksServer, KeepAlive, Response,
};
use serde_json::{json, Value};

const P: &str = "apiguard";

// ---------------------------------------------------------------------------------------------------------
// Shared checks

/// Envoy is still running and its log shows no panic, trap or critical error.
fn assert_no_crash(envoy: &mut Envoy) {
    assert!(envoy.running(), "Envoy exited");
    let log = envoy.log();
    for needle in [
        "panicked",
        "wasm trap",
        "[critical]",
        "Uncaught RuntimeError",
        "Wasm VM failed",
    ] {
        let hits: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.to_ascii_lowercase()
                    .contains(&needle.to_ascii_lowercase())
            })
            .take(5)
            .collect();
        assert!(
            hits.is_empty(),
            "Envoy's log has {needle:?}:\n{}",
            hits.join("\n")
        );
    }
}

/// A request on `path` (no credentials needed there) reaches the upstream.
fn assert_serves(envoy: &Envoy, path: &str) {
    let r = envoy.get(path, &[]);
    assert!(
        r.status == 200 && r.reached_upstream(),
        "the filter no longer serves {path}: {}",
        r.describe()
    );
}

fn start(config: &Value, echo: &Echo, jwks: Option<&JwksServer>) -> Option<Envoy> {
    let paths = e2e_paths()?;
    let mut opts = EnvoyOpts::new(echo);
    if let Some(j) = jwks {
        opts = opts.jwks(j);
    }
    opts.allow_on_headers_stop_iteration = config["allow_on_headers_stop_iteration"] == true;
    Some(Envoy::start(&paths, &config.to_string(), &opts))
}

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.counter(&format!("{P}_{name}"))
}

/// A token nobody sent before (so that the verified-token cache cannot answer for it).
fn fresh_token(keys: &Keys, alg: Alg, n: usize) -> String {
    let mut claims = good_claims();
    claims["jti"] = json!(format!("fault-{n}"));
    keys.sign(alg, &claims)
}

// ---------------------------------------------------------------------------------------------------------
// Rows 1 and 2: the JWKS server slow, down, or answering garbage

fn remote_config(extra: Value) -> Value {
    let mut remote = json!({
        "uri": "http://jwks.local/jwks.json",
        "cluster": "jwks",
        "timeout": "1s",
        "cache_duration": "600s",
        "retry": {"base_interval": "1s", "max_interval": "2s"}
    });
    for (k, v) in extra.as_object().unwrap() {
        remote[k] = v.clone();
    }
    json!({
        "jwt_providers": {"idp": {
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "remote_jwks": remote,
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
        }},
        "rules": [
            {"name": "open", "match": {"prefix": "/open/"}},
            {"name": "api", "match": {"prefix": "/api/"}, "jwt": {"provider": "idp"}}
        ]
    })
}

fn assert_keys_unavailable(r: &Response) {
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Jwks remote fetch is failed"),
        "{}",
        r.describe()
    );
    assert!(!r.reached_upstream());
}

/// Waits (at most 15 s) until `token` is accepted on `/api/x`; returns the last response.
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

/// Waits (at most `secs`) until `jwks_fetch_failed` reaches `at_least`.
fn wait_failures(envoy: &Envoy, at_least: u64, secs: u64) -> bool {
    envoy.eventually(Duration::from_secs(secs), |e| {
        counter(e, "jwks_fetch_failed") >= at_least
    })
}

fn a_jwks_server_slower_than_the_timeout_fails_fetches_without_holding_requests_then_recovers() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.jwks().to_string());
    jwks.set_delay(Duration::from_secs(4)); // the fetch timeout is 1 s
    let echo = Echo::start();
    let Some(mut envoy) = start(&remote_config(json!({})), &echo, Some(&jwks)) else {
        return;
    };
    let token = keys.sign(Alg::Es256, &good_claims());
    // Requests are answered at once while the fetch hangs: they are not held for the keys.
    let started = Instant::now();
    let r = envoy.get_bearer("/api/x", &token);
    let latency = started.elapsed();
    assert_keys_unavailable(&r);
    assert!(
        latency < Duration::from_millis(900),
        "a request waited {latency:?} for a hanging fetch"
    );
    assert!(
        wait_failures(&envoy, 2, 15),
        "timed-out fetches are counted (hits {}, failed {})",
        jwks.hits(),
        counter(&envoy, "jwks_fetch_failed")
    );
    assert_keys_unavailable(&envoy.get_bearer("/api/x", &token));
    assert_eq!(counter(&envoy, "jwks_fetch_ok"), 0);
    assert!(counter(&envoy, "jwt_keys_unavailable") >= 2);
    assert_serves(&envoy, "/open/x");

    // The server becomes fast: the filter recovers by itself.
    jwks.set_delay(Duration::ZERO);
    let recovered = Instant::now();
    let r = wait_until_accepted(&envoy, &token);
    assert_eq!(r.status, 200, "{}", r.describe());
    eprintln!(
        "slow JWKS: first refusal in {latency:?}; recovered {:?} after the server became fast; \
         failed fetches {}, server hits {}",
        recovered.elapsed(),
        counter(&envoy, "jwks_fetch_failed"),
        jwks.hits()
    );
    assert_eq!(r.upstream().header("x-jwt-sub"), Some("alice"));
    assert!(counter(&envoy, "jwks_fetch_ok") >= 1);
    assert_no_crash(&mut envoy);
}

/// One bad answer of the JWKS server, applied to it.
struct Garbage {
    name: &'static str,
    apply: Box<dyn Fn(&JwksServer)>,
}

/// Every kind of bad answer, slow last (a hanging fetch would otherwise be charged to the next kind).
fn garbage_kinds(good: &Value) -> Vec<Garbage> {
    let body = |name: &'static str, text: String| Garbage {
        name,
        apply: Box::new(move |j: &JwksServer| {
            j.set_raw(None);
            j.set_delay(Duration::ZERO);
            j.up();
            j.set_body(text.clone());
        }),
    };
    // A valid JWKS padded past the default max_bytes (64 KiB): refused for its size alone.
    let mut huge = good.clone();
    huge["padding"] = json!("x".repeat(2 * 1024 * 1024));
    vec![
        Garbage {
            name: "down (connection refused)",
            apply: Box::new(|j: &JwksServer| j.down()),
        },
        Garbage {
            name: "503",
            apply: Box::new(|j: &JwksServer| j.set_status(503)),
        },
        body("not JSON", "this is not json {".to_string()),
        body(
            "HTML",
            "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
                .to_string(),
        ),
        body("JSON without keys", r#"{"issuer": "x"}"#.to_string()),
        body("empty key set", r#"{"keys": []}"#.to_string()),
        body(
            "no usable key",
            r#"{"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB"}, {"kty": "nope"}]}"#.to_string(),
        ),
        body("2 MiB body over max_bytes", huge.to_string()),
        Garbage {
            name: "not HTTP at all",
            apply: Box::new(|j: &JwksServer| {
                j.set_delay(Duration::ZERO);
                j.up();
                j.set_raw(Some(
                    b"\x00\xff\xfeSSH-2.0-garbage\r\n\r\n\x16\x03\x01".to_vec(),
                ));
            }),
        },
        Garbage {
            name: "slow (4 s, timeout 1 s)",
            apply: Box::new(|j: &JwksServer| {
                j.set_raw(None);
                j.up();
                j.set_delay(Duration::from_secs(4));
            }),
        },
    ]
}

/// The distinct reasons the filter logged for failed fetches, in order (for docs/faults.md). Envoy
/// flushes its log file every few seconds, so the last ones may be missing.
fn fetch_failure_reasons(envoy: &Envoy) -> Vec<String> {
    let log = envoy.log();
    let mut reasons: Vec<String> = Vec::new();
    for line in log.lines() {
        if let Some((_, rest)) = line.split_once("JWKS fetch for provider \"idp\" failed: ") {
            let reason = rest.split("; retry in").next().unwrap_or(rest).to_string();
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
    }
    reasons
}

fn restore(jwks: &JwksServer, good: &Value) {
    jwks.set_raw(None);
    jwks.set_delay(Duration::ZERO);
    jwks.set_body(good.to_string());
    jwks.up();
}

fn a_jwks_server_down_or_answering_garbage_before_any_good_keys_refuses_with_401_and_recovers() {
    let keys = Keys::load();
    let good = keys.jwks();
    let jwks = JwksServer::reserve(good.to_string());
    let echo = Echo::start();
    let Some(mut envoy) = start(&remote_config(json!({})), &echo, Some(&jwks)) else {
        return;
    };
    let mut n = 0;
    let mut seen = Vec::new();
    for kind in garbage_kinds(&good) {
        (kind.apply)(&jwks);
        // Two more failures: at least one fetch ran entirely under this kind.
        let before = counter(&envoy, "jwks_fetch_failed");
        assert!(
            wait_failures(&envoy, before + 2, 20),
            "{}: failed fetches are counted (failed {}, hits {})",
            kind.name,
            counter(&envoy, "jwks_fetch_failed"),
            jwks.hits()
        );
        n += 1;
        assert_keys_unavailable(&envoy.get_bearer("/api/x", &fresh_token(&keys, Alg::Rs256, n)));
        assert_eq!(counter(&envoy, "jwks_fetch_ok"), 0, "{}", kind.name);
        assert_serves(&envoy, "/open/x");
        seen.push(format!(
            "{}: failed {}",
            kind.name,
            counter(&envoy, "jwks_fetch_failed")
        ));
    }
    eprintln!(
        "before good keys: {seen:#?}\nfailure reasons logged: {:#?}",
        fetch_failure_reasons(&envoy)
    );
    restore(&jwks, &good);
    let r = wait_until_accepted(&envoy, &fresh_token(&keys, Alg::Rs256, 1000));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(counter(&envoy, "jwks_fetch_ok") >= 1);
    assert_no_crash(&mut envoy);
}

fn a_failing_refresh_keeps_the_last_good_keys_whatever_the_failure() {
    let keys = Keys::load();
    let good = keys.jwks();
    let jwks = JwksServer::start(good.to_string());
    let echo = Echo::start();
    // Refreshed every 1.6 s (80% of 2 s): each kind below is met by several refreshes.
    let config = remote_config(json!({"cache_duration": "2s"}));
    let Some(mut envoy) = start(&config, &echo, Some(&jwks)) else {
        return;
    };
    let r = wait_until_accepted(&envoy, &fresh_token(&keys, Alg::EdDsa, 0));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        envoy.eventually(Duration::from_secs(10), |e| counter(e, "jwks_fetch_ok")
            >= 2),
        "the JWKS is refreshed every 1.6 s (ok {})",
        counter(&envoy, "jwks_fetch_ok")
    );
    let mut n = 0;
    let mut seen = Vec::new();
    for kind in garbage_kinds(&good) {
        (kind.apply)(&jwks);
        let ok_before = counter(&envoy, "jwks_fetch_ok");
        let before = counter(&envoy, "jwks_fetch_failed");
        assert!(
            wait_failures(&envoy, before + 2, 20),
            "{}: failed refreshes are counted (failed {}, hits {})",
            kind.name,
            counter(&envoy, "jwks_fetch_failed"),
            jwks.hits()
        );
        // Well past cache_duration since the last good fetch: the old keys still verify new tokens.
        for alg in [Alg::Rs256, Alg::Es256, Alg::EdDsa] {
            n += 1;
            let r = envoy.get_bearer("/api/x", &fresh_token(&keys, alg, n));
            assert_eq!(
                r.status,
                200,
                "{}: last good keys kept: {}",
                kind.name,
                r.describe()
            );
        }
        assert!(
            counter(&envoy, "jwks_fetch_ok") <= ok_before + 1,
            "{}: a bad answer never installs keys",
            kind.name
        );
        seen.push(format!(
            "{}: failed {}",
            kind.name,
            counter(&envoy, "jwks_fetch_failed")
        ));
    }
    eprintln!(
        "after good keys: {seen:#?}\nfailure reasons logged: {:#?}",
        fetch_failure_reasons(&envoy)
    );
    // Garbage never replaced the keys: a token for a key the server never published is still refused.
    let foreign = keys.sign(Alg::Hs256, &good_claims());
    assert_eq!(envoy.get_bearer("/api/x", &foreign).status, 401);
    let ok_before = counter(&envoy, "jwks_fetch_ok");
    restore(&jwks, &good);
    assert!(
        envoy.eventually(Duration::from_secs(15), |e| counter(e, "jwks_fetch_ok")
            > ok_before),
        "a good answer is installed again"
    );
    assert_eq!(
        envoy
            .get_bearer("/api/x", &fresh_token(&keys, Alg::Es384, 9999))
            .status,
        200
    );
    assert_no_crash(&mut envoy);
}

// ---------------------------------------------------------------------------------------------------------
// Row 3: the upstream resets mid-body on a route with response redaction

/// Sends `request` as is and reads until the peer closes or resets. Returns the bytes received and
/// how the read ended (`None`: clean end of stream).
fn raw_exchange(port: u16, request: &[u8]) -> (Vec<u8>, Option<std::io::ErrorKind>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    stream.write_all(request).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (received, None),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => return (received, Some(e.kind())),
        }
    }
}

fn reset_request(path: &str, body_len: usize, after: usize) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: api.test\r\ncontent-type: application/octet-stream\r\n\
         x-echo-reset-after: {after}\r\ncontent-length: {body_len}\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    req.extend(std::iter::repeat_n(b'a', body_len));
    req
}

fn redaction_config() -> Value {
    json!({
        "redaction": {
            // Held whole up to 4 KiB, streamed past it: the reset below comes mid-stream.
            "pii": {"action": "redact", "max_buffer_bytes": 4096},
            "blocker": {"action": "block", "max_buffer_bytes": 4096},
            "req_blocker": {"action": "block", "bodies": ["request"], "max_buffer_bytes": 4096}
        },
        "rules": [
            {"name": "redact", "match": {"prefix": "/r/"}, "redaction": "pii"},
            {"name": "block", "match": {"prefix": "/b/"}, "redaction": "blocker"},
            {"name": "reqblock", "match": {"prefix": "/qb/"}, "redaction": "req_blocker"}
        ]
    })
}

#[test]
fn an_upstream_reset_mid_body_under_response_redaction_resets_the_client_and_nothing_leaks() {
    let echo = Echo::start();
    let Some(mut envoy) = start(&redaction_config(), &echo, None) else {
        return;
    };
    // 64 KiB of request body stays unread by the upstream, so its close is a TCP RST; with no body
    // it is a FIN in the middle of the chunked body. Both are a reset for Envoy. The reset comes
    // after 20,000 bytes: more than the redactor's hold-back (8,256 bytes with the JWT detector on),
    // so some redacted output has reached the client by then.
    for (label, body_len) in [("RST", 64 * 1024), ("FIN", 0)] {
        let (bytes, ended) = raw_exchange(envoy.port, &reset_request("/r/x", body_len, 20_000));
        let text = String::from_utf8_lossy(&bytes);
        eprintln!(
            "upstream {label} mid-body: client got {} bytes, read ended with {ended:?}, head {:?}",
            bytes.len(),
            text.lines().next()
        );
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "{label}: headers went out before the reset: {text:.200}"
        );
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "{label}: the client must not see a complete body: ...{}",
            &text[text.len().saturating_sub(80)..]
        );
        assert!(
            !text.contains("4111 1111 1111 1111") && !text.contains("jane.doe@example.com"),
            "{label}: what did reach the client is redacted"
        );
        assert!(
            text.contains("[REDACTED:card]"),
            "{label}: part of the body reached the client"
        );
        // The same through the harness client: an error, never a truncated body taken for whole.
        assert!(
            common::http_request(
                envoy.port,
                "POST",
                "/r/x",
                &[("x-echo-reset-after", "20000")],
                &vec![b'a'; body_len]
            )
            .is_err(),
            "{label}: the client sees an error"
        );
    }
    let resets = |e: &Envoy| {
        e.stats("cluster.upstream.upstream_cx_destroy_remote_with_active_rq")
            .get("cluster.upstream.upstream_cx_destroy_remote_with_active_rq")
            .copied()
            .unwrap_or(0)
    };
    assert!(
        envoy.eventually(Duration::from_secs(5), |e| resets(e) >= 4),
        "Envoy saw the 4 upstream resets: {}",
        resets(&envoy)
    );

    assert_no_crash(&mut envoy);
    // The next request on the same route is redacted normally.
    let r = envoy.request(
        "POST",
        "/r/x",
        &[("x-echo-raw", "application/json")],
        br#"{"card": "4111 1111 1111 1111"}"#,
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, r#"{"card": "[REDACTED:card]"}"#)
    );
    assert_serves(&envoy, "/open/x");
}

#[test]
fn an_upstream_reset_while_a_blocking_policy_holds_the_response_gets_a_local_error() {
    let echo = Echo::start();
    let mut config = redaction_config();
    config["allow_on_headers_stop_iteration"] = json!(true);
    let Some(mut envoy) = start(&config, &echo, None) else {
        return;
    };
    // 3000 bytes < max_buffer_bytes: the whole response is being held for the verdict when it resets.
    let (bytes, ended) = raw_exchange(envoy.port, &reset_request("/b/x", 64 * 1024, 3000));
    let text = String::from_utf8_lossy(&bytes);
    eprintln!(
        "held response, upstream RST: {:?}, read ended {ended:?}",
        text.lines().next()
    );
    assert!(
        !text.contains("4111") && !text.contains("jane.doe"),
        "nothing of the held body leaks: {text:.300}"
    );
    let status: Option<u16> = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok());
    assert!(
        status.is_none_or(|s| s >= 500),
        "no success is reported for a reset response: {text:.300}"
    );
    assert_no_crash(&mut envoy);
    let clean = envoy.request(
        "POST",
        "/b/x",
        &[("x-echo-raw", "application/json")],
        br#"{"id": 1}"#,
    );
    assert_eq!((clean.status, clean.text().as_str()), (200, r#"{"id": 1}"#));
}

// ---------------------------------------------------------------------------------------------------------
// Row 4: the client aborts mid-body on a route with a schema

fn schema_config(hold: bool) -> Value {
    json!({
        "allow_on_headers_stop_iteration": hold,
        "schemas": {"order": {"json_schema": {
            "type": "object", "required": ["id"],
            "properties": {"id": {"type": "integer"}, "note": {"type": "string"}}
        }, "max_body_bytes": 4096}},
        "redaction": {"req_blocker": {"action": "block", "bodies": ["request"]}},
        "rules": [
            {"name": "orders", "match": {"prefix": "/orders"}, "schema": "order"},
            {"name": "scan", "match": {"prefix": "/scan"}, "redaction": "req_blocker"}
        ]
    })
}

fn client_aborts(hold: bool) {
    let echo = Echo::start();
    let Some(mut envoy) = start(&schema_config(hold), &echo, None) else {
        return;
    };
    let json = [("content-type", "application/json")];
    let half = br#"{"id": 12, "note": "half of a body that was announced as longer"#;
    let mut outcomes = Vec::new();
    for path in ["/orders", "/scan"] {
        for declared in [Some(1000), None] {
            for how in [Abort::Close, Abort::HalfClose] {
                let r = send_partial(
                    envoy.port,
                    path,
                    &json,
                    declared,
                    half,
                    Duration::from_millis(100),
                    how,
                );
                let seen = match &r {
                    Ok(Some(resp)) => format!("{}", resp.status),
                    Ok(None) => "nothing".to_string(),
                    Err(e) => format!("error {:?}", e.kind()),
                };
                if let Ok(Some(resp)) = &r {
                    assert!(
                        !resp.reached_upstream() && resp.status != 200,
                        "an incomplete body never passes: {}",
                        resp.describe()
                    );
                }
                outcomes.push(format!("{path} {declared:?} {how:?}: {seen}"));
            }
        }
    }
    eprintln!("client aborts (hold headers: {hold}): {outcomes:#?}");
    // A complete request that was not refused must have come from elsewhere: none was sent.
    assert_eq!(
        echo.requests(),
        0,
        "no partial request reached the upstream as a complete one"
    );
    assert_no_crash(&mut envoy);
    // The same routes still work, both verdicts.
    let ok = envoy.request("POST", "/orders", &json, br#"{"id": 1}"#);
    assert_eq!(ok.status, 200, "{}", ok.describe());
    assert_eq!(ok.upstream().body, r#"{"id": 1}"#);
    let bad = envoy.request("POST", "/orders", &json, br#"{"id": "x"}"#);
    assert_eq!(bad.status, 400, "{}", bad.describe());
    let scanned = envoy.request("POST", "/scan", &json, br#"{"id": 2}"#);
    assert_eq!(scanned.status, 200, "{}", scanned.describe());
    assert_serves(&envoy, "/open/x");
}

#[test]
fn a_client_aborting_mid_body_on_a_schema_route_harms_nothing() {
    client_aborts(false);
}

#[test]
fn a_client_aborting_mid_body_while_headers_are_held_harms_nothing() {
    client_aborts(true);
}

// ---------------------------------------------------------------------------------------------------------
// Row 5: oversized headers and bodies

#[test]
fn oversized_tokens_get_401_too_large_and_headers_past_envoys_limit_get_431() {
    let keys = Keys::load();
    let echo = Echo::start();
    let hs = keys.hs_jwks().to_string();
    let config = json!({
        "jwt_providers": {
            "small": {"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": {"inline_string": hs}},
            "large": {"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": {"inline_string": hs},
                      "max_token_bytes": 1_048_576,
                      "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]}
        },
        "rules": [
            {"name": "small", "match": {"prefix": "/small/"}, "jwt": {"provider": "small"}},
            {"name": "large", "match": {"prefix": "/large/"}, "jwt": {"provider": "large"}}
        ]
    });
    let Some(mut envoy) = start(&config, &echo, None) else {
        return;
    };
    // A real, validly signed 50 KB token (a 50,000-character claim).
    let mut claims = good_claims();
    claims["pad"] = json!("p".repeat(37_000));
    let big = keys.sign(Alg::Hs256, &claims);
    assert!((49_000..52_000).contains(&big.len()), "{}", big.len());

    // Over the default max_token_bytes (8 KiB): refused before anything is decoded.
    let r = envoy.get_bearer("/small/x", &big);
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Jwt is too large"),
        "{}",
        r.describe()
    );
    assert_eq!(counter(&envoy, "jwt_too_large"), 1);
    // With max_token_bytes 1 MiB the same token verifies (twice: the second from the cache).
    for _ in 0..2 {
        let r = envoy.get_bearer("/large/x", &big);
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.upstream().header("x-jwt-sub"), Some("alice"));
    }
    // A 50 KB garbage token in three segments is refused as such, not crashed on.
    let junk = format!(
        "{}.{}.{}",
        "e".repeat(20_000),
        "y".repeat(20_000),
        "z".repeat(10_000)
    );
    let r = envoy.get_bearer("/large/x", &junk);
    assert_eq!(r.status, 401, "{}", r.describe());

    // Past Envoy's header limit (max_request_headers_kb, 60 KiB by default): Envoy answers 431
    // itself, the filter never sees the request (a 1 MB token can therefore never reach it).
    let requests_before = counter(&envoy, "requests");
    let huge = "h".repeat(61 * 1024);
    let r = common::http_request(
        envoy.port,
        "GET",
        "/large/x",
        &[("authorization", &format!("Bearer {huge}"))],
        b"",
    );
    match &r {
        Ok(resp) => assert_eq!(resp.status, 431, "{}", resp.describe()),
        Err(e) => panic!("expected 431, got {e}"),
    }
    assert_eq!(
        counter(&envoy, "requests"),
        requests_before,
        "the filter never saw it"
    );
    // Many headers under both limits (60 KiB, max_request_headers_count 100): judged normally.
    let many: Vec<(String, String)> = (0..90)
        .map(|i| (format!("x-filler-{i}"), "f".repeat(600)))
        .collect();
    let mut headers: Vec<(&str, &str)> =
        many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let auth = format!("Bearer {}", keys.sign(Alg::Hs256, &good_claims()));
    headers.push(("authorization", &auth));
    let r = envoy.get("/large/x", &headers);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_no_crash(&mut envoy);
    assert_serves(&envoy, "/open/x");
}

fn over_cap_body(len: usize, tail: &str) -> Vec<u8> {
    let mut body = br#"{"id": 1, "note": ""#.to_vec();
    body.resize(len - tail.len() - 2, b'x');
    body.extend_from_slice(b"\", ");
    body.truncate(len - tail.len());
    body.extend_from_slice(tail.as_bytes());
    body
}

#[test]
fn a_two_megabyte_body_over_the_schema_cap_gets_413_content_length_or_chunked() {
    let echo = Echo::start();
    let Some(mut envoy) = start(&schema_config(false), &echo, None) else {
        return;
    };
    let body = over_cap_body(2 * 1024 * 1024, r#""x": 1}"#);
    let started = Instant::now();
    let r = envoy.request(
        "POST",
        "/orders",
        &[("content-type", "application/json")],
        &body,
    );
    let took = started.elapsed();
    assert_eq!(r.status, 413, "{}", r.describe());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    // Chunked, in 64 KiB chunks: refused while it is being buffered.
    let mut stream = TcpStream::connect(("127.0.0.1", envoy.port)).unwrap();
    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(common::IO_TIMEOUT)).unwrap();
    write!(
        stream,
        "POST /orders HTTP/1.1\r\nhost: api.test\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    for chunk in body.chunks(64 * 1024) {
        // Envoy may answer and close before the whole body is sent: stop writing then.
        if write!(stream, "{:x}\r\n", chunk.len()).is_err()
            || stream.write_all(chunk).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let chunked = common::read_response(&mut std::io::BufReader::new(stream), false).unwrap();
    assert_eq!(chunked.status, 413, "{}", chunked.describe());
    eprintln!("2 MiB body over a 4 KiB cap: 413 in {took:?}");
    assert_eq!(echo.requests(), 0);
    assert_eq!(counter(&envoy, "schema_rejected_body_too_large"), 2);
    assert_no_crash(&mut envoy);
    let ok = envoy.request(
        "POST",
        "/orders",
        &[("content-type", "application/json")],
        br#"{"id": 3}"#,
    );
    assert_eq!(ok.status, 200, "{}", ok.describe());
}

/// 16 KiB of clean JSON with a card number in its last 100 bytes.
fn late_pii_body() -> Vec<u8> {
    over_cap_body(16 * 1024, r#""card": "4111 1111 1111 1111"}"#)
}

fn a_request_body_over_max_buffer_bytes_under_a_blocking_policy_gets_403() {
    let echo = Echo::start();
    let Some(mut envoy) = start(&redaction_config(), &echo, None) else {
        return;
    };
    let json = [("content-type", "application/json")];
    let r = envoy.request("POST", "/qb/x", &json, &late_pii_body());
    assert_eq!(r.status, 403, "{}", r.describe());
    assert!(r.text().contains("request blocked"), "{}", r.describe());
    assert_eq!(counter(&envoy, "redaction_too_large"), 1);
    // Over the cap but clean: refused all the same (it cannot be inspected whole).
    let clean = over_cap_body(16 * 1024, r#""y": 2}"#);
    assert_eq!(envoy.request("POST", "/qb/x", &json, &clean).status, 403);
    assert_eq!(echo.requests(), 0);
    // Under the cap and clean: passes.
    let small = envoy.request("POST", "/qb/x", &json, br#"{"id": 1}"#);
    assert_eq!(small.status, 200, "{}", small.describe());
    assert_no_crash(&mut envoy);
}

fn a_response_over_max_buffer_bytes_under_a_blocking_policy_with_held_headers_gets_502() {
    let echo = Echo::start();
    let mut config = redaction_config();
    config["allow_on_headers_stop_iteration"] = json!(true);
    let Some(mut envoy) = start(&config, &echo, None) else {
        return;
    };
    let r = envoy.request(
        "POST",
        "/b/x",
        &[("x-echo-raw", "application/json"), ("x-echo-chunk", "1024")],
        &late_pii_body(),
    );
    assert_eq!(r.status, 502, "{}", r.describe());
    assert!(!r.text().contains("4111"), "{}", r.describe());
    assert_eq!(counter(&envoy, "redaction_too_large"), 1);
    assert_no_crash(&mut envoy);
}

/// Found by this file (docs/faults.md row 5e): the rest of the body used to stream through unscanned
/// after the replaced part, card number included. Fixed in 6f1b93d.
fn a_response_over_max_buffer_bytes_under_a_blocking_policy_never_passes_the_body_on() {
    let echo = Echo::start();
    let Some(mut envoy) = start(&redaction_config(), &echo, None) else {
        return;
    };
    let r = envoy.request(
        "POST",
        "/b/x",
        &[("x-echo-raw", "application/json"), ("x-echo-chunk", "1024")],
        &late_pii_body(),
    );
    eprintln!(
        "blocked response over max_buffer_bytes: {} bytes: {}",
        r.body.len(),
        r.describe()
    );
    assert_eq!(counter(&envoy, "redaction_too_large"), 1);
    assert_eq!(
        r.text(),
        r#"{"error":"response blocked: it contains sensitive data"}"#,
        "the body is replaced, and every later byte dropped: {}",
        r.describe()
    );
    assert!(
        !r.text().contains("4111 1111 1111 1111"),
        "no byte of the upstream body past the cap reaches the client: {}",
        r.describe()
    );
    assert_no_crash(&mut envoy);
}

// ---------------------------------------------------------------------------------------------------------
// Row 6: 1,000 concurrent connections on a route with JWT and a rate limit

#[test]
fn a_thousand_concurrent_connections_get_only_expected_statuses_and_counters_add_up() {
    const CONNECTIONS: usize = 1000;
    const NO_TOKEN_EVERY: usize = 10; // every 10th connection has no token: 100 refusals
    const BUDGET: u64 = 300;
    let keys = Keys::load();
    let echo = Echo::start();
    let config = json!({
        "jwt_providers": {"idp": {"issuer": ISSUER, "audiences": [AUDIENCE],
                                  "local_jwks": {"inline_string": keys.hs_jwks().to_string()}}},
        "rate_limits": {"global": {"requests": BUDGET, "period": "3600s"}},
        "rules": [
            {"name": "open", "match": {"prefix": "/open/"}},
            {"name": "api", "match": {"prefix": "/api/"}, "jwt": {"provider": "idp"},
             "rate_limits": "global"}
        ]
    });
    let Some(mut envoy) = start(&config, &echo, None) else {
        return;
    };
    // Twenty distinct tokens: some verification work, mostly cache hits.
    let tokens: Arc<Vec<String>> =
        Arc::new((0..20).map(|i| fresh_token(&keys, Alg::Hs256, i)).collect());
    let barrier = Arc::new(Barrier::new(CONNECTIONS));
    let port = envoy.port;
    let started = Instant::now();
    let handles: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let tokens = Arc::clone(&tokens);
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let auth = format!("Bearer {}", tokens[i % tokens.len()]);
                    let headers: Vec<(&str, &str)> = if i % NO_TOKEN_EVERY == 0 {
                        Vec::new()
                    } else {
                        vec![("authorization", auth.as_str())]
                    };
                    // Connect first, then all send at once: 1,000 connections open together.
                    let stream = TcpStream::connect(("127.0.0.1", port));
                    barrier.wait();
                    let stream = stream.map_err(|e| format!("connect: {e}"))?;
                    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
                    let mut stream = stream;
                    let mut head = format!("GET /api/c{i} HTTP/1.1\r\nhost: api.test\r\n");
                    for (n, v) in &headers {
                        head.push_str(&format!("{n}: {v}\r\n"));
                    }
                    head.push_str("connection: close\r\n\r\n");
                    stream
                        .write_all(head.as_bytes())
                        .map_err(|e| format!("write: {e}"))?;
                    let r = common::read_response(&mut std::io::BufReader::new(stream), false)
                        .map_err(|e| format!("read: {e}"))?;
                    Ok::<(bool, u16), String>((i % NO_TOKEN_EVERY == 0, r.status))
                })
                .unwrap()
        })
        .collect();
    let mut statuses: HashMap<(bool, u16), usize> = HashMap::new();
    let mut errors = Vec::new();
    for h in handles {
        match h.join().unwrap() {
            Ok(key) => *statuses.entry(key).or_insert(0) += 1,
            Err(e) => errors.push(e),
        }
    }
    let took = started.elapsed();
    eprintln!(
        "{CONNECTIONS} concurrent connections in {took:?}: {statuses:?}, errors {}: {:?}",
        errors.len(),
        errors.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        errors.is_empty(),
        "every connection got an answer: {errors:?}"
    );
    let get = |missing: bool, status: u16| statuses.get(&(missing, status)).copied().unwrap_or(0);
    let expected: [(bool, u16); 3] = [(true, 401), (false, 200), (false, 429)];
    assert!(
        statuses.keys().all(|k| expected.contains(k)),
        "only 401 without a token, 200 or 429 with one: {statuses:?}"
    );
    assert_eq!(get(true, 401), CONNECTIONS / NO_TOKEN_EVERY);
    let with_token = CONNECTIONS - CONNECTIONS / NO_TOKEN_EVERY;
    let (ok, limited) = (get(false, 200), get(false, 429));
    assert_eq!(ok + limited, with_token, "{statuses:?}");
    let allowed = counter(&envoy, "rl_global_allowed");
    let limited_counter = counter(&envoy, "rl_global_limited");
    let exhausted =
        counter(&envoy, "rl_global_cas_exhausted") + counter(&envoy, "rl_global_store_failed");
    assert_eq!(allowed as usize, ok, "allowed counter == 200s");
    assert_eq!(limited_counter as usize, limited, "limited counter == 429s");
    assert_eq!((allowed + limited_counter) as usize, with_token);
    assert!(
        allowed <= BUDGET + exhausted,
        "the budget holds under 1,000 concurrent connections: allowed {allowed}, cas exhausted {exhausted}"
    );
    assert_eq!(counter(&envoy, "jwt_missing") as usize, get(true, 401));
    assert_eq!(counter(&envoy, "requests") as usize, CONNECTIONS);
    assert_eq!(
        echo.requests(),
        ok,
        "only allowed requests reach the upstream"
    );
    assert_no_crash(&mut envoy);
    assert_serves(&envoy, "/open/x");
}

// ---------------------------------------------------------------------------------------------------------
// Row 7: memory over a long run of distinct keys, tokens and paths

/// Growth of Envoy's RSS allowed over the measured part of the run (see docs/faults.md for the
/// figures it was chosen from).
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;

#[test]
fn memory_stays_bounded_over_twenty_thousand_distinct_keys_tokens_and_paths() {
    const TOTAL: usize = 20_000;
    const WARM_UP: usize = 3_000;
    const MAX_KEYS: u64 = 1000;
    const CLIENTS: usize = 4;
    let keys = Arc::new(Keys::load());
    let echo = Echo::start();
    let config = json!({
        "jwt_providers": {"idp": {"issuer": ISSUER, "audiences": [AUDIENCE],
                                  "local_jwks": {"inline_string": keys.hs_jwks().to_string()},
                                  "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]}},
        "jwt_cache": {"max_entries": 1024},
        "rate_limits": {"per_tenant": {"requests": 5, "period": "60s",
                                       "key": [{"header": "x-tenant"}], "max_keys": MAX_KEYS}},
        "rules": [
            {"name": "open", "match": {"prefix": "/open/"}},
            {"name": "api", "match": {"prefix": "/api/"}, "jwt": {"provider": "idp"},
             "rate_limits": "per_tenant"}
        ]
    });
    let Some(mut envoy) = start(&config, &echo, None) else {
        return;
    };
    let port = envoy.port;
    let run = |from: usize, to: usize, deadline: Instant| -> (usize, HashMap<u16, usize>) {
        let next = Arc::new(AtomicUsize::new(from));
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let next = Arc::clone(&next);
                let keys = Arc::clone(&keys);
                thread::spawn(move || {
                    let mut client = KeepAlive::new(port);
                    let mut seen: HashMap<u16, usize> = HashMap::new();
                    let mut sent = 0;
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= to || Instant::now() >= deadline {
                            break;
                        }
                        let mut claims = good_claims();
                        claims["sub"] = json!(format!("user-{i}"));
                        claims["jti"] = json!(format!("mem-{i}"));
                        let auth = format!("Bearer {}", keys.sign(Alg::Hs256, &claims));
                        let tenant = format!("tenant-{i}");
                        let path = format!("/api/items/{i}/detail-{}", i * 7919 % 100_003);
                        let r = client
                            .request(
                                "GET",
                                &path,
                                &[("authorization", &auth), ("x-tenant", &tenant)],
                                b"",
                            )
                            .unwrap_or_else(|e| panic!("request {i}: {e}"));
                        *seen.entry(r.status).or_insert(0) += 1;
                        sent += 1;
                    }
                    (sent, seen)
                })
            })
            .collect();
        let mut total = 0;
        let mut all = HashMap::new();
        for h in handles {
            let (sent, seen) = h.join().unwrap();
            total += sent;
            for (s, n) in seen {
                *all.entry(s).or_insert(0) += n;
            }
        }
        (total, all)
    };
    let rss_start = envoy.rss_kib();
    let (warm, warm_seen) = run(0, WARM_UP, Instant::now() + Duration::from_secs(20));
    let rss_warm = envoy.rss_kib();
    let started = Instant::now();
    let (measured, seen) = run(WARM_UP, TOTAL, started + Duration::from_secs(60));
    let took = started.elapsed();
    let rss_end = envoy.rss_kib();
    let growth = rss_end.saturating_sub(rss_warm);
    let tracked = counter(&envoy, "rl_per_tenant_slots_created");
    let allowed = counter(&envoy, "rl_per_tenant_allowed");
    let limited = counter(&envoy, "rl_per_tenant_limited");
    eprintln!(
        "memory run: {warm} warm-up + {measured} measured requests in {took:?} ({:.0} req/s); \
         RSS start {rss_start} KiB, after warm-up {rss_warm} KiB, end {rss_end} KiB (growth {growth} KiB); \
         statuses warm-up {warm_seen:?}, measured {seen:?}; slots_created {tracked}, reclaimed {}, \
         overflow {}, allowed {allowed}, limited {limited}; jwt cache hit {} miss {}",
        measured as f64 / took.as_secs_f64(),
        counter(&envoy, "rl_per_tenant_keys_reclaimed"),
        counter(&envoy, "rl_per_tenant_overflow"),
        counter(&envoy, "jwt_cache_hit"),
        counter(&envoy, "jwt_cache_miss"),
    );
    assert!(
        measured >= 5_000,
        "the run made progress within its 60 s bound ({measured} requests)"
    );
    let all = warm + measured;
    assert!(
        seen.keys()
            .chain(warm_seen.keys())
            .all(|s| *s == 200 || *s == 429),
        "only 200 or 429: {warm_seen:?} {seen:?}"
    );
    assert_eq!(
        (allowed + limited) as usize,
        all,
        "every request was judged by the limiter once"
    );
    assert_eq!(
        allowed as usize,
        seen.get(&200).copied().unwrap_or(0) + warm_seen.get(&200).copied().unwrap_or(0)
    );
    assert!(
        tracked <= MAX_KEYS + 1,
        "the slot table stays within max_keys: {tracked} tracked"
    );
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "Envoy's RSS grew by {growth} KiB over {measured} requests (bound {RSS_GROWTH_BOUND_KIB} KiB)"
    );
    assert_no_crash(&mut envoy);
    assert_serves(&envoy, "/open/x");
}

// Each test above without `#[test]` runs twice: `http1::<name>` and `http2::<name>`.
crate::per_protocol!(
    a_jwks_server_slower_than_the_timeout_fails_fetches_without_holding_requests_then_recovers,
    a_jwks_server_down_or_answering_garbage_before_any_good_keys_refuses_with_401_and_recovers,
    a_failing_refresh_keeps_the_last_good_keys_whatever_the_failure,
    a_request_body_over_max_buffer_bytes_under_a_blocking_policy_gets_403,
    a_response_over_max_buffer_bytes_under_a_blocking_policy_with_held_headers_gets_502,
    a_response_over_max_buffer_bytes_under_a_blocking_policy_never_passes_the_body_on,
);
