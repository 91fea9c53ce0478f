//! JWKS and PEM documents parsed into verifying keys.
//!
//! Parsing follows google/jwt_verify_lib (the library behind Envoy's `jwt_authn`), so that a key document
//! Envoy accepts is accepted here and one it refuses is refused with the same `Jwks*` status:
//! - a JWKS is a JSON object; without a `keys` member it may be Google's X.509 form
//!   (`{"<kid>": "-----BEGIN CERTIFICATE-----...-----END CERTIFICATE-----\n"}`), otherwise `JwksNoKeys`;
//!   `keys` that is not an array is `JwksBadKeys`;
//! - members of `keys` that are not objects are skipped; a bad key is skipped too, and the set is refused
//!   only when no key is usable, with the status of the *first* bad key (`JwksNoValidKeys` if there was none);
//! - `kty` must be `RSA`, `EC`, `oct` or `OKP`; a declared `alg` must fit the `kty` (`RS*`/`PS*`, `ES*`,
//!   `HS256|384|512`, `EdDSA`); for `EC`, `alg` and `crv` must agree and a key with neither is P-256;
//! - `kid` and `alg` that are not strings are treated as absent, as jwt_verify_lib does;
//! - JSON is read as protobuf's parser reads it, which tolerates a trailing comma before `}` or `]`.
//!
//! Deliberate differences, each stricter:
//! - RSA moduli shorter than 2048 bits are refused (`JwksRsaParseError`). Every RSA key in the conformance
//!   vectors (RFC 7515, the JOSE cookbook, Envoy's and jwt_verify_lib's tests) is 2048 bits, so this floor costs
//!   no vector. Moduli longer than 4096 bits are refused too (as the `rsa` crate, used before `rsa_verify`,
//!   refused them). The public exponent must be 3 or 65537, as in jwt_verify_lib.
//! - P-521 (`ES512`) keys are not supported: such a JWK is skipped as `JwksECKeyAlgOrCrvUnsupported`, such a
//!   PEM key is `JwksPemNotImplementedKty`.
//! - An `oct` key with an empty secret is refused (`JwksOctBadBase64`).
//!
//! No error message ever contains key material: details name the member and the reason only.

use std::borrow::Cow;
use std::fmt;

use base64ct::{Base64, Encoding};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

use super::alg::{Alg, Family};
use super::ec_verify::{P256Key, P384Key};
use super::jws::decode_base64url_lenient as decode_base64url;
use super::rsa_verify::{self, Hash, Padding, RsaKey};
use crate::json_text;

/// An Ed25519 public key: the point decoded at parse time, or None for 32 bytes that are not a point
/// (accepted as a key, as before, but never verifying anything).
type Ed25519Key = Option<ed25519_dalek::VerifyingKey>;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// A parsed key set: every usable key of a JWKS document (or one PEM key).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// One verifying key with the JWK members that select it.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    alg: Option<String>,
    material: Material,
}

#[derive(Clone, PartialEq)]
enum Material {
    /// HMAC secret (`kty: oct`).
    Oct(Vec<u8>),
    Rsa(Box<RsaKey>),
    P256(Box<P256Key>),
    P384(Box<P384Key>),
    Ed25519(Box<Ed25519Key>),
}

impl Material {
    fn kty(&self) -> &'static str {
        match self {
            Material::Oct(_) => "oct",
            Material::Rsa(_) => "RSA",
            Material::P256(_) | Material::P384(_) => "EC",
            Material::Ed25519(_) => "OKP",
        }
    }

    fn family(&self) -> Family {
        match self {
            Material::Oct(_) => Family::Hmac,
            Material::Rsa(_) => Family::Rsa,
            Material::P256(_) | Material::P384(_) => Family::Ecdsa,
            Material::Ed25519(_) => Family::EdDsa,
        }
    }
}

impl fmt::Debug for Key {
    /// Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kty", &self.kty())
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Why a key document was refused, named as `jwt_verify_lib`'s `Jwks*` statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError {
    /// `jwt_verify_lib` status name, e.g. `JwksNoKeys`.
    pub status: &'static str,
    /// Human-readable reason; never contains key material.
    pub detail: String,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}

impl std::error::Error for JwksError {}

fn err(status: &'static str, detail: impl Into<String>) -> JwksError {
    JwksError {
        status,
        detail: detail.into(),
    }
}

