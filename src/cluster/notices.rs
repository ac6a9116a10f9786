//! [`NatsNotifier`]: the active engine's notices (a resting order filled or
//! dropped, an alert fired) on the outbox, each under an id of what it is
//! about, and how far they are out. The lease stores that seq with every
//! renewal ([`Fence::advance_notices`]); the next engine publishes again the
//! notices of the log's events after it ([`Republish`]) — the outbox drops
//! those already out as duplicates — so a notice committed but not yet out
//! when its engine died still reaches the player.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actors::domain::asset::Universe;
use actors::domain::event::Stamped;
use actors::domain::ids::PlayerId;
use actors::ports::{Notice, Notifier, Store};
use tokio::sync::mpsc;
use wire::Outgoing;
use wire::subjects::OUTBOX_NOTICES;

use super::outbox::OutboxPublisher;
use crate::store::postgres::lease::Fence;
use crate::telegram::sender::notice_reply;

/// Notices (and durable marks) waiting to be published at most; past it a
/// notice is dropped, logged, and left to the next engine.
pub const NOTICES_QUEUED_MAX: usize = 100_000;
/// Tries at publishing one notice before it is left to the next engine.
const PUBLISH_ATTEMPTS: u32 = 50;
/// Events read from the log at a time when publishing notices again.
const REPUBLISH_PAGE_EVENTS: usize = 10_000;

/// What the engine hands the publishing task, in log order.
enum Queued {
    Notice {
        id: String,
        call: Box<Outgoing>,
    },
    /// Every notice of events up to this seq was queued before.
    Through(u64),
}

/// The notices an earlier holder of the lease may not have got out: those
/// of the log's events after `after`, through `through` (where the log
/// ended when this engine took over).
pub struct Republish {
    pub store: Arc<dyn Store>,
    pub after: u64,
    pub through: u64,
}

impl Republish {
    /// Publishes the notices of the events in range again; whether all
    /// went out.
    async fn run(self, publisher: OutboxPublisher, universe: Arc<Universe>) -> bool {
        let (mut after, mut published) = (self.after, 0_u64);
        while after < self.through {
            let page = match self.store.events_after(after, REPUBLISH_PAGE_EVENTS).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, after, "the log could not be read for notices owed; left to the next engine");
                    return false;
                }
            };
            let Some(last) = page.last().map(|stamped| stamped.seq) else { break };
            let owed: Vec<Stamped> = page.into_iter().filter(|stamped| stamped.seq <= self.through).collect();
            for (player, notice) in Notice::of_events(&owed) {
                let Some((id, call)) = outgoing(player, &notice, &universe) else { continue };
                if !publisher.publish(OUTBOX_NOTICES, &id, &[call], PUBLISH_ATTEMPTS).await {
                    tracing::warn!(id, "a notice owed could not be published; left to the next engine");
                    return false;
                }
                published += 1;
            }
            after = last;
        }
        tracing::info!(
            after = self.after,
            through = self.through,
            published,
            "notices of the last holder's tail published again"
        );
        true
    }
}

/// How far notices are out, from publishes that end in any order: each
/// queued notice gets a number, each durable mark remembers how many were
/// queued before it, and a mark's seq is out once every notice up to its
/// count is.
#[derive(Debug, Default)]
struct Watermark {
    /// Notices queued so far (numbered from 1).
    queued: u64,
    /// Every notice up to this number is out.
    out_through: u64,
    /// Numbers out beyond `out_through`.
    out: BTreeSet<u64>,
    /// Marks not yet passed: (notices queued before, seq).
    marks: VecDeque<(u64, u64)>,
    /// A notice was given up: no mark passes any more (the next engine
    /// publishes from the last one that did).
    stuck: bool,
}

impl Watermark {
    /// Numbers the next notice.
    fn queue(&mut self) -> u64 {
        self.queued += 1;
        self.queued
    }

    /// Every notice of events up to `seq` was queued.
    fn mark(&mut self, seq: u64) {
        match self.marks.back_mut() {
            Some((count, last)) if *count == self.queued => *last = (*last).max(seq),
            _ => self.marks.push_back((self.queued, seq)),
        }
    }

    /// Notice `number` went out (`false`: it was given up).
    fn done(&mut self, number: u64, out: bool) {
        self.stuck |= !out;
        self.out.insert(number);
        while self.out.remove(&(self.out_through + 1)) {
            self.out_through += 1;
        }
    }

    /// The newest seq whose notices are all out, when a mark passed.
    fn passed(&mut self) -> Option<u64> {
        if self.stuck {
            return None;
        }
        let mut passed = None;
        while let Some(&(_, seq)) = self.marks.front().filter(|(count, _)| *count <= self.out_through) {
            passed = Some(seq);
            self.marks.pop_front();
        }
        passed
    }
}

/// The notice as an outbox call to the player's private chat, with its id;
/// `None` for players outside Telegram.
fn outgoing(player: PlayerId, notice: &Notice, universe: &Universe) -> Option<(String, Outgoing)> {
    if player.is_local() || player.0 == 0 {
        return None;
    }
    let id = match notice {
        Notice::OrderFilled(trade) => format!("n:fill:{}", trade.id.0),
        Notice::OrderDropped { order } => format!("n:drop:{}", order.0),
        Notice::AlertFired { alert, .. } => format!("n:alert:{}", alert.id.0),
    };
    Some((id, Outgoing::Text { chat_id: player.0, reply: notice_reply(notice, universe) }))
}

/// The engine's `Notifier` in a split deployment.
pub struct NatsNotifier {
    queue: mpsc::Sender<Queued>,
    universe: Arc<Universe>,
    /// A notice was dropped for want of room: the lease's mark stays where it is.
    dropped: Arc<AtomicBool>,
}

