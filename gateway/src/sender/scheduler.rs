//! The sender's scheduler: plain state with time passed in (no I/O, no
//! clock), so its behaviour is tested without a network. Per chat: a
//! bounded FIFO, a pause (budget wait / 429 / backoff) and a stage (idle,
//! ready, waiting for a slot, in flight). Chats whose slot has come wait in
//! the `ready` ring, the others in a timer heap; `dispatch` hands out
//! callback answers first, then a batch of ready chats for the budget to
//! grant (one batch out at a time), at most one request in flight per chat.
//! What the budget must hear of (freezes, blocked chats) is kept as
//! `Effect`s for the scheduling task to pass on. A reply to a chat (it just
//! wrote to the bot) lifts the chat's blocked mark, here at once and in the
//! budget with its grant.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::budget::{GRANT_BATCH_MAX, Scope};
use super::job::{Dispatch, Done, Job, Lane, Outcome};
use super::{
    ATTEMPTS_MAX, BLOCKED_CHATS_MAX, CHAT_QUEUE_MAX, IN_FLIGHT_MAX, RETRY_AFTER_MAX, SendError, SenderMetrics,
};

const BACKOFF_FIRST_MS: u64 = 500;
const BACKOFF_MAX_MS: u64 = 30_000;
const SWEEP_INTERVAL_MS: u64 = 5_000;
/// Most effects waiting for the scheduling task.
const EFFECTS_MAX: usize = 4_096;

/// Something the budget must hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    /// Telegram said the chat blocked the bot: report it, mark it.
    Blocked(i64),
    /// Telegram answered 429: every sender waits this long.
    Freeze(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing queued, or waiting to be scheduled.
    Idle,
    /// In the `ready` ring.
    Ready,
    /// In the timer heap until then.
    Waiting(Instant),
    /// Asked of the budget, or one request out.
    InFlight,
}

struct Chat {
    queue: VecDeque<Job>,
    /// Waiting for the budget, paused (429) or backing off until then.
    not_before: Instant,
    stage: Stage,
}

impl Chat {
    fn new(now: Instant) -> Self {
        Self { queue: VecDeque::new(), not_before: now, stage: Stage::Idle }
    }
}

pub(super) struct Scheduler {
    queue_max: usize,
    chat_queue_max: usize,
    /// Messages accepted and not done.
    total: usize,
    callbacks: VecDeque<Job>,
    callbacks_not_before: Instant,
    chats: HashMap<i64, Chat>,
    ready: VecDeque<i64>,
    timers: BinaryHeap<Reverse<(Instant, i64)>>,
    /// Frozen (429) or the global window full until then.
    global_not_before: Instant,
    /// A batch is out for the budget to grant.
    granting: bool,
    /// Chats seen blocked, refused at `push` until then.
    blocked: HashMap<i64, Instant>,
    blocked_ttl: Duration,
    effects: Vec<Effect>,
    in_flight: usize,
    next_sweep: Instant,
    metrics: Arc<SenderMetrics>,
}

impl Scheduler {
    /// `blocked_ttl`: how long a chat seen blocked is refused at `push`.
    pub(super) fn new(queue_max: usize, blocked_ttl: Duration, metrics: Arc<SenderMetrics>, now: Instant) -> Self {
        Self {
            queue_max,
            chat_queue_max: CHAT_QUEUE_MAX.min(queue_max),
            total: 0,
            callbacks: VecDeque::new(),
            callbacks_not_before: now,
            chats: HashMap::new(),
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            global_not_before: now,
            granting: false,
            blocked: HashMap::new(),
            blocked_ttl,
            effects: Vec::new(),
            in_flight: 0,
            next_sweep: now + Duration::from_millis(SWEEP_INTERVAL_MS),
            metrics,
        }
    }

