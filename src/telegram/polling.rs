//! Polling mode: `deleteWebhook`, then a `getUpdates` long-poll loop. Each
//! update is pushed to ingest (waiting for room) before the next call
//! confirms it via `offset`, so none is lost; dedup by `update_id` keeps a
//! redelivered one from acting twice.

use std::time::Duration;

use teloxide_core::Bot;
use teloxide_core::payloads::GetUpdatesSetters;
use teloxide_core::requests::Requester;
use teloxide_core::types::AllowedUpdate;

use super::ingest::Ingest;

/// Long-poll timeout asked of Telegram, seconds.
pub const POLL_TIMEOUT_SECS: u32 = 25;
/// Most updates fetched per call.
pub const POLL_BATCH_MAX: u8 = 100;
const ERROR_BACKOFF_MAX_MS: u64 = 10_000;

/// The update kinds the bot handles.
#[must_use]
pub fn allowed_updates() -> Vec<AllowedUpdate> {
    vec![
        AllowedUpdate::Message,
        AllowedUpdate::CallbackQuery,
        AllowedUpdate::MyChatMember,
        AllowedUpdate::PreCheckoutQuery,
    ]
}

/// Runs forever (until the task is dropped).
pub async fn run(bot: Bot, ingest: Ingest) {
    let mut backoff_ms = 250;
    while let Err(error) = bot.delete_webhook().await {
        tracing::warn!(%error, "deleteWebhook failed; retrying");
        actix::clock::sleep(Duration::from_millis(backoff_ms)).await;
        backoff_ms = (backoff_ms * 2).min(ERROR_BACKOFF_MAX_MS);
    }
    let mut offset: Option<i32> = None;
    backoff_ms = 250;
    loop {
        let mut request =
            bot.get_updates().timeout(POLL_TIMEOUT_SECS).limit(POLL_BATCH_MAX).allowed_updates(allowed_updates());
        if let Some(offset) = offset {
            request = request.offset(offset);
        }
        match request.await {
            Ok(updates) => {
                backoff_ms = 250;
                for update in updates {
                    let next = i32::try_from(update.id.0).unwrap_or(i32::MAX).saturating_add(1);
                    ingest.push(update).await;
                    offset = Some(next);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "getUpdates failed; retrying");
                actix::clock::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(ERROR_BACKOFF_MAX_MS);
            }
        }
    }
}
