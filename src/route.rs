//! Route rules: which rule a request falls under (first match wins), as Envoy's route matcher does.
//! Everything here is compiled at configure time; matching allocates nothing.
//!
//! Paths are matched in their canonical form ([`crate::canonical`]), case-sensitively unless the rule
//! says `case_insensitive`. Methods compare case-insensitively (HTTP/2 clients may send `get`), and a
//! `HEAD` request matches a rule that lists `HEAD` or `GET` (a HEAD is a GET without the body).
//! Hosts compare case-insensitively, without port and without a trailing dot.

/// How a rule matches the path (the part before `?`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// String prefix, as Envoy's `prefix` (`/api` also matches `/apiary`; write `/api/` to avoid that).
    Prefix(String),
    Exact(String),
    /// Segments: literal, `{name}` or `*` (one non-empty segment), or a final `**` (the rest, possibly empty).
    Template(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    One,
    Rest,
}

/// A compiled `match` block. Empty `methods` / `hosts` lists match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// Upper-case method names.
    pub methods: Vec<String>,
    /// Lower-case host names without port or trailing dot; `*.example.com` matches any subdomain;
    /// `*` matches all.
    pub hosts: Vec<String>,
    /// Path literals compare with ASCII case folding (`/API/x` matches prefix `/api/`).
    pub case_insensitive: bool,
}

/// Parses a path template such as `/users/{id}/orders/*` or `/static/**`.
pub fn compile_template(template: &str) -> Result<Vec<Segment>, String> {
    let rest = template
        .strip_prefix('/')
        .ok_or_else(|| "a template starts with '/'".to_string())?;
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len().saturating_sub(1);
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if *part == "**" {
                if i != last {
                    return Err("'**' may only be the last segment".to_string());
                }
                Ok(Segment::Rest)
            } else if *part == "*" {
                Ok(Segment::One)
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("bad parameter name in segment {part:?}"));
                }
                Ok(Segment::One)
            } else if part.contains(['{', '}', '*']) {
                Err(format!(
                    "segment {part:?} mixes a literal with '{{', '}}' or '*'"
                ))
            } else {
                Ok(Segment::Literal((*part).to_string()))
            }
        })
        .collect()
}

impl PathMatch {
    /// Case-sensitive match of a (canonical) path.
    pub fn matches(&self, path: &str) -> bool {
        self.matches_case(path, false)
    }

    /// Matches a (canonical) path; `case_insensitive` folds ASCII case in literals.
    pub fn matches_case(&self, path: &str, case_insensitive: bool) -> bool {
        let same = |a: &str, b: &str| {
            if case_insensitive {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match self {
            PathMatch::Prefix(prefix) => path
                .get(..prefix.len())
                .is_some_and(|head| same(head, prefix)),
            PathMatch::Exact(exact) => same(path, exact),
            PathMatch::Template(segments) => template_matches(segments, path, &same),
        }
    }
}

fn template_matches(segments: &[Segment], path: &str, same: &dyn Fn(&str, &str) -> bool) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let mut parts = rest.split('/');
    for segment in segments {
        match segment {
            Segment::Rest => return true,
            Segment::One => match parts.next() {
                Some(part) if !part.is_empty() => {}
                _ => return false,
            },
            Segment::Literal(literal) => match parts.next() {
                Some(part) if same(part, literal) => {}
                _ => return false,
            },
        }
    }
    parts.next().is_none()
}

/// `host` is the `:authority` value; its port and a trailing dot (`admin.example.com.:443`), if any,
/// are ignored, and comparison is case-insensitive.
pub fn host_matches(patterns: &[String], authority: &str) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let host = strip_port(authority);
    let host = host.strip_suffix('.').unwrap_or(host);
    patterns.iter().any(|pattern| {
        if pattern == "*" {
            true
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            // "*.example.com": at least one label before the suffix.
            host.len() > suffix.len() && ends_with_ignore_case(host, suffix)
        } else {
            host.eq_ignore_ascii_case(pattern)
        }
    })
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // IPv6 literal: "[::1]:8080"
        return authority
            .split_once(']')
            .map_or(authority, |(h, _)| h.trim_start_matches('['));
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                host
            } else {
                authority
            }
        })
}

fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len() >= suffix.len()
        && text
            .get(text.len() - suffix.len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
}

impl RouteMatch {
    /// `path` is the canonical path, without the query string.
    pub fn matches(&self, method: &str, path: &str, authority: &str) -> bool {
        self.path.matches_case(path, self.case_insensitive)
            && method_matches(&self.methods, method)
            && host_matches(&self.hosts, authority)
    }
}

/// Case-insensitive; `HEAD` also matches `GET`. An empty list matches every method.
pub fn method_matches(methods: &[String], method: &str) -> bool {
    methods.is_empty()
        || methods.iter().any(|m| {
            m.eq_ignore_ascii_case(method) || (m == "GET" && method.eq_ignore_ascii_case("HEAD"))
        })
}

