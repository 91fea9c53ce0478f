//! `apiguard policy from-inventory FILE`: a reviewed inventory turned into a starting policy, in
//! report mode: one rule per endpoint (most literal templates first), a JWT requirement where
//! bearer JWTs were seen (a provider per issuer), a JSON Schema from the reconstructed request
//! shape, and a report-only redaction where data classes were seen.
//!
//! Input: discovery batches as the filter sends them (`docs/events.md`: one batch, an array of
//! batches, or one batch per line), each validated against `docs/events.schema.json` with the
//! filter's own schema validator; or an inventory export, an object whose `endpoints` have the
//! same members. The result is compiled with `Policy::from_value` before it is written: a rule the
//! filter would refuse is left out and named.

use crate::args::{print_out, read_input, write_output, Command};
use crate::report::{EXIT_FINDINGS, EXIT_OK, EXIT_USAGE};
use apiguard::config::Policy;
use apiguard::discovery::event::SCHEMA_VERSION;
use apiguard::schema::{Draft, Options, Schema};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

const EVENTS_SCHEMA: &str = include_str!("../../docs/events.schema.json");

/// Detectors the redaction section knows by name: the filter's own list.
use apiguard::redact::BUILTIN_CLASSES as DETECTORS;

pub const HELP: &str = "usage: apiguard policy from-inventory [-o OUT] [--format json|yaml] FILE

Turns a reviewed inventory into a starting policy in report mode: a rule per endpoint, a JWT
requirement (a provider per issuer) where bearer JWTs were seen, a JSON Schema from the request
shape, report-only redaction where data classes were seen. FILE holds discovery batches
(docs/events.md: one batch, an array, or one per line; validated against docs/events.schema.json)
or an inventory export ({\"endpoints\": [...]} with the same members). `-` reads standard input.

  -o OUT      write the policy to OUT (default: standard output)
  --format F  json (default) or yaml

Review the result: provider JWKS URIs are guessed as <issuer>/.well-known/jwks.json and their
clusters (jwks_<provider>) must exist in Envoy (`apiguard render envoy` adds them).

exit: 0 written, 1 the input is not an inventory, 2 usage error";

/// `apiguard policy <subcommand>`: only `from-inventory` today.
pub fn run_policy(argv: &[String]) -> u8 {
    match argv.split_first() {
        Some((sub, rest)) if sub == "from-inventory" => run(rest),
        Some((h, _)) if h == "-h" || h == "--help" => {
            print_out(&format!("{HELP}\n"));
            EXIT_OK
        }
        _ => usage("the subcommand is `from-inventory`"),
    }
}

const COMMAND: Command = Command {
    name: "policy from-inventory",
    help: HELP,
};

fn usage(message: &str) -> u8 {
    COMMAND.usage(message)
}

pub fn run(argv: &[String]) -> u8 {
    let args = match COMMAND.parse(argv, &["-o", "--format"], &[]) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let yaml = match args.value("--format").unwrap_or("json") {
        "json" => false,
        "yaml" => true,
        _ => return usage("--format is json or yaml"),
    };
    let [file] = args.positional.as_slice() else {
        return usage("name one inventory file");
    };
    let bytes = match read_input(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("apiguard policy from-inventory: {e}");
            return EXIT_USAGE;
        }
    };
    let endpoints = match endpoints(&bytes) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("apiguard policy from-inventory: {file}: {e}");
            return EXIT_FINDINGS;
        }
    };
    let (policy, notes) = policy(&endpoints);
    for n in notes {
        eprintln!("apiguard policy from-inventory: note: {n}");
    }
    let text = if yaml {
        crate::yaml_out::to_yaml(&policy)
    } else {
        serde_json::to_string_pretty(&policy).unwrap_or_default() + "\n"
    };
    match write_output(args.value("-o"), &text) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("apiguard policy from-inventory: {e}");
            EXIT_USAGE
        }
    }
}

