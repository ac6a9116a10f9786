//! The outgoing Bot API sender: one bounded queue in front of Telegram that
//! keeps to its limits (overall, per private chat, per group) without letting
//! a waiting chat hold up the others, honours 429 `retry_after`, retries
//! transient failures, and reports chats that blocked the bot.
//!
//! Shape: `send` (never blocking, a short critical section) puts a message in
//! its chat's queue in the `scheduler`; one scheduling task hands what may go
//! out to request tasks, at most one in flight per chat (so a chat's messages
//! keep their order) and at most `IN_FLIGHT_MAX` overall, and feeds their
//! outcomes back. Callback answers have their own priority lane: they are not
//! limited per chat and go out before any queued message.
//!
//! Limits are exact sliding windows (at most `n` sends in any window of the
//! span), not `governor`'s GCRA: GCRA's burst allowance would let a group
//! receive more than `group_per_min` messages in some minute.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use teloxide_core::payloads::{
    AnswerCallbackQuerySetters, AnswerPreCheckoutQuerySetters, EditMessageMediaSetters, EditMessageTextSetters,
    SendInvoiceSetters, SendMessageSetters, SendPhotoSetters,
};
use teloxide_core::requests::Requester;
use teloxide_core::types::{
    CallbackQueryId, ChatId, InputMedia, InputMediaPhoto, LabeledPrice, MessageId, ParseMode, PreCheckoutQueryId,
};
use teloxide_core::{ApiError, Bot, RequestError};
use tokio::sync::{Notify, mpsc};

use scheduler::{Dispatch, Done, Job, Outcome, Prepared, Scheduler};
pub use wire::Outgoing;

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
/// refused without asking Telegram) unless `SenderHandle::unblock` is called.
pub const BLOCKED_TTL_MS: u64 = 300_000;
/// Most chats remembered as blocked.
pub const BLOCKED_CHATS_MAX: usize = 100_000;
/// Timeout of one Bot API request, above the `getUpdates` long-poll timeout
/// (teloxide's default of 17 s would cut every 25 s long poll short).
pub const REQUEST_TIMEOUT_MS: u64 = 60_000;
/// After the last handle is dropped, how long queued messages may still drain.
const DRAIN_MAX_MS: u64 = 10_000;
/// How often `SenderHandle::flush` looks at the queue.
const FLUSH_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Telegram's currency code for Stars.
pub const STARS_CURRENCY: &str = "XTR";
/// Telegram's limits on an invoice's title and description, in characters.
const INVOICE_TITLE_CHARS_MAX: usize = 32;
const INVOICE_DESCRIPTION_CHARS_MAX: usize = 255;

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
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        let (lane, job) = Job::prepare(message);
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

    /// Forgets that `chat_id` blocked the bot (call it when the chat writes
    /// to the bot again: the user has unblocked it).
    pub fn unblock(&self, chat_id: i64) {
        self.shared.lock().unblock(chat_id);
    }
}

impl fmt::Debug for SenderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderHandle").field("queued", &self.shared.metrics.queued.load(Ordering::Relaxed)).finish()
    }
}

/// Starts the sender on the current tokio (actix) runtime.
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
    let metrics = Arc::new(SenderMetrics::default());
    let shared = Arc::new(Shared {
        scheduler: Mutex::new(Scheduler::new(limits, queue_max, Arc::clone(&metrics), Instant::now())),
        wake: Notify::new(),
        metrics,
        closed: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
    });
    tokio::spawn(run(Arc::clone(&shared), bot, on_blocked));
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

// ---------------------------------------------------------------------------
// The scheduling task.

