//! `UpdateHandler`: one Telegram update in, Bot API calls out through an
//! [`Outbox`].
//! Messages run the command path; button presses are answered at once, then
//! run once (a TTL lock per player and button makes a double press act once).
//! A press on a view's own button ([`Button::edits`]) replaces that view in
//! place (`editMessageText`, or `editMessageMedia` for a chart); any other
//! press answers with a new message, so receipts are never overwritten. Payments:
//! a pre-checkout query is answered at once (accepted only for an invoice we
//! issue, at today's price, in Stars), a successful payment grants premium
//! (once per charge, engine-side). A group that became a supergroup takes its
//! board along.

use std::sync::Arc;

use tracing::Instrument as _;

use actors::domain::ids::PlayerId;
use actors::ports::coordinator::Coordinator;
use teloxide_core::types::{CallbackQuery, Message, PreCheckoutQuery, SuccessfulPayment, Update, UpdateKind, User};
use wire::update::TextMessage;

use super::outbox::Outbox;
use super::reply::{Button, Reply, ReplyKind};
use super::sender::{Outgoing, STARS_CURRENCY};
use crate::bot::{Bot, PREMIUM_PAYLOAD, Speaker};

/// Longest display name taken from Telegram, in chars.
const SPEAKER_NAME_CHARS_MAX: usize = 64;

/// How long a button press blocks the same press (double taps, retries).
pub const BUTTON_LOCK_TTL_MS: u64 = 10_000;

/// Handles updates for one bot.
#[derive(Clone)]
pub struct UpdateHandler {
    bot: Bot,
    coordinator: Arc<dyn Coordinator>,
}

/// One update being handled: the bot and where its calls go.
struct Handling<'a, O: Outbox> {
    bot: &'a Bot,
    coordinator: &'a dyn Coordinator,
    out: &'a O,
}

impl UpdateHandler {
    /// A handler over `bot`, locking buttons through `coordinator`.
    #[must_use]
    pub fn new(bot: Bot, coordinator: Arc<dyn Coordinator>) -> Self {
        Self { bot, coordinator }
    }

    /// The bot behind the handler.
    #[must_use]
    pub fn bot(&self) -> &Bot {
        &self.bot
    }

    /// Processes one update with `bot` (this handler's, or one of its
    /// per-command variants), its calls going to `out`; unknown kinds are
    /// ignored.
    pub async fn handle_with<O: Outbox>(&self, bot: &Bot, update: Update, out: &O) {
        let span = tracing::info_span!("update", update_id = update.id.0);
        let handling = Handling { bot, coordinator: self.coordinator.as_ref(), out };
        async {
            match update.kind {
                UpdateKind::Message(message) => handling.on_message(&message).await,
                UpdateKind::CallbackQuery(query) => handling.on_callback(query).await,
                UpdateKind::PreCheckoutQuery(query) => handling.on_pre_checkout(&query),
                // Edited messages never re-run a command (a trade must not repeat);
                // membership changes, stickers and the rest need no answer.
                _ => {}
            }
        }
        .instrument(span)
        .await;
    }

    /// Processes a plain text message (read by the fast path,
    /// `wire::update::TextMessage`) with `bot`, exactly as `handle_with`
    /// processes the same update.
    pub async fn handle_text_message_with<O: Outbox>(&self, bot: &Bot, message: TextMessage, out: &O) {
        let span = tracing::info_span!("update", update_id = message.update_id);
        let handling = Handling { bot, coordinator: self.coordinator.as_ref(), out };
        let speaker = Speaker {
            player: PlayerId(i64::try_from(message.user_id).unwrap_or(i64::MAX)),
            chat: (!message.private).then_some(message.chat_id),
            name: message.name.chars().take(SPEAKER_NAME_CHARS_MAX).collect(),
        };
        handling.on_text(&speaker, message.chat_id, &message.text).instrument(span).await;
    }

    /// Processes one update with this handler's bot.
    pub async fn handle<O: Outbox>(&self, update: Update, out: &O) {
        self.handle_with(&self.bot, update, out).await;
    }
}

