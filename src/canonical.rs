//! The one canonical form of a request path, shared by route rules, schema (OpenAPI) operation
//! matching and discovery, so that all three judge the same path an origin server most likely serves.
//!
//! [`canonicalize`] takes a `:path` value and returns its path part (the query string is returned
//! apart, untouched) with:
//! - percent-escapes of unreserved characters decoded (RFC 3986 §2.3: `A-Z a-z 0-9 - . _ ~`, hex
//!   digits in either case), every other escape kept with upper-case hex (`%2f` → `%2F`);
//! - dot segments removed (RFC 3986 §5.2.4), including those written as escapes (`%2e%2e`);
//! - repeated slashes merged (`//api///x` → `/api/x`), a trailing slash kept;
//! - matrix parameters (`;name=value` inside a segment, as in `;jsessionid=...`) removed from the
//!   segment and reported ([`Canonical::matrix`]).
//!
//! What canonicalisation cannot settle is reported in [`Canonical::ambiguity`]: an encoded `/` or
//! `\`, a raw `\`, a dot segment written with escapes, a NUL, escapes that decode to invalid UTF-8,
//! a malformed escape, a `#` or a non-empty path that does not start with `/` (other than `*`).
//! Different servers read such paths differently, so a filter cannot know which resource they reach.
//!
//! The function is idempotent (the canonical path of a canonical path is itself), never panics and
//! borrows the input when it is already canonical (the common case allocates nothing).

use std::borrow::Cow;

/// What stays ambiguous in a path after canonicalisation (a set of flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Ambiguity(u16);

impl Ambiguity {
    /// `%2F`: an encoded slash (one segment to some servers, two to others).
    pub const ENCODED_SLASH: Ambiguity = Ambiguity(1);
    /// `\` or `%5C`: a path separator on some servers.
    pub const BACKSLASH: Ambiguity = Ambiguity(1 << 1);
    /// A dot segment written with escapes (`%2e`, `%2e%2e`, `.%2e`, ...): resolved here, but a server
    /// that decodes after resolving dot segments reaches another resource.
    pub const ENCODED_DOT_SEGMENT: Ambiguity = Ambiguity(1 << 2);
    /// `%00` or a raw NUL.
    pub const NUL: Ambiguity = Ambiguity(1 << 3);
    /// Escapes that decode to bytes that are not UTF-8 (`%C0%AE`, an overlong `.`).
    pub const INVALID_UTF8: Ambiguity = Ambiguity(1 << 4);
    /// A `%` not followed by two hex digits.
    pub const MALFORMED_ESCAPE: Ambiguity = Ambiguity(1 << 5);
    /// A `#` in the path (a fragment is never sent; servers disagree on what it means).
    pub const FRAGMENT: Ambiguity = Ambiguity(1 << 6);
    /// A path that starts with something else than `/` (and is neither `*` nor empty).
    pub const NOT_ABSOLUTE: Ambiguity = Ambiguity(1 << 7);

    const NAMES: [(Ambiguity, &'static str); 8] = [
        (Ambiguity::ENCODED_SLASH, "encoded_slash"),
        (Ambiguity::BACKSLASH, "backslash"),
        (Ambiguity::ENCODED_DOT_SEGMENT, "encoded_dot_segment"),
        (Ambiguity::NUL, "nul"),
        (Ambiguity::INVALID_UTF8, "invalid_utf8"),
        (Ambiguity::MALFORMED_ESCAPE, "malformed_escape"),
        (Ambiguity::FRAGMENT, "fragment"),
        (Ambiguity::NOT_ABSOLUTE, "not_absolute"),
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, flag: Ambiguity) -> bool {
        self.0 & flag.0 == flag.0 && flag.0 != 0
    }

    pub fn insert(&mut self, flag: Ambiguity) {
        self.0 |= flag.0;
    }

    /// The names of the flags that are set (for logs and tests).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Ambiguity::NAMES
            .into_iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, name)| name)
    }
}

