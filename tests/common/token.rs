//! Signing test tokens with the fixture keys in `tests/fixtures/e2e/`, and the JWKS that verifies them.
//!
//! Tokens are assembled by hand (header and payload are plain JSON) so that a test can make any token it
//! needs, expired, without `exp`, with a foreign `iss`, a wrong `kid`, a tampered signature, with one
//! function. Shared by the e2e tests and by `examples/sign_token.rs` (the demo), which includes this file
//! with `#[path]`.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{json, Value};

/// Issuer and audience the e2e configurations and the demo trust.
pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "api.example";

/// The HS256 secret (kid `hs1`); tests only.
const HS_SECRET: &[u8] = b"apiguard-e2e-hs256-secret-not-for-production";

/// A signature algorithm and the fixture key (and `kid`) that signs with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Es256,
    Es384,
    EdDsa,
    Hs256,
}

impl Alg {
    pub const ALL: [Alg; 5] = [Alg::Rs256, Alg::Es256, Alg::Es384, Alg::EdDsa, Alg::Hs256];

    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
            Alg::Hs256 => "HS256",
        }
    }

    /// The `kid` of the fixture key for this algorithm.
    pub fn kid(self) -> &'static str {
        match self {
            Alg::Rs256 => "rsa1",
            Alg::Es256 => "ec256",
            Alg::Es384 => "ec384",
            Alg::EdDsa => "ed1",
            Alg::Hs256 => "hs1",
        }
    }

    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL
            .into_iter()
            .find(|alg| alg.name().eq_ignore_ascii_case(name))
    }
}

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Claims of a token the e2e providers accept: issuer and audience as configured, subject `alice`,
/// issued now, valid for ten minutes. Tests change single members with `claims["exp"] = ...`.
pub fn good_claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
    })
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/e2e")
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// The fixture private keys.
pub struct Keys {
    rsa: rsa::RsaPrivateKey,
    p256: p256::ecdsa::SigningKey,
    p384: p384::ecdsa::SigningKey,
    ed25519: ed25519_compact::KeyPair,
}

impl Keys {
    /// Loads `tests/fixtures/e2e/{rsa2048,p256,p384,ed25519}.pem` (PKCS#8, made with `openssl genpkey`).
    pub fn load() -> Keys {
        use p256::pkcs8::DecodePrivateKey;
        let read = |name: &str| {
            let path = fixture_dir().join(name);
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading fixture key {}: {e}", path.display()))
        };
        Keys {
            rsa: rsa::RsaPrivateKey::from_pkcs8_pem(&read("rsa2048.pem")).expect("rsa2048.pem"),
            p256: p256::ecdsa::SigningKey::from_pkcs8_pem(&read("p256.pem")).expect("p256.pem"),
            p384: p384::ecdsa::SigningKey::from_pkcs8_pem(&read("p384.pem")).expect("p384.pem"),
            ed25519: ed25519_compact::KeyPair::from_pem(&read("ed25519.pem")).expect("ed25519.pem"),
        }
    }

    /// The public JWKS for the asymmetric keys (kids `rsa1`, `ec256`, `ec384`, `ed1`).
    pub fn jwks(&self) -> Value {
        use rsa::traits::PublicKeyParts;
        let p256 = self.p256.verifying_key().to_encoded_point(false);
        let p384 = self.p384.verifying_key().to_encoded_point(false);
        let coord = |c: Option<&[u8]>| b64(c.expect("uncompressed point"));
        json!({"keys": [
            {"kty": "RSA", "kid": "rsa1", "alg": "RS256", "use": "sig",
             "n": b64(&self.rsa.n().to_bytes_be()), "e": b64(&self.rsa.e().to_bytes_be())},
            {"kty": "EC", "kid": "ec256", "alg": "ES256", "crv": "P-256",
             "x": coord(p256.x().map(|x| &x[..])), "y": coord(p256.y().map(|y| &y[..]))},
            {"kty": "EC", "kid": "ec384", "alg": "ES384", "crv": "P-384",
             "x": coord(p384.x().map(|x| &x[..])), "y": coord(p384.y().map(|y| &y[..]))},
            {"kty": "OKP", "kid": "ed1", "alg": "EdDSA", "crv": "Ed25519",
             "x": b64(self.ed25519.pk.as_ref())},
        ]})
    }

    /// The JWKS with the HS256 secret (kid `hs1`).
    pub fn hs_jwks(&self) -> Value {
        json!({"keys": [{"kty": "oct", "kid": "hs1", "alg": "HS256", "k": b64(HS_SECRET)}]})
    }

    /// A compact JWS over `claims`, header `{"alg", "typ": "JWT", "kid"}` with the algorithm's fixture kid.
    pub fn sign(&self, alg: Alg, claims: &Value) -> String {
        let header = json!({"alg": alg.name(), "typ": "JWT", "kid": alg.kid()});
        self.sign_with_header(alg, &header, claims)
    }

    /// A compact JWS with the given header (which may lie about `alg` or `kid`), signed with `alg`'s key.
    pub fn sign_with_header(&self, alg: Alg, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.signature(alg, input.as_bytes());
        format!("{input}.{}", b64(&signature))
    }

    fn signature(&self, alg: Alg, message: &[u8]) -> Vec<u8> {
        use rsa::signature::{SignatureEncoding, Signer};
        match alg {
            Alg::Rs256 => {
                let key = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(self.rsa.clone());
                key.sign(message).to_vec()
            }
            Alg::Es256 => {
                let sig: p256::ecdsa::Signature = self.p256.sign(message);
                sig.to_bytes().to_vec()
            }
            Alg::Es384 => {
                let sig: p384::ecdsa::Signature = self.p384.sign(message);
                sig.to_bytes().to_vec()
            }
            Alg::EdDsa => self.ed25519.sk.sign(message, None).as_ref().to_vec(),
            Alg::Hs256 => hmac_sha256(HS_SECRET, message).to_vec(),
        }
    }
}

/// HMAC-SHA-256 (RFC 2104), written out so the tests need no extra crate.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The token with one bit of its signature flipped (still valid base64url of the same length).
pub fn tamper_signature(token: &str) -> String {
    let (input, signature) = token.rsplit_once('.').expect("three segments");
    let mut bytes = Base64UrlUnpadded::decode_vec(signature).expect("base64url signature");
    bytes[0] ^= 0x01;
    format!("{input}.{}", b64(&bytes))
}

/// The payload segment of a token, decoded (what Envoy puts in `forward_payload_header`, base64url).
pub fn payload_segment(token: &str) -> &str {
    token.split('.').nth(1).expect("three segments")
}
