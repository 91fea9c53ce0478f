//! Request paths → endpoint templates. The raw `:path` is first put in the canonical form route
//! rules use too ([`crate::canonical`]: tricks such as `/a//b/`, `/a/%2e%2e/b` or `/a;jsessionid=X`
//! fold into the endpoint they most likely reach, and a path that stays ambiguous is marked so), then
//! each segment that looks like a value (a number, a UUID, a hex or base64-ish identifier, a date,
//! an e-mail address) becomes a placeholder. Values are never kept: only the placeholder names.
//!
//! Bounds: at most [`MAX_SEGMENTS`] segments are kept (the rest become `/**`), a segment longer than
//! [`MAX_SEGMENT_BYTES`] is a `{token}`, and a rendered template is at most [`MAX_TEMPLATE_BYTES`].

use crate::canonical;
use std::borrow::Cow;

/// Segments kept from one path; deeper paths end in `/**`.
pub const MAX_SEGMENTS: usize = 32;
/// A longer segment is always a value (`{token}`).
pub const MAX_SEGMENT_BYTES: usize = 64;
/// Longest rendered template; longer ones are cut at a segment boundary and end in `/**`.
pub const MAX_TEMPLATE_BYTES: usize = 512;

/// Matrix parameters (`;name=value`) that carry a session identifier in the URL.
const SESSION_MATRIX_PARAMS: &[&str] = &["jsessionid", "phpsessid", "sessionid", "sid", "session"];

/// A path as the origin most likely reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NormalisedPath {
    /// Non-empty segments in order: unreserved percent-escapes decoded (`%2e` → `.`, other escapes
    /// kept, upper-cased), dot segments resolved, matrix parameters removed. Case is kept here;
    /// templates fold it.
    pub segments: Vec<String>,
    /// A session identifier was carried as a matrix parameter (`;jsessionid=...`).
    pub session_in_path: bool,
    /// The path had more than [`MAX_SEGMENTS`] segments.
    pub truncated: bool,
    /// The raw path was ambiguous ([`canonical::Ambiguity`]) or carried matrix parameters: which
    /// resource it reaches depends on the server (a path-confusion attempt, most likely).
    pub ambiguous: bool,
}

impl NormalisedPath {
    /// `/a/b` (or `/` for the root), case kept.
    pub fn to_path(&self) -> String {
        if self.segments.is_empty() {
            return "/".to_string();
        }
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            out.push_str(segment);
        }
        out
    }
}

/// The path part of a `:path` value (before `?` and `#`).
pub fn path_part(raw: &str) -> &str {
    raw.split(['?', '#']).next().unwrap_or(raw)
}

/// The query string of a `:path` value, without `?` (empty if none).
pub fn query_part(raw: &str) -> &str {
    raw.split_once('?')
        .map_or("", |(_, q)| q.split('#').next().unwrap_or(q))
}

