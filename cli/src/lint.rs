//! `apiguard lint SPEC`: the security posture of an OpenAPI contract, each rule mapped to the
//! OWASP API Security Top 10 2023 (`rules.rs` has the why and the fix of each).
//!
//! The document is read as `openapi import` reads it (YAML or JSON, `$ref` across files), then
//! walked once per concern. Rules can be turned off or re-levelled (`--disable`, `--config`), and
//! suppressed inline with `x-apiguard-ignore` on any object: a list of rule ids, or a map from rule
//! id to the reason, which silences those rules for that object and everything under it.

use crate::args::{print_out, Command};
use crate::openapi_import::{self, Imported};
use crate::report::{self, Finding, EXIT_FINDINGS, EXIT_OK, EXIT_USAGE};
use crate::rules::{self, Level};
use crate::sensitive;
use crate::source::escape_token;
use serde_json::Value;
use std::collections::BTreeSet;

pub const HELP: &str = "usage: apiguard lint [--format text|json|sarif] [--disable RULE]... [--config FILE]
                     [--fail-on error|warning|note|none] SPEC

The security posture of an OpenAPI 3.0/3.1 contract (YAML or JSON, $ref across files), each rule
mapped to the OWASP API Security Top 10 2023 (docs/cli.md lists them with why and how to fix).

  --format F     text (default), json or sarif (SARIF 2.1.0 for code scanning)
  --disable RULE do not run RULE (e.g. oas/missing-429); may repeat
  --config FILE  JSON or YAML: {\"rules\": {\"oas/missing-429\": \"off\" | \"note\" | \"warning\" | \"error\"}}
  --fail-on L    the lowest level that fails the run (default: warning)

Inline suppression: `x-apiguard-ignore: [oas/missing-429]` (or a map from rule id to the reason)
on any object silences those rules for it and everything under it; `all` silences every rule.

exit: 0 no finding at or above --fail-on, 1 findings, 2 usage error or unreadable SPEC";

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

pub fn run(argv: &[String]) -> u8 {
    let args = match COMMAND.parse(
        argv,
        &["--format", "--disable", "--config", "--fail-on"],
        &[],
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let format = match COMMAND.format(&args) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let fail_on = match args.value("--fail-on").unwrap_or("warning") {
        "none" => None,
        l => match Level::parse(l) {
            Some(l) => Some(l),
            None => return usage("--fail-on is error, warning, note or none"),
        },
    };
    let [spec] = args.positional.as_slice() else {
        return usage("name exactly one OpenAPI document");
    };
    let mut levels: Vec<(String, Option<Level>)> = args
        .values("--disable")
        .into_iter()
        .map(|r| (r.to_string(), None))
        .collect();
    if let Some(config) = args.value("--config") {
        match read_config(config) {
            Ok(mut l) => levels.append(&mut l),
            Err(e) => return usage(&e),
        }
    }
    for (id, _) in &levels {
        if rules::find(id).is_none() {
            return usage(&format!("unknown rule `{id}`"));
        }
    }
    let imported = match openapi_import::import(spec) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("apiguard lint: {e}");
            return EXIT_USAGE;
        }
    };
    let findings = lint(&imported, &levels);
    let summary = report::summary(&findings);
    print_out(&report::render(format, &findings, &summary));
    match fail_on {
        Some(l) if findings.iter().any(|f| f.level >= l) => EXIT_FINDINGS,
        _ => EXIT_OK,
    }
}

const COMMAND: Command = Command {
    name: "lint",
    help: HELP,
};

fn usage(message: &str) -> u8 {
    COMMAND.usage(message)
}

/// `{"rules": {"id": "off" | level}}` from a JSON or YAML file.
fn read_config(path: &str) -> Result<Vec<(String, Option<Level>)>, String> {
    let doc = openapi_import::read_document(std::path::Path::new(path))?;
    let Some(Value::Object(rules)) = doc.value.get("rules") else {
        return Err(format!("{path}: expected {{\"rules\": {{...}}}}"));
    };
    rules
        .iter()
        .map(|(id, v)| match v.as_str() {
            Some("off") => Ok((id.clone(), None)),
            Some(l) => Level::parse(l)
                .map(|l| (id.clone(), Some(l)))
                .ok_or_else(|| format!("{path}: rules.{id}: off, note, warning or error")),
            None => Err(format!("{path}: rules.{id}: off, note, warning or error")),
        })
        .collect()
}

