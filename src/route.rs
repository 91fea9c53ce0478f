//! Route rules: which rule a request falls under (first match wins), as Envoy's route matcher does.
//! Everything here is compiled at configure time; matching allocates nothing.

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
    /// Lower-case host names without port; `*.example.com` matches any subdomain; `*` matches all.
    pub hosts: Vec<String>,
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
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Template(segments) => template_matches(segments, path),
        }
    }
}

fn template_matches(segments: &[Segment], path: &str) -> bool {
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
                Some(part) if part == literal => {}
                _ => return false,
            },
        }
    }
    parts.next().is_none()
}

/// `host` is the `:authority` value; its port, if any, is ignored, and comparison is case-insensitive.
pub fn host_matches(patterns: &[String], authority: &str) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let host = strip_port(authority);
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
    /// `path` without the query string.
    pub fn matches(&self, method: &str, path: &str, authority: &str) -> bool {
        self.path.matches(path)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && host_matches(&self.hosts, authority)
    }
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
}
