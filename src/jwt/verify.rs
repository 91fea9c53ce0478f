//! Claims checked against a provider's rules, then the signature against a key set.
//!
//! The order is Envoy's `jwt_authn` authenticator, so that a token with several faults gets Envoy's status:
//! issuer → `nbf`/`exp` with clock skew → audience → required expiration / maximum lifetime → key selection →
//! signature. Claims are checked before any cryptography (cheap refusals first).

use super::alg::Alg;
use super::jws::Jwt;
use super::keys::KeySet;
use super::Status;

/// What a provider requires of a token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    /// Required `iss`; `None` (or an empty string) accepts any issuer.
    pub issuer: Option<String>,
    /// Accepted audiences (any of); empty accepts any audience. Compared as Envoy compares them: an
    /// `http://` or `https://` prefix and one trailing `/` are ignored on both sides.
    pub audiences: Vec<String>,
    /// Refuse tokens without `exp` (default true).
    pub require_expiration: bool,
    /// Allowed clock difference for `exp` and `nbf`, seconds (default 60).
    pub clock_skew_secs: u64,
    /// Longest accepted lifetime (`exp - iat`, or `exp - now` without `iat` or when `iat` is later than
    /// now), seconds. A token without `exp` has no bounded lifetime and is refused as
    /// `JwtMissingExpiration` when this is set; one whose `iat` is later than now plus the clock skew is
    /// refused as `JwtNotYetValid`.
    pub max_lifetime_secs: Option<u64>,
}

impl Default for ClaimRules {
    fn default() -> Self {
        ClaimRules {
            issuer: None,
            audiences: Vec::new(),
            require_expiration: true,
            clock_skew_secs: 60,
            max_lifetime_secs: None,
        }
    }
}

/// Checks issuer, time constraints, audience and lifetime, in Envoy's order.
///
/// Time follows jwt_verify_lib: not yet valid when `now + skew < nbf`, expired when `now > exp + skew`.
/// Unlike jwt_verify_lib, `exp: 0` is an expiry in 1970 (expired), not "no expiry".
pub fn check_claims(jwt: &Jwt<'_>, rules: &ClaimRules, now_secs: u64) -> Result<(), Status> {
    let claims = &jwt.claims;
    if let Some(issuer) = rules.issuer.as_deref().filter(|i| !i.is_empty()) {
        if claims.iss.as_deref() != Some(issuer) {
            return Err(Status::JwtUnknownIssuer);
        }
    }
    let skew = rules.clock_skew_secs;
    if let Some(nbf) = claims.nbf {
        if now_secs.saturating_add(skew) < nbf {
            return Err(Status::JwtNotYetValid);
        }
    }
    if let Some(exp) = claims.exp {
        if now_secs > exp.saturating_add(skew) {
            return Err(Status::JwtExpired);
        }
    }
    if !audience_allowed(&claims.aud, &rules.audiences) {
        return Err(Status::JwtAudienceNotAllowed);
    }
    match claims.exp {
        None if rules.require_expiration || rules.max_lifetime_secs.is_some() => {
            return Err(Status::JwtMissingExpiration)
        }
        None => {}
        Some(exp) => {
            if let Some(max) = rules.max_lifetime_secs {
                // A token issued in the future cannot shorten its own lifetime: `iat` beyond the clock
                // skew is not yet valid, and the lifetime runs from `iat` or now, whichever is earlier.
                if claims
                    .iat
                    .is_some_and(|iat| iat > now_secs.saturating_add(skew))
                {
                    return Err(Status::JwtNotYetValid);
                }
                let start = claims.iat.map_or(now_secs, |iat| iat.min(now_secs));
                if exp.saturating_sub(start) > max {
                    return Err(Status::JwtLifetimeTooLong);
                }
            }
        }
    }
    Ok(())
}

/// Envoy's audience normalisation (jwt_verify_lib `CheckAudience`): drop an `http://` or `https://` prefix and
/// one trailing `/`.
fn sanitize_audience(aud: &str) -> &str {
    let aud = aud
        .strip_prefix("http://")
        .or_else(|| aud.strip_prefix("https://"))
        .unwrap_or(aud);
    aud.strip_suffix('/').unwrap_or(aud)
}

fn audience_allowed(token: &[String], allowed: &[String]) -> bool {
    allowed.is_empty()
        || token.iter().any(|t| {
            let t = sanitize_audience(t);
            allowed.iter().any(|a| sanitize_audience(a) == t)
        })
}

