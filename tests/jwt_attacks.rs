//! Hostile tokens against the JWT core: every one must be refused with a sensible status, none may panic.
//!
//! Keys are the fixtures in `tests/fixtures/keys/` (see its README); attacker keys are generated at test time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

use apiguard::jwt::jws;
use apiguard::jwt::keys::KeySet;
use apiguard::jwt::verify::{self, ClaimRules};
use apiguard::jwt::Status;
use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::alg::{Ed25519, Es256, Rsa};
use jwt_compact::{Algorithm, AlgorithmSignature};
use serde_json::{json, Value};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys/");
const NOW: u64 = 1_700_000_000;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{KEYS}{name}")).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

fn public_keys() -> KeySet {
    KeySet::from_jwks(fixture("jwks.json").as_bytes()).unwrap()
}

fn rules() -> ClaimRules {
    ClaimRules {
        issuer: Some("https://issuer.example".into()),
        audiences: vec!["api".into()],
        ..ClaimRules::default()
    }
}

fn good_claims() -> Value {
    json!({"iss": "https://issuer.example", "aud": "api", "sub": "alice", "exp": NOW + 600, "iat": NOW})
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn rsa_private() -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    rsa::RsaPrivateKey::from_pkcs8_pem(&fixture("rsa2048.pem")).unwrap()
}

fn p256_private() -> p256::ecdsa::SigningKey {
    use p256::pkcs8::DecodePrivateKey;
    p256::ecdsa::SigningKey::from_pkcs8_pem(&fixture("p256.pem")).unwrap()
}

fn p384_private() -> p384::ecdsa::SigningKey {
    use p384::pkcs8::DecodePrivateKey;
    p384::ecdsa::SigningKey::from_pkcs8_pem(&fixture("p384.pem")).unwrap()
}

fn ed25519_private() -> ed25519_compact::SecretKey {
    // PKCS#8 Ed25519: the 32-byte seed is the DER's last 32 bytes.
    let body: String = fixture("ed25519.pem")
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64ct::Base64::decode_vec(&body).unwrap();
    let seed = ed25519_compact::Seed::from_slice(&der[der.len() - 32..]).unwrap();
    ed25519_compact::KeyPair::from_seed(seed).sk
}

fn hmac(secret: &[u8], input: &str) -> Vec<u8> {
    let key = jwt_compact::alg::Hs256Key::new(secret);
    jwt_compact::alg::Hs256
        .sign(&key, input.as_bytes())
        .as_bytes()
        .to_vec()
}

/// A token signed with the fixture key for `alg` (`kid` set to the fixture kid).
fn signed(alg: &str, claims: &Value) -> String {
    let kid = match alg {
        "RS256" | "PS256" => "rsa1",
        "ES256" => "ec256",
        "ES384" => "ec384",
        "EdDSA" => "ed1",
        "HS256" => "hs1",
        other => panic!("no fixture for {other}"),
    };
    signed_with_header(&json!({"alg": alg, "kid": kid, "typ": "JWT"}), claims)
}

fn signed_with_header(header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let sig = match header["alg"].as_str().unwrap() {
        "RS256" => Rsa::rs256()
            .sign(&rsa_private(), input.as_bytes())
            .as_bytes()
            .to_vec(),
        "PS256" => Rsa::ps256()
            .sign(&rsa_private(), input.as_bytes())
            .as_bytes()
            .to_vec(),
        "ES256" => Es256
            .sign(&p256_private(), input.as_bytes())
            .as_bytes()
            .to_vec(),
        "ES384" => {
            use p384::ecdsa::signature::Signer;
            let sig: p384::ecdsa::Signature = p384_private().sign(input.as_bytes());
            sig.to_bytes().to_vec()
        }
        "EdDSA" => Ed25519
            .sign(&ed25519_private(), input.as_bytes())
            .as_bytes()
            .to_vec(),
        "HS256" => hmac(&hs_secret(), &input),
        other => panic!("cannot sign {other}"),
    };
    format!("{input}.{}", b64(&sig))
}

