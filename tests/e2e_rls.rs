//! Limits that hold across every proxy: two Envoy processes (each `--concurrency 2`) with the built
//! filter ask one rate limit service (`testing/rls-server`: Kuadrant's limitador counting in a real
//! `redis-server`) over `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.
//!
//! Needs `redis-server` (Debian's, installed by `.ci/run`) and `target/debug/rls-server` (`make
//! rls-server`, which `make test` runs first). Without them these tests fail and say what is missing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::h2::{frame, hpack};
use common::{e2e_paths, reserve_port, static_cluster, Echo, Envoy, EnvoyOpts, Proto, Response};
use serde_json::{json, Value};

const P: &str = "apiguard";

/// The limits every test's service knows (limitador's limits file, as `docs/config.md` shows it).
const LIMITS: &str = r#"
- namespace: apiguard
  name: per_user
  max_value: 6
  seconds: 3600
  conditions: ['descriptors[0].policy == "per_user"']
  variables: ['descriptors[0].user']
- namespace: apiguard
  name: shared
  max_value: 4
  seconds: 3600
  conditions: ['descriptors[0].policy == "shared"']
  variables: ['descriptors[0].user']
- namespace: apiguard
  name: fresh
  max_value: 2
  seconds: 3600
  conditions: ['descriptors[0].policy == "fresh"']
  variables: ['descriptors[0].user']
- namespace: apiguard
  name: strict
  max_value: 100
  seconds: 3600
  conditions: ['descriptors[0].policy == "strict"']
  variables: ['descriptors[0].user']
"#;

/// A child process killed on drop.
struct Proc {
    child: Option<Child>,
    dir: PathBuf,
}

impl Proc {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "apiguard-rls-{what}-{}-{}",
        std::process::id(),
        reserve_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until `port` accepts connections (bounded).
fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on {port}");
}

/// A `redis-server` of its own, without persistence.
fn redis() -> (Proc, u16) {
    let port = reserve_port();
    let dir = temp_dir("redis");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}): install it (apt-get install redis-server; .ci/run does)")
        });
    wait_port(port, "redis-server");
    // PING until it answers: listening is not yet serving.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 7];
            if s.write_all(b"PING\r\n").is_ok()
                && s.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "redis-server does not answer PING"
        );
        thread::sleep(Duration::from_millis(20));
    }
    (
        Proc {
            child: Some(child),
            dir,
        },
        port,
    )
}

fn rls_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let bin = std::env::var_os("APIGUARD_RLS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("debug/rls-server"));
    // Not built from here: `cargo test` holds the build directory's lock while tests run.
    assert!(
        bin.is_file(),
        "{} is missing: run `make rls-server` (make test does)",
        bin.display()
    );
    bin
}

/// The rate limit service on Redis, adding `x-rls: limitador` to every response and
/// `x-rls-checked: yes` to every request it allows.
fn rls(redis_port: u16, extra: &[&str]) -> (Proc, u16) {
    let dir = temp_dir("rls");
    let limits = dir.join("limits.yaml");
    std::fs::write(&limits, LIMITS).unwrap();
    let mut child = Command::new(rls_binary())
        .args(["--listen", "127.0.0.1:0"])
        .arg("--limits")
        .arg(&limits)
        .args(["--redis", &format!("redis://127.0.0.1:{redis_port}")])
        .args(["--response-header", "x-rls:limitador"])
        .args(["--request-header", "x-rls-checked:yes"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting rls-server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("rls-server said {line:?}"));
    (
        Proc {
            child: Some(child),
            dir,
        },
        port,
    )
}

/// The `rls` cluster: gRPC needs HTTP/2 (without it every call ends with status 14).
fn rls_cluster(name: &str, port: u16, h2: bool) -> Value {
    let mut cluster = static_cluster(name, port);
    if h2 {
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        });
    }
    cluster
}

fn service(policy: &str, extra: Value) -> Value {
    let mut s = json!({
        "cluster": "rls",
        "domain": "apiguard",
        "timeout": "2s",
        "descriptors": [
            {"key": "policy", "value": policy},
            {"key": "user", "from": {"header": "x-user"}}
        ]
    });
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    s
}

