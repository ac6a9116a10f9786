//! The outgoing Bot API sender: one bounded queue in front of Telegram that
//! keeps to its limits (overall, per private chat, per group) without letting
//! a waiting chat hold up the others, honours 429 `retry_after`, retries
//! transient failures, and reports chats that blocked the bot. Also
//! `TelegramNotifier`, the engine's `Notifier` port on top of it.
//!
//! Shape: `send` (never blocking, a short critical section) puts a message in
//! its chat's queue; a chat whose next send slot has come is in the `ready`
//! ring, one still waiting sits in a timer heap. One scheduling task hands
//! ready chats' head messages to request tasks, at most one in flight per
//! chat (so a chat's messages keep their order) and at most
//! `IN_FLIGHT_MAX` overall. Callback answers have their own priority lane:
//! they are not limited per chat and go out before any queued message.
//!
//! Limits are exact sliding windows (at most `n` sends in any window of the
//! span), not `governor`'s GCRA: GCRA's burst allowance would let a group
//! receive more than `group_per_min` messages in some minute.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actors::domain::asset::Universe;
use actors::domain::event::Trade;
use actors::domain::ids::PlayerId;
use actors::domain::order::Side;
use actors::ports::{Notice, Notifier};
use teloxide_core::payloads::{
    AnswerCallbackQuerySetters, EditMessageTextSetters, SendMessageSetters, SendPhotoSetters,
};
use teloxide_core::requests::Requester;
use teloxide_core::types::{
    CallbackQueryId, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MessageId, ParseMode,
};
use teloxide_core::{ApiError, Bot, RequestError};
use tokio::sync::{Notify, mpsc};

use super::reply::{Button, Reply, escape, money};
use crate::config::TelegramSettings;

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

const BACKOFF_FIRST_MS: u64 = 500;
const BACKOFF_MAX_MS: u64 = 30_000;
const SWEEP_INTERVAL_MS: u64 = 5_000;
/// After the last handle is dropped, how long queued messages may still drain.
const DRAIN_MAX_MS: u64 = 10_000;
/// 429s for this many different chats within `FLOOD_WINDOW_MS` mean a
/// bot-wide flood limit: then everything pauses, not only those chats.
const FLOOD_CHATS_MIN: usize = 2;
const FLOOD_WINDOW_MS: u64 = 1_000;
const GROUP_SPAN_MS: u64 = 60_000;
const SECOND_MS: u64 = 1_000;

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

impl RateLimits {
    /// The configured limits, Telegram's defaults where unset.
    #[must_use]
    pub fn from_settings(settings: &TelegramSettings) -> Self {
        let defaults = Self::default();
        Self {
            global_per_sec: settings.rate_global_per_sec.unwrap_or(defaults.global_per_sec),
            chat_per_sec: settings.rate_chat_per_sec.unwrap_or(defaults.chat_per_sec),
            group_per_min: settings.rate_group_per_min.unwrap_or(defaults.group_per_min),
        }
    }
}

/// One Bot API call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// `sendMessage` in HTML parse mode, with the reply's buttons as an inline keyboard.
    Text { chat_id: i64, reply: Reply },
    /// `sendPhoto` (multipart upload of `png`) with the reply as its HTML caption and keyboard.
    Photo { chat_id: i64, png: Vec<u8>, caption: Reply },
    /// `editMessageText`; "message is not modified" counts as success.
    Edit { chat_id: i64, message_id: i32, reply: Reply },
    /// `answerCallbackQuery`: not limited per chat, sent before queued messages.
    AnswerCallback { callback_query_id: String, text: Option<String> },
}

