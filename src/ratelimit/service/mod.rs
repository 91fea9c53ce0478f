//! Limits that hold across every proxy: a policy's `service` backend asks a rate limit service
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, e.g. `envoyproxy/ratelimit` or
//! Limitador) instead of, or after, the local GCRA in shared data.
//!
//! - [`Tier::Local`]: today's GCRA in this Envoy's shared data; no call.
//! - [`Tier::Service`]: the service alone decides (one budget for every proxy).
//! - [`Tier::LocalThenService`]: the local GCRA, with the policy's `requests`/`period`/`burst` as
//!   this Envoy's *local share*, answers while the key is under it; once the share is spent, or the
//!   key's local state is older than `refresh`, the service decides. An `OVER_LIMIT` is kept in
//!   the key's slot ([`super::store::Marks`]) until its `duration_until_reset` and answered locally
//!   until then. Requests admitted from the local share are never reported to the service, so
//!   with E Envoys the key can pass the service's limit N by at most E × (local burst + local refill
//!   during the window) per window: `docs/config.md` states the bound (and how `refresh` shortens
//!   the time the tiers disagree) and `tests/e2e_rls.rs` measures it.
//!
//! One request makes at most one call: [`RateLimits::service_call`] puts one descriptor per
//! service-backed policy of the matched rule into one `RateLimitRequest` ([`proto`]), the exchange
//! pauses the request while the call is in flight (never longer than the timeout, which Envoy
//! enforces), and [`RateLimits::service_outcome`] turns the answer (or its absence) into a decision.

pub mod proto;

use super::key::{self, KeyPart, RequestFacts};
use super::{headers, LimitEvent, OnFailure, OnMissingKey, PolicyState, RateLimits, Refusal};
use crate::reader::{Node, Result};
use proto::{Code, Descriptor};
use std::borrow::Cow;

/// Default `timeout` of a call.
pub const DEFAULT_TIMEOUT_MS: u64 = 20;
/// Longest accepted `timeout` (the request waits that long at most).
pub const MAX_TIMEOUT_MS: u64 = 10_000;
/// Default `refresh` of a `local_then_service` key's local state.
pub const DEFAULT_REFRESH_MS: u64 = 1_000;
/// Longest accepted `refresh`.
pub const MAX_REFRESH_MS: u64 = 3_600_000;
/// gRPC status `DEADLINE_EXCEEDED`: Envoy ended the call at its timeout.
pub const GRPC_DEADLINE_EXCEEDED: u32 = 4;
/// gRPC status `UNAVAILABLE`: also what every call gets when the cluster does not speak HTTP/2.
pub const GRPC_UNAVAILABLE: u32 = 14;
/// The service and method called.
pub const SERVICE_NAME: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD_NAME: &str = "ShouldRateLimit";

/// Where a policy's decision is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Local,
    Service,
    LocalThenService,
}

/// The value of one descriptor entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryValue {
    Static(String),
    /// A key part of the request (the same parts as a local key).
    Part(KeyPart),
}

/// A policy's `service` section, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceBackend {
    pub cluster: String,
    pub domain: String,
    /// The entries of this policy's descriptor, in order.
    pub entries: Vec<(String, EntryValue)>,
    pub hits_addend: u32,
    pub timeout_ms: u64,
    pub failure_mode: OnFailure,
    /// `local_then_service`: the age after which a key's local state is stale, and how long an
    /// `OVER_LIMIT` without `duration_until_reset` is remembered.
    pub refresh_ms: u64,
}

/// One call to make for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCall {
    pub cluster: String,
    pub timeout_ms: u64,
    /// Policy indexes, in descriptor order (status `i` answers policy `policies[i]`).
    pub policies: Vec<usize>,
    /// The encoded `RateLimitRequest`.
    pub message: Vec<u8>,
    /// The `local_then_service` policies of the call with their local keys (where an `OVER_LIMIT`
    /// is remembered).
    pub local_keys: Vec<(usize, String)>,
}

