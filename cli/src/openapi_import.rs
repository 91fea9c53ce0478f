//! `apiguard openapi import SPEC`: an OpenAPI 3.0/3.1 document in YAML or JSON, with `$ref`s
//! across files relative to the document, as the one self-contained JSON document the filter's
//! `schemas.<name>.openapi` (or `discovery.declared_openapi`) embeds.
//!
//! External references are carried over: one to `other.yaml#/components/<section>/<Name>` becomes a
//! local `#/components/<section>/<Name>` (renamed `<Name>_2`, ... on a clash), any other is inlined.
//! The result is compiled with the filter's own `OpenApi::compile`, so whatever the filter would
//! refuse (a remote `$ref`, an unsupported keyword, Swagger 2.0) is reported by JSON pointer now.

use crate::args::{print_out, read_input, write_output, Command};
use crate::report::{self, Finding, Format, EXIT_FINDINGS, EXIT_OK, EXIT_USAGE};
use crate::source::{self, escape_token, Document, Format as SourceFormat, Pos};
use apiguard::schema::OpenApi;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const HELP: &str =
    "usage: apiguard openapi import [-o OUT] [--format text|json|sarif] [--compact] SPEC

Reads an OpenAPI 3.0/3.1 document (YAML or JSON), resolves $ref across files relative to it, and
writes the self-contained JSON document the filter's configuration embeds (`schemas.<name>.openapi`,
`discovery.declared_openapi`). The result is compiled with the filter's own OpenAPI compiler:
anything it cannot carry over is reported by JSON pointer.

  -o OUT        write the document to OUT (default: standard output)
  --format F    how problems are reported: text (default, on standard error), json or sarif
                (on standard output; then -o is required)
  --compact     one line of JSON instead of indented

exit: 0 imported, 1 something could not be carried over (the document is still written),
2 usage error or unreadable SPEC";

/// `apiguard openapi <subcommand>`: only `import` today.
pub fn run_openapi(argv: &[String]) -> u8 {
    match argv.split_first() {
        Some((sub, rest)) if sub == "import" => run(rest),
        Some((h, _)) if h == "-h" || h == "--help" => {
            print_out(&format!("{HELP}\n"));
            EXIT_OK
        }
        _ => usage("the subcommand is `import`"),
    }
}

pub fn run(argv: &[String]) -> u8 {
    let args = match COMMAND.parse(argv, &["-o", "--format"], &["--compact"]) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let format = match COMMAND.format(&args) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let [spec] = args.positional.as_slice() else {
        return usage("name exactly one OpenAPI document");
    };
    if format != Format::Text && args.value("-o").is_none_or(|o| o == "-") {
        return usage("with --format json or sarif the findings go to standard output: write the document with -o");
    }
    let imported = match import(spec) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("apiguard openapi import: {e}");
            return EXIT_USAGE;
        }
    };
    let text = if args.switch("--compact") {
        serde_json::to_string(&imported.document)
    } else {
        serde_json::to_string_pretty(&imported.document)
    }
    .unwrap_or_default()
        + "\n";
    if let Err(e) = write_output(args.value("-o"), &text) {
        eprintln!("apiguard openapi import: {e}");
        return EXIT_USAGE;
    }
    let summary = report::summary(&imported.findings);
    let out = report::render(format, &imported.findings, &summary);
    if format == Format::Text {
        if !imported.findings.is_empty() {
            eprint!("{out}");
        }
    } else {
        print_out(&out);
    }
    if imported.findings.is_empty() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    }
}

const COMMAND: Command = Command {
    name: "openapi import",
    help: HELP,
};

fn usage(message: &str) -> u8 {
    COMMAND.usage(message)
}

/// A document with its external references carried over.
pub struct Imported {
    pub document: Value,
    /// What could not be carried over, or what the filter's compiler refuses.
    pub findings: Vec<Finding>,
    /// The root file's document (positions), for lint.
    pub root: Document,
    /// The root file's path as given.
    pub file: String,
    origins: Vec<Origin>,
    files: HashMap<PathBuf, Document>,
}

/// Where a part of the output came from: output pointer prefix, file, pointer in that file.
struct Origin {
    out: String,
    file: PathBuf,
    at: String,
}

