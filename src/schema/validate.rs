//! A request body against a compiled [`Schema`]: one pass over its bytes into the worker's
//! [`Tape`] (syntax, nesting depth and duplicate member names checked on the way, no tree built),
//! then one walk of the tape.
//!
//! The common case (a valid body) runs in "probe" mode: the first failing check ends the walk,
//! and no pointer or message is built. Only an invalid body is walked a second time to collect up
//! to `max_errors` [`Violation`]s, visiting object members in name order (the order the reports
//! have always had). Violations name the instance location (a JSON pointer), the keyword and the
//! schema location, never the offending value.
//!
//! A body the tape refuses goes through [`parse_body`], the reference path (serde_json), which
//! names the failure exactly: too deep, not UTF-8, not JSON (line and column), a repeated key.
//! [`Schema::is_valid`] and [`Schema::validate`] take an already built `Value` (parameters, the
//! CLI, tests): it is serialized and walked the same way.
//!
//! # Limits
//! - [`Schema::validate_bytes`] refuses a body longer than `max_body_bytes` (413) before reading
//!   it, and one that nests arrays/objects deeper than `max_depth` (at most [`MAX_DEPTH_LIMIT`] =
//!   128, serde_json's own recursion limit): the tape stops at that depth (it uses no recursion),
//!   and [`parse_body`] runs a linear pre-scan before serde_json builds any value. Parsed memory
//!   is bounded by a small multiple of `max_body_bytes` (see [`Tape`]).
//! - Evaluation recursion is bounded by [`MAX_EVAL_DEPTH`] (instance depth plus `$ref`/`allOf`
//!   chains); reaching it fails the request with keyword `depth` rather than overflow the stack.
//!   Compile time already refuses `$ref` loops that never descend into the instance.

use super::compile::{
    Check, SNode, Schema, T_ARRAY, T_BOOL, T_INTEGER, T_NULL, T_NUMBER, T_OBJECT, T_STRING,
};
use super::decimal::Decimal;
use super::problem::{Rejection, Violation};
use super::tape::{Doc, Tape, K_ARR, K_FALSE, K_NULL, K_NUM, K_OBJ, K_STR, K_TRUE};
use regex_lite::Regex;
use serde_json::Value;
use std::cell::RefCell;
use std::cmp::Ordering;

/// The deepest `max_depth` a policy may configure (serde_json refuses deeper documents anyway).
pub const MAX_DEPTH_LIMIT: usize = 128;
/// Deepest evaluation (instance depth plus in-place applicator chains) before giving up.
pub const MAX_EVAL_DEPTH: u32 = 512;
/// Longest JSON pointer put into a violation; longer ones are cut (object keys come from the client).
pub const MAX_POINTER_LEN: usize = 512;

/// Limits applied to one request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_depth: usize,
    /// Most violations reported in one problem document.
    pub max_errors: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 64 * 1024,
            max_depth: 32,
            max_errors: 10,
        }
    }
}

thread_local! {
    /// The worker's tape, reused by every request (see [`Tape`] for what it keeps between them).
    static TAPE: RefCell<Tape> = RefCell::new(Tape::default());
}

/// Runs `f` with the worker's reused tape (a fresh one if that is in use), then trims it. Not
/// generic: one copy in the module for all callers.
fn with_tape(f: &mut dyn FnMut(&mut Tape)) {
    TAPE.with(|cell| {
        let mut fresh;
        let mut reused;
        let tape: &mut Tape = match cell.try_borrow_mut() {
            Ok(t) => {
                reused = t;
                &mut reused
            }
            Err(_) => {
                fresh = Tape::default();
                &mut fresh
            }
        };
        f(tape);
        tape.trim();
    });
}

