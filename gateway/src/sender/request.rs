//! One Bot API request: `execute` sends a prepared message with teloxide,
//! `classify` sorts the result into what the scheduler does next.

use std::time::Duration;

use teloxide_core::payloads::{
    AnswerCallbackQuerySetters, AnswerPreCheckoutQuerySetters, EditMessageMediaSetters, EditMessageTextSetters,
    SendInvoiceSetters, SendMessageSetters, SendPhotoSetters,
};
use teloxide_core::requests::Requester;
use teloxide_core::types::{
    CallbackQueryId, ChatId, InputMedia, InputMediaPhoto, LabeledPrice, MessageId, ParseMode, PreCheckoutQueryId,
};
use teloxide_core::{ApiError, Bot, RequestError};

use super::STARS_CURRENCY;
use super::job::{Outcome, Prepared};

/// Telegram's limits on an invoice's title and description, in characters.
const INVOICE_TITLE_CHARS_MAX: usize = 32;
const INVOICE_DESCRIPTION_CHARS_MAX: usize = 255;

pub(super) async fn execute(bot: &Bot, request: &Prepared) -> Result<(), RequestError> {
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
pub(super) fn classify(result: Result<(), RequestError>, request: &Prepared, token: &str) -> Outcome {
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
