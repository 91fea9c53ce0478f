//! OpenAPI 3.0 / 3.1 documents (JSON) → per-operation checks, compiled once.
//!
//! For every operation: the method, the path template (literal segments and `{param}` segments,
//! optionally with a literal prefix/suffix such as `{name}.json`), its path, query, header and cookie
//! parameters, and its request body per media type. `$ref`s to `#/components/parameters`,
//! `#/components/requestBodies` and `#/components/schemas` are resolved at configure time; all
//! schemas of one document share one compiled arena.
//!
//! # Parameters (the common cases)
//! Values are percent-decoded, then converted by the declared `type`: `integer` / `number` (a
//! value that does not parse stays a string, so `type` reports it), `boolean` (`true`/`false`),
//! `string`, or `array` of those. Arrays: query `form` style with `explode` (default true:
//! `?tag=a&tag=b`) or not (`?tag=a,b`), `spaceDelimited`, `pipeDelimited`; path and header
//! `simple` style (`a,b`). A scalar query parameter given twice is refused (keyword `duplicate`),
//! so that the proxy and the upstream cannot disagree on which value counts. `object` parameters,
//! `matrix`/`label`/`deepObject` styles and `content`-encoded parameters are refused at configure
//! time. Per the specification, header parameters named `accept`, `content-type` and
//! `authorization` are ignored. Undeclared query parameters and headers are allowed.
//!
//! # Bodies
//! `application/json` and any `+json` media type are parsed and validated; a declared range
//! (`application/*`, `*/*`) matches too. Other declared media types are only checked as a
//! content type (the body is not buffered). A body sent to an operation that declares none is
//! refused with 415.

use super::compile::{
    child, err, percent_decode, unsupported, CompileError, Draft, Multi, Options, SNode, Schema,
};
use super::problem::{Rejection, Violation};
use crate::media;
use serde_json::Value;
use std::sync::Arc;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
const MAX_REF_HOPS: usize = 32;

#[derive(Debug)]
pub struct OpenApi {
    /// Path prefix stripped before matching (from `servers[0].url` unless configured).
    pub base_path: String,
    paths: Vec<PathEntry>,
    pub(crate) bodies: Vec<Schema>,
    #[allow(dead_code)] // keeps the shared arena alive explicitly; schemas also hold it
    arena: Arc<[SNode]>,
}

#[derive(Debug)]
struct PathEntry {
    segments: Vec<TSeg>,
    operations: Vec<Operation>,
}

#[derive(Debug)]
enum TSeg {
    Literal(String),
    Param {
        prefix: String,
        name: String,
        suffix: String,
    },
}

