//! A compact JWS token split and decoded: header, claims, signature. No cryptography here.
//!
//! Statuses and their order are google/jwt_verify_lib's (`Jwt::parseFromString`):
//! 1. exactly three dot-separated segments, header and payload non-empty, else `JwtBadFormat` (a five-segment
//!    JWE, `a..b`: `JwtBadFormat`);
//! 2. header: base64url (`JwtHeaderParseErrorBadBase64`), a JSON object (`JwtHeaderParseErrorBadJson`), `alg` a
//!    string (`JwtHeaderBadAlg`), `crit` absent (`JwtHeaderBadCrit`, RFC 7515 4.1.11: no extension is
//!    understood), `alg` implemented (`JwtHeaderNotImplementedAlg`, `none` included), `kid` a string if present
//!    (`JwtHeaderBadKid`);
//! 3. payload: base64url, a JSON object, then `iss`, `sub` strings, `aud` a string or list of strings, `iat`,
//!    `nbf`, `exp` non-negative numbers below 2^64 (fractions are dropped, as jwt_verify_lib does), `jti` a string;
//! 4. signature: non-empty (`JwtBadFormat`), base64url (`JwtSignatureParseErrorBadBase64`).
//!
//! jwt_verify_lib refuses an empty signature segment as `JwtBadFormat` before reading the header; here the
//! header is read first, so that an unsecured token (`alg: none`, RFC 7515 A.5) is refused for its algorithm and
//! RFC 7515 App. E for its `crit`. Every such token is still refused.
//!
//! Base64url is read as absl's `WebSafeBase64Unescape` reads it: the URL-safe alphabet only (`+` and `/` are
//! refused), with or without `=` padding (jwt_verify_lib's own X.509 vector carries a padded signature).
//!
//! Stricter than jwt_verify_lib: a header or payload object with a duplicated member name (at any depth) is
//! refused as bad JSON, since two parsers could otherwise read two different claims from one signed token.
//!
//! The `jwk`, `jku`, `x5u`, `x5c` and `x5t` header members are never read: keys come only from configuration.

use std::collections::BTreeSet;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{Map, Value};

use super::alg::Alg;
use super::Status;
use crate::json_text;

/// The registered claims apiguard checks, typed; the whole payload stays available in `payload`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    /// `aud` as a list whether the token carried a string or an array.
    pub aud: Vec<String>,
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
    pub jti: Option<String>,
}

/// A parsed token. `raw` borrows the request's token string.
#[derive(Debug, Clone)]
pub struct Jwt<'a> {
    pub raw: &'a str,
    pub alg: Alg,
    /// `kid` from the header; an empty string is kept as `None` (jwt_verify_lib treats both alike).
    pub kid: Option<String>,
    pub claims: Claims,
    /// The decoded payload object (for `claim_to_headers` and authorization).
    pub payload: Map<String, Value>,
    /// The payload segment exactly as received (base64url), for `forward_payload_header`.
    pub payload_b64: &'a str,
    /// `header.payload` as received: the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// Decodes base64url as jwt_verify_lib does: URL-safe alphabet, `=` padding optional (but correct if present).
/// Unused low bits of the last character must be zero (canonical encoding), so one signature has one spelling.
pub fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    Base64UrlUnpadded::decode_vec(unpad(text)?).ok()
}

/// Like [`decode_base64url`], but ignores non-zero unused bits in the last character, as absl's
/// `WebSafeBase64Unescape` does. Used for JWK members only (jwt_verify_lib's key vectors rely on it).
pub fn decode_base64url_lenient(text: &str) -> Option<Vec<u8>> {
    let unpadded = unpad(text)?;
    let Some(last) = unpadded.bytes().last() else {
        return Some(Vec::new());
    };
    let mask: u8 = match unpadded.len() % 4 {
        2 => 0b11_0000,
        3 => 0b11_1100,
        _ => return Base64UrlUnpadded::decode_vec(unpadded).ok(),
    };
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = ALPHABET.iter().position(|&c| c == last)?;
    let canonical = ALPHABET.get(value & usize::from(mask))?;
    let mut fixed = String::with_capacity(unpadded.len());
    fixed.push_str(unpadded.get(..unpadded.len() - 1)?);
    fixed.push(char::from(*canonical));
    Base64UrlUnpadded::decode_vec(&fixed).ok()
}