impl KeySet {
    /// The same keys, in the same order, with the same `kid`s and `alg`s: installing `other` in place
    /// of `self` changes nothing any verification could observe.
    pub fn same_keys(&self, other: &KeySet) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.kid == b.kid && a.alg == b.alg && a.material == b.material)
    }

    /// Parses a JWKS document (`{"keys": [...]}`, or Google's `{"<kid>": "<X.509 PEM>"}` form).
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, JwksError> {
        let text =
            std::str::from_utf8(json).map_err(|_| err("JwksParseError", "JWKS is not UTF-8"))?;
        let text = strip_trailing_commas(text);
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| err("JwksParseError", format!("JWKS is not valid JSON: {e}")))?;
        let Value::Object(fields) = doc else {
            return Err(err("JwksParseError", "JWKS is not a JSON object"));
        };
        let Some(keys) = fields.get("keys") else {
            if is_x509_set(&fields) {
                return from_x509_set(&fields);
            }
            return Err(err("JwksNoKeys", "JWKS has no [keys] member"));
        };
        let Value::Array(keys) = keys else {
            return Err(err("JwksBadKeys", "[keys] is not an array"));
        };
        let mut set = KeySet::default();
        let mut first_error: Option<JwksError> = None;
        for (index, jwk) in keys.iter().enumerate() {
            let Value::Object(jwk) = jwk else { continue };
            match parse_jwk(jwk) {
                Ok(key) => set.keys.push(key),
                Err(mut e) => {
                    if first_error.is_none() {
                        e.detail = format!("keys[{index}]: {}", e.detail);
                        first_error = Some(e);
                    }
                }
            }
        }
        if set.keys.is_empty() {
            return Err(first_error
                .unwrap_or_else(|| err("JwksNoValidKeys", "JWKS has no valid public key")));
        }
        Ok(set)
    }

    /// Parses one PEM public key (`-----BEGIN PUBLIC KEY-----`, base64 DER SubjectPublicKeyInfo), with or
    /// without the BEGIN/END lines: RSA, EC P-256 / P-384 or Ed25519. The key has no `kid` and no `alg`.
    pub fn from_pem(text: &str) -> Result<KeySet, JwksError> {
        let body = pem_body(text, "PUBLIC KEY")
            .ok_or_else(|| err("JwksPemBadBase64", "PEM is not a PUBLIC KEY block"))?;
        let der = decode_base64_std(&body)
            .ok_or_else(|| err("JwksPemBadBase64", "PEM body is not valid base64"))?;
        let material = parse_spki(&der).map_err(|e| match e {
            SpkiError::Malformed => err("JwksPemBadBase64", "PEM is not a SubjectPublicKeyInfo"),
            SpkiError::Unsupported(what) => err("JwksPemNotImplementedKty", what),
            SpkiError::BadKey(what) => err("JwksPemBadBase64", what),
        })?;
        Ok(KeySet {
            keys: vec![Key {
                kid: None,
                alg: None,
                material,
            }],
        })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, in document order.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// The keys that may verify a token with this `kid` and `alg`, in document order, as jwt_verify_lib selects
    /// them: a token `kid` excludes keys with a *different* `kid` (keys without one stay candidates; an empty
    /// `kid` counts as none), a key's declared `alg` must equal the token's, and — stricter than jwt_verify_lib —
    /// the key's type must fit the algorithm's family (an `oct` secret only for `HS*`, an RSA key only for
    /// `RS*`/`PS*`, ...).
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Alg,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        let kid = kid.filter(|k| !k.is_empty());
        self.keys.iter().filter(move |key| key.selectable(kid, alg))
    }

    /// Pins every key to one algorithm, as if each JWK declared `"alg": alg`. Useful for a PEM key (which has
    /// no `alg`) so that, for example, an RSA key only ever verifies `RS256` and never `PS256`.
    pub fn pin_alg(&mut self, alg: Alg) {
        for key in &mut self.keys {
            key.alg = Some(alg.name().to_owned());
        }
    }
}

impl Key {
    /// `kid` as declared (None when absent, not a string, or empty).
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// `alg` as declared (None when absent or not a string).
    pub fn alg(&self) -> Option<&str> {
        self.alg.as_deref()
    }

