//! The per-target checks of the fuzz targets in `fuzz/fuzz_targets/`, shared with
//! `tests/fuzz_corpus_replay.rs` (which feeds every file of `fuzz/corpus/<target>/` through them on
//! stable Rust). Each check takes the raw fuzz input, drives the crate's public API and panics when
//! an invariant breaks; a panic inside the crate itself is the other thing being hunted.
//!
//! Input formats (the seeds are written by `fuzz/seeds.py`):
//! - `config`, `jwks`, `jwt_parse_verify`: the raw bytes.
//! - `schema`: byte 0 = mode (bits 0-1: draft 2020-12, draft 7, OpenAPI 3.0 schema object, OpenAPI
//!   document; bit 2: formats asserted; bits 3-4: `undeclared` for documents), then the JSON document,
//!   a NUL byte, the instance (for documents: a request, as in `pipeline`).
//! - `redact`: byte 0 = policy (bits 0-2) and body kind (bits 3-4), bytes 1-2 = two split points
//!   (fractions of the body in 1/256), then the body.
//! - `discovery`: newline-separated method, path, content-type, soapaction, upgrade, `:protocol`,
//!   response content-type (empty = absent), then the body (everything after the 7th newline).
//! - `pipeline`: `METHOD PATH`, then `name: value` header lines, an empty line, the body.
//! - `canonical_path`: byte 0 = method (bits 0-1: `GET`, `HEAD`, `get`, `POST`), then the `:path`
//!   (lossy UTF-8).
//!
//! Fixed inputs: the clock is [`NOW`]; keys are `tests/fixtures/keys/jwks.json` plus `hs.jwks.json`.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fuzz checks: a panic is the finding; each fuzz target uses one of these functions"
)]

use apiguard::canonical::canonicalize;
use apiguard::config::Policy;
use apiguard::discovery::{classify, template};
use apiguard::jwt::cache::TokenCache;
use apiguard::jwt::extract::TokenSource;
use apiguard::jwt::jws;
use apiguard::jwt::keys::KeySet;
use apiguard::jwt::verify::{self, ClaimRules};
use apiguard::pipeline::{self, HeaderChange, KeyLookup, RequestView, WorkerEnv};
use apiguard::ratelimit::Seed;
use apiguard::reader::Node;
use apiguard::redact::{self, BodyKind, Redaction, StreamRedactor};
use apiguard::schema::{self, Draft, HeadOutcome, Options, Rejection, Schema};
use apiguard::store::memory::MemoryStore;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

/// The fixed clock (seconds) every check uses; the seeds' tokens are valid at this time.
pub const NOW: u64 = 1_700_000_000;
pub const ISSUER: &str = "https://idp.example";
pub const AUDIENCE: &str = "api";

const JWKS: &[u8] = include_bytes!("../fixtures/keys/jwks.json");
const HS_JWKS: &[u8] = include_bytes!("../fixtures/keys/hs.jwks.json");

/// One target's check: panics when an invariant breaks.
pub type Check = fn(&[u8]);

/// The targets, as named in `fuzz/Cargo.toml` and `fuzz/corpus/`.
pub const TARGETS: &[(&str, Check)] = &[
    ("config", config),
    ("jwt_parse_verify", jwt_parse_verify),
    ("jwks", jwks),
    ("schema", schema),
    ("redact", redact),
    ("redact_encodings", redact_encodings),
    ("discovery", discovery),
    ("pipeline", pipeline),
    ("canonical_path", canonical_path),
    ("body_flow", body_flow),
    ("rls_proto", rls_proto),
];

/// Every public key of `jwks.json` and the HMAC secret of `hs.jwks.json`, as one JWKS document.
fn all_keys_jwks() -> String {
    let mut keys = Vec::new();
    for doc in [JWKS, HS_JWKS] {
        let v: Value = serde_json::from_slice(doc).expect("fixture JWKS is JSON");
        keys.extend(
            v["keys"]
                .as_array()
                .expect("fixture has keys")
                .iter()
                .cloned(),
        );
    }
    json!({ "keys": keys }).to_string()
}

fn keyset() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| KeySet::from_jwks(all_keys_jwks().as_bytes()).expect("fixture keys parse"))
}

fn no_control(what: &str, value: &str) {
    assert!(
        !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0),
        "{what} holds CR, LF or NUL: {value:?}"
    );
}

// ------------------------------------------------------------------------------------------ config

/// `Policy::from_json` on raw bytes: never panics; the outcome is deterministic.
pub fn config(data: &[u8]) {
    let first = Policy::from_json(data);
    let second = Policy::from_json(data);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.rules.len(), b.rules.len());
            for (i, rule) in a.rules.iter().enumerate() {
                // Routing a few fixed requests must not panic either.
                let _ = a.route("GET", "/", "h");
                let _ = rule.mode(a);
                let _ = i;
            }
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "config errors are deterministic");
            assert!(!a.path.is_empty(), "a config error names a path");
        }
        _ => panic!("Policy::from_json is not deterministic"),
    }
}

// ------------------------------------------------------------------------------------ jwt

fn claim_rules() -> ClaimRules {
    ClaimRules {
        issuer: Some(ISSUER.into()),
        audiences: vec![AUDIENCE.into()],
        require_expiration: true,
        clock_skew_secs: 60,
        max_lifetime_secs: None,
    }
}

