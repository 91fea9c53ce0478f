//! `apiguard render`: the Envoy bootstrap is accepted by the real Envoy (`envoy --mode validate`
//! loads the built module and runs on_configure on the policy), and the Istio WasmPlugin is valid
//! against the WasmPlugin CRD's schema (fixtures/wasmplugin-crd-v1alpha1.json, from Istio). Both
//! carry docs/deployment.md's settings, and `apiguard check` accepts what render wrote.

mod common;

use common::{apiguard, check_json, envoy_and_wasm, envoy_validate, repo, scratch};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Policies to render: the Istio example's, the README's, the fuzz corpus's fullest, and one that
/// calls a discovery collector over TLS and keys a limit by client address.
fn policies(dir: &std::path::Path) -> Vec<PathBuf> {
    let discovery = dir.join("discovery.json");
    std::fs::write(
        &discovery,
        json!({
            "on_no_match": "deny",
            "rate_limits": {"per_ip": {"requests": 10, "period": "1s", "key": [{"client_address": {"use_remote_address": true}}]}},
            "discovery": {"collector": {"cluster": "collector", "uri": "https://collector.example.com:4318/v1/apiguard"}},
            "rules": [{"match": {"prefix": "/"}, "rate_limits": "per_ip"}]
        })
        .to_string(),
    )
    .unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("```json\n").unwrap() + 8;
    let end = start + readme[start..].find("```").unwrap();
    let readme_policy = dir.join("readme.json");
    std::fs::write(&readme_policy, &readme[start..end]).unwrap();
    vec![
        repo().join("envoy/istio/wasmplugin.yaml"),
        readme_policy,
        repo().join("fuzz/corpus/config/full.json"),
        discovery,
    ]
}

#[test]
fn rendered_envoy_bootstraps_pass_envoy_validate() {
    let (envoy, wasm) = envoy_and_wasm();
    let dir = scratch("render-envoy");
    for (i, policy) in policies(&dir).iter().enumerate() {
        let out = dir.join(format!("bootstrap-{i}.yaml"));
        let r = apiguard(&[
            "render",
            "envoy",
            "--wasm",
            wasm.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            policy.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0, "{}: {}", policy.display(), r.stderr);
        let text = std::fs::read_to_string(&out).unwrap();
        for setting in [
            "normalize_path: true",
            "merge_slashes: true",
            "path_with_escaped_slashes_action: REJECT_REQUEST",
            "strip_trailing_host_dot: true",
            "headers_with_underscores_action: REJECT_REQUEST",
            "use_remote_address: true",
            "failure_policy: FAIL_RELOAD",
        ] {
            assert!(
                text.contains(setting),
                "{}: no `{setting}`",
                policy.display()
            );
        }
        let (ok, log) = envoy_validate(&envoy, &out);
        assert!(
            ok,
            "{}: Envoy refuses the rendered bootstrap:\n{log}",
            policy.display()
        );
        assert!(
            log.contains("configured:"),
            "{}: the filter did not configure:\n{log}",
            policy.display()
        );
        // check reads the bootstrap back: the policy compiles, and the client-address key is
        // covered by the stated use_remote_address.
        let (code, findings) = check_json(&out);
        assert_eq!(code, 0, "{findings:#?}");
        assert!(
            findings.iter().all(|f| f["rule"] != "policy/trusted-hops"),
            "{findings:#?}"
        );
    }
    // The JWKS and collector clusters the policies call are there.
    let text = std::fs::read_to_string(dir.join("bootstrap-3.yaml")).unwrap();
    assert!(
        text.contains("name: collector")
            && text.contains("sni: collector.example.com")
            && text.contains("port_value: 4318"),
        "{text}"
    );
}

/// The CRD schema as Kubernetes applies it: objects that do not preserve unknown fields refuse
/// them (strict field validation); the one CEL rule that matters here is asserted separately.
fn structural(v: &mut Value) {
    if let Value::Object(m) = v {
        if m.contains_key("properties") && !m.contains_key("x-kubernetes-preserve-unknown-fields") {
            m.insert("additionalProperties".into(), json!(false));
        }
        for (_, child) in m.iter_mut() {
            structural(child);
        }
    } else if let Value::Array(a) = v {
        a.iter_mut().for_each(structural);
    }
}

fn crd_validator() -> jsonschema::Validator {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("cli/tests/fixtures/wasmplugin-crd-v1alpha1.json"))
            .unwrap(),
    )
    .unwrap();
    let mut schema = fixture["openAPIV3Schema"].clone();
    structural(&mut schema["properties"]["spec"]);
    jsonschema::draft4::new(&schema).unwrap()
}