#[derive(Debug)]
pub struct Operation {
    /// Upper-case method.
    pub method: String,
    pub operation_id: Option<String>,
    /// The path template as written in the document, e.g. `/pets/{petId}`.
    pub template: String,
    params: Vec<Param>,
    body: Option<Body>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum In {
    Path,
    Query,
    Header,
    Cookie,
}

impl In {
    fn name(self) -> &'static str {
        match self {
            In::Path => "path",
            In::Query => "query",
            In::Header => "header",
            In::Cookie => "cookie",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Integer,
    Number,
    Boolean,
    String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Explode,
    Comma,
    Space,
    Pipe,
}

#[derive(Debug)]
struct Param {
    name: String,
    location: In,
    required: bool,
    schema: Schema,
    /// `Some(split)` for arrays.
    array: Option<Split>,
    scalar: Scalar,
}

#[derive(Debug)]
struct Body {
    required: bool,
    /// (lower-case media range, index into `bodies` for JSON media types).
    media: Vec<(String, Option<BodyKind>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// Parse as JSON; validate against `bodies[i]` when `Some`.
    Json(Option<usize>),
}

/// Where a request falls in the document.
#[derive(Debug)]
pub enum Found<'a> {
    Operation {
        op: &'a Operation,
        /// Decoded path parameter values, by name.
        path_params: Vec<(&'a str, String)>,
    },
    UnknownPath,
    MethodNotAllowed {
        allow: Vec<String>,
    },
}

/// What to do with the body of a matched operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// Nothing to buffer.
    None,
    /// Buffer the body, parse it as JSON, and validate it against `bodies[i]` if `Some(i)`.
    Json(Option<usize>),
}

/// A document refused at configure time: JSON pointer into the document, and what is wrong.
pub type OpenApiError = CompileError;

/// Follows local `$ref`s (`#/components/...`) from `value` at `pointer`.
fn deref<'d>(
    doc: &'d Value,
    value: &'d Value,
    pointer: &str,
) -> Result<(&'d Value, String), OpenApiError> {
    let mut value = value;
    let mut pointer = pointer.to_string();
    for _ in 0..MAX_REF_HOPS {
        let Some(Value::String(r)) = value.get("$ref") else {
            return Ok((value, pointer));
        };
        let Some(target) = r.strip_prefix('#') else {
            return Err(unsupported(
                &child(&pointer, "$ref"),
                format!("$ref {r:?}: only references inside the document are supported"),
            ));
        };
        let target = percent_decode(target);
        value = doc.pointer(&target).ok_or_else(|| {
            err(
                &child(&pointer, "$ref"),
                format!("$ref {r:?} does not resolve"),
            )
        })?;
        pointer = target;
    }
    Err(err(&pointer, "too many chained $refs"))
}

/// Query-string decoding: `+` is a space, then percent-decoding.
fn form_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

fn schema_type(doc: &Value, schema: &Value, pointer: &str) -> Result<Option<String>, OpenApiError> {
    let (s, _) = deref(doc, schema, pointer)?;
    Ok(match s.get("type") {
        Some(Value::String(t)) => Some(t.clone()),
        // OpenAPI 3.1 `["integer", "null"]`: the first non-null type decides the conversion.
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .map(str::to_string),
        _ => None,
    })
}

fn scalar_of(t: Option<&str>, pointer: &str) -> Result<Scalar, OpenApiError> {
    Ok(match t {
        Some("integer") => Scalar::Integer,
        Some("number") => Scalar::Number,
        Some("boolean") => Scalar::Boolean,
        Some("string") | None => Scalar::String,
        Some(other) => {
            return Err(unsupported(
                pointer,
                format!("parameters of type {other:?} are not supported"),
            ))
        }
    })
}

impl OpenApi {
    /// Compiles an OpenAPI 3.0.x or 3.1.x document. `formats` turns `format` assertions on.
    pub fn compile(
        doc: &Value,
        formats: bool,
        base_path: Option<&str>,
    ) -> Result<OpenApi, OpenApiError> {
        let options = Options {
            draft: openapi_draft(doc)?,
            formats,
            openapi: true,
        };
        let mut multi = Multi::new(doc, options);
        if let Some(Value::Object(schemas)) = doc.pointer("/components/schemas") {
            for name in schemas.keys() {
                multi.index(&child("/components/schemas", name))?;
            }
        }
        let base_path = match base_path {
            Some(b) => b.trim_end_matches('/').to_string(),
            None => server_base_path(doc),
        };
        let Some(Value::Object(paths)) = doc.get("paths") else {
            return Err(err("/paths", "must be an object"));
        };
        let mut ops = OperationCompiler {
            doc,
            multi,
            body_roots: Vec::new(),
            pending_params: Vec::new(),
        };
        let mut entries = Vec::new();
        for (template, item) in paths {
            entries.push(ops.path_item(template, item)?);
        }
        // Every schema of the document shares one arena, which exists only once all are compiled:
        // parameters and bodies point into it afterwards.
        let arena = ops.multi.finish()?;
        attach_params(&mut entries, ops.pending_params, &arena);
        let bodies = ops
            .body_roots
            .into_iter()
            .map(|root| Schema::in_arena(arena.clone(), root))
            .collect();
        Ok(OpenApi {
            base_path,
            paths: entries,
            bodies,
            arena,
        })
    }

    /// Every operation, for listings and tests.
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.paths.iter().flat_map(|p| p.operations.iter())
    }

    /// The operation for `method` and `path` (no query string). Literal segments win over
    /// templated ones, left to right (`/pets/mine` before `/pets/{id}`).
    pub fn find(&self, method: &str, path: &str) -> Found<'_> {
        let Some(rest) = strip_base(path, &self.base_path) else {
            return Found::UnknownPath;
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let mut best: Option<(Vec<bool>, &PathEntry, PathParams<'_>)> = None;
        for entry in &self.paths {
            let Some((score, params)) = match_template(&entry.segments, &parts) else {
                continue;
            };
            if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                best = Some((score, entry, params));
            }
        }
        let Some((_, entry, path_params)) = best else {
            return Found::UnknownPath;
        };
        // HEAD follows the GET operation unless the document declares HEAD itself.
        let find = |wanted: &str| {
            entry
                .operations
                .iter()
                .find(|op| op.method.eq_ignore_ascii_case(wanted))
        };
        let operation = find(method).or_else(|| {
            method
                .eq_ignore_ascii_case("HEAD")
                .then(|| find("GET"))
                .flatten()
        });
        match operation {
            Some(op) => Found::Operation { op, path_params },
            None => Found::MethodNotAllowed {
                allow: entry
                    .operations
                    .iter()
                    .map(|op| op.method.clone())
                    .collect(),
            },
        }
    }