/// `jws::parse` then `verify::verify` against the fixture keys at [`NOW`]. When a token verifies,
/// changing any one byte of its signing input must make it fail (the signature covers every byte).
pub fn jwt_parse_verify(data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    let Ok(jwt) = jws::parse(&token) else {
        return;
    };
    assert!(
        !jwt.signing_input.is_empty(),
        "a parsed token has a signing input"
    );
    let keys = keyset();
    let rules = claim_rules();
    let result = verify::verify(&jwt, &rules, keys, NOW);
    // `verify` is exactly claims, then signature.
    let expected =
        verify::check_claims(&jwt, &rules, NOW).and_then(|()| verify::check_signature(&jwt, keys));
    assert_eq!(result, expected);
    if result.is_err() {
        return;
    }
    // A verified token: flip one byte of the signing input (chosen by the input) to another
    // base64url character; the result must not verify.
    let input_len = jwt.signing_input.len();
    let at = data.iter().map(|b| usize::from(*b)).sum::<usize>() % input_len;
    let mut forged = token.as_bytes().to_vec();
    let original = forged[at];
    forged[at] = match original {
        b'A' => b'B',
        b'.' => return, // the separator: not a single-segment change
        _ => b'A',
    };
    let forged = String::from_utf8(forged).expect("ASCII change keeps UTF-8");
    if let Ok(jwt2) = jws::parse(&forged) {
        assert!(
            verify::verify(&jwt2, &rules, keys, NOW).is_err(),
            "a token with a changed signing input still verifies: {forged}"
        );
    }
}

/// `KeySet::from_jwks` and `KeySet::from_pem` on raw input; every key that parses is then used to
/// verify a signature made of the input bytes with every algorithm (must be `false`, never panic).
pub fn jwks(data: &[u8]) {
    let mut sets = Vec::new();
    match KeySet::from_jwks(data) {
        Ok(set) => {
            assert!(!set.is_empty(), "a JWKS that parses has a key");
            sets.push(set);
        }
        Err(e) => assert!(!e.status.is_empty()),
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(set) = KeySet::from_pem(&text) {
        assert_eq!(set.len(), 1, "a PEM is one key");
        sets.push(set);
    }
    let signature: Vec<u8> = data.iter().rev().take(600).copied().collect();
    for set in &sets {
        for key in set.iter() {
            let _ = (key.kid(), key.alg(), key.kty());
            for alg in apiguard::jwt::alg::Alg::ALL {
                let _ = set.candidates(key.kid(), alg).count();
                // Not asserted false: a fuzzer could in theory produce an HMAC collision with its
                // own secret, but the call must return either way.
                let _ = key.verify(alg, data, &signature);
            }
        }
    }
}

// ---------------------------------------------------------------------------------- schema

/// A request in the `pipeline` text form.
struct TextRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl TextRequest {
    /// `METHOD PATH\nname: value\n...\n\nbody`; header names lower-cased; header values and the path
    /// cleaned of CR, LF and NUL (Envoy never hands those to a filter).
    fn parse(data: &[u8]) -> TextRequest {
        let split = data.windows(2).position(|w| w == b"\n\n");
        let (head, body) = match split {
            Some(at) => (&data[..at], data[at + 2..].to_vec()),
            None => (data, Vec::new()),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split('\n');
        let first = lines.next().unwrap_or("");
        let (method, path) = first.split_once(' ').unwrap_or((first, "/"));
        let clean = |s: &str| s.replace(['\r', '\0'], "");
        let headers = lines
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                let name = name.trim().to_ascii_lowercase();
                (!name.is_empty()).then(|| (clean(&name), clean(value.trim())))
            })
            .collect();
        TextRequest {
            method: clean(method),
            path: clean(path),
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl schema::RequestHead for TextRequest {
    fn method(&self) -> &str {
        &self.method
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn header(&self, name: &str) -> Option<&str> {
        TextRequest::header(self, name)
    }
}

fn check_rejection(r: &Rejection, max_errors: usize) {
    let problem = r.problem_body();
    let parsed: Value = serde_json::from_str(&problem).expect("problem+json is JSON");
    assert!(parsed.is_object());
    assert!((400..600).contains(&r.status()));
    for (name, value) in r.headers() {
        no_control(name, &value);
    }
    if let Rejection::SchemaViolation {
        violations,
        truncated: _,
    }
    | Rejection::InvalidParameters {
        violations,
        truncated: _,
    } = r
    {
        assert!(!violations.is_empty(), "a violation rejection lists one");
        assert!(
            violations.len() <= max_errors.max(1),
            "more violations than max_errors"
        );
        for v in violations {
            assert!(
                v.pointer.len() <= schema::validate::MAX_POINTER_LEN + 16,
                "pointer not cut"
            );
        }
    }
}

/// Compiles a JSON Schema (three drafts) or an OpenAPI document from arbitrary JSON, then validates
/// the instance (or checks the request) with it.
pub fn schema(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (doc_bytes, instance) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, rest),
    };
    let Ok(doc) = serde_json::from_slice::<Value>(doc_bytes) else {
        return;
    };
    let formats = mode & 4 != 0;
    let draft = match mode & 3 {
        0 => Draft::Draft2020,
        1 => Draft::Draft7,
        2 => Draft::OpenApi30,
        _ => return openapi_document(doc, mode, instance),
    };
    let options = Options {
        draft,
        formats,
        openapi: draft == Draft::OpenApi30,
    };
    let compiled = match Schema::compile(&doc, options) {
        Ok(s) => s,
        Err(e) => {
            assert!(
                e.pointer.starts_with('#'),
                "a compile error points into the schema"
            );
            return;
        }
    };
    let limits = schema::Limits {
        max_body_bytes: 64 * 1024,
        max_depth: 32,
        max_errors: 5,
    };
    let result = compiled.validate_bytes(instance, &limits);
    if let Err(r) = &result {
        check_rejection(r, limits.max_errors);
    }
    if let Ok(value) = schema::validate::parse_body(instance, &limits) {
        let valid = compiled.is_valid(&value);
        assert_eq!(
            valid,
            result.is_ok(),
            "is_valid and validate_bytes disagree"
        );
        assert_eq!(valid, compiled.validate(&value, 3).is_ok());
    }
}

fn openapi_document(doc: Value, mode: u8, instance: &[u8]) {
    let undeclared = ["404", "405", "report", "404"][usize::from((mode >> 3) & 3)];
    let config = json!({
        "openapi": doc,
        "formats": mode & 4 != 0,
        "undeclared": undeclared,
        "max_errors": 5,
        "max_body_bytes": 4096,
    });
    let Ok(policy) = schema::compile_policy("fuzz", &Node::root(&config)) else {
        return;
    };
    let request = TextRequest::parse(instance);
    let has_body = !request.body.is_empty();
    match policy.check_head(&request, has_body) {
        HeadOutcome::Pass => {}
        HeadOutcome::Undeclared(r) | HeadOutcome::Reject(r) => check_rejection(&r, 5),
        HeadOutcome::NeedBody(check) => {
            if let Err(r) = policy.check_body(check, &request.body) {
                check_rejection(&r, 5);
            }
        }
    }
}

// ---------------------------------------------------------------------------------- redact

fn redaction_policies() -> &'static [Arc<Redaction>] {
    static POLICIES: OnceLock<Vec<Arc<Redaction>>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        [
            // Every built-in detector but JWTs (small window), custom, fields and pointers.
            json!({"detectors": ["card", "iban", "ssn", "email", "phone", "secrets"],
                   "custom": [{"name": "employee_id", "regex": "EMP-[0-9]{6}"}],
                   "fields": ["password", "secret"], "pointers": ["/user/dob", "/items/0/card"]}),
            // Everything (JWTs too: the large window).
            json!({}),
            // Hash masks.
            json!({"detectors": ["card", "email", "private_key", "github_token", "slack_token"],
                   "fields": ["password"],
                   "mask": {"style": "hash", "hash_key": "k3y-k3y-k3y-k3y-k3y"}}),
            // Last four digits of cards.
            json!({"detectors": ["card", "ssn", "phone"], "mask": {"style": "last4"}}),
            // Fields only (no detectors), with a pointer.
            json!({"detectors": [], "fields": ["password", "token"], "pointers": ["/b"]}),
            // Report: never rewrites.
            json!({"action": "report"}),
            // Block: never rewrites either.
            json!({"action": "block", "detectors": ["card"]}),
            json!({"custom": [{"name": "word", "regex": "[a-z]{3,}"}, {"name": "num", "regex": "[0-9]+"}]}),
        ]
        .iter()
        .map(|v| Arc::new(redact::compile("fuzz", &Node::root(v)).expect("fixed redaction policy compiles")))
        .collect()
    })
}

