//! Request schema enforcement: JSON Schema (draft 2020-12 and draft 7) and OpenAPI 3.0 / 3.1
//! documents, compiled once at configure time, checked per request without recompiling anything.
//!
//! # Where to start
//! - [`compile`] turns a JSON Schema into an immutable arena of checks; unsupported keywords are
//!   refused by name with their JSON pointer, never ignored.
//! - [`tape`] reads a body in one pass into flat tokens (syntax, depth, duplicate keys; no tree);
//!   [`validate`] walks them ([`Schema::validate_bytes`]) and keeps serde_json's parse
//!   ([`validate::parse_body`]) only to name why a body is refused.
//! - [`openapi`] derives operations (method, path template, typed parameters, body per media type).
//! - [`problem`] is the [`Rejection`] each failure maps to, and its RFC 9457 problem+json body.
//! - This module reads the `schemas` configuration section ([`compile_section`]) and offers the two
//!   per-request entry points: [`SchemaPolicy::check_head`] at request headers and
//!   [`SchemaPolicy::check_body`] once the body is buffered.
//!
//! # What it does not do
//! - No remote `$ref` (nothing is fetched), no `$dynamicRef`, `unevaluatedProperties`,
//!   `unevaluatedItems`: refused at configure time.
//! - Patterns use regex-lite: ECMA-262 syntax it lacks (`\p{..}`, look-around, back-references)
//!   is refused at configure time.
//! - OpenAPI documents in YAML are not read (`apiguard openapi import` converts them); response
//!   validation is not done.
//!
//! # Input limits (per policy)
//! `max_body_bytes` (default 64 KiB, at most 16 MiB) caps the buffered body (413 beyond it);
//! `max_depth` (default 32, at most 128) caps array/object nesting, checked while tokenizing
//! (without recursion); `max_errors` (default 10, at most 100) caps the violations listed in a reply.
//! Compiled schemas hold at most [`compile::MAX_NODES`] subschemas per document.

pub mod compile;
pub mod decimal;
pub mod format;
pub mod openapi;
pub mod problem;
pub mod tape;
pub mod validate;

pub use compile::{CompileError, Draft, Options, Schema};
pub use openapi::{BodyPlan, Found, OpenApi};
pub use problem::{Rejection, Violation, PROBLEM_CONTENT_TYPE};
pub use validate::Limits;

use crate::media;
use crate::reader::{ConfigError, Node, Object, Result};
use serde_json::Value;
use std::borrow::Cow;

/// What to do with a request for an operation the OpenAPI document does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undeclared {
    /// Always 404.
    NotFound,
    /// 404 for an unknown path, 405 with `allow` for a known path with another method.
    MethodNotAllowed,
    /// Let it through; the lead counts and logs it.
    Report,
}

/// All named schema policies of the configuration.
#[derive(Debug, Default)]
pub struct SchemaSet {
    pub policies: Vec<SchemaPolicy>,
}

impl SchemaSet {
    /// The index of the policy a rule names with `"schema": "<name>"`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.policies.iter().position(|p| p.name == name)
    }
}

#[derive(Debug)]
pub struct SchemaPolicy {
    pub name: String,
    pub kind: PolicyKind,
    pub limits: Limits,
    pub undeclared: Undeclared,
}

#[derive(Debug)]
pub enum PolicyKind {
    /// One schema for the body of every request on the rule.
    JsonSchema {
        schema: Schema,
        /// Accepted media types (lower-case essences); empty means `application/json` and `+json`.
        content_types: Vec<String>,
        /// A request without a body is refused (400) when true (the default).
        body_required: bool,
    },
    OpenApi(OpenApi),
}

/// What the request pipeline reads of a request at header time.
pub trait RequestHead {
    fn method(&self) -> &str;
    /// `:path`, query string included.
    fn path(&self) -> &str;
    /// A request header by lower-case name.
    fn header(&self, name: &str) -> Option<&str>;
}

