//! Where a policy is written, and the exact bytes the filter would be given.
//!
//! - A policy file: JSON (its bytes as they are) or YAML (converted to JSON; the filter itself
//!   reads JSON only, to keep the `.wasm` small).
//! - An Envoy bootstrap (JSON or YAML): the `configuration` string of every `envoy.filters.http.wasm`
//!   filter that runs apiguard, with the settings of the connection manager around it.
//! - Kubernetes manifests: the `pluginConfig` of every `WasmPlugin` (Istio turns it into JSON).

use crate::source::{self, Document, Format, Pos, SyntaxError};
use serde_json::Value;

const WASM_TYPE: &str = "envoy.extensions.filters.http.wasm.v3.Wasm";
const HCM_TYPE: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// What a connection manager around the filter states (for the client-address checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hcm {
    pub use_remote_address: bool,
    pub xff_num_trusted_hops: u64,
}

/// One policy found in a file.
#[derive(Debug)]
pub struct Found {
    /// Where it sits in the file: empty for a policy file, else a JSON pointer.
    pub at: String,
    /// The bytes handed to `Policy::from_plugin_configuration`.
    pub bytes: Vec<u8>,
    /// The policy as a document, positions in the file's lines and columns; `None` when the text is
    /// not JSON (the filter refuses it at `$`).
    pub doc: Option<Document>,
    /// Where the policy text starts (for errors without a better position).
    pub start: Option<Pos>,
    /// Inside an Envoy bootstrap: the connection manager's settings.
    pub hcm: Option<Hcm>,
    /// The syntax error of an embedded JSON string, when there is one.
    pub syntax: Option<SyntaxError>,
}

/// The policies in a file, or the reason it cannot be read.
pub fn find(path: &str, bytes: &[u8]) -> Result<Vec<Found>, SyntaxError> {
    let text = std::str::from_utf8(bytes);
    let format = Format::guess(path, text.unwrap_or(""));
    match (format, text) {
        (Format::Json, _) | (_, Err(_)) => {
            let Ok(text) = text else {
                return Err(SyntaxError {
                    message: "not valid UTF-8".into(),
                    pos: Pos { line: 1, column: 1 },
                });
            };
            if bytes.is_empty() {
                return Ok(vec![plain(bytes.to_vec(), None, None)]);
            }
            let doc = source::parse_json(text)?;
            if is_manifest(&doc.value) {
                return Ok(plugins(&doc));
            }
            let embedded = embedded(&doc, None);
            if !embedded.is_empty() || is_envoy(&doc.value) {
                return Ok(embedded);
            }
            // The file's own bytes: exactly what Envoy would hand over.
            let start = doc.position("");
            Ok(vec![plain(bytes.to_vec(), Some(doc), start)])
        }
        (Format::Yaml, Ok(text)) => {
            let stream = source::parse_yaml(text)?;
            let mut found = Vec::new();
            let mut manifests = false;
            for (i, doc) in stream.documents.iter().enumerate() {
                let blocks = stream.blocks.get(i);
                if is_manifest(&doc.value) {
                    manifests = true;
                    found.extend(plugins(doc));
                    continue;
                }
                let embedded = embedded(doc, blocks);
                if !embedded.is_empty() || is_envoy(&doc.value) {
                    manifests = true;
                    found.extend(embedded);
                }
            }
            if manifests {
                return Ok(found);
            }
            match stream.documents.as_slice() {
                [] => Ok(vec![plain(Vec::new(), None, None)]),
                [doc] => {
                    let bytes = serde_json::to_vec(&doc.value).unwrap_or_default();
                    Ok(vec![plain(bytes, Some(doc.clone()), doc.position(""))])
                }
                [_, second, ..] => Err(SyntaxError {
                    message: "several YAML documents, and none is an Envoy bootstrap or a WasmPlugin: a policy is one document".into(),
                    pos: second.position("").unwrap_or(Pos { line: 1, column: 1 }),
                }),
            }
        }
    }
}

fn plain(bytes: Vec<u8>, doc: Option<Document>, start: Option<Pos>) -> Found {
    Found {
        at: String::new(),
        bytes,
        doc,
        start,
        hcm: None,
        syntax: None,
    }
}

fn is_manifest(v: &Value) -> bool {
    v.get("kind").is_some() && v.get("apiVersion").is_some()
}

