//! `apiguard check POLICY...`: compile each policy with the function `on_configure` calls
//! (`Policy::from_plugin_configuration`), print every refusal with its JSON path, file, line and
//! column and a hint, then warn about valid but risky choices.

use crate::args::{print_out, read_input, Command};
use crate::locate::pointer_of;
use crate::policy_source::{self, Found, Hcm};
use crate::report::{self, Finding, EXIT_FINDINGS, EXIT_OK, EXIT_USAGE};
use crate::rules::Level;
use crate::sensitive;
use crate::source::{escape_token, Document};
use apiguard::config::{Mode, Policy};
use serde_json::Value;

pub const HELP: &str =
    "usage: apiguard check [--format text|json|sarif] [--strict] [--allow RULE]... POLICY...

Compiles each policy exactly as the filter's on_configure does and reports every refusal with its
JSON path, file, line and column, then warns about valid but risky choices.

POLICY is a policy file (JSON, or YAML converted to JSON), an Envoy bootstrap (every apiguard
envoy.filters.http.wasm filter in it is checked, with its connection manager), or Kubernetes
manifests (the pluginConfig of every WasmPlugin). `-` reads standard input.

  --format F    text (default), json or sarif (SARIF 2.1.0 for code scanning)
  --strict      warnings fail the check too (exit 1)
  --allow RULE  do not report RULE (e.g. policy/report-mode); may repeat

exit: 0 every policy compiles (warnings allowed unless --strict), 1 a policy is refused
(or a warning under --strict), 2 usage error or unreadable file";

pub fn run(argv: &[String]) -> u8 {
    let args = match COMMAND.parse(argv, &["--format", "--allow"], &["--strict"]) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let format = match COMMAND.format(&args) {
        Ok(f) => f,
        Err(code) => return code,
    };
    if args.positional.is_empty() {
        return usage("name at least one policy file");
    }
    let allowed = args.values("--allow");
    let mut findings = Vec::new();
    for file in &args.positional {
        let bytes = match read_input(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("apiguard check: {e}");
                return EXIT_USAGE;
            }
        };
        findings.extend(check_file(file, &bytes));
    }
    findings.retain(|f| !allowed.contains(&f.rule));
    let summary = report::summary(&findings);
    print_out(&report::render(format, &findings, &summary));
    let threshold = if args.switch("--strict") {
        Level::Warning
    } else {
        Level::Error
    };
    if findings.iter().any(|f| f.level >= threshold) {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    }
}

const COMMAND: Command = Command {
    name: "check",
    help: HELP,
};

fn usage(message: &str) -> u8 {
    COMMAND.usage(message)
}

/// Every finding for one file.
pub fn check_file(file: &str, bytes: &[u8]) -> Vec<Finding> {
    let found = match policy_source::find(file, bytes) {
        Ok(f) => f,
        Err(e) => {
            // The filter would refuse the same bytes at `$` (or never see them, for a bootstrap).
            return vec![Finding::new("syntax", file, "$".into(), e.message).at(Some(e.pos))];
        }
    };
    if found.is_empty() {
        return vec![Finding::new(
            "policy/not-found",
            file,
            "$".into(),
            "no apiguard filter configuration in this file".into(),
        )];
    }
    found.iter().flat_map(|f| check_one(file, f)).collect()
}