/// The verdict at request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadOutcome {
    /// Nothing more to check; the body (if any) is not needed.
    Pass,
    /// An undeclared operation under `"undeclared": "report"`: let it through, count and log the
    /// rejection that would have been sent.
    Undeclared(Rejection),
    /// Buffer the body (refuse with [`SchemaPolicy::too_large`] once it exceeds
    /// `limits.max_body_bytes`), then call [`SchemaPolicy::check_body`] with this.
    NeedBody(BodyCheck),
    Reject(Rejection),
}

/// Which schema a buffered body is checked against (an index, cheap to keep per request), and
/// whether a body is required: an empty body (headers, then only trailers or an empty data frame)
/// is no body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyCheck(Target, bool);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Root,
    OpenApi(Option<usize>),
}

fn path_and_query(p: &str) -> (&str, &str) {
    let p = p.split_once('#').map_or(p, |(a, _)| a);
    p.split_once('?').unwrap_or((p, ""))
}

impl SchemaPolicy {
    /// The rejection for a body that grew past `max_body_bytes` while being buffered.
    pub fn too_large(&self) -> Rejection {
        Rejection::BodyTooLarge {
            limit: self.limits.max_body_bytes,
        }
    }

    /// Checks everything known at request headers. `has_body` is false when the headers ended
    /// the stream (and no `content-length` > 0 announces a body).
    pub fn check_head(&self, req: &dyn RequestHead, has_body: bool) -> HeadOutcome {
        let content_type = req.header("content-type");
        let declared_len = req
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let need_body = |target: Target, required: bool| -> HeadOutcome {
            if declared_len.is_some_and(|n| n > self.limits.max_body_bytes as u64) {
                return HeadOutcome::Reject(self.too_large());
            }
            HeadOutcome::NeedBody(BodyCheck(target, required))
        };
        match &self.kind {
            PolicyKind::JsonSchema {
                content_types,
                body_required,
                ..
            } => {
                if !has_body {
                    return if *body_required {
                        HeadOutcome::Reject(Rejection::MissingBody)
                    } else {
                        HeadOutcome::Pass
                    };
                }
                let Some(ct) = content_type else {
                    return HeadOutcome::Reject(Rejection::UnsupportedMediaType);
                };
                let essence = media::essence(ct);
                let accepted = if content_types.is_empty() {
                    media::is_json(&essence)
                } else {
                    content_types.contains(&essence)
                };
                if !accepted {
                    return HeadOutcome::Reject(Rejection::UnsupportedMediaType);
                }
                need_body(Target::Root, *body_required)
            }
            PolicyKind::OpenApi(api) => {
                let (path, query) = path_and_query(req.path());
                let (op, path_params) = match api.find(req.method(), path) {
                    Found::Operation { op, path_params } => (op, path_params),
                    Found::UnknownPath => return self.undeclared(Rejection::UnknownPath),
                    Found::MethodNotAllowed { allow } => {
                        let r = if self.undeclared == Undeclared::NotFound {
                            Rejection::UnknownPath
                        } else {
                            Rejection::MethodNotAllowed { allow }
                        };
                        return self.undeclared(r);
                    }
                };
                let header = |name: &str| req.header(name).map(str::to_string);
                if let Err(r) =
                    api.check_parameters(op, &path_params, query, &header, self.limits.max_errors)
                {
                    return HeadOutcome::Reject(r);
                }
                match api.body_plan(op, content_type, has_body) {
                    Err(r) => HeadOutcome::Reject(r),
                    Ok(BodyPlan::None) => HeadOutcome::Pass,
                    Ok(BodyPlan::Json(schema)) => {
                        let required = api.body_plan(op, content_type, false).is_err();
                        need_body(Target::OpenApi(schema), required)
                    }
                }
            }
        }
    }

    fn undeclared(&self, r: Rejection) -> HeadOutcome {
        if self.undeclared == Undeclared::Report {
            HeadOutcome::Undeclared(r)
        } else {
            HeadOutcome::Reject(r)
        }
    }

