//! `apiguard serve`: the inventory service at the other end of discovery (`docs/inventory.md`).
//!
//! # Where to start
//! - [`ingest`] turns a request body (apiguard batch, OTLP JSON or protobuf logs) into validated
//!   [`ingest::Batch`]es, with the filter's own batch schema and event constants.
//! - [`store`] keeps the inventory in SQLite or PostgreSQL (by the `--store` URL; replicas may
//!   share one PostgreSQL): versioned migrations, one transaction per group of batches, batch ids
//!   for idempotence, bounded retention. [`merge`] says how entries merge.
//! - [`spec`] rebuilds an OpenAPI 3.1 document per service and judges endpoints against declared
//!   documents with the filter's [`apiguard::discovery::declared`]; [`findings`] maps everything to
//!   a severity and an OWASP API Top 10 2023 category.
//! - [`api`] answers the JSON API, [`page`] the server-rendered web page, [`metrics`] `/metrics`.
//!
//! # Threads and bounds
//! `--workers` HTTP threads read, authenticate and validate requests and turn each batch entry
//! into a typed record ([`store::Item::new`]); one writer thread (the only serial stage) owns the
//! write connection, merges those records and commits queued batches in groups (at most [`GROUP`]
//! per transaction). On SQLite a checkpoint thread keeps WAL checkpoints off the writer
//! ([`store::spawn_checkpointer`]).
//! The queue holds at most `--queue` batches: past it ingest answers 503 with `Retry-After`, and
//! one proxy with more than `--per-proxy-queue` waiting gets 429. Bodies are capped by
//! `--max-body-bytes` before they are read; the inventory by `--max-endpoints` and `--retention`.

pub mod api;
pub mod findings;
pub mod ingest;
pub mod merge;
pub mod metrics;
pub mod options;
pub mod otlp_pb;
pub mod page;
pub mod spec;
pub mod store;

use ingest::{Batch, Validator};
use metrics::Metrics;
use options::Options;
use serde_json::{json, Value};
use spec::{Catalogue, Declared};
use std::collections::HashMap;
use std::io::Read;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use store::{Item, Store, Stored, Sync};

/// Batches committed in one transaction at most.
pub const GROUP: usize = 64;
/// The path the filter's `"encoding": "apiguard"` batches are posted to.
pub const BATCH_PATH: &str = "/v1/apiguard";
pub const OTLP_LOGS_PATH: &str = "/v1/logs";

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

type Reply = Result<Vec<Stored>, String>;

struct Job {
    items: Vec<Item>,
    reply: SyncSender<Reply>,
}

pub struct State {
    pub opts: Options,
    validator: Validator,
    jobs: SyncSender<Job>,
    pub reader: Mutex<Store>,
    pub catalogue: RwLock<Catalogue>,
    pub metrics: Metrics,
    pending: Mutex<HashMap<String, usize>>,
}

/// A response, before it becomes a `tiny_http` one.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub fn json(status: u16, v: &Value) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            body: serde_json::to_vec_pretty(v).unwrap_or_default(),
            headers: Vec::new(),
        }
    }
    pub fn error(status: u16, message: &str) -> Answer {
        Answer::json(status, &json!({ "error": message }))
    }
    pub fn retry(status: u16, message: &str, after_s: u32) -> Answer {
        let mut a = Answer::error(status, message);
        a.headers.push(("Retry-After", after_s.to_string()));
        a
    }
    pub fn html(status: u16, body: String) -> Answer {
        Answer {
            status,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }
}

/// The declared documents from the command line, the filter configuration and the store.
fn catalogue(opts: &Options, uploaded: &[(String, String)]) -> Result<Catalogue, String> {
    let mut declared: Vec<Declared> = Vec::new();
    let mut retired: Vec<Value> = opts
        .retired_prefixes
        .iter()
        .map(|p| Value::from(p.as_str()))
        .collect();
    if let Some(path) = &opts.filter_config {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let config: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        let d = config.get("discovery").unwrap_or(&Value::Null);
        if let Some(doc) = d.get("declared_openapi") {
            let doc = match doc {
                Value::String(s) => serde_json::from_str(s)
                    .map_err(|e| format!("{path}: discovery.declared_openapi: {e}"))?,
                other => other.clone(),
            };
            let bases: Option<Vec<String>> = d
                .get("declared_base_paths")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                });
            declared.push(
                Declared::compile("*", doc, bases.as_deref())
                    .map_err(|e| format!("{path}: discovery.declared_openapi{e}"))?,
            );
        }
        for p in d
            .get("retired_prefixes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            retired.push(p.clone());
        }
    }
    for (service, path) in &opts.specs {
        let text = std::fs::read_to_string(path).map_err(|e| format!("--spec {path}: {e}"))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| format!("--spec {path}: {e}"))?;
        declared.retain(|d| &d.service != service);
        declared.push(
            Declared::compile(service, doc, None).map_err(|e| format!("--spec {path}: {e}"))?,
        );
    }
    for (service, text) in uploaded {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| format!("stored spec {service}: {e}"))?;
        declared.retain(|d| &d.service != service);
        declared.push(Declared::compile(service, doc, None)?);
    }
    let retired_value = Value::Array(retired);
    let retired = apiguard::discovery::declared::RetiredPrefixes::compile(
        &apiguard::reader::Node::root(&retired_value),
    )
    .map_err(|e| format!("retired prefixes: {}", e.message))?;
    Ok(Catalogue { declared, retired })
}

