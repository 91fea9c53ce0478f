//! Issue 11 "Proof": sensitive data cannot be smuggled past the filter by re-encoding, slicing or
//! hiding it in names. Each test checks what the client got *and* what the upstream received.
//!
//! 1. Byte ranges on scanned routes (`docs/operations.md`): `Range` is removed, a stray 206 follows
//!    `on_unknown_encoding`.
//! 2. Re-encoded request bodies on a request `block` route.
//! 3. UTF-16 JSON responses (with and without BOM).
//! 4. Response header masking (`headers: [location, content-disposition]`).
//! 5. Duplicate JSON keys under a schema.
//! 6. Float edge cases under a schema (exact decimals).
//! 7. Discovery over hostile names: no value reaches the collector, in any encoding.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::collector::Collector;
use common::{
    e2e_paths, parse_headers, read_body, read_head, serve, wake, Echo, Envoy, EnvoyOpts, H2Echo,
    Reply, Req, Response,
};
use serde_json::{json, Value};

const P: &str = "apiguard";

const CARD: &str = "4111 1111 1111 1111";
/// The JSON document the range origin serves: 74 bytes, the card inside bytes 19..38, so the slices
/// `0-36` and `37-` each hold part of it.
const DOC: &[u8] = br#"{"id": 7, "card": "4111 1111 1111 1111", "note": "thanks for your order"}"#;

const REQ_BLOCKED: &str = r#"{"error":"request blocked: it contains sensitive data"}"#;
const RESP_BLOCKED: &str = r#"{"error":"response blocked: it contains sensitive data"}"#;

fn digits(s: &[u8]) -> String {
    s.iter()
        .filter(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect()
}

/// True when `body` (any encoding the test uses: UTF-8 text, spaces or not) spells the test card.
fn has_card(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.contains(CARD)
        || text.contains("4111111111111111")
        || digits(body).contains("4111111111111111")
}

// ---------------------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 origin that honours `Range` (1) or always answers 206 (a broken one).

/// Request headers as the origin parsed them.
type Headers = Vec<(String, String)>;

struct RangeOrigin {
    port: u16,
    /// Request headers of every request received, in order.
    seen: Arc<Mutex<Vec<Headers>>>,
    stop: Arc<AtomicBool>,
}

impl RangeOrigin {
    fn start() -> RangeOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&seen);
        serve(listener, Arc::clone(&stop), move |conn| {
            let _ = range_connection(conn, &s);
        });
        RangeOrigin { port, seen, stop }
    }

    fn seen(&self) -> Vec<Headers> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for RangeOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        wake(self.port);
    }
}

/// `bytes=a-b` / `bytes=a-` against `len`: the inclusive slice.
fn parse_range(v: &str, len: usize) -> Option<(usize, usize)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let a: usize = a.trim().parse().ok()?;
    let b: usize = if b.trim().is_empty() {
        len - 1
    } else {
        b.trim().parse::<usize>().ok()?.min(len - 1)
    };
    (a <= b).then_some((a, b))
}

fn range_connection(conn: TcpStream, seen: &Mutex<Vec<Headers>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    while let Some(lines) = read_head(&mut reader)? {
        let path = lines
            .first()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/")
            .to_string();
        let headers = parse_headers(lines.get(1..).unwrap_or_default());
        let _ = read_body(&mut reader, &headers, false)?;
        seen.lock().unwrap().push(headers.clone());
        let range = headers
            .iter()
            .find(|(n, _)| n == "range")
            .and_then(|(_, v)| parse_range(v, DOC.len()));
        // `/…/always206…`: a broken origin that answers 206 whatever was asked.
        let slice = if path.contains("always206") {
            Some(range.unwrap_or((0, 36)))
        } else {
            range
        };
        let (status, extra, body): (&str, String, &[u8]) = match slice {
            Some((a, b)) => (
                "206 Partial Content",
                format!("content-range: bytes {a}-{b}/{}\r\n", DOC.len()),
                &DOC[a..=b],
            ),
            None => ("200 OK", String::new(), DOC),
        };
        write!(
            writer,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\naccept-ranges: bytes\r\n{extra}content-length: {}\r\n\r\n",
            body.len()
        )?;
        writer.write_all(body)?;
        writer.flush()?;
    }
    Ok(())
}

