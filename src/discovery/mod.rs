//! API discovery: an inventory of the endpoints that really carry traffic, their API types,
//! credentials, data classes and body shapes, each endpoint marked declared, shadow or zombie
//! against a declared OpenAPI document, with posture findings, sent to a collector in batches.
//! Values are never recorded: names, types, counts, sizes and flags only.
//!
//! # Where to start
//! - [`compile`] reads the `discovery` configuration section into an immutable [`Discovery`].
//! - [`observe::Observation`] is one request's observation, fed by the host's callbacks
//!   (request headers, bodies when at hand, response headers, end of stream).
//! - [`DiscoveryWorker`] is the per-worker state: the bounded [`inventory::Inventory`], the
//!   [`delivery::Outbox`] of encoded batches, the sampler and the counters. The host calls it on
//!   each finished request, on each tick, and for each collector call.
//! - [`template`], [`classify`], [`auth`], [`shape`], [`findings`], [`declared`] and [`event`]
//!   are the pure pieces; `docs/events.md` documents the batch.
//!
//! # What discovery does not do
//! - It never pauses or changes traffic, and never buffers a body for itself: bodies are read
//!   only when the host already has them (another stage buffered them, or the first chunk is all
//!   of a small body).
//! - It does not verify tokens: a JWT's `iss` is read unverified, to classify only.
//!
//! # Memory bounds (per worker)
//! The table holds at most `max_endpoints` entries (each bounded, see [`inventory`]); queued
//! batches at most `max_queue_bytes` plus one batch in flight of at most about `max_batch_bytes`.

pub mod auth;
pub mod classify;
pub mod declared;
pub mod delivery;
pub mod event;
pub mod findings;
pub mod inventory;
pub mod observe;
pub mod scrub;
pub mod shape;
pub mod template;

use crate::reader::{Node, Result};
pub use crate::request::HeaderView;
use crate::request::RequestView;
use auth::AuthNames;
use declared::{DeclaredApi, RetiredPrefixes};
use delivery::{Answer, DeliveryStats, Outbox, Outcome, Retry};
use event::{Encoding, Source, Window};
use findings::ErrorPatterns;
use inventory::{Inventory, Recorded};
use observe::Observation;
use shape::ShapeLimits;
use std::time::Duration;

pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_ENDPOINTS: usize = 1000;
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_BATCH_BYTES: usize = 256 * 1024;
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
/// A full table is flushed early at most this often (a flood of new paths must not turn into a
/// flood of batches; past it, observations fold into the overflow entry).
pub const MIN_EARLY_FLUSH_INTERVAL_MS: u64 = 1000;

/// Where batches go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout: Duration,
    pub encoding: Encoding,
    pub retry: Retry,
    /// `Authorization` value sent with every batch (`Bearer <collector.token>`).
    pub authorization: Option<String>,
}

/// Longest `collector.token` accepted.
pub const MAX_COLLECTOR_TOKEN_BYTES: usize = 4096;

fn collector_token(node: &Node<'_>) -> Result<String> {
    let token = node.non_empty_str()?;
    if token.len() > MAX_COLLECTOR_TOKEN_BYTES {
        return Err(node.error(format!("longer than {MAX_COLLECTOR_TOKEN_BYTES} bytes")));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(node.error(
            "a token is visible ASCII without spaces (it travels as `Authorization: Bearer <token>`)",
        ));
    }
    Ok(format!("Bearer {token}"))
}

/// The compiled `discovery` section.
#[derive(Debug)]
pub struct Discovery {
    pub collector: Collector,
    pub flush_interval: Duration,
    pub max_endpoints: usize,
    pub max_queue_bytes: usize,
    pub max_batch_bytes: usize,
    /// Fraction of requests observed, 0 to 1.
    pub sample_rate: f64,
    /// `sample_rate` in parts per million.
    pub sample_ppm: u32,
    /// Bodies up to this size are read (JSON parsed only when complete); 0 reads none.
    pub max_body_bytes: usize,
    pub shape: ShapeLimits,
    pub declared: Option<DeclaredApi>,
    pub retired: RetiredPrefixes,
    pub auth_names: AuthNames,
    pub errors: ErrorPatterns,
}

fn header_token(node: &Node<'_>) -> Result<String> {
    let name = node.non_empty_str()?;
    if !crate::http_names::is_token(name) {
        return Err(node.error(format!(
            "{name:?} is not a valid header, parameter or cookie name"
        )));
    }
    Ok(name.to_ascii_lowercase())
}

fn token_list(node: &Node<'_>) -> Result<Vec<String>> {
    node.array()?.iter().map(header_token).collect()
}

