//! `SendBudget`: the Telegram limits a sender asks before each send — the
//! global, per-chat and per-group sliding windows, the freeze a 429 imposes
//! and the chats that blocked the bot. `LocalBudget` keeps them for one
//! process; `RedisBudget` shares them between every sender on one Redis
//! (falling back to its own `LocalBudget` while Redis does not answer).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

pub use local::LocalBudget;
pub use redis::{RedisBudget, RedisBudgetOptions};

mod local;
mod redis;
mod window;

/// A boxed, sendable future (what the budget's calls return).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Most chats asked about in one `try_take` call.
pub const GRANT_BATCH_MAX: usize = 64;
/// Span of the per-group window.
pub const GROUP_SPAN_MS: u64 = 60_000;
/// Span of the global and per-private-chat windows.
pub const SECOND_MS: u64 = 1_000;

/// One send asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub chat: i64,
    /// It answers a message the chat just sent: the chat writes to the bot,
    /// so a mark saying it blocked the bot is stale and is lifted.
    pub replying: bool,
}

impl From<i64> for Ask {
    /// A send to the chat that answers nothing it sent (a notice).
    fn from(chat: i64) -> Self {
        Self { chat, replying: false }
    }
}

/// The answer for one chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// One send to the chat is counted in every window: send it now. If
    /// this send filled the chat's window, `next_at` is when it has room
    /// again (no use asking before).
    Granted { next_at: Option<Instant> },
    /// No room: ask again at `until` (nothing was counted).
    Wait { until: Instant, scope: Scope },
    /// The chat blocked the bot (as some sender learned): do not send.
    Blocked,
}

/// Which limit said wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The bot-wide window or a freeze: every chat waits.
    Global,
    /// This chat's (or group's) window: only this chat waits.
    Chat,
}

/// The answers to one `try_take`, one per chat asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub grants: Vec<Grant>,
    /// Answered by the local fallback because the shared budget did not answer.
    pub local: bool,
}

/// The limits a sender asks before each send. Implementations are shared
/// by reference between the sender's tasks; every call returns at once or
/// within a bounded time and never fails (a shared budget that cannot be
/// reached answers from local state).
pub trait SendBudget: Send + Sync + 'static {
    /// Takes one send for each of `asks`, in order, atomically as a whole:
    /// a chat is granted only if the global window, its own window and the
    /// freeze all allow it, counting the grants before it. A replying ask
    /// first lifts its chat's blocked mark.
    fn try_take(&self, asks: Vec<Ask>, now: Instant) -> BoxFuture<Grants>;

    /// Stops every send (of every sender sharing the budget) for `retry_after`.
    fn freeze(&self, retry_after: Duration, now: Instant) -> BoxFuture<()>;

    /// Whether sends are frozen at `now`.
    fn is_frozen(&self, now: Instant) -> BoxFuture<bool>;

    /// Remembers for `BLOCKED_TTL_MS` that `chat_id` blocked the bot.
    fn mark_blocked(&self, chat_id: i64, now: Instant) -> BoxFuture<()>;

    /// Whether `chat_id` is marked as having blocked the bot.
    fn is_blocked(&self, chat_id: i64, now: Instant) -> BoxFuture<bool>;

    /// How long the sender may refuse messages to a chat it saw blocked
    /// without asking the budget again: the whole mark for a budget of its
    /// own, less for a shared one (another sender may lift the mark).
    fn blocked_cache_ms(&self) -> u64 {
        crate::sender::BLOCKED_TTL_MS
    }
}

/// The window span of a chat: a second for private chats, a minute for groups.
#[must_use]
pub const fn chat_span_ms(chat_id: i64) -> u64 {
    if chat_id > 0 { SECOND_MS } else { GROUP_SPAN_MS }
}

/// The window limit of a chat under `limits`.
#[must_use]
pub const fn chat_limit(limits: &super::RateLimits, chat_id: i64) -> u32 {
    if chat_id > 0 { limits.chat_per_sec } else { limits.group_per_min }
}
