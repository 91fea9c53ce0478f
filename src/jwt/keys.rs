//! JWKS and PEM documents parsed into verifying keys.
// STUB: to be completed by the JWT unit owner.

/// A parsed key set: every usable key of a JWKS document (or one PEM key).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    len: usize,
}

/// Why a key document was refused, named as `jwt_verify_lib`'s `Jwks*` statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError {
    /// `jwt_verify_lib` status name, e.g. `JwksNoKeys`.
    pub status: &'static str,
    /// Human-readable reason; never contains key material.
    pub detail: String,
}

impl std::fmt::Display for JwksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`).
    pub fn from_jwks(_json: &[u8]) -> Result<KeySet, JwksError> {
        Err(JwksError {
            status: "JwksParseError",
            detail: "not implemented".into(),
        })
    }

    /// Parses one PEM public key.
    pub fn from_pem(_text: &str) -> Result<KeySet, JwksError> {
        Err(JwksError {
            status: "JwksPemBadBase64",
            detail: "not implemented".into(),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