/// Tokenizes `text` into the worker's tape; `f` sees the document when the tape accepts it
/// (within `max_depth`, no repeated key).
fn on_text<R>(text: &str, max_depth: usize, f: impl FnOnce(Doc<'_>) -> R) -> Option<R> {
    let mut f = Some(f);
    let mut out = None;
    with_tape(&mut |t| {
        if t.parse(text, max_depth) {
            out = f.take().map(|f| f(t.doc(text)));
        }
    });
    out
}

/// The one pass over a body within `limits`: `f` sees the document when the tape accepts it;
/// `None` when the body is too large, not UTF-8, too deep, not JSON or repeats a key, for
/// [`parse_body`] to name exactly.
fn on_tape<R>(body: &[u8], limits: &Limits, f: impl FnOnce(Doc<'_>) -> R) -> Option<R> {
    if body.len() > limits.max_body_bytes {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    on_text(text, limits.max_depth.min(MAX_DEPTH_LIMIT), f)
}

fn violation((violations, truncated): (Vec<Violation>, bool)) -> Rejection {
    Rejection::SchemaViolation {
        violations,
        truncated,
    }
}

/// Checks that a body within `limits` is one JSON document, without a schema.
pub fn check_json(body: &[u8], limits: &Limits) -> Result<(), Rejection> {
    match on_tape(body, limits, |_| ()) {
        Some(()) => Ok(()),
        None => parse_body(body, limits).map(|_| ()),
    }
}

impl Schema {
    /// True when `value` matches. Stops at the first failure.
    pub fn is_valid(&self, value: &Value) -> bool {
        on_text(&value.to_string(), usize::MAX, |doc| self.is_valid_doc(doc)).unwrap_or(false)
    }

    /// Up to `max_errors` violations (and whether more exist) when `value` does not match.
    pub fn validate(&self, value: &Value, max_errors: usize) -> Result<(), (Vec<Violation>, bool)> {
        on_text(&value.to_string(), usize::MAX, |doc| {
            self.validate_doc(doc, max_errors)
        })
        // A serialized value always tokenizes; never report "valid" otherwise.
        .unwrap_or_else(|| Err((vec![schema_violation()], false)))
    }

    /// True when the document matches. Stops at the first failure.
    pub fn is_valid_doc(&self, doc: Doc<'_>) -> bool {
        let mut e = Eval::new(&self.nodes, doc, false, 0);
        e.node(self.root, 0, &Path::ROOT, "$ref", 0)
    }

    /// Up to `max_errors` violations (and whether more exist) when the document does not match.
    pub fn validate_doc(
        &self,
        doc: Doc<'_>,
        max_errors: usize,
    ) -> Result<(), (Vec<Violation>, bool)> {
        if self.is_valid_doc(doc) {
            return Ok(());
        }
        // Collect one more than asked for, to know whether the list is truncated.
        let max_errors = max_errors.max(1);
        let mut e = Eval::new(&self.nodes, doc, true, max_errors + 1);
        e.node(self.root, 0, &Path::ROOT, "$ref", 0);
        if e.errors.len() > max_errors {
            e.errors.truncate(max_errors);
            e.truncated = true;
        }
        if e.errors.is_empty() {
            // Cannot happen for a consistent schema; never report "valid" for an invalid body.
            e.errors.push(schema_violation());
        }
        Err((e.errors, e.truncated))
    }

    /// Parses and validates a request body under `limits`: one pass over the bytes into the
    /// worker's tape, then one walk of it. A body the tape refuses is judged by [`parse_body`]
    /// (which names the exact failure).
    pub fn validate_bytes(&self, body: &[u8], limits: &Limits) -> Result<(), Rejection> {
        let max_errors = limits.max_errors;
        match on_tape(body, limits, |doc| self.validate_doc(doc, max_errors)) {
            Some(r) => r.map_err(violation),
            None => {
                let value = parse_body(body, limits)?;
                self.validate(&value, max_errors).map_err(violation)
            }
        }
    }
}

fn schema_violation() -> Violation {
    Violation {
        pointer: String::new(),
        keyword: "schema",
        schema_location: "#".into(),
    }
}

/// The size check, the nesting pre-scan and the parse into a tree, without a schema: the reference
/// path, which names why a body is refused (in this order: too large, too deep, not UTF-8, not
/// JSON with the line and column, a repeated key).
///
/// A repeated member name (compared after unescaping: `"qty"` and `"q\u0074y"` are the same
/// key) at any depth is refused: serde_json keeps the last one, other parsers the first, so a body
/// whose meaning depends on the parser is not judged. The tape finds them: it accepts exactly
/// the documents serde_json accepts, save those.
pub fn parse_body(body: &[u8], limits: &Limits) -> Result<Value, Rejection> {
    let (value, text, max_depth) = parse_tree(body, limits)?;
    if on_text(text, max_depth, |_| ()).is_none() {
        return Err(Rejection::DuplicateKey);
    }
    Ok(value)
}

impl Schema {
    /// [`parse_body`] and [`Schema::validate`] of the same body with one pass of the tape, for a
    /// caller that both reads the tree and needs the schema's verdict on it (`apiguard serve`).
    pub fn parse_and_validate(
        &self,
        body: &[u8],
        limits: &Limits,
    ) -> Result<(Value, Verdict), Rejection> {
        let (value, text, max_depth) = parse_tree(body, limits)?;
        match on_text(text, max_depth, |doc| {
            self.validate_doc(doc, limits.max_errors)
        }) {
            Some(verdict) => Ok((value, verdict)),
            None => Err(Rejection::DuplicateKey),
        }
    }
}

/// A schema's verdict on a document: up to `max_errors` violations (and whether more exist).
pub type Verdict = Result<(), (Vec<Violation>, bool)>;

/// [`parse_body`] without the repeated-key check: the tree, the text and the depth bound used.
fn parse_tree<'b>(body: &'b [u8], limits: &Limits) -> Result<(Value, &'b str, usize), Rejection> {
    if body.len() > limits.max_body_bytes {
        return Err(Rejection::BodyTooLarge {
            limit: limits.max_body_bytes,
        });
    }
    let max_depth = limits.max_depth.min(MAX_DEPTH_LIMIT);
    if nesting_depth_exceeds(body, max_depth) {
        return Err(Rejection::TooDeep { limit: max_depth });
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(Rejection::InvalidUtf8);
    };
    let value = serde_json::from_slice(body).map_err(|e| Rejection::InvalidJson {
        line: e.line(),
        column: e.column(),
    })?;
    Ok((value, text, max_depth))
}

/// Linear scan: does any array/object open deeper than `max`? Strings (with escapes) are skipped.
pub fn nesting_depth_exceeds(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// An instance location, built on the stack as the walk descends; turned into a JSON pointer
/// only when a violation is recorded.
#[derive(Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

#[derive(Clone, Copy)]
enum Seg<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    pub(crate) const ROOT: Path<'static> = Path {
        parent: None,
        seg: Seg::Root,
    };

    fn key(&'a self, k: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Key(k),
        }
    }

    fn index(&'a self, i: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    fn pointer(&self) -> String {
        let mut segs = Vec::new();
        let mut p = Some(self);
        while let Some(path) = p {
            segs.push(path.seg);
            p = path.parent;
        }
        let mut out = String::new();
        for seg in segs.iter().rev() {
            match seg {
                Seg::Root => {}
                Seg::Key(k) => {
                    out.push('/');
                    out.push_str(&k.replace('~', "~0").replace('/', "~1"));
                }
                Seg::Index(i) => {
                    out.push('/');
                    out.push_str(&i.to_string());
                }
            }
            if out.len() > MAX_POINTER_LEN {
                let mut cut = MAX_POINTER_LEN;
                while !out.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.truncate(cut);
                out.push_str("...");
                break;
            }
        }
        out
    }
}

struct Eval<'s, 't> {
    nodes: &'s [SNode],
    doc: Doc<'t>,
    collect: bool,
    max_errors: usize,
    errors: Vec<Violation>,
    truncated: bool,
}

