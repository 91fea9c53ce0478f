//! Declared APIs: the operations an OpenAPI document (3.x, or Swagger 2.0) declares, compiled once,
//! and the verdict for an observed endpoint: declared, shadow (not declared) or zombie (declared
//! `deprecated: true`, or under a retired prefix such as `/v1/`).
//!
//! Only what the verdict needs is read: `servers[].url` (or Swagger's `basePath`) for the base
//! paths, `paths`, the eight HTTP method members of each path item and their `deprecated` flag.
//! Everything else in the document is ignored. Requests are matched in canonical form
//! ([`crate::canonical`]) and case-sensitively, as OpenAPI paths are: `/PET/42` is not
//! `/pet/{petId}` (a server that folds case serves an undeclared path). When several templates
//! match, the one with the most literal segments wins (`/user/login` over `/user/{username}`). A HEAD
//! request is declared by a `head` operation, or else by the `get` operation of its path.

use super::template::NormalisedPath;
use crate::reader::{ConfigError, Node, Result};
use serde_json::Value;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Paths accepted from one document (a bound on configure-time work and memory).
pub const MAX_DECLARED_PATHS: usize = 10_000;

/// An endpoint's standing against the declared APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Declaration {
    Declared,
    /// Not in the declared document.
    Shadow,
    /// Declared deprecated, or under a retired prefix.
    Zombie,
    /// No document is configured and no retired prefix matches.
    Unknown,
}

impl Declaration {
    pub fn as_str(self) -> &'static str {
        match self {
            Declaration::Declared => "declared",
            Declaration::Shadow => "shadow",
            Declaration::Zombie => "zombie",
            Declaration::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Param,
}

/// One path segment of a template: a plain literal, or literals and parameters (`{name}.{ext}`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum SegmentPattern {
    Literal(String),
    Parts(Vec<Part>),
}

impl SegmentPattern {
    fn matches(&self, segment: &str) -> bool {
        match self {
            SegmentPattern::Literal(l) => l == segment,
            SegmentPattern::Parts(parts) => parts_match(parts, segment),
        }
    }
}

/// Parameters match one or more characters; literals match exactly.
fn parts_match(parts: &[Part], text: &str) -> bool {
    match parts.split_first() {
        None => text.is_empty(),
        Some((Part::Literal(l), rest)) => {
            text.len() >= l.len()
                && text.get(..l.len()).is_some_and(|h| h == l)
                && text.get(l.len()..).is_some_and(|t| parts_match(rest, t))
        }
        Some((Part::Param, rest)) => {
            if rest.is_empty() {
                return !text.is_empty();
            }
            text.char_indices()
                .skip(1)
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .any(|i| text.get(i..).is_some_and(|t| parts_match(rest, t)))
        }
    }
}

#[derive(Debug, Clone)]
struct DeclaredPath {
    /// As written in the document.
    template: String,
    segments: Vec<SegmentPattern>,
    literals: usize,
    /// Upper-case method and its `deprecated` flag.
    operations: Vec<(String, bool)>,
}

/// A compiled OpenAPI document.
#[derive(Debug, Clone, Default)]
pub struct DeclaredApi {
    /// Base paths (from `servers` or `basePath`), each as segments; `[]` for the root.
    bases: Vec<(String, Vec<SegmentPattern>)>,
    paths: Vec<DeclaredPath>,
}

/// The declared template a path falls under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredMatch {
    /// Base path and path template as the document writes them, e.g. `/api/v3/pet/{petId}`.
    pub template: String,
    /// The request's method is declared for this path.
    pub method_declared: bool,
    /// That operation is `deprecated: true`.
    pub deprecated: bool,
}

/// One declared operation (see [`DeclaredApi::operations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredOperation {
    pub template: String,
    pub path: String,
    pub method: String,
    pub deprecated: bool,
}

