//! The end-to-end harness: the built `apiguard.wasm` inside a real Envoy, with test servers around it.
//!
//! - [`e2e_paths`] finds Envoy and the `.wasm` (`APIGUARD_ENVOY`, `APIGUARD_WASM`, else the `make`
//!   locations, `CARGO_TARGET_DIR` honoured); when either is missing the test fails and says why (never
//!   a silent pass).
//! - [`Envoy`] writes a bootstrap (listener with the wasm filter and the router, `upstream`, `jwks` and
//!   `collector` clusters), starts Envoy on ports it picks itself (port 0; the harness reads them back from
//!   the admin endpoint, so parallel tests never collide) and kills it on drop. When a test fails, the tail
//!   of Envoy's log is printed and its directory kept.
//!   The connection manager normalises paths and hosts as `docs/deployment.md` recommends, unless
//!   [`EnvoyOpts::raw_paths`] asks for Envoy's defaults (raw paths reach the filter).
//!   The listener speaks HTTP/1.1 and HTTP/2 (`codec_type: AUTO`, h2c) and passes HTTP/1.1 trailers on
//!   (`enable_trailers`).
//! - [`Proto`] `H1`/`H2` is the client's protocol; [`per_protocol!`] runs each listed test function as
//!   `http1::<name>` and `http2::<name>`, and [`EnvoyOpts::new`] takes [`Proto::current`], so that
//!   [`Envoy::request`], [`Envoy::get`] and [`Envoy::send`] speak the test's protocol.
//! - [`Req`] is one request: header values and trailers as bytes, the body in pieces, with or without a
//!   length; [`send`] sends it over either protocol ([`send_h1`], [`h2::send`]). [`Response`] has the
//!   headers (also as raw bytes), the body, the trailers, and over HTTP/2 a stream reset after the headers.
//! - [`Echo`] is the HTTP/1.1 upstream: it answers 200 with JSON of the request it received (headers,
//!   body, trailers). [`H2Echo`] is the HTTP/2 upstream ([`EnvoyOpts::h2_upstream`]): the same JSON, or
//!   canned [`Reply`]s with any header bytes, DATA frames and response trailers.
//! - [`JwksServer`] serves a JWKS, counts fetches, and can go down, come up, or start late.
//! - [`Envoy::wasm_failures`] lists the log lines that show the filter panicking or trapping.
//! - [`token`] signs test tokens with the fixture keys.
//!
//! Every wait is bounded; nothing here retries forever.

#![allow(
    dead_code,
    reason = "each test crate uses a different part of the shared harness"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test harness: a failed step fails the test loudly"
)]

pub mod token;

pub mod collector;

pub mod h2;