impl<O: Outbox> Handling<'_, O> {
    async fn on_message(&self, message: &Message) {
        let chat_id = message.chat.id.0;
        if let Some(to) = message.migrate_to_chat_id() {
            // Telegram also sends a `migrate_from_chat_id` message in the new
            // chat; acting on this one only moves the board once.
            tracing::info!(from_chat = chat_id, to_chat = to.0, "group became a supergroup");
            self.bot.migrate_group(chat_id, to.0).await;
            return;
        }
        let Some(user) = message.from.as_ref().filter(|user| !user.is_bot) else { return };
        let speaker = Speaker { chat: (!message.chat.is_private()).then_some(chat_id), ..speaker_of(user) };
        if let Some(payment) = message.successful_payment() {
            self.on_payment(&speaker, chat_id, payment).await;
            return;
        }
        if let Some(text) = message.text() {
            self.on_text(&speaker, chat_id, text).await;
        }
    }

    /// A text from `speaker` in `chat_id`: the command path's replies.
    async fn on_text(&self, speaker: &Speaker, chat_id: i64, text: &str) {
        for reply in self.bot.handle_text(speaker, text).await {
            self.send_reply(chat_id, reply);
        }
    }

    /// Telegram took the money: grant what was bought (the engine grants
    /// once per charge id, so a redelivered payment does not grant twice).
    async fn on_payment(&self, speaker: &Speaker, chat_id: i64, payment: &SuccessfulPayment) {
        let charge_id = &payment.telegram_payment_charge_id.0;
        tracing::info!(
            player_id = speaker.player.0,
            charge_id = %charge_id,
            stars = payment.total_amount,
            currency = %payment.currency,
            "successful payment"
        );
        // A redelivered payment gets no reply: the engine saw its charge id.
        for reply in self.bot.grant_payment(speaker, charge_id, &payment.invoice_payload).await {
            self.send_reply(chat_id, reply);
        }
    }

    /// Answers at once: Telegram cancels a checkout not answered within 10 s.
    fn on_pre_checkout(&self, query: &PreCheckoutQuery) {
        let error = checkout_refusal(
            &query.currency,
            query.total_amount,
            &query.invoice_payload,
            self.bot.premium_price_stars(),
        );
        if let Some(reason) = &error {
            tracing::info!(player_id = query.from.id.0, %reason, "checkout refused");
        }
        self.out.send_now(Outgoing::AnswerPreCheckout { pre_checkout_query_id: query.id.0.clone(), error });
    }

    async fn on_callback(&self, query: CallbackQuery) {
        // First: stop the button's spinner, before any work.
        self.out.send_now(Outgoing::AnswerCallback { callback_query_id: query.id.0.clone(), text: None });
        let Some(data) = query.data.as_deref() else { return };
        let Some(message) = query.message.as_ref() else { return };
        let (command, edits) = Button::parse_callback(data);
        // What the tapped message shows (an inaccessible one cannot be edited).
        let tapped_photo = message.regular_message().map(|tapped| tapped.photo().is_some());
        let (chat_id, message_id) = (message.chat().id.0, message.id().0);
        let speaker = Speaker { chat: (!message.chat().is_private()).then_some(chat_id), ..speaker_of(&query.from) };
        let lock_key = format!("btn:{}:{chat_id}:{message_id}:{data}", speaker.player.0);
        // A press delivered again after a takeover took its lock the first time.
        let lock = if self.bot.is_replay() {
            Ok(Some(actors::ports::coordinator::LockToken(String::new())))
        } else {
            self.coordinator.try_lock(&lock_key, BUTTON_LOCK_TTL_MS).await
        };
        match lock {
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
        for reply in self.bot.handle_text(&speaker, command).await {
            let in_place = edits && reply.kind == ReplyKind::View && reply.invoice.is_none();
            match (in_place, tapped_photo, reply.photo.clone()) {
                (true, Some(false), None) => self.send(Outgoing::Edit { chat_id, message_id, reply }),
                (true, Some(true), Some(photo)) => {
                    let png = photo.png.as_ref().clone();
                    self.send(Outgoing::EditPhoto { chat_id, message_id, png, caption: reply });
                }
                _ => self.send_reply(chat_id, reply),
            }
        }
    }

    /// Queues a reply: its text (or photo), then its invoice if it has one.
    fn send_reply(&self, chat_id: i64, mut reply: Reply) {
        let invoice = reply.invoice.take();
        self.send(Outgoing::of_reply(chat_id, reply));
        if let Some(invoice) = invoice {
            self.send(Outgoing::Invoice { chat_id, invoice });
        }
    }

    fn send(&self, message: Outgoing) {
        self.out.send(message);
    }
}

/// Why a checkout is refused (shown to the payer), or `None` to accept it:
/// only our own premium invoice, in Stars, at the price configured now.
#[must_use]
pub fn checkout_refusal(currency: &str, total_amount: u32, payload: &str, price_stars: Option<u32>) -> Option<String> {
    let Some(price) = price_stars else {
        return Some("Payments are switched off right now. Nothing was charged.".to_owned());
    };
    if !payload.starts_with(PREMIUM_PAYLOAD) || currency != STARS_CURRENCY {
        return Some("This invoice is not one of ours. Send /premium for a new one.".to_owned());
    }
    if total_amount != price {
        return Some(format!("The price is now {price} ⭐. Send /premium for a new invoice."));
    }
    None
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
    Speaker { player, chat: None, name: name.chars().take(SPEAKER_NAME_CHARS_MAX).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_premium_invoice_in_stars_at_todays_price_checks_out() {
        assert_eq!(checkout_refusal("XTR", 50, "premium", Some(50)), None);
        assert_eq!(checkout_refusal("XTR", 50, "premium:42", Some(50)), None);
        let refused = |currency, amount, payload, price| checkout_refusal(currency, amount, payload, price).is_some();
        assert!(refused("XTR", 50, "premium", None), "payments off");
        assert!(refused("USD", 50, "premium", Some(50)), "not Stars");
        assert!(refused("XTR", 50, "gift", Some(50)), "not our payload");
        assert!(refused("XTR", 50, "", Some(50)), "empty payload");
        assert!(refused("XTR", 40, "premium", Some(50)), "an old price");
    }
}
