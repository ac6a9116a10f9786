//! Ingest: the bounded queue between receiving updates (webhook or polling)
//! and handling them, with dedup by `update_id` through the Coordinator (so
//! two instances behind one balancer never both process an update) and a cap
//! on updates handled at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actors::ports::coordinator::Coordinator;
use teloxide_core::types::Update;
use tokio::sync::{Semaphore, mpsc};

use super::update::UpdateHandler;

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

/// Why an update was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full: Telegram should retry later (503).
    Full,
}

/// The receiving end's handle.
#[derive(Clone)]
pub struct Ingest {
    queue: mpsc::Sender<Update>,
    coordinator: Arc<dyn Coordinator>,
    metrics: Arc<IngestMetrics>,
}

impl Ingest {
    /// Starts the handling loop: at most `queue_max` updates wait, at most
    /// `concurrency_max` are handled at once. Call inside the actix system.
    #[must_use]
    pub fn start(
        handler: UpdateHandler,
        coordinator: Arc<dyn Coordinator>,
        queue_max: usize,
        concurrency_max: usize,
    ) -> Self {
        let (queue, mut updates) = mpsc::channel::<Update>(queue_max.max(1));
        let metrics = Arc::new(IngestMetrics::default());
        let slots = Arc::new(Semaphore::new(concurrency_max.max(1)));
        let counters = Arc::clone(&metrics);
        actix::spawn(async move {
            while let Some(update) = updates.recv().await {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
                let (handler, counters) = (handler.clone(), Arc::clone(&counters));
                actix::spawn(async move {
                    handler.handle(update).await;
                    counters.handled.fetch_add(1, Ordering::Relaxed);
                    drop(slot);
                });
            }
        });
        Self { queue, coordinator, metrics }
    }

    /// The counters.
    #[must_use]
    pub fn metrics(&self) -> &Arc<IngestMetrics> {
        &self.metrics
    }

    /// Takes an update unless the queue is full; repeats are accepted and
    /// dropped. Never waits for room (the webhook answers 503 instead).
    ///
    /// # Errors
    /// `Refused::Full` when the queue has no room.
    pub async fn offer(&self, update: Update) -> Result<(), Refused> {
        self.metrics.received.fetch_add(1, Ordering::Relaxed);
        // Reserve room first: an update marked as seen must not then be refused.
        let Ok(permit) = self.queue.try_reserve() else {
            self.metrics.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Full);
        };
        if !self.first_time(&update).await {
            return Ok(());
        }
        permit.send(update);
        Ok(())
    }

    /// Takes an update, waiting for room (polling: back-pressure, no loss).
    pub async fn push(&self, update: Update) {
        self.metrics.received.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = self.queue.reserve().await else { return };
        if self.first_time(&update).await {
            permit.send(update);
        }
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
