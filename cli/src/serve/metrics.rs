//! Prometheus metrics of the service itself (text exposition format 0.0.4), documented in
//! `docs/inventory.md`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Ingest latency buckets, seconds.
pub const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

pub const REJECT_REASONS: [&str; 6] = [
    "invalid",
    "too_large",
    "unauthorized",
    "unsupported_media_type",
    "overloaded",
    "proxy_overloaded",
];

#[derive(Default)]
pub struct Metrics {
    pub batches_accepted: AtomicU64,
    pub batches_duplicate: AtomicU64,
    pub endpoints_received: AtomicU64,
    pub endpoints_refused: AtomicU64,
    pub rejects: [AtomicU64; 6],
    pub otlp_records_rejected: AtomicU64,
    pub store_errors: AtomicU64,
    pub queue_depth: AtomicU64,
    pub endpoints_stored: AtomicU64,
    pub swept_endpoints: AtomicU64,
    latency_buckets: [AtomicU64; 10],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub fn reject(&self, reason: &str) {
        if let Some(i) = REJECT_REASONS.iter().position(|r| *r == reason) {
            if let Some(c) = self.rejects.get(i) {
                c.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn observe_latency(&self, seconds: f64) {
        for (b, c) in BUCKETS.iter().zip(&self.latency_buckets) {
            if seconds <= *b {
                c.fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let g = |a: &AtomicU64| a.load(Relaxed);
        let _ = writeln!(
            s,
            "# HELP apiguard_serve_batches_total Batches received, by result."
        );
        let _ = writeln!(s, "# TYPE apiguard_serve_batches_total counter");
        let _ = writeln!(
            s,
            "apiguard_serve_batches_total{{result=\"accepted\"}} {}",
            g(&self.batches_accepted)
        );
        let _ = writeln!(
            s,
            "apiguard_serve_batches_total{{result=\"duplicate\"}} {}",
            g(&self.batches_duplicate)
        );
        let _ = writeln!(
            s,
            "# HELP apiguard_serve_rejects_total Requests refused, by reason."
        );
        let _ = writeln!(s, "# TYPE apiguard_serve_rejects_total counter");
        for (r, c) in REJECT_REASONS.iter().zip(&self.rejects) {
            let _ = writeln!(s, "apiguard_serve_rejects_total{{reason=\"{r}\"}} {}", g(c));
        }
        let _ = writeln!(s, "# HELP apiguard_serve_otlp_records_rejected_total OTLP log records refused (partial success).");
        let _ = writeln!(
            s,
            "# TYPE apiguard_serve_otlp_records_rejected_total counter"
        );
        let _ = writeln!(
            s,
            "apiguard_serve_otlp_records_rejected_total {}",
            g(&self.otlp_records_rejected)
        );
        let _ = writeln!(s, "# HELP apiguard_serve_endpoint_entries_total Endpoint entries received in new batches.");
        let _ = writeln!(s, "# TYPE apiguard_serve_endpoint_entries_total counter");
        let _ = writeln!(
            s,
            "apiguard_serve_endpoint_entries_total {}",
            g(&self.endpoints_received)
        );
        let _ = writeln!(s, "# HELP apiguard_serve_endpoints_refused_total New endpoints not stored: the inventory was at --max-endpoints.");
        let _ = writeln!(s, "# TYPE apiguard_serve_endpoints_refused_total counter");
        let _ = writeln!(
            s,
            "apiguard_serve_endpoints_refused_total {}",
            g(&self.endpoints_refused)
        );
        let _ = writeln!(
            s,
            "# HELP apiguard_serve_endpoints_swept_total Endpoints deleted by retention."
        );
        let _ = writeln!(s, "# TYPE apiguard_serve_endpoints_swept_total counter");
        let _ = writeln!(
            s,
            "apiguard_serve_endpoints_swept_total {}",
            g(&self.swept_endpoints)
        );
        let _ = writeln!(s, "# HELP apiguard_serve_store_errors_total Store transactions that failed (answered 503).");
        let _ = writeln!(s, "# TYPE apiguard_serve_store_errors_total counter");
        let _ = writeln!(
            s,
            "apiguard_serve_store_errors_total {}",
            g(&self.store_errors)
        );
        let _ = writeln!(
            s,
            "# HELP apiguard_serve_endpoints Endpoints in the inventory."
        );
        let _ = writeln!(s, "# TYPE apiguard_serve_endpoints gauge");
        let _ = writeln!(s, "apiguard_serve_endpoints {}", g(&self.endpoints_stored));
        let _ = writeln!(
            s,
            "# HELP apiguard_serve_queue_depth Batches waiting for the store."
        );
        let _ = writeln!(s, "# TYPE apiguard_serve_queue_depth gauge");
        let _ = writeln!(s, "apiguard_serve_queue_depth {}", g(&self.queue_depth));
        let _ = writeln!(s, "# HELP apiguard_serve_ingest_seconds Ingest latency: body read to answer, store commit included.");
        let _ = writeln!(s, "# TYPE apiguard_serve_ingest_seconds histogram");
        for (b, c) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                s,
                "apiguard_serve_ingest_seconds_bucket{{le=\"{b}\"}} {}",
                g(c)
            );
        }
        let n = g(&self.latency_count);
        let _ = writeln!(s, "apiguard_serve_ingest_seconds_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            s,
            "apiguard_serve_ingest_seconds_sum {}",
            g(&self.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(s, "apiguard_serve_ingest_seconds_count {n}");
        s
    }
}