/// One policy: the filter's verdict, then the warnings.
pub fn check_one(file: &str, found: &Found) -> Vec<Finding> {
    let prefix = |path: &str| -> String {
        if found.at.is_empty() {
            path.to_string()
        } else {
            format!("{}#{path}", found.at)
        }
    };
    match Policy::from_plugin_configuration(&found.bytes) {
        Err(e) => {
            let (pos, rule) = match (&found.syntax, &found.doc) {
                (Some(s), _) => (Some(s.pos), "syntax"),
                (None, Some(doc)) => (
                    doc.position(&pointer_of(&e.path, &doc.value))
                        .or(found.start),
                    "policy/invalid",
                ),
                (None, None) => (found.start, "policy/invalid"),
            };
            let rule = if e.message.starts_with("not valid JSON") {
                "syntax"
            } else {
                rule
            };
            let mut finding = Finding::new(rule, file, prefix(&e.path), e.message.clone()).at(pos);
            if let Some(h) = hint(&e.path, &e.message) {
                finding = finding.hint(h);
            }
            let mut out = vec![finding];
            // The filter stops at its first refusal; the rest of the document is compiled again
            // without the part at fault, so that one run shows every independent error.
            if let (Some(doc), "policy/invalid") = (&found.doc, rule) {
                for e in further_errors(&doc.value, &e, MAX_FURTHER) {
                    let pos = doc
                        .position(&pointer_of(&e.path, &doc.value))
                        .or(found.start);
                    let mut f =
                        Finding::new("policy/invalid", file, prefix(&e.path), e.message.clone())
                            .at(pos);
                    if let Some(h) = hint(&e.path, &e.message) {
                        f = f.hint(h);
                    }
                    out.push(f);
                }
            }
            out
        }
        Ok(policy) => {
            let Some(doc) = &found.doc else {
                return Vec::new();
            };
            let duplicates = doc.duplicates.iter().map(|(pointer, pos)| {
                Finding::new(
                    "policy/duplicate-key",
                    file,
                    prefix(&crate::locate::path_of(pointer)),
                    "this member is written twice in its object; the filter keeps this one and ignores the earlier".into(),
                )
                .hint("remove one of them")
                .at(Some(*pos))
            });
            warnings(&policy, doc, found.hcm)
                .into_iter()
                .map(|(rule, pointer, message, hint)| {
                    Finding::new(
                        rule,
                        file,
                        prefix(&crate::locate::path_of(&pointer)),
                        message,
                    )
                    .hint(hint)
                    .at(doc.position(&pointer).or(found.start))
                })
                .chain(duplicates)
                .collect()
        }
    }
}

/// Most errors reported after the first, per policy.
const MAX_FURTHER: usize = 50;

/// The errors after `first`: the value at fault is set aside (a rule becomes a rule that guards
/// nothing, a named section entry or a top-level member is removed) and the document compiled again
/// by the filter, until it compiles. A rule that only fails because it names a removed entry is a
/// consequence of an error already reported, and is not reported.
fn further_errors(
    value: &Value,
    first: &apiguard::reader::ConfigError,
    max: usize,
) -> Vec<apiguard::reader::ConfigError> {
    const SECTIONS: [&str; 5] = [
        "jwt_providers",
        "api_keys",
        "rate_limits",
        "schemas",
        "redaction",
    ];
    let mut v = value.clone();
    let mut removed: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    let mut e = first.clone();
    for _ in 0..max {
        let pointer = pointer_of(&e.path, &v);
        let tokens: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        let Value::Object(top) = &mut v else { break };
        match tokens.as_slice() {
            [rules, i, ..] if rules == "rules" => {
                let Some(slot) = top
                    .get_mut("rules")
                    .and_then(Value::as_array_mut)
                    .and_then(|r| i.parse::<usize>().ok().and_then(|i| r.get_mut(i)))
                else {
                    break;
                };
                *slot = serde_json::json!({"match": {"prefix": "/"}});
            }
            [section, name, ..] if SECTIONS.contains(&section.as_str()) => {
                let taken = top
                    .get_mut(section.as_str())
                    .and_then(Value::as_object_mut)
                    .and_then(|entries| entries.remove(name.as_str()));
                if taken.is_none() {
                    break;
                }
                removed.push((section.clone(), name.clone()));
            }
            [key, ..] => {
                if top.remove(key.as_str()).is_none() {
                    break;
                }
            }
            [] => break,
        }
        match Policy::from_value(&v) {
            Ok(_) => break,
            Err(next) => {
                let consequence = next.path.starts_with("rules[")
                    && removed.iter().any(|(section, name)| {
                        next.message.contains(&format!("named {name:?}"))
                            && next.message.contains(section.as_str())
                    });
                if !consequence {
                    out.push(next.clone());
                }
                e = next;
            }
        }
    }
    out
}