impl DeclaredApi {
    /// Compiles `doc` (the value at `node`). `base_paths`, when given, replace the document's own.
    pub fn compile(node: &Node<'_>, base_paths: Option<&[String]>) -> Result<DeclaredApi> {
        let doc = node.value;
        let here = |suffix: &str, message: String| ConfigError {
            path: format!("{}{suffix}", node.path()),
            message,
        };
        let Some(obj) = doc.as_object() else {
            return Err(node.error("expected an OpenAPI document (a JSON object)"));
        };
        if !obj.contains_key("openapi") && !obj.contains_key("swagger") {
            return Err(
                node.error("not an OpenAPI document: it has neither \"openapi\" nor \"swagger\"")
            );
        }
        let Some(paths) = obj.get("paths").and_then(Value::as_object) else {
            return Err(here(
                ".paths",
                "expected an object of path templates".into(),
            ));
        };
        if paths.len() > MAX_DECLARED_PATHS {
            return Err(here(
                ".paths",
                format!(
                    "{} paths; at most {MAX_DECLARED_PATHS} are accepted",
                    paths.len()
                ),
            ));
        }
        let base_texts: Vec<String> = match base_paths {
            Some(list) => list.to_vec(),
            None => document_bases(obj),
        };
        let mut bases = Vec::new();
        for base in base_texts {
            let trimmed = base.trim_end_matches('/');
            let segments = compile_segments(trimmed)
                .map_err(|m| here("", format!("base path {base:?}: {m}")))?;
            if !bases.iter().any(|(t, _)| t == trimmed) {
                bases.push((trimmed.to_string(), segments));
            }
        }
        if bases.is_empty() {
            bases.push((String::new(), Vec::new()));
        }
        let mut compiled = Vec::new();
        for (template, item) in paths {
            if !template.starts_with('/') {
                return Err(here(
                    &format!(".paths.{template}"),
                    "a path template starts with '/'".into(),
                ));
            }
            let segments =
                compile_segments(template).map_err(|m| here(&format!(".paths.{template}"), m))?;
            let literals = segments
                .iter()
                .filter(|s| matches!(s, SegmentPattern::Literal(_)))
                .count();
            let mut operations = Vec::new();
            if let Some(item) = item.as_object() {
                for method in METHODS {
                    if let Some(op) = item.get(*method) {
                        let deprecated = op
                            .get("deprecated")
                            .and_then(Value::as_bool)
                            .unwrap_or(false);
                        operations.push((method.to_ascii_uppercase(), deprecated));
                    }
                }
            }
            compiled.push(DeclaredPath {
                template: template.clone(),
                segments,
                literals,
                operations,
            });
        }
        Ok(DeclaredApi {
            bases,
            paths: compiled,
        })
    }

    /// Every declared operation, once per base path: the full template (base and path, as
    /// [`DeclaredMatch::template`] spells it), the document's own path key, the upper-case method
    /// and its `deprecated` flag. What a collector needs to report operations never observed.
    pub fn operations(&self) -> Vec<DeclaredOperation> {
        let mut out = Vec::new();
        for (base, _) in &self.bases {
            for p in &self.paths {
                for (method, deprecated) in &p.operations {
                    out.push(DeclaredOperation {
                        template: format!("{base}{}", p.template),
                        path: p.template.clone(),
                        method: method.clone(),
                        deprecated: *deprecated,
                    });
                }
            }
        }
        out
    }

    /// Number of declared operations (method and path pairs).
    pub fn operation_count(&self) -> usize {
        self.paths.iter().map(|p| p.operations.len()).sum()
    }

    /// The most specific declared template that `path` falls under, if any.
    pub fn lookup(&self, method: &str, path: &NormalisedPath) -> Option<DeclaredMatch> {
        let mut best: Option<(usize, &str, &DeclaredPath)> = None;
        for (base_text, base) in &self.bases {
            let Some(rest) = strip_base(base, &path.segments) else {
                continue;
            };
            for declared in &self.paths {
                if declared.segments.len() != rest.len()
                    || !declared
                        .segments
                        .iter()
                        .zip(rest)
                        .all(|(pattern, segment)| pattern.matches(segment))
                {
                    continue;
                }
                let score = base.len() + declared.literals;
                if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                    best = Some((score, base_text, declared));
                }
            }
        }
        let (_, base, declared) = best?;
        let find = |wanted: &str| {
            declared
                .operations
                .iter()
                .find(|(m, _)| m.eq_ignore_ascii_case(wanted))
        };
        let operation = find(method).or_else(|| {
            method
                .eq_ignore_ascii_case("HEAD")
                .then(|| find("GET"))
                .flatten()
        });
        Some(DeclaredMatch {
            template: format!("{base}{}", declared.template),
            method_declared: operation.is_some(),
            deprecated: operation.is_some_and(|(_, d)| *d),
        })
    }
}

fn strip_base<'p>(base: &[SegmentPattern], segments: &'p [String]) -> Option<&'p [String]> {
    if segments.len() < base.len() {
        return None;
    }
    let (head, rest) = segments.split_at(base.len());
    base.iter()
        .zip(head)
        .all(|(p, s)| p.matches(s))
        .then_some(rest)
}