/// A `:path` in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical<'a> {
    /// The canonical path, without query string; borrowed when the input was already canonical.
    pub path: Cow<'a, str>,
    /// The query string as sent, without `?` (`None` when there is no `?`).
    pub query: Option<&'a str>,
    /// What canonicalisation could not settle; empty for an unambiguous path.
    pub ambiguity: Ambiguity,
    /// Some segment carried matrix parameters (`;...`), removed from [`Canonical::path`].
    pub matrix: bool,
}

impl Canonical<'_> {
    /// The path is ambiguous (see [`Ambiguity`]); matrix parameters alone are not.
    pub fn is_ambiguous(&self) -> bool {
        !self.ambiguity.is_empty()
    }

    /// The canonical path followed by the query string as sent (`/a/b?x=1`).
    pub fn with_query(&self) -> Cow<'_, str> {
        match self.query {
            None => Cow::Borrowed(self.path.as_ref()),
            Some(query) => Cow::Owned(format!("{}?{query}", self.path)),
        }
    }
}

/// The canonical form of `raw` (a `:path` value: path, optionally `?` and a query string).
pub fn canonicalize(raw: &str) -> Canonical<'_> {
    let (path, query) = match raw.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (raw, None),
    };
    let mut ambiguity = Ambiguity::default();
    // A fragment ends the path for this filter (as before); its presence is itself ambiguous.
    let path = match path.split_once('#') {
        Some((before, _)) => {
            ambiguity.insert(Ambiguity::FRAGMENT);
            before
        }
        None => path,
    };
    if !path.starts_with('/') {
        // `*` (OPTIONS) and no path at all (CONNECT) name no resource by path.
        if path != "*" && !path.is_empty() {
            ambiguity.insert(Ambiguity::NOT_ABSOLUTE);
        }
        return Canonical {
            path: Cow::Borrowed(path),
            query,
            ambiguity,
            matrix: false,
        };
    }
    if is_canonical(path) {
        return Canonical {
            path: Cow::Borrowed(path),
            query,
            ambiguity,
            matrix: false,
        };
    }
    let mut out = String::with_capacity(path.len());
    let mut matrix = false;
    let mut trailing_slash = false;
    let mut scratch = Vec::new();
    // The path starts with '/': the first piece of the split is empty.
    for raw_segment in path.split('/').skip(1) {
        let segment = match raw_segment.split_once(';') {
            Some((segment, _)) => {
                matrix = true;
                segment
            }
            None => raw_segment,
        };
        let decoded = decode_segment(segment, &mut ambiguity, &mut scratch);
        let escaped = segment.contains('%');
        match decoded.as_ref() {
            "" => trailing_slash = true,
            "." | ".." => {
                if escaped {
                    ambiguity.insert(Ambiguity::ENCODED_DOT_SEGMENT);
                }
                if decoded == ".." {
                    let cut = out.rfind('/').unwrap_or(0);
                    out.truncate(cut);
                }
                trailing_slash = true;
            }
            text => {
                out.push('/');
                out.push_str(text);
                trailing_slash = false;
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    let path = if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    };
    Canonical {
        path,
        query,
        ambiguity,
        matrix,
    }
}

/// Quick check for the common case: nothing to decode, resolve, merge or report.
fn is_canonical(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes
        .iter()
        .any(|b| matches!(b, b'%' | b';' | b'\\' | b'\0'))
    {
        return false;
    }
    // No empty segment except a trailing slash, no `.` or `..` segment.
    let last = path.split('/').count().saturating_sub(1);
    path.split('/')
        .enumerate()
        .skip(1)
        .all(|(i, segment)| match segment {
            "" => i == last,
            "." | ".." => false,
            _ => true,
        })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escape(out: &mut String, byte: u8) {
    out.push('%');
    for nibble in [byte >> 4, byte & 0xf] {
        let digit = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
        out.push(char::from(digit));
    }
}

/// Decodes the unreserved escapes of one segment (other escapes stay, upper-cased; a malformed `%`
/// becomes `%25` so that a second pass reads the same thing) and notes what is ambiguous. `scratch`
/// collects the fully decoded bytes, to check that they are UTF-8.
fn decode_segment<'s>(
    segment: &'s str,
    ambiguity: &mut Ambiguity,
    scratch: &mut Vec<u8>,
) -> Cow<'s, str> {
    if segment.contains('\\') {
        ambiguity.insert(Ambiguity::BACKSLASH);
    }
    if segment.contains('\0') {
        ambiguity.insert(Ambiguity::NUL);
    }
    if !segment.contains('%') {
        return Cow::Borrowed(segment);
    }
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    scratch.clear();
    let mut high_bytes = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let escape = (
                bytes.get(i + 1).and_then(|c| hex_value(*c)),
                bytes.get(i + 2).and_then(|c| hex_value(*c)),
            );
            if let (Some(h), Some(l)) = escape {
                let c = h * 16 + l;
                scratch.push(c);
                match c {
                    b'/' => ambiguity.insert(Ambiguity::ENCODED_SLASH),
                    b'\\' => ambiguity.insert(Ambiguity::BACKSLASH),
                    0 => ambiguity.insert(Ambiguity::NUL),
                    0x80..=0xff => high_bytes = true,
                    _ => {}
                }
                if is_unreserved(c) {
                    out.push(char::from(c));
                } else {
                    push_escape(&mut out, c);
                }
                i += 3;
                continue;
            }
            ambiguity.insert(Ambiguity::MALFORMED_ESCAPE);
            out.push_str("%25");
            scratch.push(b'%');
            i += 1;
            continue;
        }
        // Copy the whole (possibly multi-byte) character.
        let ch_len = segment
            .get(i..)
            .and_then(|rest| rest.chars().next())
            .map_or(1, char::len_utf8);
        if let Some(piece) = segment.get(i..i + ch_len) {
            out.push_str(piece);
            scratch.extend_from_slice(piece.as_bytes());
        }
        i += ch_len;
    }
    if high_bytes && std::str::from_utf8(scratch).is_err() {
        ambiguity.insert(Ambiguity::INVALID_UTF8);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> String {
        canonicalize(raw).path.into_owned()
    }

    fn flags(raw: &str) -> Vec<&'static str> {
        canonicalize(raw).ambiguity.names().collect()
    }

    #[test]
    fn canonical_paths_are_borrowed_and_unflagged() {
        for raw in [
            "/",
            "/api/x",
            "/api/x/",
            "/a.b/c~d/e-f_g",
            "*",
            "/caf\u{e9}",
        ] {
            let c = canonicalize(raw);
            assert!(matches!(c.path, Cow::Borrowed(_)), "{raw}");
            assert_eq!(c.path, raw);
            assert!(!c.is_ambiguous() && !c.matrix, "{raw}");
        }
        let c = canonicalize("/api/x?a=%2e%2e&b=//");
        assert!(matches!(c.path, Cow::Borrowed("/api/x")));
        assert_eq!(c.query, Some("a=%2e%2e&b=//"));
        assert_eq!(c.with_query(), "/api/x?a=%2e%2e&b=//");
        assert!(!c.is_ambiguous());
    }

    #[test]
    fn dot_segments_are_removed_as_rfc_3986_says() {
        assert_eq!(canon("/public/../api/x"), "/api/x");
        assert_eq!(canon("/./api/./x"), "/api/x");
        assert_eq!(canon("/a/b/c/./../../g"), "/a/g");
        assert_eq!(canon("/../../api"), "/api");
        assert_eq!(canon("/a/b/.."), "/a/");
        assert_eq!(canon("/a/b/."), "/a/b/");
        assert_eq!(canon("/.."), "/");
        assert_eq!(canon("/a/..."), "/a/...");
        assert!(flags("/public/../api/x").is_empty());
    }

    #[test]
    fn repeated_slashes_are_merged_and_a_trailing_slash_is_kept() {
        assert_eq!(canon("//api/x"), "/api/x");
        assert_eq!(canon("/api///x//"), "/api/x/");
        assert_eq!(canon("//"), "/");
        assert!(flags("//api/x").is_empty());
    }

    #[test]
    fn unreserved_escapes_are_decoded_in_either_case_and_others_upper_cased() {
        assert_eq!(canon("/%61pi/x"), "/api/x");
        assert_eq!(canon("/%41%2d%5F%7e%7E"), "/A-_~~");
        assert_eq!(canon("/a%20b/%3b/%3F"), "/a%20b/%3B/%3F");
        assert_eq!(canon("/caf%C3%A9"), "/caf%C3%A9");
        assert!(flags("/%61pi/x").is_empty());
        assert!(flags("/caf%c3%a9").is_empty());
    }

    #[test]
    fn encoded_dot_segments_are_resolved_but_flagged() {
        for raw in [
            "/public/%2e%2e/api/x",
            "/public/%2E%2E/api/x",
            "/public/.%2e/api/x",
            "/public/%2e./api/x",
            "/public/%2e/../api/x",
        ] {
            assert_eq!(canon(raw), "/api/x", "{raw}");
            assert_eq!(flags(raw), ["encoded_dot_segment"], "{raw}");
        }
        assert_eq!(canon("/a/%2e/b"), "/a/b");
        assert_eq!(flags("/a/%2e/b"), ["encoded_dot_segment"]);
        // Not a whole segment: just a name.
        assert!(flags("/a/%2e%2ex/b").is_empty());
    }

    #[test]
    fn encoded_slashes_backslashes_and_nul_stay_ambiguous() {
        assert_eq!(canon("/public%2F..%2Fapi/x"), "/public%2F..%2Fapi/x");
        assert_eq!(flags("/public%2F..%2Fapi/x"), ["encoded_slash"]);
        assert_eq!(flags("/a%2fb"), ["encoded_slash"]);
        assert_eq!(flags("/a%5cb"), ["backslash"]);
        assert_eq!(flags("/public\\..\\api"), ["backslash"]);
        assert_eq!(flags("/a%00b"), ["nul"]);
        assert_eq!(flags("/a\0b"), ["nul"]);
    }

    #[test]
    fn malformed_escapes_and_invalid_utf8_are_ambiguous() {
        assert_eq!(flags("/a%zz"), ["malformed_escape"]);
        assert_eq!(flags("/a%4"), ["malformed_escape"]);
        assert_eq!(flags("/a%"), ["malformed_escape"]);
        assert_eq!(canon("/a%4"), "/a%254");
        // `%%32%65` must not become `%2e` (which a second decoding would read as a dot).
        assert_eq!(canon("/%%32%65%%32%65/x"), "/%252e%252e/x");
        assert_eq!(flags("/%c0%ae%c0%ae/api"), ["invalid_utf8"]);
        assert_eq!(flags("/%ff"), ["invalid_utf8"]);
    }

    #[test]
    fn matrix_parameters_are_removed_and_reported() {
        let c = canonicalize("/api;jsessionid=ABC/x;v=1?q=1");
        assert_eq!(c.path, "/api/x");
        assert!(c.matrix && !c.is_ambiguous());
        assert_eq!(c.query, Some("q=1"));
        // Tomcat reads `..;` as `..`.
        assert_eq!(canon("/public/..;/api/x"), "/api/x");
        assert!(canonicalize("/public/..;/api/x").matrix);
        assert!(!canonicalize("/a%3Bb").matrix);
    }

    #[test]
    fn fragments_and_relative_paths_are_ambiguous() {
        assert_eq!(canon("/public#/../api"), "/public");
        assert_eq!(flags("/public#/../api"), ["fragment"]);
        assert_eq!(flags("api/x"), ["not_absolute"]);
        assert!(flags("").is_empty());
        assert!(flags("*").is_empty());
    }

    #[test]
    fn canonicalisation_is_idempotent() {
        for raw in [
            "/public/../api/x",
            "/public/%2e%2e/api/x",
            "/./x",
            "//api/x",
            "/%61pi/x",
            "/a%2Fb",
            "/API/x",
            "/api;jsessionid=1/x",
            "/%%32%65%%32%65/x",
            "/a%4",
            "/%c0%ae/x",
            "/a/b/..",
            "/..;/..;/x",
            "/%25%32%65",
            "/caf\u{e9}/%e2%82%ac",
        ] {
            let once = canon(raw);
            let twice = canon(&once);
            assert_eq!(once, twice, "{raw}");
            assert!(
                matches!(canonicalize(&once).path, Cow::Borrowed(_)),
                "{raw}"
            );
        }
    }
}