    /// Checks a fully buffered body: size, nesting, JSON syntax, schema.
    pub fn check_body(&self, check: BodyCheck, body: &[u8]) -> std::result::Result<(), Rejection> {
        if body.is_empty() {
            // No body after all (only trailers, or an empty stream): judged as at the headers.
            return if check.1 {
                Err(Rejection::MissingBody)
            } else {
                Ok(())
            };
        }
        let schema = match (&self.kind, check.0) {
            (PolicyKind::JsonSchema { schema, .. }, Target::Root) => Some(schema),
            (PolicyKind::OpenApi(api), Target::OpenApi(Some(i))) => api.bodies.get(i),
            _ => None,
        };
        match schema {
            Some(s) => s.validate_bytes(body, &self.limits),
            None => validate::check_json(body, &self.limits),
        }
    }
}

const DEFAULT_MAX_BODY: usize = 64 * 1024;
const MAX_MAX_BODY: usize = 16 * 1024 * 1024;

/// Reads the `schemas` section: an object of named policies.
pub fn compile_section(node: &Node<'_>) -> Result<SchemaSet> {
    let mut policies = Vec::new();
    for (name, entry) in node.entries()? {
        if name.is_empty() {
            return Err(entry.error("schema names must not be empty"));
        }
        policies.push(compile_policy(name, &entry)?);
    }
    Ok(SchemaSet { policies })
}

fn compile_error(node: &Node<'_>, e: CompileError) -> ConfigError {
    ConfigError {
        path: format!("{}{}", node.path(), e.pointer),
        message: e.message,
    }
}

/// Reads one named policy: the limits, then the kind (JSON Schema or OpenAPI, each refusing the
/// other's fields), then what an undeclared operation gets.
pub fn compile_policy(name: &str, node: &Node<'_>) -> Result<SchemaPolicy> {
    let obj = node.object(&[
        "json_schema",
        "openapi",
        "draft",
        "formats",
        "max_body_bytes",
        "max_depth",
        "max_errors",
        "undeclared",
        "content_types",
        "body_required",
        "base_path",
    ])?;
    let formats = obj.bool_or("formats", true)?;
    let limits = read_limits(&obj)?;
    let kind = match (obj.get("json_schema"), obj.get("openapi")) {
        (Some(js), None) => json_schema_kind(&obj, &js, formats)?,
        (None, Some(doc_node)) => openapi_kind(&obj, &doc_node, formats)?,
        (Some(_), Some(_)) => return Err(obj.node().error("set json_schema or openapi, not both")),
        (None, None) => {
            return Err(obj
                .node()
                .error("a schema policy needs json_schema or openapi"))
        }
    };
    let undeclared = obj.one_of_or(
        "undeclared",
        &[
            ("404", Undeclared::NotFound),
            ("405", Undeclared::MethodNotAllowed),
            ("report", Undeclared::Report),
        ],
        Undeclared::MethodNotAllowed,
    )?;
    Ok(SchemaPolicy {
        name: name.to_string(),
        kind,
        limits,
        undeclared,
    })
}

/// `max_body_bytes`, `max_depth`, `max_errors`, each bounded.
fn read_limits(obj: &Object<'_>) -> Result<Limits> {
    let bounded = |field: &str, max: usize, default: usize| -> Result<usize> {
        Ok(obj
            .get(field)
            .map(|n| n.usize_in(1, max))
            .transpose()?
            .unwrap_or(default))
    };
    Ok(Limits {
        max_body_bytes: bounded("max_body_bytes", MAX_MAX_BODY, DEFAULT_MAX_BODY)?,
        max_depth: bounded("max_depth", validate::MAX_DEPTH_LIMIT, 32)?,
        max_errors: bounded("max_errors", 100, 10)?,
    })
}

/// A field of the other kind is refused rather than ignored.
fn only_for(obj: &Object<'_>, field: &str, kind: &str) -> Result<()> {
    match obj.get(field) {
        Some(n) => Err(n.error(format!("only applies to {kind} policies"))),
        None => Ok(()),
    }
}