    fn set_total(&mut self, total: usize) {
        self.total = total;
        self.metrics.queued.store(u64::try_from(total).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(super) fn is_idle(&self) -> bool {
        self.total == 0 && self.in_flight == 0
    }

    fn effect(&mut self, effect: Effect) {
        if self.effects.len() < EFFECTS_MAX {
            self.effects.push(effect);
        }
    }

    /// Moves the effects gathered so far into `out`.
    pub(super) fn take_effects(&mut self, out: &mut Vec<Effect>) {
        out.append(&mut self.effects);
    }

    pub(super) fn push(&mut self, lane: Lane, job: Job, now: Instant) -> Result<(), SendError> {
        if self.total >= self.queue_max {
            return Err(SendError::Full);
        }
        match lane {
            Lane::Callback => self.callbacks.push_back(job),
            Lane::Chat(chat_id) => {
                if let Some(until) = self.blocked.get(&chat_id) {
                    // A reply: the chat just wrote to the bot, so it is not blocked.
                    if *until > now && !job.replying {
                        return Err(SendError::Blocked);
                    }
                    self.blocked.remove(&chat_id);
                }
                let chat_queue_max = self.chat_queue_max;
                let chat = self.chats.entry(chat_id).or_insert_with(|| Chat::new(now));
                if chat.queue.len() >= chat_queue_max {
                    return Err(SendError::ChatFull);
                }
                chat.queue.push_back(job);
                self.schedule(chat_id, now);
            }
        }
        self.set_total(self.total + 1);
        Ok(())
    }

    /// Puts an idle chat with queued messages in the ready ring or the timer heap.
    fn schedule(&mut self, chat_id: i64, now: Instant) {
        let Some(chat) = self.chats.get_mut(&chat_id) else { return };
        if chat.stage != Stage::Idle || chat.queue.is_empty() {
            return;
        }
        let at = chat.not_before;
        if at <= now {
            chat.stage = Stage::Ready;
            self.ready.push_back(chat_id);
        } else {
            chat.stage = Stage::Waiting(at);
            self.timers.push(Reverse((at, chat_id)));
        }
    }

    /// Hands out everything that may go at `now`: callback answers (to send
    /// at once) into `callbacks`, then, unless a batch is out already or
    /// sends are frozen, up to `GRANT_BATCH_MAX` ready chats' next messages
    /// into `chats` (for the budget to grant).
    pub(super) fn dispatch(&mut self, now: Instant, callbacks: &mut Vec<Dispatch>, chats: &mut Vec<Dispatch>) {
        while self.in_flight < IN_FLIGHT_MAX && now >= self.callbacks_not_before {
            let Some(job) = self.callbacks.pop_front() else { break };
            self.in_flight += 1;
            callbacks.push(Dispatch { lane: Lane::Callback, job });
        }
        while let Some(Reverse((at, chat_id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(chat) = self.chats.get_mut(&chat_id)
                && chat.stage == Stage::Waiting(at)
            {
                chat.stage = Stage::Ready;
                self.ready.push_back(chat_id);
            }
        }
        if self.granting || now < self.global_not_before {
            return;
        }
        let first = chats.len();
        while self.in_flight < IN_FLIGHT_MAX && chats.len() - first < GRANT_BATCH_MAX {
            let Some(chat_id) = self.ready.pop_front() else { break };
            let Some(chat) = self.chats.get_mut(&chat_id) else { continue };
            if chat.stage != Stage::Ready {
                continue;
            }
            let Some(job) = chat.queue.pop_front() else {
                chat.stage = Stage::Idle;
                continue;
            };
            chat.stage = Stage::InFlight;
            self.in_flight += 1;
            chats.push(Dispatch { lane: Lane::Chat(chat_id), job });
        }
        self.granting = chats.len() > first;
    }

    /// The budget's grant filled `chat_id`'s window until `until`: its next
    /// message is not asked for before then.
    pub(super) fn pace(&mut self, chat_id: i64, until: Instant) {
        if let Some(chat) = self.chats.get_mut(&chat_id) {
            chat.not_before = chat.not_before.max(until);
            if !chat.queue.is_empty() {
                self.metrics.budget_waits.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The budget has answered the batch (its outcomes are in).
    pub(super) fn granted(&mut self) {
        self.granting = false;
    }

    /// When `dispatch` may have something new to hand out, barring new
    /// messages and answers.
    pub(super) fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = self.next_sweep;
        if self.in_flight < IN_FLIGHT_MAX {
            if !self.callbacks.is_empty() {
                wake = wake.min(self.callbacks_not_before);
            }
            if !self.ready.is_empty() && !self.granting {
                wake = wake.min(self.global_not_before);
            }
        }
        if let Some(Reverse((at, _))) = self.timers.peek() {
            wake = wake.min(*at);
        }
        wake.max(now)
    }

    /// Applies a request's (or a grant's) outcome.
    pub(super) fn complete(&mut self, done: Done, now: Instant) {
        let Done { lane, mut job, outcome } = done;
        self.in_flight = self.in_flight.saturating_sub(1);
        let chat_id = match lane {
            Lane::Callback => return self.complete_callback(job, outcome, now),
            Lane::Chat(chat_id) => chat_id,
        };
        let mut finished = true;
        let mut retry_at = None;
        match outcome {
            Outcome::Sent => {
                self.metrics.sent.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Wait { until, scope } => {
                self.metrics.budget_waits.fetch_add(1, Ordering::Relaxed);
                finished = false;
                match scope {
                    Scope::Chat => retry_at = Some(until),
                    Scope::Global => self.global_not_before = self.global_not_before.max(until),
                }
            }
            Outcome::RetryAfter(wait) => {
                self.metrics.retried_429.fetch_add(1, Ordering::Relaxed);
                job.retries_429 += 1;
                self.freeze(wait, now);
                if job.retries_429 <= RETRY_AFTER_MAX {
                    finished = false;
                    tracing::debug!(chat_id, wait_ms = wait.as_millis(), "429: every send frozen");
                } else {
                    self.metrics.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(chat_id, "message dropped after {RETRY_AFTER_MAX} 429 answers");
                }
            }
            Outcome::Transient(detail) => {
                job.attempts += 1;
                if job.attempts < ATTEMPTS_MAX {
                    finished = false;
                    retry_at = Some(now + backoff(job.attempts));
                    tracing::debug!(chat_id, attempts = job.attempts, %detail, "send failed; retrying");
                } else {
                    self.metrics.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(chat_id, %detail, "message dropped after {ATTEMPTS_MAX} attempts");
                }
            }
            Outcome::Failed(detail) => {
                self.metrics.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(chat_id, %detail, "message refused by Telegram");
            }
            Outcome::Blocked(detail) => {
                tracing::info!(chat_id, %detail, "chat unreachable; dropping its queue");
                self.metrics.blocked.fetch_add(1, Ordering::Relaxed);
                self.metrics.blocked_marks.fetch_add(1, Ordering::Relaxed);
                self.drop_chat(chat_id, now);
                self.effect(Effect::Blocked(chat_id));
                return;
            }
            Outcome::BlockedElsewhere => {
                tracing::debug!(chat_id, "chat marked blocked in the send budget; dropping its queue");
                self.metrics.blocked_elsewhere.fetch_add(1, Ordering::Relaxed);
                self.drop_chat(chat_id, now);
                return;
            }
            Outcome::Migrated(to) => {
                tracing::info!(chat_id, to, "group migrated to a supergroup; following it");
                self.migrate(chat_id, to, job, now);
                return;
            }
        }
        if finished {
            self.set_total(self.total.saturating_sub(1));
        }
        // A chat with a request out is never swept, so the entry is there.
        let chat = self.chats.entry(chat_id).or_insert_with(|| Chat::new(now));
        chat.stage = Stage::Idle;
        if !finished {
            chat.queue.push_front(job);
        }
        if let Some(at) = retry_at {
            chat.not_before = chat.not_before.max(at);
        }
        self.schedule(chat_id, now);
    }

    fn complete_callback(&mut self, mut job: Job, outcome: Outcome, now: Instant) {
        let retry_at = match outcome {
            Outcome::Sent => {
                self.metrics.sent.fetch_add(1, Ordering::Relaxed);
                self.set_total(self.total.saturating_sub(1));
                return;
            }
            Outcome::RetryAfter(wait) => {
                self.metrics.retried_429.fetch_add(1, Ordering::Relaxed);
                job.retries_429 += 1;
                self.freeze(wait, now);
                (job.retries_429 <= RETRY_AFTER_MAX).then_some(now + wait)
            }
            Outcome::Transient(detail) => {
                job.attempts += 1;
                tracing::debug!(attempts = job.attempts, %detail, "callback answer failed");
                (job.attempts < ATTEMPTS_MAX).then(|| now + backoff(job.attempts))
            }
            // Callback answers skip the budget; a `Wait` would only come
            // from a budget asked by mistake: try again at once.
            Outcome::Wait { until, .. } => Some(until),
            Outcome::Failed(detail) | Outcome::Blocked(detail) => {
                // Typically "query is too old": the button stopped spinning anyway.
                tracing::debug!(%detail, "callback answer refused");
                None
            }
            Outcome::Migrated(_) | Outcome::BlockedElsewhere => None,
        };
        if let Some(at) = retry_at {
            self.callbacks_not_before = self.callbacks_not_before.max(at);
            self.callbacks.push_front(job);
        } else {
            self.metrics.failed.fetch_add(1, Ordering::Relaxed);
            self.set_total(self.total.saturating_sub(1));
        }
    }

    /// A 429 is bot-wide as far as the sender knows: every chat here waits,
    /// and the budget is told so that every other sender does too.
    fn freeze(&mut self, wait: Duration, now: Instant) {
        self.global_not_before = self.global_not_before.max(now + wait);
        self.metrics.budget_freezes.fetch_add(1, Ordering::Relaxed);
        self.effect(Effect::Freeze(wait));
    }

    /// Drops a blocked chat's queue (the message in hand included) and
    /// refuses new messages to it for `blocked_ttl`.
    fn drop_chat(&mut self, chat_id: i64, now: Instant) {
        let dropped = self.chats.remove(&chat_id).map_or(0, |chat| chat.queue.len());
        self.metrics.failed.fetch_add(1 + u64::try_from(dropped).unwrap_or(0), Ordering::Relaxed);
        self.set_total(self.total.saturating_sub(1 + dropped));
        if self.blocked.len() >= BLOCKED_CHATS_MAX {
            self.blocked.retain(|_, until| *until > now);
        }
        if self.blocked.len() < BLOCKED_CHATS_MAX {
            self.blocked.insert(chat_id, now + self.blocked_ttl);
        }
    }

    /// Moves the job and the rest of the old chat's queue to the supergroup.
    fn migrate(&mut self, from: i64, to: i64, mut job: Job, now: Instant) {
        let mut queue = self.chats.remove(&from).map(|chat| chat.queue).unwrap_or_default();
        job.request.retarget(to);
        queue.push_front(job);
        for job in &mut queue {
            job.request.retarget(to);
        }
        let chat = self.chats.entry(to).or_insert_with(|| Chat::new(now));
        chat.queue.extend(queue);
        self.schedule(to, now);
    }

    pub(super) fn sweep_if_due(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + Duration::from_millis(SWEEP_INTERVAL_MS);
        self.chats.retain(|_, chat| chat.stage != Stage::Idle || !chat.queue.is_empty() || chat.not_before > now);
        self.blocked.retain(|_, until| *until > now);
        // Stale timer entries of removed chats are skipped when popped; drop
        // them here too when the heap has grown well past the live chats.
        if self.timers.len() > 2 * self.chats.len() + 16 {
            let chats = &self.chats;
            self.timers.retain(|Reverse((at, chat_id))| {
                chats.get(chat_id).is_some_and(|chat| chat.stage == Stage::Waiting(*at))
            });
        }
    }
}

/// Wait before attempt `attempts + 1` after a transient failure.
fn backoff(attempts: u32) -> Duration {
    let factor = 1u64.checked_shl(attempts.saturating_sub(1)).unwrap_or(u64::MAX);
    Duration::from_millis(BACKOFF_FIRST_MS.saturating_mul(factor).min(BACKOFF_MAX_MS))
}

#[cfg(test)]
mod tests;