#[allow(
    unused_imports,
    reason = "not every test crate uses the HTTP/2 upstream"
)]
pub use self::h2::{H2Echo, Reply};

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long Envoy may take to become ready (V8 compiles the module on the main thread: ~0.6 s alone,
/// more when tests run in parallel on two cores).
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Socket timeouts of the test client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------------------
// Locating Envoy and the filter

/// Where the Envoy binary and the filter's `.wasm` are.
#[derive(Debug, Clone)]
pub struct Paths {
    pub envoy: PathBuf,
    pub wasm: PathBuf,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn find_venv_envoy() -> Option<PathBuf> {
    let lib = repo_root().join(".venv/lib");
    let entries = std::fs::read_dir(lib).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.is_file())
}

/// Envoy and the filter. A missing piece fails the test with a message (the `Option` stays so that
/// tests read `let Some(..) = .. else { return }` as before).
pub fn e2e_paths() -> Option<Paths> {
    let envoy = std::env::var_os("APIGUARD_ENVOY")
        .map(PathBuf::from)
        .or_else(find_venv_envoy);
    // Where cargo put the module: CARGO_TARGET_DIR when set (as `make build` honours it), so a
    // stale `.wasm` under `target/` is never tested by mistake.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| repo_root().join(dir))
        .unwrap_or_else(|| repo_root().join("target"));
    let wasm = std::env::var_os("APIGUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir.join("wasm32-wasip1/release/apiguard.wasm"));
    let envoy_ok = envoy.as_ref().is_some_and(|p| p.is_file());
    let wasm_ok = wasm.is_file();
    if envoy_ok && wasm_ok {
        return Some(Paths {
            envoy: envoy.expect("checked"),
            wasm,
        });
    }
    let missing = match (envoy_ok, wasm_ok) {
        (false, false) => format!("Envoy (APIGUARD_ENVOY) and the filter ({})", wasm.display()),
        (false, true) => "Envoy (APIGUARD_ENVOY or .venv from `make envoy`)".to_string(),
        _ => format!("the filter {} (`make build`)", wasm.display()),
    };
    // Never a silent pass: an end-to-end test that cannot run fails and says why. `make test`
    // provides both; `cargo test --lib` (and the other non-e2e suites) run without them.
    panic!("end-to-end test cannot run: {missing} is missing; run `make test`");
}

// Ports

/// A port that was free a moment ago, never handed out twice by this process. Only for servers that must
/// know their port before they listen (a JWKS server started late); everything else binds port 0.
pub fn reserve_port() -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(Default::default);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0")
            .port();
        if handed_out.lock().unwrap().insert(port) {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// HTTP client

/// Header or trailer fields: (lower-cased name, value bytes), in order.
pub type Fields = Vec<(String, Vec<u8>)>;

/// One HTTP response as the client saw it.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// The protocol the client spoke to Envoy.
    pub proto: Proto,
    pub status: u16,
    /// Header names lower-cased, in arrival order; values as UTF-8 (lossy: see [`Response::header_bytes`]).
    pub headers: Vec<(String, String)>,
    /// The same headers with their values exactly as they arrived.
    pub raw_headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Response trailers (HTTP/2 trailers frame, or the HTTP/1.1 chunked trailer section).
    pub trailers: Vec<(String, Vec<u8>)>,
    /// Set when the response started but did not end well: the HTTP/2 stream was reset (or the
    /// connection failed) after the headers. `body` then holds what arrived before. Always `None` over
    /// HTTP/1.1, where an incomplete body is an `Err` from the client.
    pub reset: Option<String>,
}

impl Response {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first header with this name, its value byte for byte.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.raw_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first trailer with this name (UTF-8, lossy).
    pub fn trailer(&self, name: &str) -> Option<String> {
        self.trailers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// True when the [`Echo`] upstream produced this response (the request passed the filter).
    pub fn reached_upstream(&self) -> bool {
        self.header("x-echo") == Some("1")
    }

    /// The request as the upstream received it (panics when the response did not come from [`Echo`]).
    pub fn upstream(&self) -> EchoedRequest {
        assert!(
            self.reached_upstream(),
            "response did not come from the upstream: {}",
            self.describe()
        );
        let v: Value = serde_json::from_slice(&self.body).expect("echo JSON");
        EchoedRequest {
            method: v["method"].as_str().unwrap_or_default().to_string(),
            path: v["path"].as_str().unwrap_or_default().to_string(),
            headers: v["headers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|pair| {
                    (
                        pair[0].as_str().unwrap_or_default().to_string(),
                        pair[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            body: v["body"].as_str().unwrap_or_default().to_string(),
            trailers: v["trailers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|pair| {
                    (
                        pair[0].as_str().unwrap_or_default().to_string(),
                        pair[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            proto: v["proto"].as_str().unwrap_or("h1").to_string(),
        }
    }

    /// Status, interesting headers and body on one line, for assertion messages.
    pub fn describe(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, _)| !matches!(n.as_str(), "date" | "server" | "content-length"))
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        let mut body = self.text();
        if body.len() > 300 {
            body.truncate(300);
            body.push_str("...");
        }
        let mut line = format!(
            "[{}] {} [{}] {:?}",
            self.proto.name(),
            self.status,
            headers.join("; "),
            body
        );
        if !self.trailers.is_empty() {
            let trailers: Vec<String> = self
                .trailers
                .iter()
                .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                .collect();
            line.push_str(&format!(" trailers [{}]", trailers.join("; ")));
        }
        if let Some(reset) = &self.reset {
            line.push_str(&format!(" RESET: {reset}"));
        }
        line
    }
}

/// A request as the [`Echo`] upstream received it.
#[derive(Debug, Clone)]
pub struct EchoedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body as the upstream received it (UTF-8, lossy).
    pub body: String,
    /// The request trailers the upstream received (values UTF-8, lossy).
    pub trailers: Vec<(String, String)>,
    /// The protocol the upstream spoke with Envoy: `h1` ([`Echo`]) or `h2` ([`H2Echo`]).
    pub proto: String,
}

impl EchoedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------------------------------------------------
// Protocols

/// The protocol the test client speaks to Envoy's listener (which accepts both: `codec_type: AUTO`,
/// HTTP/2 as h2c with prior knowledge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    #[default]
    H1,
    H2,
}

thread_local! {
    static CURRENT_PROTO: Cell<Proto> = const { Cell::new(Proto::H1) };
}

impl Proto {
    pub const ALL: [Proto; 2] = [Proto::H1, Proto::H2];

    pub fn name(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2",
        }
    }

    /// The protocol of the test running on this thread (set by [`per_protocol!`]; HTTP/1.1 otherwise).
    /// [`EnvoyOpts::new`] takes it, so every [`Envoy`] a test starts talks this protocol.
    pub fn current() -> Proto {
        CURRENT_PROTO.with(Cell::get)
    }

    /// Runs `test` with this protocol as [`Proto::current`].
    pub fn run(self, test: impl FnOnce()) {
        CURRENT_PROTO.with(|p| p.set(self));
        test();
    }
}

/// Runs each listed test function (a plain `fn name()`, no `#[test]`) once per protocol, as the tests
/// `http1::name` and `http2::name`: the test name says which protocol failed. Inside, [`Proto::current`]
/// is that protocol, and so is every [`Envoy`] started with [`EnvoyOpts::new`].
#[macro_export]
macro_rules! per_protocol {
    ($($test:ident),+ $(,)?) => {
        /// The tests over HTTP/1.1.
        mod http1 {
            $( #[test] fn $test() { $crate::common::Proto::H1.run(super::$test) } )+
        }
        /// The same tests over HTTP/2 (h2c).
        mod http2 {
            $( #[test] fn $test() { $crate::common::Proto::H2.run(super::$test) } )+
        }
    };
}

// ---------------------------------------------------------------------------------------------------------
// Requests

/// One request for [`send`]: header values and trailers as bytes (anything but CR, LF and NUL), the body
/// in one or more pieces.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub method: String,
    pub path: String,
    /// In order. `host` (default `api.test`) is the `:authority` over HTTP/2.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body pieces, sent 20 ms apart when there are several (HTTP/1.1 chunks, HTTP/2 DATA frames).
    pub pieces: Vec<Vec<u8>>,
    pub trailers: Vec<(String, Vec<u8>)>,
    /// Send the body without a length: HTTP/1.1 `transfer-encoding: chunked`, HTTP/2 no
    /// `content-length`. Implied by trailers and by several pieces.
    pub chunked: bool,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.to_string(),
            path: path.to_string(),
            ..Req::default()
        }
    }

    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }

    pub fn post(path: &str, body: &[u8]) -> Req {
        Req::new("POST", path).body(body)
    }

    pub fn header(self, name: &str, value: &str) -> Req {
        self.header_bytes(name, value.as_bytes())
    }

    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Req {
        self.headers.push((name.to_string(), value.to_vec()));
        self
    }

    pub fn headers(mut self, headers: &[(&str, &str)]) -> Req {
        for (n, v) in headers {
            self = self.header(n, v);
        }
        self
    }

    /// The whole body, in one piece.
    pub fn body(mut self, body: &[u8]) -> Req {
        self.pieces = if body.is_empty() {
            Vec::new()
        } else {
            vec![body.to_vec()]
        };
        self
    }

    /// The body in these pieces, without a length.
    pub fn pieces(mut self, pieces: &[&[u8]]) -> Req {
        self.pieces = pieces.iter().map(|p| p.to_vec()).collect();
        self.chunked = true;
        self
    }

    pub fn chunked(mut self) -> Req {
        self.chunked = true;
        self
    }

    pub fn trailer(self, name: &str, value: &str) -> Req {
        self.trailer_bytes(name, value.as_bytes())
    }

    pub fn trailer_bytes(mut self, name: &str, value: &[u8]) -> Req {
        self.trailers.push((name.to_string(), value.to_vec()));
        self.chunked = true;
        self
    }

    pub fn body_len(&self) -> usize {
        self.pieces.iter().map(Vec::len).sum()
    }

    /// Whether the body goes without a length.
    pub fn without_length(&self) -> bool {
        self.chunked || !self.trailers.is_empty() || self.pieces.len() > 1
    }

    /// The `host` header, else `api.test`.
    pub fn authority(&self) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map_or_else(
                || "api.test".to_string(),
                |(_, v)| String::from_utf8_lossy(v).into_owned(),
            )
    }
}

/// Sends one request to `127.0.0.1:port` over `proto` on a fresh connection and reads the whole
/// response (trailers included).
pub fn send(proto: Proto, port: u16, req: &Req) -> std::io::Result<Response> {
    match proto {
        Proto::H1 => send_h1(port, req),
        Proto::H2 => h2::send(port, req),
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) to `127.0.0.1:port` and reads the whole response.
/// `Host` defaults to `api.test`; pass a `host` header to change it.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    send_h1(port, &Req::new(method, path).headers(headers).body(body))
}

/// The bytes of an HTTP/1.1 request head for `req` (ending with the empty line), `extra` lines
/// (e.g. `connection: close`) before the end.
pub fn h1_head(req: &Req, extra: &[&str]) -> Vec<u8> {
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.path).into_bytes();
    if !req
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("host"))
    {
        head.extend_from_slice(b"host: api.test\r\n");
    }
    for (name, value) in &req.headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    if req.without_length() {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if req.body_len() > 0 || req.method == "POST" || req.method == "PUT" {
        head.extend_from_slice(format!("content-length: {}\r\n", req.body_len()).as_bytes());
    }
    for line in extra {
        head.extend_from_slice(line.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Writes `req`'s body (and trailers) as [`h1_head`] announced it.
fn write_h1_body(stream: &mut TcpStream, req: &Req) -> std::io::Result<()> {
    if !req.without_length() {
        for piece in &req.pieces {
            stream.write_all(piece)?;
        }
        return Ok(());
    }
    for (i, piece) in req.pieces.iter().enumerate() {
        if i > 0 {
            thread::sleep(Duration::from_millis(20));
        }
        if piece.is_empty() {
            continue; // a zero-size chunk would end the body
        }
        write!(stream, "{:x}\r\n", piece.len())?;
        stream.write_all(piece)?;
        stream.write_all(b"\r\n")?;
        stream.flush()?;
    }
    let mut end = b"0\r\n".to_vec();
    for (name, value) in &req.trailers {
        end.extend_from_slice(name.as_bytes());
        end.extend_from_slice(b": ");
        end.extend_from_slice(value);
        end.extend_from_slice(b"\r\n");
    }
    end.extend_from_slice(b"\r\n");
    stream.write_all(&end)?;
    stream.flush()
}

/// [`send`] over HTTP/1.1 (`connection: close`).
pub fn send_h1(port: u16, req: &Req) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(&h1_head(req, &["connection: close"]))?;
    write_h1_body(&mut stream, req)?;
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, req.method == "HEAD")
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, msg.into())
}

