//! JSON Schema → an immutable tree of checks, compiled once at configure time.
//!
//! Subschemas live in an arena (`Vec<SNode>`) and refer to each other by index, so a recursive
//! `$ref` is just an index back to an earlier node: no infinite expansion, no `Rc` cycles. The
//! compiler itself works from a queue, not by recursion, so a deeply nested schema cannot exhaust
//! the stack at configure time.
//!
//! `$ref` is resolved here, never per request: JSON pointers (`#/$defs/a`, `#/definitions/a`,
//! `#/components/schemas/Pet`), `$id`-based URIs and anchors (`$anchor`, draft 7 `"$id": "#foo"`)
//! inside the same document, and documents handed in as extra resources. Anything else (a remote
//! URI that is not among the resources, `$dynamicRef`, `unevaluatedProperties`, ...) is refused by
//! name with the JSON pointer of the keyword: a keyword is never silently ignored.

use super::decimal::{self, Decimal};
use super::format::Format;
use super::tape::Consts;
use regex_lite::{Regex, RegexBuilder};
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Which keyword semantics apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draft {
    /// Draft 7: `items` may be an array (with `additionalItems`), `dependencies`, `$ref` overrides siblings.
    Draft7,
    /// Draft 2020-12: `prefixItems`/`items`, `dependentRequired`/`dependentSchemas`, `$anchor`,
    /// `minContains`/`maxContains`; `$ref` applies alongside its siblings.
    Draft2020,
    /// The OpenAPI 3.0 Schema Object: draft 7 rules plus `nullable`, boolean `exclusiveMinimum` /
    /// `exclusiveMaximum` (draft 4 style), and OpenAPI annotations (`discriminator`, `example`, `x-*`).
    OpenApi30,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub draft: Draft,
    /// `format` is asserted (the formats of [`Format`]; other names are refused) when true, and is
    /// an annotation (any name accepted, nothing checked) when false.
    pub formats: bool,
    /// Accept the OpenAPI Schema Object annotations (`discriminator`, `xml`, `externalDocs`,
    /// `example`, `x-*`); set for schemas inside OpenAPI 3.0 and 3.1 documents.
    pub openapi: bool,
}

impl Options {
    pub fn new(draft: Draft) -> Options {
        Options {
            draft,
            formats: false,
            openapi: draft == Draft::OpenApi30,
        }
    }
}

/// A schema refused at configure time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// JSON pointer of the offending keyword inside the document, e.g. `#/properties/a/unevaluatedProperties`.
    pub pointer: String,
    pub message: String,
    /// The schema uses something apiguard does not implement (as opposed to being malformed).
    pub unsupported: bool,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

/// A compiled schema: immutable, shared by every request (`Arc<Schema>`).
#[derive(Debug)]
pub struct Schema {
    pub(crate) nodes: Arc<[SNode]>,
    pub(crate) root: usize,
}

#[derive(Debug)]
pub(crate) struct SNode {
    /// Where this subschema sits in its document (`#/properties/a`), for error reports.
    pub(crate) loc: Box<str>,
    /// The `false` schema: nothing validates.
    pub(crate) never: bool,
    pub(crate) checks: Vec<Check>,
}

pub(crate) const T_NULL: u8 = 1;
pub(crate) const T_BOOL: u8 = 2;
pub(crate) const T_OBJECT: u8 = 4;
pub(crate) const T_ARRAY: u8 = 8;
pub(crate) const T_NUMBER: u8 = 16;
pub(crate) const T_STRING: u8 = 32;
pub(crate) const T_INTEGER: u8 = 64;

#[derive(Debug)]
pub(crate) enum Check {
    Type(u8),
    /// `enum` whose members are all strings: sorted, binary-searched.
    EnumStr(Vec<Box<str>>),
    Enum(Consts),
    Const(Consts),
    Ref(usize),
    Minimum(Decimal),
    Maximum(Decimal),
    ExclusiveMinimum(Decimal),
    ExclusiveMaximum(Decimal),
    MultipleOf(Decimal),
    MinLength(u64),
    MaxLength(u64),
    Pattern(Box<Regex>),
    Format(Format),
    /// `prefixItems` (or draft 7 array `items`) and the schema for the remaining elements.
    Items {
        prefix: Vec<usize>,
        prefix_keyword: &'static str,
        rest: Option<usize>,
        rest_keyword: &'static str,
    },
    MinItems(u64),
    MaxItems(u64),
    UniqueItems,
    Contains {
        schema: usize,
        min: u64,
        max: Option<u64>,
    },
    /// `properties` (sorted by name), `patternProperties` and `additionalProperties` together,
    /// so that an object's members are walked once.
    Object {
        props: Vec<(Box<str>, usize)>,
        patterns: Vec<(Regex, usize)>,
        additional: Option<usize>,
    },
    Required(Vec<Box<str>>),
    MinProperties(u64),
    MaxProperties(u64),
    PropertyNames(usize),
    DependentRequired(Vec<(Box<str>, Vec<Box<str>>)>),
    DependentSchemas(Vec<(Box<str>, usize)>),
    AllOf(Vec<usize>),
    AnyOf(Vec<usize>),
    OneOf(Vec<usize>),
    Not(usize),
    If {
        cond: usize,
        then: Option<usize>,
        otherwise: Option<usize>,
    },
}