fn unpad(text: &str) -> Option<&str> {
    let unpadded = if text.ends_with('=') {
        if !text.len().is_multiple_of(4) {
            return None;
        }
        let trimmed = text.strip_suffix("==").or_else(|| text.strip_suffix('='))?;
        if trimmed.ends_with('=') {
            return None;
        }
        trimmed
    } else {
        text
    };
    Some(unpadded)
}

/// Parses a compact JWS. Errors are `jwt_verify_lib` parse statuses.
pub fn parse(token: &str) -> Result<Jwt<'_>, Status> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::JwtBadFormat);
    };
    if header_b64.is_empty() || payload_b64.is_empty() {
        return Err(Status::JwtBadFormat);
    }
    let signing_input = token
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(Status::JwtBadFormat)?;

    // Header.
    let header_json = decode_base64url(header_b64).ok_or(Status::JwtHeaderParseErrorBadBase64)?;
    let header = json_object(&header_json).ok_or(Status::JwtHeaderParseErrorBadJson)?;
    let alg_name = match header.get("alg") {
        Some(Value::String(name)) => name.as_str(),
        _ => return Err(Status::JwtHeaderBadAlg),
    };
    if header.contains_key("crit") {
        return Err(Status::JwtHeaderBadCrit);
    }
    let alg = Alg::from_name(alg_name).ok_or(Status::JwtHeaderNotImplementedAlg)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) if kid.is_empty() => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(Status::JwtHeaderBadKid),
    };

    // Payload.
    let payload_json =
        decode_base64url(payload_b64).ok_or(Status::JwtPayloadParseErrorBadBase64)?;
    let payload = json_object(&payload_json).ok_or(Status::JwtPayloadParseErrorBadJson)?;
    let claims = typed_claims(&payload)?;

    // Signature.
    if signature_b64.is_empty() {
        return Err(Status::JwtBadFormat);
    }
    let signature =
        decode_base64url(signature_b64).ok_or(Status::JwtSignatureParseErrorBadBase64)?;

    Ok(Jwt {
        raw: token,
        alg,
        kid,
        claims,
        payload,
        payload_b64,
        signing_input,
        signature,
    })
}

/// A JSON object without duplicated member names, or None.
fn json_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    let text = std::str::from_utf8(bytes).ok()?;
    match serde_json::from_str::<Value>(text).ok()? {
        Value::Object(map) if !has_duplicate_member(text) => Some(map),
        _ => None,
    }
}

/// Whether any object in this (already validated) JSON text repeats a member name. Names are compared after
/// unescaping, so `"a"` and `"\u0061"` are the same name.
fn has_duplicate_member(text: &str) -> bool {
    let bytes = text.as_bytes();
    // One frame per open container: Some(names) for an object, None for an array.
    let mut stack: Vec<Option<BTreeSet<String>>> = Vec::new();
    let mut expect_name = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                let start = i;
                let Some(end) = json_text::string_end(bytes, i) else {
                    return false;
                };
                i = end;
                if expect_name {
                    if let Some(Some(names)) = stack.last_mut() {
                        let raw = text.get(start..=i).unwrap_or_default();
                        let name: String = serde_json::from_str(raw).unwrap_or_default();
                        if !names.insert(name) {
                            return true;
                        }
                    }
                    expect_name = false;
                }
            }
            b'{' => {
                stack.push(Some(BTreeSet::new()));
                expect_name = true;
            }
            b'[' => {
                stack.push(None);
                expect_name = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_name = false;
            }
            b',' => expect_name = matches!(stack.last(), Some(Some(_))),
            _ => {}
        }
        i += 1;
    }
    false
}