    /// Checks path, query, header and cookie parameters. `query` is without the `?`;
    /// `header` takes lower-case names.
    pub fn check_parameters(
        &self,
        op: &Operation,
        path_params: &[(&str, String)],
        query: &str,
        header: &dyn Fn(&str) -> Option<String>,
        max_errors: usize,
    ) -> Result<(), Rejection> {
        let mut violations = Vec::new();
        let mut truncated = false;
        let query_pairs: Vec<(String, String)> = if query.is_empty() {
            Vec::new()
        } else {
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (form_decode(k), form_decode(v))
                })
                .collect()
        };
        let cookies: Vec<(String, String)> = header("cookie")
            .map(|c| {
                c.split(';')
                    .filter_map(|kv| kv.trim().split_once('='))
                    .map(|(k, v)| (k.to_string(), percent_decode(v)))
                    .collect()
            })
            .unwrap_or_default();
        for p in &op.params {
            let raw: Vec<String> = match p.location {
                In::Path => path_params
                    .iter()
                    .filter(|(n, _)| *n == p.name)
                    .map(|(_, v)| v.clone())
                    .collect(),
                In::Query => query_pairs
                    .iter()
                    .filter(|(k, _)| *k == p.name)
                    .map(|(_, v)| v.clone())
                    .collect(),
                In::Header => {
                    let lower = p.name.to_ascii_lowercase();
                    if matches!(lower.as_str(), "accept" | "content-type" | "authorization") {
                        continue;
                    }
                    header(&lower).into_iter().collect()
                }
                In::Cookie => cookies
                    .iter()
                    .filter(|(k, _)| *k == p.name)
                    .map(|(_, v)| v.clone())
                    .collect(),
            };
            let at = format!(
                "/{}/{}",
                p.location.name(),
                super::compile::escape_token(&p.name)
            );
            if raw.is_empty() {
                if p.required {
                    violations.push(Violation {
                        pointer: at,
                        keyword: "required",
                        schema_location: String::new(),
                    });
                }
                continue;
            }
            let value = match p.array {
                None => {
                    if raw.len() > 1 {
                        violations.push(Violation {
                            pointer: at,
                            keyword: "duplicate",
                            schema_location: String::new(),
                        });
                        continue;
                    }
                    convert(raw.first().map_or("", String::as_str), p.scalar)
                }
                Some(split) => {
                    let items: Vec<&str> = match (split, p.location) {
                        (Split::Explode, In::Query | In::Cookie) => {
                            raw.iter().map(String::as_str).collect()
                        }
                        (Split::Space, _) => raw.iter().flat_map(|r| r.split(' ')).collect(),
                        (Split::Pipe, _) => raw.iter().flat_map(|r| r.split('|')).collect(),
                        _ => raw.iter().flat_map(|r| r.split(',')).collect(),
                    };
                    Value::Array(items.into_iter().map(|s| convert(s, p.scalar)).collect())
                }
            };
            if let Err((list, more)) = p.schema.validate(&value, max_errors) {
                truncated |= more;
                violations.extend(list.into_iter().map(|v| Violation {
                    pointer: format!("{at}{}", v.pointer),
                    ..v
                }));
            }
        }
        if violations.is_empty() {
            return Ok(());
        }
        if violations.len() > max_errors {
            violations.truncate(max_errors);
            truncated = true;
        }
        Err(Rejection::InvalidParameters {
            violations,
            truncated,
        })
    }

    /// Decides what the body needs, from the request's `content-type` and whether it has a body.
    pub fn body_plan(
        &self,
        op: &Operation,
        content_type: Option<&str>,
        has_body: bool,
    ) -> Result<BodyPlan, Rejection> {
        let Some(body) = &op.body else {
            return if has_body {
                Err(Rejection::UnsupportedMediaType)
            } else {
                Ok(BodyPlan::None)
            };
        };
        if !has_body {
            return if body.required {
                Err(Rejection::MissingBody)
            } else {
                Ok(BodyPlan::None)
            };
        }
        let Some(ct) = content_type else {
            return Err(Rejection::UnsupportedMediaType);
        };
        let essence = media::essence(ct);
        let (major, _) = essence.split_once('/').unwrap_or((essence.as_str(), ""));
        let wildcard = format!("{major}/*");
        let found = body
            .media
            .iter()
            .find(|(m, _)| *m == essence)
            .or_else(|| body.media.iter().find(|(m, _)| *m == wildcard))
            .or_else(|| body.media.iter().find(|(m, _)| m == "*/*"));
        match found {
            None => Err(Rejection::UnsupportedMediaType),
            Some((_, Some(BodyKind::Json(schema)))) if media::is_json(&essence) => {
                Ok(BodyPlan::Json(*schema))
            }
            // A declared range matched by JSON: still parse it; other types: content type only.
            Some((_, _)) if media::is_json(&essence) => Ok(BodyPlan::Json(None)),
            Some(_) => Ok(BodyPlan::None),
        }
    }
}

