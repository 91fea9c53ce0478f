//! Uncached signature verification, per algorithm: the cost of one `check_signature_parts` call (key
//! selection, hashing the signing input, the signature check), as the request path pays it on a cache miss.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-crypto cargo bench --bench verify            # native
//! CARGO_TARGET_DIR=/work/target-crypto cargo bench --bench verify --target wasm32-wasip1 --no-run
//! node scripts/... (any WASI runner; V8 through Node is close to Envoy's runtime)
//! ```
//! Prints, per algorithm, the median and the best of several rounds in µs per verification.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "benchmark: a bad fixture should fail loudly"
)]

use std::hint::black_box;
use std::time::Instant;

use apiguard::jwt::alg::Alg;
use apiguard::jwt::keys::KeySet;
use apiguard::jwt::verify::check_signature_parts;
use base64ct::{Base64UrlUnpadded, Encoding};
use p256::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;

const RSA_PEM: &str = include_str!("../tests/fixtures/e2e/rsa2048.pem");
const P256_PEM: &str = include_str!("../tests/fixtures/e2e/p256.pem");
const P384_PEM: &str = include_str!("../tests/fixtures/e2e/p384.pem");
const ED25519_PEM: &str = include_str!("../tests/fixtures/e2e/ed25519.pem");

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

struct Case {
    label: String,
    alg: Alg,
    keys: KeySet,
    input: String,
    signature: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let rsa = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PEM).expect("rsa2048.pem");
    let p256 = p256::ecdsa::SigningKey::from_pkcs8_pem(P256_PEM).expect("p256.pem");
    let p384 = p384::ecdsa::SigningKey::from_pkcs8_pem(P384_PEM).expect("p384.pem");
    let ed = ed25519_compact::KeyPair::from_pem(ED25519_PEM).expect("ed25519.pem");
    let p256_point = p256.verifying_key().to_encoded_point(false);
    let p384_point = p384.verifying_key().to_encoded_point(false);
    let jwk = |alg: &str| -> String {
        match alg {
            "RS256" | "PS256" => format!(
                r#"{{"kty":"RSA","n":"{}","e":"{}"}}"#,
                b64(&rsa.n().to_bytes_be()),
                b64(&rsa.e().to_bytes_be())
            ),
            "ES256" => format!(
                r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#,
                b64(p256_point.x().unwrap()),
                b64(p256_point.y().unwrap())
            ),
            "ES384" => format!(
                r#"{{"kty":"EC","crv":"P-384","x":"{}","y":"{}"}}"#,
                b64(p384_point.x().unwrap()),
                b64(p384_point.y().unwrap())
            ),
            "EdDSA" => format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
                b64(ed.pk.as_ref())
            ),
            _ => format!(
                r#"{{"kty":"oct","k":"{}"}}"#,
                b64(b"bench-secret-bench-secret-bench!")
            ),
        }
    };
    let mut rng = rand_core::OsRng;
    ["RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256"]
        .into_iter()
        .map(|name| {
            let alg = Alg::from_name(name).expect("alg");
            let header = format!(r#"{{"alg":"{name}","typ":"JWT","kid":"k1"}}"#);
            let claims = r#"{"iss":"https://issuer.example","sub":"user-1234567890","aud":"api.example","iat":1700000000,"exp":1900000000,"scope":"read write admin","email":"someone@example.com"}"#;
            let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
            let msg = input.as_bytes();
            let signature = match name {
                "RS256" => rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(rsa.clone())
                    .sign(msg)
                    .to_vec(),
                "PS256" => rsa::pss::BlindedSigningKey::<rsa::sha2::Sha256>::new(rsa.clone())
                    .sign_with_rng(&mut rng, msg)
                    .to_vec(),
                "ES256" => {
                    let sig: p256::ecdsa::Signature = p256.sign(msg);
                    sig.to_bytes().to_vec()
                }
                "ES384" => {
                    let sig: p384::ecdsa::Signature = p384.sign(msg);
                    sig.to_bytes().to_vec()
                }
                "EdDSA" => ed.sk.sign(msg, None).as_ref().to_vec(),
                _ => {
                    // HS256 through the key set itself is what is measured; sign with the sha2 HMAC by hand.
                    hmac_sha256(b"bench-secret-bench-secret-bench!", msg).to_vec()
                }
            };
            let keys = KeySet::from_jwks(format!(r#"{{"keys":[{}]}}"#, jwk(name)).as_bytes())
                .expect("jwks");
            Case {
                label: name.to_owned(),
                alg,
                keys,
                input,
                signature,
            }
        })
        .collect()
}

/// The same RSA checks through jwt-compact 0.8 and the `rsa` crate (the implementation before
/// `jwt::rsa_verify`), for comparison under the same machine load.
fn reference_rsa(cases: &[Case]) -> Vec<(String, Box<dyn Fn() -> bool + '_>)> {
    use jwt_compact::alg::{Rsa, RsaPublicKey, RsaSignature};
    use jwt_compact::{Algorithm, AlgorithmSignature};
    let rsa = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PEM).expect("rsa2048.pem");
    let public: &'static RsaPublicKey = Box::leak(Box::new(rsa.to_public_key()));
    cases
        .iter()
        .filter(|c| matches!(c.alg.name(), "RS256" | "PS256"))
        .map(|c| {
            let alg = if c.alg.name() == "RS256" {
                Rsa::rs256()
            } else {
                Rsa::ps256()
            };
            let check: Box<dyn Fn() -> bool> = Box::new(move || {
                let sig = RsaSignature::try_from_slice(black_box(&c.signature)).expect("sig");
                alg.verify_signature(&sig, public, black_box(c.input.as_bytes()))
            });
            (format!("{} (jwt-compact + rsa crate)", c.label), check)
        })
        .collect()
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let ih = Sha256::new()
        .chain_update(&inner)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer)
        .chain_update(ih)
        .finalize()
        .into()
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let filter = std::env::var("ALGS").unwrap_or_default();
    println!("| alg | µs per verification (median of {rounds} rounds) | best |");
    println!("|---|---:|---:|");
    let cases = cases();
    let mut checks: Vec<(String, Box<dyn Fn() -> bool + '_>)> = cases
        .iter()
        .map(|case| {
            let check: Box<dyn Fn() -> bool> = Box::new(move || {
                check_signature_parts(
                    black_box(case.alg),
                    None,
                    black_box(case.input.as_bytes()),
                    black_box(&case.signature),
                    &case.keys,
                )
                .is_ok()
            });
            (case.label.clone(), check)
        })
        .collect();
    if std::env::var_os("NO_REFERENCE").is_none() {
        checks.extend(reference_rsa(&cases));
    }
    for (label, check) in &checks {
        let name = label.split(' ').next().unwrap_or_default();
        if !filter.is_empty() && !filter.split(',').any(|a| a == name) {
            continue;
        }
        assert!(check(), "{label} verifies");
        // Size each round to ~0.3 s from a first timing.
        let start = Instant::now();
        check();
        let once = start.elapsed().as_secs_f64().max(1e-7);
        // ITERS fixes the count (for CPU-time measurements from outside on a loaded machine).
        let iterations = std::env::var("ITERS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(((0.3 / once) as usize).clamp(10, 1_000_000));
        let mut per_call: Vec<f64> = (0..rounds)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..iterations {
                    black_box(check());
                }
                start.elapsed().as_secs_f64() * 1e6 / iterations as f64
            })
            .collect();
        per_call.sort_by(f64::total_cmp);
        println!(
            "| {label} | {:.1} | {:.1} |",
            per_call[rounds / 2],
            per_call[0]
        );
    }
}