fn hs_secret() -> Vec<u8> {
    let jwks: Value = serde_json::from_str(&fixture("hs.jwks.json")).unwrap();
    jws::decode_base64url(jwks["keys"][0]["k"].as_str().unwrap()).unwrap()
}

fn all_keys() -> KeySet {
    // Public keys and the HMAC secret together, as a provider with both would have them.
    let mut public: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    let hs: Value = serde_json::from_str(&fixture("hs.jwks.json")).unwrap();
    public["keys"]
        .as_array_mut()
        .unwrap()
        .push(hs["keys"][0].clone());
    KeySet::from_jwks(public.to_string().as_bytes()).unwrap()
}

fn outcome(token: &str, keys: &KeySet) -> Result<(), Status> {
    let jwt = jws::parse(token)?;
    verify::verify(&jwt, &rules(), keys, NOW)
}

#[test]
fn the_fixtures_verify_so_that_refusals_below_mean_something() {
    let keys = all_keys();
    assert_eq!(keys.len(), 5);
    for alg in ["RS256", "ES256", "ES384", "EdDSA", "HS256"] {
        assert_eq!(
            outcome(&signed(alg, &good_claims()), &keys),
            Ok(()),
            "{alg}"
        );
    }
    // rsa1 declares alg RS256: the same key never verifies PS256 from the JWKS, but does from the PEM (no alg).
    let ps256 = signed("PS256", &good_claims());
    assert_eq!(outcome(&ps256, &keys), Err(Status::JwksKidAlgMismatch));
    let pem = KeySet::from_pem(&fixture("rsa2048.pub.pem")).unwrap();
    assert_eq!(outcome(&ps256, &pem), Ok(()));
    // The PEM forms of the public keys verify too.
    for (alg, pem) in [
        ("RS256", "rsa2048.pub.pem"),
        ("ES256", "p256.pub.pem"),
        ("ES384", "p384.pub.pem"),
        ("EdDSA", "ed25519.pub.pem"),
    ] {
        let keys = KeySet::from_pem(&fixture(pem)).unwrap();
        assert_eq!(
            outcome(&signed(alg, &good_claims()), &keys),
            Ok(()),
            "{alg} {pem}"
        );
    }
}

