//! Which kinds of credentials a request carries: none, a bearer JWT (and its issuer), another
//! bearer token, HTTP Basic, another `Authorization` scheme, an API key in a header or in the query
//! string, a session cookie. Credential values are read only to tell a JWT from an opaque token and
//! to read its unverified `iss` claim for classification; they are never kept.

use crate::request::RequestView;
use serde_json::Value;

/// Header names that carry API keys, besides the configured ones.
pub const COMMON_API_KEY_HEADERS: &[&str] = &[
    "x-api-key",
    "api-key",
    "apikey",
    "x-apikey",
    "x-auth-token",
    "x-access-token",
];
/// Query parameters that carry API keys or tokens, besides the configured ones.
pub const COMMON_API_KEY_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "token",
    "id_token",
    "auth_token",
    "jwt",
];
/// Other query parameters that are credentials (they make a `credentials_in_query` finding).
pub const SECRET_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "session",
    "sessionid",
    "jsessionid",
    "phpsessid",
];
/// Longest issuer kept; longer or unprintable issuers are not recorded.
pub const MAX_ISSUER_BYTES: usize = 256;
/// Longest token whose payload is decoded for its issuer.
const MAX_DECODED_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    None,
    BearerJwt,
    Bearer,
    Basic,
    /// `Authorization` with another scheme (Digest, Negotiate, AWS4-HMAC-SHA256, ...).
    OtherScheme,
    ApiKeyHeader,
    ApiKeyQuery,
    CookieSession,
}