/// A number written as an integer, or one whose decimal value is whole (`1.0`, `1e3`).
fn is_integer_text(t: &str) -> bool {
    !t.bytes().any(|c| matches!(c, b'.' | b'e' | b'E'))
        || Decimal::parse(t).is_some_and(|d| d.is_integer())
}

/// A numeric bound on an instance: non-numbers pass (`type` judges them). An integer of at most
/// 18 digits against a whole bound is compared as `i64`, anything else as exact decimals.
/// Not generic: one copy for the four bound keywords.
#[inline(never)]
fn bound(doc: &Doc<'_>, v: usize, ok: fn(Ordering) -> bool, m: &Decimal) -> bool {
    let Some(t) = doc.num(v) else {
        return true;
    };
    if t.len() <= 18 && !t.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) {
        if let (Ok(x), Some(m)) = (t.parse::<i64>(), m.as_small_int()) {
            return ok(x.cmp(&m));
        }
    }
    Decimal::parse(t).is_some_and(|x| ok(x.cmp(m)))
}

fn type_matches(mask: u8, doc: &Doc<'_>, v: usize) -> bool {
    let bit = match doc.kind(v) {
        K_NULL => T_NULL,
        K_TRUE | K_FALSE => T_BOOL,
        K_OBJ => T_OBJECT,
        K_ARR => T_ARRAY,
        K_STR => T_STRING,
        _ => {
            return mask & T_NUMBER != 0 || (mask & T_INTEGER != 0 && is_integer_text(doc.text(v)));
        }
    };
    mask & bit != 0
}

fn multiple_of_exact(doc: &Doc<'_>, v: usize, m: &Decimal) -> bool {
    let Some(t) = doc.num(v) else {
        return true;
    };
    let Some(x) = Decimal::parse(t) else {
        return false;
    };
    match x.is_multiple_of(m) {
        Some(ok) => ok,
        // A divisor with more than 19 significant digits: the f64 approximation.
        None => match (t.parse::<f64>().ok().filter(|f| f.is_finite()), m.to_f64()) {
            (Some(x), Some(m)) => multiple_of(x, m),
            _ => false,
        },
    }
}

fn multiple_of(v: f64, m: f64) -> bool {
    if m.fract() == 0.0 && v.fract() == 0.0 && v.abs() < 9.0e15 && m < 9.0e15 {
        return (v as i64) % (m as i64) == 0;
    }
    let q = v / m;
    if !q.is_finite() {
        return false;
    }
    (q - q.round()).abs() <= 1e-9 * q.abs().max(1.0)
}

fn has_duplicates(doc: &Doc<'_>, arr: usize) -> bool {
    if doc.len(arr) <= 16 {
        return doc
            .elements(arr)
            .enumerate()
            .any(|(i, a)| doc.elements(arr).skip(i + 1).any(|b| doc.equal(a, doc, b)));
    }
    let mut hashed: Vec<(u64, usize)> = doc.elements(arr).map(|i| (doc.hash(i), i)).collect();
    hashed.sort_unstable();
    // Within a run of equal hashes, compare every pair.
    let mut run = 0;
    for k in 1..hashed.len() {
        let (Some(cur), Some(first)) = (hashed.get(k), hashed.get(run)) else {
            break;
        };
        if cur.0 != first.0 {
            run = k;
            continue;
        }
        let earlier = hashed.get(run..k).unwrap_or(&[]);
        if earlier.iter().any(|e| doc.equal(e.1, doc, cur.1)) {
            return true;
        }
    }
    false
}

/// The members of object `v` ordered by name (the order violations are reported in).
fn members_by_name(doc: &Doc<'_>, v: usize) -> Vec<(usize, usize)> {
    let mut list: Vec<(usize, usize)> = doc.members(v).collect();
    crate::sorting::stable_sort_by(&mut list, |a, b| doc.text(a.0).cmp(doc.text(b.0)));
    list
}

fn char_count_at_least(s: &str, n: u64) -> bool {
    (s.len() as u64) >= n && (n == 0 || s.chars().count() as u64 >= n)
}

fn char_count_at_most(s: &str, n: u64) -> bool {
    (s.len() as u64) <= n || s.chars().count() as u64 <= n
}

impl<'s, 't> Eval<'s, 't> {
    fn new(nodes: &'s [SNode], doc: Doc<'t>, collect: bool, max_errors: usize) -> Eval<'s, 't> {
        Eval {
            nodes,
            doc,
            collect,
            max_errors,
            errors: Vec::new(),
            truncated: false,
        }
    }

    fn full(&self) -> bool {
        self.errors.len() >= self.max_errors
    }

    fn fail(&mut self, path: &Path<'_>, keyword: &'static str, loc: &str, at_keyword: bool) {
        if !self.collect {
            return;
        }
        if self.full() {
            self.truncated = true;
            return;
        }
        let schema_location = if at_keyword {
            format!("{loc}/{keyword}")
        } else {
            loc.to_string()
        };
        self.errors.push(Violation {
            pointer: path.pointer(),
            keyword,
            schema_location,
        });
    }

    /// Validates without recording anything.
    fn probe(&mut self, idx: usize, v: usize, path: &Path<'_>, depth: u32) -> bool {
        let was = std::mem::replace(&mut self.collect, false);
        let ok = self.node(idx, v, path, "$ref", depth);
        self.collect = was;
        ok
    }

    /// `kw` names the keyword that applied this subschema, reported when the subschema is `false`.
    fn node(
        &mut self,
        idx: usize,
        v: usize,
        path: &Path<'_>,
        kw: &'static str,
        depth: u32,
    ) -> bool {
        let nodes = self.nodes;
        let Some(n) = nodes.get(idx) else {
            return false;
        };
        if n.never {
            self.fail(path, kw, &n.loc, false);
            return false;
        }
        if depth > MAX_EVAL_DEPTH {
            self.fail(path, "depth", &n.loc, false);
            return false;
        }
        let mut ok = true;
        for c in &n.checks {
            if !self.check(c, &n.loc, v, path, depth) {
                ok = false;
                if !self.collect || self.full() {
                    return false;
                }
            }
        }
        ok
    }