#[test]
fn alg_none_in_every_spelling_is_refused_with_or_without_a_signature() {
    let keys = all_keys();
    for alg in ["none", "None", "NONE", "nOnE", "NoNe"] {
        let input = signing_input(&json!({"alg": alg, "typ": "JWT"}), &good_claims());
        for token in [format!("{input}."), format!("{input}.c2ln"), input.clone()] {
            let got = outcome(&token, &keys);
            assert!(
                matches!(
                    got,
                    Err(Status::JwtHeaderNotImplementedAlg) | Err(Status::JwtBadFormat)
                ),
                "{alg} {token}: {got:?}"
            );
        }
        // Even a token "signed" with the HMAC of an empty key is refused for its algorithm.
        let forged = format!("{input}.{}", b64(&hmac(b"", &input)));
        assert_eq!(
            outcome(&forged, &keys),
            Err(Status::JwtHeaderNotImplementedAlg),
            "{alg}"
        );
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let jwk_text = fixture("rsa2048.pub.jwk.json");
    let pem_text = fixture("rsa2048.pub.pem");
    let body: String = pem_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64ct::Base64::decode_vec(&body).unwrap();
    let jwk: Value = serde_json::from_str(&jwk_text).unwrap();
    let n = jws::decode_base64url(jwk["n"].as_str().unwrap()).unwrap();
    let secrets: Vec<Vec<u8>> = vec![
        jwk_text.clone().into_bytes(),
        jwk_text.trim().as_bytes().to_vec(),
        pem_text.clone().into_bytes(),
        pem_text.trim().as_bytes().to_vec(),
        der,
        n,
    ];
    let key_sets = [
        ("jwks", public_keys()),
        (
            "rsa jwk",
            KeySet::from_jwks(format!("{{\"keys\":[{jwk_text}]}}").as_bytes()).unwrap(),
        ),
        ("pem", KeySet::from_pem(&pem_text).unwrap()),
    ];
    for (i, secret) in secrets.iter().enumerate() {
        for kid in [Some("rsa1"), None] {
            let header = match kid {
                Some(kid) => json!({"alg": "HS256", "kid": kid}),
                None => json!({"alg": "HS256"}),
            };
            let input = signing_input(&header, &good_claims());
            let token = format!("{input}.{}", b64(&hmac(secret, &input)));
            for (name, keys) in &key_sets {
                assert_eq!(
                    outcome(&token, keys),
                    Err(Status::JwksKidAlgMismatch),
                    "secret #{i} kid {kid:?} against {name}"
                );
            }
        }
    }
}

#[test]
fn keys_carried_in_the_token_header_are_never_trusted() {
    let keys = all_keys();
    let attacker = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let point = attacker.verifying_key().to_encoded_point(false);
    let attacker_jwk = json!({
        "kty": "EC", "crv": "P-256",
        "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()),
    });
    let headers = [
        json!({"alg": "ES256", "jwk": attacker_jwk}),
        json!({"alg": "ES256", "kid": "ec256", "jwk": attacker_jwk}),
        json!({"alg": "ES256", "kid": "ec256", "jku": "https://attacker.example/jwks.json"}),
        json!({"alg": "ES256", "kid": "ec256", "x5u": "https://attacker.example/cert.pem"}),
        json!({"alg": "ES256", "kid": "ec256", "x5c": ["MIIBattacker"]}),
        json!({"alg": "ES256", "jku": "https://attacker.example/jwks.json", "kid": "attacker"}),
    ];
    for header in headers {
        let input = signing_input(&header, &good_claims());
        let sig = Es256.sign(&attacker, input.as_bytes()).as_bytes().to_vec();
        let token = format!("{input}.{}", b64(&sig));
        let got = outcome(&token, &keys);
        let want = if header["kid"] == "attacker" {
            Status::JwksKidAlgMismatch
        } else {
            Status::JwtVerificationFail
        };
        assert_eq!(got, Err(want), "{header}");
    }
    // An HMAC key in the header: the token is checked against configured keys only.
    let header = json!({"alg": "HS256", "jwk": {"kty": "oct", "k": b64(b"attacker")}});
    let input = signing_input(&header, &good_claims());
    let token = format!("{input}.{}", b64(&hmac(b"attacker", &input)));
    assert_eq!(outcome(&token, &keys), Err(Status::JwtVerificationFail));
    assert_eq!(
        outcome(&token, &public_keys()),
        Err(Status::JwksKidAlgMismatch)
    );
}

#[test]
fn injected_kids_fail_cleanly() {
    let keys = all_keys();
    let long = "k".repeat(100_000);
    let kids = [
        "../../../../etc/passwd",
        "/dev/null",
        "' OR '1'='1",
        "rsa1' --",
        "rsa1\u{0}",
        "rsa1 ",
        "RSA1",
        "unknown",
        "%2e%2e%2f",
        "${jndi:ldap://x}",
        long.as_str(),
    ];
    for kid in kids {
        let token = signed_with_header(&json!({"alg": "RS256", "kid": kid}), &good_claims());
        assert_eq!(
            outcome(&token, &keys),
            Err(Status::JwksKidAlgMismatch),
            "{:.40}",
            kid
        );
    }
    // kid of another key type: no key of that kid fits the algorithm.
    let token = signed_with_header(&json!({"alg": "RS256", "kid": "ec256"}), &good_claims());
    assert_eq!(outcome(&token, &keys), Err(Status::JwksKidAlgMismatch));
    // An empty kid is no kid: every RS256 key is tried, and the right one verifies.
    let token = signed_with_header(&json!({"alg": "RS256", "kid": ""}), &good_claims());
    assert_eq!(outcome(&token, &keys), Ok(()));
    // A kid that is not a string.
    for kid in [
        json!(1),
        json!(null),
        json!(["rsa1"]),
        json!({"kid": "rsa1"}),
    ] {
        let token = signed_with_header(&json!({"alg": "RS256", "kid": kid}), &good_claims());
        assert_eq!(
            outcome(&token, &keys),
            Err(Status::JwtHeaderBadKid),
            "{kid}"
        );
    }
}

fn with_signature(token: &str, sig: &[u8]) -> String {
    let (input, _) = token.rsplit_once('.').unwrap();
    format!("{input}.{}", b64(sig))
}

#[test]
fn every_truncation_and_every_flipped_byte_of_a_signature_fails() {
    let keys = all_keys();
    for alg in ["RS256", "ES256", "ES384", "EdDSA", "HS256"] {
        let token = signed(alg, &good_claims());
        let sig = jws::decode_base64url(token.rsplit_once('.').unwrap().1).unwrap();
        for len in 0..sig.len() {
            let got = outcome(&with_signature(&token, &sig[..len]), &keys);
            let want = if len == 0 {
                Status::JwtBadFormat
            } else {
                Status::JwtVerificationFail
            };
            assert_eq!(got, Err(want), "{alg} truncated to {len}");
        }
        let mut longer = sig.clone();
        longer.push(0);
        assert_eq!(
            outcome(&with_signature(&token, &longer), &keys),
            Err(Status::JwtVerificationFail)
        );
        for i in 0..sig.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = sig.clone();
                bad[i] ^= bit;
                let got = outcome(&with_signature(&token, &bad), &keys);
                assert_eq!(
                    got,
                    Err(Status::JwtVerificationFail),
                    "{alg} byte {i} ^ {bit:#x}"
                );
            }
        }
    }
}

