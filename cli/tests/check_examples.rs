//! Every example policy in the documentation and in envoy/ passes `apiguard check`: the ```json
//! blocks of README.md and docs/*.md that are policies, the ```yaml blocks that carry an apiguard
//! Wasm filter, envoy/demo.yaml (its @PLACEHOLDERS@ filled as scripts/demo.sh fills them) and the
//! Istio WasmPlugin.

mod common;

use common::{check_json, repo, scratch};
use std::path::Path;

/// (first line, info string, text) of every fenced block.
fn blocks(markdown: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String, String)> = None;
    for (n, line) in markdown.lines().enumerate() {
        let t = line.trim_start();
        match &mut current {
            None if t.starts_with("```") && t.len() > 3 => {
                current = Some((n + 1, t[3..].to_string(), String::new()))
            }
            Some(_) if t == "```" => out.push(current.take().unwrap()),
            Some((_, _, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    out
}

fn assert_passes(file: &Path, label: &str) {
    let (code, findings) = check_json(file);
    let errors: Vec<_> = findings.iter().filter(|f| f["level"] == "error").collect();
    assert!(
        errors.is_empty() && code == 0,
        "{label}: apiguard check refused it (exit {code}): {errors:#?}"
    );
}

#[test]
fn every_policy_example_in_the_docs_passes_check() {
    let dir = scratch("docs-examples");
    let mut checked = 0;
    let mut files: Vec<_> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(repo().join("README.md"));
    files.sort();
    for md in files {
        let text = std::fs::read_to_string(&md).unwrap();
        for (line, info, body) in blocks(&text) {
            let label = format!("{}:{line}", md.display());
            let trimmed = body.trim_start();
            let (name, content) = match info.as_str() {
                // A policy: a whole document, or a top-level section written as `"section": {...}`.
                "json" if trimmed.starts_with('{') => {
                    let v: serde_json::Value =
                        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{label}: {e}"));
                    if v.get("schema_version").is_some() {
                        continue; // a discovery batch (docs/events.md), not a policy
                    }
                    ("policy.json", body.clone())
                }
                "json" if trimmed.starts_with("\"discovery\"") => {
                    ("section.json", format!("{{{body}}}"))
                }
                "yaml"
                    if body.contains("envoy.filters.http.wasm")
                        || body.contains("kind: WasmPlugin") =>
                {
                    ("envoy.yaml", body.clone())
                }
                _ => continue,
            };
            let file = dir.join(format!("{checked}-{name}"));
            std::fs::write(&file, content).unwrap();
            assert_passes(&file, &label);
            checked += 1;
        }
    }
    // README 1 + docs/config.md 11 json + docs/config.md's Envoy yaml + the README's Envoy yaml + events.md's section.
    assert!(checked >= 14, "only {checked} examples found");
}

/// envoy/demo.yaml with its placeholders filled, as scripts/demo.sh fills them.
fn demo_bootstrap() -> String {
    std::fs::read_to_string(repo().join("envoy/demo.yaml"))
        .unwrap()
        .replace("@LISTEN_PORT@", "10000")
        .replace("@ADMIN_PORT@", "9901")
        .replace("@UPSTREAM_PORT@", "8080")
        .replace("@JWKS_PORT@", "8081")
        .replace("@WASM@", "/etc/envoy/apiguard.wasm")
}

#[test]
fn the_envoy_bootstrap_and_the_istio_plugin_pass_check() {
    let dir = scratch("envoy-examples");
    let file = dir.join("demo.yaml");
    let filled = demo_bootstrap();
    std::fs::write(&file, filled).unwrap();
    assert_passes(&file, "envoy/demo.yaml");
    let (_, findings) = check_json(&file);
    // The policy inside the bootstrap was found and compiled: its findings point into the block.
    assert!(
        findings
            .iter()
            .all(|f| f["path"].as_str().unwrap().contains("configuration/value#")),
        "{findings:#?}"
    );

    assert_passes(
        &repo().join("envoy/istio/wasmplugin.yaml"),
        "envoy/istio/wasmplugin.yaml",
    );
}

#[test]
fn a_typo_in_the_demo_bootstrap_is_reported_at_its_line_and_column() {
    let dir = scratch("envoy-typo");
    let bad = demo_bootstrap().replacen("\"issuer\"", "\"isuer\"", 1);
    let (line, column) = bad
        .lines()
        .enumerate()
        .find_map(|(n, l)| l.find("\"isuer\"").map(|c| (n + 1, c + 1)))
        .unwrap();
    let file = dir.join("demo.yaml");
    std::fs::write(&file, bad).unwrap();
    let (code, findings) = check_json(&file);
    assert_eq!(code, 1);
    let f = findings
        .iter()
        .find(|f| f["rule"] == "policy/invalid")
        .unwrap();
    assert_eq!(
        (
            f["line"].as_u64().unwrap() as usize,
            f["column"].as_u64().unwrap() as usize
        ),
        (line, column),
        "{f:#?}"
    );
    assert!(
        f["path"]
            .as_str()
            .unwrap()
            .ends_with("#jwt_providers.demo.isuer"),
        "{f:#?}"
    );
    assert_eq!(f["hint"], "did you mean `issuer`?");
}

#[test]
fn the_ci_workflow_example_is_yaml_and_runs_check_and_lint_with_sarif() {
    let workflow = repo().join("examples/ci/apiguard.yml");
    // It is no policy (its members are refused as such), but it must read as YAML: a syntax error
    // would be reported as one.
    let (_, findings) = check_json(&workflow);
    assert!(
        !findings.is_empty() && findings.iter().all(|f| f["rule"] == "policy/invalid"),
        "{findings:#?}"
    );
    let text = std::fs::read_to_string(&workflow).unwrap();
    assert!(text.contains("apiguard check --format sarif"));
    assert!(text.contains("apiguard lint --format sarif"));
    assert_eq!(text.matches("github/codeql-action/upload-sarif").count(), 2);
    assert!(text.contains("security-events: write"));
}
