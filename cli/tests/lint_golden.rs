//! `apiguard lint` on the Swagger Petstore (YAML) gives the reviewed findings in
//! golden/petstore.lint.txt: one finding per line, `line:column level rule pointer — reason`.
//! `UPDATE_GOLDEN=1 cargo test -p apiguard-cli --test lint_golden` rewrites it (review the diff).

mod common;

use common::{apiguard, conformance, repo, scratch};
use serde_json::Value;

fn lint_json(args: &[&str]) -> (i32, Vec<Value>) {
    let mut all = vec!["lint", "--format", "json"];
    all.extend_from_slice(args);
    let r = apiguard(&all);
    let doc: Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
    (r.code, doc["findings"].as_array().cloned().unwrap())
}

fn line(f: &Value) -> String {
    format!(
        "{}:{} {} {} {} — {}",
        f["line"],
        f["column"],
        f["level"].as_str().unwrap(),
        f["rule"].as_str().unwrap(),
        f["path"].as_str().unwrap(),
        f["message"].as_str().unwrap()
    )
}

#[test]
fn petstore_findings_match_the_reviewed_golden_file() {
    let spec = conformance("openapi/swagger-petstore-v3.openapi.yaml");
    let (code, findings) = lint_json(&[spec.to_str().unwrap()]);
    assert_eq!(code, 1, "warnings fail the lint by default");
    let got: Vec<String> = findings.iter().map(line).collect();
    let golden_path = repo().join("cli/tests/golden/petstore.lint.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let header = std::fs::read_to_string(&golden_path)
            .unwrap_or_default()
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        std::fs::write(&golden_path, format!("{header}{}\n", got.join("\n"))).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).unwrap();
    let want: Vec<&str> = golden
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(
        got,
        want,
        "lint output differs from {}",
        golden_path.display()
    );
}

#[test]
fn rules_can_be_disabled_relevelled_and_suppressed_inline() {
    let dir = scratch("lint-config");
    let spec = conformance("openapi/swagger-petstore-v3.openapi.yaml");
    let spec = spec.to_str().unwrap();
    let (_, all) = lint_json(&[spec]);
    let count = |fs: &[Value], rule: &str| fs.iter().filter(|f| f["rule"] == rule).count();
    assert!(count(&all, "oas/missing-429") > 10);

    let (_, disabled) = lint_json(&["--disable", "oas/missing-429", spec]);
    assert_eq!(count(&disabled, "oas/missing-429"), 0);
    assert_eq!(disabled.len(), all.len() - count(&all, "oas/missing-429"));

    let config = dir.join("lint.yaml");
    std::fs::write(
        &config,
        "rules:\n  oas/string-without-max-length: error\n  oas/missing-auth-responses: off\n",
    )
    .unwrap();
    let (code, relevelled) = lint_json(&[
        "--config",
        config.to_str().unwrap(),
        "--fail-on",
        "error",
        spec,
    ]);
    assert_eq!(code, 1);
    assert!(relevelled
        .iter()
        .filter(|f| f["rule"] == "oas/string-without-max-length")
        .all(|f| f["level"] == "error"));
    assert_eq!(count(&relevelled, "oas/missing-auth-responses"), 0);

    // Inline: x-apiguard-ignore on the operation silences its own findings and those below it.
    let text = std::fs::read_to_string(spec).unwrap();
    let marked = text.replacen(
        "  /user/login:\n    get:\n",
        "  /user/login:\n    get:\n      x-apiguard-ignore: {oas/operation-without-security: login is public by design, oas/credential-in-query: legacy clients}\n",
        1,
    );
    assert_ne!(marked, text, "the petstore layout changed");
    let copy = dir.join("petstore.yaml");
    std::fs::write(&copy, marked).unwrap();
    let (_, suppressed) = lint_json(&[copy.to_str().unwrap()]);
    let on_login = |fs: &[Value], rule: &str| {
        fs.iter()
            .filter(|f| {
                f["rule"] == rule
                    && f["path"]
                        .as_str()
                        .unwrap()
                        .starts_with("#/paths/~1user~1login/get")
            })
            .count()
    };
    assert_eq!(on_login(&all, "oas/operation-without-security"), 1);
    assert_eq!(on_login(&all, "oas/credential-in-query"), 1);
    assert_eq!(on_login(&suppressed, "oas/operation-without-security"), 0);
    assert_eq!(on_login(&suppressed, "oas/credential-in-query"), 0);
    assert_eq!(suppressed.len(), all.len() - 2);

    let (code, _) = lint_json(&["--fail-on", "none", spec]);
    assert_eq!(code, 0);
    assert_eq!(apiguard(&["lint", "--disable", "oas/nope", spec]).code, 2);
}

#[test]
fn sarif_output_is_sarif_2_1_0_with_rules_and_locations() {
    let spec = conformance("openapi/swagger-petstore-v3.openapi.yaml");
    let r = apiguard(&["lint", "--format", "sarif", spec.to_str().unwrap()]);
    let sarif: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for res in results {
        let index = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], res["ruleId"]);
        let region = &res["locations"][0]["physicalLocation"]["region"];
        assert!(region["startLine"].as_u64().unwrap() >= 1);
        assert!(["error", "warning", "note"].contains(&res["level"].as_str().unwrap()));
    }
    for rule in rules {
        let tags = rule["properties"]["tags"].as_array().unwrap();
        assert!(
            tags.iter()
                .any(|t| t.as_str().unwrap().starts_with("OWASP-API")),
            "{rule}"
        );
        assert!(rule["help"]["text"].as_str().unwrap().contains("Fix:"));
    }
}

#[test]
fn the_rules_petstore_does_not_trigger() {
    let spec = repo().join("cli/tests/fixtures/openapi-posture.yaml");
    let (_, findings) = lint_json(&[spec.to_str().unwrap()]);
    let got: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("oas/credential-in-query", "#/components/securitySchemes/key/in"),
        ("oas/sensitive-field-in-response", "#/paths/~1v2~1accounts~1{id}/get/responses/200/content/application~1json/schema/properties/cardNumber"),
        ("oas/id-in-path-without-scope", "#/paths/~1v1~1accounts~1{id}/get"),
        ("oas/version-without-deprecation", "#/paths/~1v1~1accounts~1{id}/get"),
        ("oas/http-server", "#/servers/0/url"),
    ];
    let mut want: Vec<(String, String)> = want
        .iter()
        .map(|(r, p)| (r.to_string(), p.to_string()))
        .collect();
    want.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    assert_eq!(got, want);
    // Deprecating v1 answers the version rule.
    let dir = scratch("lint-deprecated");
    let text = std::fs::read_to_string(&spec).unwrap().replacen(
        "    get:\n",
        "    get:\n      deprecated: true\n",
        1,
    );
    let copy = dir.join("posture.yaml");
    std::fs::write(&copy, text).unwrap();
    let (_, findings) = lint_json(&[copy.to_str().unwrap()]);
    assert!(findings
        .iter()
        .all(|f| f["rule"] != "oas/version-without-deprecation"));
}