/// The lines of a header block up to the empty line (`None`: the connection closed before one), as
/// bytes: header values may be any bytes but CR and LF.
pub fn read_head_bytes(reader: &mut impl BufRead) -> std::io::Result<Option<Vec<Vec<u8>>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err(invalid("connection closed inside the header block"))
            };
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

/// [`read_head_bytes`] with lines as UTF-8 (lossy).
pub fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Vec<String>>> {
    Ok(read_head_bytes(reader)?.map(|lines| {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }))
}

pub fn parse_headers(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// `name: value` lines as (lower-cased name, value bytes without surrounding blanks).
pub fn parse_headers_bytes(lines: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    lines
        .iter()
        .filter_map(|l| {
            let colon = l.iter().position(|b| *b == b':')?;
            let name = String::from_utf8_lossy(&l[..colon])
                .trim()
                .to_ascii_lowercase();
            Some((name, l[colon + 1..].trim_ascii().to_vec()))
        })
        .collect()
}

fn lossy(headers: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

pub fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    until_eof: bool,
) -> std::io::Result<Vec<u8>> {
    read_body_and_trailers(reader, headers, until_eof).map(|(body, _)| body)
}

/// Trailer fields: (name, value bytes).
pub type Trailers = Vec<(String, Vec<u8>)>;

/// The body as `headers` frame it (chunked, `content-length`, or until EOF when `until_eof`), and the
/// chunked trailer section (empty otherwise).
pub fn read_body_and_trailers(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    until_eof: bool,
) -> std::io::Result<(Vec<u8>, Fields)> {
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size_line = Vec::new();
            reader.read_until(b'\n', &mut size_line)?;
            let size_line = String::from_utf8_lossy(&size_line);
            let size_hex = size_line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| invalid(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                let trailers = read_head_bytes(reader)?.unwrap_or_default();
                return Ok((body, parse_headers_bytes(&trailers)));
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    }
    if let Some(len) = get("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        return Ok((body, Vec::new()));
    }
    let mut body = Vec::new();
    if until_eof {
        reader.read_to_end(&mut body)?;
    }
    Ok((body, Vec::new()))
}

pub fn read_response(reader: &mut impl BufRead, head_only: bool) -> std::io::Result<Response> {
    let lines = read_head_bytes(reader)?.ok_or_else(|| invalid("empty response"))?;
    let status_line =
        String::from_utf8_lossy(lines.first().ok_or_else(|| invalid("no status line"))?)
            .into_owned();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let raw_headers = parse_headers_bytes(&lines[1..]);
    let headers = lossy(&raw_headers);
    // A reply to HEAD describes a body it does not carry; so do 204 and 304.
    let (body, trailers) = if head_only || status == 204 || status == 304 {
        (Vec::new(), Vec::new())
    } else {
        read_body_and_trailers(reader, &headers, true)?
    };
    Ok(Response {
        proto: Proto::H1,
        status,
        headers,
        raw_headers,
        body,
        trailers,
        reset: None,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Test servers

/// Accepts connections on `listener` until `stop` is set, handing each to `handle` on its own thread.
pub fn serve(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let handle = Arc::new(handle);
    thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let handle = Arc::clone(&handle);
            thread::spawn(move || handle(conn));
        }
    });
}

/// Unblocks a listener thread parked in `accept` so that it sees its stop flag.
pub fn wake(port: u16) {
    let _ = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200));
}