fn duration_in(node: &Node<'_>, min: Duration, max: Duration) -> Result<Duration> {
    let d = node.duration()?;
    if d < min || d > max {
        return Err(node.error(format!("must be between {min:?} and {max:?}")));
    }
    Ok(d)
}

fn compile_collector(node: &Node<'_>) -> Result<Collector> {
    let obj = node.object(&["cluster", "uri", "timeout", "encoding", "retry", "token"])?;
    let cluster = obj.require("cluster")?.non_empty_str()?.to_string();
    let (authority, path) = obj.require("uri")?.http_uri()?;
    let timeout = match obj.get("timeout") {
        Some(n) => duration_in(&n, Duration::from_millis(10), Duration::from_secs(60))?,
        None => Duration::from_secs(2),
    };
    let encoding = match obj.get("encoding") {
        Some(n) => n.one_of(&[("apiguard", Encoding::Apiguard), ("otlp", Encoding::Otlp)])?,
        None => Encoding::Apiguard,
    };
    let mut retry = Retry::default();
    if let Some(n) = obj.get("retry") {
        let r = n.object(&["base_interval", "max_interval", "max_attempts"])?;
        if let Some(b) = r.get("base_interval") {
            retry.base_interval =
                duration_in(&b, Duration::from_millis(10), Duration::from_secs(3600))?;
        }
        if let Some(m) = r.get("max_interval") {
            retry.max_interval =
                duration_in(&m, Duration::from_millis(10), Duration::from_secs(3600))?;
        }
        if retry.max_interval < retry.base_interval {
            return Err(r
                .node()
                .error("max_interval must not be below base_interval"));
        }
        if let Some(a) = r.get("max_attempts") {
            retry.max_attempts = u32::try_from(a.usize_in(1, 100)?).unwrap_or(1);
        }
    }
    let authorization = obj.get("token").map(|n| collector_token(&n)).transpose()?;
    Ok(Collector {
        cluster,
        authority,
        path,
        timeout,
        encoding,
        retry,
        authorization,
    })
}

/// Reads the `discovery` section.
pub fn compile(node: &Node<'_>) -> Result<Discovery> {
    let obj = node.object(&[
        "collector",
        "flush_interval",
        "max_endpoints",
        "max_queue_bytes",
        "max_batch_bytes",
        "sample_rate",
        "max_body_bytes",
        "max_shape_depth",
        "max_shape_members",
        "declared_openapi",
        "declared_base_paths",
        "retired_prefixes",
        "api_key_names",
        "session_cookie_names",
    ])?;
    let collector = compile_collector(&obj.require("collector")?)?;
    let flush_interval = match obj.get("flush_interval") {
        Some(n) => duration_in(&n, Duration::from_millis(100), Duration::from_secs(3600))?,
        None => DEFAULT_FLUSH_INTERVAL,
    };
    let usize_or = |name: &str, min: usize, max: usize, default: usize| -> Result<usize> {
        obj.get(name)
            .map(|n| n.usize_in(min, max))
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    let max_endpoints = usize_or("max_endpoints", 1, 100_000, DEFAULT_MAX_ENDPOINTS)?;
    let max_queue_bytes = usize_or("max_queue_bytes", 4096, 64 << 20, DEFAULT_MAX_QUEUE_BYTES)?;
    let max_batch_bytes = usize_or("max_batch_bytes", 4096, 16 << 20, DEFAULT_MAX_BATCH_BYTES)?;
    if max_batch_bytes > max_queue_bytes {
        let n = obj
            .get("max_batch_bytes")
            .unwrap_or_else(|| obj.node().clone());
        return Err(n.error(format!(
            "max_batch_bytes ({max_batch_bytes}) must not exceed max_queue_bytes ({max_queue_bytes})"
        )));
    }
    let sample_rate = match obj.get("sample_rate") {
        Some(n) => {
            let r = n
                .value
                .as_f64()
                .ok_or_else(|| n.error("expected a number between 0 and 1"))?;
            if !(0.0..=1.0).contains(&r) {
                return Err(n.error(format!("must be between 0 and 1, got {r}")));
            }
            r
        }
        None => 1.0,
    };
    let max_body_bytes = usize_or("max_body_bytes", 0, 1 << 20, DEFAULT_MAX_BODY_BYTES)?;
    let defaults = ShapeLimits::default();
    let shape = ShapeLimits {
        max_depth: usize_or("max_shape_depth", 1, 16, defaults.max_depth)?,
        max_members: usize_or("max_shape_members", 1, 1024, defaults.max_members)?,
    };
    let base_paths = match obj.get("declared_base_paths") {
        Some(n) => {
            let mut list = Vec::new();
            for item in n.array()? {
                let p = item.str()?;
                if !(p.is_empty() || p.starts_with('/')) {
                    return Err(item.error("a base path is empty or starts with '/'"));
                }
                list.push(p.to_string());
            }
            Some(list)
        }
        None => None,
    };
    let declared = match obj.get("declared_openapi") {
        None => None,
        Some(n) => match n.value {
            serde_json::Value::String(text) => {
                let doc: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| n.error(format!("not valid JSON: {e}")))?;
                let inner = Node::root(&doc);
                Some(
                    DeclaredApi::compile(&inner, base_paths.as_deref()).map_err(|mut e| {
                        e.path = if e.path == "$" {
                            n.path().to_string()
                        } else {
                            format!("{}({})", n.path(), e.path)
                        };
                        e
                    })?,
                )
            }
            _ => Some(DeclaredApi::compile(&n, base_paths.as_deref())?),
        },
    };
    if base_paths.is_some() && declared.is_none() {
        return Err(obj
            .node()
            .error("declared_base_paths needs declared_openapi"));
    }
    let retired = match obj.get("retired_prefixes") {
        Some(n) => RetiredPrefixes::compile(&n)?,
        None => RetiredPrefixes::default(),
    };
    let api_key_names = obj
        .get("api_key_names")
        .map(|n| token_list(&n))
        .transpose()?;
    let cookie_names = obj
        .get("session_cookie_names")
        .map(|n| token_list(&n))
        .transpose()?;
    let errors = ErrorPatterns::compile()
        .map_err(|e| obj.node().error(format!("internal pattern error: {e}")))?;
    Ok(Discovery {
        collector,
        flush_interval,
        max_endpoints,
        max_queue_bytes,
        max_batch_bytes,
        sample_rate,
        sample_ppm: (sample_rate * 1_000_000.0).round() as u32,
        max_body_bytes,
        shape,
        declared,
        retired,
        auth_names: AuthNames::new(
            api_key_names.as_deref().unwrap_or(&[]),
            cookie_names.as_deref().unwrap_or(&[]),
        ),
        errors,
    })
}