fn convert(s: &str, scalar: Scalar) -> Value {
    match scalar {
        Scalar::Integer | Scalar::Number => {
            if let Ok(i) = s.parse::<i64>() {
                return Value::from(i);
            }
            if let Ok(u) = s.parse::<u64>() {
                return Value::from(u);
            }
            match s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n)
                    if !s.is_empty()
                        && !s.starts_with(['+', '.'])
                        && !s.contains(['i', 'I', 'n', 'N']) =>
                {
                    Value::Number(n)
                }
                _ => Value::String(s.to_string()),
            }
        }
        Scalar::Boolean => match s {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => Value::String(other.to_string()),
        },
        Scalar::String => Value::String(s.to_string()),
    }
}

fn strip_base<'p>(path: &'p str, base: &str) -> Option<&'p str> {
    if base.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// `openapi: 3.0.x` validates schemas as OpenAPI 3.0 does; `3.1.x` as draft 2020-12.
fn openapi_draft(doc: &Value) -> Result<Draft, OpenApiError> {
    let version = doc.get("openapi").and_then(Value::as_str).ok_or_else(|| {
        err(
            "/openapi",
            "an OpenAPI 3 document needs an \"openapi\" version string",
        )
    })?;
    if version.starts_with("3.0.") {
        Ok(Draft::OpenApi30)
    } else if version.starts_with("3.1.") {
        Ok(Draft::Draft2020)
    } else {
        Err(unsupported(
            "/openapi",
            format!("OpenAPI version {version:?} is not supported (3.0.x and 3.1.x are)"),
        ))
    }
}

/// Compiles the path items and their operations into one `Multi`; the parameters wait in
/// `pending_params` (one list per operation, in order) until the arena exists.
struct OperationCompiler<'d> {
    doc: &'d Value,
    multi: Multi<'d>,
    body_roots: Vec<usize>,
    pending_params: Vec<Vec<CompiledParam>>,
}

