//! A rate limit service for tests, the benchmark and the demo: Kuadrant's `limitador` engine (its
//! Redis storage, or in memory) behind Envoy's `envoy.service.ratelimit.v3.RateLimitService` gRPC
//! API. Not a mock: limitador evaluates the limits and counts in Redis with its own Lua scripts.
//!
//! ```text
//! rls-server --listen 127.0.0.1:18081 --limits limits.yaml (--redis redis://127.0.0.1:6379 | --memory)
//!            [--response-header name:value]... [--request-header name:value]... [--delay-ms N]
//! ```
//!
//! `limits.yaml` is limitador's limits file: a list of `{namespace, max_value, seconds, name,
//! conditions, variables}`, conditions and variables in CEL over `descriptors` (the request's
//! descriptors, each a map of its entries): `descriptors[0].policy == "per_user"`. The request's
//! `domain` is the namespace, `hits_addend` (0 counts as 1) the delta.
//!
//! The answer: `overall_code` from limitador's decision over all descriptors at once; one status per
//! descriptor, from the counters of the limits named after the descriptor's `policy` entry (every
//! counter when it has none): the most restrictive one's limit, remaining and time to reset. A
//! storage error (Redis down) is answered with gRPC `UNAVAILABLE`. The `--response-header` and
//! `--request-header` pairs go into every answer's `response_headers_to_add` and
//! `request_headers_to_add`. `--delay-ms` makes every answer wait that long first (a slow service).
//! It prints `listening <addr>` once it accepts connections.

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration;
use limitador::counter::Counter;
use limitador::limit::{Context, Expression, Limit, Namespace, Predicate};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::{AsyncRateLimiter, CheckResult, RateLimiter};
use std::collections::HashMap;
use std::io::Write;
use tonic::{Request, Response, Status};

#[derive(serde::Deserialize)]
struct LimitFile {
    namespace: String,
    max_value: u64,
    seconds: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    conditions: Vec<String>,
    #[serde(default)]
    variables: Vec<String>,
}

enum Engine {
    Redis(AsyncRateLimiter),
    Memory(RateLimiter),
}

struct Service {
    engine: Engine,
    response_headers: Vec<(String, String)>,
    request_headers: Vec<(String, String)>,
    /// `--delay-ms`: how long each answer waits (a slow service, for tests).
    delay: std::time::Duration,
}

fn header_values(pairs: &[(String, String)]) -> Vec<HeaderValue> {
    pairs
        .iter()
        .map(|(k, v)| HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..HeaderValue::default()
        })
        .collect()
}

fn unit_of(seconds: u64) -> i32 {
    let unit = match seconds {
        1 => Unit::Second,
        60 => Unit::Minute,
        3600 => Unit::Hour,
        86_400 => Unit::Day,
        _ => Unit::Unknown,
    };
    unit as i32
}