impl Imported {
    /// The file and position an output pointer comes from.
    pub fn locate(&self, pointer: &str) -> (String, Option<Pos>) {
        let origin = self
            .origins
            .iter()
            .filter(|o| {
                pointer
                    .strip_prefix(o.out.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .max_by_key(|o| o.out.len());
        match origin {
            Some(o) => {
                let rest = &pointer[o.out.len()..];
                let pos = self
                    .files
                    .get(&o.file)
                    .and_then(|d| d.position(&format!("{}{rest}", o.at)));
                (o.file.display().to_string(), pos)
            }
            None => (self.file.clone(), self.root.position(pointer)),
        }
    }
}

/// Reads one document (YAML or JSON) from a file.
pub fn read_document(path: &Path) -> Result<Document, String> {
    let bytes = read_input(&path.display().to_string())?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{}: not valid UTF-8", path.display()))?;
    let display = path.display();
    match SourceFormat::guess(&display.to_string(), &text) {
        SourceFormat::Json => source::parse_json(&text)
            .map_err(|e| format!("{display}:{}:{}: {}", e.pos.line, e.pos.column, e.message)),
        SourceFormat::Yaml => {
            let stream = source::parse_yaml(&text)
                .map_err(|e| format!("{display}:{}:{}: {}", e.pos.line, e.pos.column, e.message))?;
            let mut docs = stream.documents.into_iter();
            match (docs.next(), docs.next()) {
                (Some(d), None) => Ok(d),
                (None, _) => Err(format!("{display}: empty document")),
                (Some(_), Some(_)) => Err(format!(
                    "{display}: several YAML documents; an OpenAPI document is one"
                )),
            }
        }
    }
}

/// Bundles `spec` and compiles it with the filter's OpenAPI compiler.
pub fn import(spec: &str) -> Result<Imported, String> {
    let root_path = PathBuf::from(spec);
    let root = read_document(&root_path)?;
    let mut b = Bundler {
        root_path: root_path.clone(),
        files: HashMap::new(),
        issues: Vec::new(),
        hoisted: HashMap::new(),
        taken: HashMap::new(),
        additions: Vec::new(),
        stack: Vec::new(),
        origins: Vec::new(),
    };
    if let Some(Value::Object(components)) = root.value.get("components") {
        for (section, entries) in components {
            if let Value::Object(entries) = entries {
                for name in entries.keys() {
                    b.taken.insert((section.clone(), name.clone()), ());
                }
            }
        }
    }
    b.files.insert(root_path.clone(), root.clone());
    let mut document = root.value.clone();
    b.resolve(&mut document, &root_path, String::new());
    if !b.additions.is_empty() {
        if let Value::Object(top) = &mut document {
            let components = top
                .entry("components")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(components) = components {
                for (section, name, value) in b.additions.drain(..) {
                    let entries = components
                        .entry(section)
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(entries) = entries {
                        entries.insert(name, value);
                    }
                }
            }
        }
    }
    let mut imported = Imported {
        document,
        findings: Vec::new(),
        root,
        file: spec.to_string(),
        origins: b.origins,
        files: b.files,
    };
    let mut issues = b.issues;
    if let Err(e) = OpenApi::compile(&imported.document, true, None) {
        let pointer = e.pointer.trim_start_matches('#').to_string();
        // A reference already reported (a remote one) is not reported twice.
        if !issues.iter().any(|(p, _)| *p == pointer) {
            issues.push((
                pointer,
                format!("the filter's OpenAPI compiler refuses this: {}", e.message),
            ));
        }
    }
    for (pointer, message) in issues {
        let (file, pos) = imported.locate(&pointer);
        let path = if pointer.is_empty() {
            "#".to_string()
        } else {
            format!("#{pointer}")
        };
        imported
            .findings
            .push(Finding::new("openapi/not-carried", &file, path, message).at(pos));
    }
    Ok(imported)
}

struct Bundler {
    root_path: PathBuf,
    files: HashMap<PathBuf, Document>,
    issues: Vec<(String, String)>,
    /// (file, pointer) already hoisted → its local pointer.
    hoisted: HashMap<(PathBuf, String), String>,
    /// Component names in use, by (section, name).
    taken: HashMap<(String, String), ()>,
    additions: Vec<(String, String, Value)>,
    /// References being inlined (a cycle through them cannot be inlined).
    stack: Vec<(PathBuf, String)>,
    origins: Vec<Origin>,
}

impl Bundler {
    fn load(&mut self, path: &Path) -> Result<&Document, String> {
        if !self.files.contains_key(path) {
            let doc = read_document(path)?;
            self.files.insert(path.to_path_buf(), doc);
        }
        self.files
            .get(path)
            .ok_or_else(|| format!("cannot read {}", path.display()))
    }

    /// Resolves every `$ref` under `value`, which sits in `file` and at `at` in the output.
    fn resolve(&mut self, value: &mut Value, file: &Path, at: String) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref").cloned().as_ref() {
                    if let Some(replacement) = self.reference(r, file, &at) {
                        match replacement {
                            Replacement::Ref(local) => {
                                map.insert("$ref".into(), Value::String(local));
                            }
                            Replacement::Inline(Value::Object(inlined)) => {
                                map.remove("$ref");
                                for (k, v) in inlined {
                                    map.entry(k).or_insert(v);
                                }
                            }
                            Replacement::Inline(other) => {
                                if map.len() == 1 {
                                    *value = other;
                                    return;
                                }
                                self.issues.push((
                                    format!("{at}/$ref"),
                                    format!("`{r}` is not an object and has siblings: cannot be inlined"),
                                ));
                            }
                        }
                    }
                }
                if let Value::Object(map) = value {
                    for (k, v) in map.iter_mut() {
                        if k == "$ref" {
                            continue;
                        }
                        let child = format!("{at}/{}", escape_token(k));
                        self.resolve(v, file, child);
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    self.resolve(v, file, format!("{at}/{i}"));
                }
            }
            _ => {}
        }
    }