/// The `WasmPlugin`s of a manifest: the object itself, or the items of a `List`.
fn plugins(doc: &Document) -> Vec<Found> {
    match doc.value.get("kind").and_then(Value::as_str) {
        Some("WasmPlugin") => vec![plugin_config(doc)],
        Some("List") => {
            let count = doc
                .value
                .get("items")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            (0..count)
                .filter_map(|i| {
                    let at = format!("/items/{i}");
                    let item = doc.sub(&at)?;
                    (item.value.get("kind").and_then(Value::as_str) == Some("WasmPlugin")).then(
                        || {
                            let mut f = plugin_config(&item);
                            f.at = format!("{at}{}", f.at);
                            f
                        },
                    )
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

fn is_envoy(v: &Value) -> bool {
    v.get("static_resources").is_some() || v.get("dynamic_resources").is_some()
}

/// A `WasmPlugin`'s `spec.pluginConfig` (absent: an empty configuration).
fn plugin_config(doc: &Document) -> Found {
    let at = "/spec/pluginConfig".to_string();
    match doc.sub(&at) {
        Some(sub) => Found {
            bytes: serde_json::to_vec(&sub.value).unwrap_or_default(),
            start: doc.position(&at),
            doc: Some(sub),
            at,
            hcm: None,
            syntax: None,
        },
        None => Found {
            bytes: Vec::new(),
            start: doc.position("/spec"),
            doc: None,
            at,
            hcm: None,
            syntax: None,
        },
    }
}

/// Every apiguard Wasm filter in an Envoy configuration, with its connection manager.
fn embedded(
    doc: &Document,
    blocks: Option<&std::collections::HashMap<String, source::BlockScalar>>,
) -> Vec<Found> {
    let mut out = Vec::new();
    walk(
        &doc.value,
        String::new(),
        None,
        &mut |pointer, config, hcm| {
            if !runs_apiguard(config) {
                return;
            }
            let configuration = config.get("configuration");
            let (text_pointer, text) = match configuration {
                None => (format!("{pointer}/config"), None),
                Some(Value::Object(c)) => (
                    format!("{pointer}/config/configuration/value"),
                    c.get("value").and_then(Value::as_str),
                ),
                Some(Value::String(s)) => {
                    (format!("{pointer}/config/configuration"), Some(s.as_str()))
                }
                Some(_) => (format!("{pointer}/config/configuration"), None),
            };
            let start = doc.position(&text_pointer);
            let text = text.unwrap_or("");
            let (parsed, syntax) = match text {
                "" => (None, None),
                t => match source::parse_json(t) {
                    Ok(d) => (Some(d), None),
                    Err(e) => (None, Some(e)),
                },
            };
            // Map positions inside the string to the file: exact for a literal block (`value: |`),
            // the string's own position otherwise (escapes change columns).
            let block = blocks.and_then(|b| b.get(&text_pointer)).cloned();
            let map = move |p: Pos| match (&block, start) {
                (Some(b), _) => Pos {
                    line: b.content_line + p.line - 1,
                    column: b.indent + p.column,
                },
                (None, Some(s)) => s,
                (None, None) => p,
            };
            let parsed = parsed.map(|mut d| {
                d.shift(&map);
                d
            });
            let syntax = syntax.map(|e| SyntaxError {
                message: e.message,
                pos: map(e.pos),
            });
            out.push(Found {
                at: text_pointer,
                bytes: text.as_bytes().to_vec(),
                doc: parsed,
                start,
                hcm,
                syntax,
            });
        },
    );
    out
}

fn type_is(v: &Value, t: &str) -> bool {
    v.get("@type")
        .and_then(Value::as_str)
        .is_some_and(|s| s.ends_with(t))
}

/// An apiguard filter: its `root_id`, `name` or module file says so.
fn runs_apiguard(config: &Value) -> bool {
    let has = |p: &str| {
        config
            .pointer(p)
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains("apiguard"))
    };
    has("/root_id")
        || has("/name")
        || has("/vm_config/code/local/filename")
        || has("/vm_config/vm_id")
}

fn walk(
    v: &Value,
    pointer: String,
    hcm: Option<Hcm>,
    f: &mut dyn FnMut(&str, &Value, Option<Hcm>),
) {
    match v {
        Value::Object(map) => {
            let hcm = if type_is(v, HCM_TYPE) {
                Some(Hcm {
                    use_remote_address: v
                        .get("use_remote_address")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    xff_num_trusted_hops: v
                        .get("xff_num_trusted_hops")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                })
            } else {
                hcm
            };
            if type_is(v, WASM_TYPE) {
                if let Some(config) = v.get("config") {
                    f(&pointer, config, hcm);
                }
                return;
            }
            for (k, child) in map {
                walk(
                    child,
                    format!("{pointer}/{}", source::escape_token(k)),
                    hcm,
                    f,
                );
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, format!("{pointer}/{i}"), hcm, f);
            }
        }
        _ => {}
    }
}
