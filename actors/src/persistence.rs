//! `PersistenceActor`: group commit. It gathers the market's event batches
//! and writes them to the `Store` in one transaction per flush; each batch's
//! sender learns it is durable only after that commit. Flushes are
//! pipelined: up to `pipeline_depth` are in flight, each writing while the
//! one before commits and committing only after it (so the log never has a
//! hole), and their results are taken in order. While the store is down it
//! retries the failed flushes one at a time, in order, with backoff, and
//! reports itself unhealthy, so the market refuses new work instead of
//! queueing without limit.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::metrics::EngineMetrics;
use crate::ports::{CommitGate, EventBatch, MarketSnapshot, Store, StoreError};

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

/// One flush: merged batches written in one transaction.
struct Flight {
    id: u64,
    batch: Arc<EventBatch>,
    acks: Vec<oneshot::Sender<Result<(), StoreError>>>,
    snapshot: Option<Arc<MarketSnapshot>>,
    started: Instant,
    /// Written again after a failure (it goes back to the front if it fails again).
    retried: bool,
    /// Set when its write ended.
    result: Option<Result<(), StoreError>>,
}

/// Writes event batches to the store, one transaction per flush.
pub struct PersistenceActor {
    store: Arc<dyn Store>,
    metrics: Arc<EngineMetrics>,
    healthy: Arc<AtomicBool>,
    flush_batch_events_max: usize,
    flush_interval: Duration,
    pipeline_depth: usize,
    queue: Vec<Waiting>,
    queued_events: usize,
    /// Flushes written or writing, oldest first.
    flights: VecDeque<Flight>,
    /// Reports on the newest flight in `flights` (the next one waits for it).
    last_gate: Option<CommitGate>,
    next_flight: u64,
    /// Flushes that failed, to write again one at a time, in order.
    retries: VecDeque<Flight>,
    /// A flight failed: nothing new starts until the ones in flight ended.
    failing: bool,
    flush_scheduled: bool,
    backoff_ms: u64,
    drain_waiters: Vec<oneshot::Sender<()>>,
    /// Another engine took over: nothing is written any more.
    fenced: Option<String>,
}

