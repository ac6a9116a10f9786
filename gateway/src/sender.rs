//! The outgoing Bot API sender: one bounded queue in front of Telegram that
//! keeps to its limits (overall, per private chat, per group) without letting
//! a waiting chat hold up the others, honours 429 `retry_after`, retries
//! transient failures, and reports chats that blocked the bot.
//!
//! Shape: `send` (never blocking, a short critical section) puts a message in
//! its chat's queue in the `scheduler`; one scheduling task (`run`) takes the
//! chats whose turn has come, asks the `budget` for them in one batch (off
//! the loop: the answer comes back as an event), hands the granted ones to
//! request tasks (`request`), at most one in flight per chat (so a chat's
//! messages keep their order) and at most `IN_FLIGHT_MAX` overall, and feeds
//! their outcomes back. Callback answers have their own priority lane: they
//! skip the budget and go out before any queued message.
//!
//! The budget's limits are exact sliding windows (at most `n` sends in any
//! window of the span), not `governor`'s GCRA: GCRA's burst allowance would
//! let a group receive more than `group_per_min` messages in some minute.
//! `budget::LocalBudget` keeps them for this process; `budget::RedisBudget`
//! for every sender on one Redis.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use teloxide_core::Bot;

use budget::{LocalBudget, SendBudget};
use job::Job;
use run::{Life, Shared};
use scheduler::Scheduler;
pub use wire::Outgoing;

pub mod budget;
mod job;
mod request;
mod run;
mod scheduler;

/// Most requests in flight at once.
pub const IN_FLIGHT_MAX: usize = 128;
/// Most messages queued for one chat (also capped by the total `queue_max`).
pub const CHAT_QUEUE_MAX: usize = 64;
/// Most attempts of one message on transient failures (network, 5xx).
pub const ATTEMPTS_MAX: u32 = 5;
/// Most 429 answers one message may get before it is given up.
pub const RETRY_AFTER_MAX: u32 = 10;
/// How long a chat that blocked the bot stays marked (messages to it are
/// refused without asking Telegram) unless a reply to it comes (the chat
/// wrote to the bot again).
pub const BLOCKED_TTL_MS: u64 = 300_000;
/// Most chats remembered as blocked.
pub const BLOCKED_CHATS_MAX: usize = 100_000;
/// Timeout of one Bot API request, above the `getUpdates` long-poll timeout
/// (teloxide's default of 17 s would cut every 25 s long poll short).
pub const REQUEST_TIMEOUT_MS: u64 = 60_000;
/// After the last handle is dropped, how long queued messages may still drain.
pub(crate) const DRAIN_MAX_MS: u64 = 10_000;
/// How often `SenderHandle::flush` looks at the queue.
const FLUSH_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Telegram's currency code for Stars.
pub const STARS_CURRENCY: &str = "XTR";

/// Telegram's sending limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Messages per second over all chats.
    pub global_per_sec: u32,
    /// Messages per second to one private chat (`chat_id > 0`).
    pub chat_per_sec: u32,
    /// Messages per minute to one group (`chat_id < 0`).
    pub group_per_min: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { global_per_sec: 30, chat_per_sec: 1, group_per_min: 20 }
    }
}

/// Resolves when a message given to [`SenderHandle::send_tracked`] is done.
#[derive(Debug)]
pub struct Delivery(tokio::sync::oneshot::Receiver<()>);

impl std::future::Future for Delivery {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        // Done (or its job dropped without a word, which is also done).
        std::pin::Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// Why `SenderHandle::send` refused a message (it was not queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// `queue_max` messages are waiting already.
    #[error("the outgoing queue is full")]
    Full,
    /// This chat has `CHAT_QUEUE_MAX` messages waiting already.
    #[error("this chat's outgoing queue is full")]
    ChatFull,
    /// The chat blocked the bot (or the user is gone) recently.
    #[error("the chat has blocked the bot")]
    Blocked,
    /// The sending task is gone (its runtime stopped).
    #[error("the sender has stopped")]
    Closed,
}