/// What came back from a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceResult {
    /// The call succeeded (gRPC status 0) with this message.
    Reply(Vec<u8>),
    /// The call ended with this gRPC status (4: timed out; 14: unreachable, or no HTTP/2).
    Failed(u32),
    /// The call could not be started (e.g. no such cluster).
    NotSent,
    /// The call ended at its timeout. Envoy reports that as a failed call (its HTTP/2 stream gets a
    /// 504, which gRPC maps to status 14), so the exchange tells it by the time it took.
    TimedOut,
}

impl ServiceResult {
    /// A value-free description for logs (never the answer's bytes).
    pub fn describe(&self) -> String {
        match self {
            ServiceResult::Reply(bytes) => format!("an answer of {} bytes", bytes.len()),
            ServiceResult::Failed(status) => format!("gRPC status {status}"),
            ServiceResult::NotSent => "not started".to_string(),
            ServiceResult::TimedOut => "timed out".to_string(),
        }
    }

    /// `Failed` after (nearly) the whole timeout is a timeout, as is status `DEADLINE_EXCEEDED`.
    /// Envoy's timer may fire a little before the filter's clock says the timeout is over: a tenth
    /// of the timeout (at least 1 ms) counts as the whole.
    pub fn timed(self, elapsed_us: u64, timeout_ms: u64) -> ServiceResult {
        let timeout_us = timeout_ms.saturating_mul(1000);
        let slack_us = (timeout_us / 10).max(1000);
        match self {
            ServiceResult::Failed(GRPC_DEADLINE_EXCEEDED) => ServiceResult::TimedOut,
            ServiceResult::Failed(_) if elapsed_us.saturating_add(slack_us) >= timeout_us => {
                ServiceResult::TimedOut
            }
            other => other,
        }
    }
}

/// The decision a call's result gives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceDecision {
    pub refusal: Option<Refusal>,
    /// `RateLimit*` / `x-ratelimit-*` (and `retry-after` when refused) from the statuses.
    pub headers: Vec<(&'static str, String)>,
    /// The service's `response_headers_to_add`: on the 429, or on the upstream's response.
    pub response_headers: Vec<(String, String)>,
    /// The service's `request_headers_to_add`, set on the request going upstream.
    pub request_headers: Vec<(String, String)>,
    pub events: Vec<(usize, LimitEvent)>,
    /// A value-free reason for the log when the call failed.
    pub failure: Option<&'static str>,
    /// `local_then_service` policies the service refused: (policy, milliseconds the refusal holds,
    /// the service's limit as requests per unit and unit in seconds, 0 when not given).
    pub over: Vec<(usize, u64, (u32, u32))>,
}