impl Check {
    pub(crate) fn keyword(&self) -> &'static str {
        match self {
            Check::Type(_) => "type",
            Check::EnumStr(_) | Check::Enum(_) => "enum",
            Check::Const(_) => "const",
            Check::Ref(_) => "$ref",
            Check::Minimum(_) => "minimum",
            Check::Maximum(_) => "maximum",
            Check::ExclusiveMinimum(_) => "exclusiveMinimum",
            Check::ExclusiveMaximum(_) => "exclusiveMaximum",
            Check::MultipleOf(_) => "multipleOf",
            Check::MinLength(_) => "minLength",
            Check::MaxLength(_) => "maxLength",
            Check::Pattern(_) => "pattern",
            Check::Format(_) => "format",
            Check::Items { .. } => "items",
            Check::MinItems(_) => "minItems",
            Check::MaxItems(_) => "maxItems",
            Check::UniqueItems => "uniqueItems",
            Check::Contains { .. } => "contains",
            Check::Object { .. } => "properties",
            Check::Required(_) => "required",
            Check::MinProperties(_) => "minProperties",
            Check::MaxProperties(_) => "maxProperties",
            Check::PropertyNames(_) => "propertyNames",
            Check::DependentRequired(_) => "dependentRequired",
            Check::DependentSchemas(_) => "dependentSchemas",
            Check::AllOf(_) => "allOf",
            Check::AnyOf(_) => "anyOf",
            Check::OneOf(_) => "oneOf",
            Check::Not(_) => "not",
            Check::If { .. } => "if",
        }
    }

    /// Subschemas applied to the same instance (not to a member or element of it).
    fn in_place(&self) -> Vec<usize> {
        match self {
            Check::Ref(i) | Check::Not(i) => vec![*i],
            Check::AllOf(v) | Check::AnyOf(v) | Check::OneOf(v) => v.clone(),
            Check::DependentSchemas(v) => v.iter().map(|(_, i)| *i).collect(),
            Check::If {
                cond,
                then,
                otherwise,
            } => std::iter::once(*cond)
                .chain(*then)
                .chain(*otherwise)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Longest accepted `pattern` / `patternProperties` regex, and regex-lite's compiled-size cap.
const MAX_PATTERN_LEN: usize = 4096;
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Most subschemas one document may compile to (bounds configure-time memory).
pub const MAX_NODES: usize = 100_000;

const ROOT_BASE: &str = "apiguard:///schema.json";

impl Schema {
    /// A schema rooted at `root` in a shared arena (see [`Multi`]).
    pub(crate) fn in_arena(nodes: Arc<[SNode]>, root: usize) -> Schema {
        Schema { nodes, root }
    }

    /// Compiles a standalone JSON Schema document.
    pub fn compile(doc: &Value, options: Options) -> Result<Schema, CompileError> {
        Schema::compile_with_resources(doc, options, &[])
    }

    /// Compiles `doc`; `$ref`s may also point into `resources` (`(uri, document)` pairs), which
    /// stand for remote documents that are never fetched.
    pub fn compile_with_resources(
        doc: &Value,
        options: Options,
        resources: &[(&str, &Value)],
    ) -> Result<Schema, CompileError> {
        let mut docs: Vec<(&Value, String)> = vec![(doc, ROOT_BASE.to_string())];
        docs.extend(resources.iter().map(|(uri, v)| (*v, strip_fragment(uri))));
        let mut c = Compiler::new(options, docs);
        c.index_document(0, "")?;
        for k in 1..c.docs.len() {
            c.index_document(k, "")?;
        }
        let root = c.node_for(0, String::new())?;
        c.run()?;
        c.finish(root)
    }
}

/// Compiles several schemas that live inside one larger document (an OpenAPI document), sharing
/// one arena so that `#/components/schemas/...` compile once however often they are referenced.
pub(crate) struct Multi<'a> {
    c: Compiler<'a>,
}

impl<'a> Multi<'a> {
    pub(crate) fn new(doc: &'a Value, options: Options) -> Multi<'a> {
        let mut c = Compiler::new(options, vec![(doc, ROOT_BASE.to_string())]);
        c.ids.insert(ROOT_BASE.to_string(), (0, String::new()));
        Multi { c }
    }

    /// Indexes `$id`/anchors under a schema location (a JSON pointer into the document).
    pub(crate) fn index(&mut self, pointer: &str) -> Result<(), CompileError> {
        self.c.index_document(0, pointer)
    }

    /// The node for the schema at `pointer`; compiled by [`Multi::finish`].
    pub(crate) fn schema_at(&mut self, pointer: &str) -> Result<usize, CompileError> {
        self.c.node_for(0, pointer.to_string())
    }

    /// Compiles everything requested, returning one arena; `roots` are node indices from `schema_at`.
    pub(crate) fn finish(mut self) -> Result<Arc<[SNode]>, CompileError> {
        self.c.run()?;
        self.c.check_cycles()?;
        Ok(self.c.nodes.into())
    }
}

struct Compiler<'a> {
    opts: Options,
    docs: Vec<(&'a Value, String)>,
    /// Absolute URI (no fragment) → (document, pointer of the resource root).
    ids: HashMap<String, (usize, String)>,
    /// Absolute URI + `#` + anchor name → (document, pointer).
    anchors: HashMap<String, (usize, String)>,
    /// Base URI in effect at each indexed schema location.
    bases: HashMap<(usize, String), String>,
    memo: HashMap<(usize, String), usize>,
    nodes: Vec<SNode>,
    queue: VecDeque<(usize, usize, String)>,
}

pub(super) fn err(pointer: &str, message: impl Into<String>) -> CompileError {
    CompileError {
        pointer: format!("#{pointer}"),
        message: message.into(),
        unsupported: false,
    }
}

pub(super) fn unsupported(pointer: &str, message: impl Into<String>) -> CompileError {
    CompileError {
        pointer: format!("#{pointer}"),
        message: message.into(),
        unsupported: true,
    }
}

/// RFC 6901 escaping of one reference token.
pub(crate) fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

pub(super) fn child(pointer: &str, token: &str) -> String {
    format!("{pointer}/{}", escape_token(token))
}

/// Where a keyword stands: its schema object, that object's pointer and its document.
struct Site<'s> {
    doc: usize,
    pointer: &'s str,
    map: &'s Map<String, Value>,
}

impl Site<'_> {
    fn here(&self, key: &str) -> String {
        child(self.pointer, key)
    }

    /// A numeric keyword as the decimal written in the schema (compared exactly, never rounded).
    fn number(&self, key: &str) -> Result<Option<Decimal>, CompileError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_number()
                .and_then(decimal::of)
                .map(Some)
                .ok_or_else(|| err(&self.here(key), "must be a number")),
        }
    }

    fn count(&self, key: &str) -> Result<Option<u64>, CompileError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => non_negative_int(v)
                .map(Some)
                .ok_or_else(|| err(&self.here(key), "must be a non-negative integer")),
        }
    }
}

/// The check of a numeric bound: lower or upper, inclusive or exclusive.
fn bound_check(lower: bool, exclusive: bool) -> fn(Decimal) -> Check {
    match (lower, exclusive) {
        (true, false) => Check::Minimum,
        (true, true) => Check::ExclusiveMinimum,
        (false, false) => Check::Maximum,
        (false, true) => Check::ExclusiveMaximum,
    }
}