    /// JWK key type: `oct`, `RSA`, `EC` or `OKP`.
    pub fn kty(&self) -> &'static str {
        self.material.kty()
    }

    fn selectable(&self, kid: Option<&str>, alg: Alg) -> bool {
        if let (Some(want), Some(have)) = (kid, self.kid.as_deref()) {
            if want != have {
                return false;
            }
        }
        if let Some(declared) = self.alg.as_deref() {
            if declared != alg.name() {
                return false;
            }
        }
        self.material.family() == alg.family()
    }

    /// Whether `signature` is a valid `alg` signature of `message` under this key. Any mismatch (wrong key
    /// type or curve, wrong signature length, malformed signature) is simply `false`.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        match (&self.material, alg) {
            (Material::Oct(secret), Alg::HS256) => {
                hmac_verify::<Hmac<Sha256>>(secret, message, signature)
            }
            (Material::Oct(secret), Alg::HS384) => {
                hmac_verify::<Hmac<Sha384>>(secret, message, signature)
            }
            (Material::Oct(secret), Alg::HS512) => {
                hmac_verify::<Hmac<Sha512>>(secret, message, signature)
            }
            (Material::Rsa(key), _) => {
                let (hash, padding) = match alg {
                    Alg::RS256 => (Hash::Sha256, Padding::Pkcs1v15),
                    Alg::RS384 => (Hash::Sha384, Padding::Pkcs1v15),
                    Alg::RS512 => (Hash::Sha512, Padding::Pkcs1v15),
                    Alg::PS256 => (Hash::Sha256, Padding::Pss),
                    Alg::PS384 => (Hash::Sha384, Padding::Pss),
                    Alg::PS512 => (Hash::Sha512, Padding::Pss),
                    _ => return false,
                };
                key.verify(hash, padding, message, signature)
            }
            // `super::ec_verify`: r and s in [1, n - 1], high s accepted, the SHA-256 / SHA-384 hash reduced
            // modulo n, as the p256/p384 crates (ecdsa 0.16) and BoringSSL check them.
            (Material::P256(key), Alg::ES256) => key.verify(message, signature),
            (Material::P384(key), Alg::ES384) => key.verify(message, signature),
            (Material::Ed25519(key), Alg::EdDSA) => {
                // ed25519-dalek's `verify`: canonical `s` required, cofactorless equation, as BoringSSL's
                // ED25519_verify (behind Envoy's jwt_authn) checks it.
                let (Some(key), Ok(sig)) = (key.as_ref(), <[u8; 64]>::try_from(signature)) else {
                    return false;
                };
                use ed25519_dalek::Verifier;
                key.verify(message, &ed25519_dalek::Signature::from_bytes(&sig))
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// HMAC verification: the signature must be exactly the digest length (no truncated MACs), and the comparison
/// is constant-time (`Mac::verify_slice`).
fn hmac_verify<M: Mac + hmac::digest::KeyInit>(
    secret: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    if signature.len() != <M as hmac::digest::OutputSizeUser>::output_size() {
        return false;
    }
    match <M as Mac>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(message);
            mac.verify_slice(signature).is_ok()
        }
        Err(_) => false,
    }
}

/// What a JSON member lookup found (jwt_verify_lib's `StructUtils` results).
enum Member<'a> {
    Missing,
    WrongType,
    Str(&'a str),
}

fn string_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Member<'a> {
    match obj.get(name) {
        None => Member::Missing,
        Some(Value::String(s)) => Member::Str(s),
        Some(_) => Member::WrongType,
    }
}

/// A non-empty string member, or None (absent, wrong type and empty all mean "not declared").
fn optional_string(obj: &Map<String, Value>, name: &str) -> Option<String> {
    match obj.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn parse_jwk(jwk: &Map<String, Value>) -> Result<Key, JwksError> {
    let kty = match string_member(jwk, "kty") {
        Member::Missing => return Err(err("JwksMissingKty", "[kty] is missing")),
        Member::WrongType => return Err(err("JwksBadKty", "[kty] is not a string")),
        Member::Str(s) => s,
    };
    let kid = optional_string(jwk, "kid");
    let alg = optional_string(jwk, "alg");
    let material = match kty {
        "EC" => parse_ec(jwk, alg.as_deref())?,
        "RSA" => parse_rsa(jwk, alg.as_deref())?,
        "oct" => parse_oct(jwk, alg.as_deref())?,
        "OKP" => parse_okp(jwk, alg.as_deref())?,
        _ => return Err(err("JwksNotImplementedKty", "[kty] is not supported")),
    };
    Ok(Key { kid, alg, material })
}

fn required<'a>(
    jwk: &'a Map<String, Value>,
    name: &str,
    missing: &'static str,
    wrong: &'static str,
) -> Result<&'a str, JwksError> {
    match string_member(jwk, name) {
        Member::Missing => Err(err(missing, format!("[{name}] is missing"))),
        Member::WrongType => Err(err(wrong, format!("[{name}] is not a string"))),
        Member::Str(s) => Ok(s),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    P521,
}