const MASK_PREFIX: &[u8] = b"[REDACTED:";

/// Splits a redacted output into the literal pieces between masks (`[REDACTED:label]` or
/// `[REDACTED:label:hex]`). A quote right next to a mask may belong to it (a JSON number masked as
/// a string), so it is left out of the literal pieces.
fn literal_pieces(out: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < out.len() {
        if out[i..].starts_with(MASK_PREFIX) {
            let after = i + MASK_PREFIX.len();
            let len = out[after..].iter().position(|b| {
                !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
            });
            if let Some(len) = len {
                if len > 0 && out[after + len] == b']' {
                    let mut end_lit = i;
                    if end_lit > start && out[end_lit - 1] == b'"' {
                        end_lit -= 1;
                    }
                    pieces.push(&out[start..end_lit]);
                    i = after + len + 1;
                    if out.get(i) == Some(&b'"') {
                        i += 1;
                    }
                    start = i;
                    continue;
                }
            }
        }
        i += 1;
    }
    pieces.push(&out[start..]);
    pieces
}

/// Whether `input` can be the original of an output made of `pieces` with one (possibly empty)
/// replaced span between consecutive pieces: pieces in order, the first a prefix, the last a suffix.
fn embeds(pieces: &[&[u8]], input: &[u8]) -> bool {
    let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
        return true;
    };
    if pieces.len() == 1 {
        return *first == input;
    }
    if !input.starts_with(first) || !input.ends_with(last) {
        return false;
    }
    let mut at = first.len();
    let limit = input.len() - last.len();
    if at > limit {
        return false;
    }
    for piece in &pieces[1..pieces.len() - 1] {
        if piece.is_empty() {
            continue;
        }
        match input[at..limit]
            .windows(piece.len())
            .position(|w| w == *piece)
        {
            Some(p) => at += p + piece.len(),
            None => return false,
        }
    }
    true
}

/// `redact::redact` and `StreamRedactor`: (1) the stream, cut at two input-chosen points, gives
/// byte for byte the one-shot output and the same findings, holding back at most `window + 72`
/// bytes; (2) outside masks nothing changes: the output is the input with some spans replaced by
/// masks (checked with mask tokens and with the Last4 style off); no change without a finding;
/// unchanged output when the action is not `redact`; a JSON body that parses still parses.
pub fn redact(data: &[u8]) {
    let [sel, a, b, body @ ..] = data else {
        return;
    };
    let policies = redaction_policies();
    let policy = &policies[usize::from(sel & 7) % policies.len()];
    let kind = [
        BodyKind::Json,
        BodyKind::Form,
        BodyKind::Text,
        BodyKind::Xml,
    ][usize::from((sel >> 3) & 3)];

    let one = redact::redact(policy, kind, body);
    if !one.changed {
        assert_eq!(&*one.body, body, "changed == false but the body differs");
    } else {
        assert!(
            !one.findings.is_empty(),
            "the body changed without a finding"
        );
    }
    if !policy.rewrites() {
        assert!(!one.changed, "a non-redact action rewrote the body");
    }

    // (1) Streaming in three chunks.
    let mut cuts = [
        usize::from(*a) * body.len() / 256,
        usize::from(*b) * body.len() / 256,
    ];
    cuts.sort_unstable();
    let chunks = [&body[..cuts[0]], &body[cuts[0]..cuts[1]], &body[cuts[1]..]];
    let mut stream = StreamRedactor::new(policy.clone(), kind);
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        stream.push(chunk, i == 2, &mut out);
        if i < 2 {
            assert!(
                stream.held_bytes() <= policy.window() + 72,
                "held {} bytes, window {}",
                stream.held_bytes(),
                policy.window()
            );
        }
    }
    assert!(stream.finished());
    assert_eq!(
        out, &*one.body,
        "streamed output differs from one-shot output (cuts {cuts:?})"
    );
    assert_eq!(stream.findings(), &one.findings, "streamed findings differ");
    assert_eq!(stream.changed(), one.changed);

    // (2) Every byte outside a mask is unchanged. Skipped when the input itself holds mask-like
    // text (it would be taken for a mask) and for last4 masks (they keep input digits).
    let last4 = usize::from(sel & 7) % policies.len() == 3;
    // UTF-16/32 bodies are written back in their encoding: masks are not ASCII there.
    let wide = body.iter().take(4).any(|b| *b == 0)
        || body.starts_with(&[0xFF, 0xFE])
        || body.starts_with(&[0xFE, 0xFF]);
    if one.changed && !last4 && !wide && !body.windows(MASK_PREFIX.len()).any(|w| w == MASK_PREFIX)
    {
        let pieces = literal_pieces(&one.body);
        assert!(pieces.len() >= 2, "changed output without a mask");
        assert!(
            embeds(&pieces, body),
            "bytes outside the masks changed:\n in: {:?}\nout: {:?}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&one.body)
        );
    }
    if kind == BodyKind::Json && serde_json::from_slice::<Value>(body).is_ok() {
        if let Err(e) = serde_json::from_slice::<Value>(&one.body) {
            panic!(
                "valid JSON is no longer JSON after redaction ({e}):\n in: {:?}\nout: {:?}",
                String::from_utf8_lossy(body),
                String::from_utf8_lossy(&one.body)
            );
        }
    }
}