/// Checks the signature with the key set (selection by `kid` and `alg`).
pub fn check_signature(jwt: &Jwt<'_>, keys: &KeySet) -> Result<(), Status> {
    check_signature_parts(
        jwt.alg,
        jwt.kid.as_deref(),
        jwt.signing_input.as_bytes(),
        &jwt.signature,
        keys,
    )
}

/// The signature check on its parts, for JWS whose payload is not a JWT (tests, conformance vectors).
///
/// Candidates are [`KeySet::candidates`]; each is tried in document order until one verifies.
/// - no key at all: `JwksNoValidKeys`;
/// - no candidate (no key with this `kid`, declared `alg` or key type): `JwksKidAlgMismatch`;
/// - candidates, none verifies: `JwtVerificationFail`.
pub fn check_signature_parts(
    alg: Alg,
    kid: Option<&str>,
    signing_input: &[u8],
    signature: &[u8],
    keys: &KeySet,
) -> Result<(), Status> {
    if keys.is_empty() {
        return Err(Status::JwksNoValidKeys);
    }
    let mut matched = false;
    for key in keys.candidates(kid, alg) {
        matched = true;
        if key.verify(alg, signing_input, signature) {
            return Ok(());
        }
    }
    Err(if matched {
        Status::JwtVerificationFail
    } else {
        Status::JwksKidAlgMismatch
    })
}

