//! Findings and how they are printed: text for people, JSON for scripts, SARIF 2.1.0 for code
//! scanning (GitHub, GitLab, Azure DevOps show SARIF results inline on the file and line).

use crate::rules::{self, Level};
use crate::source::Pos;
use serde_json::{json, Value};

/// Exit status: everything passed.
pub const EXIT_OK: u8 = 0;
/// Exit status: findings (errors, or warnings where the command counts them).
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status: the command line is wrong, or a file cannot be read at all.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: &'static str,
    pub level: Level,
    pub message: String,
    pub hint: Option<String>,
    pub file: String,
    pub pos: Option<Pos>,
    /// The filter's JSON path (`rules[0].match`) for policies, a JSON pointer for OpenAPI documents.
    pub json_path: String,
}

impl Finding {
    /// A finding with the rule's default level.
    pub fn new(rule: &'static str, file: &str, json_path: String, message: String) -> Finding {
        Finding {
            rule,
            level: rules::find(rule).map_or(Level::Warning, |r| r.level),
            message,
            hint: None,
            file: file.to_string(),
            pos: None,
            json_path,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Finding {
        self.hint = Some(hint.into());
        self
    }

    pub fn at(mut self, pos: Option<Pos>) -> Finding {
        self.pos = pos;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            "sarif" => Some(Format::Sarif),
            _ => None,
        }
    }
}

/// The findings in `format`. `summary` is the last line of the text form.
pub fn render(format: Format, findings: &[Finding], summary: &str) -> String {
    match format {
        Format::Text => {
            let mut out = String::new();
            for f in findings {
                let at = match f.pos {
                    Some(p) => format!("{}:{}:{}", f.file, p.line, p.column),
                    None => f.file.clone(),
                };
                out.push_str(&format!(
                    "{at}: {}[{}] {}: {}\n",
                    f.level.name(),
                    f.rule,
                    f.json_path,
                    f.message
                ));
                if let Some(h) = &f.hint {
                    out.push_str(&format!("  hint: {h}\n"));
                }
            }
            out.push_str(summary);
            out.push('\n');
            out
        }
        Format::Json => {
            let items: Vec<Value> = findings
                .iter()
                .map(|f| {
                    json!({
                        "rule": f.rule,
                        "level": f.level.name(),
                        "file": f.file,
                        "line": f.pos.map(|p| p.line),
                        "column": f.pos.map(|p| p.column),
                        "path": f.json_path,
                        "message": f.message,
                        "hint": f.hint,
                        "owasp": rules::find(f.rule).and_then(|r| r.owasp),
                    })
                })
                .collect();
            let mut s =
                serde_json::to_string_pretty(&json!({"findings": items, "summary": summary}))
                    .unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Sarif => {
            let mut s = serde_json::to_string_pretty(&sarif(findings)).unwrap_or_default();
            s.push('\n');
            s
        }
    }
}

/// A SARIF 2.1.0 log with one run; the driver lists the rules that have results.
pub fn sarif(findings: &[Finding]) -> Value {
    let mut used: Vec<&'static str> = findings.iter().map(|f| f.rule).collect();
    used.sort_unstable();
    used.dedup();
    let rules: Vec<Value> = used
        .iter()
        .filter_map(|id| rules::find(id))
        .map(|r| {
            let mut tags = vec![json!("security")];
            if let Some(o) = r.owasp {
                tags.push(json!(format!("OWASP-{}", o.split(' ').next().unwrap_or(o))));
            }
            json!({
                "id": r.id,
                "name": r.id.replace(['/', '-'], "_"),
                "shortDescription": {"text": r.short},
                "fullDescription": {"text": r.why},
                "help": {
                    "text": format!("{}\nFix: {}", r.why, r.fix),
                    "markdown": format!("{}\n\n**Fix:** {}\n\n{}", r.why, r.fix,
                        r.owasp.map(|o| format!("OWASP API Security Top 10: {o}")).unwrap_or_default()),
                },
                "helpUri": format!("https://github.com/apiguard/apiguard/blob/main/docs/cli.md#{}", r.id.replace('/', "")),
                "defaultConfiguration": {"level": r.level.name()},
                "properties": {"tags": tags},
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let pos = f.pos.unwrap_or(Pos { line: 1, column: 1 });
            let mut text = f.message.clone();
            if let Some(h) = &f.hint {
                text.push_str(&format!(" (hint: {h})"));
            }
            json!({
                "ruleId": f.rule,
                "ruleIndex": used.iter().position(|u| *u == f.rule),
                "level": f.level.name(),
                "message": {"text": format!("{}: {text}", f.json_path)},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": sarif_uri(&f.file)},
                        "region": {"startLine": pos.line, "startColumn": pos.column},
                    },
                    "logicalLocations": [{"fullyQualifiedName": f.json_path, "kind": "member"}],
                }],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "apiguard",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/apiguard/apiguard",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// A relative path as a SARIF URI (forward slashes, no leading `./`), so code scanning finds the file
/// in the repository.
fn sarif_uri(file: &str) -> String {
    let f = file.replace('\\', "/").replace(' ', "%20");
    if f.starts_with('/') {
        return format!("file://{f}");
    }
    f.strip_prefix("./").unwrap_or(&f).to_string()
}

/// "2 errors, 1 warning" and the like.
pub fn summary(findings: &[Finding]) -> String {
    let count = |l: Level| findings.iter().filter(|f| f.level == l).count();
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}, {}",
        plural(count(Level::Error), "error"),
        plural(count(Level::Warning), "warning"),
        plural(count(Level::Note), "note")
    )
}