fn config() -> Value {
    json!({
        "rate_limits": {
            "per_user": {"key": [{"header": "x-user"}], "service": service("per_user", json!({}))},
            "shared": {"requests": 2, "period": "3600s", "tier": "local_then_service",
                       "key": [{"header": "x-user"}], "service": service("shared", json!({"refresh": "1h"}))},
            "fresh": {"requests": 100, "period": "3600s", "tier": "local_then_service",
                      "key": [{"header": "x-user"}], "service": service("fresh", json!({}))},
            "open": {"key": [{"header": "x-user"}], "service": service("strict", json!({"failure_mode": "allow", "timeout": "300ms"}))},
            "closed": {"key": [{"header": "x-user"}], "service": service("strict", json!({"failure_mode": "deny", "timeout": "300ms"}))},
            "slow": {"key": [{"header": "x-user"}],
                     "service": {"cluster": "blackhole", "domain": "apiguard", "timeout": "100ms"}},
            "http1": {"key": [{"header": "x-user"}],
                      "service": {"cluster": "rls_http1", "domain": "apiguard", "timeout": "2s"}}
        },
        "rules": [
            {"name": "per_user", "match": {"prefix": "/global/"}, "rate_limits": "per_user"},
            {"name": "shared", "match": {"prefix": "/share/"}, "rate_limits": "shared"},
            {"name": "fresh", "match": {"prefix": "/fresh/"}, "rate_limits": "fresh"},
            {"name": "open", "match": {"prefix": "/open/"}, "rate_limits": "open"},
            {"name": "closed", "match": {"prefix": "/closed/"}, "rate_limits": "closed"},
            {"name": "slow", "match": {"prefix": "/slow/"}, "rate_limits": "slow"},
            {"name": "http1", "match": {"prefix": "/http1/"}, "rate_limits": "http1"}
        ]
    })
}

/// A TCP listener that accepts connections and never answers.
fn blackhole() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

struct World {
    redis: Proc,
    rls: Proc,
    envoys: [Envoy; 2],
    echo: Echo,
    _blackhole: TcpListener,
}

fn world() -> World {
    let paths = e2e_paths().unwrap();
    let (redis, redis_port) = redis();
    let (rls, rls_port) = rls(redis_port, &[]);
    let (hole, hole_port) = blackhole();
    let echo = Echo::start();
    let start = || {
        let mut opts = EnvoyOpts::new(&echo);
        opts.concurrency = 2;
        opts.extra_clusters = vec![
            rls_cluster("rls", rls_port, true),
            rls_cluster("rls_http1", rls_port, false),
            rls_cluster("blackhole", hole_port, true),
        ];
        Envoy::start(&paths, &config().to_string(), &opts)
    };
    let envoys = [start(), start()];
    World {
        redis,
        rls,
        envoys,
        echo,
        _blackhole: hole,
    }
}

fn get(envoy: &Envoy, path: &str, user: &str) -> Response {
    envoy.get(path, &[("x-user", user)])
}

fn counter(w: &World, name: &str) -> u64 {
    w.envoys
        .iter()
        .map(|e| e.counter(&format!("{P}_rl_{name}")))
        .sum()
}

fn one_budget_is_shared_exactly_across_two_proxies() {
    let w = world();
    let mut allowed = 0;
    for i in 0..16 {
        let r = get(&w.envoys[i % 2], "/global/x", "alice");
        match r.status {
            200 => {
                allowed += 1;
                assert_eq!(r.header("x-rls"), Some("limitador"), "{}", r.describe());
                assert_eq!(
                    r.upstream().header("x-rls-checked"),
                    Some("yes"),
                    "request_headers_to_add reach the upstream"
                );
            }
            429 => {
                assert!(!r.reached_upstream(), "{}", r.describe());
                let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=3600).contains(&retry), "{}", r.describe());
                assert!(
                    r.header("ratelimit-policy")
                        .is_some_and(|v| v.contains("\"per_user\";q=6")),
                    "the service's limit in the headers: {}",
                    r.describe()
                );
                assert_eq!(
                    r.header("ratelimit"),
                    Some(format!("\"per_user\";r=0;t={retry}").as_str())
                );
                assert_eq!(
                    r.header("x-rls"),
                    Some("limitador"),
                    "response_headers_to_add on the 429"
                );
            }
            other => panic!("unexpected {other}: {}", r.describe()),
        }
    }
    assert_eq!(allowed, 6, "N allowed in total across both proxies");
    // A second key has its own budget.
    for i in 0..4 {
        assert_eq!(get(&w.envoys[i % 2], "/global/x", "bob").status, 200);
    }
    assert_eq!(
        w.echo.requests(),
        10,
        "refused requests never reach the upstream"
    );
    assert_eq!(counter(&w, "per_user_service_calls"), 20);
    assert_eq!(counter(&w, "per_user_allowed"), 10);
    assert_eq!(counter(&w, "per_user_limited"), 10);
    assert_eq!(counter(&w, "per_user_service_over_limit"), 10);
    assert_eq!(counter(&w, "per_user_service_errors"), 0);
    for envoy in &w.envoys {
        assert!(
            envoy.counter(&format!("{P}_rl_per_user_service_calls")) >= 8,
            "both proxies asked"
        );
        assert!(
            envoy.wasm_failures().is_empty(),
            "{:?}",
            envoy.wasm_failures()
        );
    }
}