#[test]
fn rendered_wasmplugins_match_the_crd_schema() {
    let dir = scratch("render-istio");
    let validator = crd_validator();
    for (i, policy) in policies(&dir).iter().enumerate() {
        let r = apiguard(&["render", "istio", "--json", policy.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}: {}", policy.display(), r.stderr);
        let list: Value = serde_json::from_str(&r.stdout).unwrap();
        let plugin = &list["items"][0];
        assert_eq!(plugin["kind"], "WasmPlugin");
        // check reads the JSON List too.
        let listed = dir.join(format!("plugin-{i}.json"));
        std::fs::write(&listed, &r.stdout).unwrap();
        let (code, findings) = check_json(&listed);
        assert_eq!(code, 0, "{findings:#?}");
        let errors: Vec<String> = validator
            .iter_errors(plugin)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", policy.display());
        assert!(
            plugin["spec"].get("selector").is_none() || plugin["spec"].get("targetRefs").is_none()
        );
        assert_eq!(plugin["spec"]["failStrategy"], "FAIL_RELOAD");
        assert_eq!(plugin["spec"]["phase"], "AUTHN");
        let filter = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["kind"] == "EnvoyFilter")
            .unwrap();
        assert_eq!(
            filter["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]
                ["path_with_escaped_slashes_action"],
            "REJECT_REQUEST"
        );

        // The YAML form says the same, and check accepts its pluginConfig.
        let yaml = dir.join(format!("plugin-{i}.yaml"));
        let r = apiguard(&[
            "render",
            "istio",
            "-o",
            yaml.to_str().unwrap(),
            policy.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0);
        let (code, findings) = check_json(&yaml);
        assert_eq!(code, 0, "{findings:#?}");
    }
    // Cluster names follow Istio's naming, with a ServiceEntry for each external host.
    let r = apiguard(&[
        "render",
        "istio",
        "--json",
        dir.join("discovery.json").to_str().unwrap(),
    ]);
    let list: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        list["items"][0]["spec"]["pluginConfig"]["discovery"]["collector"]["cluster"],
        "outbound|4318||collector.example.com"
    );
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["kind"] == "ServiceEntry" && d["spec"]["hosts"][0] == "collector.example.com"));
    assert!(
        r.stderr
            .contains("becomes `outbound|4318||collector.example.com`"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_crd_check_refuses_what_kubernetes_refuses() {
    let validator = crd_validator();
    let good = json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": "a"},
                      "spec": {"url": "oci://x/y:1", "phase": "AUTHN", "pluginConfig": {"any": {"thing": 1}}}});
    assert!(validator.is_valid(&good));
    for bad in [
        json!({"spec": {"url": "oci://x/y:1", "failStrategy": "FAIL_SOMETIMES"}}),
        json!({"spec": {"phase": "AUTHN"}}),
        json!({"spec": {"url": "oci://x/y:1", "pluginconfig": {}}}),
        json!({"spec": {"url": "oci://x/y:1", "selector": {"matchLabels": {"app": 1}}}}),
    ] {
        assert!(!validator.is_valid(&bad), "{bad}");
    }
}

#[test]
fn a_policy_the_filter_refuses_is_not_rendered() {
    let dir = scratch("render-bad");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "rules:\n  - match: {prefix: api}\n").unwrap();
    let r = apiguard(&["render", "envoy", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr
            .contains("bad.yaml:2:13: error[policy/invalid] rules[0].match.prefix"),
        "{}",
        r.stderr
    );
    assert_eq!(
        apiguard(&["render", "nginx", bad.to_str().unwrap()]).code,
        1
    );
    assert_eq!(apiguard(&["render", "envoy"]).code, 2);
}

