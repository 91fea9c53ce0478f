//! `apiguard check` and the filter agree on every configuration of the fuzz corpus
//! (fuzz/corpus/config): both accept it, or both refuse it naming the same JSON path. "The filter"
//! is `Policy::from_plugin_configuration`, the function `on_configure` calls, and, for a sample,
//! the real Envoy loading the built module (`envoy --mode validate` runs `on_configure`).
//! The same configurations written as YAML files get the same verdict.

mod common;

use apiguard::config::Policy;
use common::{check_json, envoy_and_wasm, envoy_validate, repo, scratch};
use serde_json::json;
use std::path::PathBuf;

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("fuzz/corpus/config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "the config corpus has {} files",
        files.len()
    );
    files
}

/// check's verdict: None when accepted, else the path of its first error (the filter's; further
/// errors, found by setting the faulty part aside, follow it).
fn verdict(file: &std::path::Path) -> Option<String> {
    let (code, findings) = check_json(file);
    let errors: Vec<_> = findings.iter().filter(|f| f["level"] == "error").collect();
    match errors.first() {
        None => {
            assert_eq!(code, 0, "{}", file.display());
            None
        }
        Some(first) => {
            assert_eq!(code, 1, "{}", file.display());
            Some(first["path"].as_str().unwrap().to_string())
        }
    }
}

#[test]
fn check_and_the_filter_agree_on_every_corpus_config() {
    let dir = scratch("corpus-yaml");
    let (mut accepted, mut refused) = (0, 0);
    for file in corpus() {
        let bytes = std::fs::read(&file).unwrap();
        let filter = Policy::from_plugin_configuration(&bytes)
            .err()
            .map(|e| e.path);
        let check = verdict(&file);
        assert_eq!(
            check,
            filter,
            "{}: check and the filter disagree",
            file.display()
        );
        if filter.is_some() {
            refused += 1
        } else {
            accepted += 1
        }

        // The same text as a .yaml file: JSON is YAML's flow syntax, so it is read by the YAML
        // reader, converted to JSON and compiled by the same function.
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            if value.is_object() {
                let yaml = dir.join(format!(
                    "{}.yaml",
                    file.file_stem().unwrap().to_string_lossy()
                ));
                std::fs::write(&yaml, &bytes).unwrap();
                let converted =
                    Policy::from_plugin_configuration(&serde_json::to_vec(&value).unwrap())
                        .err()
                        .map(|e| e.path);
                assert_eq!(
                    converted,
                    filter,
                    "{}: converting changes the filter's verdict",
                    file.display()
                );
                assert_eq!(
                    verdict(&yaml),
                    filter,
                    "{}: the YAML form gets another verdict",
                    file.display()
                );
            }
        }
    }
    assert!(
        accepted >= 5 && refused >= 5,
        "accepted {accepted}, refused {refused}"
    );
}

#[test]
fn check_and_envoy_agree_on_a_sample_of_the_corpus() {
    let (envoy, wasm) = envoy_and_wasm();
    let dir = scratch("corpus-envoy");
    let sample = [
        "docs_0.json",
        "docs_1.json",
        "full.json",
        "trailing_garbage.json",
        "var_01.json",
        "var_08.json",
        "var_10.json",
        "var_13.json",
    ];
    for name in sample {
        let file = repo().join("fuzz/corpus/config").join(name);
        let text = std::fs::read_to_string(&file).unwrap();
        let check = verdict(&file);
        // The configuration as Envoy's StringValue, byte for byte.
        let bootstrap = json!({
            "static_resources": {"listeners": [{
                "name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "t",
                    "route_config": {"virtual_hosts": [{"name": "a", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
                    "http_filters": [
                        {"name": "envoy.filters.http.wasm", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                            "config": {"name": "apiguard", "root_id": "apiguard",
                                "vm_config": {"vm_id": "apiguard", "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm}}},
                                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": text}}}},
                        {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                    ]}}]}]}],
                "clusters": [
                    {"name": "jwks", "type": "STATIC", "load_assignment": {"cluster_name": "jwks", "endpoints": []}},
                    {"name": "idp", "type": "STATIC", "load_assignment": {"cluster_name": "idp", "endpoints": []}}
                ]}
        });
        let path = dir.join(format!("{name}.bootstrap.json"));
        std::fs::write(&path, serde_json::to_string(&bootstrap).unwrap()).unwrap();
        let (ok, log) = envoy_validate(&envoy, &path);
        match &check {
            None => assert!(ok, "{name}: check accepts it, Envoy refuses it:\n{log}"),
            Some(p) => {
                assert!(!ok, "{name}: check refuses it at {p}, Envoy accepts it");
                assert!(
                    log.contains(&format!("invalid configuration at {p}:")),
                    "{name}: Envoy's log does not name {p}:\n{log}"
                );
            }
        }
    }
}
