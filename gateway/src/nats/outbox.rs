//! The outbox pump: takes Bot API calls off the outbox stream (every
//! gateway pulls from one durable consumer, so each message — a batch of
//! replies, or a single call — goes to one of them) and hands them to this
//! gateway's rate-limited sender. A message is acknowledged once Telegram
//! took its calls (or they were given up); one not acknowledged (the
//! gateway died first) is delivered again to another.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use futures_util::StreamExt as _;
use tokio::sync::watch;
use wire::Outgoing;
use wire::subjects::{OUTBOX_CONSUMER, OUTBOX_NOTICES, OUTBOX_STREAM};

use super::link::Link;
use crate::sender::{SendError, SenderHandle};

/// How long a message may be held without word before JetStream gives it
/// to another gateway (a held one says "in progress" every
/// `PROGRESS_INTERVAL_MS`: Telegram's limits may hold it for long).
const ACK_WAIT_MS: u64 = 30_000;
const PROGRESS_INTERVAL_MS: u64 = 10_000;
/// Most outbox messages held unacknowledged at once by all gateways.
const ACK_PENDING_MAX: i64 = 20_000;
/// Pause while this gateway's sender queue is full.
const FULL_PAUSE_MS: u64 = 20;
/// Pause before pulling again after the stream could not be read.
const ERROR_PAUSE_MS: u64 = 500;

/// Counters of the pump.
#[derive(Debug, Default)]
pub struct OutboxMetrics {
    /// Outbox messages taken and acknowledged.
    pub taken: AtomicU64,
    /// Bot API calls handed to the sender.
    pub calls: AtomicU64,
    /// Calls dropped (their chat blocked the bot, or unreadable).
    pub dropped: AtomicU64,
    /// Gauge: messages waiting in the outbox, as last seen.
    pub pending: AtomicU64,
    /// Gauge: messages taken and not yet acknowledged (their calls with the sender).
    pub held: AtomicU64,
}

/// After a stop: waits (at most `timeout`) until every message taken was
/// acknowledged; returns whether all were (the rest go to another gateway).
pub async fn settle(metrics: &OutboxMetrics, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while metrics.held.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    metrics.held.load(Ordering::Relaxed) == 0
}

/// Runs the pump until `stop` turns true; reconnects on its own.
pub async fn run(link: Link, sender: SenderHandle, metrics: Arc<OutboxMetrics>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        tokio::select! {
            () = pump(&link, &sender, &metrics) => {}
            _ = stop.changed() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ERROR_PAUSE_MS)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Pulls and delivers until the consumer fails.
async fn pump(link: &Link, sender: &SenderHandle, metrics: &Arc<OutboxMetrics>) {
    let mut reconnected = link.reconnections();
    let consumer = async {
        let stream = link.jetstream.get_stream(OUTBOX_STREAM).await.map_err(|e| e.to_string())?;
        let config = pull::Config {
            durable_name: Some(OUTBOX_CONSUMER.to_owned()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_millis(ACK_WAIT_MS),
            max_ack_pending: ACK_PENDING_MAX,
            ..Default::default()
        };
        let consumer = stream.get_or_create_consumer(OUTBOX_CONSUMER, config).await.map_err(|e| e.to_string())?;
        consumer.messages().await.map_err(|e| e.to_string())
    };
    let mut messages = match consumer.await {
        Ok(messages) => messages,
        Err(error) => {
            tracing::warn!(%error, "outbox not readable yet");
            return;
        }
    };
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            _ = reconnected.changed() => {
                tracing::info!("NATS is back: pulling the outbox anew");
                return;
            }
        };
        let Some(message) = message else { return };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "outbox read failed; pulling again");
                return;
            }
        };
        if let Ok(info) = message.info() {
            metrics.pending.store(info.pending, Ordering::Relaxed);
        }
        let mut deliveries = Vec::new();
        // Replies answer what the chat just sent: it has not blocked the bot.
        let replying = message.subject.as_str() != OUTBOX_NOTICES;
        match serde_json::from_slice::<Vec<Outgoing>>(&message.payload) {
            // A marker (a new engine's first batch): nothing to send.
            Ok(calls) if calls.is_empty() => {}
            Ok(calls) => {
                // Queued in the message's order (a chat's calls keep theirs);
                // only the acknowledgement waits for Telegram.
                for call in calls {
                    deliveries.extend(deliver(sender, call, replying, metrics).await);
                }
            }
            Err(error) => {
                metrics.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "outbox message unreadable; dropped");
            }
        }
        let taken = Arc::clone(metrics);
        metrics.held.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(acknowledge_when_delivered(message, deliveries, taken));
    }
}

/// Acknowledges `message` once all its calls are done with (sent or given
/// up), telling JetStream meanwhile that it is in progress: a gateway that
/// dies before leaves it to another, which sends it again.
async fn acknowledge_when_delivered(
    message: async_nats::jetstream::Message,
    deliveries: Vec<crate::sender::Delivery>,
    metrics: Arc<OutboxMetrics>,
) {
    let mut delivered = std::pin::pin!(futures_util::future::join_all(deliveries));
    loop {
        tokio::select! {
            _ = &mut delivered => break,
            () = tokio::time::sleep(Duration::from_millis(PROGRESS_INTERVAL_MS)) => {
                let _ = message.ack_with(async_nats::jetstream::AckKind::Progress).await;
            }
        }
    }
    if let Err(error) = message.ack().await {
        tracing::warn!(%error, "outbox acknowledgement lost; the message may be sent again");
    }
    metrics.taken.fetch_add(1, Ordering::Relaxed);
    metrics.held.fetch_sub(1, Ordering::Relaxed);
}

/// Queues one call, waiting while the sender's queue is full; its delivery,
/// or `None` when it was dropped.
async fn deliver(
    sender: &SenderHandle,
    call: Outgoing,
    replying: bool,
    metrics: &OutboxMetrics,
) -> Option<crate::sender::Delivery> {
    loop {
        match sender.send_tracked(call.clone(), replying) {
            Ok(delivery) => {
                metrics.calls.fetch_add(1, Ordering::Relaxed);
                return Some(delivery);
            }
            Err(SendError::Full | SendError::ChatFull) => {
                tokio::time::sleep(Duration::from_millis(FULL_PAUSE_MS)).await;
            }
            Err(SendError::Blocked | SendError::Closed) => {
                metrics.dropped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
    }
}

/// The pump's metrics in Prometheus text.
#[must_use]
pub fn render(metrics: &OutboxMetrics) -> String {
    use std::fmt::Write as _;
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let mut text = String::new();
    for (name, kind, help, value) in [
        ("stockbot_outbox_taken_total", "counter", "Outbox messages delivered to the sender.", get(&metrics.taken)),
        ("stockbot_outbox_calls_total", "counter", "Bot API calls handed to the sender.", get(&metrics.calls)),
        (
            "stockbot_outbox_dropped_total",
            "counter",
            "Calls dropped (blocked chat, unreadable).",
            get(&metrics.dropped),
        ),
        ("stockbot_outbox_lag", "gauge", "Outbox messages waiting for a sender (stream lag).", get(&metrics.pending)),
        (
            "stockbot_outbox_held",
            "gauge",
            "Outbox messages with this sender, not yet acknowledged.",
            get(&metrics.held),
        ),
    ] {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
    text
}
