//! JSON Web Token authentication, in the spirit of Envoy's `jwt_authn`.
//!
//! One small unit per responsibility, each depending only on the ones before it:
//! - [`alg`]: the signature algorithms apiguard accepts;
//! - [`keys`]: JWKS (and PEM) documents parsed into verifying keys;
//! - [`jws`]: a compact token split and decoded (no crypto);
//! - [`verify`]: claims checked against a provider's rules, then the signature against a key set;
//! - [`extract`]: where a token is looked for in a request (headers, query parameters, cookies);
//! - [`cache`]: verified tokens remembered until they expire;
//! - [`jwks_state`]: the lifecycle of a remote JWKS (fetch, cache, refresh, back-off), shared by workers;
//! - [`requirement`]: a route's requirement (one provider, any of, all of, allow missing).

pub mod alg;
pub mod cache;
mod ec_verify;
pub mod extract;
pub mod jwks_state;
pub mod jws;
pub mod keys;
pub mod requirement;
mod rsa_verify;
pub mod verify;

/// Every outcome of verifying a request's token, named as in Envoy's `jwt_verify_lib::Status` where Envoy
/// has the same outcome, so that operators can map one filter's logs and stats onto the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    /// No token in any configured location.
    JwtMissed,
    /// Token longer than the provider's `max_token_bytes`.
    JwtTooLarge,
    /// Not three dot-separated segments.
    JwtBadFormat,
    JwtHeaderParseErrorBadBase64,
    JwtHeaderParseErrorBadJson,
    /// `alg` missing or not a string.
    JwtHeaderBadAlg,
    /// `alg` is a string apiguard does not implement (including `none`).
    JwtHeaderNotImplementedAlg,
    /// `kid` present but not a string.
    JwtHeaderBadKid,
    /// `crit` present: no critical extension is understood, so the token is refused (RFC 7515 4.1.11).
    JwtHeaderBadCrit,
    JwtPayloadParseErrorBadBase64,
    JwtPayloadParseErrorBadJson,
    JwtPayloadParseErrorIssNotString,
    JwtPayloadParseErrorSubNotString,
    JwtPayloadParseErrorAudNotString,
    JwtPayloadParseErrorJtiNotString,
    JwtPayloadParseErrorIatNotInteger,
    JwtPayloadParseErrorNbfNotInteger,
    JwtPayloadParseErrorExpNotInteger,
    JwtPayloadParseErrorIatOutOfRange,
    JwtPayloadParseErrorNbfOutOfRange,
    JwtPayloadParseErrorExpOutOfRange,
    JwtSignatureParseErrorBadBase64,
    /// `exp` is absent and the provider requires it.
    JwtMissingExpiration,
    JwtExpired,
    JwtNotYetValid,
    /// `exp - iat` (or `exp - now`) exceeds the provider's `max_lifetime`.
    JwtLifetimeTooLong,
    JwtUnknownIssuer,
    JwtAudienceNotAllowed,
    /// Signature does not verify with the selected key.
    JwtVerificationFail,
    /// No key in the set matches the token's `kid` and `alg`.
    JwksKidAlgMismatch,
    /// The key set has no usable key.
    JwksNoValidKeys,
    /// Remote keys are not (yet) available: first fetch pending or failing.
    JwksFetchFail,
}

impl Status {
    /// Envoy's message for the status: the body of the 401/403 reply (`jwt_verify_lib::getStatusString`).
    pub fn message(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::JwtMissed => "Jwt is missing",
            Status::JwtTooLarge => "Jwt is too large",
            Status::JwtBadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            Status::JwtHeaderParseErrorBadBase64 => "Jwt header is an invalid Base64url encoded",
            Status::JwtHeaderParseErrorBadJson => "Jwt header is an invalid JSON",
            Status::JwtHeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            Status::JwtHeaderNotImplementedAlg => "Jwt header [alg] is not supported",
            Status::JwtHeaderBadKid => "Jwt header [kid] field is not a string",
            Status::JwtHeaderBadCrit => {
                "Jwt header [crit] names an extension that is not supported"
            }
            Status::JwtPayloadParseErrorBadBase64 => "Jwt payload is an invalid Base64url encoded",
            Status::JwtPayloadParseErrorBadJson => "Jwt payload is an invalid JSON",
            Status::JwtPayloadParseErrorIssNotString => "Jwt payload [iss] field is not a string",
            Status::JwtPayloadParseErrorSubNotString => "Jwt payload [sub] field is not a string",
            Status::JwtPayloadParseErrorAudNotString => {
                "Jwt payload [aud] field is not a string or string list"
            }
            Status::JwtPayloadParseErrorJtiNotString => "Jwt payload [jti] field is not a string",
            Status::JwtPayloadParseErrorIatNotInteger => {
                "Jwt payload [iat] field is not an integer"
            }
            Status::JwtPayloadParseErrorNbfNotInteger => {
                "Jwt payload [nbf] field is not an integer"
            }
            Status::JwtPayloadParseErrorExpNotInteger => {
                "Jwt payload [exp] field is not an integer"
            }
            Status::JwtPayloadParseErrorIatOutOfRange => {
                "Jwt payload [iat] field is not a positive 64 bit integer"
            }
            Status::JwtPayloadParseErrorNbfOutOfRange => {
                "Jwt payload [nbf] field is not a positive 64 bit integer"
            }
            Status::JwtPayloadParseErrorExpOutOfRange => {
                "Jwt payload [exp] field is not a positive 64 bit integer"
            }
            Status::JwtSignatureParseErrorBadBase64 => {
                "Jwt signature is an invalid Base64url encoded"
            }
            Status::JwtMissingExpiration => "Jwt has no expiration",
            Status::JwtExpired => "Jwt is expired",
            Status::JwtNotYetValid => "Jwt not yet valid",
            Status::JwtLifetimeTooLong => "Jwt lifetime is too long",
            Status::JwtUnknownIssuer => "Jwt issuer is not configured",
            Status::JwtAudienceNotAllowed => "Audiences in Jwt are not allowed",
            Status::JwtVerificationFail => "Jwt verification fails",
            Status::JwksKidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
            Status::JwksNoValidKeys => "Jwks doesn't have any valid public key",
            Status::JwksFetchFail => "Jwks remote fetch is failed",
        }
    }

    /// Short snake_case name used in metric names and log lines.
    pub fn metric_name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::JwtMissed => "missing",
            Status::JwtTooLarge => "too_large",
            Status::JwtExpired => "expired",
            Status::JwtNotYetValid => "not_yet_valid",
            Status::JwtMissingExpiration | Status::JwtLifetimeTooLong => "lifetime",
            Status::JwtUnknownIssuer => "unknown_issuer",
            Status::JwtAudienceNotAllowed => "audience_not_allowed",
            Status::JwtVerificationFail => "signature_invalid",
            Status::JwksKidAlgMismatch => "no_matching_key",
            Status::JwksNoValidKeys | Status::JwksFetchFail => "keys_unavailable",
            _ => "malformed",
        }
    }
}