// ------------------------------------------------------------------------------- discovery

/// The path templater (`normalise`, `infer`, `literal`, `placeholder`) and the API-type classifier
/// (`from_head`, `refine_with_body`, `refine_with_json`, `refine_with_response`,
/// `graphql_operation`), with their documented bounds.
pub fn discovery(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(8, '\n');
    let mut next = || parts.next().unwrap_or("");
    let method = next();
    let raw_path = next();
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let content_type = opt(next());
    let soap_action = opt(next());
    let upgrade = opt(next());
    let protocol = opt(next());
    let response_type = opt(next());
    let body = next().as_bytes().to_vec();

    // Templater.
    let normalised = template::normalise(raw_path);
    assert!(normalised.segments.len() <= template::MAX_SEGMENTS);
    for s in &normalised.segments {
        assert!(
            !s.is_empty() && s != "." && s != "..",
            "segment {s:?} survived normalisation"
        );
        assert!(!s.contains('/'), "segment {s:?} holds a slash");
    }
    assert_eq!(
        template::normalise(raw_path),
        normalised,
        "normalise is deterministic"
    );
    let path = normalised.to_path();
    assert!(path.starts_with('/'));
    for rendered in [template::infer(&normalised), template::literal(&normalised)] {
        assert!(rendered.starts_with('/'), "template {rendered:?}");
        assert!(
            rendered.len() <= template::MAX_TEMPLATE_BYTES,
            "template of {} bytes",
            rendered.len()
        );
    }
    let inferred = template::infer(&normalised);
    // Re-normalising the inferred template's own path is stable (placeholders are names).
    let again = template::normalise(&inferred);
    assert!(again.segments.len() <= template::MAX_SEGMENTS);
    let _ = template::placeholder(raw_path);
    let _ = template::decode_component(raw_path, 256);
    assert!(template::decode_component(raw_path, 16).len() <= 16 * 4 + 4);
    let (p, q) = (
        template::path_part(raw_path),
        template::query_part(raw_path),
    );
    assert!(p.len() + q.len() <= raw_path.len());

    // Classifier.
    let head = classify::RequestHead {
        method,
        path: p,
        query: q,
        content_type: content_type.as_deref(),
        soap_action: soap_action.as_deref(),
        upgrade: upgrade.as_deref(),
        protocol: protocol.as_deref(),
        websocket_protocol: None,
    };
    let mut c = classify::from_head(&head);
    check_operation(&c);
    let before = c.clone();
    for complete in [false, true] {
        let mut refined = before.clone();
        classify::refine_with_body(&mut refined, content_type.as_deref(), &body, complete);
        check_operation(&refined);
    }
    classify::refine_with_body(&mut c, content_type.as_deref(), &body, true);
    if let Ok(value) = serde_json::from_slice::<Value>(&body) {
        let mut j = before.clone();
        classify::refine_with_json(&mut j, &value);
        check_operation(&j);
    }
    classify::refine_with_response(&mut c, response_type.as_deref());
    check_operation(&c);
    assert!(!c.api_type.as_str().is_empty());
    if let Ok(doc) = std::str::from_utf8(&body) {
        let _ = classify::graphql_operation(doc, None);
        let _ = classify::graphql_operation(doc, Some(method));
    }
    let _ = apiguard::media::essence(content_type.as_deref().unwrap_or(""));
}

fn check_operation(c: &classify::Classification) {
    let Some(op) = &c.operation else { return };
    for name in [&op.service, &op.name].into_iter().flatten() {
        // Names are printable ASCII; JSON-RPC batches may list several names (and `,...`).
        assert!(
            name.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
            "unprintable operation name {name:?}"
        );
        assert!(
            name.len() <= classify::MAX_NAME_BYTES * 5 + 8,
            "operation name of {} bytes",
            name.len()
        );
    }
}

// -------------------------------------------------------------------------------- pipeline

struct NoRemote;

impl KeyLookup for NoRemote {
    fn remote_keys(&mut self, _: usize) -> Option<(Arc<KeySet>, u64)> {
        None
    }
}

