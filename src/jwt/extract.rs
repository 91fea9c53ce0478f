//! Where a provider looks for its token: request headers (with a value prefix such as `Bearer `),
//! query parameters and cookies. No cryptography and no decoding of the token here, as in Envoy's
//! extractor.
//!
//! Envoy's extractor (`jwt_authn/extractor.cc`) takes every copy of a token header, finds the prefix
//! anywhere in the value, percent-decodes query parameter names, reads every `Cookie` header and keeps
//! the first cookie of a name. apiguard is at least as strict, and refuses (`JwtBadFormat`) wherever the
//! request could mean two different credentials, instead of choosing one copy:
//! - a token header present more than once, or not UTF-8;
//! - a token header that holds the prefix anywhere but at the start (`Basic x, Bearer t`), or a token
//!   followed or preceded by whitespace or a comma (`Bearer  t`, `Bearer a,Bearer b`);
//! - a token parameter present more than once (names compared after percent-decoding, as Envoy);
//! - more than one `Cookie` header, or a token cookie present more than once;
//! - a token parameter or cookie present with an empty value (Envoy verifies the empty token and fails).

use super::Status;

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

/// The status of a request whose credentials are ambiguous or malformed before any token is parsed.
pub const AMBIGUOUS: Status = Status::JwtBadFormat;

/// Every token the locations yield, in location order (empty when the request carries none), or
/// [`AMBIGUOUS`] when a location is present in a way that could mean more than one credential.
pub fn extract<'r>(
    locations: &[TokenLocation],
    source: &'r dyn TokenSource,
) -> Result<Vec<FoundToken<'r>>, Status> {
    let mut found = Vec::new();
    for (location, spec) in locations.iter().enumerate() {
        let token = match spec {
            TokenLocation::Header { name, value_prefix } => {
                header_token(source, name, value_prefix)?
            }
            TokenLocation::Param(name) => query_param(source.query(), name)?,
            TokenLocation::Cookie(name) => cookie_token(source, name)?,
        };
        if let Some(token) = token {
            found.push(FoundToken { token, location });
        }
    }
    Ok(found)
}

/// The one readable value of a header, `None` when absent, [`AMBIGUOUS`] when repeated or not UTF-8.
fn single_header<'r>(source: &'r dyn TokenSource, name: &str) -> Result<Option<&'r str>, Status> {
    match source.header_count(name) {
        0 => Ok(None),
        1 if source.header_is_utf8(name) => source.header(name).map(Some).ok_or(AMBIGUOUS),
        _ => Err(AMBIGUOUS),
    }
}

/// Header whitespace (RFC 9110 OWS) and the list separator.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | ',') || c.is_whitespace()
}

/// Whether `text` holds a separator (`is_separator`). Tokens are ASCII, so the bytes are scanned in a plain loop
/// and only text with a non-ASCII byte is decoded as chars: the release build is opt-level "z", which does not
/// inline `str::contains`'s char iterator, and a per-char call for every byte of a token costs more than the rest
/// of a cached verification.
fn has_separator(text: &str) -> bool {
    for &b in text.as_bytes() {
        if b >= 0x80 {
            return text.contains(is_separator);
        }
        // ASCII `char::is_whitespace`: space, \t, \n, vertical tab, form feed, \r.
        if matches!(b, b' ' | b'\t' | b',' | b'\n' | 0x0b | 0x0c | b'\r') {
            return true;
        }
    }
    false
}

