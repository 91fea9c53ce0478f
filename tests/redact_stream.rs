//! Streaming: however a body is cut into chunks, `StreamRedactor` gives byte-for-byte the
//! one-shot output and the same findings, and holds back at most `window + 72` bytes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic fails the test"
)]

use apiguard::reader::Node;
use apiguard::redact::{compile, redact, BodyKind, Findings, Redaction, StreamRedactor};
use serde_json::json;
use std::sync::Arc;

const HOLD_SLACK: usize = 72;

fn policy(v: serde_json::Value) -> Arc<Redaction> {
    Arc::new(compile("t", &Node::root(&v)).unwrap())
}

/// Small window (no JWT detector): bodies of a few KB pause and resume many times.
fn small_window() -> Arc<Redaction> {
    policy(json!({
        "detectors": ["card", "iban", "ssn", "email", "phone", "secrets"],
        "custom": [{"name": "employee_id", "regex": "EMP-[0-9]{6}"}],
        "fields": ["password", "secret"],
        "pointers": ["/user/dob"],
    }))
}

fn hashed() -> Arc<Redaction> {
    policy(json!({
        "detectors": ["card", "email", "private_key"],
        "fields": ["password"],
        "mask": {"style": "hash", "hash_key": "k3y-k3y-k3y-k3y-k3y"},
    }))
}

fn streamed(p: &Arc<Redaction>, kind: BodyKind, chunks: &[&[u8]]) -> (Vec<u8>, Findings) {
    let mut r = StreamRedactor::new(p.clone(), kind);
    let mut out = Vec::new();
    for (k, c) in chunks.iter().enumerate() {
        r.push(c, k + 1 == chunks.len(), &mut out);
        if k + 1 < chunks.len() {
            assert!(
                r.held_bytes() <= p.window() + HOLD_SLACK,
                "held {} > window {} + {HOLD_SLACK}",
                r.held_bytes(),
                p.window()
            );
        }
    }
    assert!(r.finished());
    (out, r.findings().clone())
}

fn one_shot(p: &Redaction, kind: BodyKind, body: &[u8]) -> (Vec<u8>, Findings) {
    let o = redact(p, kind, body);
    (o.body.into_owned(), o.findings)
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

fn json_body(records: usize) -> String {
    let mut s = String::from("{\"items\":[");
    for i in 0..records {
        if i > 0 {
            s.push_str(",\n");
        }
        s.push_str(&format!(
            concat!(
                r#"{{"id":{i},"name":"user {i}","Password":"p\"w\\d{i}","pan":4111111111111111,"#,
                r#""note":"card 4111 1111 1111 1111, iban GB29 NWBK 6016 1331 9268 19\nssn 078-05-1123","#,
                r#""contact":{{"email":"ann.{i}@example.com","phone":"+1 415-555-2671"}},"#,
                r#""emp":"EMP-00{i:04}","keys":["AKIAIOSFODNN7EXAMPLE","plain \u00e9 text"],"#,
                r#""secret":{{"a":[1,"x",null]}},"ts":"2024-01-15T09:30:00Z","amount":12.5e-1}}"#
            ),
            i = i
        ));
    }
    s.push_str("],\"user\":{\"dob\":\"1990-01-01\"}}");
    s
}

fn text_body() -> String {
    let key_body =
        "TUlJRXZRSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NCS2N3Z2dTakFnRUFBb0lCQVFD\n".repeat(40);
    format!(
        "header line with ann@example.com and 5555-5555-5555-4444\n-----BEGIN PRIVATE KEY-----\n{key_body}-----END PRIVATE KEY-----\nafter the key: bob@example.org, EMP-123456 and DE89370400440532013000.\n"
    )
}

fn form_body() -> String {
    "user=ann%40example.com&password=hunter2%26more&card=4111+1111+1111+1111&note=EMP-000042+done&ssn=078-05-1123"
        .repeat(12)
}

fn check_every_two_chunk_split(p: &Arc<Redaction>, kind: BodyKind, body: &[u8]) {
    check_splits(p, kind, body, 0..=body.len());
}

fn check_splits(
    p: &Arc<Redaction>,
    kind: BodyKind,
    body: &[u8],
    splits: impl IntoIterator<Item = usize>,
) {
    let expected = one_shot(p, kind, body);
    assert!(!expected.1.is_empty(), "the body holds something to find");
    for k in splits {
        let got = streamed(p, kind, &[&body[..k], &body[k..]]);
        assert!(
            got.0 == expected.0,
            "split at {k} changes the output:\n{}\nvs\n{}",
            String::from_utf8_lossy(&got.0),
            String::from_utf8_lossy(&expected.0)
        );
        assert_eq!(got.1, expected.1, "split at {k} changes the findings");
    }
}

#[test]
fn every_two_chunk_split_of_a_json_body_gives_the_one_shot_output() {
    let body = json_body(14);
    assert!(body.len() > 4 * small_window().window());
    check_every_two_chunk_split(&small_window(), BodyKind::Json, body.as_bytes());
}

#[test]
fn every_two_chunk_split_of_a_text_body_with_a_long_key_block_gives_the_one_shot_output() {
    let body = text_body();
    for p in [small_window(), hashed()] {
        check_every_two_chunk_split(&p, BodyKind::Text, body.as_bytes());
        let (out, _) = one_shot(&p, BodyKind::Text, body.as_bytes());
        assert!(
            !String::from_utf8_lossy(&out).contains("TUlJ"),
            "key material never leaks"
        );
    }
}

#[test]
fn every_two_chunk_split_of_a_form_body_gives_the_one_shot_output() {
    check_every_two_chunk_split(&small_window(), BodyKind::Form, form_body().as_bytes());
    check_every_two_chunk_split(&hashed(), BodyKind::Form, form_body().as_bytes());
}

#[test]
fn every_two_chunk_split_with_the_jwt_window_gives_the_one_shot_output() {
    let p = policy(json!({"fields": ["password"]}));
    let mut body = json_body(50);
    body.insert_str(body.len() / 2, &format!("{{\"t\":\"Bearer {JWT}\"}},"));
    let body = body.replacen(
        "\"items\":[",
        &format!("\"items\":[{{\"t\":\"{JWT}\"}},"),
        1,
    );
    assert!(body.len() > 2 * p.window());
    // Every offset in and around each JWT (and where the window ends on it), a spread elsewhere.
    let mut splits: Vec<usize> = (0..=body.len()).step_by(53).collect();
    for (at, _) in body.match_indices(JWT) {
        for base in [at, at + p.window()] {
            splits.extend(base.saturating_sub(80)..(base + JWT.len() + 80).min(body.len()));
        }
    }
    check_splits(&p, BodyKind::Json, body.as_bytes(), splits);
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn random_chunks<'a>(rng: &mut Rng, body: &'a [u8], max: usize) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let n = (1 + rng.below(max)).min(body.len() - at);
        chunks.push(&body[at..at + n]);
        at += n;
    }
    if rng.below(4) == 0 {
        chunks.push(&[]); // an empty end-of-stream chunk, as Envoy sends
    }
    chunks
}