impl TokenSource for TextRequest {
    fn header(&self, name: &str) -> Option<&str> {
        TextRequest::header(self, name)
    }
    fn query(&self) -> &str {
        self.path.split_once('?').map_or("", |(_, q)| q)
    }
    fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

impl RequestView for TextRequest {
    fn method(&self) -> &str {
        &self.method
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn authority(&self) -> &str {
        TextRequest::header(self, "host").unwrap_or("api.example")
    }
    fn scheme(&self) -> &str {
        "https"
    }
    fn source_address(&self) -> Option<&str> {
        Some("192.0.2.7:40000")
    }
    fn has_body(&self) -> bool {
        !self.body.is_empty()
    }
}

/// The policy every `pipeline` input runs against: every stage, on different routes.
pub fn pipeline_policy_json() -> Value {
    let acme = "5f2a7ab5e5d1b6b5a7f3f3f4bd5d7a31ba6ad5c5d1d1f1b7c7c37f0fd4c26e1b";
    json!({
        "on_no_match": "deny",
        "jwt_cache": {"max_entries": 8},
        "jwt_providers": {"idp": {
            "issuer": ISSUER, "audiences": [AUDIENCE],
            "local_jwks": {"inline_string": all_keys_jwks()},
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "from_params": ["access_token"], "from_cookies": ["session"],
            "forward_payload_header": "x-jwt-payload",
            "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"},
                                 {"header_name": "x-role", "claim_name": "realm.role"}],
            "max_token_bytes": 4096
        }},
        "api_keys": {"partners": {"from_header": "x-api-key", "from_param": "api_key",
                                  "keys": [{"name": "acme", "sha256": sha256_hex(b"acme-key"), "scopes": ["orders:read"]},
                                           {"name": "other", "sha256": acme}]}},
        "rate_limits": {"per_tenant": {"requests": 3, "period": "60s", "key": [{"header": "x-tenant"}],
                                       "on_missing_key": "deny", "headers": "draft"}},
        "schemas": {
            "order": {"json_schema": {"type": "object", "required": ["id"],
                                      "properties": {"id": {"type": "integer", "minimum": 1},
                                                     "email": {"type": "string", "format": "email"}}},
                      "max_body_bytes": 2048, "max_depth": 8, "body_required": false},
            "petstore": {"openapi": {"openapi": "3.0.3", "paths": {
                "/pets": {"post": {"requestBody": {"required": true, "content": {"application/json": {"schema":
                    {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}}}}},
                          "get": {"parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 10}}]}},
                "/pets/{id}": {"get": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}]}}
            }}, "undeclared": "405"}
        },
        "rules": [
            {"name": "public", "match": {"prefix": "/public"}},
            {"name": "orders", "match": {"template": "/orders/{id}", "methods": ["GET", "POST"]},
             "jwt": {"provider": "idp"}, "authz": {"scopes": ["orders:read"]}, "schema": "order"},
            {"name": "partners", "match": {"prefix": "/partners"}, "api_key": "partners",
             "authz": {"scopes": ["orders:read"]}},
            {"name": "limited", "match": {"prefix": "/limited"}, "rate_limits": ["per_tenant"]},
            {"name": "pets", "match": {"prefix": "/pets"}, "schema": "petstore"},
            {"name": "dry", "match": {"prefix": "/dry"}, "mode": "report", "jwt": {"provider": "idp"}},
            {"name": "any", "match": {"prefix": "/any"},
             "jwt": {"any": [{"provider": "idp"}, {"allow_missing": true}]}}
        ]
    })
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn pipeline_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        Policy::from_value(&pipeline_policy_json()).expect("fixed pipeline policy compiles")
    })
}

/// `pipeline::decide` (and `check_body` when the schema asks for the body) for a request built from
/// the input, then the reply for its denial. Output headers never carry CR, LF or NUL; deciding the
/// same request again with the warm token cache gives the same denial (rate-limited routes aside).
pub fn pipeline(data: &[u8]) {
    let _ = pipeline_outcome(data);
}

/// What [`pipeline`] concluded: `allowed`, or the denial's metric name (for the replay test, which
/// checks that the seeds reach every stage).
pub fn pipeline_outcome(data: &[u8]) -> &'static str {
    let policy = pipeline_policy();
    let request = TextRequest::parse(data);
    let store = MemoryStore::default();
    let seed = Seed::from_bytes(&[7; 16]);
    let mut cache = TokenCache::new(policy.jwt_cache_max_entries);
    let mut keys = NoRemote;
    let mut decide = |cache: &mut TokenCache| {
        let mut env = WorkerEnv {
            keys: &mut keys,
            cache,
            store: &store,
            seed: Some(&seed),
            now_ms: NOW * 1000,
        };
        pipeline::decide(policy, &request, &mut env)
    };
    let verdict = decide(&mut cache);
    let again = decide(&mut cache);
    let limited = verdict
        .rule
        .and_then(|i| policy.rules.get(i))
        .is_some_and(|r| !r.rate_limits.is_empty());
    if !limited {
        assert_eq!(
            verdict.denial, again.denial,
            "a warm cache changed the verdict"
        );
        assert_eq!(
            verdict.headers, again.headers,
            "a warm cache changed the header changes"
        );
    }
    for change in &verdict.headers {
        match change {
            HeaderChange::Remove(name) => no_control("removed header name", name),
            HeaderChange::Set(name, value) => {
                no_control("set header name", name);
                no_control("set header value", value);
            }
        }
    }
    for (name, value) in &verdict.response_headers {
        no_control(name, value);
    }
    let mut denial = verdict.denial.clone();
    if let Some((index, check)) = verdict.body_check {
        let (_event, body_denial) = pipeline::check_body(policy, index, check, &request.body);
        denial = denial.or(body_denial);
    }
    let Some(denial) = denial else {
        return "allowed";
    };
    let uri = pipeline::original_uri(&request);
    let reply = apiguard::refusal::for_denial(&denial, policy, &uri, &verdict.response_headers);
    assert!(
        (400..600).contains(&reply.status),
        "reply status {}",
        reply.status
    );
    for (name, value) in &reply.headers {
        no_control(name, value);
    }
    denial.name()
}

// -------------------------------------------------------------------------- canonical_path

/// Rules of every kind (prefix, exact, template, case-insensitive, methods, guarded or not), so that
/// routing differences between a path and its canonical form show.
fn canonical_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        Policy::from_value(&json!({
            "api_keys": {"k": {"from_header": "x-api-key", "keys": [{"name": "a", "sha256": sha256_hex(b"k")}]}},
            "rules": [
                {"name": "head", "match": {"prefix": "/files/", "methods": ["HEAD"]}},
                {"name": "files", "match": {"prefix": "/files/", "methods": ["GET"]}, "api_key": "k"},
                {"name": "exact", "match": {"exact": "/admin"}, "api_key": "k"},
                {"name": "users", "match": {"template": "/users/{id}/orders/*"}, "api_key": "k"},
                {"name": "static", "match": {"template": "/static/**"}},
                {"name": "legacy", "match": {"prefix": "/Legacy/", "case_insensitive": true}, "api_key": "k"},
                {"name": "api", "match": {"prefix": "/api/"}, "api_key": "k"},
                {"name": "ascii", "match": {"prefix": "/a"}}
            ]
        }))
        .expect("fixed canonical_path policy compiles")
    })
}

