//! The per-worker endpoint table: one entry per endpoint (host, method, template, API type,
//! operation) with its aggregates for the current window. Bounded: at most `max_endpoints`
//! entries; observations of further endpoints fold into one overflow entry and are counted. The
//! table is drained into a batch at each flush.
//!
//! Memory: every string and list in an entry is bounded (see the constants of `observe`, `template`,
//! `classify` and `shape`), so an entry stays under about `2 KiB + 2 × max_shape_members × 200 B`
//! (about 15 KiB with the defaults, typically well under 1 KiB), and the table under
//! `max_endpoints` times that.

use super::auth::AuthSet;
use super::classify::{ApiType, Operation};
use super::declared::Declaration;
use super::findings::FindingSet;
use super::observe::{Observation, TemplateSource, MAX_QUERY_PARAMS};
use super::scrub::ScrubCache;
use super::shape::{Shape, ShapeLimits};
use std::collections::HashMap;

/// Media types kept per direction and issuers kept per endpoint.
pub const MAX_MEDIA_TYPES: usize = 4;
pub const MAX_ISSUERS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    pub host: String,
    pub method: String,
    pub template: String,
    pub api_type: ApiType,
    pub operation: Option<Operation>,
    /// The API type carried inside `api_type` (GraphQL inside a WebSocket).
    pub carried: Option<ApiType>,
}

/// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx, and none (reset before a response).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusHistogram(pub [u64; 6]);