/// The HTTP/1.1 upstream: answers every request with 200, header `x-echo: 1` and a JSON body
/// `{"proto": "h1", "method", "path", "headers": [[name, value], ...], "body", "trailers": [[name, value],
/// ...]}` (names lower-cased, values and body UTF-8 lossy). Keeps connections alive. [`H2Echo`] is the
/// HTTP/2 one.
pub struct Echo {
    pub port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Echo {
    pub fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("echo bind");
        let port = listener.local_addr().expect("echo addr").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let counter = Arc::clone(&requests);
        serve(listener, Arc::clone(&stop), move |conn| {
            let _ = echo_connection(conn, &counter);
        });
        Echo {
            port,
            requests,
            stop,
        }
    }

    /// Requests the upstream has answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        wake(self.port);
    }
}

fn echo_connection(conn: TcpStream, counter: &AtomicUsize) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    while let Some(lines) = read_head(&mut reader)? {
        let request_line = lines.first().cloned().unwrap_or_default();
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let headers = parse_headers(lines.get(1..).unwrap_or_default());
        // `x-echo-reset-after: N`: a fault, see [`echo_reset_mid_body`].
        if let Some(limit) = headers
            .iter()
            .find(|(n, _)| n == "x-echo-reset-after")
            .and_then(|(_, v)| v.parse::<usize>().ok())
        {
            counter.fetch_add(1, Ordering::SeqCst);
            return echo_reset_mid_body(writer, reader, limit);
        }
        let (body, trailers) = read_body_and_trailers(&mut reader, &headers, false)?;
        counter.fetch_add(1, Ordering::SeqCst);
        // `x-echo-raw: <content-type>`: answer with the request body itself, as that type; with
        // `x-echo-chunk: N`, chunked in N-byte chunks written separately (so that Envoy sees several).
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        if let Some(content_type) = find("x-echo-raw") {
            match find("x-echo-chunk")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0)
            {
                Some(size) => {
                    write!(writer, "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n")?;
                    writer.flush()?;
                    for chunk in body.chunks(size) {
                        write!(writer, "{:x}\r\n", chunk.len())?;
                        writer.write_all(chunk)?;
                        write!(writer, "\r\n")?;
                        writer.flush()?;
                        thread::sleep(Duration::from_millis(5));
                    }
                    write!(writer, "0\r\n\r\n")?;
                }
                None => {
                    write!(writer, "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n", body.len())?;
                    writer.write_all(&body)?;
                }
            }
            writer.flush()?;
            continue;
        }
        let pairs: Vec<Value> = headers.iter().map(|(n, v)| json!([n, v])).collect();
        let trailer_pairs: Vec<Value> = lossy(&trailers)
            .iter()
            .map(|(n, v)| json!([n, v]))
            .collect();
        let reply = json!({
            "proto": "h1",
            "method": method,
            "path": path,
            "headers": pairs,
            "body": String::from_utf8_lossy(&body),
            "trailers": trailer_pairs,
        })
        .to_string();
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-echo: 1\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        )?;
        writer.flush()?;
    }
    let _ = writer.shutdown(Shutdown::Both);
    Ok(())
}

/// One record of the body [`echo_reset_mid_body`] sends: sensitive data a redaction policy masks.
pub const RESET_RECORD: &str =
    r#"{"email": "jane.doe@example.com", "card": "4111 1111 1111 1111"},"#;