impl OperationCompiler<'_> {
    fn path_item(&mut self, template: &str, item: &Value) -> Result<PathEntry, OpenApiError> {
        let (item, item_ptr) = deref(self.doc, item, &child("/paths", template))?;
        let Value::Object(item_map) = item else {
            return Err(err(&item_ptr, "a path item must be an object"));
        };
        let segments = compile_template(template).map_err(|m| err(&item_ptr, m))?;
        // Path-level parameters apply to every operation (an operation may override them).
        let shared = item_map
            .get("parameters")
            .map(|p| (p, child(&item_ptr, "parameters")));
        let mut operations = Vec::new();
        for (method, op) in item_map {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let op_ptr = child(&item_ptr, method);
            let shared = shared.as_ref().map(|(p, ptr)| (*p, ptr.as_str()));
            operations.push(self.operation(template, &segments, shared, method, op, &op_ptr)?);
        }
        Ok(PathEntry {
            segments,
            operations,
        })
    }

    fn operation(
        &mut self,
        template: &str,
        segments: &[TSeg],
        shared: Option<(&Value, &str)>,
        method: &str,
        op: &Value,
        op_ptr: &str,
    ) -> Result<Operation, OpenApiError> {
        let Value::Object(op_map) = op else {
            return Err(err(op_ptr, "an operation must be an object"));
        };
        let mut params = Vec::new();
        if let Some((p, ptr)) = shared {
            collect_params(self.doc, p, ptr, &mut params)?;
        }
        if let Some(p) = op_map.get("parameters") {
            collect_params(self.doc, p, &child(op_ptr, "parameters"), &mut params)?;
        }
        let compiled = self.compile_params(template, segments, params, op_ptr)?;
        let body = match op_map.get("requestBody") {
            None => None,
            Some(rb) => Some(compile_body(
                self.doc,
                rb,
                &child(op_ptr, "requestBody"),
                &mut self.multi,
                &mut self.body_roots,
            )?),
        };
        self.pending_params.push(compiled);
        Ok(Operation {
            method: method.to_ascii_uppercase(),
            operation_id: op_map
                .get("operationId")
                .and_then(Value::as_str)
                .map(str::to_string),
            template: template.to_string(),
            params: Vec::new(),
            body,
        })
    }

    /// Each parameter's schema, and the template and the path parameters must agree both ways.
    fn compile_params(
        &mut self,
        template: &str,
        segments: &[TSeg],
        params: Vec<RawParam>,
        op_ptr: &str,
    ) -> Result<Vec<CompiledParam>, OpenApiError> {
        let in_template = |name: &str| {
            segments
                .iter()
                .any(|s| matches!(s, TSeg::Param { name: n, .. } if n == name))
        };
        let mut compiled = Vec::new();
        for (name, location, required, schema_ptr, array, scalar) in params {
            if location == In::Path && !in_template(&name) {
                return Err(err(
                    &schema_ptr,
                    format!("path parameter {name:?} is not in the template {template:?}"),
                ));
            }
            let root = self.multi.schema_at(&schema_ptr)?;
            self.multi.index(&schema_ptr)?;
            compiled.push((name, location, required, root, array, scalar));
        }
        for s in segments {
            if let TSeg::Param { name, .. } = s {
                if !compiled.iter().any(|p| p.1 == In::Path && p.0 == *name) {
                    return Err(err(
                        op_ptr,
                        format!("template parameter {name:?} is not declared as a path parameter"),
                    ));
                }
            }
        }
        Ok(compiled)
    }
}

/// Gives each operation, in compile order, its parameters with their schemas in `arena`.
fn attach_params(
    entries: &mut [PathEntry],
    pending_params: Vec<Vec<CompiledParam>>,
    arena: &Arc<[SNode]>,
) {
    let mut pending = pending_params.into_iter();
    for entry in entries {
        for op in &mut entry.operations {
            let compiled = pending.next().unwrap_or_default();
            op.params = compiled
                .into_iter()
                .map(|(name, location, required, root, array, scalar)| Param {
                    name,
                    location,
                    required,
                    schema: Schema::in_arena(arena.clone(), root),
                    array,
                    scalar,
                })
                .collect();
        }
    }
}

fn server_base_path(doc: &Value) -> String {
    let Some(url) = doc.pointer("/servers/0/url").and_then(Value::as_str) else {
        return String::new();
    };
    if url.contains('{') {
        // Server variables: take the path after the host if it has no variables itself.
        let after_host = url
            .split_once("://")
            .map_or(url, |(_, r)| r.split_once('/').map_or("", |(_, p)| p));
        if after_host.contains('{') {
            return String::new();
        }
        return format!("/{}", after_host.trim_end_matches('/'))
            .trim_end_matches('/')
            .to_string();
    }
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').and_then(|i| rest.get(i..)).unwrap_or(""),
        None => url,
    };
    path.trim_end_matches('/').to_string()
}

fn compile_template(template: &str) -> Result<Vec<TSeg>, String> {
    let rest = template
        .strip_prefix('/')
        .ok_or_else(|| format!("path {template:?} must start with '/'"))?;
    rest.split('/')
        .map(|seg| {
            let Some(open) = seg.find('{') else {
                if seg.contains('}') {
                    return Err(format!("unbalanced '}}' in {template:?}"));
                }
                return Ok(TSeg::Literal(percent_decode(seg)));
            };
            let (prefix, after) = seg.split_at(open);
            let after = after.get(1..).unwrap_or("");
            let (name, suffix) = after
                .split_once('}')
                .ok_or_else(|| format!("unbalanced '{{' in {template:?}"))?;
            if name.is_empty() || suffix.contains(['{', '}']) || prefix.contains('}') {
                return Err(format!(
                    "segment {seg:?}: one {{name}} per segment is supported"
                ));
            }
            Ok(TSeg::Param {
                prefix: prefix.to_string(),
                name: name.to_string(),
                suffix: suffix.to_string(),
            })
        })
        .collect()
}

/// Decoded path parameter values by name.
type PathParams<'t> = Vec<(&'t str, String)>;
/// (name, location, required, arena root, array split, scalar type) before the arena is final.
type CompiledParam = (String, In, bool, usize, Option<Split>, Scalar);