/// The most restrictive counter among `counters` (those of limits named `policy`, or all).
fn status_for(result: &CheckResult, policy: Option<&str>) -> DescriptorStatus {
    let named: Vec<&Counter> = result
        .counters
        .iter()
        .filter(|c| policy.is_some_and(|p| c.limit().name() == Some(p)))
        .collect();
    let pool: Vec<&Counter> = if named.is_empty() && policy.is_none() {
        result.counters.iter().collect()
    } else {
        named
    };
    let strictest = pool
        .iter()
        .min_by_key(|c| c.remaining().unwrap_or(c.max_value()));
    let limited_here = result.limited
        && match (&result.limit_name, policy) {
            (Some(name), Some(p)) => name == p,
            _ => strictest.is_some(),
        };
    let Some(counter) = strictest else {
        return DescriptorStatus {
            code: Code::Ok as i32,
            ..DescriptorStatus::default()
        };
    };
    let reset = counter.expires_in().unwrap_or(counter.window());
    DescriptorStatus {
        code: if limited_here {
            Code::OverLimit
        } else {
            Code::Ok
        } as i32,
        current_limit: Some(RateLimit {
            name: counter.limit().name().unwrap_or_default().to_string(),
            requests_per_unit: u32::try_from(counter.max_value()).unwrap_or(u32::MAX),
            unit: unit_of(counter.window().as_secs()),
        }),
        limit_remaining: u32::try_from(counter.remaining().unwrap_or(counter.max_value()))
            .unwrap_or(u32::MAX),
        duration_until_reset: Some(Duration {
            seconds: i64::try_from(reset.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(reset.subsec_nanos()).unwrap_or(0),
        }),
        ..DescriptorStatus::default()
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let req = request.into_inner();
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let namespace = Namespace::from(req.domain.as_str());
        let descriptors: Vec<HashMap<String, String>> = req
            .descriptors
            .iter()
            .map(|d| {
                d.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone()))
                    .collect()
            })
            .collect();
        let mut ctx = Context::default();
        ctx.list_binding("descriptors".to_string(), descriptors.clone());
        let delta = u64::from(req.hits_addend.max(1));
        let result = match &self.engine {
            Engine::Redis(l) => {
                l.check_rate_limited_and_update(&namespace, &ctx, delta)
                    .await
            }
            Engine::Memory(l) => l.check_rate_limited_and_update(&namespace, &ctx, delta),
        };
        let result = result.map_err(|e| Status::unavailable(format!("limitador: {e}")))?;
        let statuses = descriptors
            .iter()
            .map(|d| status_for(&result, d.get("policy").map(String::as_str)))
            .collect();
        Ok(Response::new(RateLimitResponse {
            overall_code: if result.limited {
                Code::OverLimit
            } else {
                Code::Ok
            } as i32,
            statuses,
            response_headers_to_add: header_values(&self.response_headers),
            request_headers_to_add: header_values(&self.request_headers),
            ..RateLimitResponse::default()
        }))
    }
}

fn limits_from(path: &str) -> Result<Vec<Limit>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let files: Vec<LimitFile> = serde_yaml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    files
        .into_iter()
        .map(|f| {
            let conditions = f
                .conditions
                .iter()
                .map(|c| Predicate::parse(c).map_err(|e| format!("{c}: {e:?}")))
                .collect::<Result<Vec<_>, _>>()?;
            let variables = f
                .variables
                .iter()
                .map(|v| Expression::parse(v).map_err(|e| format!("{v}: {e:?}")))
                .collect::<Result<Vec<_>, _>>()?;
            let mut limit = Limit::new(
                f.namespace.as_str(),
                f.max_value,
                f.seconds,
                conditions,
                variables,
            );
            if let Some(name) = f.name {
                limit.set_name(name);
            }
            Ok(limit)
        })
        .collect()
}

fn pair(text: &str) -> Result<(String, String), String> {
    text.split_once(':')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text}: expected name:value"))
}

async fn run() -> Result<(), String> {
    let mut listen = "127.0.0.1:18081".to_string();
    let mut limits_path = None;
    let mut redis = None;
    let mut memory = false;
    let mut response_headers = Vec::new();
    let mut request_headers = Vec::new();
    let mut delay_ms = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => listen = value()?,
            "--limits" => limits_path = Some(value()?),
            "--redis" => redis = Some(value()?),
            "--memory" => memory = true,
            "--response-header" => response_headers.push(pair(&value()?)?),
            "--request-header" => request_headers.push(pair(&value()?)?),
            "--delay-ms" => delay_ms = value()?.parse().map_err(|e| format!("--delay-ms: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let limits = limits_from(&limits_path.ok_or("--limits is required")?)?;
    let engine = match (redis, memory) {
        (Some(url), false) => {
            let storage = AsyncRedisStorage::new(&url)
                .await
                .map_err(|e| format!("redis {url}: {e}"))?;
            let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
            for limit in limits {
                limiter.add_limit(limit);
            }
            Engine::Redis(limiter)
        }
        (None, true) => {
            let limiter = RateLimiter::new(10_000);
            for limit in limits {
                limiter.add_limit(limit);
            }
            Engine::Memory(limiter)
        }
        _ => return Err("give exactly one of --redis URL, --memory".into()),
    };
    let service = Service {
        engine,
        response_headers,
        request_headers,
        delay: std::time::Duration::from_millis(delay_ms),
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("{listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening {addr}");
    let _ = std::io::stdout().flush();
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(service))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("rls-server: {e}");
        std::process::exit(2);
    }
}
