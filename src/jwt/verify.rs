//! Claims checked against a provider's rules, then the signature against a key set.
// STUB: to be completed by the JWT unit owner.

use super::jws::Jwt;
use super::keys::KeySet;
use super::Status;

/// What a provider requires of a token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    /// Required `iss`; `None` accepts any issuer.
    pub issuer: Option<String>,
    /// Accepted audiences (any of); empty accepts any audience.
    pub audiences: Vec<String>,
    /// Refuse tokens without `exp` (default true).
    pub require_expiration: bool,
    /// Allowed clock difference for `exp` and `nbf`, seconds (default 60).
    pub clock_skew_secs: u64,
    /// Longest accepted lifetime (`exp - iat`, or `exp - now` without `iat`), seconds.
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

/// Checks issuer, time constraints and audience, in Envoy's order.
pub fn check_claims(_jwt: &Jwt<'_>, _rules: &ClaimRules, _now_secs: u64) -> Result<(), Status> {
    Err(Status::JwtVerificationFail)
}

/// Checks the signature with the key set (selection by `kid` and `alg`).
pub fn check_signature(_jwt: &Jwt<'_>, _keys: &KeySet) -> Result<(), Status> {
    Err(Status::JwtVerificationFail)
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