/// One keyword of a schema object, as each keyword family's function receives it.
#[derive(Clone, Copy)]
struct Keyword<'k> {
    site: &'k Site<'k>,
    key: &'k str,
    value: &'k Value,
}

/// What a keyword family's function adds to: the checks, and what is gathered for after the loop.
struct Out {
    checks: Vec<Check>,
    gathered: Gathered,
}

/// `Ok(true)` when the keyword belonged to the family (and was compiled), `Ok(false)` to try the next.
type Handled = Result<bool, CompileError>;

/// The keywords that make one check together, gathered over a schema object's keywords.
struct Gathered {
    props: Option<Vec<(Box<str>, usize)>>,
    patterns: Vec<(Regex, usize)>,
    additional: Option<usize>,
    prefix: Vec<usize>,
    prefix_keyword: &'static str,
    rest: Option<usize>,
    rest_keyword: &'static str,
    contains: Option<usize>,
    dep_required: Vec<(Box<str>, Vec<Box<str>>)>,
    dep_schemas: Vec<(Box<str>, usize)>,
}

impl Gathered {
    fn new() -> Self {
        Gathered {
            props: None,
            patterns: Vec::new(),
            additional: None,
            prefix: Vec::new(),
            prefix_keyword: "prefixItems",
            rest: None,
            rest_keyword: "items",
            contains: None,
            dep_required: Vec::new(),
            dep_schemas: Vec::new(),
        }
    }

    fn into_checks(
        self,
        site: &Site<'_>,
        draft: Draft,
        checks: &mut Vec<Check>,
    ) -> Result<(), CompileError> {
        if self.props.is_some() || !self.patterns.is_empty() || self.additional.is_some() {
            checks.push(Check::Object {
                props: self.props.unwrap_or_default(),
                patterns: self.patterns,
                additional: self.additional,
            });
        }
        if !self.prefix.is_empty() || self.rest.is_some() {
            checks.push(Check::Items {
                prefix: self.prefix,
                prefix_keyword: self.prefix_keyword,
                rest: self.rest,
                rest_keyword: self.rest_keyword,
            });
        }
        if let Some(schema) = self.contains {
            let (min, max) = if draft == Draft::Draft2020 {
                (
                    site.count("minContains")?.unwrap_or(1),
                    site.count("maxContains")?,
                )
            } else {
                (1, None)
            };
            checks.push(Check::Contains { schema, min, max });
        }
        if !self.dep_required.is_empty() {
            checks.push(Check::DependentRequired(self.dep_required));
        }
        if !self.dep_schemas.is_empty() {
            checks.push(Check::DependentSchemas(self.dep_schemas));
        }
        Ok(())
    }
}

const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$id",
    "contentMediaType",
    "contentEncoding",
    "contentSchema",
    "$defs",
    "definitions",
];
/// `$schema` values accepted (as annotations: the policy's `draft` decides the semantics).
const KNOWN_METASCHEMAS: &[&str] = &[
    "https://json-schema.org/draft/2020-12/schema",
    "http://json-schema.org/draft-07/schema",
    "https://spec.openapis.org/oas/3.1/dialect/base",
];
const OPENAPI_ANNOTATIONS: &[&str] = &["discriminator", "xml", "externalDocs", "example"];

