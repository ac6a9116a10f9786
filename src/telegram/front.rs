//! `TelegramFront`: the bot's presence on Telegram — the Bot API client, the
//! rate-limited sender, update ingest, and either the webhook registration
//! (`setWebhook`, `setMyCommands`) or the polling loop — and their graceful
//! stop.

use std::sync::Arc;
use std::time::Duration;

use actors::ports::coordinator::Coordinator;
use teloxide_core::Bot as BotApi;
use teloxide_core::payloads::{SetChatMenuButtonSetters, SetWebhookSetters};
use teloxide_core::requests::Requester;
use teloxide_core::types::{BotCommand as MenuCommand, MenuButton, WebAppInfo};

use super::ingest::Ingest;
use super::polling;
use super::sender::budget::{LocalBudget, RedisBudget, RedisBudgetOptions, SendBudget};
use super::sender::{RateLimits, SenderHandle, make_bot, rate_limits, start_sender_with_budget};
use super::update::UpdateHandler;
use crate::bot::Bot;
use crate::config::Settings;

/// Most outgoing messages queued before new ones are refused.
pub const SEND_QUEUE_MAX: usize = 100_000;
/// Most updates waiting to be handled (past that the webhook holds the
/// request for room, up to `INGEST_OFFER_WAIT_MS`).
pub const INGEST_QUEUE_MAX: usize = 20_000;
/// Longest the webhook holds an update waiting for room before answering 503.
pub const INGEST_OFFER_WAIT_MS: u64 = 5_000;
/// Most updates handled at once.
pub const INGEST_CONCURRENCY_MAX: usize = 1_024;
const GET_ME_ATTEMPTS: u32 = 5;

/// How updates arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Webhook,
    Polling,
}

/// The Bot API client and sender, before the engine exists.
pub struct TelegramClient {
    pub api: BotApi,
    pub sender: SenderHandle,
    pub username: Option<String>,
    pub mode: Mode,
}

/// Connects to the Bot API when a token is configured (`None` otherwise, or
/// when `TELEGRAM_MODE=off`).
///
/// # Errors
/// A malformed API URL or mode.
pub async fn connect(settings: &Settings) -> Result<Option<TelegramClient>, String> {
    let Some(token) = settings.telegram.bot_token.as_ref().map(|t| t.expose().to_owned()).filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    let mode = match settings.telegram.mode.as_deref().map(str::trim) {
        None | Some("" | "polling") => Mode::Polling,
        Some("webhook") => Mode::Webhook,
        Some("off") => return Ok(None),
        Some(other) => return Err(format!("TELEGRAM_MODE must be webhook, polling or off, not {other:?}")),
    };
    let api = make_bot(&token, settings.telegram.api_url.as_deref())?;
    let username = get_username(&api).await;
    let limits = rate_limits(&settings.telegram);
    let on_blocked: Arc<dyn Fn(i64) + Send + Sync> = Arc::new(|chat_id| {
        tracing::info!(chat_id, "bot blocked by the user; no more messages to this chat");
    });
    let budget = send_budget(settings, limits).await;
    let sender = start_sender_with_budget(api.clone(), SEND_QUEUE_MAX, on_blocked, budget);
    Ok(Some(TelegramClient { api, sender, username, mode }))
}

/// The send budget: shared through Redis with `REDIS_URL` (so that every
/// sender together keeps to Telegram's limits), else this process's own.
async fn send_budget(settings: &Settings, limits: RateLimits) -> Arc<dyn SendBudget> {
    if let Some(url) = settings.redis_url.as_ref().map(|u| u.expose().to_owned()).filter(|u| !u.is_empty()) {
        match RedisBudget::connect(&url, &settings.redis_prefix, limits, RedisBudgetOptions::default()).await {
            Ok(budget) => return Arc::new(budget),
            Err(error) => tracing::warn!(%error, "Redis unusable; the send budget is this process's own"),
        }
    }
    Arc::new(LocalBudget::new(limits))
}

