//! Posture findings: what an endpoint does that a security team wants to hear about. Each finding
//! is a stable code (documented in `docs/events.md`); an endpoint keeps a set of them, so each is
//! reported once per endpoint and window however often it is seen.

use super::auth::{AuthKind, AuthSet};
use regex_lite::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// A request without any credential was served (status below 400).
    NoAuthentication,
    /// A response carrying sensitive data classes was served to a caller without credentials.
    SensitiveDataUnauthenticated,
    /// A credential (API key, token, password, session id) travelled in the URL.
    CredentialsInQuery,
    /// Basic credentials or tokens were sent over plain HTTP.
    CredentialsOverPlainHttp,
    /// A sensitive response over HTTPS without `Strict-Transport-Security`.
    MissingHsts,
    /// A sensitive response without `X-Content-Type-Options: nosniff`.
    MissingContentTypeOptions,
    /// A sensitive response without `Cache-Control: no-store`.
    MissingCacheControlNoStore,
    /// `Server`, `X-Powered-By` or `X-AspNet-Version` names a software version.
    VersionBanner,
    /// An error body shows a stack trace.
    StackTraceInError,
    /// An error body shows a database error.
    SqlErrorInError,
    /// `Access-Control-Allow-Origin: *` with `Access-Control-Allow-Credentials: true`.
    CorsAnyOriginWithCredentials,
    /// `Access-Control-Allow-Origin` echoes a foreign (or `null`) request `Origin`.
    CorsOriginReflected,
    /// The request path was ambiguous (an encoded `/` or dot segment, a backslash, matrix parameters,
    /// ...): the endpoint it was counted under is a guess, and the request looks like an attempt to
    /// reach one resource while being judged as another.
    PathConfusion,
    /// A JSON-RPC batch held members that are not JSON-RPC 2.0 requests.
    JsonRpcInvalidBatchMember,
}

