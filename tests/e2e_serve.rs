//! The other end of discovery, end to end: two real Envoys with the filter send their batches to a
//! real `apiguard serve` (the workspace's `apiguard` binary) with their own collector tokens. One
//! proxy has the Petstore as its declared document, the other infers templates; both send declared,
//! shadow and retired-version traffic. The service shows one merged inventory, the verdicts the
//! declared document gives, the findings, and a reconstructed OpenAPI 3.1 document with the real
//! templates (checked by `openapi-spec-validator` when `.venv-test` has it: `make serve-test-deps`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

mod common;

use common::{e2e_paths, send_h1, Echo, Envoy, EnvoyOpts, Req};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READ: &str = "e2e-read-token";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `apiguard` binary of the workspace (`cargo build -p apiguard-cli`, or APIGUARD_BIN).
fn serve_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("APIGUARD_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| repo().join(d))
        .unwrap_or_else(|| repo().join("target"));
    let p = target.join("debug/apiguard");
    assert!(
        p.is_file(),
        "end-to-end test cannot run: {} is missing (`cargo build -p apiguard-cli`, or set APIGUARD_BIN)",
        p.display()
    );
    p
}

struct Serve {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl Serve {
    fn start(filter_config: &Value) -> Serve {
        let dir = std::env::temp_dir().join(format!(
            "apiguard-e2e-serve-{}-{}",
            std::process::id(),
            common::reserve_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("filter.json");
        std::fs::write(&config, filter_config.to_string()).unwrap();
        let port = common::reserve_port();
        let child = Command::new(serve_binary())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--store",
                &format!("sqlite:{}", dir.join("inventory.db").display()),
            ])
            .args([
                "--proxy-token",
                "edge-a=token-a",
                "--proxy-token",
                "edge-b=token-b",
            ])
            .args(["--read-token", READ, "--filter-config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Serve { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.get("/healthz").map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "apiguard serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn get(&self, path: &str) -> Option<(u16, Value)> {
        let r = send_h1(
            self.port,
            &Req::get(path).header("authorization", &format!("Bearer {READ}")),
        )
        .ok()?;
        Some((
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        ))
    }

    fn json(&self, path: &str) -> Value {
        let (status, v) = self.get(path).unwrap();
        assert_eq!(status, 200, "{path}: {v}");
        v
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn petstore() -> Value {
    let text = std::fs::read_to_string(
        repo().join("../shared/conformance/openapi/swagger-petstore-v3.openapi.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn discovery(token: &str, declared: bool) -> Value {
    let mut d = json!({
        "collector": {"cluster": "collector", "uri": "http://collector/v1/apiguard", "timeout": "2s",
                      "token": token, "retry": {"base_interval": "200ms", "max_interval": "1s"}},
        "flush_interval": "1s",
        "retired_prefixes": ["/v1/"]
    });
    if declared {
        d["declared_openapi"] = petstore();
    }
    json!({"discovery": d, "rules": [{"name": "all", "match": {"prefix": "/"}}]})
}

fn find<'a>(all: &'a Value, method: &str, template: &str) -> Option<&'a Value> {
    all.as_array()?
        .iter()
        .find(|e| e["method"] == method && e["path_template"] == template)
}

fn two_proxies_fill_one_inventory_with_verdicts_findings_and_a_valid_spec() {
    let paths = e2e_paths().unwrap();
    let with_doc = discovery("token-a", true);
    let serve = Serve::start(&with_doc);
    let echo = Echo::start();
    let a = Envoy::start(
        &paths,
        &with_doc.to_string(),
        &EnvoyOpts::new(&echo).collector(serve.port),
    );
    let b = Envoy::start(
        &paths,
        &discovery("token-b", false).to_string(),
        &EnvoyOpts::new(&echo).collector(serve.port),
    );
    let json_body = [("content-type", "application/json")];
    for (envoy, method, path, body) in [
        (&a, "GET", "/api/v3/pet/42", &b""[..]),
        (&a, "GET", "/api/v3/pet/43", b""),
        (&a, "GET", "/api/v3/pet/findByStatus?status=sold", b""),
        (
            &a,
            "POST",
            "/api/v3/pet",
            br#"{"name": "rex", "photoUrls": ["a"], "status": "available"}"#,
        ),
        (&a, "GET", "/api/v3/admin/export", b""),
        (&a, "GET", "/v1/pet/7", b""),
        (&b, "GET", "/api/v3/pet/44", b""),
        (&b, "GET", "/api/v3/internal/debug?verbose=1", b""),
    ] {
        let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &json_body };
        let r = envoy.request(method, path, headers, body);
        assert_eq!(r.status, 200, "{method} {path}: {}", r.describe());
    }
    // Batches flush every second; the merged endpoint is complete once both proxies reported it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = loop {
        let all = serve.json("/api/v1/endpoints");
        let done = find(&all, "GET", "/api/v3/pet/{petId}").is_some_and(|e| {
            e["count"] == 3 && e["proxies"].as_array().is_some_and(|p| p.len() == 2)
        }) && find(&all, "GET", "/api/v3/internal/debug").is_some()
            && find(&all, "GET", "/v1/pet/{id}").is_some()
            && find(&all, "POST", "/api/v3/pet").is_some();
        if done || Instant::now() > deadline {
            break all;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let pet = find(&all, "GET", "/api/v3/pet/{petId}").unwrap_or_else(|| panic!("{all:#}"));
    assert_eq!(pet["count"], 3, "{pet:#}");
    assert_eq!(pet["verdict"], "declared");
    assert_eq!(
        pet["template_source"], "declared",
        "the declared spelling wins over {{id}}"
    );
    let proxies: Vec<&str> = pet["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        proxies[0].starts_with("edge-a") && proxies[1].starts_with("edge-b"),
        "{proxies:?}"
    );
    assert_eq!(
        find(&all, "GET", "/api/v3/pet/findByStatus").unwrap()["verdict"],
        "declared"
    );
    assert_eq!(
        find(&all, "GET", "/api/v3/pet/findByStatus").unwrap()["query_params"],
        json!(["status"])
    );
    assert_eq!(
        find(&all, "GET", "/api/v3/admin/export").unwrap()["verdict"],
        "shadow"
    );
    assert_eq!(
        find(&all, "GET", "/api/v3/internal/debug").unwrap()["verdict"],
        "shadow"
    );
    assert_eq!(
        find(&all, "GET", "/v1/pet/{id}").unwrap()["verdict"],
        "zombie"
    );
    let post = find(&all, "POST", "/api/v3/pet").unwrap();
    assert_eq!(post["verdict"], "declared");
    let text = all.to_string();
    assert!(
        !text.contains("rex") && !text.contains("/42"),
        "no values reach the inventory"
    );

    let report = serve.json("/api/v1/report");
    assert!(report["unused"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["method"] == "DELETE" && u["path_template"] == "/api/v3/pet/{petId}"));
    assert_eq!(report["shadow"].as_array().unwrap().len(), 2);
    let findings = serve.json("/api/v1/findings");
    let has = |code: &str, owasp: &str| {
        findings
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == code && f["owasp"] == owasp)
    };
    assert!(
        has("no_authentication", "API2:2023")
            && has("zombie_endpoint", "API9:2023")
            && has("shadow_endpoint", "API9:2023")
    );

    let service = pet["service"].as_str().unwrap().to_string();
    let spec = serve.json(&format!("/api/v1/openapi/{service}"));
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(
        spec["paths"]["/api/v3/pet/{petId}"]["get"].is_object(),
        "{spec:#}"
    );
    let body = &spec["paths"]["/api/v3/pet"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        body["properties"]["photoUrls"],
        json!({"type": "array", "items": {"type": "string"}}),
        "{spec:#}"
    );
    let validator = repo().join(".venv-test/bin/openapi-spec-validator");
    assert!(
        validator.is_file(),
        "openapi-spec-validator missing: run `make serve-test-deps`"
    );
    let file = serve.dir.join("observed.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let out = Command::new(&validator).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The filters' batches were stored, and no proxy was refused.
    let m = send_h1(
        serve.port,
        &Req::get("/metrics").header("authorization", &format!("Bearer {READ}")),
    )
    .unwrap()
    .text();
    assert!(
        m.contains("apiguard_serve_rejects_total{reason=\"unauthorized\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("apiguard_serve_rejects_total{reason=\"invalid\"} 0"),
        "{m}"
    );
}

fn a_proxy_with_a_wrong_token_is_refused_and_counts_the_rejection() {
    let paths = e2e_paths().unwrap();
    let serve = Serve::start(&discovery("token-a", false));
    let echo = Echo::start();
    let envoy = Envoy::start(
        &paths,
        &discovery("not-a-token", false).to_string(),
        &EnvoyOpts::new(&echo).collector(serve.port),
    );
    assert_eq!(envoy.get("/api/v3/pet/1", &[]).status, 200);
    assert!(envoy.eventually(Duration::from_secs(15), |e| e
        .counter("apiguard_discovery_batches_rejected")
        >= 1));
    assert_eq!(serve.json("/api/v1/endpoints"), json!([]));
}

crate::per_protocol!(
    two_proxies_fill_one_inventory_with_verdicts_findings_and_a_valid_spec,
    a_proxy_with_a_wrong_token_is_refused_and_counts_the_rejection,
);
