//! Ingest: the bounded queue between receiving updates (webhook or polling)
//! and handling them, with dedup by `update_id` through the Coordinator (so
//! two instances behind one balancer never both process an update) and a cap
//! on updates handled at once. A burst waits a bounded time for room rather
//! than being refused. For a graceful stop it can be closed (no more updates
//! taken) and drained (every update taken is handled).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use actors::ports::coordinator::Coordinator;
use teloxide_core::types::Update;
use tokio::sync::{Notify, Semaphore, mpsc};

use super::sender::SenderHandle;
use super::update::UpdateHandler;
use crate::telegram::polling::UpdateSink;

/// Telegram keeps an undelivered update for 24 h; dedup marks live as long.
pub const UPDATE_DEDUP_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Counters of the ingest path.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub received: AtomicU64,
    pub duplicates: AtomicU64,
    pub refused_full: AtomicU64,
    pub handled: AtomicU64,
}

pub use gateway::backend::Refused;

/// The receiving end's handle.
#[derive(Clone)]
pub struct Ingest {
    queue: mpsc::Sender<(Update, Entry)>,
    coordinator: Arc<dyn Coordinator>,
    metrics: Arc<IngestMetrics>,
    gate: Arc<Gate>,
    offer_wait: Duration,
}

/// Open or closed, and how many updates are inside (being offered, queued
/// or being handled).
#[derive(Default)]
struct Gate {
    closed: AtomicBool,
    /// Woken when the gate closes.
    closing: Notify,
    inside: AtomicUsize,
    /// Woken when the last update inside leaves.
    empty: Notify,
}

impl Gate {
    /// Lets one update in, unless the gate is closed. The count goes up
    /// before the check, so `drain` (which closes first, then waits for the
    /// count to reach 0) never misses an update that got in.
    fn enter(self: &Arc<Self>) -> Option<Entry> {
        self.inside.fetch_add(1, Ordering::SeqCst);
        let entry = Entry(Arc::clone(self));
        (!self.closed.load(Ordering::SeqCst)).then_some(entry)
    }
}

/// One update inside the gate; it leaves when this is dropped (handled,
/// refused, or a duplicate).
struct Entry(Arc<Gate>);

impl Drop for Entry {
    fn drop(&mut self) {
        if self.0.inside.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.empty.notify_waiters();
        }
    }
}

impl Ingest {
    /// Starts the handling loop: at most `queue_max` updates wait, at most
    /// `concurrency_max` are handled at once, replies go to `sender`; an
    /// offered update waits at most `offer_wait` for room. Call inside the
    /// actix system.
    #[must_use]
    pub fn start(
        handler: UpdateHandler,
        sender: SenderHandle,
        coordinator: Arc<dyn Coordinator>,
        queue_max: usize,
        concurrency_max: usize,
        offer_wait: Duration,
    ) -> Self {
        let (queue, mut updates) = mpsc::channel::<(Update, Entry)>(queue_max.max(1));
        let metrics = Arc::new(IngestMetrics::default());
        let slots = Arc::new(Semaphore::new(concurrency_max.max(1)));
        let counters = Arc::clone(&metrics);
        actix::spawn(async move {
            while let Some((update, entry)) = updates.recv().await {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
                let (handler, counters, sender) = (handler.clone(), Arc::clone(&counters), sender.clone());
                actix::spawn(async move {
                    handler.handle(update, &sender).await;
                    counters.handled.fetch_add(1, Ordering::Relaxed);
                    drop(slot);
                    drop(entry);
                });
            }
        });
        Self { queue, coordinator, metrics, gate: Arc::new(Gate::default()), offer_wait }
    }

    /// Takes no more updates: `offer` and `push` refuse from now on.
    pub fn close(&self) {
        self.gate.closed.store(true, Ordering::SeqCst);
        self.gate.closing.notify_waiters();
    }

    /// Whether `close` was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.gate.closed.load(Ordering::SeqCst)
    }

    /// Resolves once `close` has been called.
    pub async fn closed(&self) {
        loop {
            let closing = self.gate.closing.notified();
            tokio::pin!(closing);
            closing.as_mut().enable();
            if self.is_closed() {
                return;
            }
            closing.await;
        }
    }

    /// Closes, then waits until every update taken has been handled, or
    /// `timeout` passes; returns whether all were handled.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.close();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let empty = self.gate.empty.notified();
            tokio::pin!(empty);
            empty.as_mut().enable();
            if self.gate.inside.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, empty).await.is_err() {
                return self.gate.inside.load(Ordering::SeqCst) == 0;
            }
        }
    }

    /// The counters.
    #[must_use]
    pub fn metrics(&self) -> &Arc<IngestMetrics> {
        &self.metrics
    }

    /// Takes an update unless ingest is closed or the queue stays full for
    /// the whole wait allowed (a burst is held, not refused); repeats are
    /// accepted and dropped.
    ///
    /// # Errors
    /// `Refused::Full` when no room came within the wait, `Refused::Stopping`
    /// once closed; either way the update is not marked as seen.
    pub async fn offer(&self, update: Update) -> Result<(), Refused> {
        self.metrics.received.fetch_add(1, Ordering::Relaxed);
        let Some(entry) = self.gate.enter() else { return Err(Refused::Stopping) };
        // Reserve room first: an update marked as seen must not then be refused.
        let permit = match self.queue.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(())) => return Err(Refused::Stopping),
            Err(mpsc::error::TrySendError::Full(())) => {
                let waited = tokio::select! {
                    waited = tokio::time::timeout(self.offer_wait, self.queue.reserve()) => waited,
                    () = self.closed() => return Err(Refused::Stopping),
                };
                match waited {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Err(Refused::Stopping),
                    Err(_) => {
                        self.metrics.refused_full.fetch_add(1, Ordering::Relaxed);
                        return Err(Refused::Full);
                    }
                }
            }
        };
        if !self.first_time(&update).await {
            return Ok(());
        }
        permit.send((update, entry));
        Ok(())
    }

    /// Takes an update, waiting for room (polling: back-pressure, no loss).
    /// Returns whether it was taken (a duplicate counts as taken); `false`
    /// once ingest is closed, and then the update is not marked as seen.
    pub async fn push(&self, update: Update) -> bool {
        self.metrics.received.fetch_add(1, Ordering::Relaxed);
        let Some(entry) = self.gate.enter() else { return false };
        let permit = tokio::select! {
            permit = self.queue.reserve() => permit,
            () = self.closed() => return false,
        };
        let Ok(permit) = permit else { return false };
        if self.first_time(&update).await {
            permit.send((update, entry));
        }
        true
    }

    async fn first_time(&self, update: &Update) -> bool {
        let key = format!("upd:{}", update.id.0);
        match self.coordinator.first_seen(&key, UPDATE_DEDUP_TTL_MS).await {
            Ok(true) => true,
            Ok(false) => {
                self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(error) => {
                // Without a coordinator, processing beats losing the update.
                tracing::warn!(%error, "update dedup unavailable");
                true
            }
        }
    }
}

impl UpdateSink for Ingest {
    async fn push(&self, update: Update) -> bool {
        Ingest::push(self, update).await
    }

    async fn closed(&self) {
        Ingest::closed(self).await;
    }

    fn is_closed(&self) -> bool {
        Ingest::is_closed(self)
    }
}