fn typed_claims(payload: &Map<String, Value>) -> Result<Claims, Status> {
    let string = |name: &str, status: Status| match payload.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(status),
    };
    let iss = string("iss", Status::JwtPayloadParseErrorIssNotString)?;
    let sub = string("sub", Status::JwtPayloadParseErrorSubNotString)?;
    let aud = match payload.get("aud") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(Status::JwtPayloadParseErrorAudNotString),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(Status::JwtPayloadParseErrorAudNotString),
    };
    let iat = time_claim(
        payload.get("iat"),
        Status::JwtPayloadParseErrorIatNotInteger,
        Status::JwtPayloadParseErrorIatOutOfRange,
    )?;
    let nbf = time_claim(
        payload.get("nbf"),
        Status::JwtPayloadParseErrorNbfNotInteger,
        Status::JwtPayloadParseErrorNbfOutOfRange,
    )?;
    let exp = time_claim(
        payload.get("exp"),
        Status::JwtPayloadParseErrorExpNotInteger,
        Status::JwtPayloadParseErrorExpOutOfRange,
    )?;
    let jti = string("jti", Status::JwtPayloadParseErrorJtiNotString)?;
    Ok(Claims {
        iss,
        sub,
        aud,
        exp,
        nbf,
        iat,
        jti,
    })
}

