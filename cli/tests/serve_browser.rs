//! A real headless Chromium (Debian `chromium` + `chromium-driver`, driven over WebDriver) signs
//! in to the page, reads the inventory table, filters it, opens an endpoint and the findings, and
//! takes screenshots (into target/serve-screenshots/, or docs/screenshots/ with
//! `APIGUARD_UPDATE_SCREENSHOTS=1`). Without chromium and chromedriver the test fails and says so.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod serve_common;

use base64ct::{Base64, Encoding};
use serde_json::{json, Value};
use serve_common::*;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

struct Driver {
    port: u16,
    child: Child,
    session: String,
}

impl Driver {
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if method == "GET" || method == "DELETE" {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let r = request(
            self.port,
            method,
            path,
            &[("content-type", "application/json")],
            &body,
        )
        .unwrap();
        let v = r.json();
        assert!(r.status == 200, "WebDriver {method} {path}: {}", r.text());
        v["value"].clone()
    }

    fn start(profile: &std::path::Path) -> Driver {
        for (what, path) in [
            ("chromium", CHROMIUM),
            ("chromedriver (chromium-driver)", DRIVER),
        ] {
            assert!(
                std::path::Path::new(path).exists(),
                "{what} is not installed at {path}: apt-get install chromium chromium-driver"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut d = Driver {
            port,
            child,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while request(port, "GET", "/status", &[], b"")
            .map(|r| r.status != 200)
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--window-size=1400,900", format!("--user-data-dir={}", profile.display())]}}}});
        let r = request(
            port,
            "POST",
            "/session",
            &[("content-type", "application/json")],
            caps.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "new session: {}", r.text());
        d.session = r.json()["value"]["sessionId"].as_str().unwrap().to_string();
        d
    }

    fn go(&self, url: &str) {
        self.call(
            "POST",
            &format!("/session/{}/url", self.session),
            json!({"url": url}),
        );
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &format!("/session/{}/element", self.session),
            json!({"using": "css selector", "value": css}),
        );
        v.as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        let v = self.call(
            "POST",
            &format!("/session/{}/elements", self.session),
            json!({"using": "css selector", "value": css}),
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e.as_object()
                    .unwrap()
                    .values()
                    .next()
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn text(&self, element: &str) -> String {
        self.call(
            "GET",
            &format!("/session/{}/element/{element}/text", self.session),
            json!({}),
        )
        .as_str()
        .unwrap()
        .to_string()
    }

    fn click(&self, element: &str) {
        self.call(
            "POST",
            &format!("/session/{}/element/{element}/click", self.session),
            json!({}),
        );
    }

    fn type_in(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/session/{}/element/{element}/value", self.session),
            json!({"text": text}),
        );
    }

    fn url(&self) -> String {
        self.call("GET", &format!("/session/{}/url", self.session), json!({}))
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits (bounded) until the browser is at a URL ending with `suffix`; a click does not wait
    /// for the navigation it starts.
    fn wait_for_url(&self, suffix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.url();
            if url.ends_with(suffix) || Instant::now() > deadline {
                return url;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, name: &str) {
        let b64 = self.call(
            "GET",
            &format!("/session/{}/screenshot", self.session),
            json!({}),
        );
        let png = Base64::decode_vec(b64.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = if std::env::var("APIGUARD_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/screenshots"))
        } else {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/serve-screenshots"
            ))
        };
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                &[],
                b"",
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn chromium_reads_the_inventory_a_finding_and_an_endpoint() {
    let s = Server::start(
        "browser",
        &[
            "--proxy-token",
            "p1=token-1",
            "--read-token",
            "read-token",
            "--retired-prefix",
            "/v1/",
        ],
    );
    let auth = [("authorization", "Bearer read-token")];
    let mut spec = petstore();
    spec["servers"] = json!([{"url": "/api/v3"}]);
    assert_eq!(
        s.request(
            "PUT",
            "/api/v1/specs/petstore",
            &auth,
            spec.to_string().as_bytes()
        )
        .status,
        200
    );
    let mut pet = endpoint("petstore", "GET", "/api/v3/pet/{petId}", "declared");
    pet["auth"] = json!(["bearer_jwt"]);
    pet["findings"] = json!([]);
    let mut export = endpoint("petstore", "GET", "/api/v3/internal/export", "inferred");
    export["data_classes"]["response"] = json!(["email"]);
    export["findings"] = json!(["no_authentication", "sensitive_data_unauthenticated"]);
    let old = endpoint("petstore", "GET", "/v1/pet/{id}", "inferred");
    let grpc = {
        let mut g = endpoint("orders", "POST", "/orders.v1.Orders/Create", "literal");
        g["api_type"] = json!("grpc");
        g["auth"] = json!(["bearer_jwt"]);
        g["findings"] = json!([]);
        g
    };
    assert_eq!(
        s.post_batch(
            "token-1",
            &batch(
                "node-1",
                "0",
                1_700_000_000_000,
                vec![pet, export, old, grpc]
            )
        )
        .status,
        200
    );

    let profile = temp_dir("chromium-profile");
    let d = Driver::start(&profile);
    let base = format!("http://127.0.0.1:{}", s.port);
    // Without the cookie the page sends the browser to sign in.
    d.go(&format!("{base}/"));
    assert!(d.url().ends_with("/login"), "{}", d.url());
    let input = d.find("input[name=token]");
    d.type_in(&input, "read-token");
    d.click(&d.find("form button"));
    assert_eq!(d.wait_for_url(&format!("{}/", s.port)), format!("{base}/"));

    let rows = d.find_all("#inventory tbody tr");
    assert_eq!(rows.len(), 4);
    let texts: Vec<String> = rows.iter().map(|r| d.text(r)).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("/api/v3/internal/export") && t.contains("shadow")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("/v1/pet/{id}") && t.contains("zombie")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("/orders.v1.Orders/Create") && t.contains("grpc")),
        "{texts:?}"
    );
    assert_eq!(d.text(&d.find("#n-endpoints")), "4");
    d.screenshot("serve-inventory.png");

    // Filter by verdict through the form.
    d.go(&format!("{base}/?verdict=shadow"));
    let rows = d.find_all("#inventory tbody tr");
    assert_eq!(rows.len(), 1);
    // The endpoint detail, reached by its link.
    let link = d.find("#inventory tbody tr a");
    let target = d.call(
        "GET",
        &format!("/session/{}/element/{link}/attribute/href", d.session),
        json!({}),
    );
    let target = target.as_str().unwrap().to_string();
    d.click(&link);
    assert!(
        d.wait_for_url(&target).contains("/endpoints/"),
        "{}",
        d.url()
    );
    let detail = d.text(&d.find("#endpoint-findings"));
    assert!(
        detail.contains("shadow_endpoint") && detail.contains("API9:2023"),
        "{detail}"
    );
    assert!(
        detail.contains("sensitive_data_unauthenticated") && detail.contains("API3:2023"),
        "{detail}"
    );
    d.screenshot("serve-endpoint.png");

    // The findings list and the report.
    d.go(&format!("{base}/findings"));
    let zombie = d.find("#findings tr[data-code=zombie_endpoint]");
    let text = d.text(&zombie);
    assert!(
        text.contains("high") && text.contains("API9:2023") && text.contains("/v1/pet/{id}"),
        "{text}"
    );
    d.screenshot("serve-findings.png");
    d.go(&format!("{base}/report"));
    assert!(d
        .text(&d.find("#shadow"))
        .contains("/api/v3/internal/export"));
    assert!(d.text(&d.find("#unused")).contains("/api/v3/user/login"));
    d.screenshot("serve-report.png");
    // The spec download link points at a document that exists.
    d.go(&format!("{base}/"));
    let links: Vec<String> = d.find_all("a.spec").iter().map(|l| d.text(l)).collect();
    assert_eq!(links, vec!["orders (download)", "petstore (download)"]);
    let r = s.request("GET", "/api/v1/openapi/petstore", &auth, b"");
    assert_eq!(r.json()["openapi"], "3.1.0");
}