fn route_of(method: &str, path: &str) -> (Option<usize>, Option<apiguard::refusal::Denial>) {
    let request = TextRequest {
        method: method.to_string(),
        path: path.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let store = MemoryStore::default();
    let mut cache = TokenCache::new(0);
    let mut env = WorkerEnv {
        keys: &mut NoRemote,
        cache: &mut cache,
        store: &store,
        seed: None,
        now_ms: NOW * 1000,
    };
    let verdict = pipeline::decide(canonical_policy(), &request, &mut env);
    (verdict.rule, verdict.denial)
}

/// `canonical::canonicalize` never panics and is idempotent (the canonical path of a canonical path
/// is itself, borrowed and unflagged but for what stays ambiguous); canonical paths have no empty,
/// `.` or `..` segment and no `;`; a path the pipeline accepts routes to the same rule as its
/// canonical form.
pub fn canonical_path(data: &[u8]) {
    let (selector, rest) = data.split_first().map_or((0, data), |(b, r)| (*b, r));
    let method = ["GET", "HEAD", "get", "POST"][usize::from(selector & 3)];
    let raw = String::from_utf8_lossy(rest);
    let once = canonicalize(&raw);
    let twice = canonicalize(&once.path);
    assert_eq!(once.path, twice.path, "not idempotent for {raw:?}");
    assert!(
        matches!(twice.path, std::borrow::Cow::Borrowed(_)),
        "a canonical path was rewritten: {:?}",
        once.path
    );
    assert!(!twice.matrix, "matrix parameters survived: {:?}", once.path);
    if once.path.starts_with('/') {
        let segments: Vec<&str> = once.path.split('/').skip(1).collect();
        let last = segments.len().saturating_sub(1);
        for (i, segment) in segments.iter().enumerate() {
            assert!(
                !matches!(*segment, "." | "..") && (i == last || !segment.is_empty()),
                "segment {segment:?} left in {:?}",
                once.path
            );
        }
        assert!(!once.path.contains(';'), "{:?}", once.path);
    }
    if let Some(query) = once.query {
        assert!(raw.ends_with(query), "the query string changed");
    }
    let (rule, denial) = route_of(method, &raw);
    if denial == Some(apiguard::refusal::Denial::BadRequest("ambiguous_path")) {
        assert!(once.is_ambiguous(), "refused an unambiguous path {raw:?}");
        assert_eq!(rule, None);
        return;
    }
    assert!(!once.is_ambiguous(), "accepted an ambiguous path {raw:?}");
    let (canonical_rule, _) = route_of(method, &once.with_query());
    assert_eq!(
        rule, canonical_rule,
        "{raw:?} routes differently from its canonical form {:?}",
        once.path
    );
}

// ---------------------------------------------------------------------------------------------------------
// body_flow: the body state machine (`apiguard::exchange`) through the simulated proxy.
//
// Input: byte 0 picks the route (schema, request block, response redact, response block, report);
// byte 1: bit 0 = end the body with trailers, bits 1-2 = number of cuts (0-3); then one byte per cut
// (a position, scaled to the body); the rest is the body.
// Invariants: the verdict (reply status, reset, bytes the upstream or client received) is the same as
// for the whole body in one chunk without trailers; the filter never reads or writes a body the proxy
// no longer holds; nothing panics.

const BODY_FLOW_CONFIG: &str = r#"{
    "schemas": {"order": {"json_schema": {"type": "object", "required": ["qty"],
        "properties": {"qty": {"type": "integer", "minimum": 1}}}, "max_body_bytes": 256}},
    "redaction": {
        "pii": {"action": "redact"},
        "blocker": {"action": "block"},
        "req_blocker": {"action": "block", "bodies": ["request"]},
        "watcher": {"action": "report", "bodies": ["request", "response"]}
    },
    "rules": [
        {"name": "orders", "match": {"prefix": "/orders"}, "schema": "order"},
        {"name": "reqblock", "match": {"prefix": "/rb/"}, "redaction": "req_blocker"},
        {"name": "redact", "match": {"prefix": "/r/"}, "redaction": "pii"},
        {"name": "block", "match": {"prefix": "/b/"}, "redaction": "blocker"},
        {"name": "report", "match": {"prefix": "/w/"}, "redaction": "watcher"}
    ]
}"#;

fn body_flow_policy() -> std::rc::Rc<Policy> {
    thread_local! {
        static POLICY: std::rc::Rc<Policy> =
            std::rc::Rc::new(Policy::from_json(BODY_FLOW_CONFIG.as_bytes()).expect("body_flow config"));
    }
    POLICY.with(std::rc::Rc::clone)
}

/// (reply status, reset, upstream bytes, client bytes) for one way of delivering `body`.
fn body_flow_outcome(
    route: u8,
    body: &[u8],
    cuts: &[usize],
    trailers: bool,
) -> (Option<u16>, bool, Vec<u8>, Vec<u8>) {
    use apiguard::discovery::observe::Side;
    use apiguard::exchange::sim::Sim;
    use apiguard::request::Headers;
    let mut sim = Sim::new(body_flow_policy());
    let (path, request_side) = match route % 5 {
        0 => ("/orders", true),
        1 => ("/rb/x", true),
        2 => ("/r/x", false),
        3 => ("/b/x", false),
        _ => ("/w/x", true),
    };
    let mut pieces = Vec::new();
    let mut last = 0;
    for &cut in cuts {
        pieces.push(&body[last..cut]);
        last = cut;
    }
    pieces.push(&body[last..]);
    let method = if request_side { "POST" } else { "GET" };
    sim.request(
        Headers::of(&[
            (":method", method),
            (":path", path),
            (":authority", "h"),
            ("content-type", "application/json"),
        ]),
        !request_side,
    );
    if request_side {
        sim.body(Side::Request, &pieces, trailers);
    } else {
        sim.response(
            Headers::of(&[(":status", "200"), ("content-type", "application/json")]),
            false,
        );
        sim.body(Side::Response, &pieces, trailers);
    }
    assert!(
        sim.host.violations.is_empty(),
        "proxy misuse: {:?}",
        sim.host.violations
    );
    (
        sim.status(),
        sim.host.reset,
        sim.upstream_got().to_vec(),
        sim.client_got().to_vec(),
    )
}

