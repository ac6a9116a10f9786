//! The replies of an active engine on their way out. A handled message
//! leaves its Bot API calls here; one task publishes them: all calls of the
//! messages up to the consumer's watermark (every message before is
//! handled) as one batch on the chain, which records that replies are out
//! through there — the cursor the lease stores — and, singly, the calls of
//! a message handled past a slow one that held the watermark back for
//! `STRAGGLER_MS` (nobody's reply waits long for another's command). A
//! message stays here, holding its place among those handled at once,
//! until its calls are out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use wire::Outgoing;
use wire::subjects::OUTBOX_SINGLES;

use super::consumer::Watermark;
use crate::cluster::outbox::{BatchChain, ChainError, OutboxPublisher};

/// A reply held back this long by a slow message before it goes out alone.
pub const STRAGGLER_MS: u64 = 20;
/// Most calls in one batch (a larger backlog goes in several).
pub const BATCH_CALLS_MAX: usize = 2_048;
/// Attempts at publishing a single before it is tried again later.
const SINGLE_ATTEMPTS_MAX: u32 = 5;
/// Longest pause between attempts while NATS does not take a batch.
const RETRY_PAUSE_MAX_MS: u64 = 1_000;
/// After a stop, how long replies are still tried (NATS down): past it what
/// is left goes to the next engine, which handles those messages again.
const STOPPED_PUBLISH_MAX_MS: u64 = 30_000;

/// One handled message whose calls are not out yet.
struct Handled {
    calls: Vec<Outgoing>,
    at: Instant,
    /// Its calls went out singly (or it had none): the batch only counts it.
    out: bool,
    /// Its place among the messages handled at once.
    _slot: Option<OwnedSemaphorePermit>,
}

#[derive(Default)]
struct Held {
    handled: BTreeMap<u64, Handled>,
    /// Every message up to here is handled and its replies are out.
    published: u64,
}

/// The replies not yet out, and how far they are.
pub struct Replies {
    held: Mutex<Held>,
    wake: Notify,
    /// Stream sequence of the chain's last batch (the outbox keeps it).
    last_batch: AtomicU64,
}

