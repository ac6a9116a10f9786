//! `PersistenceActor`: group commit. It gathers the market's event batches
//! and writes them to the `Store` in one transaction per flush; each batch's
//! sender learns it is durable only after that commit. While the store is
//! down it retries with backoff and reports itself unhealthy, so the market
//! refuses new work instead of queueing without limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::metrics::EngineMetrics;
use crate::ports::{EventBatch, MarketSnapshot, Store, StoreError};

/// Events of one market batch to make durable; `ack` fires after commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PersistEvents {
    pub batch: EventBatch,
    /// The market state as of these events' end, saved after they commit.
    pub snapshot: Option<Arc<MarketSnapshot>>,
    pub ack: oneshot::Sender<Result<(), StoreError>>,
}

/// Resolves once everything received so far is durable (for shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct FlushAll;

/// Longest pause between retries while the store is down.
const RETRY_BACKOFF_MAX_MS: u64 = 1_000;
const RETRY_BACKOFF_MIN_MS: u64 = 20;

struct Waiting {
    batch: EventBatch,
    snapshot: Option<Arc<MarketSnapshot>>,
    ack: oneshot::Sender<Result<(), StoreError>>,
}

/// Writes event batches to the store, one transaction per flush.
pub struct PersistenceActor {
    store: Arc<dyn Store>,
    metrics: Arc<EngineMetrics>,
    healthy: Arc<AtomicBool>,
    flush_batch_events_max: usize,
    flush_interval: Duration,
    queue: Vec<Waiting>,
    queued_events: usize,
    in_flight: bool,
    flush_scheduled: bool,
    backoff_ms: u64,
    drain_waiters: Vec<oneshot::Sender<()>>,
}

impl PersistenceActor {
    /// A persistence actor writing to `store`.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<EngineMetrics>,
        healthy: Arc<AtomicBool>,
        flush_batch_events_max: usize,
        flush_interval_ms: u64,
    ) -> Self {
        Self {
            store,
            metrics,
            healthy,
            flush_batch_events_max: flush_batch_events_max.max(1),
            flush_interval: Duration::from_millis(flush_interval_ms),
            queue: Vec::new(),
            queued_events: 0,
            in_flight: false,
            flush_scheduled: false,
            backoff_ms: RETRY_BACKOFF_MIN_MS,
            drain_waiters: Vec::new(),
        }
    }

    /// Starts a flush now, or after the linger interval, unless one runs.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.flush_scheduled || self.queue.is_empty() {
            return;
        }
        if self.queued_events >= self.flush_batch_events_max || self.flush_interval.is_zero() {
            self.flush(ctx);
        } else {
            self.flush_scheduled = true;
            ctx.run_later(self.flush_interval, |actor, ctx| {
                actor.flush_scheduled = false;
                actor.flush(ctx);
            });
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.queue.is_empty() {
            return;
        }
        // Whole batches only: a market batch is durable all at once.
        let mut taken_events = 0;
        let mut take = 0;
        for waiting in &self.queue {
            if take > 0 && taken_events + waiting.batch.events.len() > self.flush_batch_events_max {
                break;
            }
            taken_events += waiting.batch.events.len();
            take += 1;
        }
        let batch: Vec<Waiting> = self.queue.drain(..take).collect();
        self.queued_events -= taken_events;
        let mut merged = EventBatch::default();
        let mut acks = Vec::with_capacity(batch.len());
        let mut snapshot = None;
        for waiting in batch {
            snapshot = waiting.snapshot.or(snapshot);
            if merged.events.is_empty() {
                // The common single-batch flush moves, not copies.
                merged.events = waiting.batch.events;
                merged.events.reserve(taken_events.saturating_sub(merged.events.len()));
            } else {
                merged.events.extend(waiting.batch.events);
            }
            merged.accounts.extend(waiting.batch.accounts);
            acks.push(waiting.ack);
        }
        self.in_flight = true;
        self.write(Arc::new(merged), acks, snapshot, ctx);
    }

    fn write(
        &mut self,
        batch: Arc<EventBatch>,
        acks: Vec<oneshot::Sender<Result<(), StoreError>>>,
        snapshot: Option<Arc<MarketSnapshot>>,
        ctx: &mut Context<Self>,
    ) {
        let started = Instant::now();
        let write = self.store.append(Arc::clone(&batch));
        ctx.spawn(write.into_actor(self).map(move |result, actor, ctx| match result {
            Ok(()) => {
                let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                actor.metrics.record_flush(batch.events.len(), latency_us);
                actor.metrics.pending_events.fetch_sub(batch.events.len() as u64, Ordering::Relaxed);
                actor.healthy.store(true, Ordering::SeqCst);
                actor.backoff_ms = RETRY_BACKOFF_MIN_MS;
                for ack in acks {
                    let _ = ack.send(Ok(()));
                }
                if let Some(snapshot) = snapshot {
                    // Only after the events it covers are durable.
                    let save = actor.store.save_market(snapshot);
                    ctx.spawn(
                        async move {
                            if let Err(error) = save.await {
                                tracing::warn!(%error, "market snapshot not saved; the next one will be");
                            }
                        }
                        .into_actor(actor),
                    );
                }
                actor.in_flight = false;
                actor.schedule(ctx);
                actor.notify_if_drained();
            }
            Err(error) => {
                actor.metrics.flush_failures.fetch_add(1, Ordering::Relaxed);
                actor.healthy.store(false, Ordering::SeqCst);
                tracing::warn!(%error, events = batch.events.len(), retry_ms = actor.backoff_ms, "flush failed; retrying");
                let delay = Duration::from_millis(actor.backoff_ms);
                actor.backoff_ms = (actor.backoff_ms * 2).min(RETRY_BACKOFF_MAX_MS);
                // The same batch again: the log never skips or reorders.
                ctx.run_later(delay, move |actor, ctx| actor.write(batch, acks, snapshot, ctx));
            }
        }));
    }

    fn notify_if_drained(&mut self) {
        if !self.in_flight && self.queue.is_empty() {
            for waiter in self.drain_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Actor for PersistenceActor {
    type Context = Context<Self>;
}

impl Handler<PersistEvents> for PersistenceActor {
    type Result = ();

    fn handle(&mut self, message: PersistEvents, ctx: &mut Context<Self>) {
        if message.batch.events.is_empty() && message.snapshot.is_none() {
            let _ = message.ack.send(Ok(()));
            return;
        }
        self.queued_events += message.batch.events.len();
        self.queue.push(Waiting { batch: message.batch, snapshot: message.snapshot, ack: message.ack });
        self.schedule(ctx);
    }
}

impl Handler<FlushAll> for PersistenceActor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, _: FlushAll, ctx: &mut Context<Self>) -> Self::Result {
        let (sender, receiver) = oneshot::channel();
        self.drain_waiters.push(sender);
        if !self.in_flight {
            self.flush(ctx);
        }
        self.notify_if_drained();
        Box::pin(async move { receiver.await.map_err(|_| StoreError::Unavailable("persistence stopped".into())) })
    }
}