fn header_token<'r>(
    source: &'r dyn TokenSource,
    name: &str,
    prefix: &str,
) -> Result<Option<&'r str>, Status> {
    let Some(value) = single_header(source, name)? else {
        return Ok(None);
    };
    // Envoy's codec trims the value's surrounding whitespace.
    let value = value.trim_matches([' ', '\t']);
    let rest = if prefix.is_empty() {
        value
    } else {
        match value.get(..prefix.len()) {
            Some(head) if head.eq_ignore_ascii_case(prefix) => {
                let rest = value.get(prefix.len()..).unwrap_or("");
                // A prefix configured without its separator (`Bearer`) takes one space after it.
                if prefix.ends_with([' ', '\t']) {
                    rest
                } else {
                    rest.strip_prefix(' ').unwrap_or(rest)
                }
            }
            _ => {
                // Envoy finds the prefix anywhere in the value (`Basic x, Bearer t`).
                let lower = value.to_ascii_lowercase();
                if lower.contains(&prefix.to_ascii_lowercase()) {
                    return Err(AMBIGUOUS);
                }
                return Ok(None);
            }
        }
    };
    if rest.is_empty() {
        // `Bearer` alone: Envoy's trimmed value lacks the prefix, so no token.
        return Ok(None);
    }
    if has_separator(rest) {
        return Err(AMBIGUOUS);
    }
    Ok(Some(rest))
}

/// Percent-decodes `%XX` (other bytes, and `%` not followed by two hex digits, stay as they are), as
/// Envoy's `PercentEncoding::decode`. `plus` also turns `+` into a space.
fn percent_decode(text: &str, plus: bool) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|h| (*h as char).to_digit(16));
            if let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(0));
                i += 3;
                continue;
            }
        }
        out.push(if plus && b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

/// Whether a raw query key names the parameter `name` once decoded (with `+` as itself or as a space:
/// either reading counts, so that no decoding can hide a token).
pub fn param_name_matches(raw_key: &str, name: &str) -> bool {
    if raw_key == name {
        return true;
    }
    if !raw_key.contains(['%', '+']) {
        return false;
    }
    percent_decode(raw_key, false) == name.as_bytes()
        || percent_decode(raw_key, true) == name.as_bytes()
}

fn query_param<'q>(query: &'q str, name: &str) -> Result<Option<&'q str>, Status> {
    let mut found = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !param_name_matches(key, name) {
            continue;
        }
        if found.is_some() || value.is_empty() {
            return Err(AMBIGUOUS);
        }
        found = Some(value);
    }
    Ok(found)
}

fn cookie_token<'r>(source: &'r dyn TokenSource, name: &str) -> Result<Option<&'r str>, Status> {
    let Some(header) = single_header(source, "cookie")? else {
        return Ok(None);
    };
    let mut found = None;
    for pair in header.split(';') {
        let Some((key, value)) = pair.trim().split_once('=') else {
            continue;
        };
        if key != name {
            continue;
        }
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if found.is_some() || value.is_empty() {
            return Err(AMBIGUOUS);
        }
        found = Some(value);
    }
    Ok(found)
}

