//! Polling mode: `deleteWebhook`, then a `getUpdates` long-poll loop. Each
//! update is handed to an [`UpdateSink`] (waiting for room) before the next
//! call confirms it via `offset`, so none is lost; dedup by `update_id` keeps
//! a redelivered one from acting twice. When the sink closes (graceful stop,
//! or the engine stepping down) the loop ends with one short `getUpdates`
//! that confirms what it handed over, so a restart does not get those again.
//! Only one process may poll a bot (Telegram answers 409 to a second one).

use std::time::Duration;

use teloxide_core::Bot;
use teloxide_core::payloads::GetUpdatesSetters;
use teloxide_core::requests::Requester;
use teloxide_core::types::{AllowedUpdate, Update};

/// Where polled updates go: in-process ingest, or the command stream.
pub trait UpdateSink: Clone + 'static {
    /// Takes an update, waiting for room; `false` once the sink is closed
    /// (then the update was not taken and stays unconfirmed).
    fn push(&self, update: Update) -> impl std::future::Future<Output = bool>;
    /// Resolves once the sink is closed.
    fn closed(&self) -> impl std::future::Future<Output = ()>;
    /// Whether the sink is closed.
    fn is_closed(&self) -> bool;
}

/// Long-poll timeout asked of Telegram, seconds.
pub const POLL_TIMEOUT_SECS: u32 = 25;
/// Most updates fetched per call.
pub const POLL_BATCH_MAX: u8 = 100;
const ERROR_BACKOFF_MAX_MS: u64 = 10_000;
/// Longest the final confirming `getUpdates` may take at a stop.
const CONFIRM_TIMEOUT_MS: u64 = 5_000;

/// The update kinds the bot handles: messages (commands, successful
/// payments, group migrations), button presses and pre-checkout queries.
/// Nothing else is asked for (edits, membership changes, polls… are ignored).
#[must_use]
pub fn allowed_updates() -> Vec<AllowedUpdate> {
    vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery, AllowedUpdate::PreCheckoutQuery]
}

/// Runs until the sink closes, then confirms what it took and returns.
pub async fn run<S: UpdateSink>(bot: Bot, sink: S) {
    let mut backoff_ms = 250;
    loop {
        let deleted = tokio::select! {
            deleted = bot.delete_webhook() => deleted,
            () = sink.closed() => return,
        };
        let Err(error) = deleted else { break };
        tracing::warn!(%error, "deleteWebhook failed; retrying");
        backoff_ms = backoff(&sink, backoff_ms).await;
    }
    let mut offset: Option<i32> = None;
    backoff_ms = 250;
    while !sink.is_closed() {
        let mut request =
            bot.get_updates().timeout(POLL_TIMEOUT_SECS).limit(POLL_BATCH_MAX).allowed_updates(allowed_updates());
        if let Some(offset) = offset {
            request = request.offset(offset);
        }
        // A long poll cut short by the stop is simply not used: nothing it
        // would have brought is confirmed, so Telegram keeps it.
        let polled = tokio::select! {
            polled = request => polled,
            () = sink.closed() => break,
        };
        match polled {
            Ok(updates) => {
                backoff_ms = 250;
                for update in updates {
                    let next = i32::try_from(update.id.0).unwrap_or(i32::MAX).saturating_add(1);
                    if !sink.push(update).await {
                        break;
                    }
                    offset = Some(next);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "getUpdates failed; retrying");
                backoff_ms = backoff(&sink, backoff_ms).await;
            }
        }
    }
    if let Some(offset) = offset {
        confirm(&bot, offset).await;
    }
}

/// Sleeps `backoff_ms` (less if the sink closes meanwhile); returns the next backoff.
async fn backoff<S: UpdateSink>(sink: &S, backoff_ms: u64) -> u64 {
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
        () = sink.closed() => {}
    }
    (backoff_ms * 2).min(ERROR_BACKOFF_MAX_MS)
}

/// Confirms every update below `offset` without waiting for new ones (what
/// such a call returns stays unconfirmed: the next run gets it).
async fn confirm(bot: &Bot, offset: i32) {
    let request = bot.get_updates().offset(offset).timeout(0).limit(1).allowed_updates(allowed_updates());
    match tokio::time::timeout(Duration::from_millis(CONFIRM_TIMEOUT_MS), request).await {
        Ok(Ok(_)) => tracing::info!(offset, "updates taken so far confirmed to Telegram"),
        Ok(Err(error)) => tracing::warn!(%error, "confirming the last updates failed; they will come again"),
        Err(_) => tracing::warn!("confirming the last updates timed out; they will come again"),
    }
}
