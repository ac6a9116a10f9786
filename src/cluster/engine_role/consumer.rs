//! The command consumer of an active engine: reads the command stream in
//! order from the cursor on, hands each message to a handler — one at a time
//! per chat (a player's commands apply in the order they were sent), up to
//! `handling_max` at once overall — and leaves its replies with
//! [`Replies`]. The watermark is the last message before the first one
//! still being handled (effects durable: each command's reply waits for its
//! group commit); the cursor is where replies are out through, which
//! follows the watermark. The cursor goes into the next group commit and
//! heartbeat; a message above it may be handled again by a later engine,
//! and then its keyed commands answer as they did.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures_util::StreamExt as _;
use tokio::sync::{Semaphore, watch};
use wire::subjects::COMMAND_STREAM;

use super::handling::{Handling, Work};
use super::replies::Replies;
use gateway::nats::Link;

/// Pause before reading the stream again after it failed.
const ERROR_PAUSE_MS: u64 = 200;

/// Which messages are done: the cursor is the last seq before the first one
/// still being handled.
#[derive(Debug, Default)]
pub struct Watermark {
    handling: BTreeSet<u64>,
    /// The newest seq taken (or the starting cursor).
    taken: u64,
}

impl Watermark {
    /// Starting after `cursor`.
    #[must_use]
    pub fn from(cursor: u64) -> Self {
        Self { handling: BTreeSet::new(), taken: cursor }
    }

    /// `seq` is being handled.
    pub fn take(&mut self, seq: u64) {
        self.handling.insert(seq);
        self.taken = self.taken.max(seq);
    }

    /// `seq` is done.
    pub fn done(&mut self, seq: u64) {
        self.handling.remove(&seq);
    }

    /// Every message up to here is done.
    #[must_use]
    pub fn cursor(&self) -> u64 {
        self.handling.first().map_or(self.taken, |first| first.saturating_sub(1))
    }

    /// Messages being handled.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.handling.len()
    }
}

/// A command handled slower than this is named in the log (it holds the
/// cursor, and with it every reply batch, back).
const SLOW_HANDLING_MS: u64 = 2_000;

/// Messages of one chat waiting for the one before them, in stream order.
#[derive(Default)]
struct Lanes {
    waiting: HashMap<i64, VecDeque<Work>>,
}

/// The consumer's shared state.
pub struct Consumer {
    pub watermark: Arc<Mutex<Watermark>>,
    pub replies: Arc<Replies>,
    lanes: Arc<Mutex<Lanes>>,
    slots: Arc<Semaphore>,
    handling: Arc<Handling>,
    /// Says whether the stream was replaced under this engine.
    replaced: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

impl Consumer {
    /// A consumer starting after `cursor`, at most `handling_max` messages at once.
    #[must_use]
    pub fn new(cursor: u64, handling_max: usize, handling: Arc<Handling>) -> Self {
        Self {
            watermark: Arc::new(Mutex::new(Watermark::from(cursor))),
            replies: Arc::new(Replies::new(cursor)),
            lanes: Arc::default(),
            slots: Arc::new(Semaphore::new(handling_max.max(1))),
            handling,
            replaced: Mutex::new(None),
        }
    }

    /// Runs `replaced` (and reading stops) when, before a (re)read, the
    /// stream ends before what was taken: it was created anew under us.
    pub fn on_replaced(&self, replaced: Arc<dyn Fn() + Send + Sync>) {
        *self.replaced.lock().unwrap_or_else(PoisonError::into_inner) = Some(replaced);
    }

    /// The cursor now: every message up to it is handled, its replies out.
    #[must_use]
    pub fn cursor(&self) -> u64 {
        self.replies.published()
    }

    /// Messages being handled now, or handled with replies not yet out.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.watermark.lock().unwrap_or_else(PoisonError::into_inner).in_flight() + self.replies.pending()
    }