/// `Some((specificity, params))` when the path matches; specificity marks literal segments.
fn match_template<'t>(segments: &'t [TSeg], parts: &[&str]) -> Option<(Vec<bool>, PathParams<'t>)> {
    if segments.len() != parts.len() {
        return None;
    }
    let mut score = Vec::with_capacity(parts.len());
    let mut params = Vec::new();
    for (seg, part) in segments.iter().zip(parts) {
        let decoded = percent_decode(part);
        match seg {
            TSeg::Literal(l) => {
                if *l != decoded {
                    return None;
                }
                score.push(true);
            }
            TSeg::Param {
                prefix,
                name,
                suffix,
            } => {
                let value = part
                    .strip_prefix(prefix.as_str())?
                    .strip_suffix(suffix.as_str())?;
                if value.is_empty() {
                    return None;
                }
                score.push(false);
                params.push((name.as_str(), percent_decode(value)));
            }
        }
    }
    Some((score, params))
}

type RawParam = (String, In, bool, String, Option<Split>, Scalar);

/// Adds the parameters of a `parameters` array; a later (operation-level) declaration with the
/// same name and location replaces an earlier (path-level) one.
fn collect_params(
    doc: &Value,
    list: &Value,
    pointer: &str,
    out: &mut Vec<RawParam>,
) -> Result<(), OpenApiError> {
    let Value::Array(items) = list else {
        return Err(err(pointer, "must be an array"));
    };
    for (i, item) in items.iter().enumerate() {
        let (p, ptr) = deref(doc, item, &child(pointer, &i.to_string()))?;
        let Value::Object(pm) = p else {
            return Err(err(&ptr, "a parameter must be an object"));
        };
        let name = pm
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| err(&child(&ptr, "name"), "must be a string"))?;
        let location = match pm.get("in").and_then(Value::as_str) {
            Some("path") => In::Path,
            Some("query") => In::Query,
            Some("header") => In::Header,
            Some("cookie") => In::Cookie,
            _ => {
                return Err(err(
                    &child(&ptr, "in"),
                    "must be path, query, header or cookie",
                ))
            }
        };
        let required = match pm.get("required") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(err(&child(&ptr, "required"), "must be true or false")),
        };
        if location == In::Path && !required {
            return Err(err(
                &child(&ptr, "required"),
                "path parameters must be required: true",
            ));
        }
        if pm.contains_key("content") {
            return Err(unsupported(
                &child(&ptr, "content"),
                "parameters described by \"content\" are not supported; use \"schema\"",
            ));
        }
        let schema_ptr = child(&ptr, "schema");
        let Some(schema) = pm.get("schema") else {
            return Err(err(&schema_ptr, "is required"));
        };
        let t = schema_type(doc, schema, &schema_ptr)?;
        let style = pm.get("style").and_then(Value::as_str);
        let explode = pm.get("explode").and_then(Value::as_bool).unwrap_or(
            matches!(style, None | Some("form")) && matches!(location, In::Query | In::Cookie),
        );
        let (array, scalar) = if t.as_deref() == Some("array") {
            let (s, sp) = deref(doc, schema, &schema_ptr)?;
            let item_type = match s.get("items") {
                Some(items) => schema_type(doc, items, &child(&sp, "items"))?,
                None => None,
            };
            let split = match (style, location) {
                (None | Some("form"), In::Query | In::Cookie) if explode => Split::Explode,
                (None | Some("form"), In::Query | In::Cookie) => Split::Comma,
                (None | Some("simple"), In::Path | In::Header) => Split::Comma,
                (Some("spaceDelimited"), In::Query) => Split::Space,
                (Some("pipeDelimited"), In::Query) => Split::Pipe,
                (Some(other), _) => {
                    return Err(unsupported(
                        &child(&ptr, "style"),
                        format!("style {other:?} is not supported for this parameter"),
                    ))
                }
            };
            (Some(split), scalar_of(item_type.as_deref(), &schema_ptr)?)
        } else {
            match style {
                None | Some("form") | Some("simple") => {}
                Some(other) => {
                    return Err(unsupported(
                        &child(&ptr, "style"),
                        format!("style {other:?} is not supported"),
                    ))
                }
            }
            (None, scalar_of(t.as_deref(), &schema_ptr)?)
        };
        out.retain(|(n, l, ..)| !(n == name && *l == location));
        out.push((
            name.to_string(),
            location,
            required,
            schema_ptr,
            array,
            scalar,
        ));
    }
    Ok(())
}