struct Shared {
    scheduler: Mutex<Scheduler>,
    wake: Notify,
    metrics: Arc<SenderMetrics>,
    /// Every handle is gone: drain and stop.
    closed: AtomicBool,
    /// The scheduling task has ended.
    stopped: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Scheduler> {
        // The scheduler's state stays consistent between calls (no panics
        // mid-update), so a poisoned lock is still usable.
        self.scheduler.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Dropped with the last `SenderHandle`: tells the task to drain and stop.
struct Life(Arc<Shared>);

impl Drop for Life {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

/// Marks the sender stopped when the task ends (or is dropped with its runtime).
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
    }
}

async fn run(shared: Arc<Shared>, bot: Bot, on_blocked: Arc<dyn Fn(i64) + Send + Sync>) {
    let _stopped = StopGuard(Arc::clone(&shared));
    let token: Arc<str> = Arc::from(bot.token());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut batch = Vec::new();
    let mut drain_deadline: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wake_at = {
            let mut scheduler = shared.lock();
            if shared.closed.load(Ordering::Acquire) {
                let deadline = *drain_deadline.get_or_insert(now + Duration::from_millis(DRAIN_MAX_MS));
                if scheduler.is_idle() || now >= deadline {
                    break;
                }
            }
            scheduler.sweep_if_due(now);
            scheduler.dispatch(now, &mut batch);
            scheduler.next_wake(now)
        };
        for Dispatch { lane, job } in batch.drain(..) {
            let (bot, token, done_tx) = (bot.clone(), Arc::clone(&token), done_tx.clone());
            tokio::spawn(async move {
                let outcome = classify(execute(&bot, &job.request).await, &job.request, &token);
                // The receiver lives as long as the scheduling task; if that
                // is gone, so is everything this result would update.
                let _ = done_tx.send(Done { lane, job, outcome });
            });
        }
        tokio::select! {
            () = shared.wake.notified() => {}
            () = tokio::time::sleep_until(wake_at.into()) => {}
            Some(done) = done_rx.recv() => {
                let mut blocked = Vec::new();
                {
                    let mut scheduler = shared.lock();
                    let now = Instant::now();
                    blocked.extend(scheduler.complete(done, now));
                    while let Ok(done) = done_rx.try_recv() {
                        blocked.extend(scheduler.complete(done, now));
                    }
                }
                for chat_id in blocked {
                    on_blocked(chat_id);
                }
            }
        }
    }
}

async fn execute(bot: &Bot, request: &Prepared) -> Result<(), RequestError> {
    match request {
        Prepared::Text { chat_id, text, markup } => {
            let mut call = bot.send_message(ChatId(*chat_id), text.clone()).parse_mode(ParseMode::Html);
            if let Some(markup) = markup {
                call = call.reply_markup(markup.clone());
            }
            call.await.map(drop)
        }
        Prepared::Photo { chat_id, photo, caption, markup } => {
            let mut call = bot.send_photo(ChatId(*chat_id), photo.clone());
            if !caption.is_empty() {
                call = call.caption(caption.clone()).parse_mode(ParseMode::Html);
            }
            if let Some(markup) = markup {
                call = call.reply_markup(markup.clone());
            }
            call.await.map(drop)
        }
        Prepared::Edit { chat_id, message_id, text, markup } => {
            let mut call = bot
                .edit_message_text(ChatId(*chat_id), MessageId(*message_id), text.clone())
                .parse_mode(ParseMode::Html);
            if let Some(markup) = markup {
                call = call.reply_markup(markup.clone());
            }
            call.await.map(drop)
        }
        Prepared::EditPhoto { chat_id, message_id, photo, caption, markup } => {
            let media = InputMediaPhoto::new(photo.clone()).caption(caption.clone()).parse_mode(ParseMode::Html);
            let mut call = bot.edit_message_media(ChatId(*chat_id), MessageId(*message_id), InputMedia::Photo(media));
            if let Some(markup) = markup {
                call = call.reply_markup(markup.clone());
            }
            call.await.map(drop)
        }
        Prepared::Answer { callback_query_id, text } => {
            let mut call = bot.answer_callback_query(CallbackQueryId(callback_query_id.clone()));
            if let Some(text) = text {
                call = call.text(text.clone());
            }
            call.await.map(drop)
        }
        Prepared::Invoice { chat_id, invoice } => {
            let title: String = invoice.title.chars().take(INVOICE_TITLE_CHARS_MAX).collect();
            let description: String = invoice.description.chars().take(INVOICE_DESCRIPTION_CHARS_MAX).collect();
            let price = LabeledPrice::new(title.clone(), invoice.stars);
            bot.send_invoice(ChatId(*chat_id), title, description, invoice.payload.clone(), STARS_CURRENCY, [price])
                // Telegram Stars take no payment provider: its token is empty.
                .provider_token("")
                .await
                .map(drop)
        }
        Prepared::PreCheckout { pre_checkout_query_id, error } => {
            let id = PreCheckoutQueryId(pre_checkout_query_id.clone());
            let mut call = bot.answer_pre_checkout_query(id, error.is_none());
            if let Some(error) = error {
                call = call.error_message(error.clone());
            }
            call.await.map(drop)
        }
    }
}