/// The endpoints of every batch (or of the export), each batch checked against the event schema.
pub fn endpoints(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(items)) => items,
        Ok(v) => vec![v],
        Err(whole) => {
            // One batch per line (what a collector that appends request bodies writes).
            let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
            let mut docs = Vec::new();
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                docs.push(serde_json::from_str(line).map_err(|e| {
                    if n == 0 {
                        format!("not JSON: {whole}")
                    } else {
                        format!("line {}: {e}", n + 1)
                    }
                })?);
            }
            docs
        }
    };
    let schema: Value = serde_json::from_str(EVENTS_SCHEMA).map_err(|e| e.to_string())?;
    let schema = Schema::compile(
        &schema,
        Options {
            draft: Draft::Draft2020,
            formats: true,
            openapi: false,
        },
    )
    .map_err(|e| format!("docs/events.schema.json: {}", e.message))?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        if doc.get("schema_version").is_some() {
            if doc.get("schema_version").and_then(Value::as_u64) != Some(SCHEMA_VERSION) {
                return Err(format!("batch {i}: schema_version is not {SCHEMA_VERSION}"));
            }
            if let Err((violations, _)) = schema.validate(&doc, 3) {
                let first = violations
                    .first()
                    .map(|v| format!("{} ({})", v.pointer, v.keyword))
                    .unwrap_or_default();
                return Err(format!(
                    "batch {i} does not match docs/events.schema.json at {first}"
                ));
            }
        }
        match doc.get("endpoints") {
            Some(Value::Array(e)) => out.extend(e.iter().cloned()),
            _ => return Err(format!("document {i} has no `endpoints` array")),
        }
    }
    Ok(out)
}

/// One endpoint after merging every window that saw it.
#[derive(Default)]
struct Merged {
    auth: BTreeSet<String>,
    issuers: BTreeSet<String>,
    request_classes: BTreeSet<String>,
    response_classes: BTreeSet<String>,
    request_shape: Option<Value>,
    json_body: bool,
}

fn strings(v: Option<&Value>) -> impl Iterator<Item = String> + '_ {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
}

