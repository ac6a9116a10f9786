//! The sender's scheduler: plain state with time passed in (no I/O, no
//! clock), so its behaviour is tested without a network. Per chat: a
//! bounded FIFO, a sliding-window limit, a pause (429 / backoff) and a stage
//! (idle, ready, waiting for a slot, in flight). Chats whose slot has come
//! wait in the `ready` ring, the others in a timer heap; `dispatch` hands out
//! callback answers first, then ready chats in turn while the global window
//! allows, at most one request in flight per chat.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use teloxide_core::types::{InlineKeyboardButton, InlineKeyboardMarkup, InputFile, WebAppInfo};

use super::{
    ATTEMPTS_MAX, BLOCKED_CHATS_MAX, BLOCKED_TTL_MS, CHAT_QUEUE_MAX, IN_FLIGHT_MAX, Outgoing, RETRY_AFTER_MAX,
    RateLimits, SendError, SenderMetrics,
};
use wire::{Button, InvoiceSpec};

const BACKOFF_FIRST_MS: u64 = 500;
const BACKOFF_MAX_MS: u64 = 30_000;
const SWEEP_INTERVAL_MS: u64 = 5_000;
/// 429s for this many different chats within `FLOOD_WINDOW_MS` mean a
/// bot-wide flood limit: then everything pauses, not only those chats.
const FLOOD_CHATS_MIN: usize = 2;
const FLOOD_WINDOW_MS: u64 = 1_000;
const GROUP_SPAN_MS: u64 = 60_000;
const SECOND_MS: u64 = 1_000;

/// A request's result, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Sent,
    RetryAfter(Duration),
    /// Network trouble or a Telegram server error: worth another attempt.
    Transient(String),
    /// The chat blocked the bot, or is gone.
    Blocked(String),
    /// The group became a supergroup with this id.
    Migrated(i64),
    /// Refused for good (bad request).
    Failed(String),
}

pub(super) struct Done {
    pub(super) lane: Lane,
    pub(super) job: Job,
    pub(super) outcome: Outcome,
}

/// A message ready to be sent: keyboard built once, photo shared across retries.
#[derive(Debug, Clone)]
pub(super) enum Prepared {
    Text {
        chat_id: i64,
        text: String,
        markup: Option<InlineKeyboardMarkup>,
    },
    Photo {
        chat_id: i64,
        photo: InputFile,
        caption: String,
        markup: Option<InlineKeyboardMarkup>,
    },
    Edit {
        chat_id: i64,
        message_id: i32,
        text: String,
        markup: Option<InlineKeyboardMarkup>,
    },
    /// `editMessageMedia` with a new photo.
    EditPhoto {
        chat_id: i64,
        message_id: i32,
        photo: InputFile,
        caption: String,
        markup: Option<InlineKeyboardMarkup>,
    },
    Answer {
        callback_query_id: String,
        text: Option<String>,
    },
    /// `sendInvoice` in Telegram Stars.
    Invoice {
        chat_id: i64,
        invoice: InvoiceSpec,
    },
    /// `answerPreCheckoutQuery`: ok without an error message.
    PreCheckout {
        pre_checkout_query_id: String,
        error: Option<String>,
    },
}