impl AuthKind {
    pub const ALL: [AuthKind; 8] = [
        AuthKind::None,
        AuthKind::BearerJwt,
        AuthKind::Bearer,
        AuthKind::Basic,
        AuthKind::OtherScheme,
        AuthKind::ApiKeyHeader,
        AuthKind::ApiKeyQuery,
        AuthKind::CookieSession,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::BearerJwt => "bearer_jwt",
            AuthKind::Bearer => "bearer",
            AuthKind::Basic => "basic",
            AuthKind::OtherScheme => "other_scheme",
            AuthKind::ApiKeyHeader => "api_key_header",
            AuthKind::ApiKeyQuery => "api_key_query",
            AuthKind::CookieSession => "cookie_session",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`AuthKind`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthSet(u8);

impl AuthSet {
    pub fn insert(&mut self, kind: AuthKind) {
        self.0 |= kind.bit();
    }
    pub fn contains(self, kind: AuthKind) -> bool {
        self.0 & kind.bit() != 0
    }
    pub fn union(&mut self, other: AuthSet) {
        self.0 |= other.0;
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Any credential at all (anything but `None`).
    pub fn has_credentials(self) -> bool {
        self.0 & !AuthKind::None.bit() != 0
    }
    pub fn iter(self) -> impl Iterator<Item = AuthKind> {
        AuthKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

/// The names apiguard looks for, compiled from configuration (all lower-case).
#[derive(Debug, Clone)]
pub struct AuthNames {
    pub api_key_headers: Vec<String>,
    pub api_key_params: Vec<String>,
    pub session_cookies: Vec<String>,
}

impl Default for AuthNames {
    fn default() -> Self {
        AuthNames::new(&[], &[])
    }
}

impl AuthNames {
    /// `api_key_names` count as both header and query parameter names.
    pub fn new(api_key_names: &[String], session_cookie_names: &[String]) -> AuthNames {
        let extra = || api_key_names.iter().map(|n| n.to_ascii_lowercase());
        let mut api_key_headers: Vec<String> = COMMON_API_KEY_HEADERS
            .iter()
            .map(|s| s.to_string())
            .chain(extra())
            .collect();
        let mut api_key_params: Vec<String> = COMMON_API_KEY_PARAMS
            .iter()
            .map(|s| s.to_string())
            .chain(extra())
            .collect();
        crate::sorting::sort_strings(&mut api_key_headers);
        api_key_headers.dedup();
        crate::sorting::sort_strings(&mut api_key_params);
        api_key_params.dedup();
        AuthNames {
            api_key_headers,
            api_key_params,
            session_cookies: session_cookie_names
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
        }
    }

    fn is_session_cookie(&self, name: &str) -> bool {
        let lower = name.trim().to_ascii_lowercase();
        self.session_cookies.contains(&lower)
            || lower.contains("sess")
            || lower.contains("auth")
            || lower.contains("token")
            || matches!(lower.as_str(), "sid" | "jwt" | "connect.sid")
    }
}

/// The credentials one request carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSeen {
    pub kinds: AuthSet,
    /// `iss` of a bearer JWT (unverified; for classification only).
    pub issuer: Option<String>,
    /// A credential travelled in the query string.
    pub credentials_in_query: bool,
}

/// Reads the request's credentials.
pub fn detect(names: &AuthNames, request: &dyn RequestView) -> AuthSeen {
    let mut seen = AuthSeen::default();
    if let Some(value) = request.header("authorization") {
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            bearer(rest.trim(), &mut seen, AuthKind::Bearer);
        } else if scheme.eq_ignore_ascii_case("basic") {
            seen.kinds.insert(AuthKind::Basic);
        } else if !scheme.is_empty() {
            seen.kinds.insert(AuthKind::OtherScheme);
        }
    }
    if names
        .api_key_headers
        .iter()
        .any(|h| request.header(h).is_some_and(|v| !v.is_empty()))
    {
        seen.kinds.insert(AuthKind::ApiKeyHeader);
    }
    for pair in request.query().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if value.is_empty() {
            continue;
        }
        if names
            .api_key_params
            .iter()
            .any(|n| n.eq_ignore_ascii_case(key))
        {
            seen.credentials_in_query = true;
            bearer(value, &mut seen, AuthKind::ApiKeyQuery);
        } else if SECRET_PARAMS.iter().any(|n| n.eq_ignore_ascii_case(key)) {
            seen.credentials_in_query = true;
        }
    }
    if let Some(cookies) = request.header("cookie") {
        if cookies.split(';').any(|c| {
            let (name, value) = c.split_once('=').unwrap_or((c, ""));
            !value.trim().is_empty() && names.is_session_cookie(name)
        }) {
            seen.kinds.insert(AuthKind::CookieSession);
        }
    }
    if seen.kinds.is_empty() {
        seen.kinds.insert(AuthKind::None);
    }
    seen
}

/// A token: a JWT (and its issuer) or, failing that, `otherwise`.
fn bearer(token: &str, seen: &mut AuthSeen, otherwise: AuthKind) {
    match jwt_issuer(token) {
        Some(issuer) => {
            seen.kinds.insert(AuthKind::BearerJwt);
            if seen.issuer.is_none() {
                seen.issuer = issuer;
            }
        }
        None if !token.is_empty() => seen.kinds.insert(otherwise),
        None => {}
    }
}

/// `Some(issuer)` when `token` is a JWS compact JWT (three base64url parts, a JSON header); the
/// issuer is `None` when the payload has no printable `iss` string.
fn jwt_issuer(token: &str) -> Option<Option<String>> {
    if token.len() > MAX_DECODED_TOKEN_BYTES || !token.starts_with("eyJ") {
        return None;
    }
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    use base64ct::{Base64UrlUnpadded, Encoding};
    let decoded = Base64UrlUnpadded::decode_vec(payload.trim_end_matches('=')).ok();
    let issuer = decoded
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|claims| {
            claims
                .get("iss")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|iss| {
            !iss.is_empty()
                && iss.len() <= MAX_ISSUER_BYTES
                && iss.bytes().all(|b| b.is_ascii_graphic())
        });
    Some(issuer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;

    fn seen(headers: &[(&str, &str)]) -> AuthSeen {
        detect(
            &AuthNames::new(&["x-tenant-key".into()], &[]),
            &Request::of(headers),
        )
    }

    // {"alg":"RS256","typ":"JWT"} . {"iss":"https://issuer.example","sub":"1"} . sig
    const JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic3ViIjoiMSJ9.c2ln";

    #[test]
    fn a_bearer_jwt_is_told_apart_and_its_issuer_read() {
        let s = seen(&[(":path", "/"), ("authorization", &format!("Bearer {JWT}"))]);
        assert!(s.kinds.contains(AuthKind::BearerJwt));
        assert_eq!(s.issuer.as_deref(), Some("https://issuer.example"));
        let s = seen(&[(":path", "/"), ("authorization", "bearer opaque-token-123")]);
        assert!(s.kinds.contains(AuthKind::Bearer) && !s.kinds.contains(AuthKind::BearerJwt));
        assert_eq!(s.issuer, None);
    }

    #[test]
    fn basic_other_schemes_api_keys_and_session_cookies() {
        let s = seen(&[(":path", "/"), ("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(s.kinds.iter().collect::<Vec<_>>(), vec![AuthKind::Basic]);
        let s = seen(&[(":path", "/"), ("authorization", "Digest username=\"a\"")]);
        assert!(s.kinds.contains(AuthKind::OtherScheme));
        let s = seen(&[(":path", "/"), ("x-api-key", "k")]);
        assert!(s.kinds.contains(AuthKind::ApiKeyHeader));
        let s = seen(&[(":path", "/"), ("x-tenant-key", "k")]);
        assert!(s.kinds.contains(AuthKind::ApiKeyHeader));
        let s = seen(&[(":path", "/"), ("cookie", "theme=dark; JSESSIONID=ABC")]);
        assert!(s.kinds.contains(AuthKind::CookieSession));
        let s = seen(&[(":path", "/"), ("cookie", "theme=dark; lang=en")]);
        assert_eq!(s.kinds.iter().collect::<Vec<_>>(), vec![AuthKind::None]);
    }

    #[test]
    fn credentials_in_the_query_string_are_flagged() {
        let s = seen(&[(":path", "/a?API_KEY=abc&x=1")]);
        assert!(s.kinds.contains(AuthKind::ApiKeyQuery) && s.credentials_in_query);
        let s = seen(&[(":path", &format!("/a?access_token={JWT}"))]);
        assert!(s.kinds.contains(AuthKind::BearerJwt) && s.credentials_in_query);
        let s = seen(&[(":path", "/login?user=a&password=b")]);
        assert!(s.credentials_in_query);
        assert!(s.kinds.contains(AuthKind::None));
        let s = seen(&[(":path", "/a?token=")]);
        assert!(!s.credentials_in_query);
    }

    #[test]
    fn a_request_without_credentials_is_none() {
        let s = seen(&[(":path", "/")]);
        assert_eq!(s.kinds.iter().collect::<Vec<_>>(), vec![AuthKind::None]);
        assert!(!s.kinds.has_credentials());
    }

    #[test]
    fn malformed_tokens_are_opaque_and_never_panic() {
        for token in [
            "eyJ",
            "eyJ.a",
            "eyJa.%%%.c",
            "eyJa.b.c.d",
            "eyJhbGciOiJub25lIn0.bm90IGpzb24.x",
        ] {
            let s = seen(&[
                (":path", "/"),
                ("authorization", &format!("Bearer {token}")),
            ]);
            assert_eq!(s.issuer, None, "{token}");
        }
    }
}