pub fn body_flow(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let route = data[0];
    let trailers = data[1] & 1 == 1;
    let ncuts = usize::from((data[1] >> 1) & 3);
    if data.len() < 2 + ncuts {
        return;
    }
    let body = &data[2 + ncuts..];
    let mut cuts: Vec<usize> = data[2..2 + ncuts]
        .iter()
        .map(|b| usize::from(*b) * body.len() / 255)
        .collect();
    cuts.sort_unstable();
    let whole = body_flow_outcome(route, body, &[], false);
    let split = body_flow_outcome(route, body, &cuts, trailers);
    assert_eq!(
        split,
        whole,
        "route {} cuts {cuts:?} trailers {trailers}: the verdict depends on the chunking",
        route % 5
    );
}

// ---------------------------------------------------------------------------------------------------------
// redact_encodings

fn encoding_policies() -> &'static [Arc<Redaction>; 2] {
    static POLICIES: OnceLock<[Arc<Redaction>; 2]> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let compile = |v: Value| {
            Arc::new(
                redact::compile("fuzz", &Node::root(&v)).expect("fixed redaction policy compiles"),
            )
        };
        [
            compile(json!({"detectors": ["card", "iban", "ssn", "email", "phone"]})),
            compile(
                json!({"detectors": ["card", "iban", "ssn", "email", "phone"], "action": "block"}),
            ),
        ]
    })
}

/// Re-encoded values (`fuzz/dict/redact.dict`: escapes, percent-encoding, references, Unicode
/// digits and separators, UTF-16): for any body and chunking, (1) every value the `redact` policy
/// finds is replaced by a mask and nothing else changes: the output holds exactly one mask per
/// finding (UTF-8 bodies) and a body changes exactly when something was found (a second pass over
/// the output is not required to find nothing: a mask changes its neighbours' boundaries, and
/// `05 3704 0044 0532 0130 00` → `05 3704 0044 [REDACTED:phone]` leaves a shorter number that is
/// a phone on its own); (2) a `block` policy with the same detectors finds exactly what `redact` finds, so it
/// never lets through a value `redact` would mask; (3) streaming gives the one-shot output.
/// Input: byte 0 body kind (bits 0-1), bytes 1-2 split points (/256), then the body.
pub fn redact_encodings(data: &[u8]) {
    let [sel, a, b, body @ ..] = data else {
        return;
    };
    let kind = [
        BodyKind::Json,
        BodyKind::Form,
        BodyKind::Text,
        BodyKind::Xml,
    ][usize::from(sel & 3)];
    let [redact_p, block_p] = encoding_policies();
    let one = redact::redact(redact_p, kind, body);
    assert_eq!(
        one.changed,
        !one.findings.is_empty(),
        "changed without findings, or findings left in place"
    );
    let masks = |b: &[u8]| {
        b.windows(MASK_PREFIX.len())
            .filter(|w| *w == MASK_PREFIX)
            .count()
    };
    let wide = body.iter().take(4).any(|b| *b == 0)
        || body.starts_with(&[0xFF, 0xFE])
        || body.starts_with(&[0xFE, 0xFF]);
    if !wide {
        assert_eq!(
            masks(&one.body) - masks(body).min(masks(&one.body)),
            one.findings.total() as usize,
            "a value found is not masked:\n in: {:?}\nout: {:?}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&one.body)
        );
    }
    let blocked = redact::redact(block_p, kind, body);
    assert_eq!(
        blocked.findings, one.findings,
        "block and redact with the same detectors disagree"
    );
    assert!(!blocked.changed);
    let mut cuts = [
        usize::from(*a) * body.len() / 256,
        usize::from(*b) * body.len() / 256,
    ];
    cuts.sort_unstable();
    for p in [redact_p, block_p] {
        let mut stream = StreamRedactor::new(p.clone(), kind);
        let mut out = Vec::new();
        stream.push(&body[..cuts[0]], false, &mut out);
        stream.push(&body[cuts[0]..cuts[1]], false, &mut out);
        stream.push(&body[cuts[1]..], true, &mut out);
        let expected: &[u8] = if p.rewrites() { &one.body } else { body };
        assert_eq!(out, expected, "streamed output differs (cuts {cuts:?})");
        assert_eq!(stream.findings(), &one.findings, "streamed findings differ");
    }
}

