//! What an HTTP header name may be made of, in one place: configuration refuses any other name, so
//! that a rule can never name a header Envoy would not hand over.

/// An HTTP token (RFC 9110 §5.6.2): letters, digits and ``!#$%&'*+-.^_`|~``. Header names are tokens.
pub fn is_token(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::is_token;

    #[test]
    fn tokens_are_header_names() {
        assert!(is_token("x-api-key"));
        assert!(is_token("X_Custom.1~"));
        assert!(!is_token("x api"));
        assert!(!is_token("x:api"));
        assert!(!is_token("é"));
    }
}
