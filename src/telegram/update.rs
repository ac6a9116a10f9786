//! `UpdateHandler`: one Telegram update in, replies out through the sender.
//! Messages run the command path; button presses are answered at once, then
//! run once (a TTL lock per player and button makes a double press act once)
//! and refresh the message they came from where that makes sense.

use std::sync::Arc;

use actors::domain::ids::PlayerId;
use actors::ports::coordinator::Coordinator;
use teloxide_core::types::{CallbackQuery, Message, Update, UpdateKind, User};

use super::reply::Reply;
use super::sender::{Outgoing, SenderHandle};
use crate::bot::{Bot, Speaker};

/// How long a button press blocks the same press (double taps, retries).
pub const BUTTON_LOCK_TTL_MS: u64 = 10_000;

/// Commands whose answer replaces the message the button sat on.
const REFRESHING_COMMANDS: [&str; 5] = ["/quote", "/portfolio", "/market", "/history", "/orders"];

/// Handles updates for one bot.
#[derive(Clone)]
pub struct UpdateHandler {
    bot: Bot,
    sender: SenderHandle,
    coordinator: Arc<dyn Coordinator>,
}

impl UpdateHandler {
    /// A handler replying through `sender`.
    #[must_use]
    pub fn new(bot: Bot, sender: SenderHandle, coordinator: Arc<dyn Coordinator>) -> Self {
        Self { bot, sender, coordinator }
    }

    /// Processes one update; unknown kinds are ignored.
    pub async fn handle(&self, update: Update) {
        let span = tracing::info_span!("update", update_id = update.id.0);
        let _guard = span.enter();
        match update.kind {
            UpdateKind::Message(message) => self.on_message(&message).await,
            UpdateKind::CallbackQuery(query) => self.on_callback(query).await,
            // Edited messages never re-run a command (a trade must not repeat);
            // membership changes, stickers and the rest need no answer.
            _ => {}
        }
    }

    async fn on_message(&self, message: &Message) {
        let Some(text) = message.text() else { return };
        let Some(user) = message.from.as_ref().filter(|user| !user.is_bot) else { return };
        let speaker = speaker_of(user);
        let chat_id = message.chat.id.0;
        if message.chat.is_private() {
            // Writing to the bot means it is not blocked (any more).
            self.sender.unblock(chat_id);
        }
        for reply in self.bot.handle_text(&speaker, text).await {
            self.send(outgoing(chat_id, reply));
        }
    }

    async fn on_callback(&self, query: CallbackQuery) {
        // First: stop the button's spinner, before any work.
        self.send(Outgoing::AnswerCallback { callback_query_id: query.id.0.clone(), text: None });
        let Some(data) = query.data.as_deref() else { return };
        let speaker = speaker_of(&query.from);
        let Some(message) = query.message.as_ref() else { return };
        let (chat_id, message_id) = (message.chat().id.0, message.id().0);
        let lock_key = format!("btn:{}:{chat_id}:{message_id}:{data}", speaker.player.0);
        match self.coordinator.try_lock(&lock_key, BUTTON_LOCK_TTL_MS).await {
            Ok(Some(_)) => {}
            // Pressed already (a double tap or a concurrent press): act once.
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "button lock unavailable; refusing the press");
                self.send(Outgoing::Text {
                    chat_id,
                    reply: Reply::text("⏳ Temporarily unavailable. Nothing was done; try again in a moment."),
                });
                return;
            }
        }
        let refreshes = REFRESHING_COMMANDS.iter().any(|command| data.split_whitespace().next() == Some(command));
        for reply in self.bot.handle_text(&speaker, data).await {
            if refreshes && reply.photo.is_none() {
                self.send(Outgoing::Edit { chat_id, message_id, reply });
            } else {
                self.send(outgoing(chat_id, reply));
            }
        }
    }

    fn send(&self, message: Outgoing) {
        if let Err(error) = self.sender.send(message) {
            tracing::warn!(?error, "reply not queued");
        }
    }
}

/// A reply as a message: a photo with caption when it carries one.
fn outgoing(chat_id: i64, reply: Reply) -> Outgoing {
    match reply.photo.clone() {
        Some(photo) => Outgoing::Photo { chat_id, png: photo.png.as_ref().clone(), caption: reply },
        None => Outgoing::Text { chat_id, reply },
    }
}

/// The player behind a Telegram user.
#[must_use]
pub fn speaker_of(user: &User) -> Speaker {
    let mut name = user.first_name.clone();
    if let Some(last) = &user.last_name {
        name.push(' ');
        name.push_str(last);
    }
    let player = PlayerId(i64::try_from(user.id.0).unwrap_or(i64::MAX));
    Speaker { player, name: name.chars().take(64).collect() }
}