impl Prepared {
    fn retarget(&mut self, to: i64) {
        match self {
            Self::Text { chat_id, .. }
            | Self::Photo { chat_id, .. }
            | Self::Edit { chat_id, .. }
            | Self::EditPhoto { chat_id, .. }
            | Self::Invoice { chat_id, .. } => *chat_id = to,
            Self::Answer { .. } | Self::PreCheckout { .. } => {}
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) request: Prepared,
    /// Transient failures so far.
    attempts: u32,
    /// 429 answers so far.
    retries_429: u32,
}

impl Job {
    pub(super) fn prepare(message: Outgoing) -> (Lane, Self) {
        let (lane, request) = match message {
            Outgoing::Text { chat_id, reply } => {
                let markup = keyboard(&reply.buttons);
                (Lane::Chat(chat_id), Prepared::Text { chat_id, text: reply.text, markup })
            }
            Outgoing::Photo { chat_id, png, caption } => {
                let markup = keyboard(&caption.buttons);
                let photo = InputFile::memory(png).file_name("chart.png");
                (Lane::Chat(chat_id), Prepared::Photo { chat_id, photo, caption: caption.text, markup })
            }
            Outgoing::Edit { chat_id, message_id, reply } => {
                let markup = keyboard(&reply.buttons);
                (Lane::Chat(chat_id), Prepared::Edit { chat_id, message_id, text: reply.text, markup })
            }
            Outgoing::EditPhoto { chat_id, message_id, png, caption } => {
                let markup = keyboard(&caption.buttons);
                let photo = InputFile::memory(png).file_name("chart.png");
                (Lane::Chat(chat_id), Prepared::EditPhoto { chat_id, message_id, photo, caption: caption.text, markup })
            }
            Outgoing::AnswerCallback { callback_query_id, text } => {
                (Lane::Callback, Prepared::Answer { callback_query_id, text })
            }
            Outgoing::Invoice { chat_id, invoice } => (Lane::Chat(chat_id), Prepared::Invoice { chat_id, invoice }),
            // Telegram gives a checkout 10 s: it goes out with the callback answers.
            Outgoing::AnswerPreCheckout { pre_checkout_query_id, error } => {
                (Lane::Callback, Prepared::PreCheckout { pre_checkout_query_id, error })
            }
        };
        (lane, Self { request, attempts: 0, retries_429: 0 })
    }
}

fn keyboard(rows: &[Vec<Button>]) -> Option<InlineKeyboardMarkup> {
    if rows.iter().all(Vec::is_empty) {
        return None;
    }
    Some(InlineKeyboardMarkup::new(rows.iter().filter(|row| !row.is_empty()).map(|row| {
        row.iter().map(|button| match button.web_app.as_deref().and_then(|url| url.parse().ok()) {
            Some(url) => InlineKeyboardButton::web_app(button.text.clone(), WebAppInfo { url }),
            None => InlineKeyboardButton::callback(button.text.clone(), button.callback_data()),
        })
    })))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    Callback,
    Chat(i64),
}

pub(super) struct Dispatch {
    pub(super) lane: Lane,
    pub(super) job: Job,
}

/// At most `limit` sends in any window of `span`: the last `limit` send
/// times are kept.
#[derive(Debug)]
struct Window {
    limit: usize,
    span: Duration,
    sends: VecDeque<Instant>,
}

impl Window {
    fn new(limit: u32, span_ms: u64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
        Self { limit, span: Duration::from_millis(span_ms), sends: VecDeque::new() }
    }

    /// The earliest time (not before `now`) another send fits.
    fn next_free(&self, now: Instant) -> Instant {
        match self.sends.front() {
            Some(oldest) if self.sends.len() >= self.limit => (*oldest + self.span).max(now),
            _ => now,
        }
    }

    fn record(&mut self, at: Instant) {
        self.sends.push_back(at);
        while self.sends.len() > self.limit {
            self.sends.pop_front();
        }
    }

    /// Whether a send within the last span still counts.
    fn busy(&self, now: Instant) -> bool {
        self.sends.back().is_some_and(|last| *last + self.span > now)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing queued, or waiting to be scheduled.
    Idle,
    /// In the `ready` ring.
    Ready,
    /// In the timer heap until then.
    Waiting(Instant),
    /// One request out.
    InFlight,
}

struct Chat {
    queue: VecDeque<Job>,
    window: Window,
    /// Paused (429) or backing off until then.
    not_before: Instant,
    stage: Stage,
}

impl Chat {
    fn new(window: Window, now: Instant) -> Self {
        Self { queue: VecDeque::new(), window, not_before: now, stage: Stage::Idle }
    }
}

pub(super) struct Scheduler {
    limits: RateLimits,
    queue_max: usize,
    chat_queue_max: usize,
    /// Messages accepted and not done.
    total: usize,
    callbacks: VecDeque<Job>,
    callbacks_not_before: Instant,
    chats: HashMap<i64, Chat>,
    ready: VecDeque<i64>,
    timers: BinaryHeap<Reverse<(Instant, i64)>>,
    global: Window,
    global_not_before: Instant,
    recent_429: VecDeque<(Instant, i64)>,
    blocked: HashMap<i64, Instant>,
    in_flight: usize,
    next_sweep: Instant,
    metrics: Arc<SenderMetrics>,
}

impl Scheduler {
    pub(super) fn new(limits: RateLimits, queue_max: usize, metrics: Arc<SenderMetrics>, now: Instant) -> Self {
        Self {
            limits,
            queue_max,
            chat_queue_max: CHAT_QUEUE_MAX.min(queue_max),
            total: 0,
            callbacks: VecDeque::new(),
            callbacks_not_before: now,
            chats: HashMap::new(),
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            global: Window::new(limits.global_per_sec, SECOND_MS),
            global_not_before: now,
            recent_429: VecDeque::new(),
            blocked: HashMap::new(),
            in_flight: 0,
            next_sweep: now + Duration::from_millis(SWEEP_INTERVAL_MS),
            metrics,
        }
    }