fn range_config() -> Value {
    json!({
        "allow_on_headers_stop_iteration": true,
        "redaction": {
            "redact_pass": {"action": "redact"},
            "redact_strict": {"action": "redact", "on_unknown_encoding": "block"},
            "block_pass": {"action": "block"},
            "block_strict": {"action": "block", "on_unknown_encoding": "block"}
        },
        "rules": [
            {"name": "rp", "match": {"prefix": "/rp/"}, "redaction": "redact_pass"},
            {"name": "rs", "match": {"prefix": "/rs/"}, "redaction": "redact_strict"},
            {"name": "bp", "match": {"prefix": "/bp/"}, "redaction": "block_pass"},
            {"name": "bs", "match": {"prefix": "/bs/"}, "redaction": "block_strict"},
            {"name": "plain", "match": {"prefix": "/"}}
        ]
    })
}

fn start_range() -> Option<(Envoy, RangeOrigin)> {
    let paths = e2e_paths()?;
    let origin = RangeOrigin::start();
    let mut opts = EnvoyOpts::new_port(origin.port);
    opts.allow_on_headers_stop_iteration = true;
    let envoy = Envoy::start(&paths, &range_config().to_string(), &opts);
    Some((envoy, origin))
}

fn last_seen_has_range(origin: &RangeOrigin) -> bool {
    origin
        .seen()
        .last()
        .expect("the origin received a request")
        .iter()
        .any(|(n, _)| n == "range" || n == "if-range")
}

/// 1a. The origin honours `Range` (checked through an unscanned route), but on a scanned route it never
/// sees one: each "slice" request gets the whole redacted document, so joining slices yields no card.
fn range_slices_on_a_redact_route_give_the_whole_redacted_document() {
    let Some((envoy, origin)) = start_range() else {
        return;
    };
    // Control: without redaction the origin slices (it honours Range) and the card is split across.
    let a = envoy.get("/plain/doc", &[("range", "bytes=0-36")]);
    let b = envoy.get("/plain/doc", &[("range", "bytes=37-")]);
    assert_eq!(a.status, 206, "control: {}", a.describe());
    assert_eq!(b.status, 206, "control: {}", b.describe());
    assert!(
        !has_card(&a.body) && !has_card(&b.body),
        "each slice alone holds no whole card"
    );
    let joined: Vec<u8> = [a.body.clone(), b.body.clone()].concat();
    assert_eq!(
        joined, DOC,
        "control: joined slices rebuild the document (and the card)"
    );

    for route in ["/rp/doc", "/rs/doc"] {
        let mut joined = Vec::new();
        for range in ["bytes=0-36", "bytes=37-"] {
            let r = envoy.get(route, &[("range", range), ("if-range", "\"v1\"")]);
            assert!(
                !last_seen_has_range(&origin),
                "{route} {range}: the origin received Range/If-Range: {:?}",
                origin.seen().last()
            );
            assert_eq!(r.status, 200, "{route} {range}: {}", r.describe());
            assert!(r.header("content-range").is_none(), "{}", r.describe());
            let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
                panic!(
                    "{route} {range}: not the whole JSON document ({e}): {}",
                    r.describe()
                )
            });
            assert_eq!(v["card"], "[REDACTED:card]", "{}", r.describe());
            assert_eq!(v["id"], 7);
            assert!(!has_card(&r.body), "{}", r.describe());
            joined.extend_from_slice(&r.body);
        }
        assert!(!has_card(&joined), "{route}: joined slices hold the card");
    }
}