impl State {
    /// Rebuilds the catalogue after a spec upload.
    pub fn reload_catalogue(&self) -> Result<(), String> {
        let uploaded = self
            .reader
            .lock()
            .map_err(|_| "store lock poisoned".to_string())?
            .specs()?;
        let cat = catalogue(&self.opts, &uploaded)?;
        if let Ok(mut c) = self.catalogue.write() {
            *c = cat;
        }
        Ok(())
    }
}

fn writer(mut store: Store, rx: Receiver<Job>, state: Arc<State>) {
    let mut last_sweep = Instant::now();
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if let Some(first) = first {
            let mut jobs = vec![first];
            let mut batches = jobs.first().map_or(0, |j| j.items.len());
            while batches < GROUP {
                match rx.try_recv() {
                    Ok(j) => {
                        batches += j.items.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            state.metrics.queue_depth.fetch_sub(
                (jobs.iter().map(|j| j.items.len()).sum::<usize>()) as u64,
                Relaxed,
            );
            commit(&mut store, jobs, &state);
        }
        if last_sweep.elapsed() >= Duration::from_millis(state.opts.sweep_every_ms) {
            last_sweep = Instant::now();
            let now = now_ms();
            match store.sweep(
                now.saturating_sub(state.opts.retention_ms),
                now.saturating_sub(state.opts.dedup_window_ms),
            ) {
                Ok(s) => {
                    state
                        .metrics
                        .swept_endpoints
                        .fetch_add(s.endpoints as u64, Relaxed);
                }
                Err(e) => eprintln!("apiguard serve: retention sweep: {e}"),
            }
            if let Ok((n, _)) = store.counts() {
                state.metrics.endpoints_stored.store(n, Relaxed);
            }
        }
    }
}

fn commit(store: &mut Store, jobs: Vec<Job>, state: &State) {
    if state.opts.commit_delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(state.opts.commit_delay_ms));
    }
    let mut items = Vec::new();
    let mut shapes = Vec::new();
    for job in jobs {
        shapes.push((job.items.len(), job.reply));
        items.extend(job.items);
    }
    match store.ingest(&mut items, now_ms(), state.opts.max_endpoints) {
        Ok((outcomes, refused)) => {
            state.metrics.endpoints_refused.fetch_add(refused, Relaxed);
            for (o, item) in outcomes.iter().zip(&items) {
                if *o == Stored::New {
                    state.metrics.batches_accepted.fetch_add(1, Relaxed);
                    state
                        .metrics
                        .endpoints_received
                        .fetch_add(item.endpoints as u64, Relaxed);
                } else {
                    state.metrics.batches_duplicate.fetch_add(1, Relaxed);
                }
            }
            if let Ok(n) = store.endpoint_count() {
                state.metrics.endpoints_stored.store(n, Relaxed);
            }
            let mut rest = outcomes.as_slice();
            for (n, reply) in shapes {
                let (mine, tail) = rest.split_at(n.min(rest.len()));
                rest = tail;
                let _ = reply.send(Ok(mine.to_vec()));
            }
        }
        Err(e) => {
            state.metrics.store_errors.fetch_add(1, Relaxed);
            eprintln!("apiguard serve: {e}");
            for (_, reply) in shapes {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn header<'a>(req: &'a tiny_http::Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn bearer(req: &tiny_http::Request) -> Option<&str> {
    let v = header(req, "authorization")?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The proxy a request comes from, by its token; `anonymous` when no token is configured (the
/// service then listens on loopback only, see [`Options::parse`]).
fn proxy_of(state: &State, req: &tiny_http::Request) -> Option<String> {
    if state.opts.proxy_tokens.is_empty() {
        return Some("anonymous".into());
    }
    let given = bearer(req)?;
    state
        .opts
        .proxy_tokens
        .iter()
        .find(|(_, t)| constant_time_eq(t.as_bytes(), given.as_bytes()))
        .map(|(n, _)| n.clone())
}

/// May this request read the inventory?
pub fn may_read(state: &State, req: &tiny_http::Request) -> bool {
    let Some(token) = &state.opts.read_token else {
        return true;
    };
    if bearer(req).is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes())) {
        return true;
    }
    header(req, "cookie").is_some_and(|c| {
        c.split(';').any(|kv| {
            kv.trim()
                .strip_prefix("apiguard_token=")
                .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
        })
    })
}

/// Reads the body, at most `max` bytes (413 past it, before reading when Content-Length says so).
///
/// `Content-Encoding: gzip` (what an OpenTelemetry Collector's `otlphttp` exporter sends by
/// default) is decompressed here: the compressed body is capped at `max` like any other, and the
/// decompressed one too (a zip bomb is a 413 once `max + 1` bytes came out, nothing more is
/// inflated). A corrupt gzip stream is a 400; any other coding a 415.
pub fn read_body(req: &mut tiny_http::Request, max: usize) -> Result<Vec<u8>, Answer> {
    if req.body_length().is_some_and(|n| n > max) {
        return Err(Answer::error(413, &format!("body larger than {max} bytes")));
    }
    let gzip = gzip_coding(header(req, "content-encoding"))?;
    let body = match read_capped(req.as_reader(), max) {
        Ok(Some(b)) => b,
        Ok(None) => return Err(Answer::error(413, &format!("body larger than {max} bytes"))),
        Err(e) => return Err(Answer::error(400, &format!("could not read the body: {e}"))),
    };
    if gzip {
        gunzip(&body, max)
    } else {
        Ok(body)
    }
}

/// Is the body gzip (true) or as is (false)? Another coding is a 415.
fn gzip_coding(content_encoding: Option<&str>) -> Result<bool, Answer> {
    match content_encoding.map(str::trim) {
        None => Ok(false),
        Some(enc) if enc.is_empty() || enc.eq_ignore_ascii_case("identity") => Ok(false),
        Some(enc) if enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("x-gzip") => {
            Ok(true)
        }
        Some(enc) => Err(Answer::error(
            415,
            &format!("content-encoding {enc} is not supported: send gzip or identity"),
        )),
    }
}

/// Decompresses a gzip body (concatenated members too), at most `max` bytes out: 413 past it
/// (after inflating `max + 1` bytes, never more), 400 for a corrupt stream.
fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, Answer> {
    match read_capped(flate2::read::MultiGzDecoder::new(body), max) {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err(Answer::error(
            413,
            &format!("gzip body larger than {max} bytes once decompressed"),
        )),
        Err(e) => Err(Answer::error(400, &format!("not a valid gzip body: {e}"))),
    }
}

/// Reads at most `max` bytes from `from`; None when there are more (only `max + 1` are read).
fn read_capped(from: impl Read, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    from.take(limit).read_to_end(&mut body)?;
    Ok((body.len() <= max).then_some(body))
}

enum Format {
    Apiguard,
    OtlpJson,
    OtlpProtobuf,
}

/// Queues batches for the writer and waits for their commit.
fn submit(state: &State, token_name: &str, batches: Vec<Batch>) -> Result<Vec<Stored>, Answer> {
    let n = batches.len();
    {
        let Ok(mut pending) = state.pending.lock() else {
            return Err(Answer::retry(503, "service unavailable", 1));
        };
        let mine = pending.entry(token_name.to_string()).or_insert(0);
        if *mine + n > state.opts.per_proxy_queue {
            state.metrics.reject("proxy_overloaded");
            return Err(Answer::retry(
                429,
                "too many batches of this proxy are waiting; retry later",
                1,
            ));
        }
        *mine += n;
    }
    let (tx, rx) = mpsc::sync_channel(1);
    // Entries become typed records here, on the HTTP worker, in parallel: the writer only merges
    // them (and this thread, not the writer, frees the batch's JSON).
    let job = Job {
        items: batches
            .into_iter()
            .map(|b| Item::new(token_name, b))
            .collect(),
        reply: tx,
    };
    state.metrics.queue_depth.fetch_add(n as u64, Relaxed);
    let sent = state.jobs.try_send(job);
    let result = match sent {
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            state.metrics.queue_depth.fetch_sub(n as u64, Relaxed);
            state.metrics.reject("overloaded");
            Err(Answer::retry(
                503,
                "the ingest queue is full; retry later",
                1,
            ))
        }
        Ok(()) => match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(e)) => Err(Answer::retry(503, &format!("store unavailable: {e}"), 5)),
            Err(_) => Err(Answer::retry(503, "store too slow; retry later", 5)),
        },
    };
    if let Ok(mut pending) = state.pending.lock() {
        if let Some(mine) = pending.get_mut(token_name) {
            *mine = mine.saturating_sub(n);
        }
    }
    result
}

fn partial_success_pb(rejected: usize, message: &str) -> Vec<u8> {
    if rejected == 0 {
        return Vec::new();
    }
    let mut inner = vec![0x08];
    let mut v = rejected as u64;
    while v >= 0x80 {
        inner.push((v as u8) | 0x80);
        v >>= 7;
    }
    inner.push(v as u8);
    let msg = message.as_bytes();
    inner.push(0x12);
    let mut l = msg.len();
    while l >= 0x80 {
        inner.push((l as u8) | 0x80);
        l >>= 7;
    }
    inner.push(l as u8);
    inner.extend_from_slice(msg);
    let mut out = vec![0x0a];
    let mut l = inner.len();
    while l >= 0x80 {
        out.push((l as u8) | 0x80);
        l >>= 7;
    }
    out.push(l as u8);
    out.extend(inner);
    out
}

fn ingest(state: &State, req: &mut tiny_http::Request, path: &str) -> Answer {
    let started = Instant::now();
    let Some(token_name) = proxy_of(state, req) else {
        state.metrics.reject("unauthorized");
        let mut a = Answer::error(401, "a proxy token is required (Authorization: Bearer)");
        a.headers.push(("WWW-Authenticate", "Bearer".into()));
        return a;
    };
    let media = header(req, "content-type")
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let format = match (path, media.as_str()) {
        (BATCH_PATH, "application/json" | "") => Format::Apiguard,
        (OTLP_LOGS_PATH, "application/json") => Format::OtlpJson,
        (OTLP_LOGS_PATH, "application/x-protobuf" | "application/protobuf") => Format::OtlpProtobuf,
        _ => {
            state.metrics.reject("unsupported_media_type");
            return Answer::error(
                415,
                &format!("{path} does not take content-type {media:?} (application/json; /v1/logs also application/x-protobuf)"),
            );
        }
    };
    let body = match read_body(req, state.opts.max_body_bytes) {
        Ok(b) => b,
        Err(a) => {
            state.metrics.reject(match a.status {
                413 => "too_large",
                415 => "unsupported_media_type",
                _ => "invalid",
            });
            return a;
        }
    };
    let parsed = match format {
        Format::Apiguard => state.validator.apiguard(&body).map(|b| (vec![b], 0, None)),
        Format::OtlpJson => state
            .validator
            .otlp_json(&body)
            .map(|o| (o.batches, o.rejected, o.error)),
        Format::OtlpProtobuf => state
            .validator
            .otlp_protobuf(&body)
            .map(|o| (o.batches, o.rejected, o.error)),
    };
    let (batches, rejected, why) = match parsed {
        Ok(p) => p,
        Err(r) => {
            state.metrics.reject(if r.status == 413 {
                "too_large"
            } else {
                "invalid"
            });
            return Answer::error(r.status, &r.message);
        }
    };
    state
        .metrics
        .otlp_records_rejected
        .fetch_add(rejected as u64, Relaxed);
    let endpoints: usize = batches.iter().map(|b| b.endpoints.len()).sum();
    let outcomes = if batches.is_empty() {
        Vec::new()
    } else {
        match submit(state, &token_name, batches) {
            Ok(o) => o,
            Err(a) => return a,
        }
    };
    state
        .metrics
        .observe_latency(started.elapsed().as_secs_f64());
    let duplicates = outcomes.iter().filter(|o| **o == Stored::Duplicate).count();
    match format {
        Format::Apiguard => Answer::json(
            200,
            &json!({"endpoints": endpoints, "duplicate": duplicates > 0}),
        ),
        Format::OtlpJson => {
            let v = if rejected > 0 {
                json!({"partialSuccess": {"rejectedLogRecords": rejected.to_string(),
                    "errorMessage": why.unwrap_or_default()}})
            } else {
                json!({})
            };
            Answer::json(200, &v)
        }
        Format::OtlpProtobuf => Answer {
            status: 200,
            content_type: "application/x-protobuf",
            body: partial_success_pb(rejected, &why.unwrap_or_default()),
            headers: Vec::new(),
        },
    }
}

fn respond(req: tiny_http::Request, a: Answer) {
    let mut r = tiny_http::Response::from_data(a.body).with_status_code(a.status);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], a.content_type.as_bytes()) {
        r.add_header(h);
    }
    for (k, v) in a.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            r.add_header(h);
        }
    }
    let _ = req.respond(r);
}

