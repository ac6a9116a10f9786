//! The engine's counters in Prometheus text format (for `/metrics`).

use std::fmt::Write as _;

use actors::metrics::{EngineMetrics, FLUSH_BUCKETS_MS};

/// Renders the engine's metrics as Prometheus text.
#[must_use]
pub fn render_engine(metrics: &EngineMetrics) -> String {
    let get = EngineMetrics::get;
    let mut text = String::with_capacity(2048);
    let counters = [
        ("stockbot_commands_total", "Commands applied by the market.", get(&metrics.commands)),
        ("stockbot_trades_total", "Fills executed.", get(&metrics.trades)),
        ("stockbot_rejections_total", "Commands rejected as player mistakes.", get(&metrics.rejections)),
        (
            "stockbot_busy_rejections_total",
            "Commands refused because the engine was busy or the store down.",
            get(&metrics.busy_rejections),
        ),
        ("stockbot_events_persisted_total", "Events made durable.", get(&metrics.events_persisted)),
        ("stockbot_batches_persisted_total", "Group commits.", get(&metrics.batches_persisted)),
        (
            "stockbot_flush_failures_total",
            "Group commits that failed (and were retried).",
            get(&metrics.flush_failures),
        ),
        ("stockbot_ticks_total", "Market minutes stepped.", get(&metrics.ticks)),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
    let gauges = [
        ("stockbot_pending_events", "Events waiting to be durable (queue depth).", get(&metrics.pending_events)),
        ("stockbot_active_portfolios", "Portfolio actors in memory.", get(&metrics.active_portfolios)),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    let name = "stockbot_flush_latency_seconds";
    let _ = writeln!(text, "# HELP {name} Time to make one group commit durable.\n# TYPE {name} histogram");
    for (bound, bucket) in FLUSH_BUCKETS_MS.iter().zip(&metrics.flush_latency_buckets) {
        let _ = writeln!(text, "{name}_bucket{{le=\"{}\"}} {}", bound / 1000.0, get(bucket));
    }
    let count = get(&metrics.flush_latency_count);
    #[allow(clippy::cast_precision_loss)]
    let sum_seconds = get(&metrics.flush_latency_sum_us) as f64 / 1e6;
    let _ = writeln!(text, "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum_seconds}\n{name}_count {count}");
    let name = "stockbot_batch_events";
    let _ = writeln!(
        text,
        "# HELP {name} Events per group commit.\n# TYPE {name} summary\n{name}_sum {}\n{name}_count {}",
        get(&metrics.batch_events_sum),
        get(&metrics.batches_persisted)
    );
    text
}

/// Renders the Telegram sender's counters as Prometheus text.
#[must_use]
pub fn render_sender(metrics: &gateway::sender::SenderMetrics) -> String {
    use std::sync::atomic::Ordering;
    let get = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let mut text = String::with_capacity(1536);
    for (name, kind, help, value) in [
        ("stockbot_telegram_sent_total", "counter", "Bot API calls Telegram accepted.", get(&metrics.sent)),
        ("stockbot_telegram_failed_total", "counter", "Bot API calls given up.", get(&metrics.failed)),
        ("stockbot_telegram_retried_429_total", "counter", "429 answers from Telegram.", get(&metrics.retried_429)),
        ("stockbot_telegram_blocked_total", "counter", "Chats found to have blocked the bot.", get(&metrics.blocked)),
        (
            "stockbot_telegram_budget_waits_total",
            "counter",
            "Sends that waited for room in the send budget.",
            get(&metrics.budget_waits),
        ),
        (
            "stockbot_telegram_budget_freezes_total",
            "counter",
            "Freezes put on the send budget after a 429.",
            get(&metrics.budget_freezes),
        ),
        (
            "stockbot_telegram_budget_fallbacks_total",
            "counter",
            "Times the shared send budget stopped answering and the local one took over.",
            get(&metrics.budget_fallbacks),
        ),
        (
            "stockbot_telegram_blocked_marks_total",
            "counter",
            "Blocked chats marked in the send budget.",
            get(&metrics.blocked_marks),
        ),
        (
            "stockbot_telegram_blocked_elsewhere_total",
            "counter",
            "Messages dropped because another sender saw their chat block the bot.",
            get(&metrics.blocked_elsewhere),
        ),
        ("stockbot_telegram_queued", "gauge", "Bot API calls waiting or in flight.", get(&metrics.queued)),
    ] {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
    text
}