/// `local_then_service`: each Envoy answers from its local share (2) without a call, then the
/// service decides (4). With E = 2 Envoys the measured total is N + E x share = 4 + 2 x 2 = 8: the
/// overshoot `docs/config.md` states. Each Envoy remembers the service's `OVER_LIMIT` in shared
/// data (both its workers see it): after one refused call per Envoy, no more calls.
fn local_then_service_overshoots_by_at_most_the_local_shares() {
    let w = world();
    let mut allowed = 0;
    let mut limited = Vec::new();
    for i in 0..20 {
        let r = get(&w.envoys[i % 2], "/share/x", "carol");
        assert!(matches!(r.status, 200 | 429), "{}", r.describe());
        allowed += usize::from(r.status == 200);
        if r.status == 429 {
            limited.push(r);
        }
    }
    assert_eq!(
        allowed,
        4 + 2 * 2,
        "the service's N plus each Envoy's local share"
    );
    // 4 from the shares, 4 allowed by the service, 2 refused by it (one per Envoy), then none:
    // without the memory, each of the 12 refused requests was a call (16 in all).
    assert_eq!(
        counter(&w, "shared_service_calls"),
        4 + 2,
        "no call while under the share, nor after OVER_LIMIT"
    );
    assert_eq!(counter(&w, "shared_local_share_spent"), 6);
    assert_eq!(counter(&w, "shared_service_over_limit"), 2);
    assert_eq!(counter(&w, "shared_service_over_limit_remembered"), 10);
    assert_eq!(counter(&w, "shared_limited"), 12);
    assert_eq!(w.echo.requests(), 8);
    // The remembered refusals look like the service's: its limit, the time left in its window.
    for r in &limited[2..] {
        assert!(!r.reached_upstream());
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((3000..=3600).contains(&retry), "{}", r.describe());
        assert!(
            r.header("ratelimit-policy")
                .is_some_and(|v| v.contains("\"shared\";q=4;w=3600")),
            "{}",
            r.describe()
        );
        assert_eq!(
            r.header("ratelimit"),
            Some(format!("\"shared\";r=0;t={retry}").as_str())
        );
    }
    for envoy in &w.envoys {
        assert!(envoy.wasm_failures().is_empty());
    }
}

/// `refresh` (default 1 s): under a local share of 100, a key whose local state is older than that
/// asks the service although the share lasts; once the service's limit (2) is reached, the next
/// refresh is refused and remembered.
fn a_stale_local_share_asks_the_service_and_learns_its_limit() {
    let w = world();
    let e = &w.envoys[0];
    let calls = || e.counter(&format!("{P}_rl_fresh_service_calls"));
    let pause = || thread::sleep(Duration::from_millis(1100));
    assert_eq!(get(e, "/fresh/x", "frank").status, 200);
    assert_eq!(calls(), 0, "a new key's state is fresh");
    for n in 1..=2 {
        pause();
        let r = get(e, "/fresh/x", "frank");
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.upstream().header("x-rls-checked"), Some("yes"), "asked");
        assert_eq!(calls(), n);
        // Fresh again: answered from the share.
        let r = get(e, "/fresh/x", "frank");
        assert_eq!(r.status, 200);
        assert_eq!(r.upstream().header("x-rls-checked"), None);
        assert_eq!(calls(), n);
    }
    pause();
    // The service has counted its 2: the refresh is refused, and remembered.
    for _ in 0..3 {
        let r = get(e, "/fresh/x", "frank");
        assert_eq!(r.status, 429, "{}", r.describe());
        assert!(!r.reached_upstream());
    }
    assert_eq!(calls(), 3);
    assert_eq!(e.counter(&format!("{P}_rl_fresh_local_share_stale")), 3);
    assert_eq!(
        e.counter(&format!("{P}_rl_fresh_service_over_limit_remembered")),
        2
    );
}