fn parse_ec(jwk: &Map<String, Value>, alg: Option<&str>) -> Result<Material, JwksError> {
    if let Some(alg) = alg {
        if !alg.starts_with("ES") {
            return Err(err("JwksECKeyBadAlg", "[alg] does not start with ES"));
        }
    }
    let crv = match string_member(jwk, "crv") {
        Member::Missing => None,
        Member::WrongType => return Err(err("JwksECKeyBadCrv", "[crv] is not a string")),
        Member::Str("") => None,
        Member::Str(s) => Some(s),
    };
    let curve_of_alg = |alg: &str| match alg {
        "ES256" => Some(Curve::P256),
        "ES384" => Some(Curve::P384),
        "ES512" => Some(Curve::P521),
        _ => None,
    };
    let curve_of_crv = |crv: &str| match crv {
        "P-256" => Some(Curve::P256),
        "P-384" => Some(Curve::P384),
        "P-521" => Some(Curve::P521),
        _ => None,
    };
    if let (Some(a), Some(c)) = (alg, crv) {
        match (curve_of_alg(a), curve_of_crv(c)) {
            (Some(x), Some(y)) if x == y => {}
            _ => {
                return Err(err(
                    "JwksECKeyAlgNotCompatibleWithCrv",
                    "[crv] is not compatible with [alg]",
                ))
            }
        }
    }
    let curve = match (alg, crv) {
        (None, None) => Curve::P256,
        _ => match alg
            .and_then(curve_of_alg)
            .or_else(|| crv.and_then(curve_of_crv))
        {
            Some(c) => c,
            None => {
                return Err(err(
                    "JwksECKeyAlgOrCrvUnsupported",
                    "[crv] or [alg] is not supported",
                ))
            }
        },
    };
    let x = required(jwk, "x", "JwksECKeyMissingX", "JwksECKeyBadX")?;
    let y = required(jwk, "y", "JwksECKeyMissingY", "JwksECKeyBadY")?;
    if curve == Curve::P521 {
        return Err(err(
            "JwksECKeyAlgOrCrvUnsupported",
            "P-521 (ES512) keys are not supported",
        ));
    }
    let (x, y) = match (decode_base64url(x), decode_base64url(y)) {
        (Some(x), Some(y)) => (x, y),
        _ => {
            return Err(err(
                "JwksEcXorYBadBase64",
                "[x] or [y] is not valid base64url",
            ))
        }
    };
    let size = if curve == Curve::P256 { 32 } else { 48 };
    let bad_point = || {
        err(
            "JwksEcParseError",
            "[x] and [y] are not a point on the curve",
        )
    };
    let mut sec1 = Vec::with_capacity(1 + 2 * size);
    sec1.push(0x04);
    sec1.extend_from_slice(&left_pad(&x, size).ok_or_else(bad_point)?);
    sec1.extend_from_slice(&left_pad(&y, size).ok_or_else(bad_point)?);
    ec_from_sec1(curve, &sec1).ok_or_else(bad_point)
}

/// A big-endian coordinate as exactly `size` bytes (shorter values padded, as OpenSSL's `BN_bin2bn` reads them).
fn left_pad(value: &[u8], size: usize) -> Option<Vec<u8>> {
    let first = value.iter().position(|&b| b != 0).unwrap_or(value.len());
    let digits = value.get(first..)?;
    if digits.len() > size {
        return None;
    }
    let mut out = vec![0u8; size - digits.len()];
    out.extend_from_slice(digits);
    Some(out)
}

fn ec_from_sec1(curve: Curve, sec1: &[u8]) -> Option<Material> {
    match curve {
        Curve::P256 => P256Key::p256_from_sec1(sec1).map(|k| Material::P256(Box::new(k))),
        Curve::P384 => P384Key::p384_from_sec1(sec1).map(|k| Material::P384(Box::new(k))),
        Curve::P521 => None,
    }
}

fn parse_rsa(jwk: &Map<String, Value>, alg: Option<&str>) -> Result<Material, JwksError> {
    if let Some(alg) = alg {
        if !(alg.starts_with("RS") || alg.starts_with("PS")) {
            return Err(err(
                "JwksRSAKeyBadAlg",
                "[alg] does not start with RS or PS",
            ));
        }
    }
    let n = required(jwk, "n", "JwksRSAKeyMissingN", "JwksRSAKeyBadN")?;
    let e = required(jwk, "e", "JwksRSAKeyMissingE", "JwksRSAKeyBadE")?;
    let (n, e) = match (decode_base64url(n), decode_base64url(e)) {
        (Some(n), Some(e)) => (n, e),
        _ => {
            return Err(err(
                "JwksRsaParseError",
                "[n] or [e] is not valid base64url",
            ))
        }
    };
    rsa_key(&n, &e).map_err(|why| err("JwksRsaParseError", why))
}

