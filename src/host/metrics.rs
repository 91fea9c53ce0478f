//! Counters, defined once per VM in `on_configure`. In Envoy they appear in `/stats` as
//! `wasmcustom.<name>_<counter>` and in `/stats/prometheus` as `<name>_<counter>` (`<name>` is the
//! configuration's `name`, `apiguard` by default). The list is documented in `docs/metrics.md`.

use crate::config::Policy;
use crate::discovery::WorkerStats;
use crate::exchange::Counter;
use crate::pipeline::Event;
use crate::ratelimit::LimitEvent;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

#[derive(Debug)]
pub struct Metrics {
    /// `<name>_discovery_endpoints_tracked`: a gauge every VM adds its own change to (so it sums VMs).
    endpoints_gauge: Option<u32>,
    /// Metric ids by [`Counter::index`]: a request counts by index, never by name.
    ids: [Option<u32>; Counter::ALL.len()],
    /// Counters named by the configuration (`redaction_<policy>_<class>`), by name.
    named: HashMap<String, u32>,
    /// Rate-limit counter ids by policy index, then by `LimitEvent::ALL` position.
    rate_limits: Vec<Vec<Option<u32>>>,
    /// `<name>_rl_<policy>_service_latency_us` histogram ids by policy index (service-backed only).
    service_latency: Vec<Option<u32>>,
}

impl Metrics {
    pub fn define(policy: &Policy) -> Metrics {
        let prefix = &policy.name;
        let ids = Counter::ALL.map(|c| define(&format!("{prefix}_{}", c.name())));
        let mut named = HashMap::new();
        let mut names: Vec<String> = Vec::new();
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
        crate::sorting::sort_strings(&mut names);
        names.dedup();
        for name in names {
            // A class name that collides with a fixed counter shares its id (as before).
            let id = match Counter::from_name(&name) {
                Some(counter) => ids.get(counter.index()).copied().flatten(),
                None => define(&format!("{prefix}_{name}")),
            };
            if let Some(id) = id {
                named.insert(name, id);
            }
        }
        let rate_limits = policy
            .rate_limits
            .policies
            .iter()
            .map(|p| {
                LimitEvent::ALL
                    .iter()
                    .map(|e| {
                        // Service counters only for the policies that call the service.
                        if e.is_service() && p.service.is_none() {
                            return None;
                        }
                        define(&format!("{prefix}_rl_{}_{}", p.name, e.metric_name()))
                    })
                    .collect()
            })
            .collect();
        let service_latency = policy
            .rate_limits
            .policies
            .iter()
            .map(|p| {
                p.service.as_ref().and_then(|_| {
                    let name = format!("{prefix}_rl_{}_service_latency_us", p.name);
                    hostcalls::define_metric(MetricType::Histogram, &name).ok()
                })
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
            named,
            rate_limits,
            service_latency,
        }
    }

    /// The latency of one rate limit service call, for a policy in it.
    pub fn service_latency(&self, policy: usize, micros: u64) {
        if let Some(id) = self.service_latency.get(policy).copied().flatten() {
            // A lost sample is all a failure costs.
            let _ = super::abi::record_metric(id, micros);
        }
    }

    pub fn inc(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn add(&self, counter: Counter, count: u64) {
        increment(self.ids.get(counter.index()).copied().flatten(), count);
    }

    /// A counter named by the configuration; a fixed counter's name also works.
    pub fn add_named(&self, name: &str, count: u64) {
        let id = match self.named.get(name) {
            Some(id) => Some(*id),
            None => {
                Counter::from_name(name).and_then(|c| self.ids.get(c.index()).copied().flatten())
            }
        };
        increment(id, count);
    }

    /// Discovery figures of this VM since the last report.
    pub fn discovery(&self, before: &WorkerStats, now: &WorkerStats) {
        let delta = |a: u64, b: u64| b.saturating_sub(a);
        self.add(
            Counter::DiscoveryObservations,
            delta(before.observations, now.observations),
        );
        self.add(
            Counter::DiscoverySampledOut,
            delta(before.sampled_out, now.sampled_out),
        );
        self.add(
            Counter::DiscoveryOverflowed,
            delta(before.overflowed, now.overflowed),
        );
        self.add(
            Counter::DiscoveryBatchesBuilt,
            delta(before.batches_built, now.batches_built),
        );
        let (b, n) = (&before.delivery, &now.delivery);
        self.add(
            Counter::DiscoveryBatchesSent,
            delta(b.batches_sent, n.batches_sent),
        );
        self.add(
            Counter::DiscoveryAttemptsFailed,
            delta(b.attempts_failed, n.attempts_failed),
        );
        self.add(
            Counter::DiscoveryBatchesDropped,
            delta(b.batches_dropped, n.batches_dropped),
        );
        self.add(
            Counter::DiscoveryBatchesRejected,
            delta(b.batches_rejected, n.batches_rejected),
        );
        self.add(
            Counter::DiscoveryRecordsRejected,
            delta(b.records_rejected, n.records_rejected),
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
        for counter in Counter::of_event(event).into_iter().flatten() {
            self.inc(counter);
        }
        if let Event::RateLimit(policy, event) = event {
            let position = LimitEvent::ALL.iter().position(|e| e == event);
            let id = self
                .rate_limits
                .get(*policy)
                .and_then(|ids| position.and_then(|i| ids.get(i)))
                .copied()
                .flatten();
            increment(id, 1);
        }
    }
}

fn increment(id: Option<u32>, count: u64) {
    if let (Some(id), Ok(count)) = (id, i64::try_from(count)) {
        if count > 0 {
            // A failed increment loses counts; nothing else to do about it.
            let _ = hostcalls::increment_metric(id, count);
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
