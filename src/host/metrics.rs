//! Counters, defined once per VM in `on_configure`. In Envoy they appear in `/stats` as
//! `wasmcustom.<name>_<counter>` and in `/stats/prometheus` as `<name>_<counter>` (`<name>` is the
//! configuration's `name`, `apiguard` by default). The list is documented in `docs/metrics.md`.

use crate::config::Policy;
use crate::pipeline::Event;
use crate::ratelimit::LimitEvent;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

/// Every counter name that does not depend on the configuration (after the `<name>_` prefix).
pub const COUNTERS: &[&str] = &[
    "requests",
    "no_rule_match",
    "denied",
    "report_only_denied",
    "jwt_allowed",
    "jwt_denied",
    "jwt_missing",
    "jwt_too_large",
    "jwt_malformed",
    "jwt_expired",
    "jwt_not_yet_valid",
    "jwt_lifetime",
    "jwt_unknown_issuer",
    "jwt_audience_not_allowed",
    "jwt_signature_invalid",
    "jwt_no_matching_key",
    "jwt_keys_unavailable",
    "jwt_cache_hit",
    "jwt_cache_miss",
    "jwks_fetch_ok",
    "jwks_fetch_failed",
    "api_key_allowed",
    "api_key_missing",
    "api_key_invalid",
    "authz_allowed",
    "authz_denied",
];

#[derive(Debug, Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
    /// Rate-limit counter ids by policy index, then by `LimitEvent::ALL` position.
    rate_limits: Vec<Vec<Option<u32>>>,
}

impl Metrics {
    pub fn define(policy: &Policy) -> Metrics {
        let prefix = &policy.name;
        let mut ids = HashMap::new();
        for name in COUNTERS {
            if let Some(id) = define(&format!("{prefix}_{name}")) {
                ids.insert((*name).to_string(), id);
            }
        }
        let rate_limits = policy
            .rate_limits
            .policies
            .iter()
            .map(|p| {
                LimitEvent::ALL
                    .iter()
                    .map(|e| define(&format!("{prefix}_rl_{}_{}", p.name, e.metric_name())))
                    .collect()
            })
            .collect();
        Metrics { ids, rate_limits }
    }

    pub fn inc(&self, name: &str) {
        if let Some(id) = self.ids.get(name) {
            // A failed increment loses one count; nothing else to do about it.
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    pub fn record(&self, event: &Event) {
        match event {
            Event::JwtAllowed => self.inc("jwt_allowed"),
            Event::JwtDenied(status) => {
                self.inc("jwt_denied");
                self.inc(&format!("jwt_{}", status.metric_name()));
            }
            Event::CacheHit => self.inc("jwt_cache_hit"),
            Event::CacheMiss => self.inc("jwt_cache_miss"),
            Event::NoRuleMatch => self.inc("no_rule_match"),
            Event::ReportOnlyDenied => self.inc("report_only_denied"),
            Event::UnknownKid { .. } => {}
            Event::ApiKeyAllowed => self.inc("api_key_allowed"),
            Event::ApiKeyDenied(failure) => self.inc(failure.metric_name()),
            Event::AuthzAllowed => self.inc("authz_allowed"),
            Event::AuthzDenied => self.inc("authz_denied"),
            Event::RateLimit(policy, event) => {
                let position = LimitEvent::ALL.iter().position(|e| e == event);
                let id = self
                    .rate_limits
                    .get(*policy)
                    .and_then(|ids| position.and_then(|i| ids.get(i)))
                    .copied()
                    .flatten();
                if let Some(id) = id {
                    let _ = hostcalls::increment_metric(id, 1);
                }
            }
        }
    }
}

fn define(name: &str) -> Option<u32> {
    match hostcalls::define_metric(MetricType::Counter, name) {
        Ok(id) => Some(id),
        Err(e) => {
            log::warn!("cannot define metric {name}: {e:?}");
            None
        }
    }
}
