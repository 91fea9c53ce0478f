//! The official JSON-Schema-Test-Suite (draft 2020-12 and draft 7), read in place from
//! `../shared/conformance/JSON-Schema-Test-Suite/`.
//!
//! Every group's schema is compiled by apiguard; when apiguard refuses it as *unsupported* (a
//! keyword, `$dynamicRef`, a remote `$ref` outside `remotes/`, a `format` apiguard does not assert,
//! ...), the group's cases are skipped and counted, with the refusal as the reason. Any other
//! compile error, and any case with the wrong verdict, fails the test. Files whose every group is
//! refused are listed as unsupported, with the reason.
//!
//! `remotes/` documents are handed to the compiler as extra resources under
//! `http://localhost:1234/...` (nothing is fetched). The main files run with `format` as an
//! annotation (the default of both drafts); `optional/format/*.json` run with format assertions on.
//!
//! Run with `cargo test --test conformance_json_schema -- --nocapture` to see the table.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

use apiguard::schema::{Draft, Options, Schema};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const SUITE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/conformance/JSON-Schema-Test-Suite"
);

/// Cases skipped inside otherwise supported files: (file, group, case, reason).
const KNOWN_SKIPS: &[(&str, &str, &str, &str)] = &[];

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn remotes(draft_folder: &str) -> Vec<(String, Value)> {
    let root = Path::new(SUITE).join("remotes");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if path.is_dir() {
                let top = rel.split('/').next().unwrap_or("");
                let other_draft = top.starts_with("draft") && top != draft_folder;
                if !other_draft && top != "v1" {
                    stack.push(path);
                }
            } else if rel.ends_with(".json") {
                let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
                out.push((format!("http://localhost:1234/{rel}"), v));
            }
        }
    }
    out
}

#[derive(Default)]
struct FileResult {
    passed: usize,
    failed: usize,
    skipped: usize,
    skip_reasons: BTreeMap<String, usize>,
    failures: Vec<String>,
}

fn run_file(path: &Path, name: &str, options: Options, resources: &[(&str, &Value)]) -> FileResult {
    let groups: Vec<Value> = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let mut r = FileResult::default();
    for group in &groups {
        let gdesc = group["description"].as_str().unwrap_or("");
        let tests = group["tests"].as_array().unwrap();
        let schema = match Schema::compile_with_resources(&group["schema"], options, resources) {
            Ok(s) => s,
            Err(e) if e.unsupported => {
                r.skipped += tests.len();
                *r.skip_reasons
                    .entry(format!("{}: {}", e.pointer, e.message))
                    .or_default() += tests.len();
                continue;
            }
            Err(e) => {
                r.failed += tests.len();
                r.failures
                    .push(format!("{name} / {gdesc}: schema refused: {e}"));
                continue;
            }
        };
        for t in tests {
            let tdesc = t["description"].as_str().unwrap_or("");
            if let Some((_, _, _, reason)) = KNOWN_SKIPS
                .iter()
                .find(|(f, g, c, _)| *f == name && *g == gdesc && *c == tdesc)
            {
                r.skipped += 1;
                *r.skip_reasons.entry((*reason).to_string()).or_default() += 1;
                continue;
            }
            let expected = t["valid"].as_bool().unwrap();
            let quick = schema.is_valid(&t["data"]);
            let full = schema.validate(&t["data"], 10).is_ok();
            if quick == expected && full == expected {
                r.passed += 1;
            } else {
                r.failed += 1;
                r.failures.push(format!(
                    "{name} / {gdesc} / {tdesc}: expected valid={expected}, is_valid={quick}, validate={}",
                    full
                ));
            }
        }
    }
    r
}