/// `json_schema` with its `draft`, `content_types` and `body_required`.
fn json_schema_kind(obj: &Object<'_>, js: &Node<'_>, formats: bool) -> Result<PolicyKind> {
    only_for(obj, "undeclared", "openapi")?;
    only_for(obj, "base_path", "openapi")?;
    let draft = obj.one_of_or(
        "draft",
        &[
            ("2020-12", Draft::Draft2020),
            ("7", Draft::Draft7),
            ("draft7", Draft::Draft7),
        ],
        Draft::Draft2020,
    )?;
    let options = Options {
        draft,
        formats,
        openapi: false,
    };
    let schema = Schema::compile(js.value, options).map_err(|e| compile_error(js, e))?;
    let content_types = match obj.get("content_types") {
        None => Vec::new(),
        Some(n) => n.string_list()?.iter().map(|s| media::essence(s)).collect(),
    };
    let body_required = obj.bool_or("body_required", true)?;
    Ok(PolicyKind::JsonSchema {
        schema,
        content_types,
        body_required,
    })
}

/// `openapi` (a document inline or as JSON text) with its `base_path`.
fn openapi_kind(obj: &Object<'_>, doc_node: &Node<'_>, formats: bool) -> Result<PolicyKind> {
    only_for(obj, "draft", "json_schema")?;
    only_for(obj, "content_types", "json_schema")?;
    only_for(obj, "body_required", "json_schema")?;
    let doc = openapi_document(doc_node)?;
    let base_path = obj
        .get("base_path")
        .map(|n| {
            let s = n.str()?;
            if !s.is_empty() && !s.starts_with('/') {
                return Err(n.error("a base path starts with '/'"));
            }
            Ok(s)
        })
        .transpose()?;
    Ok(PolicyKind::OpenApi(
        OpenApi::compile(&doc, formats, base_path).map_err(|e| compile_error(doc_node, e))?,
    ))
}

