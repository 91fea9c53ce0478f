//! `apiguard serve` command line.

use apiguard::time::parse_duration;
use std::net::SocketAddr;

pub const HELP: &str = "usage: apiguard serve [options]

The inventory service: receives apiguard discovery batches and OTLP/HTTP logs, keeps a merged
API inventory, and serves a JSON API, a web page, reconstructed OpenAPI 3.1 and findings.
See docs/inventory.md.

options:
  --listen ADDR            address to bind (default 127.0.0.1:4318)
  --store URL              sqlite:PATH (default sqlite:apiguard-inventory.db) or
                           postgres://user@host:port/db (no TLS: loopback or a sidecar)
  --proxy-token NAME=TOKEN a proxy's bearer token (repeatable); NAME identifies the proxy
  --proxy-tokens FILE      one NAME=TOKEN per line
  --read-token TOKEN       bearer token for the API and the page (or APIGUARD_READ_TOKEN);
                           required unless --listen is a loopback address
  --spec SERVICE=FILE      a declared OpenAPI document (JSON) for SERVICE (`*`: every service)
  --filter-config FILE     the filter's configuration: discovery.declared_openapi,
                           declared_base_paths and retired_prefixes apply to every service
  --retired-prefix PREFIX  paths under PREFIX are zombies (repeatable)
  --retention DUR          forget endpoints unseen for DUR (default 720h)
  --dedup-window DUR       remember batch ids for DUR (default 1h)
  --sweep-every DUR        how often the retention sweep runs (default 60s, at least 1s)
  --unused-after DUR       a declared operation unseen for DUR is unused (default 168h)
  --max-body-bytes N       largest accepted body (default 4194304)
  --max-endpoints N        endpoints kept in all (default 100000)
  --cache-endpoints N      merged records the writer keeps in memory (default 10000)
  --queue N                batches waiting for the store before 503 (default 256)
  --per-proxy-queue N      batches of one proxy waiting before 429 (default 64)
  --workers N              HTTP worker threads (default 8)
  --sync normal|full       SQLite durability (default normal: survives a process crash)
  --commit-delay DUR       hold every store commit this long (testing overload; default 0)";

#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    pub store: String,
    pub proxy_tokens: Vec<(String, String)>,
    pub read_token: Option<String>,
    pub specs: Vec<(String, String)>,
    pub filter_config: Option<String>,
    pub retired_prefixes: Vec<String>,
    pub retention_ms: u64,
    pub dedup_window_ms: u64,
    pub sweep_every_ms: u64,
    pub unused_after_ms: u64,
    pub max_body_bytes: usize,
    pub max_endpoints: usize,
    pub cache_endpoints: usize,
    pub queue: usize,
    pub per_proxy_queue: usize,
    pub workers: usize,
    pub sync_full: bool,
    pub commit_delay_ms: u64,
}

fn millis(text: &str) -> Result<u64, String> {
    parse_duration(text).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn number(name: &str, text: &str, min: usize, max: usize) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("{name}: expected a number, got {text:?}"))?;
    if n < min || n > max {
        return Err(format!("{name}: must be between {min} and {max}"));
    }
    Ok(n)
}

fn pair(name: &str, text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_string(), b.to_string())),
        _ => Err(format!("{name}: expected NAME=VALUE, got {text:?}")),
    }
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 4318)),
            store: "sqlite:apiguard-inventory.db".into(),
            proxy_tokens: Vec::new(),
            read_token: std::env::var("APIGUARD_READ_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            specs: Vec::new(),
            filter_config: None,
            retired_prefixes: Vec::new(),
            retention_ms: 720 * 3_600_000,
            dedup_window_ms: 3_600_000,
            sweep_every_ms: 60_000,
            unused_after_ms: 168 * 3_600_000,
            max_body_bytes: 4 << 20,
            max_endpoints: 100_000,
            cache_endpoints: 10_000,
            queue: 256,
            per_proxy_queue: 64,
            workers: 8,
            sync_full: false,
            commit_delay_ms: 0,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--listen" => {
                    let v = value()?;
                    o.listen = v
                        .parse()
                        .map_err(|_| format!("--listen: expected HOST:PORT, got {v:?}"))?;
                }
                "--store" => o.store = value()?,
                "--proxy-token" => o.proxy_tokens.push(pair(flag, &value()?)?),
                "--proxy-tokens" => {
                    let path = value()?;
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("--proxy-tokens {path}: {e}"))?;
                    for line in text.lines().map(str::trim) {
                        if !line.is_empty() && !line.starts_with('#') {
                            o.proxy_tokens.push(pair(flag, line)?);
                        }
                    }
                }
                "--read-token" => o.read_token = Some(value()?),
                "--spec" => o.specs.push(pair(flag, &value()?)?),
                "--filter-config" => o.filter_config = Some(value()?),
                "--retired-prefix" => o.retired_prefixes.push(value()?),
                "--retention" => o.retention_ms = millis(&value()?)?,
                "--dedup-window" => o.dedup_window_ms = millis(&value()?)?,
                "--sweep-every" => o.sweep_every_ms = millis(&value()?)?.max(1000),
                "--unused-after" => o.unused_after_ms = millis(&value()?)?,
                "--max-body-bytes" => {
                    o.max_body_bytes = number(flag, &value()?, 1024, 256 << 20)?;
                }
                "--max-endpoints" => o.max_endpoints = number(flag, &value()?, 1, 10_000_000)?,
                "--cache-endpoints" => o.cache_endpoints = number(flag, &value()?, 0, 10_000_000)?,
                "--queue" => o.queue = number(flag, &value()?, 1, 100_000)?,
                "--per-proxy-queue" => o.per_proxy_queue = number(flag, &value()?, 1, 100_000)?,
                "--workers" => o.workers = number(flag, &value()?, 1, 256)?,
                "--commit-delay" => o.commit_delay_ms = millis(&value()?)?.min(60_000),
                "--sync" => {
                    o.sync_full = match value()?.as_str() {
                        "normal" => false,
                        "full" => true,
                        other => return Err(format!("--sync: normal or full, got {other:?}")),
                    }
                }
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        if o.read_token.is_none() && !o.listen.ip().is_loopback() {
            return Err(format!(
                "--listen {} is not a loopback address: the API and the page need --read-token",
                o.listen
            ));
        }
        if o.proxy_tokens.is_empty() && !o.listen.ip().is_loopback() {
            return Err(format!(
                "--listen {} is not a loopback address: proxies need --proxy-token NAME=TOKEN",
                o.listen
            ));
        }
        Ok(o)
    }
}