/// Base paths from `servers[].url` (OpenAPI 3) or `basePath` (Swagger 2).
fn document_bases(doc: &serde_json::Map<String, Value>) -> Vec<String> {
    if let Some(base) = doc.get("basePath").and_then(Value::as_str) {
        return vec![base.to_string()];
    }
    let urls: Vec<String> = doc
        .get("servers")
        .and_then(Value::as_array)
        .map(|servers| {
            servers
                .iter()
                .filter_map(|s| s.get("url").and_then(Value::as_str))
                .map(url_path)
                .collect()
        })
        .unwrap_or_default();
    if urls.is_empty() {
        vec![String::new()]
    } else {
        urls
    }
}

/// The path of a server URL: `https://h/api/v3` → `/api/v3`, `/api` → `/api`, `https://h` → ``.
fn url_path(url: &str) -> String {
    let rest = match url.find("://") {
        Some(i) => {
            let after = url.get(i + 3..).unwrap_or("");
            after.find('/').and_then(|j| after.get(j..)).unwrap_or("")
        }
        None => url,
    };
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    if rest.starts_with('/') {
        rest.to_string()
    } else if rest.is_empty() {
        String::new()
    } else {
        format!("/{rest}")
    }
}

fn compile_segments(template: &str) -> std::result::Result<Vec<SegmentPattern>, String> {
    template
        .split('/')
        .filter(|s| !s.is_empty())
        .map(compile_segment)
        .collect()
}

fn compile_segment(segment: &str) -> std::result::Result<SegmentPattern, String> {
    if !segment.contains(['{', '}']) {
        return Ok(SegmentPattern::Literal(segment.to_string()));
    }
    let mut parts = Vec::new();
    let mut rest = segment;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let close = rest
                    .find('}')
                    .ok_or_else(|| format!("unclosed '{{' in segment {segment:?}"))?;
                if close == 1 {
                    return Err(format!("empty parameter name in segment {segment:?}"));
                }
                if matches!(parts.last(), Some(Part::Param)) {
                    return Err(format!(
                        "two parameters without a literal between them in segment {segment:?}"
                    ));
                }
                parts.push(Part::Param);
                rest = rest.get(close + 1..).unwrap_or("");
            }
            Some(i) => {
                let literal = rest.get(..i).unwrap_or("");
                if literal.contains('}') {
                    return Err(format!("unopened '}}' in segment {segment:?}"));
                }
                parts.push(Part::Literal(literal.to_string()));
                rest = rest.get(i..).unwrap_or("");
            }
            None => {
                if rest.contains('}') {
                    return Err(format!("unopened '}}' in segment {segment:?}"));
                }
                parts.push(Part::Literal(rest.to_string()));
                rest = "";
            }
        }
    }
    Ok(SegmentPattern::Parts(parts))
}

/// Retired prefixes, compiled: compared case-insensitively with the normalised path.
#[derive(Debug, Clone, Default)]
pub struct RetiredPrefixes(Vec<String>);

impl RetiredPrefixes {
    pub fn compile(node: &Node<'_>) -> Result<RetiredPrefixes> {
        let mut out = Vec::new();
        for item in node.array()? {
            let p = item.non_empty_str()?;
            if !p.starts_with('/') {
                return Err(item.error("a retired prefix starts with '/'"));
            }
            out.push(p.to_ascii_lowercase());
        }
        Ok(RetiredPrefixes(out))
    }

    /// `/v1/` matches `/v1/users` and `/v1` itself; `/v1` also matches `/v10` (write the slash).
    pub fn matches(&self, path: &NormalisedPath) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let mut p = path.to_path().to_ascii_lowercase();
        if !p.ends_with('/') {
            p.push('/');
        }
        self.0.iter().any(|prefix| p.starts_with(prefix.as_str()))
    }
}