fn run_draft(folder: &str, draft: Draft) -> (usize, Vec<String>) {
    let dir = Path::new(SUITE).join("tests").join(folder);
    let remote_docs = remotes(folder);
    let resources: Vec<(&str, &Value)> = remote_docs.iter().map(|(u, v)| (u.as_str(), v)).collect();
    let mut files: Vec<(String, PathBuf, bool)> = json_files(&dir)
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                p,
                false,
            )
        })
        .collect();
    files.extend(
        json_files(&dir.join("optional/format"))
            .into_iter()
            .map(|p| {
                (
                    format!(
                        "optional/format/{}",
                        p.file_name().unwrap().to_string_lossy()
                    ),
                    p,
                    true,
                )
            }),
    );
    assert!(files.len() > 30, "suite not found at {}", dir.display());

    let (mut whole, mut passed, mut failed, mut skipped) = (0, 0, 0, 0);
    let mut counts = Vec::new();
    let mut failures = Vec::new();
    let mut unsupported_files = Vec::new();
    let mut partial = Vec::new();
    println!("\n== {folder} ==");
    println!(
        "{:<44} {:>6} {:>6} {:>7}",
        "file", "passed", "failed", "skipped"
    );
    for (name, path, formats) in &files {
        let options = Options {
            draft,
            formats: *formats,
            openapi: false,
        };
        let r = run_file(path, name, options, &resources);
        println!(
            "{name:<44} {:>6} {:>6} {:>7}",
            r.passed, r.failed, r.skipped
        );
        passed += r.passed;
        failed += r.failed;
        skipped += r.skipped;
        counts.push(format!("{folder}\t{name}\t{}\t{}", r.passed, r.skipped));
        if r.failed == 0 && r.skipped == 0 {
            whole += 1;
        } else if r.passed == 0 && r.failed == 0 {
            let reasons: Vec<&String> = r.skip_reasons.keys().collect();
            unsupported_files.push(format!(
                "{name}: {}",
                reasons.first().map_or("", |s| s.as_str())
            ));
        } else if r.skipped > 0 {
            for (reason, n) in &r.skip_reasons {
                partial.push(format!("{name}: {n} case(s) skipped: {reason}"));
            }
        }
        failures.extend(r.failures);
    }
    println!("-- files of unsupported keywords (every group refused at compile time):");
    for f in &unsupported_files {
        println!("   {f}");
    }
    println!("-- cases skipped inside otherwise supported files:");
    for p in &partial {
        println!("   {p}");
    }
    println!(
        "TOTAL {folder}: {} files, {whole} passed whole; cases passed {passed} / failed {failed} / skipped {skipped}",
        files.len()
    );
    check_counts(folder, &counts);
    (passed, failures)
}

/// Every file's passed and skipped counts are pinned in `tests/fixtures/json_schema_counts.tsv`, so
/// that no case turns into "unsupported" (or a skip into a pass) unnoticed. After a deliberate
/// change, replace that folder's lines with the ones this prints.
fn check_counts(folder: &str, counts: &[String]) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/json_schema_counts.tsv");
    let pinned = std::fs::read_to_string(&path).unwrap_or_default();
    let expected: Vec<&str> = pinned
        .lines()
        .filter(|l| l.starts_with(&format!("{folder}\t")))
        .collect();
    let actual: Vec<&str> = counts.iter().map(String::as_str).collect();
    if expected != actual {
        println!("-- counts now (folder, file, passed, skipped):");
        for line in &actual {
            println!("{line}");
        }
    }
    assert_eq!(
        expected,
        actual,
        "per-file counts differ from {} (the lines to pin are printed above)",
        path.display()
    );
}

#[test]
fn draft2020_12_suite() {
    let (passed, failures) = run_draft("draft2020-12", Draft::Draft2020);
    assert!(passed > 900, "too few cases passed: {passed}");
    assert!(
        failures.is_empty(),
        "{} wrong verdicts:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn draft7_suite() {
    let (passed, failures) = run_draft("draft7", Draft::Draft7);
    assert!(passed > 700, "too few cases passed: {passed}");
    assert!(
        failures.is_empty(),
        "{} wrong verdicts:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