/// The upstream fault `x-echo-reset-after: N`: answers 200 with a chunked `application/json` body
/// (`[` then [`RESET_RECORD`] repeated, 256-byte chunks, 5 ms apart) and, once `N` body bytes are out,
/// closes the connection without the final chunk. The request body is deliberately *not* read: when the
/// client sent more than the reader's 8 KiB buffer holds, unread bytes remain in the socket and the
/// kernel answers the close with a TCP RST (send at least 64 KiB for that); with a small or no body the
/// close is a plain FIN (a premature end of the chunked body).
fn echo_reset_mid_body(
    mut writer: TcpStream,
    reader: BufReader<TcpStream>,
    limit: usize,
) -> std::io::Result<()> {
    // Let Envoy forward the request body, so that it lies unread in the socket.
    thread::sleep(Duration::from_millis(50));
    write!(
        writer,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    )?;
    let mut body = b"[".to_vec();
    while body.len() < limit {
        body.extend_from_slice(RESET_RECORD.as_bytes());
    }
    body.truncate(limit);
    for chunk in body.chunks(256) {
        write!(writer, "{:x}\r\n", chunk.len())?;
        writer.write_all(chunk)?;
        write!(writer, "\r\n")?;
        writer.flush()?;
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(50));
    // Dropping both halves with unread input makes the kernel send RST instead of FIN.
    drop(reader);
    drop(writer);
    Ok(())
}

/// How the JWKS server answers.
const JWKS_CLOSED: u16 = 0;

struct JwksShared {
    body: Mutex<String>,
    /// HTTP status to answer with, or [`JWKS_CLOSED`]: not listening at all (connection refused).
    status: AtomicU16,
    hits: AtomicUsize,
    stop: AtomicBool,
    /// Milliseconds to wait before answering (re-read while waiting, so lowering it takes effect).
    delay_ms: AtomicU64,
    /// Bytes written instead of an HTTP response (then the connection is closed).
    raw: Mutex<Option<Vec<u8>>>,
}

/// A JWKS endpoint at `/jwks.json` (any other path: 404) that counts the requests it receives.
pub struct JwksServer {
    pub port: u16,
    shared: Arc<JwksShared>,
}

impl JwksServer {
    /// Listening now, answering 200 with `body`.
    pub fn start(body: impl Into<String>) -> JwksServer {
        let server = JwksServer::reserve(body);
        server.up();
        server
    }

    /// Owns a port (for the Envoy bootstrap) but refuses connections until [`JwksServer::up`].
    pub fn reserve(body: impl Into<String>) -> JwksServer {
        let port = reserve_port();
        let shared = Arc::new(JwksShared {
            body: Mutex::new(body.into()),
            status: AtomicU16::new(JWKS_CLOSED),
            hits: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            raw: Mutex::new(None),
        });
        let thread_shared = Arc::clone(&shared);
        thread::spawn(move || jwks_loop(port, &thread_shared));
        JwksServer { port, shared }
    }

    /// Listen and answer 200 with the body.
    pub fn up(&self) {
        self.set_status(200);
    }

    /// Close the socket: connections are refused.
    pub fn down(&self) {
        self.shared.status.store(JWKS_CLOSED, Ordering::SeqCst);
    }

