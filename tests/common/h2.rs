//! HTTP/2 in the harness (the `h2` crate on a small tokio runtime, h2c: cleartext with prior knowledge):
//!
//! - [`send`]: one request on a fresh connection, blocking, with any header bytes `h2` accepts (all but
//!   CR, LF and NUL), body pieces as separate DATA frames, request trailers; the response comes back with
//!   its trailers, and a stream reset after the response headers is reported in [`Response::reset`]
//!   instead of losing what had arrived.
//! - [`H2Echo`]: an HTTP/2 upstream that answers like [`super::Echo`] (JSON of what it received: headers,
//!   body, trailers) or, on paths given to [`H2Echo::reply_on`], with a canned [`Reply`] (any header
//!   bytes, a body in DATA frames, trailers).

use std::net::TcpListener as StdListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ::h2::{client, server, RecvStream, SendStream};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use super::{Proto, Req, Response, IO_TIMEOUT};

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Headers that HTTP/2 forbids (connection-specific); [`send`] leaves them out rather than fail.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

fn header_map(pairs: &[(String, Vec<u8>)]) -> std::io::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(io_err)?;
        let value = HeaderValue::from_bytes(value).map_err(io_err)?;
        map.append(name, value);
    }
    Ok(map)
}

fn pairs(map: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// Sends `req` over HTTP/2 (h2c, prior knowledge) to `127.0.0.1:port` on a fresh connection and reads
/// the whole response. `host` becomes `:authority` (default `api.test`); `content-length` is added as
/// the HTTP/1.1 client adds it (a body with a length, or POST/PUT), unless the request is
/// [`Req::without_length`]. Connection-specific headers are left out.
pub fn send(port: u16, req: &Req) -> std::io::Result<Response> {
    let rt = runtime()?;
    rt.block_on(async {
        tokio::time::timeout(IO_TIMEOUT, exchange(port, req))
            .await
            .map_err(|_| io_err(format!("HTTP/2 request timed out after {IO_TIMEOUT:?}")))?
    })
}

async fn exchange(port: u16, req: &Req) -> std::io::Result<Response> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (sender, connection) = client::handshake(tcp).await.map_err(io_err)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut sender = sender.ready().await.map_err(io_err)?;

    let uri = format!("http://{}{}", req.authority(), req.path);
    let method = http::Method::from_bytes(req.method.as_bytes()).map_err(io_err)?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    let mut has_length = false;
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        if lower == "host" || CONNECTION_SPECIFIC.contains(&lower.as_str()) {
            continue;
        }
        has_length |= lower == "content-length";
        let value = HeaderValue::from_bytes(value).map_err(io_err)?;
        builder = builder.header(lower.as_str(), value);
    }
    if !has_length
        && !req.without_length()
        && (req.body_len() > 0 || req.method == "POST" || req.method == "PUT")
    {
        builder = builder.header("content-length", req.body_len());
    }
    let request = builder.body(()).map_err(io_err)?;
    let pieces: Vec<&Vec<u8>> = req.pieces.iter().filter(|p| !p.is_empty()).collect();
    let end_at_headers = pieces.is_empty() && req.trailers.is_empty();
    let (response, mut stream) = sender
        .send_request(request, end_at_headers)
        .map_err(io_err)?;
    // Envoy may answer (and reset the stream) before the body is out: keep going to read the answer.
    let mut send_error = None;
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let last = i + 1 == pieces.len() && req.trailers.is_empty();
        if let Err(e) = stream.send_data(Bytes::copy_from_slice(piece), last) {
            send_error = Some(e);
            break;
        }
    }
    if send_error.is_none() && !req.trailers.is_empty() {
        if let Err(e) = stream.send_trailers(header_map(&req.trailers)?) {
            send_error = Some(e);
        }
    }
    let response = match response.await {
        Ok(r) => r,
        Err(e) => {
            let sending = send_error
                .map(|s| format!(" (sending: {s})"))
                .unwrap_or_default();
            return Err(io_err(format!(
                "HTTP/2 stream failed before the response: {e}{sending}"
            )));
        }
    };
    let (parts, mut body) = response.into_parts();
    let raw_headers = pairs(&parts.headers);
    let mut data = Vec::new();
    let mut reset = None;
    let mut trailers = Vec::new();
    match read_body(&mut body, &mut data).await {
        Ok(()) => match body.trailers().await {
            Ok(t) => trailers = t.as_ref().map(pairs).unwrap_or_default(),
            Err(e) => reset = Some(e.to_string()),
        },
        Err(e) => reset = Some(e.to_string()),
    }
    Ok(Response {
        proto: Proto::H2,
        status: parts.status.as_u16(),
        headers: super::lossy(&raw_headers),
        raw_headers,
        body: data,
        trailers,
        reset,
    })
}