#[test]
fn a_flipped_byte_in_the_signed_header_or_payload_fails() {
    let keys = all_keys();
    let token = signed("ES256", &good_claims());
    let (input, sig) = token.rsplit_once('.').unwrap();
    let (header, payload) = input.split_once('.').unwrap();
    let payload_bytes = jws::decode_base64url(payload).unwrap();
    for i in 0..payload_bytes.len() {
        let mut bad = payload_bytes.clone();
        bad[i] ^= 0x01;
        let got = outcome(&format!("{header}.{}.{sig}", b64(&bad)), &keys);
        assert!(got.is_err(), "payload byte {i}: {got:?}");
    }
    // Re-encoding the same claims differently changes the signed bytes.
    let respaced = b64(format!(" {}", good_claims()).as_bytes());
    assert_eq!(
        outcome(&format!("{header}.{respaced}.{sig}"), &keys),
        Err(Status::JwtVerificationFail)
    );
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused_before_the_signature() {
    let keys = all_keys();
    let mut claims = good_claims();
    claims["exp"] = json!(NOW - 61);
    assert_eq!(
        outcome(&signed("RS256", &claims), &keys),
        Err(Status::JwtExpired)
    );
    claims["exp"] = json!(NOW - 60);
    assert_eq!(
        outcome(&signed("RS256", &claims), &keys),
        Ok(()),
        "within skew"
    );
    let mut claims = good_claims();
    claims["nbf"] = json!(NOW + 61);
    assert_eq!(
        outcome(&signed("RS256", &claims), &keys),
        Err(Status::JwtNotYetValid)
    );
    // Claims are checked first: an expired token with a bad signature reports the expiry.
    let mut claims = good_claims();
    claims["exp"] = json!(NOW - 3600);
    let token = with_signature(&signed("ES256", &claims), &[0u8; 64]);
    assert_eq!(outcome(&token, &keys), Err(Status::JwtExpired));
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        outcome(&signed("ES256", &claims), &keys),
        Err(Status::JwtMissingExpiration)
    );
}