    /// Listen and answer every request with this status (e.g. 503); the body only with 200.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
        if status != JWKS_CLOSED {
            // Wait (bounded) until the listener is really bound, so callers can rely on it.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    // That probe is not a fetch.
                    thread::sleep(Duration::from_millis(20));
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            panic!("JWKS server did not start listening on {}", self.port);
        }
    }

    pub fn set_body(&self, body: impl Into<String>) {
        *self.shared.body.lock().unwrap() = body.into();
    }

    /// Answer each request only after `delay` (a slow identity provider). The wait re-reads the
    /// delay every 10 ms, so setting it back to zero also releases a request already waiting.
    /// Requests are served one at a time: while one waits, later ones queue.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Answer every request with these bytes instead of an HTTP response, then close (`None`: back to
    /// HTTP). For protocol garbage; a 200 with a garbage *body* is [`JwksServer::set_body`].
    pub fn set_raw(&self, raw: Option<Vec<u8>>) {
        *self.shared.raw.lock().unwrap() = raw;
    }

    /// Requests for `/jwks.json` received so far (whatever the answer was).
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn jwks_loop(port: u16, shared: &JwksShared) {
    let mut listener: Option<TcpListener> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let wanted = shared.status.load(Ordering::SeqCst) != JWKS_CLOSED;
        if wanted && listener.is_none() {
            listener = TcpListener::bind(("127.0.0.1", port))
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .ok();
        } else if !wanted {
            listener = None;
        }
        let Some(l) = &listener else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        match l.accept() {
            Ok((conn, _)) => {
                let _ = jwks_connection(conn, shared);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn jwks_connection(conn: TcpStream, shared: &JwksShared) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    // A readiness probe connects and closes without a request: not a hit.
    let Some(lines) = read_head(&mut reader)? else {
        return Ok(());
    };
    let path = lines
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    let (status, body) = if path.split('?').next() == Some("/jwks.json") {
        shared.hits.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        while u128::from(shared.delay_ms.load(Ordering::SeqCst)) > started.elapsed().as_millis()
            && !shared.stop.load(Ordering::SeqCst)
        {
            thread::sleep(Duration::from_millis(10));
        }
        let raw = shared.raw.lock().unwrap().clone();
        if let Some(raw) = raw {
            writer.write_all(&raw)?;
            writer.flush()?;
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
        let status = shared.status.load(Ordering::SeqCst);
        let body = if status == 200 {
            shared.body.lock().unwrap().clone()
        } else {
            "unavailable".to_string()
        };
        (status, body)
    } else {
        (404, "not found".to_string())
    };
    write!(
        writer,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    writer.flush()?;
    let _ = writer.shutdown(Shutdown::Both);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Envoy

/// What surrounds the filter in the bootstrap.
#[derive(Debug, Clone)]
pub struct EnvoyOpts {
    /// Port of the `upstream` cluster (the [`Echo`] server).
    pub upstream_port: u16,
    /// Port of the `jwks` cluster; without one the cluster points at a port nobody listens on.
    pub jwks_port: Option<u16>,
    /// Port of the `collector` cluster, if any.
    pub collector_port: Option<u16>,
    /// False: no wasm filter at all (checks the harness itself).
    pub with_filter: bool,
    pub concurrency: u32,
    /// Envoy's `allow_on_headers_stop_iteration` in the Wasm filter config.
    pub allow_on_headers_stop_iteration: bool,
    /// The connection manager's path and host hygiene that `docs/deployment.md` recommends
    /// (`normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action: REJECT_REQUEST`,
    /// `strip_trailing_host_dot`, `headers_with_underscores_action: REJECT_REQUEST`); on by default,
    /// as deployed. Off ([`EnvoyOpts::raw_paths`]): raw paths and hosts reach the filter as the client
    /// sent them (Envoy's own defaults), which is what tests of the filter's own path handling need.
    pub normalise_paths: bool,
    /// The protocol of the test client ([`Envoy::request`] and kin); [`Proto::current`] by default.
    pub proto: Proto,
    /// The `upstream` cluster speaks HTTP/2 (h2c, an [`H2Echo`]) instead of HTTP/1.1.
    pub upstream_h2: bool,
    /// More clusters, as Envoy JSON (e.g. a rate limit service's, `tests/e2e_rls.rs`).
    pub extra_clusters: Vec<Value>,
}

impl EnvoyOpts {
    pub fn new(upstream: &Echo) -> EnvoyOpts {
        EnvoyOpts::new_port(upstream.port)
    }

    /// With an HTTP/2 upstream (the `upstream` cluster speaks h2c to `upstream`).
    pub fn h2_upstream(upstream: &H2Echo) -> EnvoyOpts {
        EnvoyOpts {
            upstream_h2: true,
            ..EnvoyOpts::new_port(upstream.port)
        }
    }

    /// With the `upstream` cluster at `port` (HTTP/1.1).
    pub fn new_port(port: u16) -> EnvoyOpts {
        EnvoyOpts {
            upstream_port: port,
            jwks_port: None,
            collector_port: None,
            with_filter: true,
            concurrency: 2,
            allow_on_headers_stop_iteration: false,
            normalise_paths: true,
            proto: Proto::current(),
            upstream_h2: false,
            extra_clusters: Vec::new(),
        }
    }

    /// Envoy normalises paths and hosts before the filter (see [`EnvoyOpts::normalise_paths`]).
    pub fn normalised_paths(mut self) -> EnvoyOpts {
        self.normalise_paths = true;
        self
    }

    /// Raw paths and hosts reach the filter (Envoy's defaults).
    pub fn raw_paths(mut self) -> EnvoyOpts {
        self.normalise_paths = false;
        self
    }

    pub fn proto(mut self, proto: Proto) -> EnvoyOpts {
        self.proto = proto;
        self
    }

    pub fn jwks(mut self, server: &JwksServer) -> EnvoyOpts {
        self.jwks_port = Some(server.port);
        self
    }

    pub fn collector(mut self, port: u16) -> EnvoyOpts {
        self.collector_port = Some(port);
        self
    }

    pub fn without_filter(mut self) -> EnvoyOpts {
        self.with_filter = false;
        self
    }
}

pub fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
        ]}]}
    })
}

/// The `upstream` cluster: HTTP/1.1 with trailers forwarded (`enable_trailers`), or HTTP/2 (h2c).
fn upstream_cluster(port: u16, h2: bool) -> Value {
    let mut cluster = static_cluster("upstream", port);
    let http = if h2 {
        json!({"http2_protocol_options": {}})
    } else {
        json!({"http_protocol_options": {"enable_trailers": true}})
    };
    cluster["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": http
        }
    });
    cluster
}

/// The bootstrap (JSON, which Envoy reads like YAML). Listener and admin on port 0: Envoy picks free
/// ports and the harness asks the admin endpoint which.
pub fn bootstrap(wasm: &Path, plugin_config: &str, opts: &EnvoyOpts) -> Value {
    let mut http_filters = Vec::new();
    if opts.with_filter {
        http_filters.push(json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "apiguard",
                    "root_id": "apiguard",
                    "allow_on_headers_stop_iteration": opts.allow_on_headers_stop_iteration,
                    "vm_config": {
                        "vm_id": "apiguard",
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": wasm.display().to_string()}}
                    },
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": plugin_config
                    }
                }
            }
        }));
    }
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    // Nobody listens on a reserved-then-released port: a missing JWKS server reads as "connection refused".
    let jwks_port = opts.jwks_port.unwrap_or_else(reserve_port);
    let mut clusters = vec![
        upstream_cluster(opts.upstream_port, opts.upstream_h2),
        static_cluster("jwks", jwks_port),
    ];
    if let Some(port) = opts.collector_port {
        clusters.push(static_cluster("collector", port));
    }
    clusters.extend(opts.extra_clusters.iter().cloned());
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        // HTTP/1.1 and HTTP/2 (h2c prior knowledge) on one listener; HTTP/1.1 trailers (chunked
        // trailer section) passed on rather than dropped.
        "codec_type": "AUTO",
        "http_protocol_options": {"enable_trailers": true},
        // As the shipped bootstraps: source.address is the TCP peer, never the client's own
        // x-forwarded-for (client-address rate-limit keys require it).
        "use_remote_address": true,
        "route_config": {"name": "local", "virtual_hosts": [{
            "name": "all",
            "domains": ["*"],
            "routes": [{"match": {"prefix": "/"},
                        "route": {"cluster": "upstream", "timeout": "5s"}}]
        }]},
        "http_filters": http_filters
    });
    if opts.normalise_paths {
        hcm["normalize_path"] = json!(true);
        hcm["merge_slashes"] = json!(true);
        hcm["path_with_escaped_slashes_action"] = json!("REJECT_REQUEST");
        hcm["strip_trailing_host_dot"] = json!(true);
        hcm["common_http_protocol_options"] =
            json!({"headers_with_underscores_action": "REJECT_REQUEST"});
    }
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm
                }]}]
            }],
            "clusters": clusters
        }
    })
}

