//! Every request example of `docs/inventory.md` (an `http` block followed by a `json response NNN`
//! block) runs, in order, against a real `apiguard serve`; the answer must have that status and
//! contain every member the example shows (arrays: same length, each element checked the same
//! way). The findings table of the document must be the service's own.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod serve_common;

use serde_json::Value;
use serve_common::*;

struct Example {
    line: usize,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    status: u16,
    expected: Value,
}

fn examples(markdown: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut lines = markdown.lines().enumerate();
    let mut pending: Option<(usize, Vec<String>)> = None;
    while let Some((n, line)) = lines.next() {
        let info = line.trim();
        if info == "```http" || info.starts_with("```json response") {
            let mut block = Vec::new();
            for (_, l) in lines.by_ref() {
                if l.trim() == "```" {
                    break;
                }
                block.push(l.to_string());
            }
            if info == "```http" {
                assert!(
                    pending.is_none(),
                    "docs/inventory.md:{}: request without a response",
                    n + 1
                );
                pending = Some((n + 1, block));
            } else {
                let (at, req) = pending.take().unwrap_or_else(|| {
                    panic!("docs/inventory.md:{}: response without a request", n + 1)
                });
                let status: u16 = info.rsplit(' ').next().unwrap().parse().unwrap();
                let (first, rest) = req.split_first().unwrap();
                let (method, path) = first.split_once(' ').unwrap();
                let blank = rest
                    .iter()
                    .position(|l| l.trim().is_empty())
                    .unwrap_or(rest.len());
                let headers = rest[..blank]
                    .iter()
                    .map(|h| {
                        let (k, v) = h.split_once(':').unwrap();
                        (k.trim().to_string(), v.trim().to_string())
                    })
                    .collect();
                let body = rest
                    .get(blank + 1..)
                    .map(|b| b.join("\n"))
                    .unwrap_or_default();
                let expected = serde_json::from_str(&block.join("\n"))
                    .unwrap_or_else(|e| panic!("docs/inventory.md:{}: {e}", n + 1));
                out.push(Example {
                    line: at,
                    method: method.into(),
                    path: path.into(),
                    headers,
                    body,
                    status,
                    expected,
                });
            }
        }
    }
    out
}

/// `expected` is contained in `actual`.
fn contains(actual: &Value, expected: &Value, at: &str) -> Result<(), String> {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, v) in e {
                let Some(av) = a.get(k) else {
                    return Err(format!("{at}/{k}: missing"));
                };
                contains(av, v, &format!("{at}/{k}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(e)) => {
            if a.len() != e.len() {
                return Err(format!(
                    "{at}: {} elements, the example shows {}",
                    a.len(),
                    e.len()
                ));
            }
            for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                contains(av, ev, &format!("{at}/{i}"))?;
            }
            Ok(())
        }
        (a, e) if a == e => Ok(()),
        (Value::Number(a), Value::Number(e)) if a.as_f64() == e.as_f64() => Ok(()),
        (a, e) => Err(format!("{at}: {a} where the example shows {e}")),
    }
}

#[test]
fn every_api_example_in_docs_inventory_runs_as_written() {
    let markdown =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/inventory.md"))
            .unwrap();
    let list = examples(&markdown);
    assert!(
        list.len() >= 12,
        "expected at least 12 examples, found {}",
        list.len()
    );
    let s = Server::start(
        "docs",
        &[
            "--proxy-token",
            "proxy-1=proxy-token-1",
            "--proxy-token",
            "proxy-2=proxy-token-2",
            "--read-token",
            "read-token",
            "--retired-prefix",
            "/v1/",
            "--unused-after",
            "1000000h",
        ],
    );
    for ex in &list {
        let headers: Vec<(&str, &str)> = ex
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = s.request(&ex.method, &ex.path, &headers, ex.body.as_bytes());
        assert_eq!(
            r.status,
            ex.status,
            "docs/inventory.md:{}: {} {}: {}",
            ex.line,
            ex.method,
            ex.path,
            r.text()
        );
        if let Err(e) = contains(&r.json(), &ex.expected, "") {
            panic!(
                "docs/inventory.md:{}: {} {}: {e}\nanswer: {:#}",
                ex.line,
                ex.method,
                ex.path,
                r.json()
            );
        }
    }
    // The severity / OWASP table is the service's own.
    let codes = s.get_json("/api/v1/finding-codes", "read-token");
    let rows: Vec<Vec<String>> = markdown
        .lines()
        .skip_while(|l| !l.starts_with("| code | severity | OWASP | title |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), codes.as_array().unwrap().len());
    for (row, c) in rows.iter().zip(codes.as_array().unwrap()) {
        assert_eq!(
            row,
            &vec![
                c["code"].as_str().unwrap().to_string(),
                c["severity"].as_str().unwrap().to_string(),
                c["owasp"].as_str().unwrap().to_string(),
                c["title"].as_str().unwrap().to_string()
            ]
        );
    }
}