/// Every finding, levels applied and inline suppressions removed, in document order of pointers.
pub fn lint(imported: &Imported, levels: &[(String, Option<Level>)]) -> Vec<Finding> {
    let doc = &imported.document;
    let mut raw: Vec<(&'static str, String, String)> = Vec::new();
    let l = Linter { doc };
    l.security(&mut raw);
    l.servers(&mut raw);
    l.query_credentials(&mut raw);
    l.bounds(&mut raw);
    l.responses(&mut raw);
    l.versions(&mut raw);
    let mut ignored = Vec::new();
    ignores(doc, String::new(), &mut ignored);
    let mut seen = BTreeSet::new();
    let mut findings: Vec<Finding> = Vec::new();
    for (rule, pointer, message) in raw {
        if !seen.insert((rule, pointer.clone())) {
            continue;
        }
        let level = match levels.iter().rev().find(|(id, _)| id == rule) {
            Some((_, None)) => continue,
            Some((_, Some(l))) => Some(*l),
            None => None,
        };
        let suppressed = ignored.iter().any(|(at, ids): &(String, Vec<String>)| {
            (pointer == *at || pointer.starts_with(&format!("{at}/")))
                && ids.iter().any(|i| i == rule || i == "all")
        });
        if suppressed {
            continue;
        }
        let (file, pos) = imported.locate(&pointer);
        let mut f = Finding::new(rule, &file, format!("#{pointer}"), message).at(pos);
        if let Some(l) = level {
            f.level = l;
        }
        findings.push(f);
    }
    findings.sort_by(|a, b| (&a.json_path, a.rule).cmp(&(&b.json_path, b.rule)));
    findings
}

/// Every `x-apiguard-ignore` with the pointer of the object that carries it.
fn ignores(v: &Value, at: String, out: &mut Vec<(String, Vec<String>)>) {
    match v {
        Value::Object(map) => {
            match map.get("x-apiguard-ignore") {
                Some(Value::Array(ids)) => out.push((
                    at.clone(),
                    ids.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                )),
                Some(Value::Object(ids)) => out.push((at.clone(), ids.keys().cloned().collect())),
                Some(Value::String(id)) => out.push((at.clone(), vec![id.clone()])),
                _ => {}
            }
            for (k, child) in map {
                ignores(child, format!("{at}/{}", escape_token(k)), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                ignores(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

struct Linter<'d> {
    doc: &'d Value,
}

struct Op<'d> {
    path: &'d str,
    method: &'d str,
    pointer: String,
    op: &'d Value,
    item: &'d Value,
}

impl<'d> Linter<'d> {
    fn operations(&self) -> Vec<Op<'d>> {
        let mut out = Vec::new();
        if let Some(Value::Object(paths)) = self.doc.get("paths") {
            for (path, item) in paths {
                for m in METHODS {
                    if let Some(op) = item.get(m) {
                        out.push(Op {
                            path,
                            method: m,
                            pointer: format!("/paths/{}/{m}", escape_token(path)),
                            op,
                            item,
                        });
                    }
                }
            }
        }
        out
    }

    /// A local `$ref` followed (to a bounded depth), with the pointer of the value reached.
    fn deref(&self, v: &'d Value, pointer: String) -> (&'d Value, String) {
        let (mut v, mut pointer) = (v, pointer);
        for _ in 0..16 {
            match v
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
            {
                Some(target) => match self.doc.pointer(target) {
                    Some(t) => {
                        v = t;
                        pointer = target.to_string();
                    }
                    None => break,
                },
                None => break,
            }
        }
        (v, pointer)
    }

    /// The operation's parameters, its path item's first (`$ref`s followed), with their pointers.
    fn parameters(&self, op: &Op<'d>) -> Vec<(&'d Value, String)> {
        let item_at = op
            .pointer
            .rsplit_once('/')
            .map_or(String::new(), |(p, _)| p.to_string());
        let mut out = Vec::new();
        for (params, at) in [
            (op.item.get("parameters"), item_at),
            (op.op.get("parameters"), op.pointer.clone()),
        ] {
            for (i, p) in params
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                out.push(self.deref(p, format!("{at}/parameters/{i}")));
            }
        }
        out
    }

    /// The requirements that apply to an operation (its own, else the document's).
    fn requirements(&self, op: &Op<'d>) -> Option<&'d Vec<Value>> {
        op.op
            .get("security")
            .or_else(|| self.doc.get("security"))
            .and_then(Value::as_array)
    }

    fn security(&self, out: &mut Vec<(&'static str, String, String)>) {
        for op in self.operations() {
            let reqs = self.requirements(&op);
            // `[]` or a list with only `{}` (anonymous allowed): no authentication.
            let secured = reqs.is_some_and(|r| {
                !r.is_empty()
                    && r.iter()
                        .all(|req| req.as_object().is_some_and(|o| !o.is_empty()))
            });
            let name = format!("{} {}", op.method.to_ascii_uppercase(), op.path);
            if !secured {
                out.push((
                    "oas/operation-without-security",
                    op.pointer.clone(),
                    format!("{name} requires no authentication (no security requirement, or an empty one)"),
                ));
                continue;
            }
            // Objects addressed by an id in the path, and no scope in any requirement.
            let has_id = op
                .path
                .split('/')
                .any(|seg| seg.starts_with('{') && seg.ends_with('}'));
            let scoped = reqs.is_some_and(|r| {
                r.iter().all(|req| {
                    req.as_object().is_some_and(|o| {
                        o.values()
                            .any(|scopes| scopes.as_array().is_some_and(|s| !s.is_empty()))
                    })
                })
            });
            if has_id && !scoped {
                out.push((
                    "oas/id-in-path-without-scope",
                    op.pointer.clone(),
                    format!("{name} addresses an object by path id and some security requirement grants it without a scope: any authenticated caller can try other ids"),
                ));
            }
        }
    }

    fn servers(&self, out: &mut Vec<(&'static str, String, String)>) {
        let mut lists: Vec<(String, &Value)> = Vec::new();
        if let Some(s) = self.doc.get("servers") {
            lists.push(("/servers".into(), s));
        }
        if let Some(Value::Object(paths)) = self.doc.get("paths") {
            for (path, item) in paths {
                let base = format!("/paths/{}", escape_token(path));
                if let Some(s) = item.get("servers") {
                    lists.push((format!("{base}/servers"), s));
                }
                for m in METHODS {
                    if let Some(s) = item.get(m).and_then(|op| op.get("servers")) {
                        lists.push((format!("{base}/{m}/servers"), s));
                    }
                }
            }
        }
        for (at, list) in lists {
            for (i, server) in list.as_array().into_iter().flatten().enumerate() {
                let url = server.get("url").and_then(Value::as_str).unwrap_or("");
                if url.to_ascii_lowercase().starts_with("http://") {
                    out.push((
                        "oas/http-server",
                        format!("{at}/{i}/url"),
                        format!("server `{url}` is plain http: traffic can be read and changed on the way"),
                    ));
                }
            }
        }
    }

    fn query_credentials(&self, out: &mut Vec<(&'static str, String, String)>) {
        if let Some(Value::Object(schemes)) = self.doc.pointer("/components/securitySchemes") {
            for (name, scheme) in schemes {
                if scheme.get("type").and_then(Value::as_str) == Some("apiKey")
                    && scheme.get("in").and_then(Value::as_str) == Some("query")
                {
                    out.push((
                        "oas/credential-in-query",
                        format!("/components/securitySchemes/{}/in", escape_token(name)),
                        format!("security scheme `{name}` takes the API key from the query string, where logs and Referer headers keep it"),
                    ));
                }
            }
        }
        for op in self.operations() {
            for (p, pointer) in self.parameters(&op) {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                let credential = matches!(sensitive::class_of(name), Some("token" | "password"))
                    || matches!(
                        name.to_ascii_lowercase().as_str(),
                        "key"
                            | "api_key"
                            | "apikey"
                            | "auth"
                            | "access_token"
                            | "sig"
                            | "signature"
                    );
                if p.get("in").and_then(Value::as_str) == Some("query") && credential {
                    out.push((
                            "oas/credential-in-query",
                            pointer,
                            format!("query parameter `{name}` looks like a credential: URLs are logged and leak through Referer headers"),
                        ));
                }
            }
        }
    }

    /// Schemas that requests carry: parameters and request bodies, `$ref`s followed.
    fn bounds(&self, out: &mut Vec<(&'static str, String, String)>) {
        let mut roots: Vec<(&'d Value, String, bool)> = Vec::new();
        for op in self.operations() {
            for (p, pointer) in self.parameters(&op) {
                if let Some(s) = p.get("schema") {
                    roots.push((s, format!("{pointer}/schema"), false));
                }
            }
            if let Some(body) = op.op.get("requestBody") {
                let (body, pointer) = self.deref(body, format!("{}/requestBody", op.pointer));
                if let Some(Value::Object(content)) = body.get("content") {
                    for (media, m) in content {
                        if let Some(s) = m.get("schema") {
                            roots.push((
                                s,
                                format!("{pointer}/content/{}/schema", escape_token(media)),
                                true,
                            ));
                        }
                    }
                }
            }
        }
        let mut visited = BTreeSet::new();
        for (schema, pointer, body) in roots {
            self.schema(schema, pointer, body, &mut visited, out, 0);
        }
    }

    fn schema(
        &self,
        s: &'d Value,
        pointer: String,
        body: bool,
        visited: &mut BTreeSet<(String, bool)>,
        out: &mut Vec<(&'static str, String, String)>,
        depth: usize,
    ) {
        let (s, pointer) = self.deref(s, pointer);
        if depth > 64 || !visited.insert((pointer.clone(), body)) {
            return;
        }
        let Value::Object(map) = s else { return };
        let types: Vec<&str> = match map.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let has = |k: &str| map.contains_key(k);
        let enumerated = has("enum") || has("const");
        // Formats the filter asserts have a bounded form of their own.
        let bounded_format = matches!(
            map.get("format").and_then(Value::as_str),
            Some("date" | "date-time" | "uuid" | "ipv4" | "ipv6")
        );
        if types.contains(&"string") && !enumerated && !has("maxLength") && !bounded_format {
            out.push((
                "oas/string-without-max-length",
                pointer.clone(),
                "a string in requests with no maxLength: any length is accepted".into(),
            ));
        }
        if types.contains(&"array") && !has("maxItems") {
            out.push((
                "oas/array-without-max-items",
                pointer.clone(),
                "an array in requests with no maxItems: any number of items is accepted".into(),
            ));
        }
        if types.contains(&"integer") && !enumerated {
            let low = has("minimum") || has("exclusiveMinimum");
            let high = has("maximum") || has("exclusiveMaximum");
            if !(low && high) {
                let missing = match (low, high) {
                    (false, false) => "minimum and maximum",
                    (false, true) => "minimum",
                    _ => "maximum",
                };
                out.push((
                    "oas/integer-without-bounds",
                    pointer.clone(),
                    format!("an integer in requests with no {missing}"),
                ));
            }
        }
        let is_object = types.contains(&"object") || has("properties");
        if body && is_object && has("properties") {
            let open = match map.get("additionalProperties") {
                None | Some(Value::Bool(true)) => {
                    map.get("unevaluatedProperties") != Some(&Value::Bool(false))
                }
                _ => false,
            };
            if open {
                out.push((
                    "oas/additional-properties-open",
                    pointer.clone(),
                    "a request body object accepts undeclared properties (additionalProperties is not false): mass assignment".into(),
                ));
            }
        }
        for (k, v) in map {
            let child = format!("{pointer}/{}", escape_token(k));
            match k.as_str() {
                "properties" | "patternProperties" => {
                    if let Value::Object(props) = v {
                        for (name, p) in props {
                            self.schema(
                                p,
                                format!("{child}/{}", escape_token(name)),
                                body,
                                visited,
                                out,
                                depth + 1,
                            );
                        }
                    }
                }
                "items" | "additionalProperties" | "not" | "contains" if v.is_object() => {
                    self.schema(v, child, body, visited, out, depth + 1);
                }
                "allOf" | "anyOf" | "oneOf" | "prefixItems" => {
                    for (i, sub) in v.as_array().into_iter().flatten().enumerate() {
                        self.schema(sub, format!("{child}/{i}"), body, visited, out, depth + 1);
                    }
                }
                _ => {}
            }
        }
    }

    fn responses(&self, out: &mut Vec<(&'static str, String, String)>) {
        let mut visited = BTreeSet::new();
        for op in self.operations() {
            let name = format!("{} {}", op.method.to_ascii_uppercase(), op.path);
            let Some(Value::Object(responses)) = op.op.get("responses") else {
                continue;
            };
            let declared =
                |code: &str| responses.contains_key(code) || responses.contains_key("4XX");
            let secured = self.requirements(&op).is_some_and(|r| {
                !r.is_empty()
                    && r.iter()
                        .all(|req| req.as_object().is_some_and(|o| !o.is_empty()))
            });
            if secured {
                let missing: Vec<&str> = ["401", "403"]
                    .into_iter()
                    .filter(|c| !declared(c))
                    .collect();
                if !missing.is_empty() {
                    out.push((
                        "oas/missing-auth-responses",
                        format!("{}/responses", op.pointer),
                        format!(
                            "{name} is secured but declares no {} response",
                            missing.join(" or ")
                        ),
                    ));
                }
            }
            if !declared("429") {
                out.push((
                    "oas/missing-429",
                    format!("{}/responses", op.pointer),
                    format!("{name} declares no 429 response: no rate limit is documented"),
                ));
            }
            for (code, r) in responses {
                let (r, at) = self.deref(
                    r,
                    format!("{}/responses/{}", op.pointer, escape_token(code)),
                );
                let Some(Value::Object(content)) = r.get("content") else {
                    continue;
                };
                for (media, m) in content {
                    if let Some(s) = m.get("schema") {
                        let at = format!("{at}/content/{}/schema", escape_token(media));
                        self.sensitive(s, at, &mut visited, out, 0);
                    }
                }
            }
        }
    }

    fn sensitive(
        &self,
        s: &'d Value,
        pointer: String,
        visited: &mut BTreeSet<String>,
        out: &mut Vec<(&'static str, String, String)>,
        depth: usize,
    ) {
        let (s, pointer) = self.deref(s, pointer);
        if depth > 64 || !visited.insert(pointer.clone()) {
            return;
        }
        let Value::Object(map) = s else { return };
        for (k, v) in map {
            let child = format!("{pointer}/{}", escape_token(k));
            match k.as_str() {
                "properties" => {
                    for (name, p) in v.as_object().into_iter().flatten() {
                        let at = format!("{child}/{}", escape_token(name));
                        if let Some(class) = sensitive::class_of(name) {
                            out.push((
                                "oas/sensitive-field-in-response",
                                at.clone(),
                                format!("responses carry `{name}`, which looks like {class} data"),
                            ));
                        }
                        self.sensitive(p, at, visited, out, depth + 1);
                    }
                }
                "items" | "additionalProperties" if v.is_object() => {
                    self.sensitive(v, child, visited, out, depth + 1);
                }
                "allOf" | "anyOf" | "oneOf" => {
                    for (i, sub) in v.as_array().into_iter().flatten().enumerate() {
                        self.sensitive(sub, format!("{child}/{i}"), visited, out, depth + 1);
                    }
                }
                _ => {}
            }
        }
    }

    /// `/v1/...` and `/v2/...` side by side: the older one's operations should be deprecated.
    fn versions(&self, out: &mut Vec<(&'static str, String, String)>) {
        let version_of = |seg: &str| -> Option<u64> {
            seg.strip_prefix(['v', 'V']).and_then(|n| n.parse().ok())
        };
        let ops = self.operations();
        for op in &ops {
            let segs: Vec<&str> = op.path.split('/').collect();
            let Some((i, v)) = segs
                .iter()
                .enumerate()
                .find_map(|(i, s)| version_of(s).map(|v| (i, v)))
            else {
                continue;
            };
            let newer = ops
                .iter()
                .filter_map(|o| {
                    let other: Vec<&str> = o.path.split('/').collect();
                    let ov = other.get(i).and_then(|s| version_of(s))?;
                    (ov > v
                        && other.len() == segs.len()
                        && other
                            .iter()
                            .zip(&segs)
                            .enumerate()
                            .all(|(j, (a, b))| j == i || a == b))
                    .then_some(ov)
                })
                .max();
            let deprecated = op.op.get("deprecated") == Some(&Value::Bool(true));
            if let (Some(newer), false) = (newer, deprecated) {
                out.push((
                    "oas/version-without-deprecation",
                    op.pointer.clone(),
                    format!(
                        "{} {} is v{v} and v{newer} of it exists, but it is not deprecated",
                        op.method.to_ascii_uppercase(),
                        op.path
                    ),
                ));
            }
        }
    }
}