async fn get_username(api: &BotApi) -> Option<String> {
    for attempt in 0..GET_ME_ATTEMPTS {
        match api.get_me().await {
            Ok(me) => return me.user.username.clone(),
            Err(error) => {
                tracing::warn!(%error, attempt, "getMe failed");
                actix::clock::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    None
}

/// The update source at work: ingest (which the webhook feeds) and, in
/// polling mode, the polling task.
pub struct RunningFront {
    pub ingest: Ingest,
    poller: Option<tokio::task::JoinHandle<()>>,
}

impl RunningFront {
    /// Graceful stop, first half: takes no more updates (the webhook answers
    /// 503 from now on; polling stops and confirms what it took), then waits
    /// up to `timeout` for the updates already taken to be handled. Returns
    /// whether they all were.
    pub async fn stop(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        self.ingest.close();
        if let Some(poller) = self.poller.take()
            && tokio::time::timeout_at(deadline, poller).await.is_err()
        {
            tracing::warn!("the polling loop did not stop in time");
        }
        self.ingest.drain(deadline.saturating_duration_since(tokio::time::Instant::now())).await
    }
}

/// Starts ingest and the update source.
pub async fn start(
    client: &TelegramClient,
    bot: Bot,
    coordinator: Arc<dyn Coordinator>,
    settings: &Settings,
) -> RunningFront {
    let handler = UpdateHandler::new(bot, Arc::clone(&coordinator));
    let ingest = Ingest::start(
        handler,
        client.sender.clone(),
        coordinator,
        INGEST_QUEUE_MAX,
        INGEST_CONCURRENCY_MAX,
        Duration::from_millis(INGEST_OFFER_WAIT_MS),
    );
    let poller = match client.mode {
        Mode::Polling => Some(actix::spawn(polling::run(client.api.clone(), ingest.clone()))),
        Mode::Webhook => None,
    };
    register(client, settings).await;
    RunningFront { ingest, poller }
}

/// Tells Telegram where updates go (the webhook, in webhook mode) and the
/// command menu. Repeating it from every instance is harmless.
pub async fn register(client: &TelegramClient, settings: &Settings) {
    if client.mode == Mode::Webhook {
        register_webhook(&client.api, settings).await;
    }
    if let Err(error) = client.api.set_my_commands(menu()).await {
        tracing::warn!(%error, "setMyCommands failed");
    }
    if let Some(url) = settings.telegram.webapp_url() {
        register_menu_button(&client.api, url).await;
    }
}

/// Makes the chat's menu button open the play page as a Mini App.
async fn register_menu_button(api: &BotApi, url: &str) {
    let Ok(url) = url.parse() else {
        tracing::warn!("TELEGRAM_WEBAPP_URL is not a URL; no Mini App menu button");
        return;
    };
    let button = MenuButton::WebApp { text: "Play".to_owned(), web_app: WebAppInfo { url } };
    if let Err(error) = api.set_chat_menu_button().menu_button(button).await {
        tracing::warn!(%error, "setChatMenuButton failed");
    }
}

async fn register_webhook(api: &BotApi, settings: &Settings) {
    let Some(url) = settings.telegram.webhook_url.as_deref().filter(|u| !u.is_empty()) else {
        tracing::info!("TELEGRAM_WEBHOOK_URL unset: webhook not registered (the operator did it)");
        return;
    };
    let Ok(url) = url.parse() else {
        tracing::warn!("TELEGRAM_WEBHOOK_URL is not a URL; webhook not registered");
        return;
    };
    let mut request = api.set_webhook(url).allowed_updates(polling::allowed_updates());
    if let Some(secret) = settings.telegram.webhook_secret.as_ref() {
        request = request.secret_token(secret.expose().to_owned());
    }
    if let Err(error) = request.await {
        tracing::warn!(%error, "setWebhook failed");
    }
}

/// The command menu shown by Telegram clients.
fn menu() -> Vec<MenuCommand> {
    [
        ("start", "Open your account"),
        ("market", "What's trading"),
        ("quote", "A quote with buy/sell buttons"),
        ("buy", "Buy: /buy TICKER QTY [@ PRICE]"),
        ("sell", "Sell: /sell TICKER QTY [@ PRICE]"),
        ("portfolio", "Cash, holdings, net worth"),
        ("orders", "Your open orders"),
        ("history", "Your trades"),
        ("chart", "A price chart"),
        ("top", "The leaderboard (in a group: this group's)"),
        ("daily", "Claim your daily bonus"),
        ("level", "Your level and XP"),
        ("achievements", "Your achievements"),
        ("alert", "Price alert: /alert TICKER > PRICE"),
        ("alerts", "Your price alerts"),
        ("premium", "What premium gives"),
        ("help", "All commands"),
    ]
    .into_iter()
    .map(|(command, description)| MenuCommand::new(command, description))
    .collect()
}