/// The path without its query string or fragment.
pub fn path_only(path_and_query: &str) -> &str {
    path_and_query
        .split(['?', '#'])
        .next()
        .unwrap_or(path_and_query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(t: &str) -> PathMatch {
        PathMatch::Template(compile_template(t).unwrap())
    }

    #[test]
    fn prefix_is_a_plain_string_prefix_like_envoy() {
        let m = PathMatch::Prefix("/api".into());
        assert!(m.matches("/api"));
        assert!(m.matches("/api/users"));
        assert!(m.matches("/apiary"));
        assert!(!m.matches("/ap"));
    }

    #[test]
    fn template_parameters_match_exactly_one_non_empty_segment() {
        let m = template("/users/{id}/orders/*");
        assert!(m.matches("/users/42/orders/7"));
        assert!(!m.matches("/users/42/orders"));
        assert!(!m.matches("/users//orders/7"));
        assert!(!m.matches("/users/42/orders/7/items"));
    }

    #[test]
    fn template_double_star_matches_the_rest() {
        let m = template("/static/**");
        assert!(m.matches("/static/"));
        assert!(m.matches("/static/a/b/c.css"));
        assert!(!m.matches("/other/a"));
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["users", "/a/**/b", "/a/{}", "/a/{x-y}", "/a/b{c}", "/a/x*"] {
            assert!(compile_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_match_without_port_and_case_insensitively() {
        let hosts = vec!["api.example.com".to_string(), "*.internal".to_string()];
        assert!(host_matches(&hosts, "API.example.com:8443"));
        assert!(host_matches(&hosts, "svc.internal"));
        assert!(!host_matches(&hosts, "internal"));
        assert!(!host_matches(&hosts, "evil.com"));
        assert!(host_matches(&["::1".to_string()], "[::1]:80"));
        assert!(host_matches(&[], "anything"));
    }

    #[test]
    fn query_and_fragment_are_not_part_of_the_path() {
        assert_eq!(path_only("/a/b?x=1#f"), "/a/b");
        assert_eq!(path_only("/a#f?x"), "/a");
        assert_eq!(path_only(""), "");
    }

    fn route(path: PathMatch, methods: &[&str], hosts: &[&str], ci: bool) -> RouteMatch {
        RouteMatch {
            path,
            methods: methods.iter().map(|m| (*m).to_string()).collect(),
            hosts: hosts.iter().map(|h| (*h).to_string()).collect(),
            case_insensitive: ci,
        }
    }

    #[test]
    fn paths_are_case_sensitive_unless_the_rule_folds_case() {
        let strict = route(PathMatch::Prefix("/api/".into()), &[], &[], false);
        assert!(strict.matches("GET", "/api/x", "h"));
        assert!(!strict.matches("GET", "/API/x", "h"));
        let folded = route(PathMatch::Prefix("/api/".into()), &[], &[], true);
        assert!(folded.matches("GET", "/API/x", "h"));
        assert!(folded.matches("GET", "/Api/x", "h"));
        assert!(!folded.matches("GET", "/ap", "h"));
        let exact = route(PathMatch::Exact("/Admin".into()), &[], &[], true);
        assert!(exact.matches("GET", "/aDMIN", "h"));
        let t = route(template("/users/{id}/Orders"), &[], &[], true);
        assert!(t.matches("GET", "/USERS/7/orders", "h"));
        assert!(
            !route(template("/users/{id}/Orders"), &[], &[], false).matches(
                "GET",
                "/users/7/orders",
                "h"
            )
        );
    }

    #[test]
    fn methods_compare_case_insensitively_and_head_follows_get() {
        let get = route(PathMatch::Prefix("/".into()), &["GET"], &[], false);
        assert!(get.matches("get", "/x", "h"));
        assert!(get.matches("HEAD", "/x", "h"));
        assert!(get.matches("head", "/x", "h"));
        assert!(!get.matches("POST", "/x", "h"));
        let head = route(PathMatch::Prefix("/".into()), &["HEAD"], &[], false);
        assert!(head.matches("HEAD", "/x", "h"));
        assert!(!head.matches("GET", "/x", "h"));
        let post = route(PathMatch::Prefix("/".into()), &["POST"], &[], false);
        assert!(!post.matches("HEAD", "/x", "h"));
        assert!(post.matches("post", "/x", "h"));
    }

    #[test]
    fn a_trailing_host_dot_and_the_port_are_ignored() {
        let hosts = vec!["admin.example.com".to_string()];
        assert!(host_matches(&hosts, "admin.example.com."));
        assert!(host_matches(&hosts, "admin.example.com.:443"));
        assert!(host_matches(&hosts, "ADMIN.example.com:8443"));
        assert!(!host_matches(&hosts, "admin.example.com.."));
        assert!(!host_matches(&hosts, "admin.example.com.evil"));
        assert!(host_matches(
            &["*.example.com".to_string()],
            "a.example.com."
        ));
    }
}