/// A running Envoy; killed on drop.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    /// The HTTP listener (the filter is on it).
    pub port: u16,
    pub admin_port: u16,
    /// The protocol [`Envoy::request`], [`Envoy::get`] and [`Envoy::send`] speak (from [`EnvoyOpts`]).
    pub proto: Proto,
}

enum Started {
    Ready { admin_port: u16, port: u16 },
    Exited(std::process::ExitStatus),
    TimedOut,
}

impl Envoy {
    /// Starts Envoy with the filter configured by `plugin_config` (JSON text) and waits until it is ready.
    /// Panics (with the log's tail) when it exits or is not ready within 15 s.
    pub fn start(paths: &Paths, plugin_config: &str, opts: &EnvoyOpts) -> Envoy {
        let (mut envoy, started) = Envoy::spawn(paths, plugin_config, opts);
        match started {
            Started::Ready { admin_port, port } => {
                envoy.admin_port = admin_port;
                envoy.port = port;
                envoy
            }
            Started::Exited(status) => {
                let log = envoy.log();
                panic!(
                    "Envoy exited ({status}) instead of becoming ready:\n{}",
                    tail(&log, 40)
                );
            }
            Started::TimedOut => {
                let log = envoy.log();
                panic!(
                    "Envoy not ready within {READY_TIMEOUT:?}:\n{}",
                    tail(&log, 40)
                );
            }
        }
    }

    /// Starts Envoy with a configuration the filter must refuse. Returns Envoy's log (and its console
    /// output) once Envoy has exited or stayed unready for the whole wait; panics if it becomes ready.
    pub fn start_refused(paths: &Paths, plugin_config: &str, opts: &EnvoyOpts) -> String {
        let (envoy, started) = Envoy::spawn(paths, plugin_config, opts);
        if let Started::Ready { .. } = started {
            panic!(
                "Envoy became ready although the filter configuration is invalid:\n{}",
                tail(&envoy.log(), 40)
            );
        }
        envoy.log()
    }