/// Sorts a result into what to do next. Error texts have the token removed
/// (reqwest errors carry the request URL, which contains it).
fn classify(result: Result<(), RequestError>, request: &Prepared, token: &str) -> Outcome {
    let error = match result {
        Ok(()) => return Outcome::Sent,
        Err(error) => error,
    };
    let detail = || redact(&error.to_string(), token);
    match &error {
        RequestError::RetryAfter(seconds) => Outcome::RetryAfter(seconds.duration().max(Duration::from_secs(1))),
        RequestError::MigrateToChatId(chat) => Outcome::Migrated(chat.0),
        RequestError::Network(_) | RequestError::Io(_) | RequestError::InvalidJson { .. } => {
            Outcome::Transient(detail())
        }
        RequestError::Api(api) => match api {
            ApiError::MessageNotModified if matches!(request, Prepared::Edit { .. } | Prepared::EditPhoto { .. }) => {
                Outcome::Sent
            }
            ApiError::BotBlocked
            | ApiError::UserDeactivated
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::BotKickedFromChannel
            | ApiError::CantInitiateConversation
            | ApiError::CantTalkWithBots
            | ApiError::ChatNotFound
                if !matches!(request, Prepared::Answer { .. } | Prepared::PreCheckout { .. }) =>
            {
                Outcome::Blocked(detail())
            }
            ApiError::Unknown(description) => classify_unknown(description, request, detail()),
            _ => Outcome::Failed(detail()),
        },
    }
}

fn classify_unknown(description: &str, request: &Prepared, detail: String) -> Outcome {
    const SERVER_ERRORS: [&str; 4] = ["Internal Server Error", "Bad Gateway", "Service Unavailable", "Gateway Timeout"];
    if description.contains("message is not modified")
        && matches!(request, Prepared::Edit { .. } | Prepared::EditPhoto { .. })
    {
        Outcome::Sent
    } else if SERVER_ERRORS.iter().any(|prefix| description.starts_with(prefix)) {
        Outcome::Transient(detail)
    } else if description.starts_with("Forbidden")
        && !matches!(request, Prepared::Answer { .. } | Prepared::PreCheckout { .. })
    {
        Outcome::Blocked(detail)
    } else {
        Outcome::Failed(detail)
    }
}

fn redact(text: &str, token: &str) -> String {
    if token.is_empty() { text.to_owned() } else { text.replace(token, "<token>") }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    const fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

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

    #[test]
    fn telegram_errors_are_sorted_into_what_to_do() {
        let text = Prepared::Text { chat_id: 1, text: "x".into(), markup: None };
        let edit = Prepared::Edit { chat_id: 1, message_id: 2, text: "x".into(), markup: None };
        let answer = Prepared::Answer { callback_query_id: "q".into(), text: None };
        let api = |error: ApiError| Err(RequestError::Api(error));
        let unknown = |text: &str| api(ApiError::Unknown(text.to_owned()));
        assert_eq!(classify(Ok(()), &text, "t"), Outcome::Sent);
        assert_eq!(classify(api(ApiError::MessageNotModified), &edit, "t"), Outcome::Sent);
        assert!(matches!(classify(api(ApiError::MessageNotModified), &text, "t"), Outcome::Failed(_)));
        assert_eq!(
            classify(Err(RequestError::RetryAfter(teloxide_core::types::Seconds::from_seconds(3))), &text, "t"),
            Outcome::RetryAfter(ms(3_000))
        );
        assert_eq!(classify(Err(RequestError::MigrateToChatId(ChatId(-1_007))), &text, "t"), Outcome::Migrated(-1_007));
        for blocked in [ApiError::BotBlocked, ApiError::UserDeactivated, ApiError::BotKickedFromSupergroup] {
            assert!(matches!(classify(api(blocked), &text, "t"), Outcome::Blocked(_)));
        }
        assert!(matches!(classify(api(ApiError::BotBlocked), &answer, "t"), Outcome::Failed(_)));
        assert!(matches!(
            classify(unknown("Forbidden: bot was kicked from the group chat"), &text, "t"),
            Outcome::Blocked(_)
        ));
        assert!(matches!(classify(unknown("Internal Server Error: restart"), &text, "t"), Outcome::Transient(_)));
        assert!(matches!(classify(unknown("Bad Request: can't parse entities"), &text, "t"), Outcome::Failed(_)));
    }

    #[test]
    fn errors_are_logged_without_the_token() {
        assert_eq!(
            redact("error for url (http://x/bot123:abc/sendMessage)", "123:abc"),
            "error for url (http://x/bot<token>/sendMessage)"
        );
    }
}