/// The sender's counters (exported at `/metrics`).
#[derive(Debug, Default)]
pub struct SenderMetrics {
    /// Calls Telegram accepted (an unchanged edit included).
    pub sent: AtomicU64,
    /// Messages given up: permanent errors, attempts exhausted, or dropped
    /// because their chat blocked the bot.
    pub failed: AtomicU64,
    /// Gauge: messages accepted and not yet done (waiting or in flight).
    pub queued: AtomicU64,
    /// 429 answers (each followed by a retry, unless `RETRY_AFTER_MAX` is reached).
    pub retried_429: AtomicU64,
    /// Chats found to have blocked the bot.
    pub blocked: AtomicU64,
    /// Sends that had to wait for room in the budget: refused (and asked
    /// again later), or held back because the grant before them filled
    /// their chat's window.
    pub budget_waits: AtomicU64,
    /// Freezes this sender put on the budget after a 429.
    pub budget_freezes: AtomicU64,
    /// Times the shared budget stopped answering and the local one took over.
    pub budget_fallbacks: AtomicU64,
    /// Blocked chats this sender marked in the budget.
    pub blocked_marks: AtomicU64,
    /// Messages dropped because the budget said their chat blocked the bot
    /// (another sender saw the 403).
    pub blocked_elsewhere: AtomicU64,
}

/// Where to queue messages for Telegram; cheap to clone.
#[derive(Clone)]
pub struct SenderHandle {
    shared: Arc<Shared>,
    _life: Arc<Life>,
}

impl SenderHandle {
    /// Queues a message. Never blocks: `Err(Full)` when the bounded queue is
    /// full, `Err(ChatFull)` when this chat's queue is.
    ///
    /// # Errors
    /// The message was not queued; see `SendError`.
    pub fn send(&self, message: Outgoing) -> Result<(), SendError> {
        self.queue(message, false, None)
    }

    /// [`Self::send`] for a reply to a message the chat just sent: the chat
    /// writes to the bot, so a mark saying it blocked the bot (here or in
    /// the shared budget) is lifted.
    ///
    /// # Errors
    /// The message was not queued; see `SendError`.
    pub fn send_reply(&self, message: Outgoing) -> Result<(), SendError> {
        self.queue(message, true, None)
    }

    /// [`Self::send`] (or, `replying`, [`Self::send_reply`]), and a future
    /// that resolves once the message is done with: sent, or given up (a
    /// permanent error, attempts exhausted, its chat blocked the bot, the
    /// sender stopped). The outbox acknowledges a message only then, so one
    /// that a dying gateway held goes to another.
    ///
    /// # Errors
    /// The message was not queued; see `SendError`.
    pub fn send_tracked(&self, message: Outgoing, replying: bool) -> Result<Delivery, SendError> {
        let (completion, done) = job::Completion::new();
        self.queue(message, replying, Some(completion))?;
        Ok(Delivery(done))
    }

    fn queue(
        &self,
        message: Outgoing,
        replying: bool,
        completion: Option<Arc<job::Completion>>,
    ) -> Result<(), SendError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        let (lane, mut job) = Job::prepare(message);
        job.replying = replying;
        job.completion = completion;
        self.shared.lock().push(lane, job, Instant::now())?;
        self.shared.wake.notify_one();
        Ok(())
    }

    /// The sender's counters.
    #[must_use]
    pub fn metrics(&self) -> &Arc<SenderMetrics> {
        &self.shared.metrics
    }

    /// Waits until every accepted message is done (sent or given up), or
    /// until `timeout` passes; returns whether the queue drained. For a
    /// graceful stop: messages accepted meanwhile are waited for too.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.shared.metrics.queued.load(Ordering::Acquire) == 0 || self.shared.stopped.load(Ordering::Acquire) {
                return self.shared.metrics.queued.load(Ordering::Acquire) == 0;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(FLUSH_POLL_INTERVAL).await;
        }
    }
}

impl fmt::Debug for SenderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderHandle").field("queued", &self.shared.metrics.queued.load(Ordering::Relaxed)).finish()
    }
}

