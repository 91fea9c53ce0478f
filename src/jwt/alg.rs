//! The signature algorithms apiguard accepts (`alg` header values). `none` is never one of them.
//!
//! Names are matched exactly and case-sensitively (RFC 7515 4.1.1): `none`, `None`, `NONE`, `nOnE`, `hs256`,
//! `ES512` and every other string are simply not algorithms, and the token is refused with
//! [`Status::JwtHeaderNotImplementedAlg`](super::Status::JwtHeaderNotImplementedAlg).
//! `ES512` (P-521) is implemented by Envoy but not here: no P-521 crate is linked into the filter.

/// A JWS signature algorithm apiguard can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// The kind of key an algorithm needs. A key is only ever used with algorithms of its own family, so an
/// RSA public key can never be mistaken for an HMAC secret (the classic `RS256` → `HS256` confusion).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `HS*`: a shared secret (`kty: oct`).
    Hmac,
    /// `RS*` and `PS*`: an RSA public key.
    Rsa,
    /// `ES*`: an elliptic-curve public key (`kty: EC`).
    Ecdsa,
    /// `EdDSA`: an Ed25519 public key (`kty: OKP`).
    EdDsa,
}

impl Alg {
    /// Every algorithm, in a stable order.
    pub const ALL: [Alg; 12] = [
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// The algorithm named exactly `name`, or `None` (for `none` in any spelling and every unknown name).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The registered JWS name (`"RS256"`, `"EdDSA"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// The kind of key this algorithm verifies with.
    pub fn family(self) -> Family {
        match self {
            Alg::HS256 | Alg::HS384 | Alg::HS512 => Family::Hmac,
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                Family::Rsa
            }
            Alg::ES256 | Alg::ES384 => Family::Ecdsa,
            Alg::EdDSA => Family::EdDsa,
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips_through_its_name() {
        for alg in Alg::ALL {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
    }

    #[test]
    fn none_in_any_spelling_is_not_an_algorithm() {
        for name in ["none", "None", "NONE", "nOnE", "", " none", "none "] {
            assert_eq!(Alg::from_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn names_are_case_sensitive_and_unknown_names_are_refused() {
        for name in [
            "hs256", "Rs256", "ES512", "ES256K", "EDDSA", "PS256 ", "HS333",
        ] {
            assert_eq!(Alg::from_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn each_algorithm_belongs_to_the_family_of_its_prefix() {
        for alg in Alg::ALL {
            let expected = match alg.name().get(..2) {
                Some("HS") => Family::Hmac,
                Some("RS") | Some("PS") => Family::Rsa,
                Some("ES") => Family::Ecdsa,
                _ => Family::EdDsa,
            };
            assert_eq!(alg.family(), expected, "{alg}");
        }
    }
}