/// Why a request could not be described to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescribeFailure {
    Missing { policy: usize, part: &'static str },
    Ambiguous { policy: usize, part: &'static str },
}

impl RateLimits {
    /// The one call for the `policies` (service-backed, in order) of a request, or why the request
    /// cannot be described. A missing key part follows the policy's `on_missing_key`: `deny`
    /// refuses, `fallback` sends `-` (one budget for every request that lacks it).
    pub fn service_call(
        &self,
        policies: &[usize],
        facts: &dyn RequestFacts,
    ) -> std::result::Result<Option<ServiceCall>, DescribeFailure> {
        let mut descriptors = Vec::with_capacity(policies.len());
        let mut first: Option<&ServiceBackend> = None;
        let mut timeout_ms = MAX_TIMEOUT_MS;
        let mut indexes = Vec::with_capacity(policies.len());
        for &index in policies {
            let Some(policy) = self.policies.get(index) else {
                continue;
            };
            let Some(backend) = policy.service.as_ref() else {
                continue;
            };
            for (_, value) in &backend.entries {
                if let EntryValue::Part(part) = value {
                    if key::is_ambiguous(part, facts) {
                        return Err(DescribeFailure::Ambiguous {
                            policy: index,
                            part: part.name(),
                        });
                    }
                }
            }
            let mut entries = Vec::with_capacity(backend.entries.len());
            for (name, value) in &backend.entries {
                let value = match value {
                    EntryValue::Static(text) => Cow::Borrowed(text.as_str()),
                    EntryValue::Part(part) => match part.value(facts) {
                        Some(v) => v,
                        None if policy.on_missing_key == OnMissingKey::Deny => {
                            return Err(DescribeFailure::Missing {
                                policy: index,
                                part: part.name(),
                            });
                        }
                        None => Cow::Borrowed("-"),
                    },
                };
                entries.push((name.as_str(), value));
            }
            descriptors.push(Descriptor {
                entries,
                hits_addend: Some(u64::from(backend.hits_addend)),
            });
            timeout_ms = timeout_ms.min(backend.timeout_ms);
            first.get_or_insert(backend);
            indexes.push(index);
        }
        let Some(first) = first else {
            return Ok(None);
        };
        // One addend for the request when all agree (what every server reads); otherwise each
        // descriptor carries its own (servers that support per-descriptor `hits_addend`).
        let same = descriptors
            .iter()
            .all(|d| d.hits_addend == Some(u64::from(first.hits_addend)));
        let mut hits = 0;
        if same {
            hits = first.hits_addend;
            for d in &mut descriptors {
                d.hits_addend = None;
            }
        }
        Ok(Some(ServiceCall {
            cluster: first.cluster.clone(),
            timeout_ms,
            policies: indexes,
            message: proto::encode_request(&first.domain, &descriptors, hits),
            local_keys: Vec::new(),
        }))
    }

    /// The decision for a call's result.
    pub fn service_outcome(&self, call: &ServiceCall, result: &ServiceResult) -> ServiceDecision {
        let mut decision = ServiceDecision::default();
        for &p in &call.policies {
            decision.events.push((p, LimitEvent::ServiceCall));
        }
        let response = match result {
            ServiceResult::Reply(bytes) => match proto::decode_response(bytes) {
                Ok(r) if r.overall_code != Code::Unknown => r,
                Ok(_) => return self.failed(call, decision, LimitEvent::ServiceError, "UNKNOWN"),
                Err(_) => {
                    return self.failed(call, decision, LimitEvent::ServiceError, "undecodable")
                }
            },
            ServiceResult::Failed(GRPC_DEADLINE_EXCEEDED) | ServiceResult::TimedOut => {
                return self.failed(call, decision, LimitEvent::ServiceTimeout, "timed out")
            }
            ServiceResult::Failed(_) => {
                return self.failed(call, decision, LimitEvent::ServiceError, "call failed")
            }
            ServiceResult::NotSent => {
                return self.failed(call, decision, LimitEvent::ServiceError, "not sent")
            }
        };
        let over = response.overall_code == Code::OverLimit;
        let mut states = Vec::new();
        for (i, &p) in call.policies.iter().enumerate() {
            let status = response.statuses.get(i);
            let limited = status.map_or(over, |s| s.code == Code::OverLimit);
            if limited && over {
                decision.events.push((p, LimitEvent::ServiceOverLimit));
                decision.events.push((p, LimitEvent::Limited));
                if let Some(backend) = self
                    .policies
                    .get(p)
                    .filter(|x| x.tier == super::Tier::LocalThenService)
                    .and_then(|x| x.service.as_ref())
                {
                    let limit = status.and_then(|s| s.current_limit.as_ref());
                    decision.over.push((
                        p,
                        status
                            .and_then(|s| s.until_reset_ms)
                            .unwrap_or(backend.refresh_ms),
                        limit.map_or((0, 0), |l| {
                            (l.requests_per_unit, u32::try_from(l.unit_secs).unwrap_or(0))
                        }),
                    ));
                }
            } else {
                decision.events.push((p, LimitEvent::Allowed));
            }
            let shown =
                (limited && over) || self.policies.get(p).is_some_and(|x| x.headers_on_allowed);
            if let (true, Some(s)) = (shown, status) {
                let reset_secs = s.until_reset_ms.map_or(0, |ms| ms.div_ceil(1000));
                states.push(PolicyState {
                    policy: p,
                    limited: limited && over,
                    remaining: u64::from(s.limit_remaining),
                    reset_secs,
                    retry_after_secs: reset_secs.max(1),
                    quota: s
                        .current_limit
                        .as_ref()
                        .filter(|l| l.unit_secs > 0)
                        .map(|l| (u64::from(l.requests_per_unit), l.unit_secs)),
                });
            }
        }
        if over {
            let limited = super::limited_states(&states);
            let (policy, retry) = limited
                .iter()
                .max_by_key(|s| s.retry_after_secs)
                .map_or((call.policies.first().copied().unwrap_or(0), 1), |s| {
                    (s.policy, s.retry_after_secs)
                });
            decision.refusal = Some(Refusal::Limited {
                policy,
                retry_after_secs: retry,
            });
            decision.headers = headers::for_states(self, &limited, true);
            if limited.is_empty() {
                decision.headers.push(("retry-after", retry.to_string()));
            }
        } else {
            decision.headers = headers::for_states(self, &states, false);
        }
        decision.response_headers = valid_headers(response.response_headers);
        decision.request_headers = valid_headers(response.request_headers);
        decision
    }

    /// Remembers the service's `OVER_LIMIT` for each `local_then_service` key of the call in its
    /// slot (see [`super::store::Marks`]), so that the key's later requests are refused locally
    /// until the refusal ends. Best effort: a key that could not be marked asks again.
    pub fn remember_over_limit(
        &self,
        call: &ServiceCall,
        over: &[(usize, u64, (u32, u32))],
        store: &dyn crate::store::SharedStore,
        seed: &key::Seed,
        now_ms: u64,
    ) {
        let now_ns = u128::from(now_ms) * super::gcra::NS_PER_MS;
        for (policy, until_ms, quota) in over {
            let (Some(p), Some((_, key))) = (
                self.policies.get(*policy),
                call.local_keys.iter().find(|(i, _)| i == policy),
            ) else {
                continue;
            };
            let marks = super::store::Marks {
                asked_ms: now_ms,
                over_until_ms: now_ms.saturating_add(*until_ms),
                quota: *quota,
            };
            p.table.remember(store, seed, key, &marks, now_ns);
        }
    }

    /// No usable answer: each policy's `failure_mode` decides (deny wins), and is counted.
    fn failed(
        &self,
        call: &ServiceCall,
        mut decision: ServiceDecision,
        event: LimitEvent,
        reason: &'static str,
    ) -> ServiceDecision {
        decision.failure = Some(reason);
        let mut denied_by = None;
        for &p in &call.policies {
            decision.events.push((p, event));
            let deny = self
                .policies
                .get(p)
                .and_then(|x| x.service.as_ref())
                .is_some_and(|s| s.failure_mode == OnFailure::Deny);
            if deny {
                denied_by.get_or_insert(p);
                decision.events.push((p, LimitEvent::ServiceFailureDenied));
            } else {
                decision.events.push((p, LimitEvent::ServiceFailureAllowed));
            }
        }
        if let Some(policy) = denied_by {
            decision.refusal = Some(Refusal::ServiceUnavailable { policy });
            decision.headers = vec![("retry-after", "1".to_string())];
        }
        decision
    }
}

/// Headers from the service that can go on an HTTP message: a token name (lower-cased, no
/// pseudo-headers) and a value without CR, LF or NUL. Others are left out.
fn valid_headers(list: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(String, String)> {
    list.into_iter()
        .filter_map(|(name, value)| {
            let name = String::from_utf8(name).ok()?.to_ascii_lowercase();
            if name.is_empty() || !crate::http_names::is_token(&name) {
                return None;
            }
            let value = String::from_utf8(value).ok()?;
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return None;
            }
            Some((name, value))
        })
        .collect()
}

/// Compiles a policy's `tier` and `service` members (`tier` defaults to `service` when a
/// `service` section is given, else `local`).
pub fn compile(
    tier_node: Option<Node<'_>>,
    service_node: Option<Node<'_>>,
    policy_name: &str,
    key: &[KeyPart],
    compile_part: impl Fn(&Node<'_>) -> Result<KeyPart>,
) -> Result<(Tier, Option<ServiceBackend>)> {
    let tier = match &tier_node {
        Some(n) => n.one_of(&[
            ("local", Tier::Local),
            ("service", Tier::Service),
            ("local_then_service", Tier::LocalThenService),
        ])?,
        None if service_node.is_some() => Tier::Service,
        None => Tier::Local,
    };
    let backend = match (&service_node, tier) {
        (None, Tier::Local) => None,
        (Some(n), Tier::Local) => {
            return Err(
                n.error("service is used only with tier \"service\" or \"local_then_service\"")
            )
        }
        (None, _) => match &tier_node {
            Some(n) => return Err(n.error("this tier needs a \"service\" section")),
            None => None,
        },
        (Some(n), tier) => Some(compile_backend(n, tier, policy_name, key, &compile_part)?),
    };
    Ok((tier, backend))
}

fn compile_backend(
    node: &Node<'_>,
    tier: Tier,
    policy_name: &str,
    key: &[KeyPart],
    compile_part: &dyn Fn(&Node<'_>) -> Result<KeyPart>,
) -> Result<ServiceBackend> {
    let obj = node.object(&[
        "cluster",
        "domain",
        "descriptors",
        "hits_addend",
        "timeout",
        "failure_mode",
        "refresh",
    ])?;
    let cluster = obj.require("cluster")?.non_empty_str()?.to_string();
    let domain = obj.require("domain")?.non_empty_str()?.to_string();
    let entries = match obj.get("descriptors") {
        Some(n) => {
            let list = n.array()?;
            if list.is_empty() {
                return Err(n.error("a descriptor needs at least one entry"));
            }
            let mut entries = Vec::with_capacity(list.len());
            for entry in &list {
                let e = entry.object(&["key", "value", "from"])?;
                let name = e.require("key")?.non_empty_str()?.to_string();
                let value = match (e.get("value"), e.get("from")) {
                    (Some(v), None) => EntryValue::Static(v.non_empty_str()?.to_string()),
                    (None, Some(f)) => EntryValue::Part(compile_part(&f)?),
                    _ => {
                        return Err(
                            entry.error("a descriptor entry sets exactly one of value, from")
                        )
                    }
                };
                entries.push((name, value));
            }
            entries
        }
        // By default: the policy's name, then each key part under its own name.
        None => {
            let mut entries = vec![("policy".to_string(), EntryValue::Static(policy_name.into()))];
            for part in key {
                entries.push((default_entry_key(part), EntryValue::Part(part.clone())));
            }
            entries
        }
    };
    let hits_addend = obj
        .get("hits_addend")
        .map(|n| n.usize_in(1, 1_000_000))
        .transpose()?
        .map_or(1, |n| u32::try_from(n).unwrap_or(1));
    let timeout_ms = match obj.get("timeout") {
        None => DEFAULT_TIMEOUT_MS,
        Some(n) => millis(
            &n,
            MAX_TIMEOUT_MS,
            "timeout must be between 1ms and 10s (the request waits that long at most)",
        )?,
    };
    let failure_mode = obj
        .get("failure_mode")
        .map(|n| n.one_of(&[("allow", OnFailure::Allow), ("deny", OnFailure::Deny)]))
        .transpose()?
        .unwrap_or(OnFailure::Allow);
    let refresh_ms = match obj.get("refresh") {
        None => DEFAULT_REFRESH_MS,
        Some(n) if tier != Tier::LocalThenService => {
            return Err(n.error("refresh is used only with tier \"local_then_service\""))
        }
        Some(n) => millis(&n, MAX_REFRESH_MS, "refresh must be between 1ms and 1h")?,
    };
    Ok(ServiceBackend {
        refresh_ms,
        cluster,
        domain,
        entries,
        hits_addend,
        timeout_ms,
        failure_mode,
    })
}

/// A duration member of 1ms to `max` milliseconds, else `refused`.
fn millis(node: &Node<'_>, max: u64, refused: &'static str) -> Result<u64> {
    let ms = node.duration()?.as_millis();
    if ms < 1 || ms > u128::from(max) {
        return Err(node.error(refused));
    }
    Ok(u64::try_from(ms).unwrap_or(max))
}

fn default_entry_key(part: &KeyPart) -> String {
    match part {
        KeyPart::JwtClaim(path) => path.join("."),
        KeyPart::Header(name) => name.clone(),
        other => other.name().to_string(),
    }
}

#[cfg(test)]
mod tests;