/// Starts the sender on the current tokio (actix) runtime, with a budget
/// of its own (`LocalBudget`: `limits` kept by this process alone).
///
/// `on_blocked(chat_id)` runs once when Telegram says the chat blocked the
/// bot (or the user is deactivated, or the bot was removed from the group);
/// that chat's queued messages are dropped. It runs on the sending task: keep
/// it short and non-blocking.
///
/// # Panics
/// Outside a tokio runtime (as `tokio::spawn` does).
pub fn start_sender(
    bot: Bot,
    limits: RateLimits,
    queue_max: usize,
    on_blocked: Arc<dyn Fn(i64) + Send + Sync>,
) -> SenderHandle {
    start_sender_with_budget(bot, queue_max, on_blocked, Arc::new(LocalBudget::new(limits)))
}

/// `start_sender` asking `budget` before every send to a chat: with a
/// `RedisBudget`, every sender on the same Redis and prefix keeps to one
/// shared set of limits, a 429 seen by one freezes all, and a chat that
/// blocked the bot is skipped by all.
///
/// # Panics
/// Outside a tokio runtime (as `tokio::spawn` does).
pub fn start_sender_with_budget(
    bot: Bot,
    queue_max: usize,
    on_blocked: Arc<dyn Fn(i64) + Send + Sync>,
    budget: Arc<dyn SendBudget>,
) -> SenderHandle {
    let metrics = Arc::new(SenderMetrics::default());
    let now = Instant::now();
    let blocked_ttl = Duration::from_millis(budget.blocked_cache_ms());
    let scheduler = Scheduler::new(queue_max, blocked_ttl, Arc::clone(&metrics), now);
    let shared = Arc::new(Shared::new(scheduler, metrics));
    tokio::spawn(run::run(Arc::clone(&shared), bot, on_blocked, budget));
    let life = Arc::new(Life(Arc::clone(&shared)));
    SenderHandle { shared, _life: life }
}

/// A `Bot` for `token`, talking to `api_url` when given (tests point it at a
/// fake Bot API), with a request timeout of `REQUEST_TIMEOUT_MS`.
///
/// # Errors
/// An empty token, an unusable URL, or an HTTP client that cannot be built.
pub fn make_bot(token: &str, api_url: Option<&str>) -> Result<Bot, String> {
    let token = token.trim();
    if token.is_empty() {
        return Err("the bot token is empty".to_owned());
    }
    let client = teloxide_core::net::default_reqwest_settings()
        .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
        .build()
        .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
    let bot = Bot::with_client(token, client);
    let Some(url) = api_url.map(str::trim).filter(|url| !url.is_empty()) else {
        return Ok(bot);
    };
    // A trailing slash would give "//bot<token>/…" paths.
    let trimmed = url.trim_end_matches('/');
    // `set_api_url` takes a `reqwest::Url`; going through serde spares a
    // direct dependency on reqwest/url just to name that type.
    let parsed = serde_json::from_value(serde_json::Value::String(trimmed.to_owned()))
        .map_err(|error| format!("TELEGRAM_API_URL {url:?} is not a URL: {error}"))?;
    let bot = bot.set_api_url(parsed);
    let api_url = bot.api_url();
    if !matches!(api_url.scheme(), "http" | "https") || api_url.cannot_be_a_base() {
        return Err(format!("TELEGRAM_API_URL {url:?} must be an http(s) URL"));
    }
    Ok(bot)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    #[test]
    fn make_bot_takes_a_base_url() {
        let bot = make_bot("123:abc", Some("http://127.0.0.1:9/tg/")).unwrap();
        assert_eq!(bot.api_url().as_str(), "http://127.0.0.1:9/tg");
        assert_eq!(bot.token(), "123:abc");
        let bot = make_bot("123:abc", None).unwrap();
        assert_eq!(bot.api_url().as_str(), "https://api.telegram.org/");
        assert!(make_bot("", None).is_err());
        assert!(make_bot("123:abc", Some("not a url")).is_err());
        assert!(make_bot("123:abc", Some("mailto:x@y")).is_err());
    }
}
