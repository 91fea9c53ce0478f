//! Shared by the `apiguard serve` tests: start the binary on a free loopback port with its own
//! SQLite file, a minimal HTTP/1.1 client, and batch builders.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    pub args: Vec<String>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "apiguard-serve-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Server {
    /// Starts `apiguard serve` with `extra` arguments (and a store in a fresh directory).
    pub fn start(name: &str, extra: &[&str]) -> Server {
        let dir = temp_dir(name);
        let mut s = Server {
            port: 0,
            args: extra.iter().map(|s| s.to_string()).collect(),
            dir,
            child: None,
        };
        s.spawn();
        s
    }

    pub fn store_url(&self) -> String {
        format!("sqlite:{}", self.dir.join("inventory.db").display())
    }

    fn spawn(&mut self) {
        self.port = free_port();
        let log = std::fs::File::create(self.dir.join(format!("serve-{}.log", self.port))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_apiguard"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--store", &self.store_url()])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.try_request("GET", "/healthz", &[], b"") {
                if r.status == 200 {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "apiguard serve exited: {status}; log in {}",
                    self.dir.display()
                );
            }
            assert!(Instant::now() < deadline, "apiguard serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process (SIGKILL: no graceful shutdown) and starts it again on the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        request(self.port, method, path, headers, body)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request(method, path, headers, body).unwrap()
    }

    /// POSTs a batch with a proxy token.
    pub fn post_batch(&self, token: &str, batch: &Value) -> Response {
        let auth = format!("Bearer {token}");
        self.request(
            "POST",
            "/v1/apiguard",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            batch.to_string().as_bytes(),
        )
    }

    /// GETs a JSON API path with the read token.
    pub fn get_json(&self, path: &str, read_token: &str) -> Value {
        let auth = format!("Bearer {read_token}");
        let r = self.request("GET", path, &[("authorization", &auth)], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // A server may answer (413) and close before reading a large body.
    let _ = s.write_all(body);
    // Read until the body is complete (by content-length or the last chunk), or the end: some
    // servers (chromedriver) keep the connection open whatever the request said.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let (split, headers, status) = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before the header end",
            ));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).into_owned();
            let mut lines = head.lines();
            let status: u16 = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other("bad status line"))?;
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            break (split, headers, status);
        }
    };
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let chunked = find("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let length: Option<usize> = find("content-length").and_then(|v| v.parse().ok());
    loop {
        let body = &raw[split + 4..];
        let done = if chunked {
            body.windows(5).any(|w| w == b"0\r\n\r\n")
        } else if let Some(len) = length {
            body.len() >= len
        } else {
            false
        };
        if done {
            break;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + size]);
        b = &b[end + 2 + size + 2..];
    }
}

/// One endpoint entry as the filter writes it.
pub fn endpoint(host: &str, method: &str, template: &str, source: &str) -> Value {
    json!({"host": host, "method": method, "path_template": template,
        "template_source": source, "api_type": "rest", "operation": null,
        "declaration": "unknown", "count": 3, "first_seen_ms": 1_700_000_001_000u64,
        "last_seen_ms": 1_700_000_004_000u64,
        "status": {"1xx": 0, "2xx": 2, "3xx": 0, "4xx": 1, "5xx": 0, "none": 0},
        "request_bytes_max": 0, "response_bytes_max": 120, "query_params": [],
        "request_content_types": [], "response_content_types": ["application/json"],
        "auth": ["none"], "jwt_issuers": [], "data_classes": {"request": [], "response": []},
        "findings": ["no_authentication"], "request_shape": null,
        "response_shape": {"type": ["object"], "properties": {"id": {"type": ["integer"]}, "name": {"type": ["string"]}}}})
}

/// A batch of `endpoints` from `worker` of `node`, for the window starting at `start_ms`.
pub fn batch(node: &str, worker: &str, start_ms: u64, endpoints: Vec<Value>) -> Value {
    json!({"schema_version": 1,
        "source": {"plugin": "apiguard", "worker": worker, "node": node},
        "window": {"start_ms": start_ms, "end_ms": start_ms + 5000},
        "part": {"index": 0, "count": 1}, "sample_rate": 1.0, "endpoints": endpoints,
        "overflow": null, "overflowed": 0, "dropped": 0, "dropped_endpoints": 0})
}

/// The project's Petstore (OpenAPI 3.0, from swagger-petstore), with `deprecated` set on
/// `GET /user/logout` for the zombie verdict.
pub fn petstore() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/conformance/openapi/swagger-petstore-v3.openapi.json"
    ))
    .unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["paths"]["/user/logout"]["get"]["deprecated"] = json!(true);
    doc
}

/// `openapi-spec-validator` from PyPI (installed by `make serve-test-deps` into .venv-test).
pub fn openapi_validator() -> PathBuf {
    if let Ok(p) = std::env::var("APIGUARD_OPENAPI_VALIDATOR") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.venv-test/bin/openapi-spec-validator"
    ));
    assert!(
        p.exists(),
        "openapi-spec-validator not found at {} (run `make serve-test-deps`, or set APIGUARD_OPENAPI_VALIDATOR)",
        p.display()
    );
    p
}