impl Outgoing {
    /// The chat this goes to; `None` for callback answers.
    #[must_use]
    pub fn chat_id(&self) -> Option<i64> {
        match self {
            Self::Text { chat_id, .. } | Self::Photo { chat_id, .. } | Self::Edit { chat_id, .. } => Some(*chat_id),
            Self::AnswerCallback { .. } => None,
        }
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

    /// Forgets that `chat_id` blocked the bot (call it when the chat writes
    /// to the bot again: the user has unblocked it).
    pub fn unblock(&self, chat_id: i64) {
        self.shared.lock().blocked.remove(&chat_id);
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

/// The engine's `Notifier` for Telegram players: renders notices and queues
/// them to the player's private chat (chat id = user id). Local (play page)
/// players are skipped.
pub struct TelegramNotifier {
    sender: SenderHandle,
    universe: Arc<Universe>,
}

impl TelegramNotifier {
    /// A notifier sending through `sender`, naming assets from `universe`.
    #[must_use]
    pub fn new(sender: SenderHandle, universe: Arc<Universe>) -> Self {
        Self { sender, universe }
    }
}

impl Notifier for TelegramNotifier {
    fn notify(&self, player: PlayerId, notice: Notice) {
        if player.is_local() || player.0 == 0 {
            return;
        }
        let reply = notice_reply(&notice, &self.universe);
        if let Err(error) = self.sender.send(Outgoing::Text { chat_id: player.0, reply }) {
            tracing::debug!(player_id = player.0, %error, "notice not queued");
        }
    }
}

/// The words for a notice. Never starts with "Bought"/"Sold" (only trade
/// replies do).
#[must_use]
pub fn notice_reply(notice: &Notice, universe: &Universe) -> Reply {
    match notice {
        Notice::OrderFilled(trade) => fill_notice(trade, universe),
        Notice::OrderDropped { order } => Reply::text(format!(
            "🔔 Order #{order} was withdrawn: it could not be filled when it triggered. See /orders."
        ))
        .with_row(vec![Button::new("Orders", "/orders"), Button::new("Portfolio", "/portfolio")]),
    }
}

fn fill_notice(trade: &Trade, universe: &Universe) -> Reply {
    let ticker = universe.ticker(trade.asset).map_or_else(|| format!("#{}", trade.asset.0), |t| t.as_str().to_owned());
    let verb = match trade.side {
        Side::Buy => "bought",
        Side::Sell => "sold",
    };
    let order = trade.order.map_or_else(|| "Your order".to_owned(), |order| format!("Order #{order}"));
    let text = format!(
        "🔔 {order} filled — {verb} {qty} {ticker} at {price} avg, fee {fee}",
        qty = trade.qty,
        ticker = escape(&ticker),
        price = money(trade.price),
        fee = money(trade.fee),
    );
    Reply::text(text).with_row(vec![
        Button::new("Portfolio", "/portfolio"),
        Button::new(format!("Quote {ticker}"), format!("/quote {ticker}")),
    ])
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

/// A request's result, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
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

struct Done {
    lane: Lane,
    job: Job,
    outcome: Outcome,
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
            let mut call =
                bot.send_photo(ChatId(*chat_id), photo.clone()).caption(caption.clone()).parse_mode(ParseMode::Html);
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
        Prepared::Answer { callback_query_id, text } => {
            let mut call = bot.answer_callback_query(CallbackQueryId(callback_query_id.clone()));
            if let Some(text) = text {
                call = call.text(text.clone());
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
            ApiError::MessageNotModified if matches!(request, Prepared::Edit { .. }) => Outcome::Sent,
            ApiError::BotBlocked
            | ApiError::UserDeactivated
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::BotKickedFromChannel
            | ApiError::CantInitiateConversation
            | ApiError::CantTalkWithBots
            | ApiError::ChatNotFound
                if !matches!(request, Prepared::Answer { .. }) =>
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
    if description.contains("message is not modified") && matches!(request, Prepared::Edit { .. }) {
        Outcome::Sent
    } else if SERVER_ERRORS.iter().any(|prefix| description.starts_with(prefix)) {
        Outcome::Transient(detail)
    } else if description.starts_with("Forbidden") && !matches!(request, Prepared::Answer { .. }) {
        Outcome::Blocked(detail)
    } else {
        Outcome::Failed(detail)
    }
}

fn redact(text: &str, token: &str) -> String {
    if token.is_empty() { text.to_owned() } else { text.replace(token, "<token>") }
}

// ---------------------------------------------------------------------------
// The scheduler: plain state, time passed in, so it is tested without a network.

/// A message ready to be sent: keyboard built once, photo shared across retries.
#[derive(Debug, Clone)]
enum Prepared {
    Text { chat_id: i64, text: String, markup: Option<InlineKeyboardMarkup> },
    Photo { chat_id: i64, photo: InputFile, caption: String, markup: Option<InlineKeyboardMarkup> },
    Edit { chat_id: i64, message_id: i32, text: String, markup: Option<InlineKeyboardMarkup> },
    Answer { callback_query_id: String, text: Option<String> },
}

impl Prepared {
    fn retarget(&mut self, to: i64) {
        match self {
            Self::Text { chat_id, .. } | Self::Photo { chat_id, .. } | Self::Edit { chat_id, .. } => *chat_id = to,
            Self::Answer { .. } => {}
        }
    }
}

#[derive(Debug, Clone)]
struct Job {
    request: Prepared,
    /// Transient failures so far.
    attempts: u32,
    /// 429 answers so far.
    retries_429: u32,
}

impl Job {
    fn prepare(message: Outgoing) -> (Lane, Self) {
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
            Outgoing::AnswerCallback { callback_query_id, text } => {
                (Lane::Callback, Prepared::Answer { callback_query_id, text })
            }
        };
        (lane, Self { request, attempts: 0, retries_429: 0 })
    }
}

fn keyboard(rows: &[Vec<Button>]) -> Option<InlineKeyboardMarkup> {
    if rows.iter().all(Vec::is_empty) {
        return None;
    }
    Some(InlineKeyboardMarkup::new(
        rows.iter().filter(|row| !row.is_empty()).map(|row| {
            row.iter().map(|button| InlineKeyboardButton::callback(button.text.clone(), button.data.clone()))
        }),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Callback,
    Chat(i64),
}

struct Dispatch {
    lane: Lane,
    job: Job,
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

struct Scheduler {
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
    fn new(limits: RateLimits, queue_max: usize, metrics: Arc<SenderMetrics>, now: Instant) -> Self {
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

    fn is_idle(&self) -> bool {
        self.total == 0 && self.in_flight == 0
    }

    fn push(&mut self, lane: Lane, job: Job, now: Instant) -> Result<(), SendError> {
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
    fn dispatch(&mut self, now: Instant, out: &mut Vec<Dispatch>) {
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
    fn next_wake(&self, now: Instant) -> Instant {
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
    fn complete(&mut self, done: Done, now: Instant) -> Option<i64> {
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

    fn sweep_if_due(&mut self, now: Instant) {
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

    use actors::domain::asset::{AssetSpec, CategorySpec};
    use actors::domain::ids::{AssetId, OrderId, Ticker, TradeId};
    use rust_decimal_macros::dec;

    use super::*;

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
            Prepared::Photo { caption, .. } => caption,
            Prepared::Answer { callback_query_id, .. } => callback_query_id,
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
        // The mark expires (or is lifted by `unblock`).
        let later = t0 + ms(BLOCKED_TTL_MS + 1);
        assert_eq!(push_text(&mut s, 9, "back", later), Ok(()));
        s.blocked.insert(11, later + ms(1_000));
        s.blocked.remove(&11);
        assert_eq!(push_text(&mut s, 11, "unblocked", later), Ok(()));
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
    fn errors_are_logged_without_the_token() {
        assert_eq!(
            redact("error for url (http://x/bot123:abc/sendMessage)", "123:abc"),
            "error for url (http://x/bot<token>/sendMessage)"
        );
    }

    fn universe() -> Universe {
        let category = CategorySpec { name: "Tech".into(), vol_daily: 0.01, jump_rate_daily: 0.1, jump_sigma: 0.01 };
        let asset = AssetSpec {
            ticker: Ticker::parse("ACME").unwrap(),
            name: "Acme".into(),
            category: "Tech".into(),
            initial_price: dec!(50),
            model: actors::domain::asset::ModelParams::default(),
        };
        Universe::new(vec![category], vec![asset]).unwrap()
    }

    #[test]
    fn fill_notice_names_order_side_and_price_but_does_not_start_like_a_trade_reply() {
        let trade = Trade {
            id: TradeId(1),
            order: Some(OrderId(12)),
            player: PlayerId(5),
            asset: AssetId(0),
            side: Side::Buy,
            qty: 10,
            price: dec!(48.2),
            fee: dec!(0.49),
        };
        let reply = notice_reply(&Notice::OrderFilled(trade), &universe());
        assert_eq!(reply.text, "🔔 Order #12 filled — bought 10 ACME at 48.20 avg, fee 0.49");
        let second = reply.text.split_whitespace().nth(1).unwrap();
        assert!(second != "Bought" && second != "Sold");
        assert_eq!(reply.buttons[0][1].data, "/quote ACME");
        let dropped = notice_reply(&Notice::OrderDropped { order: OrderId(3) }, &universe());
        assert!(dropped.text.starts_with("🔔 Order #3 was withdrawn"));
    }
}