fn handle(state: &State, mut req: tiny_http::Request) {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let method = req.method().as_str().to_ascii_uppercase();
    let answer = match (method.as_str(), path) {
        ("POST", BATCH_PATH | OTLP_LOGS_PATH) => ingest(state, &mut req, path),
        (_, BATCH_PATH | OTLP_LOGS_PATH) => Answer::error(405, "POST only"),
        ("GET", "/healthz") => Answer::json(200, &json!({"status": "ok"})),
        ("GET", "/metrics") if may_read(state, &req) => Answer {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: state.metrics.render().into_bytes(),
            headers: Vec::new(),
        },
        (_, p) if p.starts_with("/api/") => api::route(state, &mut req, &method, p, query),
        _ => page::route(state, &mut req, &method, path, query),
    };
    respond(req, answer);
}

pub fn main(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", options::HELP);
        return ExitCode::SUCCESS;
    }
    let opts = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("apiguard serve: {e}\n\n{}", options::HELP);
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apiguard serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: Options) -> Result<(), String> {
    let sync = if opts.sync_full {
        Sync::Full
    } else {
        Sync::Normal
    };
    let mut writer_store = Store::open(&opts.store, sync)?.with_cache(opts.cache_endpoints);
    let mut reader = Store::open(&opts.store, sync)?;
    store::spawn_checkpointer(&opts.store)?;
    let cat = catalogue(&opts, &reader.specs()?)?;
    let validator = Validator::new(opts.max_body_bytes)?;
    let server = tiny_http::Server::http(opts.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
    let (tx, rx) = mpsc::sync_channel(opts.queue);
    let workers = opts.workers;
    let listen = server.server_addr();
    let state = Arc::new(State {
        opts,
        validator,
        jobs: tx,
        reader: Mutex::new(reader),
        catalogue: RwLock::new(cat),
        metrics: Metrics::default(),
        pending: Mutex::new(HashMap::new()),
    });
    if let Ok((n, _)) = writer_store.counts() {
        state.metrics.endpoints_stored.store(n, Relaxed);
    }
    let w = Arc::clone(&state);
    // Named, so that its CPU time can be told apart (/proc/PID/task/*/comm; scripts/bench-serve.py).
    std::thread::Builder::new()
        .name("apiguard-writer".into())
        .spawn(move || writer(writer_store, rx, w))
        .map_err(|e| format!("cannot start the writer thread: {e}"))?;
    let server = Arc::new(server);
    eprintln!(
        "apiguard serve: listening on http://{listen} (batches {BATCH_PATH}, OTLP {OTLP_LOGS_PATH}, page /, API /api/v1)"
    );
    let mut handles = Vec::new();
    for _ in 0..workers {
        let s = Arc::clone(&server);
        let st = Arc::clone(&state);
        handles.push(std::thread::spawn(move || {
            while let Ok(req) = s.recv() {
                handle(&st, req);
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_bodies_are_inflated_within_the_cap_and_other_codings_refused() {
        assert!(!gzip_coding(None).unwrap());
        assert!(!gzip_coding(Some("identity")).unwrap());
        assert!(gzip_coding(Some(" GZIP ")).unwrap());
        assert!(gzip_coding(Some("x-gzip")).unwrap());
        for other in ["br", "deflate", "zstd", "gzip, br"] {
            assert_eq!(gzip_coding(Some(other)).unwrap_err().status, 415, "{other}");
        }
        let text = br#"{"schema_version": 1}"#;
        assert_eq!(gunzip(&gz(text), 64).unwrap(), text);
        // Two members, as `cat a.gz b.gz` makes: one body.
        let mut two = gz(b"ab");
        two.extend(gz(b"cd"));
        assert_eq!(gunzip(&two, 64).unwrap(), b"abcd");
        // A bomb: 64 MiB of zeros in ~64 KB; refused after max + 1 bytes came out.
        let bomb = gz(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        let r = gunzip(&bomb, 1 << 20).unwrap_err();
        assert_eq!(r.status, 413);
        // Exactly at the cap is fine.
        assert_eq!(gunzip(&gz(&[b' '; 1024]), 1024).unwrap().len(), 1024);
        // Not gzip, or cut short: 400.
        assert_eq!(gunzip(text, 64).unwrap_err().status, 400);
        let whole = gz(text);
        assert_eq!(
            gunzip(&whole[..whole.len() - 6], 64).unwrap_err().status,
            400
        );
    }
}