    /// One member of an object under `properties`, `patternProperties`, `additionalProperties`.
    #[allow(clippy::too_many_arguments)]
    fn member(
        &mut self,
        props: &[(Box<str>, usize)],
        patterns: &[(Regex, usize)],
        additional: Option<usize>,
        (name, item): (usize, usize),
        path: &Path<'_>,
        d: u32,
    ) -> bool {
        let k = self.doc.text(name);
        let child = path.key(k);
        let mut ok = true;
        let mut matched = false;
        if let Ok(i) = props.binary_search_by(|(name, _)| name.as_ref().cmp(k)) {
            matched = true;
            if let Some((_, s)) = props.get(i) {
                ok &= self.node(*s, item, &child, "properties", d);
            }
        }
        for (re, s) in patterns {
            if re.is_match(k) {
                matched = true;
                ok &= self.node(*s, item, &child, "patternProperties", d);
            }
        }
        if !matched {
            if let Some(s) = additional {
                ok &= self.node(s, item, &child, "additionalProperties", d);
            }
        }
        ok
    }

    fn check(&mut self, c: &Check, loc: &str, v: usize, path: &Path<'_>, depth: u32) -> bool {
        let d = depth + 1;
        let doc = self.doc;
        let kind = doc.kind(v);
        let count = |want: u8| (kind == want).then(|| doc.len(v) as u64);
        let ok = match c {
            Check::Type(mask) => type_matches(*mask, &doc, v),
            Check::EnumStr(list) => doc
                .str(v)
                .is_some_and(|s| list.binary_search_by(|e| e.as_ref().cmp(s)).is_ok()),
            Check::Enum(c) | Check::Const(c) => c.contain(&doc, v),
            Check::Ref(i) => return self.node(*i, v, path, "$ref", d),
            Check::Minimum(m) => bound(&doc, v, Ordering::is_ge, m),
            Check::Maximum(m) => bound(&doc, v, Ordering::is_le, m),
            Check::ExclusiveMinimum(m) => bound(&doc, v, Ordering::is_gt, m),
            Check::ExclusiveMaximum(m) => bound(&doc, v, Ordering::is_lt, m),
            Check::MultipleOf(m) => multiple_of_exact(&doc, v, m),
            Check::MinLength(n) => doc.str(v).is_none_or(|s| char_count_at_least(s, *n)),
            Check::MaxLength(n) => doc.str(v).is_none_or(|s| char_count_at_most(s, *n)),
            Check::Pattern(re) => doc.str(v).is_none_or(|s| re.is_match(s)),
            Check::Format(f) => match kind {
                K_STR => f.is_valid(doc.text(v)),
                K_NUM => f.number_ok(doc.text(v)),
                _ => true,
            },
            Check::MinItems(n) => count(K_ARR).is_none_or(|len| len >= *n),
            Check::MaxItems(n) => count(K_ARR).is_none_or(|len| len <= *n),
            Check::UniqueItems => kind != K_ARR || !has_duplicates(&doc, v),
            Check::MinProperties(n) => count(K_OBJ).is_none_or(|len| len >= *n),
            Check::MaxProperties(n) => count(K_OBJ).is_none_or(|len| len <= *n),
            Check::Items {
                prefix,
                prefix_keyword,
                rest,
                rest_keyword,
            } => {
                let mut ok = true;
                for (i, item) in doc.elements(v).enumerate() {
                    let (schema, kw) = match prefix.get(i) {
                        Some(s) => (*s, *prefix_keyword),
                        None => match rest {
                            Some(s) => (*s, *rest_keyword),
                            None => break,
                        },
                    };
                    if !self.node(schema, item, &path.index(i), kw, d) {
                        ok = false;
                        if !self.collect || self.full() {
                            break;
                        }
                    }
                }
                return ok;
            }
            Check::Contains { schema, min, max } => {
                if kind != K_ARR {
                    return true;
                }
                let mut count = 0u64;
                for (i, item) in doc.elements(v).enumerate() {
                    if self.probe(*schema, item, &path.index(i), d) {
                        count += 1;
                        if max.is_none() && count >= *min {
                            break;
                        }
                        if max.is_some_and(|m| count > m) {
                            break;
                        }
                    }
                }
                if count < *min {
                    let kw = if *min == 1 { "contains" } else { "minContains" };
                    self.fail(path, kw, loc, true);
                    return false;
                }
                if max.is_some_and(|m| count > m) {
                    self.fail(path, "maxContains", loc, true);
                    return false;
                }
                return true;
            }
            Check::Object {
                props,
                patterns,
                additional,
            } => {
                if kind != K_OBJ {
                    return true;
                }
                let mut ok = true;
                if self.collect {
                    for m in members_by_name(&doc, v) {
                        ok &= self.member(props, patterns, *additional, m, path, d);
                        if !ok && self.full() {
                            return false;
                        }
                    }
                } else {
                    for m in doc.members(v) {
                        if !self.member(props, patterns, *additional, m, path, d) {
                            return false;
                        }
                    }
                }
                return ok;
            }
            Check::Required(names) => {
                if kind != K_OBJ {
                    return true;
                }
                let mut ok = true;
                for name in names {
                    if doc.get(v, name).is_none() {
                        ok = false;
                        if !self.collect {
                            return false;
                        }
                        self.fail(&path.key(name), "required", loc, true);
                    }
                }
                return ok;
            }
            Check::PropertyNames(s) => {
                if kind != K_OBJ {
                    return true;
                }
                if !self.collect {
                    return doc.members(v).all(|(name, _)| {
                        self.node(*s, name, &path.key(doc.text(name)), "propertyNames", d)
                    });
                }
                let mut ok = true;
                for (name, _) in members_by_name(&doc, v) {
                    if !self.node(*s, name, &path.key(doc.text(name)), "propertyNames", d) {
                        ok = false;
                        if self.full() {
                            return false;
                        }
                    }
                }
                return ok;
            }
            Check::DependentRequired(deps) => {
                if kind != K_OBJ {
                    return true;
                }
                let mut ok = true;
                for (trigger, names) in deps {
                    if doc.get(v, trigger).is_none() {
                        continue;
                    }
                    for name in names {
                        if doc.get(v, name).is_none() {
                            ok = false;
                            if !self.collect {
                                return false;
                            }
                            self.fail(&path.key(name), "dependentRequired", loc, true);
                        }
                    }
                }
                return ok;
            }
            Check::DependentSchemas(deps) => {
                if kind != K_OBJ {
                    return true;
                }
                let mut ok = true;
                for (trigger, s) in deps {
                    if doc.get(v, trigger).is_some() {
                        ok &= self.node(*s, v, path, "dependentSchemas", d);
                        if !ok && (!self.collect || self.full()) {
                            return false;
                        }
                    }
                }
                return ok;
            }
            Check::AllOf(list) => {
                let mut ok = true;
                for s in list {
                    ok &= self.node(*s, v, path, "allOf", d);
                    if !ok && (!self.collect || self.full()) {
                        return false;
                    }
                }
                return ok;
            }
            Check::AnyOf(list) => list.iter().any(|s| self.probe(*s, v, path, d)),
            Check::OneOf(list) => {
                let mut count = 0;
                for s in list {
                    if self.probe(*s, v, path, d) {
                        count += 1;
                        if count > 1 {
                            break;
                        }
                    }
                }
                count == 1
            }
            Check::Not(s) => !self.probe(*s, v, path, d),
            Check::If {
                cond,
                then,
                otherwise,
            } => {
                let branch = if self.probe(*cond, v, path, d) {
                    then.map(|t| (t, "then"))
                } else {
                    otherwise.map(|e| (e, "else"))
                };
                return match branch {
                    Some((s, kw)) => self.node(s, v, path, kw, d),
                    None => true,
                };
            }
        };
        if !ok {
            self.fail(path, c.keyword(), loc, true);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::super::compile::{Draft, Options};
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        Schema::compile(&v, Options::new(Draft::Draft2020)).unwrap()
    }

    fn errors(s: &Schema, v: Value) -> Vec<(String, &'static str)> {
        match s.validate(&v, 100) {
            Ok(()) => Vec::new(),
            Err((list, _)) => list.into_iter().map(|e| (e.pointer, e.keyword)).collect(),
        }
    }

    #[test]
    fn parse_and_validate_agrees_with_parse_body_then_validate() {
        let s = schema(json!({"type": "object", "required": ["id"],
            "properties": {"id": {"type": "integer", "maximum": 10}, "tags": {"type": "array"}}}));
        let limits = Limits::default();
        for body in [
            &br#"{"id": 3, "tags": ["a"]}"#[..],
            br#"{"id": 11}"#,
            br#"{"tags": {}}"#,
            br#"{"id": 1.5, "tags": 1}"#,
        ] {
            let (value, verdict) = s.parse_and_validate(body, &limits).unwrap();
            let reference = parse_body(body, &limits).unwrap();
            assert_eq!(value, reference);
            let pointers = |v: Verdict| {
                v.map_err(|(l, t)| (l.into_iter().map(|e| e.pointer).collect::<Vec<_>>(), t))
            };
            assert_eq!(
                pointers(verdict),
                pointers(s.validate(&reference, limits.max_errors))
            );
        }
        // Refused before any schema, for the same reasons as parse_body.
        for body in [&br#"{"id": 1, "id": 2}"#[..], br#"{"id": "#, b"\xff"] {
            assert_eq!(
                s.parse_and_validate(body, &limits)
                    .err()
                    .map(|r| r.reason()),
                parse_body(body, &limits).err().map(|r| r.reason()),
                "{body:?}"
            );
            assert!(s.parse_and_validate(body, &limits).is_err());
        }
    }

    fn cases(s: Value, valid: &[Value], invalid: &[Value]) {
        let s = schema(s);
        for v in valid {
            assert!(s.is_valid(v), "should be valid: {v}");
            assert!(s.validate(v, 10).is_ok());
        }
        for v in invalid {
            assert!(!s.is_valid(v), "should be invalid: {v}");
            assert!(s.validate(v, 10).is_err());
        }
    }

    #[test]
    fn type_keyword_distinguishes_integers_from_numbers() {
        cases(
            json!({"type": "integer"}),
            &[json!(1), json!(1.0), json!(-5)],
            &[json!(1.5), json!("1"), json!(null)],
        );
        cases(
            json!({"type": ["string", "null"]}),
            &[json!("a"), json!(null)],
            &[json!(1), json!([])],
        );
    }

    #[test]
    fn enum_and_const_compare_numbers_by_value() {
        cases(
            json!({"enum": ["a", "b"]}),
            &[json!("a")],
            &[json!("c"), json!(1)],
        );
        cases(
            json!({"enum": [1, {"a": 2}]}),
            &[json!(1.0), json!({"a": 2.0})],
            &[json!(2), json!({"a": 3})],
        );
        cases(
            json!({"const": [1, 2]}),
            &[json!([1.0, 2])],
            &[json!([2, 1])],
        );
    }

    #[test]
    fn numeric_bounds_and_multiple_of() {
        cases(
            json!({"minimum": 1, "maximum": 3}),
            &[json!(1), json!(3), json!("x")],
            &[json!(0), json!(3.5)],
        );
        cases(
            json!({"exclusiveMinimum": 1, "exclusiveMaximum": 3}),
            &[json!(2)],
            &[json!(1), json!(3)],
        );
        cases(
            json!({"multipleOf": 0.01}),
            &[json!(19.99), json!(4)],
            &[json!(0.001)],
        );
        cases(
            json!({"multipleOf": 3}),
            &[json!(9), json!(-3)],
            &[json!(10)],
        );
    }

    #[test]
    fn string_lengths_count_code_points() {
        cases(
            json!({"minLength": 2, "maxLength": 3}),
            &[json!("éé"), json!("💩💩💩")],
            &[json!("é"), json!("abcd")],
        );
        cases(
            json!({"pattern": "^[a-z]+$"}),
            &[json!("abc"), json!(5)],
            &[json!("ab1")],
        );
        cases(json!({"pattern": "b"}), &[json!("abc")], &[json!("xyz")]);
    }

    #[test]
    fn arrays_items_prefix_items_contains_and_uniqueness() {
        cases(
            json!({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}, "minItems": 1, "maxItems": 3}),
            &[json!(["a", 1, 2])],
            &[
                json!([]),
                json!([1]),
                json!(["a", "b"]),
                json!(["a", 1, 2, 3]),
            ],
        );
        cases(
            json!({"contains": {"const": 1}, "minContains": 2, "maxContains": 3}),
            &[json!([1, 1, 2])],
            &[json!([1]), json!([1, 1, 1, 1])],
        );
        let many: Vec<Value> = (0..40).map(|i| json!({"id": i})).collect();
        let mut dup = many.clone();
        dup.push(json!({"id": 7.0}));
        cases(
            json!({"uniqueItems": true}),
            &[Value::Array(many), json!([1, "1"])],
            &[Value::Array(dup), json!([1, 1.0])],
        );
    }