/// 2^64 as f64: jwt_verify_lib refuses numbers at or above `(double)UINT64_MAX`, which rounds to this.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// A NumericDate as jwt_verify_lib reads it: any JSON number in `[0, 2^64)`, fractions truncated.
fn time_claim(
    value: Option<&Value>,
    not_number: Status,
    out_of_range: Status,
) -> Result<Option<u64>, Status> {
    let Some(value) = value else { return Ok(None) };
    let Value::Number(number) = value else {
        return Err(not_number);
    };
    if let Some(n) = number.as_u64() {
        // Integers so close to 2^64 that their f64 rounds up to it are out of range, as for jwt_verify_lib.
        #[allow(clippy::cast_precision_loss)]
        let as_float = n as f64;
        return if as_float < TWO_POW_64 {
            Ok(Some(n))
        } else {
            Err(out_of_range)
        };
    }
    let Some(float) = number.as_f64() else {
        return Err(out_of_range);
    };
    if !(0.0..TWO_POW_64).contains(&float) {
        return Err(out_of_range);
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let truncated = float as u64;
    Ok(Some(truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        Base64UrlUnpadded::encode_string(text.as_bytes())
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    #[test]
    fn a_well_formed_token_exposes_its_parts() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1","jwk":{"kty":"oct","k":"AA"}}"#,
            r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":20,"nbf":10,"iat":10.9,"jti":"j","x":{"y":1}}"#,
        );
        let jwt = parse(&t).expect("parses");
        assert_eq!(jwt.alg, Alg::RS256);
        assert_eq!(jwt.kid.as_deref(), Some("k1"));
        assert_eq!(jwt.claims.aud, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(
            (jwt.claims.exp, jwt.claims.nbf, jwt.claims.iat),
            (Some(20), Some(10), Some(10))
        );
        assert_eq!(jwt.signature, b"sig");
        assert_eq!(format!("{}.{}", jwt.signing_input, "c2ln"), t);
        assert_eq!(jwt.payload_b64, t.split('.').nth(1).expect("payload"));
        assert_eq!(jwt.payload.get("x"), Some(&serde_json::json!({"y": 1})));
    }

    #[test]
    fn segment_counts_other_than_three_are_bad_format() {
        for t in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "a.b.c.d.e",
            "a..c",
            ".b.c",
            "..",
            "a.b.c.",
        ] {
            assert_eq!(parse(t).err(), Some(Status::JwtBadFormat), "{t:?}");
        }
    }

    #[test]
    fn an_empty_signature_is_bad_format_once_header_and_payload_are_read() {
        let t = format!("{}.{}.", b64(r#"{"alg":"HS256"}"#), b64("{}"));
        assert_eq!(parse(&t).err(), Some(Status::JwtBadFormat));
        let t = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}"));
        assert_eq!(parse(&t).err(), Some(Status::JwtHeaderNotImplementedAlg));
    }

    #[test]
    fn base64_with_the_standard_alphabet_or_bad_padding_is_refused() {
        assert_eq!(decode_base64url("YQ"), Some(b"a".to_vec()));
        assert_eq!(decode_base64url("YQ=="), Some(b"a".to_vec()));
        assert_eq!(decode_base64url("YWI="), Some(b"ab".to_vec()));
        for bad in [
            "YQ=", "YQ===", "Y", "a+b/", "YQ==YQ", "=", "Y Q", "YWI==", "YR", "YWJ",
        ] {
            assert_eq!(decode_base64url(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lenient_decoding_only_forgives_unused_trailing_bits() {
        assert_eq!(decode_base64url_lenient("YR"), Some(b"a".to_vec()));
        assert_eq!(decode_base64url_lenient("YWJ"), Some(b"ab".to_vec()));
        assert_eq!(decode_base64url_lenient("YWJj"), Some(b"abc".to_vec()));
        assert_eq!(decode_base64url_lenient(""), Some(Vec::new()));
        for bad in ["Y", "a+b/", "~}}", "YQ="] {
            assert_eq!(decode_base64url_lenient(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn crit_is_refused_even_when_empty_or_alongside_a_real_algorithm() {
        for header in [
            r#"{"alg":"HS256","crit":["exp"]}"#,
            r#"{"alg":"HS256","crit":[]}"#,
        ] {
            assert_eq!(
                parse(&token(header, "{}")).err(),
                Some(Status::JwtHeaderBadCrit)
            );
        }
    }

    #[test]
    fn alg_none_in_any_spelling_is_not_implemented() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert_eq!(parse(&t).err(), Some(Status::JwtHeaderNotImplementedAlg));
        }
    }

    #[test]
    fn header_and_payload_must_be_json_objects() {
        for doc in ["[]", "1", "\"s\"", "null", "{", "{}x"] {
            assert_eq!(
                parse(&token(doc, "{}")).err(),
                Some(Status::JwtHeaderParseErrorBadJson),
                "{doc}"
            );
            assert_eq!(
                parse(&token(r#"{"alg":"HS256"}"#, doc)).err(),
                Some(Status::JwtPayloadParseErrorBadJson),
                "{doc}"
            );
        }
    }

    #[test]
    fn duplicated_member_names_are_refused_at_any_depth() {
        assert!(has_duplicate_member(r#"{"a":1,"a":2}"#));
        assert!(has_duplicate_member(r#"{"a":1,"\u0061":2}"#));
        assert!(has_duplicate_member(r#"{"x":[{"b":1,"b":1}]}"#));
        assert!(!has_duplicate_member(
            r#"{"a":{"a":1},"b":["a","a"],"c":"a\",\"a"}"#
        ));
        let t = token(r#"{"alg":"HS256"}"#, r#"{"sub":"alice","sub":"admin"}"#);
        assert_eq!(parse(&t).err(), Some(Status::JwtPayloadParseErrorBadJson));
        let t = token(r#"{"alg":"HS256","alg":"none"}"#, "{}");
        assert_eq!(parse(&t).err(), Some(Status::JwtHeaderParseErrorBadJson));
    }

    #[test]
    fn time_claims_follow_jwt_verify_lib_ranges() {
        let exp = |v: &str| {
            let t = token(r#"{"alg":"HS256"}"#, &format!(r#"{{"exp":{v}}}"#));
            parse(&t).map(|jwt| jwt.claims.exp)
        };
        assert_eq!(exp("0"), Ok(Some(0)));
        assert_eq!(exp("1.9"), Ok(Some(1)));
        assert_eq!(exp("9223372036854775807"), Ok(Some(i64::MAX as u64)));
        for v in ["-1", "-0.5", "18446744073709551615", "1e20", "2.001e+206"] {
            assert_eq!(
                exp(v).err(),
                Some(Status::JwtPayloadParseErrorExpOutOfRange),
                "{v}"
            );
        }
        for v in ["\"1\"", "true", "null", "[1]"] {
            assert_eq!(
                exp(v).err(),
                Some(Status::JwtPayloadParseErrorExpNotInteger),
                "{v}"
            );
        }
    }

    #[test]
    fn an_empty_kid_is_no_kid_and_a_non_string_kid_is_bad() {
        let t = token(r#"{"alg":"HS256","kid":""}"#, "{}");
        assert_eq!(parse(&t).expect("empty kid").kid, None);
        let t = token(r#"{"alg":"HS256","kid":["a"]}"#, "{}");
        assert_eq!(parse(&t).err(), Some(Status::JwtHeaderBadKid));
    }
}
