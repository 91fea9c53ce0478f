//! Counters, defined once per VM in `on_configure`. In Envoy they appear in `/stats` as
//! `wasmcustom.<name>_<counter>` and in `/stats/prometheus` as `<name>_<counter>` (`<name>` is the
//! configuration's `name`, `apiguard` by default). The list is documented in `docs/metrics.md`.

use crate::pipeline::Event;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

/// Every counter name (after the `<name>_` prefix).
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
];

#[derive(Debug, Default)]
pub struct Metrics {
    ids: HashMap<&'static str, u32>,
}

impl Metrics {
    pub fn define(prefix: &str) -> Metrics {
        let mut ids = HashMap::new();
        for name in COUNTERS {
            match hostcalls::define_metric(MetricType::Counter, &format!("{prefix}_{name}")) {
                Ok(id) => {
                    ids.insert(*name, id);
                }
                Err(e) => log::warn!("{prefix}: cannot define metric {name}: {e:?}"),
            }
        }
        Metrics { ids }
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
        }
    }
}