/// A policy with a rate limit service backend: the rendered cluster speaks HTTP/2 and points at
/// `--rate-limit-service`. `envoy --mode validate` cannot judge this one: its cluster manager starts no
/// gRPC call, so the filter's configure-time probe of the cluster fails there. The bootstrap is run by
/// a real Envoy instead (ports 0), until the filter says it is configured.
#[test]
fn a_rate_limit_service_cluster_is_rendered_with_http2_and_a_real_envoy_configures_the_filter() {
    let (envoy, wasm) = envoy_and_wasm();
    let dir = scratch("render-service");
    let policy = dir.join("service.json");
    std::fs::write(
        &policy,
        json!({
            "rate_limits": {"global": {"tier": "service", "key": [{"header": "x-tenant"}],
                "service": {"cluster": "ratelimit", "domain": "apiguard"}}},
            "rules": [{"match": {"prefix": "/"}, "rate_limits": "global"}]
        })
        .to_string(),
    )
    .unwrap();
    let out = dir.join("bootstrap.json");
    let r = apiguard(&[
        "render",
        "envoy",
        "--json",
        "--wasm",
        wasm.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--rate-limit-service",
        "127.0.0.1:18081",
        "-o",
        out.to_str().unwrap(),
        policy.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let bootstrap: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let clusters = bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap();
    let rls = clusters
        .iter()
        .find(|c| c["name"] == "ratelimit")
        .expect("the ratelimit cluster");
    assert_eq!(
        rls["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
            ["http2_protocol_options"],
        json!({}),
        "{rls:#}"
    );
    assert_eq!(
        rls["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"],
        json!({"address": "127.0.0.1", "port_value": 18081})
    );
    let log_path = dir.join("envoy.log");
    let mut child = std::process::Command::new(&envoy)
        .args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "info",
            "-c",
        ])
        .arg(&out)
        .arg("--log-path")
        .arg(&log_path)
        .spawn()
        .expect("start envoy");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let done = log.contains("configured:") || log.contains("Failed to configure");
        if done || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        log.contains("configured:") && !log.contains("Failed to configure"),
        "the filter did not configure with the rendered cluster:\n{log}"
    );
}

/// Istio: with `--rate-limit-service`, the service clusters take Istio's name for the host and a
/// ServiceEntry gives the port the name `grpc` and protocol GRPC (HTTP/2, which gRPC from wasm
/// needs); without the flag, a note says what to pass; a host of the mesh gets no ServiceEntry.
#[test]
fn istio_renders_a_grpc_service_entry_for_the_rate_limit_service() {
    let dir = scratch("render-istio-rls");
    let policy = dir.join("service.json");
    std::fs::write(
        &policy,
        json!({
            "rate_limits": {
                "global": {"key": [{"header": "x-tenant"}], "service": {"cluster": "ratelimit", "domain": "apiguard"}},
                "share": {"tier": "local_then_service", "requests": 10, "period": "1s", "key": [{"header": "x-tenant"}],
                          "service": {"cluster": "ratelimit", "domain": "apiguard"}}
            },
            "rules": [{"match": {"prefix": "/"}, "rate_limits": ["global", "share"]}]
        })
        .to_string(),
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    let render = |extra: &[&str]| {
        let mut argv = vec!["render", "istio", "--json"];
        argv.extend_from_slice(extra);
        argv.push(p);
        let r = apiguard(&argv);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let list: Value = serde_json::from_str(&r.stdout).unwrap();
        (list["items"].as_array().unwrap().clone(), r.stderr)
    };
    let (items, notes) = render(&["--rate-limit-service", "rls.example.internal:8081"]);
    let config = &items[0]["spec"]["pluginConfig"];
    for name in ["global", "share"] {
        assert_eq!(
            config["rate_limits"][name]["service"]["cluster"],
            "outbound|8081||rls.example.internal"
        );
    }
    let entries: Vec<&Value> = items
        .iter()
        .filter(|d| d["kind"] == "ServiceEntry")
        .collect();
    assert_eq!(entries.len(), 1, "{items:#?}");
    assert_eq!(entries[0]["spec"]["hosts"], json!(["rls.example.internal"]));
    assert_eq!(
        entries[0]["spec"]["ports"],
        json!([{"number": 8081, "name": "grpc", "protocol": "GRPC"}])
    );
    assert!(
        notes.contains("becomes `outbound|8081||rls.example.internal`"),
        "{notes}"
    );
    // check accepts what was rendered (the plugin's configuration still compiles).
    let listed = dir.join("list.json");
    std::fs::write(
        &listed,
        serde_json::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": items}))
            .unwrap(),
    )
    .unwrap();
    let (code, findings) = check_json(&listed);
    assert_eq!(code, 0, "{findings:#?}");

    let (items, notes) = render(&[]);
    assert!(!items.iter().any(|d| d["kind"] == "ServiceEntry"));
    assert!(notes.contains("--rate-limit-service HOST:PORT"), "{notes}");
    assert_eq!(
        items[0]["spec"]["pluginConfig"]["rate_limits"]["global"]["service"]["cluster"],
        "ratelimit"
    );

    let (items, notes) = render(&[
        "--rate-limit-service",
        "ratelimit.ratelimit.svc.cluster.local:8081",
    ]);
    assert!(!items.iter().any(|d| d["kind"] == "ServiceEntry"));
    assert!(notes.contains("name its port `grpc`"), "{notes}");
    assert_eq!(
        items[0]["spec"]["pluginConfig"]["rate_limits"]["share"]["service"]["cluster"],
        "outbound|8081||ratelimit.ratelimit.svc.cluster.local"
    );
}