impl Finding {
    pub const ALL: [Finding; 14] = [
        Finding::NoAuthentication,
        Finding::SensitiveDataUnauthenticated,
        Finding::CredentialsInQuery,
        Finding::CredentialsOverPlainHttp,
        Finding::MissingHsts,
        Finding::MissingContentTypeOptions,
        Finding::MissingCacheControlNoStore,
        Finding::VersionBanner,
        Finding::StackTraceInError,
        Finding::SqlErrorInError,
        Finding::CorsAnyOriginWithCredentials,
        Finding::CorsOriginReflected,
        Finding::PathConfusion,
        Finding::JsonRpcInvalidBatchMember,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Finding::NoAuthentication => "no_authentication",
            Finding::SensitiveDataUnauthenticated => "sensitive_data_unauthenticated",
            Finding::CredentialsInQuery => "credentials_in_query",
            Finding::CredentialsOverPlainHttp => "credentials_over_plain_http",
            Finding::MissingHsts => "missing_hsts",
            Finding::MissingContentTypeOptions => "missing_x_content_type_options",
            Finding::MissingCacheControlNoStore => "missing_cache_control_no_store",
            Finding::VersionBanner => "version_banner",
            Finding::StackTraceInError => "stack_trace_in_error",
            Finding::SqlErrorInError => "sql_error_in_error",
            Finding::CorsAnyOriginWithCredentials => "cors_any_origin_with_credentials",
            Finding::CorsOriginReflected => "cors_origin_reflected",
            Finding::PathConfusion => "path_confusion",
            Finding::JsonRpcInvalidBatchMember => "jsonrpc_invalid_batch_member",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of findings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FindingSet(u16);

impl FindingSet {
    pub fn insert(&mut self, f: Finding) {
        self.0 |= f.bit();
    }
    pub fn contains(self, f: Finding) -> bool {
        self.0 & f.bit() != 0
    }
    pub fn union(&mut self, other: FindingSet) {
        self.0 |= other.0;
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Finding> {
        Finding::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

/// Error-body patterns, compiled once.
#[derive(Debug, Clone)]
pub struct ErrorPatterns {
    stack: Regex,
    sql: Regex,
}

const STACK_PATTERNS: &[&str] = &[
    // Java / JVM
    r"\bat [\w$.<>]+\([\w$]+\.(java|kt|scala):\d+\)",
    r#"Exception in thread ""#,
    r"\bjava\.lang\.[A-Za-z]+(Exception|Error)\b",
    // Python
    r"Traceback \(most recent call last\)",
    r#"File "[^"]+", line \d+, in "#,
    // .NET
    r"\bat [\w.`<>]+\(.*\) in .+:line \d+",
    r"\bSystem\.[A-Za-z.]*Exception\b",
    // PHP
    r"(Fatal error|Parse error|Warning|Notice)</b>?:? .* in .+\.php",
    r" in /[\w/.-]+\.php on line \d+",
    r"Stack trace:\s*#0 ",
    // Node.js
    r"\bat .+ \(/?[^()\s]+\.(js|mjs|cjs|ts):\d+:\d+\)",
    r"\bat Object\.<anonymous>",
    // Go
    r"goroutine \d+ \[running\]",
    // Ruby
    r"\.rb:\d+:in [`']",
];

const SQL_PATTERNS: &[&str] = &[
    r"You have an error in your SQL syntax",
    r"SQLSTATE\[",
    r"\bORA-\d{5}\b",
    r"\bPG::[A-Za-z]+Error\b",
    r"org\.postgresql\.util\.PSQLException",
    r"\bpsycopg2?\.[a-z]*\.?[A-Za-z]+Error\b",
    r"sqlite3\.(Operational|Programming|Integrity)Error",
    r"SQLite3::|SQLITE_ERROR",
    r"Unclosed quotation mark after the character string",
    r"Microsoft OLE DB Provider for (SQL Server|ODBC)",
    r"\[SQL Server\]",
    r#"syntax error at or near ""#,
    r"unterminated quoted string at or near",
    r"quoted string not properly terminated",
    r"com\.mysql\.jdbc",
    r"\bMySql(Client)?\.?[A-Za-z]*Exception\b",
    r"\bSqlException\b",
    r"Warning: (mysql|mysqli|pg|sqlite)_",
];

impl ErrorPatterns {
    pub fn compile() -> Result<ErrorPatterns, String> {
        let build = |list: &[&str]| Regex::new(&list.join("|")).map_err(|e| e.to_string());
        Ok(ErrorPatterns {
            stack: build(STACK_PATTERNS)?,
            sql: build(SQL_PATTERNS)?,
        })
    }

    /// Findings in (the first bytes of) an error body.
    pub fn scan(&self, body: &str, into: &mut FindingSet) {
        if self.stack.is_match(body) {
            into.insert(Finding::StackTraceInError);
        }
        if self.sql.is_match(body) {
            into.insert(Finding::SqlErrorInError);
        }
    }
}

/// The response headers findings read (lower-case names, values as sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    pub status: Option<u16>,
    pub hsts: bool,
    pub nosniff: bool,
    pub no_store: bool,
    pub version_banner: bool,
    pub allow_origin: Option<String>,
    pub allow_credentials: bool,
}

/// Whether a banner header value names a version (`nginx/1.25.3`, `Microsoft-IIS/10.0`, `PHP 8.2`).
pub fn names_a_version(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.windows(2).any(|w| match w {
        [a, b] => {
            (matches!(a, b'/' | b' ' | b'(' | b'v' | b'V') && b.is_ascii_digit())
                || (a.is_ascii_digit() && *b == b'.')
        }
        _ => false,
    })
}

/// The host part of an origin or authority, lower-case, without scheme or port.
fn host_of(origin_or_authority: &str) -> String {
    let rest = origin_or_authority
        .split_once("://")
        .map_or(origin_or_authority, |(_, r)| r);
    let host = if rest.starts_with('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        rest.split([':', '/']).next().unwrap_or(rest)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The last two labels: `api.example.com` and `www.example.com` are one site.
fn site(host: &str) -> &str {
    let mut dots = host.rmatch_indices('.');
    dots.next();
    match dots.next() {
        Some((i, _)) => host.get(i + 1..).unwrap_or(host),
        None => host,
    }
}

/// Everything known about one exchange that findings depend on.
pub struct Exchange<'a> {
    pub method: &'a str,
    pub https: bool,
    pub authority: &'a str,
    pub origin: Option<&'a str>,
    pub auth: AuthSet,
    pub credentials_in_url: bool,
    /// The request path was ambiguous ([`super::template::NormalisedPath::ambiguous`]).
    pub path_confusion: bool,
    pub response: &'a ResponseFacts,
    /// Sensitive data classes were seen in the response.
    pub sensitive_response: bool,
}

/// The header- and auth-based findings of one exchange (error bodies are scanned separately).
pub fn assess(x: &Exchange<'_>) -> FindingSet {
    let mut found = FindingSet::default();
    let served = x.response.status.is_some_and(|s| s < 400);
    let credentialed = x.auth.has_credentials();
    if served && !credentialed && !x.method.eq_ignore_ascii_case("OPTIONS") {
        found.insert(Finding::NoAuthentication);
        if x.sensitive_response {
            found.insert(Finding::SensitiveDataUnauthenticated);
        }
    }
    if x.credentials_in_url {
        found.insert(Finding::CredentialsInQuery);
    }
    if x.path_confusion {
        found.insert(Finding::PathConfusion);
    }
    let token_like = [
        AuthKind::Basic,
        AuthKind::Bearer,
        AuthKind::BearerJwt,
        AuthKind::OtherScheme,
        AuthKind::ApiKeyHeader,
        AuthKind::ApiKeyQuery,
        AuthKind::CookieSession,
    ];
    if !x.https && token_like.iter().any(|k| x.auth.contains(*k)) {
        found.insert(Finding::CredentialsOverPlainHttp);
    }
    // Sensitive: personal data in the response, or a response to an authenticated caller.
    if served && (x.sensitive_response || credentialed) {
        if x.https && !x.response.hsts {
            found.insert(Finding::MissingHsts);
        }
        if !x.response.nosniff {
            found.insert(Finding::MissingContentTypeOptions);
        }
        if !x.response.no_store {
            found.insert(Finding::MissingCacheControlNoStore);
        }
    }
    if x.response.version_banner {
        found.insert(Finding::VersionBanner);
    }
    if let Some(allow) = x.response.allow_origin.as_deref().map(str::trim) {
        if allow == "*" && x.response.allow_credentials {
            found.insert(Finding::CorsAnyOriginWithCredentials);
        } else if let Some(origin) = x.origin.map(str::trim) {
            let reflected = allow == origin && allow != "*";
            let foreign = origin.eq_ignore_ascii_case("null")
                || site(&host_of(origin)) != site(&host_of(x.authority));
            if reflected && foreign {
                found.insert(Finding::CorsOriginReflected);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange<'a>(response: &'a ResponseFacts, auth: AuthSet) -> Exchange<'a> {
        Exchange {
            method: "GET",
            https: true,
            authority: "api.example.com",
            origin: None,
            auth,
            credentials_in_url: false,
            path_confusion: false,
            response,
            sensitive_response: false,
        }
    }

    fn none() -> AuthSet {
        let mut a = AuthSet::default();
        a.insert(AuthKind::None);
        a
    }

    fn codes(set: FindingSet) -> Vec<&'static str> {
        set.iter().map(Finding::code).collect()
    }

    #[test]
    fn unauthenticated_sensitive_responses_without_headers_collect_every_finding() {
        let response = ResponseFacts {
            status: Some(200),
            ..Default::default()
        };
        let mut x = exchange(&response, none());
        x.sensitive_response = true;
        assert_eq!(
            codes(assess(&x)),
            vec![
                "no_authentication",
                "sensitive_data_unauthenticated",
                "missing_hsts",
                "missing_x_content_type_options",
                "missing_cache_control_no_store"
            ]
        );
    }

    #[test]
    fn a_well_configured_authenticated_response_has_no_findings() {
        let response = ResponseFacts {
            status: Some(200),
            hsts: true,
            nosniff: true,
            no_store: true,
            ..Default::default()
        };
        let mut auth = AuthSet::default();
        auth.insert(AuthKind::BearerJwt);
        assert!(assess(&exchange(&response, auth)).is_empty());
        // Refused requests and preflights are not "served without authentication".
        let refused = ResponseFacts {
            status: Some(401),
            ..Default::default()
        };
        assert!(assess(&exchange(&refused, none())).is_empty());
        let mut x = exchange(&response, none());
        x.method = "OPTIONS";
        assert!(assess(&x).is_empty());
    }

    #[test]
    fn credentials_over_plain_http_and_in_the_url() {
        let response = ResponseFacts {
            status: Some(200),
            nosniff: true,
            no_store: true,
            ..Default::default()
        };
        let mut auth = AuthSet::default();
        auth.insert(AuthKind::Basic);
        let mut x = exchange(&response, auth);
        x.https = false;
        x.credentials_in_url = true;
        assert_eq!(
            codes(assess(&x)),
            vec!["credentials_in_query", "credentials_over_plain_http"]
        );
    }

    #[test]
    fn version_banners_need_a_version() {
        for v in [
            "nginx/1.25.3",
            "Apache/2.4.41 (Ubuntu)",
            "Microsoft-IIS/10.0",
            "PHP 8.2",
            "Express v4",
            "Jetty(9.4.z)",
        ] {
            assert!(names_a_version(v), "{v}");
        }
        for v in ["nginx", "envoy", "cloudflare", "Express", "AmazonS3", "gws"] {
            assert!(!names_a_version(v), "{v}");
        }
    }

    #[test]
    fn cors_wildcard_with_credentials_and_reflected_foreign_origins() {
        let mut response = ResponseFacts {
            status: Some(403),
            allow_origin: Some("*".into()),
            allow_credentials: true,
            ..Default::default()
        };
        let x = exchange(&response, none());
        assert_eq!(codes(assess(&x)), vec!["cors_any_origin_with_credentials"]);
        response.allow_origin = Some("https://evil.example.net".into());
        let mut x = exchange(&response, none());
        x.origin = Some("https://evil.example.net");
        assert_eq!(codes(assess(&x)), vec!["cors_origin_reflected"]);
        let same_site = ResponseFacts {
            allow_origin: Some("https://www.example.com".into()),
            ..response.clone()
        };
        let mut x = exchange(&same_site, none());
        x.origin = Some("https://www.example.com");
        assert!(assess(&x).is_empty());
        let null = ResponseFacts {
            allow_origin: Some("null".into()),
            ..response
        };
        let mut x = exchange(&null, none());
        x.origin = Some("null");
        assert_eq!(codes(assess(&x)), vec!["cors_origin_reflected"]);
    }

    #[test]
    fn stack_traces_and_sql_errors_from_common_platforms_are_recognised() {
        let p = ErrorPatterns::compile().unwrap();
        let stacks = [
            "java.lang.NullPointerException\n\tat com.example.Foo.bar(Foo.java:42)",
            "Traceback (most recent call last):\n  File \"/app/x.py\", line 3, in <module>",
            "System.InvalidOperationException: x\n   at App.Run() in C:\\src\\App.cs:line 12",
            "<b>Fatal error</b>: Uncaught Error in /var/www/index.php:3",
            "TypeError: x\n    at Object.<anonymous> (/app/index.js:10:5)",
            "panic: boom\n\ngoroutine 1 [running]:\nmain.main()",
            "app/models/user.rb:12:in `find'",
        ];
        for body in stacks {
            let mut f = FindingSet::default();
            p.scan(body, &mut f);
            assert!(f.contains(Finding::StackTraceInError), "{body}");
        }
        let sql = [
            "You have an error in your SQL syntax; check the manual",
            "SQLSTATE[42000]: Syntax error",
            "ORA-00933: SQL command not properly ended",
            "PG::SyntaxError: ERROR:  syntax error at or near \"FROM\"",
            "sqlite3.OperationalError: near \"x\": syntax error",
            "Unclosed quotation mark after the character string ''.",
            "org.postgresql.util.PSQLException: ERROR",
        ];
        for body in sql {
            let mut f = FindingSet::default();
            p.scan(body, &mut f);
            assert!(f.contains(Finding::SqlErrorInError), "{body}");
        }
        for body in [
            "{\"error\":\"not found\"}",
            "Internal Server Error",
            "at the moment the service is unavailable (try later)",
            "The select statement is documented at /docs",
        ] {
            let mut f = FindingSet::default();
            p.scan(body, &mut f);
            assert!(f.is_empty(), "{body}");
        }
    }
}