impl PersistenceActor {
    /// A persistence actor writing to `store`, one flush at a time.
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
            pipeline_depth: 1,
            queue: Vec::new(),
            queued_events: 0,
            flights: VecDeque::new(),
            last_gate: None,
            next_flight: 0,
            retries: VecDeque::new(),
            failing: false,
            flush_scheduled: false,
            backoff_ms: RETRY_BACKOFF_MIN_MS,
            drain_waiters: Vec::new(),
            fenced: None,
        }
    }

    /// Up to `depth` flushes in flight at once (at least 1).
    #[must_use]
    pub fn with_pipeline_depth(mut self, depth: usize) -> Self {
        self.pipeline_depth = depth.max(1);
        self
    }

    fn can_start(&self) -> bool {
        self.fenced.is_none() && !self.failing && self.retries.is_empty() && self.flights.len() < self.pipeline_depth
    }

    /// Another engine holds the lease: nothing waiting will ever be written.
    /// Every waiter hears it failed (its commands are refused), and so does
    /// every batch from now on.
    fn fence_out(&mut self, reason: String) {
        let abandoned = self.queued_events
            + self.flights.iter().chain(&self.retries).map(|flight| flight.batch.events.len()).sum::<usize>();
        tracing::error!(%reason, events_abandoned = abandoned, "superseded by another engine: no more writes");
        self.healthy.store(false, Ordering::SeqCst);
        self.metrics.pending_events.store(0, Ordering::Relaxed);
        self.queue.clear();
        self.queued_events = 0;
        self.flights.clear();
        self.retries.clear();
        self.last_gate = None;
        self.fenced = Some(reason);
        for waiter in self.drain_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    /// Starts a flush now, or after the linger interval, unless none may start.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if !self.can_start() || self.flush_scheduled || self.queue.is_empty() {
            return;
        }
        // Something in flight already: its commit is the linger.
        if self.queued_events >= self.flush_batch_events_max
            || self.flush_interval.is_zero()
            || !self.flights.is_empty()
        {
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
        if !self.can_start() || self.queue.is_empty() {
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
            merged.outcomes.extend(waiting.batch.outcomes);
            acks.push(waiting.ack);
        }
        let id = self.next_flight;
        self.next_flight += 1;
        let flight = Flight {
            id,
            batch: Arc::new(merged),
            acks,
            snapshot,
            started: Instant::now(),
            retried: false,
            result: None,
        };
        let previous = self.last_gate.take();
        self.start(flight, previous, ctx);
        // A deeper pipeline fills up with what is already queued.
        self.schedule(ctx);
    }

    /// Writes `flight` (after `previous` committed, if given).
    fn start(&mut self, mut flight: Flight, previous: Option<CommitGate>, ctx: &mut Context<Self>) {
        let (signal, gate) = CommitGate::new();
        let write = match previous {
            Some(previous) => Arc::clone(&self.store).append_after(Arc::clone(&flight.batch), previous),
            None => self.store.append(Arc::clone(&flight.batch)),
        };
        let id = flight.id;
        flight.started = Instant::now();
        self.flights.push_back(flight);
        self.last_gate = Some(gate);
        let reported = async move {
            let result = write.await;
            // The next flight may commit as soon as this one did.
            signal.done(result.is_ok());
            result
        };
        ctx.spawn(reported.into_actor(self).map(move |result, actor, ctx| {
            if let Some(flight) = actor.flights.iter_mut().find(|flight| flight.id == id) {
                flight.result = Some(result);
            }
            actor.settle(ctx);
        }));
    }

    /// Takes the ended flights in order: acknowledges the committed ones,
    /// sets the failed ones aside to be written again.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        let mut failed = Vec::new();
        while self.flights.front().is_some_and(|flight| flight.result.is_some()) {
            let Some(mut flight) = self.flights.pop_front() else { break };
            match flight.result.take() {
                // A flight commits only after the one before it did.
                Some(Ok(())) => self.committed(flight, ctx),
                Some(Err(StoreError::Fenced(reason))) => {
                    self.fence_out(reason);
                    return;
                }
                Some(Err(error)) => {
                    self.metrics.flush_failures.fetch_add(1, Ordering::Relaxed);
                    self.healthy.store(false, Ordering::SeqCst);
                    tracing::warn!(%error, events = flight.batch.events.len(), retry_ms = self.backoff_ms, "flush failed; retrying");
                    self.failing = true;
                    failed.push(flight);
                }
                None => {}
            }
        }
        // In log order: a retried flight is older than every other failed
        // one; the flights of one failing pipeline fail in order.
        for flight in failed {
            if flight.retried {
                self.retries.push_front(flight);
            } else {
                self.retries.push_back(flight);
            }
        }
        if self.failing && self.flights.is_empty() {
            self.failing = false;
            self.last_gate = None;
            let delay = Duration::from_millis(self.backoff_ms);
            self.backoff_ms = (self.backoff_ms * 2).min(RETRY_BACKOFF_MAX_MS);
            ctx.run_later(delay, Self::retry_next);
            return;
        }
        self.schedule(ctx);
        self.notify_if_drained();
    }

    /// Writes the oldest failed flush again, alone.
    fn retry_next(&mut self, ctx: &mut Context<Self>) {
        if !self.flights.is_empty() {
            return;
        }
        match self.retries.pop_front() {
            Some(mut flight) => {
                flight.retried = true;
                self.start(flight, None, ctx);
            }
            None => {
                self.schedule(ctx);
                self.notify_if_drained();
            }
        }
    }

    fn committed(&mut self, flight: Flight, ctx: &mut Context<Self>) {
        let latency_us = u64::try_from(flight.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let events = flight.batch.events.len();
        self.metrics.record_flush(events, latency_us);
        self.metrics.pending_events.fetch_sub(events as u64, Ordering::Relaxed);
        self.healthy.store(true, Ordering::SeqCst);
        self.backoff_ms = RETRY_BACKOFF_MIN_MS;
        for ack in flight.acks {
            let _ = ack.send(Ok(()));
        }
        if let Some(snapshot) = flight.snapshot {
            // Only after the events it covers are durable.
            let save = self.store.save_market(snapshot);
            ctx.spawn(
                async move {
                    if let Err(error) = save.await {
                        tracing::warn!(%error, "market snapshot not saved; the next one will be");
                    }
                }
                .into_actor(self),
            );
        }
        if !self.retries.is_empty() && self.flights.is_empty() {
            ctx.run_later(Duration::ZERO, Self::retry_next);
        }
    }

    fn notify_if_drained(&mut self) {
        if self.flights.is_empty() && self.retries.is_empty() && self.queue.is_empty() {
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
        if let Some(reason) = &self.fenced {
            let _ = message.ack.send(Err(StoreError::Fenced(reason.clone())));
            return;
        }
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
        if let Some(reason) = &self.fenced {
            let reason = reason.clone();
            return Box::pin(async move { Err(StoreError::Fenced(reason)) });
        }
        let (sender, receiver) = oneshot::channel();
        self.drain_waiters.push(sender);
        if self.flights.is_empty() && self.retries.is_empty() {
            self.flush(ctx);
        }
        self.notify_if_drained();
        Box::pin(async move { receiver.await.map_err(|_| StoreError::Unavailable("persistence stopped".into())) })
    }
}