/// SplitMix64: a small, fast generator for sampling decisions. Not cryptographic; its seed comes from
/// the host's randomness (WASI `random_get`), never from the request.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A seed from the host's randomness; if that fails, from the clock (still nothing a client sends).
fn random_seed(now_ms: u64) -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => now_ms ^ 0x6a09_e667_f3bc_c908,
    }
}

/// A collector call to make: POST `body` to `cluster` with these headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout<'a> {
    pub id: u64,
    pub cluster: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
    pub timeout: Duration,
}

/// Worker counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Entries in the table now.
    pub endpoints_tracked: u64,
    /// Estimated heap bytes of the table now.
    pub table_bytes: u64,
    pub observations: u64,
    pub sampled_out: u64,
    /// Observations folded into the overflow entry, since start.
    pub overflowed: u64,
    pub batches_built: u64,
    pub delivery: DeliveryStats,
}

/// The per-worker discovery state (one per worker VM; the main-thread VM sees no traffic and its
/// table stays empty, so it never sends anything).
#[derive(Debug)]
pub struct DiscoveryWorker {
    source: Source,
    inventory: Inventory,
    outbox: Outbox,
    window_start_ms: u64,
    last_flush_ms: u64,
    /// The sampling generator: the filter's own randomness, so clients cannot choose to go unobserved.
    rng: SplitMix64,
    overflowed_total: u64,
    observations: u64,
    sampled_out: u64,
    batches_built: u64,
    /// Inferred templates of recent paths (bounded, see [`observe::PathCache`]).
    paths: observe::PathCache,
}

impl DiscoveryWorker {
    pub fn new(d: &Discovery, source: Source, now_ms: u64) -> DiscoveryWorker {
        DiscoveryWorker {
            source,
            inventory: Inventory::new(d.max_endpoints, d.shape),
            outbox: Outbox::new(d.max_queue_bytes, d.collector.retry, d.collector.timeout),
            window_start_ms: now_ms,
            last_flush_ms: now_ms,
            rng: SplitMix64(random_seed(now_ms)),
            overflowed_total: 0,
            observations: 0,
            sampled_out: 0,
            batches_built: 0,
            paths: observe::PathCache::default(),
        }
    }

    /// [`Observation::request`] through this worker's path cache.
    pub fn observe(&mut self, d: &Discovery, request: &dyn RequestView) -> Observation {
        Observation::request_with(d, request, Some(&mut self.paths))
    }

    /// Replaces the sampling seed (tests and benchmarks want repeatable runs).
    pub fn with_sampling_seed(mut self, seed: u64) -> DiscoveryWorker {
        self.rng = SplitMix64(seed);
        self
    }

