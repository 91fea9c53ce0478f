//! Where a provider looks for its token: request headers (with a value prefix such as `Bearer `),
//! query parameters and cookies. No cryptography and no decoding here, as in Envoy's extractor.

pub use crate::request::TokenSource;

/// One configured token location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLocation {
    /// `name` is lower-case; `value_prefix` is matched case-insensitively (auth schemes are, RFC 7235).
    Header {
        name: String,
        value_prefix: String,
    },
    Param(String),
    Cookie(String),
}

impl TokenLocation {
    /// Envoy's defaults when a provider names no location: `Authorization: Bearer <jwt>` and `?access_token=<jwt>`.
    pub fn envoy_defaults() -> Vec<TokenLocation> {
        vec![
            TokenLocation::Header {
                name: "authorization".into(),
                value_prefix: "Bearer ".into(),
            },
            TokenLocation::Param("access_token".into()),
        ]
    }
}

/// A token found in the request, borrowed from the header or path it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundToken<'r> {
    pub token: &'r str,
    /// Where it was found (index into the provider's locations), so that it can be removed.
    pub location: usize,
}

/// Every token the locations yield, in location order. Empty when the request carries none.
pub fn extract<'r>(
    locations: &[TokenLocation],
    source: &'r dyn TokenSource,
) -> Vec<FoundToken<'r>> {
    let mut found = Vec::new();
    for (location, spec) in locations.iter().enumerate() {
        let token = match spec {
            TokenLocation::Header { name, value_prefix } => source
                .header(name)
                .and_then(|value| after_prefix(value, value_prefix)),
            TokenLocation::Param(name) => query_param(source.query(), name),
            TokenLocation::Cookie(name) => source.header("cookie").and_then(|c| cookie(c, name)),
        };
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            found.push(FoundToken { token, location });
        }
    }
    found
}

/// The token after `prefix` at the start of the value, up to the first space or comma.
fn after_prefix<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let value = value.trim_start();
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = value.get(prefix.len()..)?;
    // A byte scan: `split` with a char-set pattern decodes every char of the token (8.8k instructions
    // for a 300-byte one); the delimiters are ASCII, so any match is a char boundary.
    let end = rest
        .bytes()
        .position(|b| matches!(b, b' ' | b',' | b'\t'))
        .unwrap_or(rest.len());
    rest.get(..end)
}

fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

fn cookie<'c>(header: &'c str, name: &str) -> Option<&'c str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then(|| value.trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Req {
        headers: HashMap<&'static str, &'static str>,
        query: &'static str,
    }

    impl TokenSource for Req {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).copied()
        }
        fn query(&self) -> &str {
            self.query
        }
    }

    fn req(headers: &[(&'static str, &'static str)], query: &'static str) -> Req {
        Req {
            headers: headers.iter().copied().collect(),
            query,
        }
    }

    #[test]
    fn bearer_token_is_found_in_authorization_whatever_the_scheme_case() {
        let locations = TokenLocation::envoy_defaults();
        let r = req(&[("authorization", "bearer abc.def.ghi")], "");
        let found = extract(&locations, &r);
        assert_eq!(
            found,
            vec![FoundToken {
                token: "abc.def.ghi",
                location: 0
            }]
        );
    }

    #[test]
    fn a_prefix_that_does_not_match_yields_no_token_like_envoy() {
        let locations = TokenLocation::envoy_defaults();
        assert!(extract(&locations, &req(&[("authorization", "Bearer-invalid")], "")).is_empty());
        assert!(extract(&locations, &req(&[("authorization", "Basic dXNlcg==")], "")).is_empty());
        assert!(extract(&locations, &req(&[("authorization", "Bearer ")], "")).is_empty());
    }

    #[test]
    fn tokens_in_query_and_cookie_are_found_in_location_order() {
        let locations = vec![
            TokenLocation::Header {
                name: "authorization".into(),
                value_prefix: "Bearer ".into(),
            },
            TokenLocation::Param("access_token".into()),
            TokenLocation::Cookie("session".into()),
        ];
        let r = req(
            &[("cookie", "a=1; session=c.c.c; b=2")],
            "x=1&access_token=q.q.q&y=2",
        );
        let found = extract(&locations, &r);
        assert_eq!(
            found.iter().map(|f| f.token).collect::<Vec<_>>(),
            vec!["q.q.q", "c.c.c"]
        );
        assert_eq!(
            found.iter().map(|f| f.location).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn a_parameter_name_must_match_exactly() {
        let locations = vec![TokenLocation::Param("token".into())];
        assert!(extract(&locations, &req(&[], "xtoken=a&tokens=b&token")).is_empty());
    }
}