    #[test]
    fn objects_properties_patterns_additional_and_required() {
        cases(
            json!({"properties": {"a": {"type": "integer"}}, "patternProperties": {"^x-": {"type": "string"}},
                   "additionalProperties": false, "required": ["a"], "minProperties": 1, "maxProperties": 2}),
            &[json!({"a": 1}), json!({"a": 1, "x-y": "s"})],
            &[
                json!({}),
                json!({"a": "1"}),
                json!({"a": 1, "b": 2}),
                json!({"a": 1, "x-y": 2}),
            ],
        );
        cases(
            json!({"propertyNames": {"maxLength": 3}}),
            &[json!({"abc": 1})],
            &[json!({"abcd": 1})],
        );
        cases(
            json!({"dependentRequired": {"a": ["b"]}}),
            &[json!({"b": 1}), json!({"a": 1, "b": 1})],
            &[json!({"a": 1})],
        );
        cases(
            json!({"dependentSchemas": {"a": {"required": ["b"]}}}),
            &[json!({"a": 1, "b": 1})],
            &[json!({"a": 1})],
        );
    }

    #[test]
    fn combinators_and_conditionals() {
        cases(
            json!({"allOf": [{"minimum": 1}, {"maximum": 2}]}),
            &[json!(1)],
            &[json!(3)],
        );
        cases(
            json!({"anyOf": [{"type": "string"}, {"minimum": 5}]}),
            &[json!("a"), json!(6)],
            &[json!(1)],
        );
        cases(
            json!({"oneOf": [{"minimum": 1}, {"maximum": 5}]}),
            &[json!(0), json!(7)],
            &[json!(3)],
        );
        cases(
            json!({"not": {"type": "null"}}),
            &[json!(1)],
            &[json!(null)],
        );
        cases(
            json!({"if": {"minimum": 10}, "then": {"multipleOf": 2}, "else": {"maximum": 3}}),
            &[json!(12), json!(2)],
            &[json!(11), json!(5)],
        );
        cases(json!(false), &[], &[json!(1)]);
        cases(json!(true), &[json!(1)], &[]);
    }