/// `rls_proto`: the rate limit service's messages (`src/ratelimit/service/proto.rs`).
/// - The whole input is a `RateLimitResponse` from the network: decoding never panics, respects its
///   bounds, and whatever it decodes to, `service_outcome` turns into a decision without panicking
///   (a refusal only for `OVER_LIMIT`, or for no answer under `failure_mode: deny`).
/// - The input also spells a request (domain, descriptors, hits): `encode_request` of it reads back,
///   with an independent protobuf wire reader, as the same fields.
pub fn rls_proto(data: &[u8]) {
    use apiguard::ratelimit::service::proto::{self, Code, Descriptor};
    use apiguard::ratelimit::service::ServiceResult;
    use std::borrow::Cow;

    match proto::decode_response(data) {
        Ok(r) => {
            assert!(r.statuses.len() <= proto::MAX_STATUSES);
            assert!(r.response_headers.len() <= proto::MAX_HEADERS);
            assert!(r.request_headers.len() <= proto::MAX_HEADERS);
            let limits = rls_limits();
            let call = limits
                .service_call(&[0, 1], &NoFacts)
                .expect("describable")
                .expect("a call");
            let d = limits.service_outcome(&call, &ServiceResult::Reply(data.to_vec()));
            // Policy b has failure_mode deny: an UNKNOWN answer refuses too.
            assert_eq!(
                d.refusal.is_some(),
                r.overall_code != Code::Ok,
                "refused exactly when over the limit or undecided"
            );
            for (name, value) in d.response_headers.iter().chain(&d.request_headers) {
                assert!(
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                );
                assert!(!value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0));
            }
        }
        Err(_) => {
            assert!(
                !data.is_empty(),
                "an empty message is a valid (UNKNOWN) response"
            );
            let call = rls_limits()
                .service_call(&[0, 1], &NoFacts)
                .expect("describable")
                .expect("a call");
            let d = rls_limits().service_outcome(&call, &ServiceResult::Reply(data.to_vec()));
            assert!(
                d.refusal.is_some(),
                "an unreadable answer is a failure; b denies"
            );
        }
    }

    // A request spelled by the input: fields split at 0xff, entries at 0xfe.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{ff}');
    let domain = parts.next().unwrap_or_default().to_string();
    let hits = u32::from(data.first().copied().unwrap_or(0));
    let descriptors: Vec<Vec<(String, String)>> = parts
        .map(|d| {
            d.split('\u{fe}')
                .map(|e| {
                    let mid = (0..=e.len() / 2)
                        .rev()
                        .find(|&i| e.is_char_boundary(i))
                        .unwrap_or(0);
                    let (k, v) = e.split_at(mid);
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .collect();
    let encoded: Vec<Descriptor<'_>> = descriptors
        .iter()
        .enumerate()
        .map(|(i, entries)| Descriptor {
            entries: entries
                .iter()
                .map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str())))
                .collect(),
            hits_addend: (i % 2 == 1).then_some(i as u64 * 1_000_003),
        })
        .collect();
    let bytes = proto::encode_request(&domain, &encoded, hits);
    let decoded = wire::request(&bytes);
    assert_eq!(decoded.domain, domain);
    assert_eq!(decoded.hits, u64::from(hits));
    assert_eq!(decoded.descriptors.len(), descriptors.len());
    for (i, (got, want)) in decoded.descriptors.iter().zip(&descriptors).enumerate() {
        assert_eq!(&got.0, want, "descriptor {i}");
        assert_eq!(got.1, (i % 2 == 1).then_some(i as u64 * 1_000_003));
    }
}

struct NoFacts;

impl apiguard::ratelimit::RequestFacts for NoFacts {
    fn claims(&self) -> Option<&serde_json::Map<String, Value>> {
        None
    }
    fn api_key_name(&self) -> Option<&str> {
        None
    }
    fn header(&self, _: &str) -> Option<&str> {
        Some("u")
    }
    fn source_address(&self) -> Option<&str> {
        None
    }
    fn path_template(&self) -> &str {
        "/"
    }
    fn method(&self) -> &str {
        "GET"
    }
}

fn rls_limits() -> &'static apiguard::ratelimit::RateLimits {
    static LIMITS: OnceLock<apiguard::ratelimit::RateLimits> = OnceLock::new();
    LIMITS.get_or_init(|| {
        let json = json!({"rate_limits": {
            "a": {"key": [{"header": "x-user"}], "headers_on_allowed": true,
                  "service": {"cluster": "rls", "domain": "d"}},
            "b": {"requests": 1, "period": "1s", "tier": "local_then_service", "headers": "x-ratelimit",
                  "service": {"cluster": "rls", "domain": "d", "failure_mode": "deny"}}
        }});
        Policy::from_json(json.to_string().as_bytes())
            .expect("fixture config")
            .rate_limits
    })
}

/// An independent reader of the protobuf wire format, for the request the encoder writes.
mod wire {
    /// A descriptor's entries and its own `hits_addend`.
    pub type Descriptor = (Vec<(String, String)>, Option<u64>);

    pub struct Request {
        pub domain: String,
        pub hits: u64,
        /// Entries, and the descriptor's own hits_addend.
        pub descriptors: Vec<Descriptor>,
    }

    fn varint(b: &[u8], i: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[*i];
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }

    /// Every (field, varint or bytes) of a message; the encoder writes only wire types 0 and 2.
    fn fields(b: &[u8]) -> Vec<(u64, Result<u64, &[u8]>)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let tag = varint(b, &mut i);
            match tag & 7 {
                0 => out.push((tag >> 3, Ok(varint(b, &mut i)))),
                2 => {
                    let len = varint(b, &mut i) as usize;
                    out.push((tag >> 3, Err(&b[i..i + len])));
                    i += len;
                }
                other => panic!("wire type {other} in an encoded request"),
            }
        }
        out
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8(b.to_vec()).expect("UTF-8 strings")
    }

    pub fn request(b: &[u8]) -> Request {
        let mut r = Request {
            domain: String::new(),
            hits: 0,
            descriptors: Vec::new(),
        };
        for (field, value) in fields(b) {
            match (field, value) {
                (1, Err(s)) => r.domain = text(s),
                (3, Ok(v)) => r.hits = v,
                (2, Err(d)) => {
                    let mut entries = Vec::new();
                    let mut hits = None;
                    for (f, v) in fields(d) {
                        match (f, v) {
                            (1, Err(e)) => {
                                let (mut k, mut val) = (String::new(), String::new());
                                for (ef, ev) in fields(e) {
                                    match (ef, ev) {
                                        (1, Err(s)) => k = text(s),
                                        (2, Err(s)) => val = text(s),
                                        other => panic!("entry field {other:?}"),
                                    }
                                }
                                entries.push((k, val));
                            }
                            (3, Err(w)) => {
                                hits = Some(
                                    fields(w)
                                        .into_iter()
                                        .find_map(|(f, v)| (f == 1).then(|| v.ok()).flatten())
                                        .unwrap_or(0),
                                )
                            }
                            other => panic!("descriptor field {other:?}"),
                        }
                    }
                    r.descriptors.push((entries, hits));
                }
                other => panic!("request field {other:?}"),
            }
        }
        r
    }
}