    fn chat_window(&self, chat_id: i64) -> Window {
        if chat_id > 0 {
            Window::new(self.limits.chat_per_sec, SECOND_MS)
        } else {
            Window::new(self.limits.group_per_min, GROUP_SPAN_MS)
        }
    }

    fn set_total(&mut self, total: usize) {
        self.total = total;
        self.metrics.queued.store(u64::try_from(total).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(super) fn is_idle(&self) -> bool {
        self.total == 0 && self.in_flight == 0
    }

    /// Forgets that `chat_id` blocked the bot.
    pub(super) fn unblock(&mut self, chat_id: i64) {
        self.blocked.remove(&chat_id);
    }

    pub(super) fn push(&mut self, lane: Lane, job: Job, now: Instant) -> Result<(), SendError> {
        if self.total >= self.queue_max {
            return Err(SendError::Full);
        }
        match lane {
            Lane::Callback => self.callbacks.push_back(job),
            Lane::Chat(chat_id) => {
                if let Some(until) = self.blocked.get(&chat_id) {
                    if *until > now {
                        return Err(SendError::Blocked);
                    }
                    self.blocked.remove(&chat_id);
                }
                let window = self.chat_window(chat_id);
                let chat_queue_max = self.chat_queue_max;
                let chat = self.chats.entry(chat_id).or_insert_with(|| Chat::new(window, now));
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
        let at = chat.window.next_free(now).max(chat.not_before);
        if at <= now {
            chat.stage = Stage::Ready;
            self.ready.push_back(chat_id);
        } else {
            chat.stage = Stage::Waiting(at);
            self.timers.push(Reverse((at, chat_id)));
        }
    }

    /// Hands out everything that may be sent at `now`: callback answers
    /// first, then ready chats in turn while the global limit allows.
    pub(super) fn dispatch(&mut self, now: Instant, out: &mut Vec<Dispatch>) {
        while self.in_flight < IN_FLIGHT_MAX && now >= self.callbacks_not_before {
            let Some(job) = self.callbacks.pop_front() else { break };
            self.in_flight += 1;
            out.push(Dispatch { lane: Lane::Callback, job });
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
        while self.in_flight < IN_FLIGHT_MAX && now >= self.global_not_before && self.global.next_free(now) <= now {
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
            chat.window.record(now);
            self.global.record(now);
            self.in_flight += 1;
            out.push(Dispatch { lane: Lane::Chat(chat_id), job });
        }
    }

    /// When `dispatch` may have something new to hand out, barring new messages.
    pub(super) fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = self.next_sweep;
        if self.in_flight < IN_FLIGHT_MAX {
            if !self.callbacks.is_empty() {
                wake = wake.min(self.callbacks_not_before);
            }
            if !self.ready.is_empty() {
                wake = wake.min(self.global.next_free(now).max(self.global_not_before));
            }
        }
        if let Some(Reverse((at, _))) = self.timers.peek() {
            wake = wake.min(*at);
        }
        wake.max(now)
    }

    /// Applies a request's outcome; returns the chat to report as blocked.
    pub(super) fn complete(&mut self, done: Done, now: Instant) -> Option<i64> {
        let Done { lane, mut job, outcome } = done;
        self.in_flight = self.in_flight.saturating_sub(1);
        let chat_id = match lane {
            Lane::Callback => {
                self.complete_callback(job, outcome, now);
                return None;
            }
            Lane::Chat(chat_id) => chat_id,
        };
        let mut finished = true;
        let mut retry_at = None;
        match outcome {
            Outcome::Sent => {
                self.metrics.sent.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::RetryAfter(wait) => {
                self.metrics.retried_429.fetch_add(1, Ordering::Relaxed);
                job.retries_429 += 1;
                if job.retries_429 <= RETRY_AFTER_MAX {
                    finished = false;
                    retry_at = Some(now + wait);
                    self.note_429(chat_id, now + wait, now);
                    tracing::debug!(chat_id, wait_ms = wait.as_millis(), "429: chat paused");
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
                let dropped = self.chats.remove(&chat_id).map_or(0, |chat| chat.queue.len());
                self.metrics.failed.fetch_add(1 + u64::try_from(dropped).unwrap_or(0), Ordering::Relaxed);
                self.set_total(self.total.saturating_sub(1 + dropped));
                self.mark_blocked(chat_id, now);
                return Some(chat_id);
            }
            Outcome::Migrated(to) => {
                tracing::info!(chat_id, to, "group migrated to a supergroup; following it");
                self.migrate(chat_id, to, job, now);
                return None;
            }
        }
        if finished {
            self.set_total(self.total.saturating_sub(1));
        }
        // A chat with a request out is never swept, so the entry is there.
        let window = self.chat_window(chat_id);
        let chat = self.chats.entry(chat_id).or_insert_with(|| Chat::new(window, now));
        chat.stage = Stage::Idle;
        if !finished {
            chat.queue.push_front(job);
        }
        if let Some(at) = retry_at {
            chat.not_before = chat.not_before.max(at);
        }
        self.schedule(chat_id, now);
        None
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
                // No chat to blame: the limit is bot-wide.
                self.global_not_before = self.global_not_before.max(now + wait);
                (job.retries_429 <= RETRY_AFTER_MAX).then_some(now + wait)
            }
            Outcome::Transient(detail) => {
                job.attempts += 1;
                tracing::debug!(attempts = job.attempts, %detail, "callback answer failed");
                (job.attempts < ATTEMPTS_MAX).then(|| now + backoff(job.attempts))
            }
            Outcome::Failed(detail) | Outcome::Blocked(detail) => {
                // Typically "query is too old": the button stopped spinning anyway.
                tracing::debug!(%detail, "callback answer refused");
                None
            }
            Outcome::Migrated(_) => None,
        };
        if let Some(at) = retry_at {
            self.callbacks_not_before = self.callbacks_not_before.max(at);
            self.callbacks.push_front(job);
        } else {
            self.metrics.failed.fetch_add(1, Ordering::Relaxed);
            self.set_total(self.total.saturating_sub(1));
        }
    }

    /// Pauses everything when several chats hit 429 at once (a bot-wide flood limit).
    fn note_429(&mut self, chat_id: i64, until: Instant, now: Instant) {
        let window = Duration::from_millis(FLOOD_WINDOW_MS);
        while self.recent_429.front().is_some_and(|(at, _)| *at + window <= now) {
            self.recent_429.pop_front();
        }
        if !self.recent_429.iter().any(|(_, chat)| *chat == chat_id) {
            self.recent_429.push_back((now, chat_id));
        }
        if self.recent_429.len() >= FLOOD_CHATS_MIN {
            tracing::warn!(wait_ms = (until - now).as_millis(), "429 across chats: pausing all sends");
            self.global_not_before = self.global_not_before.max(until);
        }
    }

    fn mark_blocked(&mut self, chat_id: i64, now: Instant) {
        if self.blocked.len() >= BLOCKED_CHATS_MAX {
            self.blocked.retain(|_, until| *until > now);
        }
        if self.blocked.len() < BLOCKED_CHATS_MAX {
            self.blocked.insert(chat_id, now + Duration::from_millis(BLOCKED_TTL_MS));
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
        let window = self.chat_window(to);
        let chat = self.chats.entry(to).or_insert_with(|| Chat::new(window, now));
        chat.queue.extend(queue);
        self.schedule(to, now);
    }

    pub(super) fn sweep_if_due(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + Duration::from_millis(SWEEP_INTERVAL_MS);
        self.chats.retain(|_, chat| {
            chat.stage != Stage::Idle || !chat.queue.is_empty() || chat.window.busy(now) || chat.not_before > now
        });
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
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;
    use wire::Reply;

    fn limits(global_per_sec: u32, chat_per_sec: u32, group_per_min: u32) -> RateLimits {
        RateLimits { global_per_sec, chat_per_sec, group_per_min }
    }

    fn scheduler(limits: RateLimits, queue_max: usize, now: Instant) -> Scheduler {
        Scheduler::new(limits, queue_max, Arc::new(SenderMetrics::default()), now)
    }

    fn text(chat_id: i64, body: &str) -> (Lane, Job) {
        Job::prepare(Outgoing::Text { chat_id, reply: Reply::text(body) })
    }

    fn push_text(scheduler: &mut Scheduler, chat_id: i64, body: &str, now: Instant) -> Result<(), SendError> {
        let (lane, job) = text(chat_id, body);
        scheduler.push(lane, job, now)
    }

    fn dispatch(scheduler: &mut Scheduler, now: Instant) -> Vec<Dispatch> {
        let mut out = Vec::new();
        scheduler.dispatch(now, &mut out);
        out
    }

    fn body(dispatch: &Dispatch) -> &str {
        match &dispatch.job.request {
            Prepared::Text { text, .. } | Prepared::Edit { text, .. } => text,
            Prepared::Photo { caption, .. } | Prepared::EditPhoto { caption, .. } => caption,
            Prepared::Answer { callback_query_id, .. } => callback_query_id,
            Prepared::Invoice { invoice, .. } => &invoice.title,
            Prepared::PreCheckout { pre_checkout_query_id, .. } => pre_checkout_query_id,
        }
    }

    fn finish(scheduler: &mut Scheduler, dispatch: Dispatch, outcome: Outcome, now: Instant) -> Option<i64> {
        scheduler.complete(Done { lane: dispatch.lane, job: dispatch.job, outcome }, now)
    }

    /// Dispatches and completes everything sendable at `now`; returns the bodies sent.
    fn send_all_at(scheduler: &mut Scheduler, now: Instant) -> Vec<String> {
        let mut sent = Vec::new();
        loop {
            let batch = dispatch(scheduler, now);
            if batch.is_empty() {
                return sent;
            }
            for dispatch in batch {
                sent.push(body(&dispatch).to_owned());
                finish(scheduler, dispatch, Outcome::Sent, now);
            }
        }
    }

    const fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn window_allows_limit_sends_per_span() {
        let t0 = Instant::now();
        let mut window = Window::new(2, 1_000);
        assert_eq!(window.next_free(t0), t0);
        window.record(t0);
        window.record(t0 + ms(100));
        assert_eq!(window.next_free(t0 + ms(200)), t0 + ms(1_000));
        window.record(t0 + ms(1_000));
        assert_eq!(window.next_free(t0 + ms(1_000)), t0 + ms(1_100));
        assert!(window.busy(t0 + ms(1_999)));
        assert!(!window.busy(t0 + ms(2_000)));
    }

    #[test]
    fn private_chat_gets_one_message_per_second_in_order() {
        let t0 = Instant::now();
        let mut s = scheduler(RateLimits::default(), 100, t0);
        for i in 0..3 {
            push_text(&mut s, 7, &format!("m{i}"), t0).unwrap();
        }
        assert_eq!(send_all_at(&mut s, t0), ["m0"]);
        assert_eq!(s.next_wake(t0), t0 + ms(1_000));
        assert!(send_all_at(&mut s, t0 + ms(999)).is_empty());
        assert_eq!(send_all_at(&mut s, t0 + ms(1_000)), ["m1"]);
        assert_eq!(send_all_at(&mut s, t0 + ms(2_000)), ["m2"]);
        assert_eq!(s.total, 0);
        assert_eq!(s.metrics.sent.load(Ordering::Relaxed), 3);
        assert_eq!(s.metrics.queued.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn group_gets_its_per_minute_budget_then_waits() {
        let t0 = Instant::now();
        let mut s = scheduler(limits(30, 1, 3), 100, t0);
        for i in 0..5 {
            push_text(&mut s, -42, &format!("g{i}"), t0).unwrap();
        }
        assert_eq!(send_all_at(&mut s, t0), ["g0", "g1", "g2"]);
        assert!(send_all_at(&mut s, t0 + ms(59_999)).is_empty());
        assert_eq!(send_all_at(&mut s, t0 + ms(60_000)), ["g3", "g4"]);
    }

    #[test]
    fn a_waiting_chat_does_not_hold_up_others() {
        let t0 = Instant::now();
        let mut s = scheduler(RateLimits::default(), 100, t0);
        for i in 0..3 {
            push_text(&mut s, 1, &format!("a{i}"), t0).unwrap();
        }
        push_text(&mut s, 2, "b0", t0).unwrap();
        push_text(&mut s, -3, "c0", t0).unwrap();
        assert_eq!(send_all_at(&mut s, t0), ["a0", "b0", "c0"]);
        // Later arrivals for other chats go at once while chat 1 waits.
        push_text(&mut s, 4, "d0", t0 + ms(10)).unwrap();
        assert_eq!(send_all_at(&mut s, t0 + ms(10)), ["d0"]);
        assert_eq!(send_all_at(&mut s, t0 + ms(1_000)), ["a1"]);
    }

    #[test]
    fn one_request_in_flight_per_chat() {
        let t0 = Instant::now();
        let mut s = scheduler(limits(30, 10, 20), 100, t0);
        push_text(&mut s, 1, "a0", t0).unwrap();
        push_text(&mut s, 1, "a1", t0).unwrap();
        let first = dispatch(&mut s, t0);
        assert_eq!(first.len(), 1);
        assert!(dispatch(&mut s, t0 + ms(500)).is_empty(), "second message must wait for the first's answer");
        for d in first {
            finish(&mut s, d, Outcome::Sent, t0 + ms(500));
        }
        assert_eq!(send_all_at(&mut s, t0 + ms(500)), ["a1"]);
    }

    #[test]
    fn global_limit_spreads_a_burst_over_chats() {
        let t0 = Instant::now();
        let mut s = scheduler(limits(2, 1, 20), 100, t0);
        for chat in 1..=5 {
            push_text(&mut s, chat, &format!("c{chat}"), t0).unwrap();
        }
        assert_eq!(send_all_at(&mut s, t0), ["c1", "c2"]);
        assert_eq!(s.next_wake(t0), t0 + ms(1_000));
        assert_eq!(send_all_at(&mut s, t0 + ms(1_000)), ["c3", "c4"]);
        assert_eq!(send_all_at(&mut s, t0 + ms(2_000)), ["c5"]);
    }

    #[test]
    fn callback_answers_go_first_and_ignore_chat_limits() {
        let t0 = Instant::now();
        let mut s = scheduler(limits(1, 1, 20), 100, t0);
        push_text(&mut s, 1, "a0", t0).unwrap();
        push_text(&mut s, 2, "b0", t0).unwrap();
        for id in ["q1", "q2"] {
            let (lane, job) = Job::prepare(Outgoing::AnswerCallback { callback_query_id: id.to_owned(), text: None });
            s.push(lane, job, t0).unwrap();
        }
        assert_eq!(send_all_at(&mut s, t0), ["q1", "q2", "a0"]);
        assert_eq!(send_all_at(&mut s, t0 + ms(1_000)), ["b0"]);
    }

    #[test]
    fn checkout_answers_jump_the_queue_and_an_invoice_follows_its_text() {
        let t0 = Instant::now();
        let mut s = scheduler(limits(10, 1, 20), 100, t0);
        push_text(&mut s, 1, "premium", t0).unwrap();
        let invoice =
            InvoiceSpec { title: "inv".into(), description: "d".into(), payload: "premium".into(), stars: 50 };
        let (lane, job) = Job::prepare(Outgoing::Invoice { chat_id: 1, invoice });
        s.push(lane, job, t0).unwrap();
        let answer = Outgoing::AnswerPreCheckout { pre_checkout_query_id: "pcq".into(), error: None };
        let (lane, job) = Job::prepare(answer);
        s.push(lane, job, t0).unwrap();
        assert_eq!(send_all_at(&mut s, t0), ["pcq", "premium"]);
        assert_eq!(send_all_at(&mut s, t0 + ms(1_000)), ["inv"]);
    }

    #[test]
    fn retry_after_pauses_the_chat_and_resends_the_same_message() {
        let t0 = Instant::now();
        let mut s = scheduler(RateLimits::default(), 100, t0);
        push_text(&mut s, 1, "a0", t0).unwrap();
        push_text(&mut s, 2, "b0", t0).unwrap();
        let batch = dispatch(&mut s, t0);
        let mut batch = batch.into_iter();
        let a = batch.next().unwrap();
        finish(&mut s, a, Outcome::RetryAfter(ms(5_000)), t0 + ms(10));
        for d in batch {
            finish(&mut s, d, Outcome::Sent, t0 + ms(10));
        }
        assert_eq!(s.total, 1);
        assert_eq!(s.metrics.retried_429.load(Ordering::Relaxed), 1);
        // Only the one chat is paused.
        push_text(&mut s, 3, "c0", t0 + ms(20)).unwrap();
        assert_eq!(send_all_at(&mut s, t0 + ms(20)), ["c0"]);
        assert!(send_all_at(&mut s, t0 + ms(5_000)).is_empty());
        assert_eq!(send_all_at(&mut s, t0 + ms(5_010)), ["a0"]);
        assert_eq!(s.total, 0);
    }

    #[test]
    fn retry_after_for_several_chats_pauses_everything() {
        let t0 = Instant::now();
        let mut s = scheduler(RateLimits::default(), 100, t0);
        push_text(&mut s, 1, "a0", t0).unwrap();
        push_text(&mut s, 2, "b0", t0).unwrap();
        for d in dispatch(&mut s, t0) {
            finish(&mut s, d, Outcome::RetryAfter(ms(3_000)), t0 + ms(10));
        }
        push_text(&mut s, 3, "c0", t0 + ms(20)).unwrap();
        assert!(send_all_at(&mut s, t0 + ms(20)).is_empty(), "a flood pause holds every chat");
        assert_eq!(send_all_at(&mut s, t0 + ms(3_010)), ["c0", "a0", "b0"]);
    }

    #[test]
    fn blocked_chat_is_reported_once_and_its_queue_dropped() {
        let t0 = Instant::now();
        let mut s = scheduler(RateLimits::default(), 100, t0);
        for i in 0..3 {
            push_text(&mut s, 9, &format!("m{i}"), t0).unwrap();
        }
        push_text(&mut s, 10, "other", t0).unwrap();
        let mut reported = Vec::new();
        for d in dispatch(&mut s, t0) {
            let outcome = if d.lane == Lane::Chat(9) { Outcome::Blocked("403".into()) } else { Outcome::Sent };
            reported.extend(finish(&mut s, d, outcome, t0 + ms(10)));
        }
        assert_eq!(reported, [9]);
        assert_eq!(s.total, 0);
        assert_eq!(s.metrics.blocked.load(Ordering::Relaxed), 1);
        assert_eq!(s.metrics.failed.load(Ordering::Relaxed), 3);
        assert_eq!(push_text(&mut s, 9, "later", t0 + ms(20)), Err(SendError::Blocked));
        assert!(send_all_at(&mut s, t0 + ms(5_000)).is_empty());
        // The mark expires (`SenderHandle::unblock` lifts it at once).
        assert_eq!(push_text(&mut s, 9, "back", t0 + ms(BLOCKED_TTL_MS + 10)), Ok(()));
    }

    #[test]
    fn transient_failures_back_off_then_give_up() {
        let t0 = Instant::now();
        let mut s = scheduler(limits(30, 100, 20), 100, t0);
        push_text(&mut s, 1, "a0", t0).unwrap();
        let mut now = t0;
        for attempt in 1..=ATTEMPTS_MAX {
            let batch = dispatch(&mut s, now);
            assert_eq!(batch.len(), 1, "attempt {attempt}");
            for d in batch {
                finish(&mut s, d, Outcome::Transient("connection reset".into()), now);
            }
            assert!(dispatch(&mut s, now).is_empty(), "no retry without backoff");
            now += backoff(attempt);
        }
        assert_eq!(s.total, 0);
        assert_eq!(s.metrics.failed.load(Ordering::Relaxed), 1);
        assert_eq!(s.metrics.sent.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn permanent_error_drops_only_that_message() {
        let t0 = Instant::now();
        let mut s = scheduler(limits(30, 100, 20), 100, t0);
        push_text(&mut s, 1, "bad", t0).unwrap();
        push_text(&mut s, 1, "good", t0).unwrap();
        for d in dispatch(&mut s, t0) {
            finish(&mut s, d, Outcome::Failed("can't parse entities".into()), t0);
        }
        assert_eq!(send_all_at(&mut s, t0 + ms(10)), ["good"]);
        assert_eq!(s.metrics.failed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn migration_moves_the_queue_to_the_supergroup() {
        let t0 = Instant::now();
        let mut s = scheduler(RateLimits::default(), 100, t0);
        push_text(&mut s, -5, "g0", t0).unwrap();
        push_text(&mut s, -5, "g1", t0).unwrap();
        for d in dispatch(&mut s, t0) {
            finish(&mut s, d, Outcome::Migrated(-100_555), t0);
        }
        let batch = dispatch(&mut s, t0);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].lane, Lane::Chat(-100_555));
        assert!(matches!(batch[0].job.request, Prepared::Text { chat_id: -100_555, .. }));
        assert_eq!(s.total, 2);
    }

    #[test]
    fn queues_are_bounded() {
        let t0 = Instant::now();
        let mut s = scheduler(RateLimits::default(), 3, t0);
        for i in 0..3 {
            push_text(&mut s, i + 1, "x", t0).unwrap();
        }
        assert_eq!(push_text(&mut s, 9, "x", t0), Err(SendError::Full));
        let mut s = scheduler(RateLimits::default(), 10_000, t0);
        for _ in 0..CHAT_QUEUE_MAX {
            push_text(&mut s, 1, "x", t0).unwrap();
        }
        assert_eq!(push_text(&mut s, 1, "x", t0), Err(SendError::ChatFull));
        assert_eq!(push_text(&mut s, 2, "x", t0), Ok(()));
    }

    #[test]
    fn idle_chats_are_forgotten() {
        let t0 = Instant::now();
        let mut s = scheduler(RateLimits::default(), 100, t0);
        push_text(&mut s, 1, "a", t0).unwrap();
        send_all_at(&mut s, t0);
        s.sweep_if_due(t0 + ms(SWEEP_INTERVAL_MS));
        assert!(s.chats.is_empty());
    }

    #[test]
    fn keyboard_mirrors_the_reply_buttons() {
        let reply = Reply::text("hi")
            .with_row(vec![Button::new("Buy 1", "/buy ACME 1"), Button::new("Sell 1", "/sell ACME 1")]);
        let markup = keyboard(&reply.buttons).unwrap();
        let json = serde_json::to_value(&markup).unwrap();
        assert_eq!(json["inline_keyboard"][0][1]["callback_data"], "/sell ACME 1");
        assert_eq!(json["inline_keyboard"][0][0]["text"], "Buy 1");
        assert!(keyboard(&[]).is_none());
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(1), ms(500));
        assert_eq!(backoff(2), ms(1_000));
        assert_eq!(backoff(3), ms(2_000));
        assert_eq!(backoff(40), ms(BACKOFF_MAX_MS));
    }
}