/// An RSA public key from big-endian modulus and exponent.
fn rsa_key(n: &[u8], e: &[u8]) -> Result<Material, &'static str> {
    let n = strip_zeros(n);
    let e = strip_zeros(e);
    if e != [0x03] && e != [0x01, 0x00, 0x01] {
        return Err("public exponent is not 3 or 65537");
    }
    if bit_length(n) < MIN_RSA_BITS {
        return Err("modulus is shorter than 2048 bits");
    }
    match RsaKey::new(n, e) {
        Ok(key) => Ok(Material::Rsa(Box::new(key))),
        Err(rsa_verify::KeyError::Exponent) => Err("public exponent is not 3 or 65537"),
        Err(rsa_verify::KeyError::TooLarge) => Err("modulus is longer than 4096 bits"),
        Err(rsa_verify::KeyError::Modulus) => {
            Err("modulus or exponent is not a valid RSA public key")
        }
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

fn bit_length(be: &[u8]) -> usize {
    let be = strip_zeros(be);
    match be.first() {
        None => 0,
        Some(&top) => (be.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

fn parse_oct(jwk: &Map<String, Value>, alg: Option<&str>) -> Result<Material, JwksError> {
    if let Some(alg) = alg {
        if !matches!(alg, "HS256" | "HS384" | "HS512") {
            return Err(err(
                "JwksHMACKeyBadAlg",
                "[alg] is not HS256, HS384 or HS512",
            ));
        }
    }
    let k = required(jwk, "k", "JwksHMACKeyMissingK", "JwksHMACKeyBadK")?;
    match decode_base64url(k) {
        Some(secret) if !secret.is_empty() => Ok(Material::Oct(secret)),
        _ => Err(err(
            "JwksOctBadBase64",
            "[k] is not valid non-empty base64url",
        )),
    }
}

fn parse_okp(jwk: &Map<String, Value>, alg: Option<&str>) -> Result<Material, JwksError> {
    if let Some(alg) = alg {
        if alg != "EdDSA" {
            return Err(err("JwksOKPKeyBadAlg", "[alg] is not EdDSA"));
        }
    }
    let crv = required(jwk, "crv", "JwksOKPKeyMissingCrv", "JwksOKPKeyBadCrv")?;
    if crv != "Ed25519" {
        return Err(err("JwksOKPKeyCrvUnsupported", "[crv] is not Ed25519"));
    }
    let x = required(jwk, "x", "JwksOKPKeyMissingX", "JwksOKPKeyBadX")?;
    let x = decode_base64url(x)
        .ok_or_else(|| err("JwksOKPXBadBase64", "[x] is not valid base64url"))?;
    if x.len() != 32 {
        return Err(err("JwksOKPXWrongLength", "[x] is not 32 bytes"));
    }
    ed25519_key(&x).ok_or_else(|| err("JwksOKPXWrongLength", "[x] is not an Ed25519 public key"))
}

fn ed25519_key(raw: &[u8]) -> Option<Material> {
    let raw = <[u8; 32]>::try_from(raw).ok()?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&raw).ok();
    Some(Material::Ed25519(Box::new(key)))
}

const CERT_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const CERT_END: &str = "-----END CERTIFICATE-----\n";

/// jwt_verify_lib's test for the X.509 form: every member a non-empty kid mapped to a PEM certificate.
fn is_x509_set(fields: &Map<String, Value>) -> bool {
    !fields.is_empty()
        && fields.iter().all(|(kid, value)| match value {
            Value::String(cert) => {
                !kid.is_empty() && cert.starts_with(CERT_BEGIN) && cert.ends_with(CERT_END)
            }
            _ => false,
        })
}

/// Every certificate must yield an RSA key, or the whole set is refused (as in jwt_verify_lib).
fn from_x509_set(fields: &Map<String, Value>) -> Result<KeySet, JwksError> {
    let mut set = KeySet::default();
    for (kid, value) in fields {
        let Value::String(cert) = value else {
            return Err(err("JwksX509ParseError", "certificate is not a string"));
        };
        let parse_error = || err("JwksX509ParseError", format!("[{kid}]: X.509 parse fails"));
        let body = pem_body(cert, "CERTIFICATE").ok_or_else(parse_error)?;
        let der = decode_base64_std(&body).ok_or_else(parse_error)?;
        let spki = certificate_spki(&der).ok_or_else(parse_error)?;
        let material = match parse_spki(spki) {
            Ok(m @ Material::Rsa(_)) => m,
            Ok(_) | Err(SpkiError::Unsupported(_)) | Err(SpkiError::BadKey(_)) => {
                return Err(err(
                    "JwksX509GetPubkeyError",
                    format!("[{kid}]: certificate key is not a usable RSA key"),
                ))
            }
            Err(SpkiError::Malformed) => return Err(parse_error()),
        };
        set.keys.push(Key {
            kid: Some(kid.clone()),
            alg: None,
            material,
        });
    }
    Ok(set)
}

/// The base64 body of a PEM block with this label; text without any `-----BEGIN` line is taken as the body.
fn pem_body(text: &str, label: &str) -> Option<String> {
    let text = text.trim();
    let body = if text.contains("-----BEGIN") {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let rest = text.strip_prefix(begin.as_str())?;
        let at = rest.find(end.as_str())?;
        if !rest.get(at + end.len()..)?.trim().is_empty() {
            return None;
        }
        rest.get(..at)?
    } else {
        text
    };
    Some(body.chars().filter(|c| !c.is_ascii_whitespace()).collect())
}

fn decode_base64_std(body: &str) -> Option<Vec<u8>> {
    Base64::decode_vec(body).ok().filter(|v| !v.is_empty())
}

/// Removes commas that directly precede `}` or `]` (ignoring whitespace), outside strings. protobuf's JSON
/// parser (used by jwt_verify_lib) accepts them, and real key documents (Envoy's own tests) contain them.
pub fn strip_trailing_commas(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut drop: Vec<usize> = Vec::new();
    let mut pending_comma: Option<usize> = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                pending_comma = None;
                // An unterminated string runs to the end: nothing after it is dropped.
                let Some(end) = json_text::string_end(bytes, i) else {
                    break;
                };
                i = end;
            }
            b',' => pending_comma = Some(i),
            b'}' | b']' => {
                if let Some(at) = pending_comma.take() {
                    drop.push(at);
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => pending_comma = None,
        }
        i += 1;
    }
    if drop.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for at in drop {
        out.push_str(text.get(last..at).unwrap_or_default());
        last = at + 1;
    }
    out.push_str(text.get(last..).unwrap_or_default());
    Cow::Owned(out)
}

// ---- minimal DER reading: just enough for SubjectPublicKeyInfo and an X.509 certificate's key ----

/// One DER element: tag, contents, the whole element, and what follows it.
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    whole: &'a [u8],
    rest: &'a [u8],
}

fn read_tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    let (&first, mut after_len) = after_tag.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 3 {
            return None;
        }
        let (len_bytes, rest) = (after_len.get(..count)?, after_len.get(count..)?);
        after_len = rest;
        len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let contents = after_len.get(..len)?;
    let rest = after_len.get(len..)?;
    let header = input.len() - after_len.len();
    let whole = input.get(..header + len)?;
    Some(Tlv {
        tag,
        contents,
        whole,
        rest,
    })
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

enum SpkiError {
    /// Not DER SubjectPublicKeyInfo at all.
    Malformed,
    /// A key type or curve apiguard does not implement.
    Unsupported(&'static str),
    /// The right type, but not a valid key.
    BadKey(&'static str),
}

fn parse_spki(der: &[u8]) -> Result<Material, SpkiError> {
    let spki = read_tlv(der).ok_or(SpkiError::Malformed)?;
    if spki.tag != TAG_SEQUENCE || !spki.rest.is_empty() {
        return Err(SpkiError::Malformed);
    }
    let algorithm = read_tlv(spki.contents).ok_or(SpkiError::Malformed)?;
    let bits = read_tlv(algorithm.rest).ok_or(SpkiError::Malformed)?;
    if algorithm.tag != TAG_SEQUENCE || bits.tag != TAG_BIT_STRING || !bits.rest.is_empty() {
        return Err(SpkiError::Malformed);
    }
    let (&unused, key) = bits.contents.split_first().ok_or(SpkiError::Malformed)?;
    if unused != 0 {
        return Err(SpkiError::Malformed);
    }
    let oid = read_tlv(algorithm.contents).ok_or(SpkiError::Malformed)?;
    if oid.tag != TAG_OID {
        return Err(SpkiError::Malformed);
    }
    match oid.contents {
        OID_RSA => {
            let seq = read_tlv(key).ok_or(SpkiError::BadKey("RSA key is malformed"))?;
            let n = read_tlv(seq.contents).ok_or(SpkiError::BadKey("RSA key is malformed"))?;
            let e = read_tlv(n.rest).ok_or(SpkiError::BadKey("RSA key is malformed"))?;
            if seq.tag != TAG_SEQUENCE || n.tag != TAG_INTEGER || e.tag != TAG_INTEGER {
                return Err(SpkiError::BadKey("RSA key is malformed"));
            }
            rsa_key(n.contents, e.contents).map_err(SpkiError::BadKey)
        }
        OID_EC => {
            let curve = read_tlv(oid.rest).ok_or(SpkiError::Malformed)?;
            if curve.tag != TAG_OID {
                return Err(SpkiError::Unsupported("EC key without a named curve"));
            }
            let curve = match curve.contents {
                OID_P256 => Curve::P256,
                OID_P384 => Curve::P384,
                _ => return Err(SpkiError::Unsupported("EC curve is not P-256 or P-384")),
            };
            ec_from_sec1(curve, key).ok_or(SpkiError::BadKey("EC point is not on the curve"))
        }
        OID_ED25519 => {
            if key.len() != 32 {
                return Err(SpkiError::BadKey("Ed25519 key is not 32 bytes"));
            }
            ed25519_key(key).ok_or(SpkiError::BadKey("Ed25519 key is invalid"))
        }
        _ => Err(SpkiError::Unsupported(
            "PEM key type is not RSA, EC or Ed25519",
        )),
    }
}

/// The SubjectPublicKeyInfo element of a DER X.509 certificate.
fn certificate_spki(der: &[u8]) -> Option<&[u8]> {
    let cert = read_tlv(der)?;
    let tbs = read_tlv(cert.contents)?;
    if cert.tag != TAG_SEQUENCE || tbs.tag != TAG_SEQUENCE {
        return None;
    }
    let mut field = read_tlv(tbs.contents)?;
    if field.tag == 0xa0 {
        // [0] EXPLICIT version
        field = read_tlv(field.rest)?;
    }
    // serialNumber, signature, issuer, validity, subject, then subjectPublicKeyInfo.
    for _ in 0..5 {
        field = read_tlv(field.rest)?;
    }
    (field.tag == TAG_SEQUENCE).then_some(field.whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn status(json: &str) -> &'static str {
        match KeySet::from_jwks(json.as_bytes()) {
            Ok(_) => "Ok",
            Err(e) => e.status,
        }
    }

    #[test]
    fn an_ec_key_with_neither_alg_nor_crv_is_read_as_p256() {
        let json = format!(r#"{{"keys":[{{"kty":"EC","x":"{P256_X}","y":"{P256_Y}"}}]}}"#);
        let set = KeySet::from_jwks(json.as_bytes()).expect("P-256 key");
        assert_eq!(set.len(), 1);
        assert!(set.candidates(None, Alg::ES256).next().is_some());
    }

    #[test]
    fn a_bad_key_is_skipped_when_another_key_is_usable() {
        let json = format!(
            r#"{{"keys":[{{"kty":"RSA","alg":"RS256"}},{{"kty":"EC","x":"{P256_X}","y":"{P256_Y}"}}]}}"#
        );
        assert_eq!(status(&json), "Ok");
    }

    #[test]
    fn the_first_bad_key_names_the_error_when_no_key_is_usable() {
        let json = r#"{"keys":[{"kty":"RSA","alg":"RS256"},{"kty":"EC","alg":"ES256"}]}"#;
        assert_eq!(status(json), "JwksRSAKeyMissingN");
    }

    #[test]
    fn an_empty_keys_array_has_no_valid_keys() {
        assert_eq!(status(r#"{"keys":[]}"#), "JwksNoValidKeys");
        assert_eq!(status(r#"{"keys":[1, "x", null]}"#), "JwksNoValidKeys");
    }

    #[test]
    fn documents_that_are_not_json_objects_are_parse_errors() {
        for doc in ["", "invalid", "[]", "\"keys\"", "{\"keys\":"] {
            assert_eq!(status(doc), "JwksParseError", "{doc:?}");
        }
    }

    #[test]
    fn trailing_commas_are_tolerated_like_protobufs_json_parser() {
        let json = format!(r#"{{"keys":[{{"kty":"EC","x":"{P256_X}","y":"{P256_Y}",}},],}}"#);
        assert_eq!(status(&json), "Ok");
        assert_eq!(strip_trailing_commas(r#"{"a":",}"}"#), r#"{"a":",}"}"#);
        assert_eq!(strip_trailing_commas("[1,\n]"), "[1\n]");
    }

    #[test]
    fn rsa_keys_shorter_than_2048_bits_are_refused() {
        // 1024-bit modulus: 128 bytes of 0xff.
        let n = base64ct::Base64UrlUnpadded::encode_string(&[0xffu8; 128]);
        let json = format!(r#"{{"keys":[{{"kty":"RSA","n":"{n}","e":"AQAB"}}]}}"#);
        let e = KeySet::from_jwks(json.as_bytes()).expect_err("weak key");
        assert_eq!(e.status, "JwksRsaParseError");
        assert!(e.detail.contains("2048"));
        assert!(!e.detail.contains(&n), "no key material in errors");
    }

    #[test]
    fn rsa_exponents_other_than_3_and_65537_are_refused() {
        let n = base64ct::Base64UrlUnpadded::encode_string(&[0xc5u8; 256]);
        let json = format!(r#"{{"keys":[{{"kty":"RSA","n":"{n}","e":"AQE"}}]}}"#);
        assert_eq!(status(&json), "JwksRsaParseError");
    }

    #[test]
    fn p521_keys_are_reported_as_unsupported() {
        let json = r#"{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}"#;
        assert_eq!(status(json), "JwksECKeyAlgOrCrvUnsupported");
    }

    #[test]
    fn key_debug_output_never_contains_the_secret() {
        let json = r#"{"keys":[{"kty":"oct","kid":"k1","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]}"#;
        let set = KeySet::from_jwks(json.as_bytes()).expect("oct key");
        let shown = format!("{set:?}");
        assert!(shown.contains("k1"));
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("secret"),
            "{shown}"
        );
    }

    #[test]
    fn an_oct_key_is_never_a_candidate_for_asymmetric_algorithms() {
        let json = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]}"#;
        let set = KeySet::from_jwks(json.as_bytes()).expect("oct key");
        for alg in Alg::ALL {
            let fits = set.candidates(None, alg).next().is_some();
            assert_eq!(fits, alg.family() == Family::Hmac, "{alg}");
        }
    }

    #[test]
    fn a_key_without_kid_stays_a_candidate_for_a_token_with_kid() {
        let json =
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"oct","kid":"b","k":"c2VjcmV0"}]}"#;
        let set = KeySet::from_jwks(json.as_bytes()).expect("oct keys");
        assert_eq!(set.candidates(Some("a"), Alg::HS256).count(), 1);
        assert_eq!(set.candidates(Some("b"), Alg::HS256).count(), 2);
        assert_eq!(set.candidates(Some(""), Alg::HS256).count(), 2);
    }

    #[test]
    fn pinning_an_algorithm_excludes_the_others_of_the_family() {
        let pem = "MCowBQYDK2VwAyEA6hH43mEbo+h7iigPm9zLKHH5oEc+bjIXD/t4PLPqHLQ=";
        let mut set = KeySet::from_pem(pem).expect("Ed25519 PEM without armour");
        assert!(set.candidates(None, Alg::EdDSA).next().is_some());
        set.pin_alg(Alg::RS256);
        assert!(set.candidates(None, Alg::EdDSA).next().is_none());
    }

    #[test]
    fn pem_with_another_label_or_bad_base64_is_refused() {
        let wrong = "-----BEGIN CERTIFICATE KEY-----\nMCowBQYDK2VwAyEA6hH43mEbo+h7iigPm9zLKHH5oEc+bjIXD/t4PLPqHLQ=\n-----END CERTIFICATE KEY-----";
        assert_eq!(
            KeySet::from_pem(wrong).expect_err("label").status,
            "JwksPemBadBase64"
        );
        let bad = "-----BEGIN PUBLIC KEY-----\nbad-pub-key\n-----END PUBLIC KEY-----";
        assert_eq!(
            KeySet::from_pem(bad).expect_err("base64").status,
            "JwksPemBadBase64"
        );
        assert_eq!(
            KeySet::from_pem("").expect_err("empty").status,
            "JwksPemBadBase64"
        );
    }

    #[test]
    fn der_lengths_that_overrun_the_input_are_rejected() {
        assert!(read_tlv(&[0x30, 0x05, 0x00]).is_none());
        assert!(read_tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(read_tlv(&[0x30]).is_none());
        assert!(read_tlv(&[]).is_none());
        let tlv = read_tlv(&[0x02, 0x01, 0x05, 0xaa]).expect("integer");
        assert_eq!(
            (tlv.tag, tlv.contents, tlv.rest),
            (0x02, &[0x05u8][..], &[0xaau8][..])
        );
    }

    #[test]
    fn signatures_of_the_wrong_length_are_false_not_panics() {
        let json = format!(
            r#"{{"keys":[{{"kty":"oct","k":"c2VjcmV0"}},{{"kty":"EC","x":"{P256_X}","y":"{P256_Y}"}}]}}"#
        );
        let set = KeySet::from_jwks(json.as_bytes()).expect("keys");
        for key in set.iter() {
            for alg in Alg::ALL {
                for len in [0usize, 1, 31, 33, 63, 65, 95, 97, 512] {
                    assert!(!key.verify(alg, b"msg", &vec![0u8; len]));
                }
            }
        }
    }
}