/// 1b. An origin that answers 206 anyway: `on_unknown_encoding: block` refuses it (502), `pass` lets it
/// through unscanned (counted as `redaction_unscanned`).
fn a_stray_206_follows_on_unknown_encoding() {
    let Some((envoy, origin)) = start_range() else {
        return;
    };
    // redact + block
    let r = envoy.get("/rs/always206", &[("range", "bytes=0-36")]);
    assert!(!last_seen_has_range(&origin));
    assert_eq!(r.status, 502, "redact+strict: {}", r.describe());
    assert_eq!(r.text(), RESP_BLOCKED, "{}", r.describe());
    // block + block
    let r = envoy.get("/bs/always206", &[("range", "bytes=0-36")]);
    assert!(!last_seen_has_range(&origin));
    assert_eq!(r.status, 502, "block+strict: {}", r.describe());
    assert_eq!(r.text(), RESP_BLOCKED, "{}", r.describe());
    assert!(!has_card(&r.body));

    // pass: through unscanned, counted.
    let before = envoy.counter(&format!("{P}_redaction_unscanned"));
    let r = envoy.get("/rp/always206", &[("range", "bytes=0-36")]);
    assert!(!last_seen_has_range(&origin));
    assert_eq!(r.status, 206, "redact+pass: {}", r.describe());
    assert_eq!(
        r.body,
        &DOC[..=36],
        "redact+pass: unscanned slice: {}",
        r.describe()
    );
    let r2 = envoy.get("/bp/always206", &[]);
    assert_eq!(r2.status, 206, "block+pass: {}", r2.describe());
    assert_eq!(r2.body, &DOC[..=36], "block+pass: {}", r2.describe());
    assert!(
        envoy.eventually(Duration::from_secs(3), |e| e
            .counter(&format!("{P}_redaction_unscanned"))
            >= before + 2),
        "redaction_unscanned: {} -> {}",
        before,
        envoy.counter(&format!("{P}_redaction_unscanned"))
    );
}

