//! `EngineMetrics`: lock-free counters and gauges the engine updates and the
//! server exports (Prometheus text at `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (ms) of the flush-latency histogram buckets.
pub const FLUSH_BUCKETS_MS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];

/// Counters shared by the engine's actors.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    pub commands: AtomicU64,
    pub trades: AtomicU64,
    pub rejections: AtomicU64,
    pub busy_rejections: AtomicU64,
    pub events_persisted: AtomicU64,
    pub batches_persisted: AtomicU64,
    pub flush_failures: AtomicU64,
    /// Events handed to persistence and not yet durable.
    pub pending_events: AtomicU64,
    pub active_portfolios: AtomicU64,
    pub ticks: AtomicU64,
    pub flush_latency_buckets: [AtomicU64; FLUSH_BUCKETS_MS.len()],
    pub flush_latency_count: AtomicU64,
    /// Sum of flush latencies in microseconds.
    pub flush_latency_sum_us: AtomicU64,
    /// Sum of batch sizes (events) — with `batches_persisted`, the mean batch.
    pub batch_events_sum: AtomicU64,
    /// Stream commands delivered again and answered from their first outcome.
    pub redelivered: AtomicU64,
}

impl EngineMetrics {
    /// Records one flush of `events` that took `latency_us`.
    pub fn record_flush(&self, events: usize, latency_us: u64) {
        self.batches_persisted.fetch_add(1, Ordering::Relaxed);
        self.events_persisted.fetch_add(events as u64, Ordering::Relaxed);
        self.batch_events_sum.fetch_add(events as u64, Ordering::Relaxed);
        self.flush_latency_count.fetch_add(1, Ordering::Relaxed);
        self.flush_latency_sum_us.fetch_add(latency_us, Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        let latency_ms = latency_us as f64 / 1000.0;
        for (bound, bucket) in FLUSH_BUCKETS_MS.iter().zip(&self.flush_latency_buckets) {
            if latency_ms <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reads a counter.
    #[must_use]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