async fn read_body(body: &mut RecvStream, into: &mut Vec<u8>) -> Result<(), ::h2::Error> {
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        into.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// The HTTP/2 upstream

/// A canned answer of [`H2Echo`].
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Any bytes but CR, LF and NUL in values.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Send the body in DATA frames of this many bytes, 5 ms apart (0: one frame).
    pub chunk: usize,
    /// Sent as a trailers frame after the body (none: the body's last frame ends the stream).
    pub trailers: Vec<(String, Vec<u8>)>,
}

impl Reply {
    /// 200 with this `content-type` and body.
    pub fn new(content_type: &str, body: &[u8]) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".to_string(), content_type.as_bytes().to_vec())],
            body: body.to_vec(),
            chunk: 0,
            trailers: Vec::new(),
        }
    }

    /// gRPC-like: `content-type: application/grpc`, this body, trailers `grpc-status: 0`.
    pub fn grpc(body: &[u8]) -> Reply {
        Reply::new("application/grpc", body).trailer("grpc-status", b"0")
    }

    pub fn header(mut self, name: &str, value: &[u8]) -> Reply {
        self.headers.push((name.to_string(), value.to_vec()));
        self
    }

    pub fn trailer(mut self, name: &str, value: &[u8]) -> Reply {
        self.trailers.push((name.to_string(), value.to_vec()));
        self
    }

    pub fn chunked(mut self, chunk: usize) -> Reply {
        self.chunk = chunk;
        self
    }
}

/// What [`H2Echo`] received for one request (values UTF-8, lossy).
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, Vec<u8>)>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn trailer(&self, name: &str) -> Option<&[u8]> {
        self.trailers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

#[derive(Default)]
struct Shared {
    replies: Mutex<Vec<(String, Reply)>>,
    received: Mutex<Vec<Received>>,
    requests: AtomicUsize,
    stop: AtomicBool,
}

/// The HTTP/2 upstream (h2c; use [`super::EnvoyOpts::h2_upstream`]). Every request is recorded
/// ([`H2Echo::received`]). It answers:
/// - on a path starting with a prefix given to [`H2Echo::reply_on`]: that [`Reply`];
/// - with `x-echo-raw: <content-type>`: the request body itself as that type (`x-echo-chunk: N`: in
///   N-byte DATA frames), ending with the trailers named in `x-echo-trailers: name=value,...` if any;
/// - otherwise 200, `x-echo: 1`, and the JSON of [`super::Echo`] with `"proto": "h2"`.
pub struct H2Echo {
    pub port: u16,
    shared: Arc<Shared>,
}

impl H2Echo {
    pub fn start() -> H2Echo {
        let listener = StdListener::bind("127.0.0.1:0").expect("h2 echo bind");
        listener.set_nonblocking(true).expect("h2 echo nonblocking");
        let port = listener.local_addr().expect("h2 echo addr").port();
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        thread::spawn(move || {
            let Ok(rt) = runtime() else { return };
            rt.block_on(accept_loop(listener, thread_shared));
        });
        H2Echo { port, shared }
    }

    /// Requests whose path starts with `prefix` get `reply` (the latest matching prefix wins).
    pub fn reply_on(&self, prefix: &str, reply: Reply) {
        let mut replies = self.shared.replies.lock().expect("replies");
        replies.insert(0, (prefix.to_string(), reply));
    }

    /// Requests received completely (body and trailers read).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Every request received completely, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("received").clone()
    }
}

impl Drop for H2Echo {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        super::wake(self.port);
    }
}