/// The policy, and what was left out (and why).
pub fn policy(endpoints: &[Value]) -> (Value, Vec<String>) {
    let mut notes = Vec::new();
    let mut merged: BTreeMap<(String, String, String), Merged> = BTreeMap::new();
    for e in endpoints {
        let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (host, method, template) = (field("host"), field("method"), field("path_template"));
        if !template.starts_with('/') {
            continue;
        }
        let m = merged.entry((template, method, host)).or_default();
        m.auth.extend(strings(e.get("auth")));
        m.issuers.extend(strings(e.get("jwt_issuers")));
        m.request_classes
            .extend(strings(e.pointer("/data_classes/request")));
        m.response_classes
            .extend(strings(e.pointer("/data_classes/response")));
        m.json_body |= strings(e.get("request_content_types"))
            .any(|t| t == "application/json" || t.ends_with("+json"));
        if m.request_shape.is_none() {
            m.request_shape = e.get("request_shape").filter(|s| s.is_object()).cloned();
        }
    }

    // A provider per issuer that was seen with bearer JWTs.
    let mut providers = Map::new();
    let mut provider_of: BTreeMap<String, String> = BTreeMap::new();
    for m in merged.values().filter(|m| m.auth.contains("bearer_jwt")) {
        for issuer in &m.issuers {
            if provider_of.contains_key(issuer) {
                continue;
            }
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                notes.push(format!(
                    "issuer {issuer:?} is not a URL: no provider made for it (add one by hand)"
                ));
                continue;
            }
            let name = format!("idp{}", provider_of.len());
            providers.insert(
                name.clone(),
                json!({
                    "issuer": issuer,
                    "remote_jwks": {
                        "cluster": format!("jwks_{name}"),
                        "uri": format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
                    },
                }),
            );
            provider_of.insert(issuer.clone(), name);
        }
    }

    // Most literal templates first: the first rule that matches decides.
    let mut keys: Vec<&(String, String, String)> = merged.keys().collect();
    keys.sort_by_key(|(template, method, host)| {
        let segs: Vec<(bool, String)> = template
            .split('/')
            .map(|s| (s.starts_with('{') || s.contains('*'), s.to_string()))
            .collect();
        (segs, method.clone(), host.clone())
    });

    let mut schemas = Map::new();
    let mut redaction = Map::new();
    let mut rules = Vec::new();
    for key in keys {
        let (template, method, host) = key;
        let m = &merged[key];
        let mut matcher = json!({"template": template});
        if method != "OTHER" && !method.is_empty() {
            matcher["methods"] = json!([method]);
        }
        if !host.is_empty() && !host.starts_with('{') {
            matcher["hosts"] = json!([host]);
        }
        let name = format!("{} {}", method, template);
        let mut rule = json!({"name": name, "match": matcher});
        if m.auth.contains("bearer_jwt") {
            let names: Vec<&String> = m
                .issuers
                .iter()
                .filter_map(|i| provider_of.get(i))
                .collect();
            match names.as_slice() {
                [] => notes.push(format!(
                    "{name}: bearer JWTs seen but no issuer known: no requirement made"
                )),
                [one] => rule["jwt"] = json!({"provider": one}),
                many => {
                    rule["jwt"] = json!({"any": many.iter().map(|p| json!({"provider": p})).collect::<Vec<_>>()})
                }
            }
        }
        if let (Some(shape), true) = (&m.request_shape, m.json_body) {
            if matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
                let schema_name = format!("{} {}", method, template);
                schemas.insert(
                    schema_name.clone(),
                    json!({"json_schema": shape_schema(shape), "body_required": false}),
                );
                rule["schema"] = json!(schema_name);
            }
        }
        if !m.request_classes.is_empty() || !m.response_classes.is_empty() {
            let classes: BTreeSet<&String> = m
                .request_classes
                .iter()
                .chain(&m.response_classes)
                .collect();
            let detectors: Vec<&str> = classes
                .iter()
                .filter_map(|c| DETECTORS.iter().find(|d| **d == c.as_str()).copied())
                .collect();
            let others: Vec<&str> = classes
                .iter()
                .map(|c| c.as_str())
                .filter(|c| !DETECTORS.contains(c))
                .collect();
            if !others.is_empty() {
                notes.push(format!("{name}: data classes {others:?} have no built-in detector: add custom detectors or fields"));
            }
            let mut bodies = Vec::new();
            if !m.request_classes.is_empty() {
                bodies.push("request");
            }
            if !m.response_classes.is_empty() {
                bodies.push("response");
            }
            let policy_name = format!("seen_{}_{}", detectors.join("_"), bodies.join("_"));
            redaction.insert(
                policy_name.clone(),
                json!({"detectors": detectors, "action": "report", "bodies": bodies}),
            );
            rule["redaction"] = json!(policy_name);
        }
        rules.push(rule);
    }

    let mut policy = json!({
        "name": "apiguard",
        // A starting point: every decision is counted and logged, nothing is refused. Requests for
        // endpoints the inventory did not see count as denied (report_only_denied).
        "mode": "report",
        "on_no_match": "deny",
    });
    if !providers.is_empty() {
        policy["jwt_providers"] = Value::Object(providers);
    }
    if !schemas.is_empty() {
        policy["schemas"] = Value::Object(schemas);
    }
    if !redaction.is_empty() {
        policy["redaction"] = Value::Object(redaction);
    }
    policy["rules"] = Value::Array(rules);

    // Whatever the filter refuses is left out, by name, until the policy compiles.
    for _ in 0..1000 {
        let Err(e) = Policy::from_value(&policy) else {
            break;
        };
        let pointer = crate::locate::pointer_of(&e.path, &policy);
        let index = pointer
            .strip_prefix("/rules/")
            .and_then(|r| r.split('/').next())
            .and_then(|i| i.parse::<usize>().ok());
        let removed = match (index, policy.get_mut("rules").and_then(Value::as_array_mut)) {
            (Some(i), Some(rules)) if i < rules.len() => Some(rules.remove(i)),
            _ => None,
        };
        match removed {
            Some(rule) => notes.push(format!(
                "left out rule {:?}: {}",
                rule.get("name").and_then(Value::as_str).unwrap_or(""),
                e.message
            )),
            None => {
                // A section the rules refer to: drop the reference's section entry is not
                // meaningful here; report and stop (the output then does not compile).
                notes.push(format!(
                    "the filter refuses the generated policy at {}: {}",
                    e.path, e.message
                ));
                break;
            }
        }
    }
    (policy, notes)
}

/// A discovery shape as a JSON Schema: `type` lists, `properties` and `items`; placeholder member
/// names (`{id}`, `{email}`: an object used as a map) leave the object open.
fn shape_schema(shape: &Value) -> Value {
    let mut out = Map::new();
    if let Some(t) = shape.get("type") {
        out.insert("type".into(), t.clone());
    }
    if let Some(Value::Object(props)) = shape.get("properties") {
        if !props.keys().any(|k| k.starts_with('{')) {
            let converted: Map<String, Value> = props
                .iter()
                .map(|(k, v)| (k.clone(), shape_schema(v)))
                .collect();
            out.insert("properties".into(), Value::Object(converted));
        }
    }
    if let Some(items) = shape.get("items").filter(|i| i.is_object()) {
        out.insert("items".into(), shape_schema(items));
    }
    Value::Object(out)
}