#[test]
fn huge_tokens_are_refused_without_trouble() {
    let keys = all_keys();
    let mib = 1 << 20;
    let started = std::time::Instant::now();
    let mut claims = good_claims();
    claims["blob"] = json!("x".repeat(mib));
    let big = signed("HS256", &claims);
    assert!(big.len() > mib);
    assert_eq!(
        outcome(&big, &keys),
        Ok(()),
        "a large but valid token is still just a token"
    );
    let forged = with_signature(&big, &[0u8; 32]);
    assert_eq!(outcome(&forged, &keys), Err(Status::JwtVerificationFail));
    let cases = [
        "a".repeat(mib),
        ".".repeat(mib),
        format!(
            "{}.{}.{}",
            "a".repeat(mib),
            "b".repeat(mib),
            "c".repeat(mib)
        ),
        format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", "e".repeat(mib + 1)),
        format!(
            "{}.e30.c2ln",
            b64(format!("{{\"alg\":\"HS256\",\"pad\":\"{}\"}}", "p".repeat(mib)).as_bytes())
        ),
        format!(
            "{}.e30.c2ln",
            b64(format!("{}{}", "[".repeat(mib / 2), "]".repeat(mib / 2)).as_bytes())
        ),
        format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.c2ln",
            b64(format!("{}1{}", "{\"a\":".repeat(mib / 8), "}".repeat(mib / 8)).as_bytes())
        ),
    ];
    for (i, token) in cases.iter().enumerate() {
        assert!(outcome(token, &keys).is_err(), "case {i}");
    }
    assert!(
        started.elapsed().as_secs() < 30,
        "huge tokens took {:?}",
        started.elapsed()
    );
}