/// The verdict for one request: retired prefixes first, then the document.
pub fn verdict(
    declared: Option<&DeclaredApi>,
    retired: &RetiredPrefixes,
    path: &NormalisedPath,
    found: Option<&DeclaredMatch>,
) -> Declaration {
    if retired.matches(path) {
        return Declaration::Zombie;
    }
    match (declared, found) {
        (None, _) => Declaration::Unknown,
        (Some(_), Some(m)) if m.method_declared && m.deprecated => Declaration::Zombie,
        (Some(_), Some(m)) if m.method_declared => Declaration::Declared,
        (Some(_), _) => Declaration::Shadow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::template::normalise;
    use serde_json::json;

    fn api(doc: Value) -> DeclaredApi {
        DeclaredApi::compile(&Node::root(&doc), None).unwrap()
    }

    #[test]
    fn most_literal_template_wins_and_methods_are_checked() {
        let d = api(json!({"openapi": "3.0.0", "paths": {
            "/user/{username}": {"get": {}, "delete": {"deprecated": true}},
            "/user/login": {"get": {}}
        }}));
        let m = d.lookup("GET", &normalise("/user/login")).unwrap();
        assert_eq!(m.template, "/user/login");
        let m = d.lookup("get", &normalise("/user/jane/")).unwrap();
        assert_eq!(m.template, "/user/{username}");
        assert!(m.method_declared && !m.deprecated);
        assert!(d.lookup("GET", &normalise("/USER/jane")).is_none());
        assert!(
            d.lookup("HEAD", &normalise("/user/jane"))
                .unwrap()
                .method_declared
        );
        let m = d.lookup("DELETE", &normalise("/user/jane")).unwrap();
        assert!(m.deprecated);
        let m = d.lookup("PATCH", &normalise("/user/jane")).unwrap();
        assert!(!m.method_declared);
        assert!(d.lookup("GET", &normalise("/user/jane/extra")).is_none());
        let mut ops: Vec<(String, String, bool)> = d
            .operations()
            .into_iter()
            .map(|o| (o.template, o.method, o.deprecated))
            .collect();
        ops.sort();
        assert_eq!(
            ops,
            vec![
                ("/user/login".into(), "GET".into(), false),
                ("/user/{username}".into(), "DELETE".into(), true),
                ("/user/{username}".into(), "GET".into(), false),
            ]
        );
    }

    #[test]
    fn server_urls_and_swagger_base_paths_prefix_templates() {
        let d = api(json!({"openapi": "3.0.0",
            "servers": [{"url": "https://api.example.com/api/v3"}, {"url": "/api/v3/"}],
            "paths": {"/pet/{petId}": {"get": {}}}}));
        assert_eq!(
            d.lookup("GET", &normalise("/api/v3/pet/1"))
                .unwrap()
                .template,
            "/api/v3/pet/{petId}"
        );
        assert!(d.lookup("GET", &normalise("/pet/1")).is_none());
        let d = api(json!({"swagger": "2.0", "basePath": "/v2", "paths": {"/pet": {"post": {}}}}));
        assert!(d.lookup("POST", &normalise("/v2/pet")).is_some());
        let over =
            json!({"openapi": "3.1.0", "servers": [{"url": "/x"}], "paths": {"/a": {"get": {}}}});
        let d = DeclaredApi::compile(&Node::root(&over), Some(&["".to_string()])).unwrap();
        assert!(d.lookup("GET", &normalise("/a")).is_some());
    }

    #[test]
    fn mixed_segments_match_literal_and_parameter_parts() {
        let d = api(json!({"openapi": "3.0.0", "paths": {"/files/{name}.{ext}": {"get": {}}}}));
        assert!(d.lookup("GET", &normalise("/files/report.pdf")).is_some());
        assert!(d.lookup("GET", &normalise("/files/report")).is_none());
        assert!(d.lookup("GET", &normalise("/files/.pdf")).is_none());
    }

    #[test]
    fn bad_documents_are_refused_with_their_path() {
        let doc = json!({"d": {"openapi": "3.0.0", "paths": {"/a/{x": {}}}});
        let obj = Node::root(&doc).object(&["d"]).unwrap();
        let err = DeclaredApi::compile(&obj.get("d").unwrap(), None).unwrap_err();
        assert_eq!(err.path, "d.paths./a/{x");
        for bad in [
            json!({"paths": {}}),
            json!({"openapi": "3.0.0"}),
            json!([1]),
            json!({"openapi": "3.0.0", "paths": {"a": {}}}),
            json!({"openapi": "3.0.0", "paths": {"/{a}{b}": {}}}),
        ] {
            assert!(
                DeclaredApi::compile(&Node::root(&bad), None).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn retired_prefixes_make_zombies_before_the_document_is_consulted() {
        let list = json!(["/v1/"]);
        let retired = RetiredPrefixes::compile(&Node::root(&list)).unwrap();
        let d =
            api(json!({"openapi": "3.0.0", "paths": {"/v1/a": {"get": {}}, "/v2/a": {"get": {}}}}));
        for (path, expected) in [
            ("/v1/a", Declaration::Zombie),
            ("/V1", Declaration::Zombie),
            ("/v10/a", Declaration::Shadow),
            ("/v2/a", Declaration::Declared),
        ] {
            let p = normalise(path);
            let m = d.lookup("GET", &p);
            assert_eq!(
                verdict(Some(&d), &retired, &p, m.as_ref()),
                expected,
                "{path}"
            );
        }
        let p = normalise("/v2/a");
        assert_eq!(verdict(None, &retired, &p, None), Declaration::Unknown);
    }
}
