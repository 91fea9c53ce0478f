//! A compact JWS token split and decoded: header, claims, signature. No cryptography here.
// STUB: to be completed by the JWT unit owner.

use super::alg::Alg;
use super::Status;

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
}

/// A parsed token. `raw` borrows the request's token string.
#[derive(Debug, Clone)]
pub struct Jwt<'a> {
    pub raw: &'a str,
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Claims,
    /// The decoded payload object (for `claim_to_headers` and authorization).
    pub payload: serde_json::Map<String, serde_json::Value>,
    /// The payload segment exactly as received (base64url), for `forward_payload_header`.
    pub payload_b64: &'a str,
    /// `header.payload` as received: the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// Parses a compact JWS. Errors are `jwt_verify_lib` parse statuses.
pub fn parse(_token: &str) -> Result<Jwt<'_>, Status> {
    Err(Status::JwtBadFormat)
}