/// The document as configured, or parsed from the JSON text it was given as.
fn openapi_document<'v>(doc_node: &Node<'v>) -> Result<Cow<'v, Value>> {
    match doc_node.value {
        Value::String(text) => serde_json::from_str::<Value>(text)
            .map(Cow::Owned)
            .map_err(|e| {
                doc_node.error(format!(
                    "not a JSON document (YAML is not read: `apiguard openapi import` converts it): line {}, column {}",
                    e.line(),
                    e.column()
                ))
            }),
        Value::Object(_) => Ok(Cow::Borrowed(doc_node.value)),
        _ => Err(doc_node.error("expected an OpenAPI document (an object or a JSON string)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Req {
        method: &'static str,
        path: &'static str,
        headers: Vec<(&'static str, &'static str)>,
    }

    impl RequestHead for Req {
        fn method(&self) -> &str {
            self.method
        }
        fn path(&self) -> &str {
            self.path
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
        }
    }

    fn set(v: Value) -> Result<SchemaSet> {
        compile_section(&Node::root(&v))
    }

    fn post(ct: &'static str) -> Req {
        Req {
            method: "POST",
            path: "/pets?x=1",
            headers: vec![("content-type", ct)],
        }
    }

    #[test]
    fn json_schema_policy_checks_content_type_then_body() {
        let s = set(json!({"pet": {"json_schema": {"type": "object", "required": ["name"]}, "max_body_bytes": 100}})).unwrap();
        let p = &s.policies[s.index_of("pet").unwrap()];
        let HeadOutcome::NeedBody(check) = p.check_head(&post("application/json"), true) else {
            panic!()
        };
        assert!(p.check_body(check, br#"{"name": "rex"}"#).is_ok());
        assert_eq!(p.check_body(check, br#"{}"#).unwrap_err().status(), 400);
        assert_eq!(
            p.check_body(check, b"{").unwrap_err().reason(),
            "invalid_json"
        );
        assert_eq!(p.check_body(check, &[b' '; 101]).unwrap_err().status(), 413);
        assert!(matches!(
            p.check_head(&post("application/vnd.api+json"), true),
            HeadOutcome::NeedBody(_)
        ));
        assert_eq!(
            p.check_head(&post("text/plain"), true),
            HeadOutcome::Reject(Rejection::UnsupportedMediaType)
        );
        assert_eq!(
            p.check_head(&post("application/json"), false),
            HeadOutcome::Reject(Rejection::MissingBody)
        );
        let mut big = post("application/json");
        big.headers.push(("content-length", "101"));
        assert_eq!(
            p.check_head(&big, true),
            HeadOutcome::Reject(Rejection::BodyTooLarge { limit: 100 })
        );
    }

    #[test]
    fn openapi_policy_maps_undeclared_operations_as_configured() {
        let doc = json!({"openapi": "3.1.0", "paths": {"/pets": {"get": {}}}});
        for (mode, unknown_method) in [("404", 404), ("405", 405)] {
            let s = set(json!({"api": {"openapi": doc, "undeclared": mode}})).unwrap();
            let p = &s.policies[0];
            let r = |m: &'static str, path: &'static str| {
                p.check_head(
                    &Req {
                        method: m,
                        path,
                        headers: vec![],
                    },
                    false,
                )
            };
            assert_eq!(r("GET", "/pets?limit=1"), HeadOutcome::Pass);
            let HeadOutcome::Reject(rej) = r("DELETE", "/pets") else {
                panic!()
            };
            assert_eq!(rej.status(), unknown_method);
            let HeadOutcome::Reject(rej) = r("GET", "/cats") else {
                panic!()
            };
            assert_eq!(rej.status(), 404);
        }
        let s = set(json!({"api": {"openapi": doc.to_string(), "undeclared": "report"}})).unwrap();
        assert!(matches!(
            s.policies[0].check_head(
                &Req {
                    method: "GET",
                    path: "/cats",
                    headers: vec![]
                },
                false
            ),
            HeadOutcome::Undeclared(Rejection::UnknownPath)
        ));
    }

    #[test]
    fn bad_configs_name_their_path() {
        let cases = [
            (json!({"a": {}}), "a"),
            (json!({"a": {"json_schema": {}, "openapi": {}}}), "a"),
            (json!({"a": {"json_schema": {}, "drafts": "7"}}), "a.drafts"),
            (json!({"a": {"json_schema": {}, "draft": "4"}}), "a.draft"),
            (
                json!({"a": {"json_schema": {}, "max_depth": 500}}),
                "a.max_depth",
            ),
            (
                json!({"a": {"json_schema": {}, "undeclared": "404"}}),
                "a.undeclared",
            ),
            (
                json!({"a": {"json_schema": {"properties": {"x": {"foo": 1}}}}}),
                "a.json_schema#/properties/x/foo",
            ),
            (json!({"a": {"openapi": "openapi: 3.0.0"}}), "a.openapi"),
            (
                json!({"a": {"openapi": {"openapi": "3.0.0", "paths": {"/x": {"get": {"parameters": [{"name": "q", "in": "body"}]}}}}}}),
                "a.openapi#/paths/~1x/get/parameters/0/in",
            ),
        ];
        for (v, path) in cases {
            let e = set(v.clone()).unwrap_err();
            assert_eq!(e.path, path, "{v}: {e}");
        }
    }

    #[test]
    fn no_rejection_text_echoes_request_values() {
        let doc = json!({"openapi": "3.0.0", "paths": {"/u/{id}": {"get": {"parameters": [
            {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}},
            {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 2}}]}}}});
        let s = set(json!({"api": {"openapi": doc}})).unwrap();
        let HeadOutcome::Reject(r) = s.policies[0].check_head(
            &Req {
                method: "GET",
                path: "/u/SECRETID?q=SECRETQUERY",
                headers: vec![],
            },
            false,
        ) else {
            panic!()
        };
        let text = format!("{r:?}{}", r.problem_body());
        assert!(!text.contains("SECRET"), "{text}");
    }
}