impl<'a> Compiler<'a> {
    fn new(opts: Options, docs: Vec<(&'a Value, String)>) -> Compiler<'a> {
        Compiler {
            opts,
            docs,
            ids: HashMap::new(),
            anchors: HashMap::new(),
            bases: HashMap::new(),
            memo: HashMap::new(),
            nodes: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    fn doc(&self, doc: usize) -> Option<&'a Value> {
        self.docs.get(doc).map(|(v, _)| *v)
    }

    fn loc_name(&self, doc: usize, pointer: &str) -> String {
        if doc == 0 {
            format!("#{pointer}")
        } else {
            let uri = self.docs.get(doc).map_or("", |(_, u)| u.as_str());
            format!("{uri}#{pointer}")
        }
    }

    /// Walks the schemas under `start`, recording `$id`s, anchors and the base URI at each one.
    fn index_document(&mut self, doc: usize, start: &str) -> Result<(), CompileError> {
        let Some(root) = self.doc(doc) else {
            return Ok(());
        };
        let Some(value) = root.pointer(start) else {
            return Err(err(start, "no schema at this location"));
        };
        let doc_base = self
            .docs
            .get(doc)
            .map(|(_, u)| u.clone())
            .unwrap_or_default();
        if start.is_empty() {
            self.ids.insert(doc_base.clone(), (doc, String::new()));
        }
        let base = self.base_near(doc, start).unwrap_or(doc_base);
        let mut stack: Vec<(&'a Value, String, String)> = vec![(value, start.to_string(), base)];
        let mut visited = 0usize;
        while let Some((value, pointer, base)) = stack.pop() {
            visited += 1;
            if visited > MAX_NODES {
                return Err(err(start, format!("more than {MAX_NODES} subschemas")));
            }
            let Value::Object(map) = value else {
                continue;
            };
            let mut base = base;
            let draft7_ref = self.opts.draft != Draft::Draft2020 && map.contains_key("$ref");
            if let Some(Value::String(id)) = map.get("$id") {
                if !draft7_ref {
                    let resolved = resolve_uri(&base, id);
                    let (uri, fragment) = split_fragment(&resolved);
                    if !fragment.is_empty() && self.opts.draft != Draft::Draft2020 {
                        // Draft 7 "$id": "#foo" (or "other.json#foo") names an anchor.
                        if !uri.is_empty() && uri != base_without_fragment(&base) {
                            self.ids.insert(uri.to_string(), (doc, pointer.clone()));
                            base = uri.to_string();
                        }
                        self.anchors
                            .insert(format!("{uri}#{fragment}"), (doc, pointer.clone()));
                    } else {
                        self.ids.insert(uri.to_string(), (doc, pointer.clone()));
                        base = uri.to_string();
                    }
                }
            }
            if self.opts.draft == Draft::Draft2020 {
                // Without "$dynamicRef" (refused), "$dynamicAnchor" is exactly an "$anchor".
                for key in ["$anchor", "$dynamicAnchor"] {
                    let Some(Value::String(anchor)) = map.get(key) else {
                        continue;
                    };
                    self.anchors.insert(
                        format!("{}#{anchor}", base_without_fragment(&base)),
                        (doc, pointer.clone()),
                    );
                }
            }
            self.bases.insert((doc, pointer.clone()), base.clone());
            for (sub_pointer, sub) in subschemas(map, &pointer) {
                stack.push((sub, sub_pointer, base.clone()));
            }
        }
        Ok(())
    }

    /// The base URI at `pointer`, or at its nearest indexed ancestor.
    fn base_near(&self, doc: usize, pointer: &str) -> Option<String> {
        let mut p = pointer;
        loop {
            if let Some(b) = self.bases.get(&(doc, p.to_string())) {
                return Some(b.clone());
            }
            let (parent, _) = p.rsplit_once('/')?;
            p = parent;
        }
    }

    /// The arena index of the schema at (`doc`, `pointer`), queued for compilation on first use.
    fn node_for(&mut self, doc: usize, pointer: String) -> Result<usize, CompileError> {
        if let Some(&i) = self.memo.get(&(doc, pointer.clone())) {
            return Ok(i);
        }
        if self.nodes.len() >= MAX_NODES {
            return Err(err(&pointer, format!("more than {MAX_NODES} subschemas")));
        }
        let i = self.nodes.len();
        self.nodes.push(SNode {
            loc: self.loc_name(doc, &pointer).into_boxed_str(),
            never: false,
            checks: Vec::new(),
        });
        self.memo.insert((doc, pointer.clone()), i);
        self.queue.push_back((i, doc, pointer));
        Ok(i)
    }

    fn run(&mut self) -> Result<(), CompileError> {
        while let Some((i, doc, pointer)) = self.queue.pop_front() {
            let value = self
                .doc(doc)
                .and_then(|d| d.pointer(&pointer))
                .ok_or_else(|| err(&pointer, "no schema at this location"))?;
            let (never, checks) = match value {
                Value::Bool(b) => (!*b, Vec::new()),
                Value::Object(map) => (false, self.compile_object(doc, &pointer, map)?),
                _ => return Err(err(&pointer, "a schema must be an object or a boolean")),
            };
            if let Some(node) = self.nodes.get_mut(i) {
                node.never = never;
                node.checks = checks;
            }
        }
        Ok(())
    }

    fn finish(mut self, root: usize) -> Result<Schema, CompileError> {
        self.run()?;
        self.check_cycles()?;
        Ok(Schema {
            nodes: self.nodes.into(),
            root,
        })
    }

    /// Refuses schemas whose `$ref`/`allOf`/... chain returns to itself without descending into
    /// the instance (`{"$ref": "#"}`): they would never finish validating.
    fn check_cycles(&self) -> Result<(), CompileError> {
        // 0 = unvisited, 1 = on the current path, 2 = done.
        let mut state = vec![0u8; self.nodes.len()];
        for start in 0..self.nodes.len() {
            if state.get(start) != Some(&0) {
                continue;
            }
            let mut stack: Vec<(usize, Vec<usize>, usize)> = vec![(start, self.in_place(start), 0)];
            if let Some(s) = state.get_mut(start) {
                *s = 1;
            }
            while let Some((node, edges, next)) = stack.last_mut() {
                if let Some(&target) = edges.get(*next) {
                    *next += 1;
                    match state.get(target) {
                        Some(0) => {
                            if let Some(s) = state.get_mut(target) {
                                *s = 1;
                            }
                            let e = self.in_place(target);
                            stack.push((target, e, 0));
                        }
                        Some(1) => {
                            let loc = self.nodes.get(target).map_or("#", |n| &n.loc);
                            return Err(CompileError {
                                pointer: loc.to_string(),
                                message: "this schema refers back to itself without descending into the instance (a $ref/allOf loop)".into(),
                                unsupported: false,
                            });
                        }
                        _ => {}
                    }
                } else {
                    let done = *node;
                    if let Some(s) = state.get_mut(done) {
                        *s = 2;
                    }
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    fn in_place(&self, node: usize) -> Vec<usize> {
        self.nodes
            .get(node)
            .map(|n| n.checks.iter().flat_map(Check::in_place).collect())
            .unwrap_or_default()
    }

    fn sub(&mut self, doc: usize, pointer: &str, key: &str) -> Result<usize, CompileError> {
        self.node_for(doc, child(pointer, key))
    }

    fn sub_list(
        &mut self,
        doc: usize,
        pointer: &str,
        key: &str,
        value: &Value,
        allow_empty: bool,
    ) -> Result<Vec<usize>, CompileError> {
        let here = child(pointer, key);
        let Value::Array(items) = value else {
            return Err(err(&here, "must be an array of schemas"));
        };
        if items.is_empty() && !allow_empty {
            return Err(err(&here, "must not be empty"));
        }
        (0..items.len())
            .map(|i| self.node_for(doc, child(&here, &i.to_string())))
            .collect()
    }

    fn sub_map(
        &mut self,
        doc: usize,
        pointer: &str,
        key: &str,
        value: &Value,
    ) -> Result<Vec<(Box<str>, usize)>, CompileError> {
        let here = child(pointer, key);
        let Value::Object(map) = value else {
            return Err(err(&here, "must be an object of schemas"));
        };
        let mut out = Vec::with_capacity(map.len());
        for name in map.keys() {
            out.push((
                name.clone().into_boxed_str(),
                self.node_for(doc, child(&here, name))?,
            ));
        }
        crate::sorting::stable_sort_by(&mut out, |a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// One schema object's checks, cheapest first. Each keyword family has its own function; the
    /// keywords that only make sense together (properties, items, dependencies) are gathered over
    /// the loop and become one check each after it.
    fn compile_object(
        &mut self,
        doc: usize,
        pointer: &str,
        map: &'a Map<String, Value>,
    ) -> Result<Vec<Check>, CompileError> {
        let mut checks = Vec::new();
        if let Some(r) = map.get("$ref") {
            let target = self.resolve_ref(doc, pointer, r)?;
            checks.push(Check::Ref(target));
            if self.opts.draft != Draft::Draft2020 {
                self.refuse_ref_siblings(pointer, map)?;
                return Ok(checks);
            }
        }
        let site = Site { doc, pointer, map };
        let mut out = Out {
            checks,
            gathered: Gathered::new(),
        };
        for (key, value) in map {
            let key = key.as_str();
            // Map order, first error wins: the families share no keyword, so trying them in turn is one match.
            let kw = Keyword {
                site: &site,
                key,
                value,
            };
            let known = self.core_keyword(kw)?
                || self.any_type_keyword(kw, &mut out)?
                || self.number_keyword(kw, &mut out)?
                || self.string_keyword(kw, &mut out)?
                || self.array_keyword(kw, &mut out)?
                || self.object_keyword(kw, &mut out)?
                || self.combinator_keyword(kw, &mut out)?
                || self.is_annotation(key);
            if !known {
                return Err(unsupported(
                    &child(pointer, key),
                    format!("keyword {key:?} is not supported"),
                ));
            }
        }
        let Out {
            mut checks,
            gathered,
        } = out;
        gathered.into_checks(&site, self.opts.draft, &mut checks)?;
        // Cheap checks first: a wrong type fails before any subschema is walked.
        crate::sorting::stable_sort_by(&mut checks, |a, b| check_cost(a).cmp(&check_cost(b)));
        Ok(checks)
    }

    /// Annotations never assert; OpenAPI adds its own and every `x-` extension.
    fn is_annotation(&self, key: &str) -> bool {
        ANNOTATIONS.contains(&key)
            || (self.opts.openapi && (OPENAPI_ANNOTATIONS.contains(&key) || key.starts_with("x-")))
    }

    /// Draft 7 and OpenAPI 3.0: "$ref" overrides every sibling keyword. Rather than ignore a
    /// sibling assertion silently, refuse it (annotations are fine).
    fn refuse_ref_siblings(
        &self,
        pointer: &str,
        map: &Map<String, Value>,
    ) -> Result<(), CompileError> {
        match map.keys().find(|k| *k != "$ref" && !self.is_annotation(k)) {
            Some(k) => Err(unsupported(
                &child(pointer, k),
                format!("keyword {k:?} next to \"$ref\" is ignored in draft 7 and OpenAPI 3.0; wrap both in \"allOf\""),
            )),
            None => Ok(()),
        }
    }

    /// `$ref` (resolved before the loop), anchors and `$schema`.
    fn core_keyword(&self, kw: Keyword<'_>) -> Handled {
        let Keyword { site, key, value } = kw;
        match key {
            "$ref" => {}
            "$anchor" | "$dynamicAnchor" if self.opts.draft == Draft::Draft2020 => {}
            "$schema" => {
                let uri = value.as_str().unwrap_or("").trim_end_matches('#');
                if !KNOWN_METASCHEMAS.contains(&uri) {
                    return Err(unsupported(
                        &site.here(key),
                        "custom metaschemas (and their vocabularies) are not supported; use the draft 2020-12 or draft 7 metaschema",
                    ));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Keywords that apply to any instance: `type`, `nullable`, `enum`, `const`.
    fn any_type_keyword(&mut self, kw: Keyword<'_>, out: &mut Out) -> Handled {
        let Keyword { site, key, value } = kw;
        let checks = &mut out.checks;
        let draft = self.opts.draft;
        let here = site.here(key);
        match key {
            "type" => checks.push(Check::Type(type_mask(value, &here, site.map, draft)?)),
            "nullable" if draft == Draft::OpenApi30 => {
                if !value.is_boolean() {
                    return Err(err(&here, "must be true or false"));
                }
            }
            "enum" => {
                let Value::Array(items) = value else {
                    return Err(err(&here, "must be an array"));
                };
                // All strings: sorted, so that a lookup is a binary search.
                if items.iter().all(Value::is_string) {
                    let mut v: Vec<Box<str>> = items
                        .iter()
                        .filter_map(|s| s.as_str().map(Into::into))
                        .collect();
                    crate::sorting::stable_sort_by(&mut v, |a, b| a.cmp(b));
                    checks.push(Check::EnumStr(v));
                } else {
                    checks.push(Check::Enum(Consts::new(items)));
                }
            }
            "const" => checks.push(Check::Const(Consts::new(std::slice::from_ref(value)))),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Numeric bounds; OpenAPI 3.0's boolean `exclusiveMinimum`/`exclusiveMaximum` modify
    /// `minimum`/`maximum` instead of standing alone.
    fn number_keyword(&mut self, kw: Keyword<'_>, out: &mut Out) -> Handled {
        let Keyword { site, key, value } = kw;
        let checks = &mut out.checks;
        let openapi30 = self.opts.draft == Draft::OpenApi30;
        let flag_set = |flag: &str| site.map.get(flag) == Some(&Value::Bool(true)) && openapi30;
        match key {
            "minimum" | "maximum" => {
                let lower = key == "minimum";
                let flag = if lower {
                    "exclusiveMinimum"
                } else {
                    "exclusiveMaximum"
                };
                let bound = site.number(key)?;
                checks.extend(bound.map(bound_check(lower, flag_set(flag))));
            }
            "exclusiveMinimum" | "exclusiveMaximum" => {
                if value.is_boolean() && openapi30 {
                    return Ok(true); // folded into minimum/maximum above
                }
                let bound = site.number(key)?;
                checks.extend(bound.map(bound_check(key == "exclusiveMinimum", true)));
            }
            "multipleOf" => match value.as_number().and_then(decimal::of) {
                Some(m) if m > Decimal::default() => checks.push(Check::MultipleOf(m)),
                _ => return Err(err(&site.here(key), "must be a number greater than 0")),
            },
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// String length, `pattern`, and `format` (an assertion only when the options say so).
    fn string_keyword(&mut self, kw: Keyword<'_>, out: &mut Out) -> Handled {
        let Keyword { site, key, value } = kw;
        let checks = &mut out.checks;
        let here = site.here(key);
        match key {
            "minLength" => checks.extend(site.count(key)?.map(Check::MinLength)),
            "maxLength" => checks.extend(site.count(key)?.map(Check::MaxLength)),
            "pattern" => {
                let Value::String(p) = value else {
                    return Err(err(&here, "must be a string"));
                };
                checks.push(Check::Pattern(Box::new(compile_regex(p, &here)?)));
            }
            "format" => {
                let Value::String(name) = value else {
                    return Err(err(&here, "must be a string"));
                };
                if self.opts.formats {
                    checks.push(Check::Format(self.format_assertion(name, &here)?));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A format we cannot assert is refused rather than passed silently.
    fn format_assertion(&self, name: &str, here: &str) -> Result<Format, CompileError> {
        let known = if self.opts.openapi {
            Format::from_openapi_name(name)
        } else {
            Format::from_name(name)
        };
        known.ok_or_else(|| {
            unsupported(
                here,
                format!("format {name:?} is not supported as an assertion (supported: {}); turn \"formats\" off to treat formats as annotations", Format::NAMES.join(", ")),
            )
        })
    }

    /// Array keywords. `items` is a schema in draft 2020-12 and OpenAPI, and may be an array of
    /// schemas (then followed by `additionalItems`) in draft 7.
    fn array_keyword(&mut self, kw: Keyword<'_>, out: &mut Out) -> Handled {
        let Keyword { site, key, value } = kw;
        let Out { checks, gathered } = out;
        let draft = self.opts.draft;
        let (doc, pointer) = (site.doc, site.pointer);
        match key {
            "prefixItems" if draft == Draft::Draft2020 => {
                gathered.prefix = self.sub_list(doc, pointer, key, value, false)?;
            }
            "items" => {
                if value.is_array() {
                    if draft != Draft::Draft7 {
                        return Err(err(
                            &site.here(key),
                            "must be a schema (an array of schemas is draft 7 \"items\"; use \"prefixItems\")",
                        ));
                    }
                    gathered.prefix = self.sub_list(doc, pointer, key, value, true)?;
                    gathered.prefix_keyword = "items";
                    if site.map.contains_key("additionalItems") {
                        gathered.rest = Some(self.sub(doc, pointer, "additionalItems")?);
                        gathered.rest_keyword = "additionalItems";
                    }
                } else {
                    gathered.rest = Some(self.sub(doc, pointer, key)?);
                }
            }
            // Only meaningful after an array-form "items" (handled there); ignored otherwise, as the spec says.
            "additionalItems" if draft != Draft::Draft2020 => {}
            "minItems" => checks.extend(site.count(key)?.map(Check::MinItems)),
            "maxItems" => checks.extend(site.count(key)?.map(Check::MaxItems)),
            "uniqueItems" => match value {
                Value::Bool(true) => checks.push(Check::UniqueItems),
                Value::Bool(false) => {}
                _ => return Err(err(&site.here(key), "must be true or false")),
            },
            "contains" => gathered.contains = Some(self.sub(doc, pointer, key)?),
            // Read with "contains" after the loop; here only checked.
            "minContains" | "maxContains" if draft == Draft::Draft2020 => {
                site.count(key)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Object keywords: properties and their names, counts, `required` and the dependencies
    /// (draft 2020-12 `dependentRequired`/`dependentSchemas`, draft 7 `dependencies`).
    fn object_keyword(&mut self, kw: Keyword<'_>, out: &mut Out) -> Handled {
        let Keyword { site, key, value } = kw;
        let Out { checks, gathered } = out;
        let draft = self.opts.draft;
        let (doc, pointer) = (site.doc, site.pointer);
        let here = site.here(key);
        match key {
            "required" => checks.push(Check::Required(string_list(value, &here)?)),
            "properties" => gathered.props = Some(self.sub_map(doc, pointer, key, value)?),
            "patternProperties" => {
                let Value::Object(pm) = value else {
                    return Err(err(&here, "must be an object of schemas"));
                };
                for name in pm.keys() {
                    let at = child(&here, name);
                    gathered
                        .patterns
                        .push((compile_regex(name, &at)?, self.node_for(doc, at)?));
                }
            }
            "additionalProperties" => gathered.additional = Some(self.sub(doc, pointer, key)?),
            "propertyNames" => checks.push(Check::PropertyNames(self.sub(doc, pointer, key)?)),
            "minProperties" => checks.extend(site.count(key)?.map(Check::MinProperties)),
            "maxProperties" => checks.extend(site.count(key)?.map(Check::MaxProperties)),
            "dependentRequired" if draft == Draft::Draft2020 => {
                let Value::Object(dm) = value else {
                    return Err(err(&here, "must be an object of string arrays"));
                };
                for (name, list) in dm {
                    gathered.dep_required.push((
                        name.as_str().into(),
                        string_list(list, &child(&here, name))?,
                    ));
                }
            }
            "dependentSchemas" if draft == Draft::Draft2020 => {
                gathered
                    .dep_schemas
                    .extend(self.sub_map(doc, pointer, key, value)?);
            }
            "dependencies" if draft != Draft::Draft2020 => {
                let Value::Object(dm) = value else {
                    return Err(err(&here, "must be an object"));
                };
                for (name, dep) in dm {
                    let at = child(&here, name);
                    if dep.is_array() {
                        gathered
                            .dep_required
                            .push((name.as_str().into(), string_list(dep, &at)?));
                    } else {
                        gathered
                            .dep_schemas
                            .push((name.as_str().into(), self.node_for(doc, at)?));
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `allOf`, `anyOf`, `oneOf`, `not` and `if`/`then`/`else`.
    fn combinator_keyword(&mut self, kw: Keyword<'_>, out: &mut Out) -> Handled {
        let Keyword { site, key, value } = kw;
        let checks = &mut out.checks;
        let (doc, pointer) = (site.doc, site.pointer);
        match key {
            "allOf" => checks.push(Check::AllOf(
                self.sub_list(doc, pointer, key, value, false)?,
            )),
            "anyOf" => checks.push(Check::AnyOf(
                self.sub_list(doc, pointer, key, value, false)?,
            )),
            "oneOf" => checks.push(Check::OneOf(
                self.sub_list(doc, pointer, key, value, false)?,
            )),
            "not" => checks.push(Check::Not(self.sub(doc, pointer, key)?)),
            "if" => {
                let cond = self.sub(doc, pointer, key)?;
                let then = self.optional_sub(site, "then")?;
                let otherwise = self.optional_sub(site, "else")?;
                // An "if" without a branch asserts nothing.
                if then.is_some() || otherwise.is_some() {
                    checks.push(Check::If {
                        cond,
                        then,
                        otherwise,
                    });
                }
            }
            // Without "if" they do nothing; still they must be schemas.
            "then" | "else" => {
                if !(value.is_object() || value.is_boolean()) {
                    return Err(err(
                        &site.here(key),
                        "a schema must be an object or a boolean",
                    ));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn optional_sub(&mut self, site: &Site<'_>, key: &str) -> Result<Option<usize>, CompileError> {
        if site.map.contains_key(key) {
            Ok(Some(self.sub(site.doc, site.pointer, key)?))
        } else {
            Ok(None)
        }
    }

    fn resolve_ref(
        &mut self,
        doc: usize,
        pointer: &str,
        value: &Value,
    ) -> Result<usize, CompileError> {
        let here = child(pointer, "$ref");
        let Value::String(reference) = value else {
            return Err(err(&here, "must be a string"));
        };
        let base = self.base_near(doc, pointer).unwrap_or_else(|| {
            self.docs
                .get(doc)
                .map(|(_, u)| u.clone())
                .unwrap_or_default()
        });
        let target = resolve_uri(&base, reference);
        let (uri, fragment) = split_fragment(&target);
        let fragment = percent_decode(fragment);
        let (tdoc, tptr) = if fragment.is_empty() || fragment.starts_with('/') {
            let Some((tdoc, root)) = self.ids.get(uri).cloned() else {
                return Err(unsupported(
                    &here,
                    format!("$ref {reference:?} points outside this document; remote references are not supported"),
                ));
            };
            (tdoc, format!("{root}{fragment}"))
        } else {
            let key = format!("{uri}#{fragment}");
            let Some(found) = self.anchors.get(&key).cloned() else {
                return Err(err(&here, format!("$ref {reference:?}: no such anchor")));
            };
            found
        };
        if self.doc(tdoc).and_then(|d| d.pointer(&tptr)).is_none() {
            return Err(err(
                &here,
                format!("$ref {reference:?} does not resolve to a schema"),
            ));
        }
        self.node_for(tdoc, tptr)
    }
}

/// The schema-valued members of a schema object, for indexing `$id`s and anchors.
fn subschemas<'v>(map: &'v Map<String, Value>, pointer: &str) -> Vec<(String, &'v Value)> {
    let mut out = Vec::new();
    for (key, value) in map {
        let here = child(pointer, key);
        match key.as_str() {
            "additionalProperties"
            | "propertyNames"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "additionalItems"
            | "unevaluatedItems"
            | "unevaluatedProperties"
            | "contentSchema" => out.push((here, value)),
            "items" => match value {
                Value::Array(items) => out.extend(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (child(&here, &i.to_string()), v)),
                ),
                _ => out.push((here, value)),
            },
            "allOf" | "anyOf" | "oneOf" | "prefixItems" => {
                if let Value::Array(items) = value {
                    out.extend(
                        items
                            .iter()
                            .enumerate()
                            .map(|(i, v)| (child(&here, &i.to_string()), v)),
                    );
                }
            }
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas"
            | "dependencies" => {
                if let Value::Object(m) = value {
                    out.extend(m.iter().map(|(k, v)| (child(&here, k), v)));
                }
            }
            _ => {}
        }
    }
    out
}

fn check_cost(c: &Check) -> u8 {
    match c {
        Check::Type(_) => 0,
        Check::Const(_)
        | Check::EnumStr(_)
        | Check::Minimum(_)
        | Check::Maximum(_)
        | Check::ExclusiveMinimum(_)
        | Check::ExclusiveMaximum(_)
        | Check::MinLength(_)
        | Check::MaxLength(_)
        | Check::MinItems(_)
        | Check::MaxItems(_)
        | Check::MinProperties(_)
        | Check::MaxProperties(_)
        | Check::Required(_) => 1,
        Check::Enum(_) | Check::MultipleOf(_) | Check::Format(_) | Check::Pattern(_) => 2,
        _ => 3,
    }
}

fn type_mask(
    value: &Value,
    here: &str,
    map: &Map<String, Value>,
    draft: Draft,
) -> Result<u8, CompileError> {
    let one = |v: &Value| -> Result<u8, CompileError> {
        Ok(match v.as_str() {
            Some("null") => T_NULL,
            Some("boolean") => T_BOOL,
            Some("object") => T_OBJECT,
            Some("array") => T_ARRAY,
            Some("number") => T_NUMBER,
            Some("string") => T_STRING,
            Some("integer") => T_INTEGER,
            _ => return Err(err(here, "unknown type name")),
        })
    };
    let mut mask = match value {
        Value::Array(items) => {
            let mut m = 0;
            for item in items {
                m |= one(item)?;
            }
            m
        }
        v => one(v)?,
    };
    if draft == Draft::OpenApi30 && map.get("nullable") == Some(&Value::Bool(true)) {
        mask |= T_NULL;
    }
    Ok(mask)
}

fn string_list(value: &Value, here: &str) -> Result<Vec<Box<str>>, CompileError> {
    let Value::Array(items) = value else {
        return Err(err(here, "must be an array of strings"));
    };
    items
        .iter()
        .map(|v| {
            v.as_str()
                .map(Into::into)
                .ok_or_else(|| err(here, "must be an array of strings"))
        })
        .collect()
}

/// `2` and `2.0` are both accepted where a count is expected.
fn non_negative_int(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    })
}

/// Compiles an ECMA-262 pattern with regex-lite: unanchored search, as JSON Schema requires.
/// Syntax regex-lite lacks (Unicode classes `\p{..}`, look-around, back-references) is refused here.
pub(crate) fn compile_regex(pattern: &str, here: &str) -> Result<Regex, CompileError> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(err(
            here,
            format!("pattern longer than {MAX_PATTERN_LEN} bytes"),
        ));
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| unsupported(here, format!("pattern not supported by regex-lite: {e}")))
}

// ---- URIs (RFC 3986 section 5.2), enough to resolve `$id` and `$ref` ----

fn strip_fragment(uri: &str) -> String {
    split_fragment(uri).0.to_string()
}

fn base_without_fragment(uri: &str) -> &str {
    split_fragment(uri).0
}

fn split_fragment(uri: &str) -> (&str, &str) {
    uri.split_once('#').unwrap_or((uri, ""))
}

/// `%XX` escapes decoded (JSON pointers in `$ref`, path segments); invalid UTF-8 is replaced.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(decoded) = hex {
                out.push(decoded);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct UriRef<'s> {
    scheme: Option<&'s str>,
    authority: Option<&'s str>,
    path: &'s str,
    query: Option<&'s str>,
    fragment: Option<&'s str>,
}

fn parse_uri(s: &str) -> UriRef<'_> {
    let (s, fragment) = match s.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (s, None),
    };
    let (s, query) = match s.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (s, None),
    };
    let (scheme, rest) = match s.split_once(':') {
        Some((sch, rest))
            if !sch.is_empty()
                && sch.starts_with(|c: char| c.is_ascii_alphabetic())
                && sch
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (Some(sch), rest)
        }
        _ => (None, s),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(r) => match r.find('/') {
            Some(i) => (r.get(..i), r.get(i..).unwrap_or("")),
            None => (Some(r), ""),
        },
        None => (None, rest),
    };
    UriRef {
        scheme,
        authority,
        path,
        query,
        fragment,
    }
}

fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let absolute = path.starts_with('/');
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > usize::from(absolute) {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// Resolves `reference` against `base` (RFC 3986 section 5.2.2).
pub(crate) fn resolve_uri(base: &str, reference: &str) -> String {
    let r = parse_uri(reference);
    let b = parse_uri(base);
    let (scheme, authority, path, query);
    if r.scheme.is_some() {
        scheme = r.scheme;
        authority = r.authority;
        path = remove_dot_segments(r.path);
        query = r.query;
    } else {
        scheme = b.scheme;
        if r.authority.is_some() {
            authority = r.authority;
            path = remove_dot_segments(r.path);
            query = r.query;
        } else {
            authority = b.authority;
            if r.path.is_empty() {
                path = b.path.to_string();
                query = r.query.or(b.query);
            } else {
                if r.path.starts_with('/') {
                    path = remove_dot_segments(r.path);
                } else {
                    let merged = if b.authority.is_some() && b.path.is_empty() {
                        format!("/{}", r.path)
                    } else {
                        match b.path.rfind('/') {
                            Some(i) => format!("{}{}", b.path.get(..=i).unwrap_or(""), r.path),
                            None => r.path.to_string(),
                        }
                    };
                    path = remove_dot_segments(&merged);
                }
                query = r.query;
            }
        }
    }
    let mut out = String::new();
    if let Some(s) = scheme {
        out.push_str(s);
        out.push(':');
    }
    if let Some(a) = authority {
        out.push_str("//");
        out.push_str(a);
    }
    out.push_str(&path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = r.fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(v: Value) -> Result<Schema, CompileError> {
        Schema::compile(&v, Options::new(Draft::Draft2020))
    }

    #[test]
    fn unknown_keyword_is_refused_by_name_and_path() {
        let e = compile(json!({"properties": {"a": {"unevaluatedProperties": false}}}))
            .err()
            .unwrap();
        assert_eq!(e.pointer, "#/properties/a/unevaluatedProperties");
        assert!(e.message.contains("unevaluatedProperties"));
        assert!(e.unsupported);
    }

    #[test]
    fn annotations_are_accepted() {
        compile(
            json!({"title": "t", "description": "d", "examples": [1], "default": 2,
            "$comment": "c", "deprecated": true, "readOnly": false, "writeOnly": false,
            "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "http://x/y"}),
        )
        .unwrap();
    }

    #[test]
    fn recursive_ref_compiles_to_a_back_reference() {
        let s = compile(json!({"properties": {"child": {"$ref": "#"}}})).unwrap();
        assert_eq!(s.nodes.len(), 2);
    }

    #[test]
    fn ref_loop_without_descent_is_refused() {
        let e = compile(json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}))
            .err()
            .unwrap();
        assert!(e.message.contains("refers back to itself"), "{e}");
    }

    #[test]
    fn remote_ref_is_refused_as_unsupported() {
        let e = compile(json!({"$ref": "http://example.com/other.json"}))
            .err()
            .unwrap();
        assert!(e.unsupported);
        assert_eq!(e.pointer, "#/$ref");
    }

    #[test]
    fn dangling_local_ref_is_refused() {
        let e = compile(json!({"$ref": "#/$defs/missing"})).err().unwrap();
        assert!(!e.unsupported);
    }

    #[test]
    fn unsupported_regex_syntax_is_refused_at_its_path() {
        let e = compile(json!({"properties": {"a": {"pattern": "(?<=x)y"}}}))
            .err()
            .unwrap();
        assert_eq!(e.pointer, "#/properties/a/pattern");
    }

    #[test]
    fn unknown_format_is_refused_only_when_formats_are_asserted() {
        let schema = json!({"format": "hostname"});
        let mut o = Options::new(Draft::Draft2020);
        assert!(Schema::compile(&schema, o).is_ok());
        o.formats = true;
        let e = Schema::compile(&schema, o).err().unwrap();
        assert_eq!(e.pointer, "#/format");
    }

    #[test]
    fn draft7_items_array_is_refused_in_2020_12() {
        assert!(compile(json!({"items": [{}]})).is_err());
        assert!(Schema::compile(&json!({"items": [{}]}), Options::new(Draft::Draft7)).is_ok());
    }

    #[test]
    fn nullable_is_only_known_to_openapi_3_0() {
        assert!(compile(json!({"type": "string", "nullable": true})).is_err());
        assert!(Schema::compile(
            &json!({"type": "string", "nullable": true}),
            Options::new(Draft::OpenApi30)
        )
        .is_ok());
    }

    #[test]
    fn bad_keyword_values_are_refused() {
        for bad in [
            json!({"type": "text"}),
            json!({"minLength": -1}),
            json!({"multipleOf": 0}),
            json!({"required": [1]}),
            json!({"allOf": []}),
            json!({"properties": []}),
            json!({"enum": 3}),
            json!(3),
        ] {
            assert!(compile(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn uris_resolve_as_rfc_3986_says() {
        assert_eq!(
            resolve_uri("http://a/b/c/d;p?q", "../g"),
            "http://a/b/g".to_string()
        );
        assert_eq!(resolve_uri("http://a/b/c", "/x#f"), "http://a/x#f");
        assert_eq!(resolve_uri("urn:x:y", "#/a"), "urn:x:y#/a");
        assert_eq!(resolve_uri("http://a/b/", "c.json"), "http://a/b/c.json");
    }
}