    /// Whether to observe this request: a draw from the worker's own generator, independent of
    /// anything the client sends (a client cannot pick an `x-request-id` that goes unobserved).
    pub fn sample(&mut self, d: &Discovery) -> bool {
        let keep = if d.sample_ppm >= 1_000_000 {
            true
        } else if d.sample_ppm == 0 {
            false
        } else {
            self.rng.next() % 1_000_000 < u64::from(d.sample_ppm)
        };
        if !keep {
            self.sampled_out += 1;
        }
        keep
    }

    /// Folds a finished observation into the table; a table that becomes full is flushed at once
    /// (at most every [`MIN_EARLY_FLUSH_INTERVAL_MS`]). Returns whether it flushed.
    pub fn record(&mut self, d: &Discovery, obs: Observation, now_ms: u64) -> bool {
        self.observations += 1;
        if self.inventory.record(obs, now_ms) == Recorded::Overflowed {
            self.overflowed_total += 1;
        }
        if self.inventory.is_full()
            && now_ms.saturating_sub(self.last_flush_ms) >= MIN_EARLY_FLUSH_INTERVAL_MS
        {
            self.flush(d, now_ms);
            return true;
        }
        false
    }

    /// Drains the table into batches and queues them. Returns how many were queued.
    pub fn flush(&mut self, d: &Discovery, now_ms: u64) -> usize {
        let window = Window {
            start_ms: self.window_start_ms,
            end_ms: now_ms,
        };
        self.window_start_ms = now_ms;
        self.last_flush_ms = now_ms;
        if self.inventory.is_empty() {
            return 0;
        }
        let drained = self.inventory.drain();
        let batches = event::encode(
            d.collector.encoding,
            &self.source,
            &window,
            d.sample_rate,
            self.outbox.counters(),
            &drained,
            d.max_batch_bytes,
        );
        let n = batches.len();
        self.batches_built += n as u64;
        for batch in batches {
            self.outbox.push(batch);
        }
        n
    }

    /// On every tick: flushes when `flush_interval` has passed, then starts the next collector call
    /// if one may start. The host then sends [`DiscoveryWorker::callout`] for the returned id.
    pub fn tick(&mut self, d: &Discovery, now_ms: u64) -> Option<u64> {
        let interval = u64::try_from(d.flush_interval.as_millis()).unwrap_or(u64::MAX);
        if now_ms.saturating_sub(self.last_flush_ms) >= interval {
            self.flush(d, now_ms);
        }
        self.outbox.start(now_ms)
    }

    /// Starts the next call without flushing (after a call ended, to drain a backlog promptly).
    pub fn next_call(&mut self, now_ms: u64) -> Option<u64> {
        self.outbox.start(now_ms)
    }

    /// The call `id` as the host sends it.
    pub fn callout<'a>(&'a self, d: &'a Discovery, id: u64) -> Option<Callout<'a>> {
        let body = self.outbox.body(id)?;
        let mut headers = vec![
            (":method", "POST"),
            (":path", d.collector.path.as_str()),
            (":authority", d.collector.authority.as_str()),
            ("content-type", "application/json"),
        ];
        if let Some(auth) = &d.collector.authorization {
            headers.push(("authorization", auth.as_str()));
        }
        Some(Callout {
            id,
            cluster: &d.collector.cluster,
            headers,
            body,
            timeout: d.collector.timeout,
        })
    }

    /// How the call `id` ended (`dispatch_http_call` failing counts as [`Outcome::NoResponse`]).
    pub fn finish_call(&mut self, id: u64, outcome: Outcome, now_ms: u64) {
        self.finish_call_with(id, outcome, Answer::default(), now_ms);
    }

    /// How the call `id` ended, with what the answer said (`Retry-After`, OTLP partial success,
    /// see [`delivery::read_answer`]). The backoff's jitter comes from the worker's generator.
    pub fn finish_call_with(&mut self, id: u64, outcome: Outcome, answer: Answer, now_ms: u64) {
        let draw = self.rng.next();
        self.outbox
            .finish_with(id, outcome, answer, Some(draw), now_ms);
    }

    /// Entries in the table now (cheap; [`DiscoveryWorker::stats`] also estimates the table's heap).
    pub fn endpoints_tracked(&self) -> usize {
        self.inventory.len()
    }

    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            endpoints_tracked: self.inventory.len() as u64,
            table_bytes: self.inventory.heap_bytes() as u64,
            observations: self.observations,
            sampled_out: self.sampled_out,
            overflowed: self.overflowed_total,
            batches_built: self.batches_built,
            delivery: self.outbox.stats(),
        }
    }
}

#[cfg(test)]
mod tests;