impl NatsNotifier {
    /// A notifier naming assets from `universe`, publishing through
    /// `publisher` from a task of the current runtime and telling `fence`
    /// how far notices are out; it first publishes again what `republish`
    /// names.
    #[must_use]
    pub fn start(
        publisher: OutboxPublisher,
        universe: Arc<Universe>,
        fence: Arc<Fence>,
        republish: Option<Republish>,
    ) -> Self {
        let (queue, mut queued) = mpsc::channel::<Queued>(NOTICES_QUEUED_MAX);
        let (done, mut finished) = mpsc::unbounded_channel::<(u64, bool)>();
        let dropped = Arc::new(AtomicBool::new(false));
        let (task_universe, task_dropped) = (Arc::clone(&universe), Arc::clone(&dropped));
        if let Some(republish) = &republish {
            // Out as far as the last holder said, until the tail is out too:
            // set before the engine starts, so its first renewal keeps it
            // (a fence at 0 would store "not known").
            fence.advance_notices(republish.after);
        }
        tokio::spawn(async move {
            let mut watermark = Watermark::default();
            if let Some(republish) = republish {
                let (number, through) = (watermark.queue(), republish.through);
                let (publisher, universe, done) = (publisher.clone(), Arc::clone(&task_universe), done.clone());
                tokio::spawn(async move {
                    let _ = done.send((number, republish.run(publisher, universe).await));
                });
                watermark.mark(through);
            }
            loop {
                tokio::select! {
                    next = queued.recv() => match next {
                        Some(Queued::Notice { id, call }) => {
                            let (number, publisher, done) = (watermark.queue(), publisher.clone(), done.clone());
                            tokio::spawn(async move {
                                let out = publisher.publish(OUTBOX_NOTICES, &id, &[*call], PUBLISH_ATTEMPTS).await;
                                if !out {
                                    tracing::warn!(id, "notice not published; left to the next engine");
                                }
                                let _ = done.send((number, out));
                            });
                        }
                        Some(Queued::Through(seq)) => watermark.mark(seq),
                        None => return,
                    },
                    Some((number, out)) = finished.recv() => watermark.done(number, out),
                }
                watermark.stuck |= task_dropped.load(Ordering::Relaxed);
                if let Some(seq) = watermark.passed() {
                    fence.advance_notices(seq);
                }
            }
        });
        Self { queue, universe, dropped }
    }
}

impl Notifier for NatsNotifier {
    fn notify(&self, player: PlayerId, notice: Notice) {
        let Some((id, call)) = outgoing(player, &notice, &self.universe) else { return };
        if self.queue.try_send(Queued::Notice { id, call: Box::new(call) }).is_err() {
            self.dropped.store(true, Ordering::Relaxed);
            tracing::warn!(player_id = player.0, "notice queue full; notice left to the next engine");
        }
    }

    fn durable_through(&self, seq: u64) {
        // A mark that finds no room is covered by the next one.
        let _ = self.queue.try_send(Queued::Through(seq));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_mark_passes_once_every_notice_before_it_is_out() {
        let mut watermark = Watermark::default();
        watermark.mark(5);
        assert_eq!(watermark.passed(), Some(5), "nothing was owed before it");
        let (first, second) = (watermark.queue(), watermark.queue());
        watermark.mark(9);
        let third = watermark.queue();
        watermark.mark(12);
        watermark.mark(14);
        watermark.done(second, true);
        assert_eq!(watermark.passed(), None, "the first is still out there");
        watermark.done(first, true);
        assert_eq!(watermark.passed(), Some(9));
        watermark.done(third, true);
        assert_eq!(watermark.passed(), Some(14), "marks with nothing between them pass together");
    }

    #[test]
    fn a_notice_given_up_holds_every_later_mark() {
        let mut watermark = Watermark::default();
        let first = watermark.queue();
        watermark.mark(3);
        watermark.done(first, false);
        watermark.mark(8);
        assert_eq!(watermark.passed(), None);
    }

    proptest! {
        /// Whatever order publishes end in, a mark passes exactly when all
        /// notices queued before it are out, and passed seqs only grow.
        #[test]
        fn passed_marks_never_run_ahead_of_the_notices(
            steps in proptest::collection::vec(0u8..3, 1..200),
            finish_order in proptest::collection::vec(any::<prop::sample::Index>(), 0..200),
        ) {
            let mut watermark = Watermark::default();
            let (mut seq, mut pending, mut marks) = (0_u64, Vec::new(), Vec::new());
            let mut out: BTreeSet<u64> = BTreeSet::new();
            let mut last_passed = 0;
            let mut finishing = finish_order.into_iter();
            for step in steps {
                match step {
                    0 => pending.push(watermark.queue()),
                    1 => {
                        seq += 1;
                        watermark.mark(seq);
                        marks.push((watermark.queued, seq));
                    }
                    _ => {
                        if let Some(index) = finishing.next().filter(|_| !pending.is_empty()) {
                            let number = pending.swap_remove(index.index(pending.len()));
                            watermark.done(number, true);
                            out.insert(number);
                        }
                    }
                }
                if let Some(passed) = watermark.passed() {
                    prop_assert!(passed > last_passed);
                    let (count, _) = marks.iter().find(|(_, s)| *s == passed).copied().unwrap();
                    prop_assert!((1..=count).all(|number| out.contains(&number)), "mark {passed} passed early");
                    last_passed = passed;
                }
            }
            let all_out = |count: u64| (1..=count).all(|number| out.contains(&number));
            let due = marks.iter().rev().find(|(count, _)| all_out(*count)).map_or(0, |(_, seq)| *seq);
            prop_assert_eq!(last_passed, due, "every mark whose notices are out has passed");
        }
    }
}