/// A hint for a refusal: the closest known field for a typo, else where the field is documented.
fn hint(path: &str, message: &str) -> Option<String> {
    if let Some(list) = message.strip_prefix("unknown field; expected one of: ") {
        let unknown = path.rsplit(['.', ']']).next().unwrap_or(path);
        let best = list
            .split(", ")
            .map(|k| (edit_distance(unknown, k), k))
            .min()
            .filter(|(d, k)| *d <= 2.max(k.len() / 3));
        return Some(match best {
            Some((_, k)) => format!("did you mean `{k}`?"),
            None => format!("remove `{unknown}`; the known fields are {list}"),
        });
    }
    let top = path.split(['.', '[', '/']).next().unwrap_or("");
    let section = match top {
        "jwt_providers" => "JWT providers",
        "api_keys" => "API keys",
        "rate_limits" => "Rate limits",
        "schemas" => "Schemas",
        "redaction" => "Redaction",
        "discovery" => "Discovery (docs/events.md)",
        "rules" => "Rules",
        _ => "Top level",
    };
    Some(format!("see docs/config.md, section \"{section}\""))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

type Warning = (&'static str, String, String, String);

/// Valid but risky choices, each with the pointer of the value at fault.
fn warnings(policy: &Policy, doc: &Document, hcm: Option<Hcm>) -> Vec<Warning> {
    let v = &doc.value;
    let mut out: Vec<Warning> = Vec::new();
    let rules: &[Value] = v
        .get("rules")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);

    // Report mode, globally or per rule.
    if policy.mode == Mode::Report {
        out.push((
            "policy/report-mode",
            "/mode".into(),
            "the whole policy is in report mode: no request is refused".into(),
            "set \"mode\": \"enforce\" once the report counters look right".into(),
        ));
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        if rule.mode == Some(Mode::Report) && policy.mode == Mode::Enforce {
            out.push((
                "policy/report-mode",
                format!("/rules/{i}/mode"),
                format!(
                    "rule `{}` is in report mode: its refusals are only counted",
                    rule.name
                ),
                "remove the rule's \"mode\" once its report counters look right".into(),
            ));
        }
    }

    // on_no_match: allow without a catch-all rule.
    if policy.on_no_match == apiguard::config::NoMatch::Allow {
        let catch_all = rules.iter().any(|r| {
            let m = r.get("match");
            let everywhere = |field: &str| {
                m.and_then(|m| m.get(field))
                    .and_then(Value::as_array)
                    .is_none_or(|a| {
                        a.is_empty() || (field == "hosts" && a.iter().any(|h| h == "*"))
                    })
            };
            let path = m.and_then(|m| m.get("prefix")).and_then(Value::as_str) == Some("/")
                || m.and_then(|m| m.get("template")).and_then(Value::as_str) == Some("/**");
            path && everywhere("methods") && everywhere("hosts")
        });
        if !catch_all {
            let at = if v.get("on_no_match").is_some() {
                "/on_no_match"
            } else {
                ""
            };
            out.push((
                "policy/allow-without-catch-all",
                at.into(),
                "a request that matches no rule passes unauthenticated (on_no_match is allow and no rule matches every path)".into(),
                "set \"on_no_match\": \"deny\", or end the rules with {\"match\": {\"prefix\": \"/\"}, ...}".into(),
            ));
        }
    }

    rate_limit_warnings(v, hcm, &mut out);
    redaction_warnings(v, &mut out);
    hmac_warnings(v, &mut out);
    out
}

fn rate_limit_warnings(v: &Value, hcm: Option<Hcm>, out: &mut Vec<Warning>) {
    let Some(Value::Object(limits)) = v.get("rate_limits") else {
        return;
    };
    let rules: &[Value] = v
        .get("rules")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    for (name, limit) in limits {
        let base = format!("/rate_limits/{}", escape_token(name));
        let referring: Vec<&Value> = rules
            .iter()
            .filter(|r| match r.get("rate_limits") {
                Some(Value::String(s)) => s == name,
                Some(Value::Array(a)) => a.iter().any(|x| x == name.as_str()),
                _ => false,
            })
            .collect();
        for field in ["key", "fallback_key"] {
            let parts: &[Value] = limit
                .get(field)
                .and_then(Value::as_array)
                .map_or(&[], Vec::as_slice);
            for (i, part) in parts.iter().enumerate() {
                let at = format!("{base}/{field}/{i}");
                if let Some(ca) = part.get("client_address") {
                    let hops = ca.get("trusted_hops").and_then(Value::as_u64).unwrap_or(0);
                    match hcm {
                        Some(h) if !h.use_remote_address => out.push((
                            "policy/trusted-hops",
                            format!("{at}/client_address"),
                            "the key uses the client address, but the connection manager around this filter does not set use_remote_address: true: source.address then comes from the client's own x-forwarded-for".into(),
                            "set use_remote_address: true on the http_connection_manager".into(),
                        )),
                        Some(h) if hops > 0 && h.xff_num_trusted_hops > 0 => out.push((
                            "policy/trusted-hops",
                            format!("{at}/client_address/trusted_hops"),
                            format!("trusted_hops is {hops} and the connection manager also sets xff_num_trusted_hops: {}: the hops are counted twice", h.xff_num_trusted_hops),
                            "use trusted_hops or xff_num_trusted_hops, not both".into(),
                        )),
                        None if hops > 0 => out.push((
                            "policy/trusted-hops",
                            format!("{at}/client_address/trusted_hops"),
                            format!("trusted_hops is {hops}: correct only if exactly {hops} proxies append to x-forwarded-for in front of Envoy and Envoy's xff_num_trusted_hops is 0; this file states no Envoy setting"),
                            "check the policy inside its Envoy bootstrap, or render it with `apiguard render envoy`".into(),
                        )),
                        _ => {}
                    }
                }
            }
        }
        let deny = limit.get("on_missing_key").and_then(Value::as_str) == Some("deny");
        if deny || limit.get("fallback_key").is_some() {
            continue;
        }
        let parts: &[Value] = limit
            .get("key")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        for (i, part) in parts.iter().enumerate() {
            let why = if let Some(h) = part.get("header").and_then(Value::as_str) {
                Some(format!("a request without the header `{h}`"))
            } else if let Some(c) = part.get("jwt_claim").and_then(Value::as_str) {
                Some(format!(
                    "a request without a verified token carrying the claim `{c}`"
                ))
            } else if part.get("api_key").is_some()
                && referring.iter().any(|r| r.get("api_key").is_none())
            {
                Some("a request on a rule without an api_key".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                out.push((
                    "policy/limit-key-missing",
                    format!("{base}/key/{i}"),
                    format!("{why} has no key part here, and with no fallback_key all such requests share one budget"),
                    "add a fallback_key (e.g. the client address) or \"on_missing_key\": \"deny\"".into(),
                ));
            }
        }
    }
}

fn redaction_warnings(v: &Value, out: &mut Vec<Warning>) {
    let rules: &[Value] = v
        .get("rules")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    for (i, rule) in rules.iter().enumerate() {
        if rule.get("redaction").is_some() {
            continue;
        }
        let Some(schema) = rule.get("schema").and_then(Value::as_str) else {
            continue;
        };
        let Some(policy) = v.pointer(&format!("/schemas/{}", escape_token(schema))) else {
            continue;
        };
        let document = match policy.get("openapi").or_else(|| policy.get("json_schema")) {
            Some(Value::String(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
            Some(d) => d.clone(),
            None => continue,
        };
        let mut found = Vec::new();
        sensitive::properties(&document, "", &mut found);
        let mut classes: Vec<&str> = found.iter().map(|(_, _, c)| *c).collect();
        classes.sort_unstable();
        classes.dedup();
        if let Some((_, name, _)) = found.first() {
            out.push((
                "policy/redaction-off",
                format!("/rules/{i}"),
                format!(
                    "the rule's schema `{schema}` declares sensitive-looking fields ({}; e.g. `{name}`) and the rule has no redaction",
                    classes.join(", ")
                ),
                "name a redaction policy on the rule (\"redaction\": \"...\")".into(),
            ));
        }
    }
}

fn hmac_warnings(v: &Value, out: &mut Vec<Warning>) {
    let Some(Value::Object(providers)) = v.get("jwt_providers") else {
        return;
    };
    for (name, p) in providers {
        let base = format!("/jwt_providers/{}/local_jwks", escape_token(name));
        let (keys, at) = match (
            p.pointer("/local_jwks/inline"),
            p.pointer("/local_jwks/inline_string"),
        ) {
            (Some(jwks), _) => (jwks.clone(), format!("{base}/inline")),
            (None, Some(Value::String(s))) => (
                serde_json::from_str(s).unwrap_or(Value::Null),
                format!("{base}/inline_string"),
            ),
            _ => continue,
        };
        let list: &[Value] = keys
            .get("keys")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        for (i, key) in list.iter().enumerate() {
            if key.get("kty").and_then(Value::as_str) != Some("oct") {
                continue;
            }
            let k = key.get("k").and_then(Value::as_str).unwrap_or("");
            let bytes = k.trim_end_matches('=').len() * 3 / 4;
            let alg = key.get("alg").and_then(Value::as_str).unwrap_or("HS256");
            let needed = match alg {
                "HS384" => 48,
                "HS512" => 64,
                _ => 32,
            };
            if bytes < needed {
                let at = if at.ends_with("/inline") {
                    format!("{at}/keys/{i}/k")
                } else {
                    at.clone()
                };
                out.push((
                    "policy/hs256-short-secret",
                    at,
                    format!("provider `{name}`: the {alg} key has {bytes} bytes; RFC 7518 requires at least {needed}"),
                    format!("use a random key of at least {needed} bytes"),
                ));
            }
        }
    }
}