#[test]
fn random_cuts_into_many_chunks_give_the_one_shot_output() {
    let mut rng = Rng(7);
    let cases: Vec<(Arc<Redaction>, BodyKind, String)> = vec![
        (small_window(), BodyKind::Json, json_body(20)),
        (hashed(), BodyKind::Json, json_body(20)),
        (small_window(), BodyKind::Text, text_body()),
        (hashed(), BodyKind::Form, form_body()),
        (policy(json!({})), BodyKind::Json, json_body(40)),
    ];
    for (p, kind, body) in &cases {
        let full = one_shot(p, *kind, body.as_bytes());
        // One-byte chunks on a prefix (a cut body is still scanned the same way either way).
        let prefix = &body.as_bytes()[..body.len().min(3000)];
        let prefix_expected = one_shot(p, *kind, prefix);
        for max in [1, 3, 17, 100, 700, 5000] {
            let (input, expected) = if max == 1 {
                (prefix, &prefix_expected)
            } else {
                (body.as_bytes(), &full)
            };
            for _ in 0..if max == 1 { 1 } else { 20 } {
                let chunks = random_chunks(&mut rng, input, max);
                let got = streamed(p, *kind, &chunks);
                assert!(
                    got.0 == expected.0,
                    "{} chunks of at most {max}",
                    chunks.len()
                );
                assert_eq!(got.1, expected.1);
            }
        }
    }
}

#[test]
fn every_pair_of_cuts_of_a_short_body_gives_the_one_shot_output() {
    let p = small_window();
    let body = r#"{"a":"x 4111-1111-1111-1111 ann@example.com","password":"pw","user":{"dob":"1990"},"n":5555555555554444,"e":"EMP-000001\t078-05-1123"}"#;
    let expected = one_shot(&p, BodyKind::Json, body.as_bytes());
    let b = body.as_bytes();
    for i in 0..=b.len() {
        for j in i..=b.len() {
            let got = streamed(&p, BodyKind::Json, &[&b[..i], &b[i..j], &b[j..]]);
            assert!(got.0 == expected.0, "cuts at {i} and {j}");
            assert_eq!(got.1, expected.1);
        }
    }
}

#[test]
fn report_and_block_pass_every_chunk_through_at_once_and_count() {
    let p = policy(json!({"action": "report"}));
    let body = json_body(3);
    let mut r = StreamRedactor::new(p.clone(), BodyKind::Json);
    let mut out = Vec::new();
    for chunk in body.as_bytes().chunks(100) {
        let before = out.len();
        r.push(chunk, false, &mut out);
        assert_eq!(
            &out[before..],
            chunk,
            "passed through unchanged, without delay"
        );
    }
    r.push(&[], true, &mut out);
    assert_eq!(out, body.as_bytes());
    assert!(!r.changed());
    assert_eq!(
        r.findings(),
        &one_shot(&p, BodyKind::Json, body.as_bytes()).1
    );
}

#[test]
fn memory_stays_bounded_on_a_long_body_fed_in_small_chunks() {
    let p = small_window();
    let body = json_body(400);
    let mut r = StreamRedactor::new(p.clone(), BodyKind::Json);
    let mut out = Vec::new();
    let mut max_held = 0;
    for chunk in body.as_bytes().chunks(1000) {
        r.push(chunk, false, &mut out);
        max_held = max_held.max(r.held_bytes());
    }
    r.push(&[], true, &mut out);
    assert!(
        max_held <= p.window() + HOLD_SLACK,
        "held at most {max_held}"
    );
    assert_eq!(out, one_shot(&p, BodyKind::Json, body.as_bytes()).0);
    serde_json::from_slice::<serde_json::Value>(&out).expect("still JSON");
}