/// Normalises the path part of `raw` (a query string, if any, is ignored).
pub fn normalise(raw: &str) -> NormalisedPath {
    let canonical = canonical::canonicalize(raw);
    let mut out = NormalisedPath {
        ambiguous: canonical.is_ambiguous() || canonical.matrix,
        ..NormalisedPath::default()
    };
    if canonical.matrix {
        for raw_segment in path_part(raw).split('/') {
            let Some((_, matrix)) = raw_segment.split_once(';') else {
                continue;
            };
            for param in matrix.split(';') {
                let name = param.split('=').next().unwrap_or(param);
                if SESSION_MATRIX_PARAMS
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(name))
                {
                    out.session_in_path = true;
                }
            }
        }
    }
    out.segments = canonical
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .take(MAX_SEGMENTS + 1)
        .map(str::to_string)
        .collect();
    if out.segments.len() > MAX_SEGMENTS {
        out.segments.truncate(MAX_SEGMENTS);
        out.truncated = true;
    }
    out
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes a query-string component: `+` is a space, every `%XX` is decoded; invalid escapes and
/// invalid UTF-8 are kept or replaced, never refused. At most `max` input bytes are read.
pub fn decode_component(text: &str, max: usize) -> String {
    let bytes = text.as_bytes();
    let bytes = bytes.get(..max.min(bytes.len())).unwrap_or(bytes);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                if let (Some(h), Some(l)) = (
                    bytes.get(i + 1).and_then(|c| hex_value(*c)),
                    bytes.get(i + 2).and_then(|c| hex_value(*c)),
                ) {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The placeholder a segment (or a JSON member name) stands for when it looks like a value, or
/// `None` when it looks like a name.
pub fn placeholder(segment: &str) -> Option<&'static str> {
    let len = segment.len();
    if len > MAX_SEGMENT_BYTES {
        return Some("{token}");
    }
    if len == 0 {
        return None;
    }
    let bytes = segment.as_bytes();
    if bytes.iter().all(u8::is_ascii_digit) {
        return Some("{id}");
    }
    if is_uuid(bytes) {
        return Some("{uuid}");
    }
    if is_date(bytes) {
        return Some("{date}");
    }
    if is_email(segment) {
        return Some("{email}");
    }
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    let letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count();
    if len >= 8 && digits > 0 && letters > 0 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return Some("{hex}");
    }
    let base64ish = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'.' | b'~'));
    if base64ish && len >= 16 && (segment.starts_with("eyJ") || (digits > 0 && letters > 0)) {
        return Some("{token}");
    }
    // Mostly digits with some letters or separators: `INV-2024-0001`, `A1234567`.
    let alnum = digits + letters;
    if base64ish && digits >= 4 && digits * 2 > alnum {
        return Some("{id}");
    }
    None
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `YYYY-MM-DD`, optionally followed by a time (`T...` or ` ...`).
fn is_date(b: &[u8]) -> bool {
    let Some(head) = b.get(..10) else {
        return false;
    };
    let shape_ok = head.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        _ => c.is_ascii_digit(),
    });
    shape_ok && matches!(b.get(10), None | Some(b'T' | b't' | b' ' | b'_'))
}

fn is_email(s: &str) -> bool {
    let at = s.find('@').map(|i| (i, 1)).or_else(|| {
        let lower = s.to_ascii_lowercase();
        lower.find("%40").map(|i| (i, 3))
    });
    let Some((i, width)) = at else {
        return false;
    };
    let (local, domain) = (s.get(..i).unwrap_or(""), s.get(i + width..).unwrap_or(""));
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains(['@', '/'])
}

/// The inferred template of a normalised path: value-like segments become placeholders, names are
/// lower-cased (so `/Users` and `/users` are one endpoint), `{` and `}` in names are escaped.
pub fn infer(path: &NormalisedPath) -> String {
    render(path, true)
}

/// The path as a template without placeholders (gRPC service and method names are names, whatever
/// they look like), case kept.
pub fn literal(path: &NormalisedPath) -> String {
    render(path, false)
}