fn compile_body(
    doc: &Value,
    rb: &Value,
    pointer: &str,
    multi: &mut Multi<'_>,
    roots: &mut Vec<usize>,
) -> Result<Body, OpenApiError> {
    let (rb, ptr) = deref(doc, rb, pointer)?;
    let Value::Object(map) = rb else {
        return Err(err(&ptr, "a requestBody must be an object"));
    };
    let required = map
        .get("required")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let content_ptr = child(&ptr, "content");
    let Some(Value::Object(content)) = map.get("content") else {
        return Err(err(&content_ptr, "must be an object of media types"));
    };
    let mut media = Vec::new();
    for (range, m) in content {
        let essence = media::essence(range);
        let m_ptr = child(&content_ptr, range);
        let json_like = media::is_json(&essence) || essence == "application/*" || essence == "*/*";
        let kind = match (json_like, m) {
            (true, Value::Object(mm)) if mm.contains_key("schema") => {
                let schema_ptr = child(&m_ptr, "schema");
                multi.index(&schema_ptr)?;
                let root = multi.schema_at(&schema_ptr)?;
                roots.push(root);
                Some(BodyKind::Json(Some(roots.len() - 1)))
            }
            (true, _) => Some(BodyKind::Json(None)),
            (false, _) => None,
        };
        media.push((essence, kind));
    }
    Ok(Body { required, media })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "openapi": "3.0.3",
            "servers": [{"url": "https://api.example.com/v1"}],
            "paths": {
                "/pets": {
                    "get": {"parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}},
                        {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}},
                        {"$ref": "#/components/parameters/Trace"}
                    ]},
                    "post": {"requestBody": {"$ref": "#/components/requestBodies/Pet"}}
                },
                "/pets/mine": {"get": {}},
                "/pets/{id}": {
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}}],
                    "get": {}, "delete": {}
                },
                "/files/{name}.json": {"get": {"parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[a-z]+$"}}]}}
            },
            "components": {
                "parameters": {"Trace": {"name": "X-Trace", "in": "header", "required": true, "schema": {"type": "string", "format": "uuid"}}},
                "requestBodies": {"Pet": {"required": true, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Pet"}},
                    "text/plain": {}
                }}},
                "schemas": {"Pet": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}, "tag": {"type": "string", "nullable": true},
                    "kids": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}}
                }, "additionalProperties": false}}
            }
        })
    }

    fn api() -> OpenApi {
        OpenApi::compile(&doc(), true, None).unwrap()
    }

    fn headers(list: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            list.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn base_path_comes_from_the_first_server() {
        assert_eq!(api().base_path, "/v1");
        assert!(matches!(api().find("GET", "/pets"), Found::UnknownPath));
    }

    #[test]
    fn literal_segments_win_over_templates() {
        let a = api();
        match a.find("GET", "/v1/pets/mine") {
            Found::Operation { op, path_params } => {
                assert_eq!(op.template, "/pets/mine");
                assert!(path_params.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match a.find("GET", "/v1/pets/42") {
            Found::Operation { op, path_params } => {
                assert_eq!(op.template, "/pets/{id}");
                assert_eq!(path_params, vec![("id", "42".to_string())]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn head_follows_the_get_operation_and_paths_are_case_sensitive() {
        let a = api();
        match a.find("HEAD", "/v1/pets/mine") {
            Found::Operation { op, .. } => assert_eq!(op.method, "GET"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(a.find("GET", "/v1/PETS/mine"), Found::UnknownPath));
    }

    #[test]
    fn known_path_with_unknown_method_lists_allowed_methods() {
        match api().find("PUT", "/v1/pets/1") {
            Found::MethodNotAllowed { allow } => assert_eq!(allow, vec!["DELETE", "GET"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(api().find("GET", "/v1/cats"), Found::UnknownPath));
    }

    fn check(
        a: &OpenApi,
        method: &str,
        path: &str,
        query: &str,
        h: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), Rejection> {
        let Found::Operation { op, path_params } = a.find(method, path) else {
            panic!("no operation");
        };
        a.check_parameters(op, &path_params, query, h, 10)
    }

    #[test]
    fn path_parameters_are_typed() {
        let a = api();
        let none = headers(&[]);
        assert!(check(&a, "GET", "/v1/pets/7", "", &none).is_ok());
        let r = check(&a, "GET", "/v1/pets/abc", "", &none).unwrap_err();
        let Rejection::InvalidParameters { violations, .. } = r else {
            panic!()
        };
        assert_eq!(violations[0].pointer, "/path/id");
        assert_eq!(violations[0].keyword, "type");
        assert!(check(&a, "GET", "/v1/pets/0", "", &none).is_err());
        assert!(check(&a, "GET", "/v1/files/abc.json", "", &none).is_ok());
        assert!(check(&a, "GET", "/v1/files/ab1.json", "", &none).is_err());
    }

    #[test]
    fn query_and_header_parameters_are_checked() {
        let a = api();
        let ok = headers(&[("x-trace", "2eb8aa08-aa98-11ea-b4aa-73b441d16380")]);
        assert!(check(&a, "GET", "/v1/pets", "limit=10&tags=a&tags=b", &ok).is_ok());
        let err = |q: &str, h: &dyn Fn(&str) -> Option<String>| match check(
            &a, "GET", "/v1/pets", q, h,
        ) {
            Err(Rejection::InvalidParameters { violations, .. }) => violations
                .into_iter()
                .map(|v| (v.pointer, v.keyword))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err("limit=101", &ok),
            vec![("/query/limit".to_string(), "maximum")]
        );
        assert_eq!(
            err("limit=x", &ok),
            vec![("/query/limit".to_string(), "type")]
        );
        assert_eq!(
            err("limit=1&limit=2", &ok),
            vec![("/query/limit".to_string(), "duplicate")]
        );
        assert_eq!(
            err("tags=a&tags=c", &ok),
            vec![("/query/tags/1".to_string(), "enum")]
        );
        assert_eq!(
            err("", &headers(&[])),
            vec![("/header/X-Trace".to_string(), "required")]
        );
        assert_eq!(
            err("", &headers(&[("x-trace", "nope")])),
            vec![("/header/X-Trace".to_string(), "format")]
        );
    }

    #[test]
    fn body_plan_follows_content_type() {
        let a = api();
        let Found::Operation { op, .. } = a.find("POST", "/v1/pets") else {
            panic!()
        };
        assert!(matches!(
            a.body_plan(op, Some("application/json; charset=utf-8"), true),
            Ok(BodyPlan::Json(Some(_)))
        ));
        assert_eq!(
            a.body_plan(op, Some("text/plain"), true),
            Ok(BodyPlan::None)
        );
        assert_eq!(
            a.body_plan(op, Some("application/xml"), true),
            Err(Rejection::UnsupportedMediaType)
        );
        assert_eq!(
            a.body_plan(op, None, true),
            Err(Rejection::UnsupportedMediaType)
        );
        assert_eq!(
            a.body_plan(op, Some("application/json"), false),
            Err(Rejection::MissingBody)
        );
        let Found::Operation { op, .. } = a.find("GET", "/v1/pets/mine") else {
            panic!()
        };
        assert_eq!(
            a.body_plan(op, Some("application/json"), true),
            Err(Rejection::UnsupportedMediaType)
        );
        assert_eq!(a.body_plan(op, None, false), Ok(BodyPlan::None));
    }

    #[test]
    fn body_schema_is_resolved_through_components() {
        let a = api();
        let Found::Operation { op, .. } = a.find("POST", "/v1/pets") else {
            panic!()
        };
        let Ok(BodyPlan::Json(Some(i))) = a.body_plan(op, Some("application/json"), true) else {
            panic!()
        };
        let s = &a.bodies[i];
        assert!(s.is_valid(&json!({"name": "rex", "tag": null, "kids": [{"name": "a"}]})));
        assert!(!s.is_valid(&json!({"name": "rex", "kids": [{"nam": "a"}]})));
    }

    #[test]
    fn bad_documents_are_refused_with_a_pointer() {
        let mut d = doc();
        d["paths"]["/pets/{id}"]["parameters"][0]["style"] = json!("matrix");
        assert!(OpenApi::compile(&d, true, None).is_err());
        let mut d = doc();
        d["components"]["schemas"]["Pet"]["properties"]["name"]["unevaluatedProperties"] =
            json!(false);
        let e = OpenApi::compile(&d, true, None).unwrap_err();
        assert_eq!(
            e.pointer,
            "#/components/schemas/Pet/properties/name/unevaluatedProperties"
        );
        let mut d = doc();
        d["openapi"] = json!("2.0");
        assert!(OpenApi::compile(&d, true, None).is_err());
        let mut d = doc();
        d["paths"]["/pets/{id}"]["parameters"] = json!([]);
        assert!(OpenApi::compile(&d, true, None).is_err());
    }
}