/// `path` without every query parameter named (after decoding) by one of `names`; the rest of the
/// path and query is kept byte for byte. `None` when nothing is removed. The `?` goes when the
/// query ends up empty.
pub fn strip_params(path: &str, names: &[&str]) -> Option<String> {
    let (before, query) = path.split_once('?')?;
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut removed = false;
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if names.iter().any(|n| param_name_matches(key, n)) {
            removed = true;
        } else {
            kept.push(pair);
        }
    }
    if !removed {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    out.push_str(before);
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Headers, Request};

    /// The request's headers, and `query` as its `:path`'s query string.
    fn req(headers: &[(&str, &str)], query: &str) -> Request {
        Request::of(headers).with_header(":path", format!("/?{query}"))
    }

    fn tokens<'r>(locations: &[TokenLocation], r: &'r Request) -> Result<Vec<&'r str>, Status> {
        extract(locations, r).map(|f| f.iter().map(|t| t.token).collect())
    }

    fn defaults() -> Vec<TokenLocation> {
        TokenLocation::envoy_defaults()
    }

    fn with_cookie() -> Vec<TokenLocation> {
        vec![TokenLocation::Cookie("session".into())]
    }

    #[test]
    fn bearer_token_is_found_in_authorization_whatever_the_scheme_case() {
        let r = req(&[("authorization", "bearer abc.def.ghi")], "");
        let found = extract(&defaults(), &r).unwrap();
        assert_eq!(
            found,
            vec![FoundToken {
                token: "abc.def.ghi",
                location: 0
            }]
        );
    }

    #[test]
    fn a_prefix_that_does_not_match_anywhere_yields_no_token_like_envoy() {
        let l = defaults();
        assert_eq!(
            tokens(&l, &req(&[("authorization", "Bearer-invalid")], "")),
            Ok(vec![])
        );
        assert_eq!(
            tokens(&l, &req(&[("authorization", "Basic dXNlcg==")], "")),
            Ok(vec![])
        );
        assert_eq!(
            tokens(&l, &req(&[("authorization", "Bearer ")], "")),
            Ok(vec![])
        );
        assert_eq!(
            tokens(&l, &req(&[("authorization", "Bearer")], "")),
            Ok(vec![])
        );
    }

    #[test]
    fn a_prefix_followed_by_more_whitespace_is_refused_not_read_as_missing() {
        let l = defaults();
        for value in [
            "Bearer  a.b.c",
            "Bearer \ta.b.c",
            "Bearer a.b.c x",
            "Bearer a.b.c\tx",
        ] {
            assert_eq!(
                tokens(&l, &req(&[("authorization", value)], "")),
                Err(AMBIGUOUS),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_comma_list_of_credentials_in_the_token_header_is_refused() {
        let l = defaults();
        for value in [
            "Basic x, Bearer a.b.c",
            "Bearer a.b.c, Bearer d.e.f",
            "Bearer a.b.c,Basic x",
            "Digest x,bearer a.b.c",
        ] {
            assert_eq!(
                tokens(&l, &req(&[("authorization", value)], "")),
                Err(AMBIGUOUS),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_token_header_present_twice_is_refused_whatever_the_copies_hold() {
        let l = defaults();
        let r = req(
            &[
                ("authorization", "Bearer a.b.c"),
                ("authorization", "Bearer d.e.f"),
            ],
            "",
        );
        assert_eq!(tokens(&l, &r), Err(AMBIGUOUS));
        let r = req(
            &[
                ("authorization", "Basic x"),
                ("authorization", "Bearer d.e.f"),
            ],
            "",
        );
        assert_eq!(tokens(&l, &r), Err(AMBIGUOUS));
    }

    #[test]
    fn a_token_header_that_is_not_utf8_is_refused() {
        let r = Request::new(Headers::of_bytes(&[("authorization", b"\xff")]), false);
        assert_eq!(tokens(&defaults(), &r), Err(AMBIGUOUS));
    }

    #[test]
    fn a_prefix_configured_without_its_space_takes_exactly_one() {
        let l = vec![TokenLocation::Header {
            name: "authorization".into(),
            value_prefix: "Bearer".into(),
        }];
        assert_eq!(
            tokens(&l, &req(&[("authorization", "Bearer a.b.c")], "")),
            Ok(vec!["a.b.c"])
        );
        assert_eq!(
            tokens(&l, &req(&[("authorization", "Bearer  a.b.c")], "")),
            Err(AMBIGUOUS)
        );
    }

    #[test]
    fn an_empty_prefix_takes_the_whole_value_and_refuses_whitespace_in_it() {
        let l = vec![TokenLocation::Header {
            name: "x-jwt".into(),
            value_prefix: String::new(),
        }];
        assert_eq!(
            tokens(&l, &req(&[("x-jwt", " a.b.c ")], "")),
            Ok(vec!["a.b.c"])
        );
        assert_eq!(
            tokens(&l, &req(&[("x-jwt", "a.b.c d.e.f")], "")),
            Err(AMBIGUOUS)
        );
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
        let found = extract(&locations, &r).unwrap();
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
    fn a_parameter_name_must_match_exactly_once_decoded() {
        let locations = vec![TokenLocation::Param("token".into())];
        assert_eq!(
            tokens(&locations, &req(&[], "xtoken=a&tokens=b")),
            Ok(vec![])
        );
        assert_eq!(
            tokens(&defaults(), &req(&[], "access%5Ftoken=a.b.c")),
            Ok(vec!["a.b.c"])
        );
        assert_eq!(
            tokens(&defaults(), &req(&[], "access%5ftoken=a.b.c")),
            Ok(vec!["a.b.c"])
        );
        assert_eq!(
            tokens(&defaults(), &req(&[], "%61ccess_token=a.b.c")),
            Ok(vec!["a.b.c"])
        );
    }

    #[test]
    fn a_parameter_present_twice_or_empty_is_refused() {
        let l = defaults();
        assert_eq!(
            tokens(&l, &req(&[], "access_token=a.b.c&access_token=d.e.f")),
            Err(AMBIGUOUS)
        );
        assert_eq!(
            tokens(&l, &req(&[], "access_token=a.b.c&access%5Ftoken=d.e.f")),
            Err(AMBIGUOUS)
        );
        assert_eq!(tokens(&l, &req(&[], "access_token=")), Err(AMBIGUOUS));
        assert_eq!(tokens(&l, &req(&[], "x=1&access_token")), Err(AMBIGUOUS));
    }

    #[test]
    fn a_cookie_present_twice_in_one_or_several_headers_is_refused() {
        let l = with_cookie();
        assert_eq!(
            tokens(&l, &req(&[("cookie", "session=\"a.b.c\"")], "")),
            Ok(vec!["a.b.c"])
        );
        assert_eq!(
            tokens(&l, &req(&[("cookie", "session=a.b.c; session=d.e.f")], "")),
            Err(AMBIGUOUS)
        );
        let r = req(&[("cookie", "a=1"), ("cookie", "session=d.e.f")], "");
        assert_eq!(tokens(&l, &r), Err(AMBIGUOUS));
        assert_eq!(
            tokens(&l, &req(&[("cookie", "session=")], "")),
            Err(AMBIGUOUS)
        );
        assert_eq!(tokens(&l, &req(&[("cookie", "other=1")], "")), Ok(vec![]));
    }

    #[test]
    fn stripping_removes_every_copy_and_keeps_the_rest_byte_for_byte() {
        assert_eq!(
            strip_params(
                "/a?x=%2F&access_token=t&y=1+2&access%5Ftoken=u",
                &["access_token"]
            )
            .as_deref(),
            Some("/a?x=%2F&y=1+2")
        );
        assert_eq!(
            strip_params("/a?access_token=t", &["access_token"]).as_deref(),
            Some("/a")
        );
        assert_eq!(strip_params("/a?x=1", &["access_token"]), None);
        assert_eq!(strip_params("/a", &["access_token"]), None);
        assert_eq!(
            strip_params("/a?x=1&&access_token=t&tok=2", &["access_token", "tok"]).as_deref(),
            Some("/a?x=1&")
        );
    }

    #[test]
    fn the_byte_scan_finds_the_separators_the_char_test_finds() {
        let samples = [
            "abc.def.ghi",
            "a b",
            "a\tb",
            "a,b",
            "a\nb",
            "a\u{b}b",
            "a\u{c}b",
            "a\rb",
            "a\u{a0}b",
            "a\u{2003}b",
            "a\u{3000}b",
            "\u{e9}t\u{e9}",
            "",
            "-_.~+/=",
            "a\u{85}b",
        ];
        for text in samples {
            assert_eq!(has_separator(text), text.contains(is_separator), "{text:?}");
        }
        for b in 0u8..0x80 {
            let text = format!("x{}y", char::from(b));
            assert_eq!(
                has_separator(&text),
                text.contains(is_separator),
                "byte {b:#x}"
            );
        }
    }
}