/// Claims first, then signature, as Envoy does.
pub fn verify(
    jwt: &Jwt<'_>,
    rules: &ClaimRules,
    keys: &KeySet,
    now_secs: u64,
) -> Result<(), Status> {
    check_claims(jwt, rules, now_secs)?;
    check_signature(jwt, keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::jws::parse;
    use base64ct::{Base64UrlUnpadded, Encoding};

    const SECRET_JWKS: &str = r#"{"keys":[{"kty":"oct","kid":"hs","alg":"HS256","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}"#;

    fn b64(text: &str) -> String {
        Base64UrlUnpadded::encode_string(text.as_bytes())
    }

    fn unsigned(payload: &str) -> String {
        format!("{}.{}.c2ln", b64(r#"{"alg":"HS256"}"#), b64(payload))
    }

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("https://issuer".into()),
            audiences: vec!["api".into()],
            require_expiration: true,
            clock_skew_secs: 60,
            max_lifetime_secs: None,
        }
    }

    fn claims_status(payload: &str, rules: &ClaimRules, now: u64) -> Result<(), Status> {
        let token = unsigned(payload);
        let jwt = parse(&token).expect("parses");
        check_claims(&jwt, rules, now)
    }

    #[test]
    fn a_wrong_issuer_wins_over_every_later_fault() {
        let p = r#"{"iss":"other","aud":"nope","exp":1}"#;
        assert_eq!(
            claims_status(p, &rules(), 1000),
            Err(Status::JwtUnknownIssuer)
        );
        let p = r#"{"aud":"api","exp":2000}"#;
        assert_eq!(
            claims_status(p, &rules(), 1000),
            Err(Status::JwtUnknownIssuer)
        );
    }

    #[test]
    fn expiry_and_not_before_allow_the_clock_skew_and_no_more() {
        let r = rules();
        let p = r#"{"iss":"https://issuer","aud":"api","exp":1000}"#;
        assert_eq!(claims_status(p, &r, 1060), Ok(()));
        assert_eq!(claims_status(p, &r, 1061), Err(Status::JwtExpired));
        let p = r#"{"iss":"https://issuer","aud":"api","nbf":1000,"exp":5000}"#;
        assert_eq!(claims_status(p, &r, 940), Ok(()));
        assert_eq!(claims_status(p, &r, 939), Err(Status::JwtNotYetValid));
        let far = ClaimRules {
            require_expiration: false,
            ..rules()
        };
        let p = r#"{"iss":"https://issuer","aud":"api","nbf":18446744073709549568}"#;
        assert_eq!(claims_status(p, &far, u64::MAX - 1), Ok(()), "no overflow");
        let huge_skew = ClaimRules {
            clock_skew_secs: u64::MAX,
            ..far
        };
        let p = r#"{"iss":"https://issuer","aud":"api","exp":18446744073709549568}"#;
        assert_eq!(
            claims_status(p, &huge_skew, u64::MAX),
            Ok(()),
            "no overflow"
        );
    }

    #[test]
    fn time_is_checked_before_audience() {
        let p = r#"{"iss":"https://issuer","aud":"nope","exp":10}"#;
        assert_eq!(claims_status(p, &rules(), 1000), Err(Status::JwtExpired));
    }

    #[test]
    fn audiences_compare_without_scheme_and_trailing_slash() {
        let r = ClaimRules {
            audiences: vec!["http://api".into(), "https://b/".into()],
            ..rules()
        };
        for aud in [
            r#""api""#,
            r#""https://api/""#,
            r#"["x","b"]"#,
            r#""http://b""#,
        ] {
            let p = format!(r#"{{"iss":"https://issuer","aud":{aud},"exp":2000}}"#);
            assert_eq!(claims_status(&p, &r, 1000), Ok(()), "{aud}");
        }
        for aud in [r#""apix""#, r#"[]"#, r#""ftp://api""#] {
            let p = format!(r#"{{"iss":"https://issuer","aud":{aud},"exp":2000}}"#);
            assert_eq!(
                claims_status(&p, &r, 1000),
                Err(Status::JwtAudienceNotAllowed),
                "{aud}"
            );
        }
        let p = r#"{"iss":"https://issuer","exp":2000}"#;
        assert_eq!(
            claims_status(p, &r, 1000),
            Err(Status::JwtAudienceNotAllowed)
        );
    }

    #[test]
    fn a_missing_expiry_is_refused_only_when_required() {
        let p = r#"{"iss":"https://issuer","aud":"api"}"#;
        assert_eq!(
            claims_status(p, &rules(), 1000),
            Err(Status::JwtMissingExpiration)
        );
        let lenient = ClaimRules {
            require_expiration: false,
            ..rules()
        };
        assert_eq!(claims_status(p, &lenient, 1000), Ok(()));
        let bounded = ClaimRules {
            max_lifetime_secs: Some(10),
            ..lenient
        };
        assert_eq!(
            claims_status(p, &bounded, 1000),
            Err(Status::JwtMissingExpiration)
        );
    }

    #[test]
    fn lifetime_is_measured_from_iat_or_else_from_now() {
        let r = ClaimRules {
            max_lifetime_secs: Some(100),
            ..rules()
        };
        let p = r#"{"iss":"https://issuer","aud":"api","iat":1000,"exp":1100}"#;
        assert_eq!(claims_status(p, &r, 1000), Ok(()));
        let p = r#"{"iss":"https://issuer","aud":"api","iat":999,"exp":1100}"#;
        assert_eq!(claims_status(p, &r, 1000), Err(Status::JwtLifetimeTooLong));
        let p = r#"{"iss":"https://issuer","aud":"api","exp":1101}"#;
        assert_eq!(claims_status(p, &r, 1000), Err(Status::JwtLifetimeTooLong));
    }

    #[test]
    fn a_future_iat_cannot_stretch_the_maximum_lifetime() {
        let r = ClaimRules {
            max_lifetime_secs: Some(100),
            ..rules()
        };
        // Issued "in a year", expiring a year and 100 s from now: 100 s by its own account.
        let p = r#"{"iss":"https://issuer","aud":"api","iat":31537000,"exp":31537100}"#;
        assert_eq!(claims_status(p, &r, 1000), Err(Status::JwtNotYetValid));
        // Within the skew the lifetime is counted from now.
        let p = r#"{"iss":"https://issuer","aud":"api","iat":1050,"exp":1140}"#;
        assert_eq!(claims_status(p, &r, 1000), Err(Status::JwtLifetimeTooLong));
        let p = r#"{"iss":"https://issuer","aud":"api","iat":1050,"exp":1100}"#;
        assert_eq!(claims_status(p, &r, 1000), Ok(()));
        // Without max_lifetime, iat is not judged (as before).
        let p = r#"{"iss":"https://issuer","aud":"api","iat":31537000,"exp":1100}"#;
        assert_eq!(claims_status(p, &rules(), 1000), Ok(()));
    }

    #[test]
    fn signature_outcomes_distinguish_no_key_from_a_bad_signature() {
        let keys = KeySet::from_jwks(SECRET_JWKS.as_bytes()).expect("keys");
        let input = b"header.payload";
        assert_eq!(
            check_signature_parts(Alg::HS256, Some("other"), input, &[0; 32], &keys),
            Err(Status::JwksKidAlgMismatch)
        );
        assert_eq!(
            check_signature_parts(Alg::HS384, None, input, &[0; 48], &keys),
            Err(Status::JwksKidAlgMismatch)
        );
        assert_eq!(
            check_signature_parts(Alg::RS256, Some("hs"), input, &[0; 256], &keys),
            Err(Status::JwksKidAlgMismatch)
        );
        assert_eq!(
            check_signature_parts(Alg::HS256, Some("hs"), input, &[0; 32], &keys),
            Err(Status::JwtVerificationFail)
        );
        assert_eq!(
            check_signature_parts(Alg::HS256, None, input, &[0; 32], &KeySet::default()),
            Err(Status::JwksNoValidKeys)
        );
    }
}