    /// Reads the stream after the cursor until `stop` turns true (or the
    /// stream was replaced under it).
    pub async fn run(&self, link: Link, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let replaced = self.replaced.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let taken = self.watermark.lock().unwrap_or_else(PoisonError::into_inner).taken;
            if let Some(replaced) = replaced
                && let Ok((_, last)) = super::stream_identity(&link).await
                && last < taken
            {
                replaced();
                return;
            }
            let start = self.watermark.lock().unwrap_or_else(PoisonError::into_inner).taken.saturating_add(1);
            tokio::select! {
                () = self.read_from(&link, start) => {}
                _ = stop.changed() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(ERROR_PAUSE_MS)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Reads from `start` until the stream fails.
    async fn read_from(&self, link: &Link, start: u64) {
        let mut reconnected = link.reconnections();
        let messages = async {
            let stream = match link.jetstream.get_stream(COMMAND_STREAM).await {
                Ok(stream) => stream,
                Err(error) => {
                    // Gone with NATS's store: made anew, this engine finds
                    // it replaced on its next read and steps down.
                    if Link::is_missing(&error) {
                        link.restore_streams().await;
                    }
                    return Err(error.to_string());
                }
            };
            let config = OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
                ..Default::default()
            };
            let consumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
            consumer.messages().await.map_err(|e| e.to_string())
        };
        let mut messages = match messages.await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, start, "cannot read the command stream yet");
                return;
            }
        };
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = reconnected.changed() => {
                    tracing::info!("NATS is back: reading the command stream anew");
                    return;
                }
            };
            let Some(message) = message else { return };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "command stream read failed; reading again");
                    return;
                }
            };
            let Ok(info) = message.info() else { continue };
            let seq = info.stream_sequence;
            let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else { return };
            {
                let mut watermark = self.watermark.lock().unwrap_or_else(PoisonError::into_inner);
                if seq <= watermark.taken {
                    tracing::warn!(seq, taken = watermark.taken, "command delivered again; skipped");
                    continue;
                }
                watermark.take(seq);
            }
            let work = Work::new(seq, &message, slot);
            self.dispatch(work);
        }
    }

    /// Starts `work` now, or queues it behind its chat's message in hand.
    fn dispatch(&self, work: Work) {
        {
            let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(waiting) = lanes.waiting.get_mut(&work.lane) {
                waiting.push_back(work);
                return;
            }
            lanes.waiting.insert(work.lane, VecDeque::new());
        }
        let (lanes, watermark, handling, replies) = (
            Arc::clone(&self.lanes),
            Arc::clone(&self.watermark),
            Arc::clone(&self.handling),
            Arc::clone(&self.replies),
        );
        actix::spawn(async move {
            let lane = work.lane;
            let mut next = Some(work);
            while let Some(mut work) = next.take() {
                let seq = work.seq;
                let slot = work.slot.take();
                let started = std::time::Instant::now();
                let finished = handling.handle(work).await;
                let took = started.elapsed();
                if took >= Duration::from_millis(SLOW_HANDLING_MS) {
                    tracing::warn!(seq, lane, took_ms = took.as_millis(), "a command took long to handle");
                }
                // Not finished (its replies could not be published): it stays
                // before the cursor, for the next engine to handle again.
                if let Some(finished) = finished {
                    replies.handled(seq, finished.calls, finished.out, slot);
                    watermark.lock().unwrap_or_else(PoisonError::into_inner).done(seq);
                }
                let mut lanes = lanes.lock().unwrap_or_else(PoisonError::into_inner);
                match lanes.waiting.get_mut(&lane).and_then(VecDeque::pop_front) {
                    Some(queued) => next = Some(queued),
                    None => {
                        lanes.waiting.remove(&lane);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_stops_before_the_oldest_message_in_hand() {
        let mut watermark = Watermark::from(10);
        assert_eq!(watermark.cursor(), 10);
        for seq in [11, 12, 13] {
            watermark.take(seq);
        }
        watermark.done(12);
        assert_eq!(watermark.cursor(), 10);
        watermark.done(11);
        assert_eq!(watermark.cursor(), 12);
        watermark.done(13);
        assert_eq!(watermark.cursor(), 13);
        assert_eq!(watermark.in_flight(), 0);
    }
}