    fn spawn(paths: &Paths, plugin_config: &str, opts: &EnvoyOpts) -> (Envoy, Started) {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("apiguard-e2e-{}-{seq}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the Envoy directory");
        let config_path = dir.join("envoy.json");
        let config = bootstrap(&paths.wasm, plugin_config, opts);
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap())
            .expect("writing the bootstrap");
        std::fs::write(dir.join("plugin.json"), plugin_config).expect("writing plugin.json");
        let admin_path = dir.join("admin.address");
        // Unique per Envoy in this process and across processes (hot restart is off, so this is a
        // belt-and-braces measure against shared-memory name clashes).
        let base_id = (std::process::id() % 40_000) * 100 + (seq as u32 % 100);
        let console = std::fs::File::create(dir.join("console.log")).expect("console.log");
        let child = Command::new(&paths.envoy)
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &opts.concurrency.to_string()])
            .arg("--disable-hot-restart")
            .args(["--base-id", &base_id.to_string()])
            .args(["-l", "info"])
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("console.log"))
            .stderr(console)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", paths.envoy.display()));
        let mut envoy = Envoy {
            child,
            dir,
            port: 0,
            admin_port: 0,
            proto: opts.proto,
        };
        let started = envoy.wait_ready(&admin_path);
        (envoy, started)
    }

    fn wait_ready(&mut self, admin_path: &Path) -> Started {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Started::Exited(status);
            }
            let admin_port = std::fs::read_to_string(admin_path)
                .ok()
                .and_then(|a| a.trim().rsplit(':').next()?.parse::<u16>().ok());
            if let Some(admin_port) = admin_port {
                let ready = http_request(admin_port, "GET", "/ready", &[], b"")
                    .is_ok_and(|r| r.status == 200);
                if ready {
                    if let Some(port) = listener_port(admin_port) {
                        return Started::Ready { admin_port, port };
                    }
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        Started::TimedOut
    }

    /// `GET path` through the filter.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, b"")
    }

    /// `GET path` with `authorization: Bearer <token>`.
    pub fn get_bearer(&self, path: &str, token: &str) -> Response {
        self.get(path, &[("authorization", &format!("Bearer {token}"))])
    }

    /// One request through the filter over [`Envoy::proto`]; panics (with Envoy's log) when no
    /// response came back.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.send(&Req::new(method, path).headers(headers).body(body))
    }

    /// [`send`]s `req` over [`Envoy::proto`]; panics (with Envoy's log) when no response came back.
    pub fn send(&self, req: &Req) -> Response {
        self.try_send(req).unwrap_or_else(|e| {
            panic!(
                "{} {} through Envoy over {} failed: {e}\n{}",
                req.method,
                req.path,
                self.proto.name(),
                tail(&self.log(), 30)
            )
        })
    }

    /// [`send`]s `req` over [`Envoy::proto`].
    pub fn try_send(&self, req: &Req) -> std::io::Result<Response> {
        send(self.proto, self.port, req)
    }

    /// Admin `/stats?filter=<regex>` as name -> value (counters and gauges; histograms left out).
    pub fn stats(&self, filter: &str) -> HashMap<String, u64> {
        let path = format!("/stats?filter={filter}");
        let r = http_request(self.admin_port, "GET", &path, &[], b"").expect("admin /stats");
        assert_eq!(r.status, 200, "admin {path}: {}", r.describe());
        r.text()
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(n, v)| Some((n.to_string(), v.trim().parse().ok()?)))
            .collect()
    }

    /// The filter's counter `name` (shown by Envoy as `wasmcustom.<name>`); 0 when not defined.
    pub fn counter(&self, name: &str) -> u64 {
        self.stats(name)
            .get(&format!("wasmcustom.{name}"))
            .copied()
            .unwrap_or(0)
    }

    /// Envoy's log so far, followed by its console output.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default();
        let console = std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
        format!("{log}{console}")
    }

    /// Lines of Envoy's log that show the filter failing: a panic, a wasm trap, a failed
    /// `proxy_on_*` call (`Function: proxy_on_... failed`), a VM failure, an uncaught runtime error, or
    /// anything critical. Empty when all is well.
    pub fn wasm_failures(&self) -> Vec<String> {
        const NEEDLES: [&str; 6] = [
            "panic",
            "wasm trap",
            "function: proxy_on_",
            "wasm vm failed",
            "uncaught runtimeerror",
            "[critical]",
        ];
        self.log()
            .lines()
            .filter(|l| {
                let lower = l.to_ascii_lowercase();
                NEEDLES.iter().any(|n| lower.contains(n))
            })
            .map(str::to_string)
            .collect()
    }

    /// Waits (bounded) until `check` holds, polling every 100 ms; returns whether it did.
    pub fn eventually(&self, timeout: Duration, mut check: impl FnMut(&Envoy) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Envoy's resident set size in KiB (`VmRSS` in `/proc/<pid>/status`; Linux only).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Whether the Envoy process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// An HTTP/1.1 client that keeps its connection open between requests (for long runs that would
/// otherwise spend thousands of ephemeral ports). Reconnects when the server closed the connection.
pub struct KeepAlive {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    pub fn new(port: u16) -> KeepAlive {
        KeepAlive { port, conn: None }
    }

    /// Sends one request (`Host: api.test` unless given) and reads its response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            head.push_str("host: api.test\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let reader = match self.conn.take() {
            Some(reader) => reader,
            None => {
                let stream = TcpStream::connect(("127.0.0.1", self.port))?;
                stream.set_read_timeout(Some(IO_TIMEOUT))?;
                stream.set_write_timeout(Some(IO_TIMEOUT))?;
                BufReader::new(stream)
            }
        };
        let mut reader = reader;
        let stream = reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let response = read_response(&mut reader, method == "HEAD")?;
        let closing = response
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if !closing {
            self.conn = Some(reader);
        }
        Ok(response)
    }
}

/// What [`send_partial`] does after sending part of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// Close the connection (FIN) without waiting for an answer.
    Close,
    /// Close only the writing half and read whatever Envoy answers (at most [`IO_TIMEOUT`]).
    HalfClose,
}

/// The client fault "abort mid-body": sends the request head (declaring `content-length:
/// declared_len`, or `transfer-encoding: chunked` when `declared_len` is `None`), then `sent` (as one
/// chunk when chunked, without the final chunk), waits `pause`, then aborts as `how` says. Returns
/// what came back (only with [`Abort::HalfClose`]; `Ok(None)` when nothing did).
pub fn send_partial(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    declared_len: Option<usize>,
    sent: &[u8],
    pause: Duration,
    how: Abort,
) -> std::io::Result<Option<Response>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = format!("POST {path} HTTP/1.1\r\nhost: api.test\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match declared_len {
        Some(len) => head.push_str(&format!("content-length: {len}\r\n\r\n")),
        None => head.push_str("transfer-encoding: chunked\r\n\r\n"),
    }
    stream.write_all(head.as_bytes())?;
    if declared_len.is_some() {
        stream.write_all(sent)?;
    } else if !sent.is_empty() {
        write!(stream, "{:x}\r\n", sent.len())?;
        stream.write_all(sent)?;
        stream.write_all(b"\r\n")?;
    }
    stream.flush()?;
    thread::sleep(pause);
    match how {
        Abort::Close => {
            drop(stream);
            Ok(None)
        }
        Abort::HalfClose => {
            stream.shutdown(Shutdown::Write)?;
            let mut reader = BufReader::new(stream);
            match read_response(&mut reader, false) {
                Ok(r) => Ok(Some(r)),
                Err(e) if e.kind() == ErrorKind::InvalidData => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- Envoy log ({}), last lines ----\n{}",
                self.dir.display(),
                tail(&self.log(), 40)
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The HTTP listener's port, from admin `/listeners?format=json`.
fn listener_port(admin_port: u16) -> Option<u16> {
    let r = http_request(admin_port, "GET", "/listeners?format=json", &[], b"").ok()?;
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    v["listener_statuses"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == "main")?["local_address"]["socket_address"]["port_value"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
}

/// The last `n` lines of `text`, leaving out Envoy's start-up inventory (long `[info][main]` lines).
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("][info][main]"))
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