impl StatusHistogram {
    pub const LABELS: [&'static str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

    pub fn add(&mut self, status: Option<u16>) {
        let i = match status {
            Some(s @ 100..=599) => usize::from(s / 100 - 1),
            _ => 5,
        };
        if let Some(slot) = self.0.get_mut(i) {
            *slot += 1;
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStats {
    pub template_source: TemplateSource,
    pub declaration: Declaration,
    pub count: u64,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub status: StatusHistogram,
    pub request_bytes_max: u64,
    pub response_bytes_max: u64,
    pub query_params: Vec<String>,
    pub request_content_types: Vec<String>,
    pub response_content_types: Vec<String>,
    pub auth: AuthSet,
    pub issuers: Vec<String>,
    pub request_classes: Vec<String>,
    pub response_classes: Vec<String>,
    pub findings: FindingSet,
    pub request_shape: Option<Shape>,
    pub response_shape: Option<Shape>,
}

/// What did not get an entry of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverflowStats {
    pub count: u64,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub status: StatusHistogram,
    pub request_bytes_max: u64,
    pub response_bytes_max: u64,
}

/// How an observation was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    Existing,
    /// The table was full: folded into the overflow entry.
    Overflowed,
}

#[derive(Debug)]
pub struct Inventory {
    entries: HashMap<EndpointKey, EndpointStats>,
    max_endpoints: usize,
    shape_limits: ShapeLimits,
    overflow: OverflowStats,
    /// Verdicts on recent names for the scrub (bounded, see [`ScrubCache`]).
    scrub: ScrubCache,
}

/// A drained window.
#[derive(Debug, Default)]
pub struct Drained {
    pub endpoints: Vec<(EndpointKey, EndpointStats)>,
    pub overflow: Option<OverflowStats>,
}

fn add_bounded(list: &mut Vec<String>, item: &str, max: usize) {
    if list.len() < max && !list.iter().any(|x| x == item) {
        list.push(item.to_string());
        // `max` is one of the MAX_* bounds above (a few dozen at most).
        crate::sorting::small_sort_strings(list);
    }
}

impl Inventory {
    pub fn new(max_endpoints: usize, shape_limits: ShapeLimits) -> Inventory {
        Inventory {
            entries: HashMap::new(),
            max_endpoints,
            shape_limits,
            overflow: OverflowStats::default(),
            scrub: ScrubCache::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.overflow.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_endpoints
    }

    /// Observations folded into the overflow entry in the current window.
    pub fn overflowed(&self) -> u64 {
        self.overflow.count
    }

    /// Heap bytes the table holds now (an estimate: allocator overhead not included), for the
    /// documentation of the bound and for a metric.
    pub fn heap_bytes(&self) -> usize {
        fn strings(list: &[String]) -> usize {
            list.iter().map(String::capacity).sum::<usize>() + std::mem::size_of_val(list)
        }
        let slots = self.entries.capacity()
            * (std::mem::size_of::<EndpointKey>() + std::mem::size_of::<EndpointStats>() + 1);
        let held: usize = self
            .entries
            .iter()
            .map(|(k, s)| {
                k.host.capacity()
                    + k.method.capacity()
                    + k.template.capacity()
                    + k.operation.as_ref().map_or(0, |o| {
                        o.service.as_ref().map_or(0, String::capacity)
                            + o.name.as_ref().map_or(0, String::capacity)
                    })
                    + strings(&s.query_params)
                    + strings(&s.request_content_types)
                    + strings(&s.response_content_types)
                    + strings(&s.issuers)
                    + strings(&s.request_classes)
                    + strings(&s.response_classes)
                    + s.request_shape.as_ref().map_or(0, Shape::heap_bytes)
                    + s.response_shape.as_ref().map_or(0, Shape::heap_bytes)
            })
            .sum();
        slots + held
    }

    /// Folds one finished observation into the table.
    pub fn record(&mut self, mut obs: Observation, now_ms: u64) -> Recorded {
        // Nothing is stored (and so nothing is emitted) before the scrub.
        super::scrub::observation(&mut obs, &mut self.scrub);
        let findings = obs.findings();
        let key = EndpointKey {
            host: obs.host,
            method: obs.method,
            template: obs.template,
            api_type: obs.classification.api_type,
            operation: obs.classification.operation,
            carried: obs.classification.carried,
        };
        let outcome = if self.entries.contains_key(&key) {
            Recorded::Existing
        } else if self.entries.len() >= self.max_endpoints {
            let o = &mut self.overflow;
            if o.count == 0 {
                o.first_seen_ms = now_ms;
            }
            o.count += 1;
            o.last_seen_ms = o.last_seen_ms.max(now_ms);
            o.status.add(obs.response.status);
            o.request_bytes_max = o.request_bytes_max.max(obs.request_bytes);
            o.response_bytes_max = o.response_bytes_max.max(obs.response_bytes);
            return Recorded::Overflowed;
        } else {
            Recorded::New
        };
        let entry = self.entries.entry(key).or_insert_with(|| EndpointStats {
            template_source: obs.template_source,
            declaration: obs.declaration,
            count: 0,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            status: StatusHistogram::default(),
            request_bytes_max: 0,
            response_bytes_max: 0,
            query_params: Vec::new(),
            request_content_types: Vec::new(),
            response_content_types: Vec::new(),
            auth: AuthSet::default(),
            issuers: Vec::new(),
            request_classes: Vec::new(),
            response_classes: Vec::new(),
            findings: FindingSet::default(),
            request_shape: None,
            response_shape: None,
        });
        entry.count += 1;
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        entry.first_seen_ms = entry.first_seen_ms.min(now_ms);
        entry.status.add(obs.response.status);
        entry.request_bytes_max = entry.request_bytes_max.max(obs.request_bytes);
        entry.response_bytes_max = entry.response_bytes_max.max(obs.response_bytes);
        for p in &obs.query_params {
            add_bounded(&mut entry.query_params, p, MAX_QUERY_PARAMS);
        }
        if let Some(ct) = &obs.request_content_type {
            add_bounded(&mut entry.request_content_types, ct, MAX_MEDIA_TYPES);
        }
        if let Some(ct) = &obs.response_content_type {
            add_bounded(&mut entry.response_content_types, ct, MAX_MEDIA_TYPES);
        }
        entry.auth.union(obs.auth.kinds);
        if let Some(iss) = &obs.auth.issuer {
            add_bounded(&mut entry.issuers, iss, MAX_ISSUERS);
        }
        for c in &obs.request_classes {
            add_bounded(
                &mut entry.request_classes,
                c,
                super::observe::MAX_DATA_CLASSES,
            );
        }
        for c in &obs.response_classes {
            add_bounded(
                &mut entry.response_classes,
                c,
                super::observe::MAX_DATA_CLASSES,
            );
        }
        entry.findings.union(findings);
        let limits = self.shape_limits;
        for (slot, shape) in [
            (&mut entry.request_shape, obs.request_shape),
            (&mut entry.response_shape, obs.response_shape),
        ] {
            match (slot.as_mut(), shape) {
                (Some(existing), Some(new)) => existing.merge(&new, limits),
                (None, Some(new)) => *slot = Some(new),
                _ => {}
            }
        }
        outcome
    }

    /// Empties the table (and the overflow entry), returning the window's aggregates sorted by key.
    pub fn drain(&mut self) -> Drained {
        let mut endpoints: Vec<(EndpointKey, EndpointStats)> = self.entries.drain().collect();
        crate::sorting::stable_sort_by(&mut endpoints, |a, b| a.0.cmp(&b.0));
        let overflow = (self.overflow.count > 0).then_some(self.overflow);
        self.overflow = OverflowStats::default();
        // Give back the table's memory after a flood instead of holding the high-water mark.
        if self.entries.capacity() > 2 * self.max_endpoints.min(1024) {
            self.entries.shrink_to(self.max_endpoints.min(1024));
        }
        Drained {
            endpoints,
            overflow,
        }
    }
}