fn service_failures_follow_failure_mode_and_are_counted() {
    let mut w = world();
    for e in &w.envoys {
        assert_eq!(get(e, "/open/x", "dave").status, 200);
        assert_eq!(get(e, "/closed/x", "dave").status, 200);
    }
    let before = w.echo.requests();
    // Redis dies: the service answers UNAVAILABLE.
    w.redis.kill();
    for i in 0..6 {
        let e = &w.envoys[i % 2];
        let open = get(e, "/open/x", "dave");
        assert_eq!(open.status, 200, "failure_mode allow: {}", open.describe());
        assert!(open.reached_upstream());
        let closed = get(e, "/closed/x", "dave");
        assert_eq!(
            closed.status,
            503,
            "failure_mode deny: {}",
            closed.describe()
        );
        assert_eq!(closed.header("retry-after"), Some("1"));
        assert!(!closed.reached_upstream());
    }
    assert_eq!(counter(&w, "open_service_failure_allowed"), 6);
    assert_eq!(counter(&w, "closed_service_failure_denied"), 6);
    // limitador's Redis connection either fails at once (an error) or retries until the call's
    // timeout: each failed call counts as exactly one of the two.
    assert_eq!(
        counter(&w, "open_service_errors") + counter(&w, "open_service_timeouts"),
        6
    );
    // The service dies too: the calls fail (gRPC 14), same outcomes.
    w.rls.kill();
    for i in 0..4 {
        let e = &w.envoys[i % 2];
        assert_eq!(get(e, "/open/x", "dave").status, 200);
        assert_eq!(get(e, "/closed/x", "dave").status, 503);
    }
    assert_eq!(counter(&w, "open_service_failure_allowed"), 10);
    assert_eq!(counter(&w, "closed_service_failure_denied"), 10);
    assert_eq!(
        counter(&w, "closed_service_errors") + counter(&w, "closed_service_timeouts"),
        10
    );
    assert_eq!(
        w.echo.requests(),
        before + 10,
        "only failure_mode allow passed"
    );
}

fn a_silent_service_times_out_and_a_cluster_without_http2_fails() {
    let w = world();
    let e = &w.envoys[0];
    let r = get(e, "/slow/x", "erin");
    assert_eq!(
        r.status,
        200,
        "timeout, failure_mode allow: {}",
        r.describe()
    );
    assert_eq!(
        e.counter(&format!("{P}_rl_slow_service_timeouts")),
        1,
        "{:?}",
        e.stats("rl_slow_service")
    );
    assert_eq!(
        e.counter(&format!("{P}_rl_slow_service_failure_allowed")),
        1
    );
    // Same service, cluster without HTTP/2: gRPC status 14 on every call.
    for _ in 0..2 {
        assert_eq!(get(e, "/http1/x", "erin").status, 200);
    }
    assert_eq!(e.counter(&format!("{P}_rl_http1_service_errors")), 2);
    assert_eq!(e.counter(&format!("{P}_rl_http1_service_timeouts")), 0);
}

