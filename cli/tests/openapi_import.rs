//! `apiguard openapi import`: every OpenAPI document in ../shared/conformance/openapi/ imports (in
//! its YAML form where it has one) into a document the filter's own compiler accepts; `$ref`s across
//! files are carried over; what cannot be carried is reported by JSON pointer with its position.

mod common;

use apiguard::schema::OpenApi;
use common::{apiguard, conformance, repo, scratch};
use serde_json::Value;

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|c| refs(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
        _ => {}
    }
}

fn import(spec: &std::path::Path, out: &std::path::Path) -> common::Output {
    apiguard(&[
        "openapi",
        "import",
        spec.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ])
}

#[test]
fn every_conformance_document_imports_yaml_first() {
    let dir = scratch("import-conformance");
    let mut names: Vec<String> = std::fs::read_dir(conformance("openapi"))
        .unwrap_or_else(|e| panic!("../shared/conformance/openapi: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") || n.ends_with(".yaml"))
        .collect();
    names.sort();
    let mut imported = 0;
    for name in &names {
        let stem = name.trim_end_matches(".json").trim_end_matches(".yaml");
        // The YAML form where there is one.
        if name.ends_with(".json") && names.contains(&format!("{stem}.yaml")) {
            continue;
        }
        let out = dir.join(format!("{stem}.imported.json"));
        let r = import(&conformance("openapi").join(name), &out);
        assert_eq!(r.code, 0, "{name}: {}{}", r.stdout, r.stderr);
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let api = OpenApi::compile(&doc, true, None).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(api.operations().count() > 0, "{name}: no operations");
        imported += 1;
    }
    assert!(imported >= 5, "imported {imported}");
}

#[test]
fn the_yaml_petstore_imports_as_its_json_form() {
    let dir = scratch("import-petstore");
    let out = dir.join("petstore.json");
    let r = import(
        &conformance("openapi/swagger-petstore-v3.openapi.yaml"),
        &out,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let from_yaml: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(conformance("openapi/swagger-petstore-v3.openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(from_yaml, json);
}

#[test]
fn refs_across_files_are_carried_over() {
    let dir = scratch("import-multi");
    let out = dir.join("items.json");
    let spec = repo().join("cli/tests/fixtures/openapi-multi/main.yaml");
    let r = import(&spec, &out);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(
        !all.is_empty() && all.iter().all(|r| r.starts_with("#/components/schemas/")),
        "{all:?}"
    );
    // The root's own Item is kept; the other file's Item is hoisted as Item_2, recursion included.
    assert_eq!(doc["components"]["schemas"]["Item"]["type"], "string");
    assert_eq!(
        doc["components"]["schemas"]["Item_2"]["properties"]["children"]["items"]["$ref"],
        "#/components/schemas/Item_2"
    );
    assert_eq!(
        doc["paths"]["/items/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/Item_2"
    );
    // A parameter that is a member of another file is inlined.
    assert_eq!(
        doc["paths"]["/items/{id}"]["get"]["parameters"][0]["name"],
        "limit"
    );
    assert_eq!(doc["paths"]["/items/{id}"]["parameters"][0]["in"], "path");

    // The filter enforces the carried-over schemas.
    let api = OpenApi::compile(&doc, true, None).unwrap();
    assert_eq!(api.operations().count(), 2);
}

#[test]
fn what_cannot_be_carried_is_reported_by_pointer_and_position() {
    let dir = scratch("import-remote");
    let out = dir.join("remote.json");
    let spec = repo().join("cli/tests/fixtures/openapi-remote.yaml");
    let r = apiguard(&[
        "openapi",
        "import",
        "--format",
        "json",
        spec.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["rule"], "openapi/not-carried");
    assert_eq!(
        findings[0]["path"],
        "#/paths/~1x/post/requestBody/content/application~1json/schema/$ref"
    );
    assert_eq!(
        (findings[0]["line"].as_u64(), findings[0]["column"].as_u64()),
        (Some(9), Some(22))
    );

    // An unsupported keyword, found by the filter's compiler, at its line.
    let spec = dir.join("unevaluated.yaml");
    std::fs::write(&spec, "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema:\n              type: object\n              unevaluatedProperties: false\n      responses: {'200': {description: ok}}\n").unwrap();
    let r = apiguard(&[
        "openapi",
        "import",
        spec.to_str().unwrap(),
        "-o",
        dir.join("u.json").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("unevaluated.yaml:11:15: error[openapi/not-carried] #/paths/~1a/post/requestBody/content/application~1json/schema/unevaluatedProperties"), "{}", r.stderr);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(apiguard(&["openapi", "import"]).code, 2);
    assert_eq!(apiguard(&["openapi", "export", "x"]).code, 2);
    assert_eq!(
        apiguard(&["openapi", "import", "/nonexistent.yaml"]).code,
        2
    );
    assert_eq!(
        apiguard(&["openapi", "import", "--format", "sarif", "x.yaml"]).code,
        2
    );
}