#[test]
fn malformed_segments_get_the_status_of_the_segment() {
    let keys = all_keys();
    let good = signed("HS256", &good_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let enc = |text: &str| b64(text.as_bytes());
    let cases: Vec<(String, Status)> = vec![
        // Segment counts and empty segments.
        (format!("{h}.{p}"), Status::JwtBadFormat),
        (format!("{h}.{p}.{s}.{s}"), Status::JwtBadFormat),
        (format!("{h}.{p}.{s}.{s}.{s}"), Status::JwtBadFormat),
        (format!(".{p}.{s}"), Status::JwtBadFormat),
        (format!("{h}..{s}"), Status::JwtBadFormat),
        (format!("{h}.{p}."), Status::JwtBadFormat),
        ("..".to_owned(), Status::JwtBadFormat),
        (String::new(), Status::JwtBadFormat),
        // Bad base64 in each segment: standard alphabet, bad length, stray characters, bad padding.
        (
            format!("{h}+.{p}.{s}"),
            Status::JwtHeaderParseErrorBadBase64,
        ),
        (
            format!("{}/.{p}.{s}", &h[..h.len() - 1]),
            Status::JwtHeaderParseErrorBadBase64,
        ),
        (
            format!("{h}A.{p}.{s}"),
            Status::JwtHeaderParseErrorBadBase64,
        ),
        (
            format!("{h}=.{p}.{s}"),
            Status::JwtHeaderParseErrorBadBase64,
        ),
        (
            format!("{h}.{p}*.{s}"),
            Status::JwtPayloadParseErrorBadBase64,
        ),
        (
            format!("{h}.{p} .{s}"),
            Status::JwtPayloadParseErrorBadBase64,
        ),
        (
            format!("{h}.{p}.{s}!"),
            Status::JwtSignatureParseErrorBadBase64,
        ),
        (
            format!("{h}.{p}.invalid-signature"),
            Status::JwtSignatureParseErrorBadBase64,
        ),
        // Bad JSON in header and payload.
        (
            format!("{}.{p}.{s}", enc("{\"alg\":\"HS256\"")),
            Status::JwtHeaderParseErrorBadJson,
        ),
        (
            format!("{}.{p}.{s}", enc("{'alg':'HS256'}")),
            Status::JwtHeaderParseErrorBadJson,
        ),
        (
            format!("{}.{p}.{s}", enc("\u{feff}{\"alg\":\"HS256\"}")),
            Status::JwtHeaderParseErrorBadJson,
        ),
        (
            format!("{}.{p}.{s}", b64(&[0xff, 0xfe, 0x7b, 0x7d])),
            Status::JwtHeaderParseErrorBadJson,
        ),
        (
            format!("{h}.{}.{s}", enc("{\"sub\":")),
            Status::JwtPayloadParseErrorBadJson,
        ),
        (
            format!("{h}.{}.{s}", enc("{\"sub\":\"a\",}")),
            Status::JwtPayloadParseErrorBadJson,
        ),
        // Header and payload that are JSON but not objects.
        (
            format!("{}.{p}.{s}", enc("[\"HS256\"]")),
            Status::JwtHeaderParseErrorBadJson,
        ),
        (
            format!("{}.{p}.{s}", enc("\"HS256\"")),
            Status::JwtHeaderParseErrorBadJson,
        ),
        (
            format!("{}.{p}.{s}", enc("null")),
            Status::JwtHeaderParseErrorBadJson,
        ),
        (
            format!("{h}.{}.{s}", enc("[]")),
            Status::JwtPayloadParseErrorBadJson,
        ),
        (
            format!("{h}.{}.{s}", enc("42")),
            Status::JwtPayloadParseErrorBadJson,
        ),
        (
            format!("{h}.{}.{s}", enc("\"claims\"")),
            Status::JwtPayloadParseErrorBadJson,
        ),
        // Duplicate member names.
        (
            format!("{}.{p}.{s}", enc("{\"alg\":\"HS256\",\"alg\":\"none\"}")),
            Status::JwtHeaderParseErrorBadJson,
        ),
        (
            format!(
                "{}.{p}.{s}",
                enc("{\"alg\":\"HS256\",\"kid\":\"hs1\",\"kid\":\"x\"}")
            ),
            Status::JwtHeaderParseErrorBadJson,
        ),
        (
            format!("{h}.{}.{s}", enc("{\"sub\":\"alice\",\"sub\":\"admin\"}")),
            Status::JwtPayloadParseErrorBadJson,
        ),
        (
            format!("{h}.{}.{s}", enc("{\"exp\":1,\"ex\\u0070\":99999999999}")),
            Status::JwtPayloadParseErrorBadJson,
        ),
        // Header members of the wrong type, crit.
        (format!("{}.{p}.{s}", enc("{}")), Status::JwtHeaderBadAlg),
        (
            format!("{}.{p}.{s}", enc("{\"alg\":256}")),
            Status::JwtHeaderBadAlg,
        ),
        (
            format!("{}.{p}.{s}", enc("{\"alg\":\"ES512\"}")),
            Status::JwtHeaderNotImplementedAlg,
        ),
        (
            format!(
                "{}.{p}.{s}",
                enc("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}")
            ),
            Status::JwtHeaderBadCrit,
        ),
        // Typed claims of the wrong type.
        (
            format!("{h}.{}.{s}", enc("{\"iss\":1}")),
            Status::JwtPayloadParseErrorIssNotString,
        ),
        (
            format!("{h}.{}.{s}", enc("{\"aud\":[\"a\",1]}")),
            Status::JwtPayloadParseErrorAudNotString,
        ),
        (
            format!("{h}.{}.{s}", enc("{\"exp\":\"2000000000\"}")),
            Status::JwtPayloadParseErrorExpNotInteger,
        ),
        (
            format!("{h}.{}.{s}", enc("{\"nbf\":-1}")),
            Status::JwtPayloadParseErrorNbfOutOfRange,
        ),
        (
            format!("{h}.{}.{s}", enc("{\"iat\":1e300}")),
            Status::JwtPayloadParseErrorIatOutOfRange,
        ),
    ];
    for (token, want) in cases {
        assert_eq!(outcome(&token, &keys), Err(want), "{token:.120}");
    }
}

#[test]
fn random_garbage_never_panics() {
    // A small deterministic generator: no extra dev-dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let keys = all_keys();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}\"";
    let good = signed("HS256", &good_claims());
    for _ in 0..5_000 {
        let len = (next() % 200) as usize;
        let token: String = (0..len)
            .map(|_| char::from(alphabet[(next() % alphabet.len() as u64) as usize]))
            .collect();
        assert!(outcome(&token, &keys).is_err() || token == good);
        // Mutate one character of a valid token.
        let mut bytes = good.clone().into_bytes();
        let at = (next() % bytes.len() as u64) as usize;
        let replacement = alphabet[(next() % alphabet.len() as u64) as usize];
        if bytes[at] == replacement {
            continue;
        }
        bytes[at] = replacement;
        let mutated = String::from_utf8(bytes).unwrap();
        assert!(outcome(&mutated, &keys).is_err(), "{mutated}");
    }
}