/// Sends a request for `path` and goes away while the filter waits for the service: HTTP/1.1 closes
/// the connection; HTTP/2 resets the stream (RST_STREAM CANCEL) and keeps the connection open until
/// `linger` has passed.
fn abandon(port: u16, path: &str, user: &str, linger: Duration) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let wait = Duration::from_millis(300);
    match Proto::current() {
        Proto::H1 => {
            write!(
                s,
                "GET {path} HTTP/1.1\r\nhost: api.test\r\nx-user: {user}\r\n\r\n"
            )
            .unwrap();
            thread::sleep(wait);
            drop(s);
        }
        Proto::H2 => {
            let b = |x: &str| x.as_bytes().to_vec();
            let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            out.extend(frame(4, 0, 0, &[]));
            let headers = [
                (b(":method"), b("GET")),
                (b(":scheme"), b("http")),
                (b(":authority"), b("api.test")),
                (b(":path"), b(path)),
                (b("x-user"), b(user)),
            ];
            // HEADERS with END_STREAM | END_HEADERS.
            out.extend(frame(1, 0x5, 1, &hpack(&headers)));
            s.write_all(&out).unwrap();
            thread::sleep(wait);
            s.write_all(&frame(3, 0, 1, &8u32.to_be_bytes())).unwrap();
            thread::sleep(linger);
            s.set_nonblocking(true).unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let mut at = 0;
            while at + 9 <= n {
                let len = usize::from(buf[at]) << 16
                    | usize::from(buf[at + 1]) << 8
                    | usize::from(buf[at + 2]);
                let stream =
                    u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]])
                        & 0x7fff_ffff;
                // No HEADERS (1) nor DATA (0): no answer to the stream the client reset.
                assert!(
                    stream == 0 || buf[at + 3] > 1,
                    "frame type {} on stream {stream} after the client's reset",
                    buf[at + 3]
                );
                at += 9 + len;
            }
        }
    }
}

/// The client goes away while the filter waits for a slow service (`--delay-ms 700`): the filter
/// does not trap, Envoy keeps serving, the abandoned request never reaches the upstream and the late
/// answer is not acted on (neither counted nor applied).
fn a_client_gone_while_the_call_is_in_flight_harms_nothing() {
    let paths = e2e_paths().unwrap();
    let (_redis, redis_port) = redis();
    let (_rls, rls_port) = rls(redis_port, &["--delay-ms", "700"]);
    let echo = Echo::start();
    let mut opts = EnvoyOpts::new(&echo);
    opts.concurrency = 2;
    opts.extra_clusters = vec![
        rls_cluster("rls", rls_port, true),
        rls_cluster("rls_http1", rls_port, false),
        rls_cluster("blackhole", rls_port, true),
    ];
    let envoy = Envoy::start(&paths, &config().to_string(), &opts);
    for user in ["gina", "hal"] {
        abandon(envoy.port, "/global/x", user, Duration::from_millis(1000));
    }
    // Past the service's delay: any late answer has arrived (or Envoy cancelled the call).
    thread::sleep(Duration::from_millis(800));
    let r = get(&envoy, "/global/x", "ida");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.upstream().header("x-rls-checked"), Some("yes"));
    assert_eq!(
        echo.requests(),
        1,
        "the abandoned requests never went upstream"
    );
    assert_eq!(
        envoy.counter(&format!("{P}_rl_per_user_service_calls")),
        1,
        "only the answer of the request still there was acted on"
    );
    assert_eq!(envoy.counter(&format!("{P}_rl_per_user_allowed")), 1);
    assert!(
        envoy.wasm_failures().is_empty(),
        "{:?}",
        envoy.wasm_failures()
    );
    // And again, on a connection of its own: the workers' VMs are fine.
    assert_eq!(get(&envoy, "/global/x", "ida").status, 200);
}

fn a_missing_cluster_is_refused_at_configure_time() {
    let paths = e2e_paths().unwrap();
    let echo = Echo::start();
    let config = json!({
        "rate_limits": {"g": {"service": {"cluster": "nope", "domain": "apiguard"}}},
        "rules": [{"match": {"prefix": "/"}, "rate_limits": "g"}]
    });
    let log = Envoy::start_refused(&paths, &config.to_string(), &EnvoyOpts::new(&echo));
    assert!(
        log.contains("rate_limits.g.service.cluster: Envoy has no cluster named \"nope\""),
        "{}",
        common::tail(&log, 30)
    );
}

per_protocol!(
    a_missing_cluster_is_refused_at_configure_time,
    one_budget_is_shared_exactly_across_two_proxies,
    local_then_service_overshoots_by_at_most_the_local_shares,
    a_stale_local_share_asks_the_service_and_learns_its_limit,
    service_failures_follow_failure_mode_and_are_counted,
    a_silent_service_times_out_and_a_cluster_without_http2_fails,
    a_client_gone_while_the_call_is_in_flight_harms_nothing,
);