impl Replies {
    /// Replies out through `published` already.
    #[must_use]
    pub fn new(published: u64) -> Self {
        let held = Mutex::new(Held { handled: BTreeMap::new(), published });
        Self { held, wake: Notify::new(), last_batch: AtomicU64::new(0) }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Message `seq` is handled with `calls` to make (`out`: they went out
    /// already); call before the watermark hears it is done.
    pub fn handled(&self, seq: u64, calls: Vec<Outgoing>, out: bool, slot: Option<OwnedSemaphorePermit>) {
        let out = out || calls.is_empty();
        self.held().handled.insert(seq, Handled { calls, at: Instant::now(), out, _slot: slot });
        self.wake.notify_one();
    }

    /// Every message up to here is handled and its replies are out.
    #[must_use]
    pub fn published(&self) -> u64 {
        self.held().published
    }

    /// Stream sequence of the chain's last batch, once the chain runs.
    #[must_use]
    pub fn last_batch(&self) -> u64 {
        self.last_batch.load(Ordering::Relaxed)
    }

    /// Messages handled whose replies are not all out.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.held().handled.len()
    }

    /// The next batch: through which message, and the calls not out yet of
    /// the messages up to there (at most `BATCH_CALLS_MAX`, whole messages).
    fn next_batch(&self, watermark: u64) -> Option<(u64, Vec<Outgoing>)> {
        let held = self.held();
        if watermark <= held.published {
            return None;
        }
        let mut through = held.published;
        let mut calls = Vec::new();
        for (&seq, handled) in held.handled.range(held.published + 1..=watermark) {
            if !handled.out && !calls.is_empty() && calls.len() + handled.calls.len() > BATCH_CALLS_MAX {
                return Some((through, calls));
            }
            if !handled.out {
                calls.extend(handled.calls.iter().cloned());
            }
            through = seq;
        }
        // Messages up to the watermark with nothing recorded (none: each
        // handled one is) would still be counted as out.
        Some((watermark.max(through), calls))
    }

    /// Replies are out through `through`.
    fn advance(&self, through: u64) {
        let mut held = self.held();
        held.handled = held.handled.split_off(&(through + 1));
        held.published = held.published.max(through);
    }

    /// Messages past the watermark held back for `STRAGGLER_MS`, their calls taken.
    fn stragglers(&self, now: Instant) -> Vec<(u64, Vec<Outgoing>)> {
        let mut held = self.held();
        let published = held.published;
        let due = Duration::from_millis(STRAGGLER_MS);
        held.handled
            .range_mut(published + 1..)
            .filter(|(_, handled)| !handled.out && now.duration_since(handled.at) >= due)
            .map(|(&seq, handled)| {
                handled.out = true;
                (seq, std::mem::take(&mut handled.calls))
            })
            .collect()
    }

    /// A straggler that could not go out: it goes in a batch or is tried again.
    fn give_back(&self, seq: u64, calls: Vec<Outgoing>) {
        if let Some(handled) = self.held().handled.get_mut(&seq) {
            handled.calls = calls;
            handled.out = false;
        }
    }

    /// Publishes until `stop` turns true and nothing is left, or the chain
    /// is superseded (then `superseded` runs and nothing more goes out).
    pub async fn run(
        &self,
        mut chain: BatchChain,
        singles: OutboxPublisher,
        watermark: Arc<Mutex<Watermark>>,
        mut stop: watch::Receiver<bool>,
        superseded: Arc<dyn Fn() + Send + Sync>,
    ) {
        let mut pause_ms = 10;
        let mut stopped_at: Option<Instant> = None;
        loop {
            self.last_batch.store(chain.last(), Ordering::Relaxed);
            if *stop.borrow() {
                let since = *stopped_at.get_or_insert_with(Instant::now);
                let in_flight = watermark.lock().unwrap_or_else(PoisonError::into_inner).in_flight();
                if self.pending() == 0 && in_flight == 0 {
                    return;
                }
                if since.elapsed() >= Duration::from_millis(STOPPED_PUBLISH_MAX_MS) {
                    tracing::warn!(left = self.pending(), "replies not out at the stop: the next engine sends them");
                    return;
                }
            }
            let cursor = watermark.lock().unwrap_or_else(PoisonError::into_inner).cursor();
            if let Some((through, calls)) = self.next_batch(cursor) {
                if calls.is_empty() {
                    self.advance(through);
                    continue;
                }
                match chain.publish(through, &calls).await {
                    Ok(()) => {
                        self.advance(through);
                        pause_ms = 10;
                        continue;
                    }
                    Err(ChainError::Superseded) => {
                        tracing::error!("another engine publishes replies: this one lost its lease");
                        superseded();
                        return;
                    }
                    Err(ChainError::Unavailable(error)) => {
                        tracing::warn!(%error, through, "reply batch not taken by the outbox; again");
                        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                        pause_ms = (pause_ms * 2).min(RETRY_PAUSE_MAX_MS);
                    }
                }
            }
            for (seq, calls) in self.stragglers(Instant::now()) {
                if !singles.publish(OUTBOX_SINGLES, &format!("r:{seq}"), &calls, SINGLE_ATTEMPTS_MAX).await {
                    self.give_back(seq, calls);
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(STRAGGLER_MS)) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(chat_id: i64) -> Outgoing {
        Outgoing::Text { chat_id, reply: wire::Reply::text("r") }
    }

    #[test]
    fn a_batch_takes_the_calls_up_to_the_watermark_not_out_yet() {
        let replies = Replies::new(10);
        replies.handled(11, vec![call(1)], false, None);
        replies.handled(12, vec![], false, None);
        replies.handled(13, vec![call(3)], true, None);
        replies.handled(14, vec![call(4)], false, None);
        assert_eq!(replies.next_batch(10), None);
        assert_eq!(replies.next_batch(13), Some((13, vec![call(1)])));
        replies.advance(13);
        assert_eq!((replies.published(), replies.pending()), (13, 1));
        assert_eq!(replies.next_batch(14), Some((14, vec![call(4)])));
    }

    #[test]
    fn a_long_backlog_goes_in_batches_of_whole_messages() {
        let replies = Replies::new(0);
        for seq in 1..=3 {
            replies.handled(seq, vec![call(1); BATCH_CALLS_MAX / 2 + 1], false, None);
        }
        let (through, calls) = replies.next_batch(3).unwrap_or_default();
        assert_eq!((through, calls.len()), (1, BATCH_CALLS_MAX / 2 + 1));
    }

    #[test]
    fn stragglers_go_out_once_and_come_back_if_not_taken() {
        let replies = Replies::new(0);
        replies.handled(2, vec![call(2)], false, None);
        let later = Instant::now() + Duration::from_millis(STRAGGLER_MS);
        assert_eq!(replies.stragglers(Instant::now()), vec![]);
        assert_eq!(replies.stragglers(later), vec![(2, vec![call(2)])]);
        assert_eq!(replies.stragglers(later), vec![]);
        replies.handled(1, vec![call(1)], false, None);
        assert_eq!(replies.next_batch(2), Some((2, vec![call(1)])), "the straggler is only counted");
        replies.give_back(2, vec![call(2)]);
        assert_eq!(replies.next_batch(2), Some((2, vec![call(1), call(2)])));
    }
}