fn render(path: &NormalisedPath, infer: bool) -> String {
    let mut out = String::new();
    let mut cut = path.truncated;
    for segment in &path.segments {
        let piece: Cow<'_, str> = match (infer, placeholder(segment)) {
            (true, Some(p)) => Cow::Borrowed(p),
            (true, None) => Cow::Owned(escape_braces(&segment.to_ascii_lowercase())),
            (false, _) if segment.len() > MAX_SEGMENT_BYTES => Cow::Borrowed("{token}"),
            (false, _) => Cow::Owned(escape_braces(segment)),
        };
        if out.len() + piece.len() + 1 > MAX_TEMPLATE_BYTES - 3 {
            cut = true;
            break;
        }
        out.push('/');
        out.push_str(&piece);
    }
    if cut {
        out.push_str("/**");
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn escape_braces(s: &str) -> String {
    if s.contains(['{', '}']) {
        s.replace('{', "%7B").replace('}', "%7D")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(raw: &str) -> String {
        infer(&normalise(raw))
    }

    #[test]
    fn numeric_uuid_hex_token_date_and_email_segments_become_placeholders() {
        assert_eq!(template("/users/42"), "/users/{id}");
        assert_eq!(
            template("/orders/3fa85f64-5717-4562-b3fc-2c963f66afa6/items"),
            "/orders/{uuid}/items"
        );
        assert_eq!(
            template("/objects/507f1f77bcf86cd799439011"),
            "/objects/{hex}"
        );
        assert_eq!(
            template("/files/dGhpcyBpcyBhIHRva2Vu0123"),
            "/files/{token}"
        );
        assert_eq!(
            template("/customers/cus_9s6XKzkNRiz8i3"),
            "/customers/{token}"
        );
        assert_eq!(template("/reports/2024-02-29"), "/reports/{date}");
        assert_eq!(template("/reports/2024-02-29T10:00:00Z"), "/reports/{date}");
        assert_eq!(template("/people/jane.doe@example.com"), "/people/{email}");
        assert_eq!(
            template("/people/jane.doe%40example.com"),
            "/people/{email}"
        );
        assert_eq!(template("/invoices/INV-2024-0001"), "/invoices/{id}");
        assert_eq!(
            template(&format!("/blob/{}", "a".repeat(65))),
            "/blob/{token}"
        );
    }

    #[test]
    fn names_stay_literal_and_fold_case() {
        assert_eq!(
            template("/api/v2/Users/findByStatus"),
            "/api/v2/users/findbystatus"
        );
        for name in [
            "v1",
            "sha256",
            "oauth2",
            "deadbeef",
            "getUserPreferences",
            "html5",
        ] {
            assert_eq!(placeholder(name), None, "{name} is a name");
        }
    }

    #[test]
    fn normalisation_tricks_fold_into_the_real_path() {
        assert_eq!(template("/pet/"), "/pet");
        assert_eq!(template("//pet///42//"), "/pet/{id}");
        assert_eq!(template("/PET/42"), "/pet/{id}");
        assert_eq!(template("/static/%2e%2e/admin"), "/admin");
        assert_eq!(template("/static/%2E%2E/%2e/admin"), "/admin");
        assert_eq!(template("/a/b/../../../../etc"), "/etc");
        assert_eq!(template("/%70et/42"), "/pet/{id}");
        let p = normalise("/cart;jsessionid=0A1B2C3D/checkout?x=1");
        assert_eq!(p.to_path(), "/cart/checkout");
        assert!(p.session_in_path);
        assert!(!normalise("/cart;v=2/checkout").session_in_path);
    }

    #[test]
    fn ambiguous_paths_and_matrix_parameters_are_marked() {
        for raw in [
            "/static/%2e%2e/admin",
            "/a%2Fb",
            "/cart;v=2/checkout",
            "/a\\b",
            "/%c0%ae",
        ] {
            assert!(normalise(raw).ambiguous, "{raw}");
        }
        for raw in ["/a/../b", "//a", "/%61", "/a/b?x=%2e%2e"] {
            assert!(!normalise(raw).ambiguous, "{raw}");
        }
    }

    #[test]
    fn encoded_slashes_and_braces_never_create_segments_or_placeholders() {
        assert_eq!(template("/files/a%2fb"), "/files/a%2fb");
        assert_eq!(normalise("/files/a%2fb").segments, vec!["files", "a%2Fb"]);
        assert_eq!(template("/x/{id}"), "/x/%7Bid%7D");
    }

    #[test]
    fn deep_and_long_paths_are_bounded() {
        let deep = "/a".repeat(100);
        let t = template(&deep);
        assert!(t.ends_with("/**"));
        assert_eq!(normalise(&deep).segments.len(), MAX_SEGMENTS);
        let wide = format!("/{}", ["name"; 200].join("/"));
        assert!(template(&wide).len() <= MAX_TEMPLATE_BYTES);
        assert_eq!(template(""), "/");
        assert_eq!(template("/?q=1"), "/");
    }

    #[test]
    fn query_components_decode_plus_and_escapes() {
        assert_eq!(decode_component("a+b%20c%7B", 100), "a b c{");
        assert_eq!(decode_component("%zz%", 100), "%zz%");
        assert_eq!(decode_component("abcdef", 3), "abc");
        assert_eq!(query_part("/p?a=1&b#frag"), "a=1&b");
        assert_eq!(path_part("/p;x?a"), "/p;x");
    }

    #[test]
    fn multibyte_segments_are_kept_whole() {
        assert_eq!(template("/caf\u{e9}/%41"), "/caf\u{e9}/a");
    }
}