async fn accept_loop(listener: StdListener, shared: Arc<Shared>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let Ok(mut connection) = server::handshake(socket).await else {
                return;
            };
            while let Some(Ok((request, respond))) = connection.accept().await {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = answer(request, respond, &shared).await;
                });
            }
        });
    }
}

async fn answer(
    request: http::Request<RecvStream>,
    mut respond: server::SendResponse<Bytes>,
    shared: &Shared,
) -> Result<(), ::h2::Error> {
    let (parts, mut body) = request.into_parts();
    let mut data = Vec::new();
    read_body(&mut body, &mut data).await?;
    let trailers = body
        .trailers()
        .await?
        .as_ref()
        .map(pairs)
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let received = Received {
        method: parts.method.as_str().to_string(),
        path: path.clone(),
        headers: pairs(&parts.headers),
        body: data,
        trailers,
    };
    shared
        .received
        .lock()
        .expect("received")
        .push(received.clone());
    shared.requests.fetch_add(1, Ordering::SeqCst);

    let canned = shared
        .replies
        .lock()
        .expect("replies")
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        .map(|(_, r)| r.clone());
    let reply = match canned {
        Some(reply) => reply,
        None => match received.header("x-echo-raw") {
            Some(content_type) => raw_reply(&received, content_type),
            None => echo_reply(&received),
        },
    };
    send_reply(&mut respond, &reply).await
}

/// The request body back, as `x-echo-raw` and friends ask.
fn raw_reply(received: &Received, content_type: &[u8]) -> Reply {
    let text = |name: &str| {
        String::from_utf8_lossy(received.header(name).unwrap_or_default()).into_owned()
    };
    let mut reply = Reply::new("", &received.body);
    reply.headers = vec![("content-type".to_string(), content_type.to_vec())];
    reply.chunk = text("x-echo-chunk").parse().unwrap_or(0);
    for pair in text("x-echo-trailers").split(',').filter(|p| !p.is_empty()) {
        if let Some((n, v)) = pair.split_once('=') {
            reply = reply.trailer(n.trim(), v.trim().as_bytes());
        }
    }
    reply
}

fn echo_reply(received: &Received) -> Reply {
    let lossy = |pairs: &[(String, Vec<u8>)]| -> Vec<Value> {
        pairs
            .iter()
            .map(|(n, v)| json!([n, String::from_utf8_lossy(v)]))
            .collect()
    };
    let body = json!({
        "proto": "h2",
        "method": received.method,
        "path": received.path,
        "headers": lossy(&received.headers),
        "body": String::from_utf8_lossy(&received.body),
        "trailers": lossy(&received.trailers),
    })
    .to_string();
    Reply::new("application/json", body.as_bytes()).header("x-echo", b"1")
}

async fn send_reply(
    respond: &mut server::SendResponse<Bytes>,
    reply: &Reply,
) -> Result<(), ::h2::Error> {
    let mut response = http::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            response = response.header(n, v);
        }
    }
    let Ok(response) = response.body(()) else {
        return Ok(());
    };
    let end_at_headers = reply.body.is_empty() && reply.trailers.is_empty();
    let mut stream: SendStream<Bytes> = respond.send_response(response, end_at_headers)?;
    let size = if reply.chunk == 0 {
        reply.body.len().max(1)
    } else {
        reply.chunk
    };
    let chunks: Vec<&[u8]> = reply.body.chunks(size).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let last = i + 1 == chunks.len() && reply.trailers.is_empty();
        stream.send_data(Bytes::copy_from_slice(chunk), last)?;
    }
    if !reply.trailers.is_empty() {
        let map = header_map(&reply.trailers).map_err(|_| ::h2::Reason::INTERNAL_ERROR)?;
        stream.send_trailers(map)?;
    }
    // What was queued goes out from the connection task, also after `stream` is dropped.
    Ok(())
}

// Hand-made frames, for what the `h2` crate would not send (or not when asked).

/// HPACK integer with an `n`-bit prefix (RFC 7541 5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of literals without indexing, new names, no Huffman: any bytes go.
pub fn hpack(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in headers {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, n.len());
        out.extend(n);
        hpack_int(&mut out, 0, 7, v.len());
        out.extend(v);
    }
    out
}

/// One HTTP/2 frame: `kind`, `flags`, stream id, payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}