/// 1c. On a `block` route the honouring origin gets no Range, answers the whole document, and the card
/// never reaches the client (502: headers are held).
fn range_slices_on_a_block_route_never_reach_the_client() {
    let Some((envoy, origin)) = start_range() else {
        return;
    };
    for route in ["/bp/doc", "/bs/doc"] {
        for range in ["bytes=0-36", "bytes=37-"] {
            let r = envoy.get(route, &[("range", range)]);
            assert!(
                !last_seen_has_range(&origin),
                "{route} {range}: Range reached the origin"
            );
            assert_eq!(r.status, 502, "{route} {range}: {}", r.describe());
            assert_eq!(r.text(), RESP_BLOCKED, "{}", r.describe());
            assert!(!has_card(&r.body));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// 2. Re-encoded request bodies on a request `block` route; 5./6. schemas.

fn echo_config() -> Value {
    json!({
        "redaction": {
            "req_block": {"bodies": ["request"], "action": "block"}
        },
        "schemas": {
            "qty": {"json_schema": {"type": "object", "required": ["qty"],
                                    "properties": {"qty": {"type": "number", "minimum": 1}}}},
            "n": {"json_schema": {"type": "object", "required": ["n"],
                                  "properties": {"n": {"type": "number", "maximum": 10}}}}
        },
        "rules": [
            {"name": "upload", "match": {"prefix": "/upload"}, "redaction": "req_block"},
            {"name": "qty", "match": {"prefix": "/qty"}, "schema": "qty"},
            {"name": "n", "match": {"prefix": "/n"}, "schema": "n"}
        ]
    })
}

fn start_echo() -> Option<(Envoy, Echo)> {
    let paths = e2e_paths()?;
    let echo = Echo::start();
    let envoy = Envoy::start(&paths, &echo_config().to_string(), &EnvoyOpts::new(&echo));
    Some((envoy, echo))
}

fn post(envoy: &Envoy, path: &str, content_type: &str, body: &[u8]) -> Response {
    envoy.request("POST", path, &[("content-type", content_type)], body)
}

fn all_digits_escaped(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn all_digits_percent(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                format!("%{:02X}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn re_encoded_request_bodies_are_refused_on_a_block_route() {
    let Some((envoy, echo)) = start_echo() else {
        return;
    };
    let json_cases: Vec<(&str, String)> = vec![
        (
            "one escaped digit",
            r#"{"card": "\u0034111 1111 1111 1111"}"#.to_string(),
        ),
        (
            "all digits escaped",
            format!(r#"{{"card": "{}"}}"#, all_digits_escaped(CARD)),
        ),
        (
            "exponent number",
            r#"{"card": 4.111111111111111e15}"#.to_string(),
        ),
        (
            "dotted groups",
            r#"{"card": "4111.1111.1111.1111"}"#.to_string(),
        ),
    ];
    let form_cases: Vec<(&str, String)> = vec![
        (
            "form %20",
            "name=jane&card=4111%201111%201111%201111".to_string(),
        ),
        (
            "form all digits %XX",
            format!(
                "name=jane&card={}",
                all_digits_percent(CARD).replace(' ', "%20")
            ),
        ),
    ];
    let mut failures = Vec::new();
    for (ct, cases) in [
        ("application/json", &json_cases),
        ("application/x-www-form-urlencoded", &form_cases),
    ] {
        for (what, body) in cases {
            let before = echo.requests();
            let r = post(&envoy, "/upload", ct, body.as_bytes());
            let reached = echo.requests() != before || r.reached_upstream();
            if r.status != 403 || r.text() != REQ_BLOCKED || reached {
                failures.push(format!(
                    "{what} {body:?}: reached upstream={reached}: {}",
                    r.describe()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));

    let clean = br#"{"card": "none", "id": 4111, "ref": "1111-2222"}"#;
    let r = post(&envoy, "/upload", "application/json", clean);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.upstream().body.as_bytes(),
        clean,
        "clean body byte-identical"
    );
    let form = b"name=jane&qty=2";
    let r = post(&envoy, "/upload", "application/x-www-form-urlencoded", form);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.upstream().body.as_bytes(), form);
}

fn problem(r: &Response) -> Value {
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.describe()
    );
    serde_json::from_slice(&r.body).unwrap()
}

fn duplicate_keys_are_refused_by_a_schema() {
    let Some((envoy, echo)) = start_echo() else {
        return;
    };
    for body in [
        r#"{"qty":-5,"qty":1}"#,
        r#"{"qty":-5,"q\u0074y":1}"#,
        r#"{"a":{"qty":1,"qty":1},"qty":1}"#,
    ] {
        let before = echo.requests();
        let r = post(&envoy, "/qty", "application/json", body.as_bytes());
        let p = problem(&r);
        assert_eq!(
            p["title"],
            "Request body repeats an object key",
            "{body}: {}",
            r.describe()
        );
        assert!(
            !r.reached_upstream() && echo.requests() == before,
            "{body}: reached the upstream"
        );
    }
    let r = post(&envoy, "/qty", "application/json", br#"{"qty":1}"#);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.upstream().body, r#"{"qty":1}"#);
}

fn float_edge_cases_are_judged_exactly() {
    let Some((envoy, echo)) = start_echo() else {
        return;
    };
    for (path, body) in [
        ("/qty", r#"{"qty":0.99999999999999999}"#),
        ("/n", r#"{"n":10.0000000000000001}"#),
        ("/n", r#"{"n":1e1000}"#),
    ] {
        let before = echo.requests();
        let r = post(&envoy, path, "application/json", body.as_bytes());
        let p = problem(&r);
        assert_eq!(
            p["title"],
            "Request body does not match the schema",
            "{body}: {}",
            r.describe()
        );
        assert!(
            !r.reached_upstream() && echo.requests() == before,
            "{body}: reached the upstream"
        );
    }
    for (path, body) in [
        ("/n", r#"{"n":10}"#),
        ("/n", r#"{"n":10.0}"#),
        ("/qty", r#"{"qty":1.00000000000000000001}"#),
    ] {
        let r = post(&envoy, path, "application/json", body.as_bytes());
        assert_eq!(r.status, 200, "{body}: {}", r.describe());
        assert_eq!(r.upstream().body, body, "byte-identical");
    }
}

// ---------------------------------------------------------------------------------------------------------
// 3./4. Responses from the HTTP/2 upstream.

fn h2_config() -> Value {
    json!({
        "allow_on_headers_stop_iteration": true,
        "redaction": {
            "redact": {"action": "redact"},
            "block": {"action": "block"},
            "hdr_redact": {"action": "redact", "headers": ["location", "content-disposition"]},
            "hdr_block": {"action": "block", "headers": ["location", "content-disposition"]}
        },
        "rules": [
            {"name": "r", "match": {"prefix": "/r/"}, "redaction": "redact"},
            {"name": "b", "match": {"prefix": "/b/"}, "redaction": "block"},
            {"name": "hr", "match": {"prefix": "/hr/"}, "redaction": "hdr_redact"},
            {"name": "hb", "match": {"prefix": "/hb/"}, "redaction": "hdr_block"}
        ]
    })
}

fn start_h2() -> Option<(Envoy, H2Echo)> {
    let paths = e2e_paths()?;
    let up = H2Echo::start();
    let mut opts = EnvoyOpts::h2_upstream(&up);
    opts.allow_on_headers_stop_iteration = true;
    let envoy = Envoy::start(&paths, &h2_config().to_string(), &opts);
    Some((envoy, up))
}

fn utf16le(s: &str, bom: bool) -> Vec<u8> {
    let mut out = if bom { vec![0xFF, 0xFE] } else { Vec::new() };
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

fn decode_utf16le(b: &[u8]) -> Result<String, String> {
    let b = b.strip_prefix(&[0xFF, 0xFE]).unwrap_or(b);
    if !b.len().is_multiple_of(2) {
        return Err(format!("odd length {}", b.len()));
    }
    let units: Vec<u16> = b
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|e| e.to_string())
}

fn utf16_json_responses_are_scanned() {
    let Some((envoy, up)) = start_h2() else {
        return;
    };
    let doc = r#"{"name": "jane", "card": "4111 1111 1111 1111", "n": 1}"#;
    for (tag, bom) in [("bom", true), ("nobom", false)] {
        let body = utf16le(doc, bom);
        up.reply_on(&format!("/r/{tag}"), Reply::new("application/json", &body));
        up.reply_on(&format!("/b/{tag}"), Reply::new("application/json", &body));

        let r = envoy.get(&format!("/r/{tag}"), &[]);
        assert_eq!(r.status, 200, "{tag}: {}", r.describe());
        assert_eq!(
            r.body.starts_with(&[0xFF, 0xFE]),
            bom,
            "{tag}: BOM kept as it was: {:?}",
            &r.body[..4.min(r.body.len())]
        );
        let text = decode_utf16le(&r.body)
            .unwrap_or_else(|e| panic!("{tag}: not valid UTF-16LE ({e}): {:?}", r.body));
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{tag}: not JSON ({e}): {text:?}"));
        assert_eq!(v["card"], "[REDACTED:card]", "{tag}: {text}");
        eprintln!(
            "[{}] utf-16 {tag}: {} bytes, decoded {text:?}",
            r.proto.name(),
            r.body.len()
        );
        assert_eq!(v["name"], "jane");
        assert!(
            !digits(text.as_bytes()).contains("4111111111111111"),
            "{tag}: {text}"
        );
        assert!(
            !digits(&r.body).contains("4111111111111111"),
            "{tag}: card digits in raw bytes"
        );

        let r = envoy.get(&format!("/b/{tag}"), &[]);
        assert_eq!(r.status, 502, "{tag} block: {}", r.describe());
        assert_eq!(r.text(), RESP_BLOCKED, "{tag} block: {}", r.describe());
        assert!(!digits(&r.body).contains("4111111111111111"));
    }
    // The upstream got plain GETs without accept-encoding.
    for rec in up.received() {
        assert!(
            rec.header("accept-encoding").is_none(),
            "{}: {:?}",
            rec.path,
            rec.headers
        );
    }
}

fn response_headers_listed_by_the_policy_are_masked_or_refused() {
    let Some((envoy, up)) = start_h2() else {
        return;
    };
    let reply = Reply::new("application/json", br#"{"ok": true}"#)
        .header("location", b"/cards/4111%201111%201111%201111")
        .header(
            "content-disposition",
            b"attachment; filename=\"card-4111111111111111.pdf\"",
        )
        .header("x-other", b"4111 1111 1111 1111")
        .header("x-trace", b"abc-123");
    up.reply_on("/hr/", reply.clone());
    up.reply_on("/hb/", reply);

    let r = envoy.get("/hr/x", &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    let location = r.header("location").expect("location kept");
    assert!(
        !digits(location.as_bytes()).contains("4111111111111111"),
        "location: {location}"
    );
    assert!(
        location.contains("REDACTED") || location.contains("card"),
        "location masked: {location}"
    );
    assert!(location.starts_with("/cards/"), "location: {location}");
    let cd = r
        .header("content-disposition")
        .expect("content-disposition kept");
    assert!(
        !digits(cd.as_bytes()).contains("4111111111111111"),
        "content-disposition: {cd}"
    );
    eprintln!(
        "[{}] location: {location:?}; content-disposition: {cd:?}",
        r.proto.name()
    );
    // Headers the policy does not list pass untouched.
    assert_eq!(
        r.header("x-other"),
        Some("4111 1111 1111 1111"),
        "{}",
        r.describe()
    );
    assert_eq!(r.header("x-trace"), Some("abc-123"));
    assert_eq!(r.text(), r#"{"ok": true}"#);
    assert!(envoy.counter(&format!("{P}_redaction_headers_changed")) >= 1);

    let r = envoy.get("/hb/x", &[]);
    assert_eq!(r.status, 502, "{}", r.describe());
    assert_eq!(r.text(), RESP_BLOCKED, "{}", r.describe());
    assert!(
        r.header("location")
            .is_none_or(|l| !digits(l.as_bytes()).contains("4111111111111111")),
        "{}",
        r.describe()
    );
    assert_eq!(up.requests(), 2, "the upstream answered both requests");
}

// ---------------------------------------------------------------------------------------------------------
// 7. Discovery over hostile names.

/// Runs the hostile traffic through an Envoy with discovery on and returns the raw batches and the
/// endpoints they hold, once every endpoint sent has been reported.
fn hostile_discovery() -> Option<(Vec<Vec<u8>>, Vec<Value>)> {
    let paths = e2e_paths()?;
    let collector = Collector::start();
    let echo = Echo::start();
    let config = json!({
        "discovery": {
            "collector": {"cluster": "collector", "uri": "http://collector/v1/apiguard", "timeout": "1s",
                          "retry": {"base_interval": "200ms", "max_interval": "1s"}},
            "flush_interval": "1s"
        },
        "rules": [{"name": "all", "match": {"prefix": "/"}}]
    });
    let envoy = Envoy::start(
        &paths,
        &config.to_string(),
        &EnvoyOpts::new(&echo).collector(collector.port),
    );

    let sent: Vec<Req> = vec![
        Req::get("/cards/4111%201111%201111%201111"),
        Req::get("/ssn/536%2022%201234"),
        Req::get("/users/+14155552671/sms"),
        Req::get("/people/john%20smith/profile"),
        Req::get("/search?4111%201111%201111%201111=1&jane.doe%40example.com=2&+14155552671=3&page=1"),
        Req::get("/lookup?4111111111111111=1&jane.doe@example.com=2&%2B14155552671=3&536-22-1234=4"),
        Req::post("/import", br#"{"4111111111111111": 1, "+14155552671": 2, "jane.doe@example.com": 3, "ok": 4}"#)
            .header("content-type", "application/json"),
        Req::post(
            "/soap",
            br#"<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><Pay/></soap:Body></soap:Envelope>"#,
        )
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"pay-4111111111111111-jane.doe@example.com\""),
        Req::post("/rpc", br#"{"jsonrpc": "2.0", "method": "notify.jane.doe@example.com", "params": {}}"#)
            .header("content-type", "application/json"),
    ];
    for req in &sent {
        let r = envoy.send(req);
        assert_eq!(
            r.status,
            200,
            "{} {}: {}",
            req.method,
            req.path,
            r.describe()
        );
        let up = r.upstream();
        assert_eq!(
            up.path, req.path,
            "the upstream got the request as sent (discovery only observes)"
        );
    }

    let wanted = [
        "/cards/", "/ssn/", "/users/", "/people/", "/search", "/lookup", "/import", "/soap", "/rpc",
    ];
    let endpoints = |c: &Collector| -> Vec<Value> {
        c.batches()
            .iter()
            .filter_map(|(_, b)| serde_json::from_slice::<Value>(b).ok())
            .flat_map(|b| b["endpoints"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let eps = endpoints(&collector);
        let have = |p: &str| {
            eps.iter().any(|e| {
                e["path_template"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(p))
            })
        };
        if wanted.iter().all(|p| have(p)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "batches never named all endpoints: {eps:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let batches = collector.batches().into_iter().map(|(_, b)| b).collect();
    Some((batches, endpoints(&collector)))
}

fn summary(eps: &[Value]) -> String {
    eps.iter()
        .map(|e| {
            format!(
                "{} {} op={} q={} shape={} classes={}",
                e["method"],
                e["path_template"],
                e["operation"],
                e["query_params"],
                e["request_shape"],
                e["data_classes"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn endpoint<'a>(eps: &'a [Value], template: &str) -> Option<&'a Value> {
    eps.iter().find(|e| e["path_template"] == template)
}

fn classes(e: Option<&Value>) -> Vec<String> {
    e.and_then(|e| e["data_classes"]["request"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect()
}

/// (7) No injected value reaches the collector, in any encoding; paths, query names and operation names
/// carry the placeholders `docs/events.md` documents.
fn hostile_names_never_reach_the_collector() {
    let Some((batches, eps)) = hostile_discovery() else {
        return;
    };
    // Every encoding of every injected value, searched in every batch's raw bytes.
    let needles: &[&str] = &[
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111%201111%201111%201111",
        "4111%201111",
        "4111+1111",
        "\\u0034111",
        "4.111111111111111e15",
        "536 22 1234",
        "536%2022%201234",
        "536221234",
        "536-22-1234",
        "14155552671",
        "4155552671",
        "%2B14155552671",
        "jane.doe@example.com",
        "jane.doe%40example.com",
        "jane.doe\\u0040example.com",
        "jane.doe",
        "example.com",
        "john smith",
        "john%20smith",
        "john+smith",
        "john",
        "smith",
    ];
    assert!(!batches.is_empty());
    let mut found = Vec::new();
    for (i, body) in batches.iter().enumerate() {
        let lower = String::from_utf8_lossy(body).to_ascii_lowercase();
        for n in needles {
            if let Some(at) = lower.find(&n.to_ascii_lowercase()) {
                let from = at.saturating_sub(80);
                let to = (at + n.len() + 80).min(lower.len());
                found.push(format!("batch {i}: {n:?} in ...{}...", &lower[from..to]));
            }
        }
    }
    assert!(
        found.is_empty(),
        "values reached the collector:\n{}\nendpoints:\n{}",
        found.join("\n"),
        summary(&eps)
    );

    let mut missing = Vec::new();
    for (t, class) in [
        ("/cards/{card}", "card"),
        ("/ssn/{ssn}", "ssn"),
        ("/users/{phone}/sms", "phone"),
        ("/people/{value}/profile", ""),
    ] {
        match endpoint(&eps, t) {
            None => missing.push(format!("no endpoint {t}")),
            Some(e) if !class.is_empty() && !classes(Some(e)).iter().any(|c| c == class) => {
                missing.push(format!("{t}: data_classes.request lacks {class}"));
            }
            Some(_) => {}
        }
    }
    // Query names: only `page` survives; every hostile name is a placeholder.
    for t in ["/search", "/lookup"] {
        let q: Vec<String> = endpoint(&eps, t)
            .and_then(|e| e["query_params"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        if q.iter()
            .any(|n| n != "page" && !(n.starts_with('{') && n.ends_with('}')))
            || q.is_empty()
        {
            missing.push(format!("{t} query_params: {q:?}"));
        }
    }
    let op = endpoint(&eps, "/soap")
        .map(|e| e["operation"]["name"].clone())
        .unwrap_or_default();
    if !op.as_str().is_some_and(|n| n.starts_with('{')) {
        missing.push(format!("/soap operation.name: {op}"));
    }
    let op = endpoint(&eps, "/rpc")
        .map(|e| e["operation"]["name"].clone())
        .unwrap_or_default();
    if op != "{email}" {
        missing.push(format!("/rpc operation.name: {op}"));
    }
    assert!(
        missing.is_empty(),
        "placeholders missing:\n{}\nendpoints:\n{}",
        missing.join("\n"),
        summary(&eps)
    );
    eprintln!("discovery endpoints:\n{}", summary(&eps));
}

/// (7b) FINDING when it fails: `docs/events.md` ("No values, whatever the traffic") says member names of
/// `request_shape` are checked by the redaction detectors, get the *typed* placeholder (`{card}`,
/// `{phone}`, `{email}`) and add the detector's class to `data_classes.request`.
fn hostile_json_member_names_get_typed_placeholders_and_classes() {
    let Some((_, eps)) = hostile_discovery() else {
        return;
    };
    let import = endpoint(&eps, "/import");
    let shape = import
        .map(|e| e["request_shape"]["properties"].clone())
        .unwrap_or_default();
    let names: Vec<String> = shape
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let got_classes = classes(import);
    let mut problems = Vec::new();
    for want in ["{card}", "{phone}", "{email}", "ok"] {
        if !names.iter().any(|n| n == want) {
            problems.push(format!("member name {want} missing (names: {names:?})"));
        }
    }
    for class in ["card", "phone", "email"] {
        if !got_classes.iter().any(|c| c == class) {
            problems.push(format!(
                "data_classes.request lacks {class} (got {got_classes:?})"
            ));
        }
    }
    // The same for a plain card-number query parameter name (`?4111111111111111=1`): no odd
    // character, so docs/events.md's table says `{card}`.
    let lookup = endpoint(&eps, "/lookup");
    let q = lookup
        .map(|e| e["query_params"].clone())
        .unwrap_or_default();
    if !q
        .as_array()
        .is_some_and(|a| a.iter().any(|n| n == "{card}"))
    {
        problems.push(format!(
            "/lookup query_params lack {{card}} for `4111111111111111` (got {q})"
        ));
    }
    if !classes(lookup).iter().any(|c| c == "card") {
        problems.push(format!(
            "/lookup data_classes.request lacks card (got {:?})",
            classes(lookup)
        ));
    }
    assert!(
        problems.is_empty(),
        "FINDING (docs/events.md vs shapes and query names):\n{}\n/import: {}",
        problems.join("\n"),
        summary(import.map(std::slice::from_ref).unwrap_or_default())
    );
}

crate::per_protocol!(
    range_slices_on_a_redact_route_give_the_whole_redacted_document,
    a_stray_206_follows_on_unknown_encoding,
    range_slices_on_a_block_route_never_reach_the_client,
    re_encoded_request_bodies_are_refused_on_a_block_route,
    duplicate_keys_are_refused_by_a_schema,
    float_edge_cases_are_judged_exactly,
    utf16_json_responses_are_scanned,
    response_headers_listed_by_the_policy_are_masked_or_refused,
    hostile_names_never_reach_the_collector,
    hostile_json_member_names_get_typed_placeholders_and_classes,
);