    #[test]
    fn refs_and_recursion_validate_nested_trees() {
        let s = json!({"$defs": {"node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "additionalProperties": false}}, "$ref": "#/$defs/node"});
        cases(
            s,
            &[json!({"kids": [{"kids": []}]})],
            &[json!({"kids": [{"kid": []}]})],
        );
    }

    #[test]
    fn formats_are_asserted_only_when_enabled() {
        let mut o = Options::new(Draft::Draft2020);
        let v = json!({"format": "uuid"});
        assert!(Schema::compile(&v, o).unwrap().is_valid(&json!("nope")));
        o.formats = true;
        let s = Schema::compile(&v, o).unwrap();
        assert!(!s.is_valid(&json!("nope")));
        assert!(s.is_valid(&json!("2eb8aa08-aa98-11ea-b4aa-73b441d16380")));
    }

    #[test]
    fn nullable_adds_null_in_openapi_3_0() {
        let s = Schema::compile(
            &json!({"type": "string", "nullable": true}),
            Options::new(Draft::OpenApi30),
        )
        .unwrap();
        assert!(s.is_valid(&json!(null)));
        assert!(!s.is_valid(&json!(1)));
    }

    #[test]
    fn violations_give_pointers_and_keywords() {
        let s = schema(
            json!({"properties": {"items": {"items": {"properties": {"id": {"type": "integer"}}, "required": ["name"]}}}, "additionalProperties": false}),
        );
        let errs = errors(
            &s,
            json!({"items": [{"id": "x", "name": "n"}, {"id": 1}], "extra/~": 1}),
        );
        assert_eq!(
            errs,
            vec![
                ("/extra~1~0".to_string(), "additionalProperties"),
                ("/items/0/id".to_string(), "type"),
                ("/items/1/name".to_string(), "required"),
            ]
        );
    }

    #[test]
    fn violations_are_capped_and_marked_truncated() {
        let s = schema(json!({"items": {"type": "string"}}));
        let (list, truncated) = s.validate(&json!([1, 2, 3, 4, 5]), 2).unwrap_err();
        assert_eq!(list.len(), 2);
        assert!(truncated);
    }

    #[test]
    fn no_violation_or_problem_text_contains_the_instance_value() {
        let secret = "s3cr3t-VALUE-4111111111111111";
        let s = schema(
            json!({"properties": {"pw": {"type": "integer", "enum": [1], "pattern": "x", "maxLength": 2, "format": "email"}, "n": {"const": 1}}, "additionalProperties": {"type": "integer"}}),
        );
        let body = json!({"pw": secret, "n": secret, "k": secret});
        let bytes = serde_json::to_vec(&body).unwrap();
        let r = s.validate_bytes(&bytes, &Limits::default()).unwrap_err();
        let text = format!("{r:?} {}", r.problem_body());
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains("s3cr3t"));
    }

    #[test]
    fn body_over_the_size_limit_is_413_before_parsing() {
        let s = schema(json!({}));
        let limits = Limits {
            max_body_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            s.validate_bytes(b"[1,2,3,4,5]", &limits)
                .unwrap_err()
                .status(),
            413
        );
        assert!(s.validate_bytes(b"[1,2,3,45]", &limits).is_ok());
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_before_parsing() {
        let s = schema(json!({}));
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        assert!(s.validate_bytes(b"[[[1]]]", &limits).is_ok());
        assert_eq!(
            s.validate_bytes(b"[[[[1]]]]", &limits).unwrap_err(),
            Rejection::TooDeep { limit: 3 }
        );
        // Brackets inside strings do not count.
        assert!(s.validate_bytes(br#"[["[[[[\"[[["]]"#, &limits).is_ok());
        // Far deeper than serde_json's own limit: refused by the scan, no recursion.
        let deep = "[".repeat(100_000);
        let limits = Limits {
            max_body_bytes: 1 << 20,
            ..Limits::default()
        };
        assert_eq!(
            s.validate_bytes(deep.as_bytes(), &limits)
                .unwrap_err()
                .reason(),
            "too_deep"
        );
    }

    #[test]
    fn unparsable_json_is_reported_by_position_only() {
        let s = schema(json!({}));
        let r = s
            .validate_bytes(b"{\"a\": secretword}", &Limits::default())
            .unwrap_err();
        assert!(matches!(r, Rejection::InvalidJson { line: 1, .. }));
        assert!(!r.problem_body().contains("secretword"));
    }

    fn body_verdict(schema_v: Value, body: &str) -> Result<(), Rejection> {
        schema(schema_v).validate_bytes(body.as_bytes(), &Limits::default())
    }

    #[test]
    fn a_key_repeated_at_any_depth_is_refused_as_duplicate_key() {
        let s = json!({"properties": {"qty": {"minimum": 0}}});
        for body in [
            r#"{"qty":-5,"qty":1}"#,
            r#"{"qty":-5,"q\u0074y":1}"#,
            r#"{"a":{"b":1,"c":{"x":[{"k":1,"\u006b":2}]}}}"#,
            r#"{"\ud83d\ude00":1,"😀":2}"#,
        ] {
            let r = body_verdict(s.clone(), body).unwrap_err();
            assert_eq!(r, Rejection::DuplicateKey, "{body}");
            assert_eq!(r.status(), 400);
            assert_eq!(r.reason(), "duplicate_key");
            assert!(!r.problem_body().contains("qty"));
        }
    }

    #[test]
    fn duplicate_keys_are_found_in_objects_with_many_members_and_after_nested_ones() {
        let dup = |body: &str| {
            let r = parse_body(body.as_bytes(), &Limits::default());
            assert!(matches!(r, Ok(_) | Err(Rejection::DuplicateKey)), "{r:?}");
            r.is_err()
        };
        let many = |extra: &str| {
            let members: Vec<String> = (0..40)
                .map(|i| format!("\"k{i}\":{{\"k{i}\":1}}"))
                .collect();
            format!("{{{}{extra}}}", members.join(","))
        };
        // 40 distinct names (past the linear comparisons), each with a nested object reusing it.
        assert!(!dup(&many("")));
        for extra in [
            r#","k3":1"#,
            r#","k39":1"#,
            r#","k\u0033\u0039":1"#,
            r#","k0":1"#,
        ] {
            assert!(dup(&many(extra)), "{extra}");
        }
        // The outer object's names survive a nested object with many names of its own.
        let nested: Vec<String> = (0..30).map(|i| format!("\"n{i}\":{i}")).collect();
        let body = format!(
            "{{\"a\":1,\"in\":{{{}}},\"b\":2,\"a\":3}}",
            nested.join(",")
        );
        assert!(dup(&body));
        let body = format!("{{\"a\":1,\"in\":{{{}}},\"n0\":2}}", nested.join(","));
        assert!(!dup(&body));
    }

    #[test]
    fn equal_keys_in_different_objects_or_as_values_are_not_duplicates() {
        let s = json!({});
        for body in [
            r#"{"a":{"k":1},"b":{"k":1}}"#,
            r#"{"k":"k","x":["k","k"]}"#,
            r#"[{"k":1},{"k":2}]"#,
            r#"{"a\"b":1,"a\\b":2,"k":{"a\"b":3}}"#,
        ] {
            assert_eq!(body_verdict(s.clone(), body), Ok(()), "{body}");
        }
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_as_invalid_utf8() {
        let s = schema(json!({}));
        for body in [
            &b"{\"a\":\"\xff\"}"[..],
            b"\xfe\xff\x00{\x00}",
            b"\"\xc3\x28\"",
        ] {
            let r = s.validate_bytes(body, &Limits::default()).unwrap_err();
            assert_eq!(r, Rejection::InvalidUtf8);
            assert_eq!(r.reason(), "invalid_utf8");
        }
    }

    #[test]
    fn numeric_keywords_compare_decimals_exactly_as_written() {
        let v = |s: Value, body: &str| body_verdict(s, body).is_ok();
        assert!(!v(json!({"minimum": 1}), "0.99999999999999999"));
        assert!(v(json!({"minimum": 1}), "1.00000000000000000"));
        assert!(!v(json!({"maximum": 10}), "10.0000000000000001"));
        assert!(!v(json!({"exclusiveMaximum": 10}), "10"));
        assert!(v(json!({"exclusiveMaximum": 10}), "9.9999999999999999999"));
        assert!(!v(json!({"exclusiveMinimum": 0}), "0e5"));
        assert!(!v(json!({"maximum": 1e300}), "1e400"));
        assert!(!v(json!({"minimum": -1e300}), "-1e400"));
        assert!(!v(json!({"type": "integer"}), "1.0000000000000001"));
        assert!(v(json!({"type": "integer"}), "1.0"));
        assert!(v(json!({"type": "integer"}), "1e400"));
        assert!(!v(json!({"multipleOf": 1}), "10.0000000000000001"));
        assert!(v(json!({"multipleOf": 0.01}), "19.99"));
        assert!(v(json!({"multipleOf": 0.0001}), "0.0075"));
        assert!(!v(json!({"const": 1}), "1.0000000000000001"));
        assert!(v(json!({"const": 1}), "1.0"));
        assert!(!v(
            json!({"enum": [9007199254740993u64]}),
            "9007199254740992"
        ));
        assert!(v(
            json!({"enum": [9007199254740993u64]}),
            "9.007199254740993e15"
        ));
        assert!(!v(json!({"uniqueItems": true}), "[1, 1.0]"));
        assert!(v(json!({"uniqueItems": true}), "[1, 1.0000000000000001]"));
    }

    #[test]
    fn bignum_cases_behave_as_the_test_suite_optional_bignum_file() {
        // JSON-Schema-Test-Suite `optional/bignum.json` (not in the shared copy): same cases.
        let v = |s: Value, body: &str| body_verdict(s, body).is_ok();
        assert!(v(
            json!({"type": "integer"}),
            "12345678910111213141516171819202122232425262728293031"
        ));
        assert!(v(
            json!({"type": "number"}),
            "98249283749234923498293171823948729348710298301928331"
        ));
        assert!(!v(
            json!({"type": "string"}),
            "98249283749234923498293171823948729348710298301928331"
        ));
        let max = serde_json::from_str::<Value>(r#"{"maximum": 18446744073709551615}"#).unwrap();
        assert!(v(max.clone(), "18446744073709551600"));
        assert!(!v(max, "18446744073709551616"));
        let emax = serde_json::from_str::<Value>(
            r#"{"exclusiveMaximum": 972783798187987123879878123.18878137}"#,
        )
        .unwrap();
        assert!(!v(emax, "972783798187987123879878123.188781371"));
        let min = serde_json::from_str::<Value>(r#"{"minimum": -18446744073709551615}"#).unwrap();
        assert!(v(min.clone(), "-18446744073709551600"));
        assert!(!v(min, "-18446744073709551616"));
        let emin = serde_json::from_str::<Value>(
            r#"{"exclusiveMinimum": -972783798187987123879878123.18878137}"#,
        )
        .unwrap();
        assert!(!v(emin, "-972783798187987123879878123.188781371"));
        // float-overflow.json: 1e308 is a multiple of 0.5 and an integer.
        assert!(v(json!({"type": "integer", "multipleOf": 0.5}), "1e308"));
    }

    #[test]
    fn the_tape_accepts_exactly_the_bodies_the_reference_path_accepts() {
        // Mutations of seed documents: the one-pass tape must agree with parse_body (serde_json,
        // depth pre-scan, UTF-8, duplicate keys) on every one, and hold the same values.
        let seeds = [
            r#"{"a":[1,-0.5e+3,"x\"y\u00e9\ud83d\ude00",true,false,null,{}],"b":{"c":[]},"d":"\u006b"}"#,
            "  [ 0 , 1E5 , \"\\\\/\\b\\f\\n\\r\\t\" , 12.0e-7 ]  ",
            r#"{"é":"😀","k":{"k":1,"\u006b\u0031":2},"x":[[[[]]]]}"#,
            "-0",
            r#""\ud800\udc00 \u0041""#,
        ];
        let alphabet = b"{}[]\",:\\u0123456789-+.eEtrufalsn \n\t\r\x01dDcCx/";
        let limits = Limits {
            max_body_bytes: 1 << 20,
            max_depth: 6,
            max_errors: 10,
        };
        let mut tape = Tape::default();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted_count = 0;
        for seed in seeds {
            for round in 0..4000 {
                let mut body = seed.as_bytes().to_vec();
                for _ in 0..(round % 3) {
                    let at = (next() as usize) % (body.len() + 1);
                    let c = alphabet[(next() as usize) % alphabet.len()];
                    match next() % 3 {
                        0 => body.insert(at, c),
                        1 if at < body.len() => {
                            body.remove(at);
                        }
                        _ if at < body.len() => body[at] = c,
                        _ => body.push(c),
                    }
                }
                let reference = parse_body(&body, &limits);
                let text = std::str::from_utf8(&body);
                let accepted = text.is_ok_and(|t| tape.parse(t, limits.max_depth));
                assert_eq!(
                    accepted,
                    reference.is_ok(),
                    "{:?}: {reference:?}",
                    String::from_utf8_lossy(&body)
                );
                assert!(round > 0 || accepted, "seed {seed}");
                if let (Ok(t), Ok(v)) = (text, reference) {
                    accepted_count += 1;
                    let same = super::super::tape::Consts::new(std::slice::from_ref(&v));
                    assert!(same.contain(&tape.doc(t), 0), "{t}");
                }
            }
        }
        assert!(accepted_count > 1000, "{accepted_count}");
    }
}
