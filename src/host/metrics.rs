//! Counters, defined once per VM in `on_configure`. In Envoy they appear in `/stats` as
//! `wasmcustom.<name>_<counter>` and in `/stats/prometheus` as `<name>_<counter>` (`<name>` is the
//! configuration's `name`, `apiguard` by default). The list is documented in `docs/metrics.md`.

use crate::config::Policy;
use crate::discovery::WorkerStats;
use crate::pipeline::Event;
use crate::ratelimit::LimitEvent;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

/// Every counter name that does not depend on the configuration (after the `<name>_` prefix).
pub const COUNTERS: &[&str] = &[
    "requests",
    "unreadable_request",
    "log_suppressed",
    "body_unreadable",
    "body_unwritable",
    "redaction_trailers_reset",
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
    "schema_validated",
    "schema_undeclared",
    "schema_rejected_body_too_large",
    "schema_rejected_unsupported_media_type",
    "schema_rejected_missing_body",
    "schema_rejected_invalid_json",
    "schema_rejected_too_deep",
    "schema_rejected_schema_violation",
    "schema_rejected_invalid_parameters",
    "schema_rejected_unknown_path",
    "schema_rejected_method_not_allowed",
    "path_ambiguous",
    "path_matrix_parameters",
    "method_override",
    "redaction_bodies_changed",
    "redaction_unscanned",
    "redaction_blocked",
    "redaction_too_large",
    "discovery_observations",
    "discovery_sampled_out",
    "discovery_overflowed",
    "discovery_batches_built",
    "discovery_batches_sent",
    "discovery_attempts_failed",
    "discovery_batches_dropped",
    "discovery_batches_rejected",
];

#[derive(Debug, Default)]
pub struct Metrics {
    /// `<name>_discovery_endpoints_tracked`: a gauge every VM adds its own change to (so it sums VMs).
    endpoints_gauge: Option<u32>,
    ids: HashMap<String, u32>,
    /// Rate-limit counter ids by policy index, then by `LimitEvent::ALL` position.
    rate_limits: Vec<Vec<Option<u32>>>,
}

impl Metrics {
    pub fn define(policy: &Policy) -> Metrics {
        let prefix = &policy.name;
        let mut ids = HashMap::new();
        let mut names: Vec<String> = COUNTERS.iter().map(|n| (*n).to_string()).collect();
        // Values found per redaction policy and data class: `redaction_<policy>_<class>`.
        for rule in &policy.rules {
            if let Some(redaction) = &rule.redaction {
                for class in 0..redaction.class_count() {
                    names.push(format!(
                        "redaction_{}_{}",
                        redaction.name,
                        redaction.class_name(class)
                    ));
                }
            }
        }
        names.sort();
        names.dedup();
        for name in names {
            if let Some(id) = define(&format!("{prefix}_{name}")) {
                ids.insert(name, id);
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
        let endpoints_gauge = policy.discovery.as_ref().and_then(|_| {
            hostcalls::define_metric(
                MetricType::Gauge,
                &format!("{prefix}_discovery_endpoints_tracked"),
            )
            .ok()
        });
        Metrics {
            endpoints_gauge,
            ids,
            rate_limits,
        }
    }

    pub fn inc(&self, name: &str) {
        self.add(name, 1);
    }

    pub fn add(&self, name: &str, count: u64) {
        if let (Some(id), Ok(count)) = (self.ids.get(name), i64::try_from(count)) {
            if count > 0 {
                // A failed increment loses counts; nothing else to do about it.
                let _ = hostcalls::increment_metric(*id, count);
            }
        }
    }

    /// Discovery figures of this VM since the last report.
    pub fn discovery(&self, before: &WorkerStats, now: &WorkerStats) {
        let delta = |a: u64, b: u64| b.saturating_sub(a);
        self.add(
            "discovery_observations",
            delta(before.observations, now.observations),
        );
        self.add(
            "discovery_sampled_out",
            delta(before.sampled_out, now.sampled_out),
        );
        self.add(
            "discovery_overflowed",
            delta(before.overflowed, now.overflowed),
        );
        self.add(
            "discovery_batches_built",
            delta(before.batches_built, now.batches_built),
        );
        let (b, n) = (&before.delivery, &now.delivery);
        self.add(
            "discovery_batches_sent",
            delta(b.batches_sent, n.batches_sent),
        );
        self.add(
            "discovery_attempts_failed",
            delta(b.attempts_failed, n.attempts_failed),
        );
        self.add(
            "discovery_batches_dropped",
            delta(b.batches_dropped, n.batches_dropped),
        );
        self.add(
            "discovery_batches_rejected",
            delta(b.batches_rejected, n.batches_rejected),
        );
        if let Some(id) = self.endpoints_gauge {
            let change = i128::from(now.endpoints_tracked) - i128::from(before.endpoints_tracked);
            if let Ok(change) = i64::try_from(change) {
                if change != 0 {
                    let _ = hostcalls::increment_metric(id, change);
                }
            }
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
            Event::SchemaValidated => self.inc("schema_validated"),
            Event::SchemaUndeclared => self.inc("schema_undeclared"),
            Event::SchemaRejected(reason) => self.inc(&format!("schema_rejected_{reason}")),
            Event::PathAmbiguous => self.inc("path_ambiguous"),
            Event::PathMatrixParameters => self.inc("path_matrix_parameters"),
            Event::MethodOverride => self.inc("method_override"),
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
