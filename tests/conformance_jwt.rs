//! JWT conformance against independent vectors, read in place from `../shared/conformance/jwt/`:
//! RFC 7515 (App. A and E), RFC 8037, the JOSE cookbook (RFC 7520 JWS and the curve25519 example), Envoy's
//! `jwt_authn` test tokens, and google/jwt_verify_lib's verify, parse and JWKS-parse vectors.
//!
//! Each suite prints `passed / skipped` (run with `--nocapture` to see them) and fails if any vector that is
//! not explicitly skipped gives another outcome than the vector's. Every skip is listed below with its reason,
//! and a skip entry that names no vector fails the suite (so the lists cannot rot).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

use std::time::{SystemTime, UNIX_EPOCH};

use apiguard::jwt::alg::Alg;
use apiguard::jwt::jws::{self, decode_base64url};
use apiguard::jwt::keys::KeySet;
use apiguard::jwt::verify::{self, ClaimRules};
use apiguard::jwt::Status;
use serde_json::{json, Value};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/conformance/jwt/");

fn load(rel: &str) -> Value {
    let path = format!("{ROOT}{rel}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn name(status: Result<(), Status>) -> String {
    match status {
        Ok(()) => "Ok".into(),
        Err(s) => format!("{s:?}"),
    }
}

/// Counts of one suite; `finish` prints them and fails on any mismatch or stale skip.
struct Suite {
    name: &'static str,
    skips: &'static [(&'static str, &'static str)],
    passed: usize,
    skipped: Vec<(String, &'static str)>,
    failures: Vec<String>,
}

impl Suite {
    fn new(name: &'static str, skips: &'static [(&'static str, &'static str)]) -> Suite {
        Suite {
            name,
            skips,
            passed: 0,
            skipped: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Returns true (and records the skip) when this vector is on the skip list.
    fn skip(&mut self, id: &str) -> bool {
        match self.skips.iter().find(|(n, _)| *n == id) {
            Some((_, reason)) => {
                self.skipped.push((id.to_owned(), reason));
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, id: &str, got: &str, want: &str) {
        if got == want {
            self.passed += 1;
        } else {
            self.failures.push(format!("{id}: got {got}, want {want}"));
        }
    }

    fn finish(self, minimum_passed: usize) {
        eprintln!(
            "[{}] passed {} / skipped {}",
            self.name,
            self.passed,
            self.skipped.len()
        );
        for (id, reason) in &self.skipped {
            eprintln!("[{}]   skipped {id}: {reason}", self.name);
        }
        let mut failures = self.failures;
        for (id, _) in self.skips {
            if !self.skipped.iter().any(|(s, _)| s == id) {
                failures.push(format!("skip entry {id} matched no vector"));
            }
        }
        assert!(
            failures.is_empty(),
            "[{}] {} failure(s):\n{}",
            self.name,
            failures.len(),
            failures.join("\n")
        );
        assert!(
            self.passed >= minimum_passed,
            "[{}] only {} vectors passed, expected at least {minimum_passed}",
            self.name,
            self.passed
        );
    }
}

fn jwks_of(jwk: &Value) -> KeySet {
    KeySet::from_jwks(json!({ "keys": [jwk] }).to_string().as_bytes()).expect("vector key parses")
}

/// Verifies a compact JWS signature whatever its payload (the RFC and cookbook payloads are not JWTs).
fn jws_signature(compact: &str, keys: &KeySet) -> String {
    let mut parts = compact.split('.');
    let (h, p, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let header: Value = serde_json::from_slice(&decode_base64url(h).unwrap()).unwrap();
    let alg = Alg::from_name(header["alg"].as_str().unwrap()).expect("supported alg");
    let sig = decode_base64url(s).expect("signature base64url");
    let input = format!("{h}.{p}");
    name(verify::check_signature_parts(
        alg,
        header["kid"].as_str(),
        input.as_bytes(),
        &sig,
        keys,
    ))
}

/// The same JWS with one signature bit flipped.
fn tampered(compact: &str) -> String {
    let (head, sig) = compact.rsplit_once('.').unwrap();
    let mut bytes = decode_base64url(sig).unwrap();
    bytes[0] ^= 0x01;
    use base64ct::Encoding;
    format!(
        "{head}.{}",
        base64ct::Base64UrlUnpadded::encode_string(&bytes)
    )
}

fn no_rules() -> ClaimRules {
    ClaimRules {
        issuer: None,
        audiences: Vec::new(),
        require_expiration: false,
        clock_skew_secs: 60,
        max_lifetime_secs: None,
    }
}

fn verify_token(token: &str, rules: &ClaimRules, keys: &KeySet, at: u64) -> String {
    match jws::parse(token) {
        Ok(jwt) => name(verify::verify(&jwt, rules, keys, at)),
        Err(s) => format!("{s:?}"),
    }
}

#[test]
fn rfc7515_appendix_a_and_e() {
    let doc = load("rfc7515/vectors.json");
    let mut suite = Suite::new(
        "rfc7515",
        &[
            (
                "A.4",
                "ES512 (P-521) is not supported; its payload \"Payload\" is not JSON either",
            ),
            (
                "A.6/A.7",
                "JWS JSON serialization is not supported (compact only)",
            ),
        ],
    );
    for v in doc["vectors"].as_array().unwrap() {
        let id = v["id"].as_str().unwrap();
        let compact = v["compact"].as_str().unwrap();
        if suite.skip(id) {
            continue;
        }
        if id == "A.5" {
            // Unsecured JWS (empty signature segment): refused for its alg before the missing signature.
            suite.expect(
                id,
                &format!("{:?}", jws::parse(compact).err()),
                "Some(JwtHeaderNotImplementedAlg)",
            );
            continue;
        }
        let keys = jwks_of(&v["verification_key"]);
        // exp = 1300819380: valid with the clock pinned before it, expired with the real clock.
        let pinned = 1_300_819_380 - 3_600;
        suite.expect(id, &verify_token(compact, &no_rules(), &keys, pinned), "Ok");
        suite.expect(
            &format!("{id} now"),
            &verify_token(compact, &no_rules(), &keys, now()),
            "JwtExpired",
        );
        suite.expect(
            &format!("{id} tampered"),
            &verify_token(&tampered(compact), &no_rules(), &keys, pinned),
            "JwtVerificationFail",
        );
        let claims = &v["expected_claims"];
        let jwt = jws::parse(compact).unwrap();
        suite.expect(
            &format!("{id} claims"),
            &Value::Object(jwt.payload).to_string(),
            &claims.to_string(),
        );
    }
    let crit = doc["appendix_E_negative_crit"]["compact"].as_str().unwrap();
    suite.expect(
        "E (crit)",
        &format!("{:?}", jws::parse(crit).err()),
        "Some(JwtHeaderBadCrit)",
    );
    assert!(doc["json_serialization"].is_object());
    suite.skip("A.6/A.7");
    suite.finish(13);
}

#[test]
fn rfc8037_ed25519() {
    let doc = load("rfc8037/vectors.json");
    let mut suite = Suite::new("rfc8037", &[]);
    let compact = doc["compact"].as_str().unwrap();
    let keys = jwks_of(&doc["public_jwk"]);
    // The payload is plain text: a valid JWS but not a JWT.
    suite.expect(
        "A.4 as JWT",
        &format!("{:?}", jws::parse(compact).err()),
        "Some(JwtPayloadParseErrorBadJson)",
    );
    suite.expect("A.4 signature", &jws_signature(compact, &keys), "Ok");
    suite.expect(
        "A.4 tampered",
        &jws_signature(&tampered(compact), &keys),
        "JwtVerificationFail",
    );
    suite.finish(3);
}

#[test]
fn rfc7520_cookbook_jws() {
    let mut suite = Suite::new(
        "rfc7520-cookbook",
        &[
            ("4.3 ES512", "ES512 (P-521) is not supported"),
            (
                "4.7",
                "no protected header: alg is only in the unprotected header (JSON serialization)",
            ),
            (
                "4.8 sig1",
                "ES512 (P-521), and alg only in the unprotected header (JSON serialization)",
            ),
        ],
    );
    let files = [
        ("4.1", "rfc7520-cookbook/jws/4_1.rsa_v15_signature.json"),
        ("4.2", "rfc7520-cookbook/jws/4_2.rsa-pss_signature.json"),
        ("4.3", "rfc7520-cookbook/jws/4_3.ecdsa_signature.json"),
        (
            "4.4",
            "rfc7520-cookbook/jws/4_4.hmac-sha2_integrity_protection.json",
        ),
        (
            "4.5",
            "rfc7520-cookbook/jws/4_5.signature_with_detached_content.json",
        ),
        (
            "4.6",
            "rfc7520-cookbook/jws/4_6.protecting_specific_header_fields.json",
        ),
        (
            "4.7",
            "rfc7520-cookbook/jws/4_7.protecting_content_only.json",
        ),
        ("4.8", "rfc7520-cookbook/jws/4_8.multiple_signatures.json"),
        ("curve25519", "rfc7520-cookbook/curve25519/jws.json"),
    ];
    for (id, file) in files {
        let doc = load(file);
        let (keys, signings) = match (&doc["input"]["key"], &doc["signing"]) {
            (Value::Array(k), Value::Array(s)) => (k.clone(), s.clone()),
            (k, s) => (vec![k.clone()], vec![s.clone()]),
        };
        for (i, (key, signing)) in keys.iter().zip(&signings).enumerate() {
            let sid = if signings.len() > 1 {
                format!("{id} sig{i}")
            } else {
                id.to_owned()
            };
            let Some(alg) = signing["protected"]["alg"].as_str() else {
                assert!(
                    suite.skip(&sid),
                    "{sid}: no protected alg and no skip entry"
                );
                continue;
            };
            if Alg::from_name(alg).is_none() && suite.skip(&format!("{sid} {alg}")) {
                continue;
            }
            let alg = Alg::from_name(alg).expect("supported alg");
            let keys = jwks_of(key);
            let input = signing["sig-input"].as_str().unwrap();
            let sig = decode_base64url(signing["sig"].as_str().unwrap()).unwrap();
            let kid = signing["protected"]["kid"].as_str();
            let got = verify::check_signature_parts(alg, kid, input.as_bytes(), &sig, &keys);
            suite.expect(&sid, &name(got), "Ok");
            let mut bad = sig.clone();
            bad[0] ^= 0x80;
            let got = verify::check_signature_parts(alg, kid, input.as_bytes(), &bad, &keys);
            suite.expect(
                &format!("{sid} tampered"),
                &name(got),
                "JwtVerificationFail",
            );
            if let Some(compact) = doc["output"]["compact"].as_str() {
                // Text payloads: valid JWS, not JWTs. 4.5's detached payload leaves an empty segment.
                let want = if id == "4.5" {
                    "JwtBadFormat"
                } else {
                    "JwtPayloadParseErrorBadJson"
                };
                let got = jws::parse(compact)
                    .err()
                    .map(|s| format!("{s:?}"))
                    .unwrap_or_default();
                suite.expect(&format!("{sid} compact as JWT"), &got, want);
            }
        }
    }
    suite.finish(20);
}

#[test]
fn envoy_jwt_authn_tokens() {
    let doc = load("envoy_jwt_authn/vectors.json");
    let mut suite = Suite::new(
        "envoy_jwt_authn",
        &[
            ("no Authorization header", "token extraction (JwtMissed) is the extract module's, tested there"),
            ("Authorization: Bearer-invalid", "token extraction (JwtMissed) is the extract module's, tested there"),
            (
                "Authorization: Bearer <GoodToken> and :path /foo?access_token=<NonExistKidToken>",
                "several tokens per request is the requirement module's, tested there",
            ),
            (
                "GoodToken with local_jwks inline_string \"invalid\"",
                "apiguard refuses an unparsable local JWKS at configuration time (JwksParseError), not per request",
            ),
        ],
    );
    let summary = &doc["provider_summary"];
    let rules = ClaimRules {
        issuer: Some(summary["issuer"].as_str().unwrap().to_owned()),
        audiences: summary["audiences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect(),
        // Envoy's default: require_expiration false, clock_skew_seconds 60.
        require_expiration: false,
        clock_skew_secs: 60,
        max_lifetime_secs: None,
    };
    // A fixed clock: after the expired token's exp (2008) and before the good tokens' exp 2001001001 (2033).
    let at = 1_700_000_000;
    // The JWKS exactly as in Envoy's source, trailing comma included (protobuf's parser accepts it).
    let raw = doc["jwks"]["PublicKey_raw_as_in_source"].as_str().unwrap();
    let public = KeySet::from_jwks(raw.as_bytes()).expect("Envoy PublicKey parses");
    let strict = KeySet::from_jwks(doc["jwks"]["PublicKey"].to_string().as_bytes()).unwrap();
    assert_eq!((public.len(), strict.len()), (3, 3));
    let es256 = match &doc["jwks"]["ES256PublicKey"] {
        Value::String(s) => KeySet::from_jwks(s.as_bytes()).unwrap(),
        other => KeySet::from_jwks(other.to_string().as_bytes()).unwrap(),
    };
    for v in doc["vectors"].as_array().unwrap() {
        let id = v["name"].as_str().unwrap();
        let keys = match v["jwks"].as_str().unwrap() {
            "PublicKey" => &public,
            "ES256PublicKey" => &es256,
            other => panic!("unknown jwks {other}"),
        };
        let want = v["expected_envoy_status"].as_str().unwrap();
        suite.expect(
            id,
            &verify_token(v["token"].as_str().unwrap(), &rules, keys, at),
            want,
        );
    }
    let good = doc["vectors"][0]["token"].as_str().unwrap();
    let forwarded = jws::parse(good).unwrap().payload_b64.to_owned();
    suite.expect(
        "GoodToken forwarded payload",
        &forwarded,
        doc["expected_forwarded_payload"].as_str().unwrap(),
    );
    for case in summary["other_cases"].as_array().unwrap() {
        let request = case["request"].as_str().unwrap();
        if suite.skip(request) {
            continue;
        }
        let want = case["expected"].as_str().unwrap();
        let got = match request {
            "Authorization: Bearer invalidToken" => {
                verify_token("invalidToken", &rules, &public, at)
            }
            "GoodToken with JWKS text parsed as PEM" => KeySet::from_pem(raw)
                .err()
                .map(|e| e.status.to_owned())
                .unwrap_or_default(),
            other => panic!("other case without handling or skip: {other}"),
        };
        suite.expect(request, &got, want);
    }
    suite.finish(12);
}

#[test]
fn jwt_verify_lib_parse_vectors() {
    let doc = load("jwt_verify_lib/parse_vectors.json");
    let mut suite = Suite::new("jwt_verify_lib parse", &[]);
    for v in doc.as_array().unwrap() {
        let id = v["test"].as_str().unwrap();
        let token = match v["token"].as_str() {
            Some(t) => t.to_owned(),
            // TestTooLargeJwt builds its token in code: std::string jwt_str(10240, 'c').
            None => "c".repeat(10240),
        };
        let got = match jws::parse(&token) {
            Ok(_) => "Ok".to_owned(),
            Err(s) => format!("{s:?}"),
        };
        suite.expect(id, &got, v["expected_parse"].as_str().unwrap());
    }
    suite.finish(33);
}

/// jwt_verify_lib's `PubkeyNoAlg` / `PubkeyNoKid` tests mutate their class's key set before verifying.
fn mutated_key_set(all: &[Value], test: &str, key_name: &str) -> String {
    let class = test.split('.').next().unwrap();
    let base = all
        .iter()
        .find(|v| {
            v["test"].as_str().unwrap().starts_with(class)
                && v["key"].is_string()
                && v["key_type"] == "JWKS"
        })
        .unwrap_or_else(|| panic!("{test}: no base key set in its class"));
    // The key sets carry protobuf-tolerated trailing commas.
    let text = apiguard::jwt::keys::strip_trailing_commas(base["key"].as_str().unwrap());
    let mut set: Value = serde_json::from_str(&text).unwrap();
    let member = if key_name.ends_with("no_alg") {
        "alg"
    } else {
        "kid"
    };
    for key in set["keys"].as_array_mut().unwrap() {
        key.as_object_mut().unwrap().remove(member);
    }
    set.to_string()
}

#[test]
fn jwt_verify_lib_verify_vectors() {
    let doc = load("jwt_verify_lib/verify_vectors.json");
    let all = doc.as_array().unwrap();
    let mut suite = Suite::new(
        "jwt_verify_lib verify",
        &[
            (
                "VerifyJwkECTest.KidES512OK",
                "ES512 (P-521) is not supported",
            ),
            (
                "VerifyPKCSTestES512.OKPem",
                "ES512 (P-521) is not supported",
            ),
        ],
    );
    for v in all {
        let id = v["test"].as_str().unwrap();
        if suite.skip(id) {
            continue;
        }
        let token = v["token"].as_str().unwrap();
        let parsed = match jws::parse(token) {
            Ok(_) => "Ok".to_owned(),
            Err(s) => format!("{s:?}"),
        };
        suite.expect(
            &format!("{id} parse"),
            &parsed,
            v["expected_parse"].as_str().unwrap(),
        );
        let mut rules = no_rules();
        let keys = match (v["key_type"].as_str(), v["key"].as_str()) {
            (None, _) => {
                // VerifyAudTest.MissingAudience: no key; the audience check fails before the signature.
                rules.audiences = vec!["example_service".into()];
                KeySet::default()
            }
            (Some("PEM"), Some(pem)) => {
                let mut keys = KeySet::from_pem(pem).unwrap();
                if id.contains("IncorrectAlgSpecified") {
                    // The test sets the PEM key's alg to one the token does not use.
                    keys.pin_alg(Alg::RS256);
                }
                keys
            }
            (Some("JWKS"), Some(jwks)) => KeySet::from_jwks(jwks.as_bytes()).unwrap(),
            (Some("JWKS"), None) => {
                let set = mutated_key_set(all, id, v["key_name"].as_str().unwrap());
                KeySet::from_jwks(set.as_bytes()).unwrap()
            }
            other => panic!("{id}: unexpected key {other:?}"),
        };
        let at = v["verify_now"].as_u64().unwrap_or_else(now);
        let got = verify_token(token, &rules, &keys, at);
        suite.expect(id, &got, v["expected_verify"].as_str().unwrap());
    }
    suite.finish(90);
}

#[test]
fn jwt_verify_lib_jwks_parse_vectors() {
    let doc = load("jwt_verify_lib/jwks_parse_vectors.json");
    let mut suite = Suite::new(
        "jwt_verify_lib jwks",
        &[
            (
                "JwksParseTest.JwksECMatchAlgES512CrvP521",
                "P-521 (ES512) keys are not supported",
            ),
            (
                "JwksParseTest.JwkECMissingAlg",
                "P-521 (ES512) keys are not supported",
            ),
            (
                "JwksParseTest.JwkECMissingCrv",
                "P-521 (ES512) keys are not supported",
            ),
        ],
    );
    for v in doc.as_array().unwrap() {
        let id = v["test"].as_str().unwrap();
        if suite.skip(id) {
            continue;
        }
        let text = v["key_set"].as_str().unwrap();
        let result = match v["key_type"].as_str().unwrap() {
            "PEM" => KeySet::from_pem(text),
            _ => KeySet::from_jwks(text.as_bytes()),
        };
        let got = match &result {
            Ok(_) => "Ok",
            Err(e) => e.status,
        };
        suite.expect(id, got, v["expected_status"].as_str().unwrap());
    }
    suite.finish(60);
}