    fn reference(&mut self, r: &str, file: &Path, at: &str) -> Option<Replacement> {
        let (target, fragment) = r.split_once('#').unwrap_or((r, ""));
        if target.is_empty() && file == self.root_path {
            return None; // local to the root document: stays as it is.
        }
        if target.contains("://") {
            self.issues.push((
                format!("{at}/$ref"),
                format!("remote reference `{r}`: the filter fetches nothing; download it and refer to the file"),
            ));
            return None;
        }
        let target_file = if target.is_empty() {
            file.to_path_buf()
        } else {
            file.parent().unwrap_or(Path::new(".")).join(target)
        };
        let fragment = percent_decode(fragment);
        let doc = match self.load(&target_file) {
            Ok(d) => d,
            Err(e) => {
                self.issues
                    .push((format!("{at}/$ref"), format!("`{r}`: {e}")));
                return None;
            }
        };
        let Some(found) = doc.value.pointer(&fragment).cloned() else {
            self.issues.push((
                format!("{at}/$ref"),
                format!(
                    "`{r}`: no value at `{fragment}` in {}",
                    target_file.display()
                ),
            ));
            return None;
        };
        let key = (target_file.clone(), fragment.clone());
        // `/components/<section>/<name>`: hoisted under the same section of the output.
        let parts: Vec<&str> = fragment.split('/').collect();
        if let ["", "components", section, name] = parts.as_slice() {
            if let Some(local) = self.hoisted.get(&key) {
                return Some(Replacement::Ref(local.clone()));
            }
            let section = section.to_string();
            let base = name.replace("~1", "/").replace("~0", "~");
            let mut chosen = base.clone();
            let mut n = 2;
            while self.taken.contains_key(&(section.clone(), chosen.clone())) {
                chosen = format!("{base}_{n}");
                n += 1;
            }
            self.taken.insert((section.clone(), chosen.clone()), ());
            let out = format!("/components/{section}/{}", escape_token(&chosen));
            let local = format!("#{out}");
            self.hoisted.insert(key, local.clone());
            self.origins.push(Origin {
                out: out.clone(),
                file: target_file.clone(),
                at: fragment.clone(),
            });
            let mut value = found;
            self.resolve(&mut value, &target_file, out);
            self.additions.push((section, chosen, value));
            return Some(Replacement::Ref(local));
        }
        if self.stack.contains(&key) {
            self.issues.push((
                format!("{at}/$ref"),
                format!("`{r}` refers back to itself and is not under /components: move it to components to carry it over"),
            ));
            return None;
        }
        self.stack.push(key);
        self.origins.push(Origin {
            out: at.to_string(),
            file: target_file.clone(),
            at: fragment.clone(),
        });
        let mut value = found;
        self.resolve(&mut value, &target_file, at.to_string());
        self.stack.pop();
        Some(Replacement::Inline(value))
    }
}

enum Replacement {
    Ref(String),
    Inline(Value),
}

/// `%XX` in a URI fragment (a JSON pointer written in a URI).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_percent_decoded() {
        assert_eq!(percent_decode("/paths/~1pets%7Bid%7D"), "/paths/~1pets{id}");
        assert_eq!(percent_decode("/a%2"), "/a%2");
    }
}
