//! One Bot API request: `execute` sends a prepared message — texts, edits
//! and answers as plain JSON posts whose answer is read only as far as
//! success or error ([`JsonCalls`]: teloxide would parse the whole `Message`
//! Telegram returns, most of a send's cost), photos and invoices with
//! teloxide — and `classify` sorts the result into what the scheduler does
//! next.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use teloxide_core::payloads::{EditMessageMediaSetters, SendInvoiceSetters, SendPhotoSetters};
use teloxide_core::requests::{Request, Requester};
use teloxide_core::types::{
    ChatId, InlineKeyboardMarkup, InputMedia, InputMediaPhoto, LabeledPrice, MessageId, ParseMode, ResponseParameters,
};
use teloxide_core::{ApiError, Bot, RequestError};

use super::STARS_CURRENCY;
use super::job::{Outcome, Prepared};

/// Telegram's limits on an invoice's title and description, in characters.
const INVOICE_TITLE_CHARS_MAX: usize = 32;
const INVOICE_DESCRIPTION_CHARS_MAX: usize = 255;

/// The Bot API methods called as plain JSON posts: their URLs (with the
/// token), built once, and the bot's HTTP client — or, for a Bot API
/// server reached over plain HTTP without a proxy (a local
/// `telegram-bot-api`, a test double), a pool of lean keep-alive
/// connections to it (`crate::http1`), which cost a fraction of reqwest's CPU.
pub(super) struct JsonCalls {
    client: reqwest::Client,
    lean: Option<crate::http1::Pool>,
    send_message: reqwest::Url,
    edit_message_text: reqwest::Url,
    answer_callback_query: reqwest::Url,
    answer_pre_checkout_query: reqwest::Url,
}

/// Longest a lean call waits for its answer.
const LEAN_TIMEOUT_MS: u64 = 30_000;
/// Lean connections kept open while unused.
const LEAN_IDLE_MAX: usize = 512;

/// The address of a plain-HTTP Bot API server that no proxy setting
/// applies to; `None` when calls must go through reqwest.
fn lean_address(url: &reqwest::Url) -> Option<std::net::SocketAddr> {
    use std::net::ToSocketAddrs as _;
    let proxied =
        ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"].iter().any(|name| std::env::var_os(name).is_some());
    if url.scheme() != "http" || proxied {
        return None;
    }
    let host = url.host_str()?;
    (host, url.port_or_known_default()?).to_socket_addrs().ok()?.next()
}

impl JsonCalls {
    /// The calls of `bot` (its API URL, token and client).
    pub(super) fn of(bot: &Bot) -> Arc<Self> {
        let url = |method: &str| {
            let mut url = bot.api_url();
            // A base URL that cannot take a path is caught at start-up by teloxide's own calls.
            if let Ok(mut segments) = url.path_segments_mut() {
                segments.pop_if_empty().push(&format!("bot{}", bot.token())).push(method);
            }
            url
        };
        let lean = lean_address(&bot.api_url()).map(|address| crate::http1::Pool::new(address, LEAN_IDLE_MAX));
        Arc::new(Self {
            client: bot.client().clone(),
            lean,
            send_message: url("sendMessage"),
            edit_message_text: url("editMessageText"),
            answer_callback_query: url("answerCallbackQuery"),
            answer_pre_checkout_query: url("answerPreCheckoutQuery"),
        })
    }

    /// Posts `body` to `url`; `Ok` when Telegram says `ok`, else its error
    /// as teloxide would report it.
    async fn post(&self, url: &reqwest::Url, body: &impl Serialize) -> Result<(), RequestError> {
        let body = serde_json::to_vec(body).map_err(|source| invalid_json(source, ""))?;
        let bytes = match &self.lean {
            Some(pool) => {
                let posted = pool.post(url.path(), &body);
                let answer = tokio::time::timeout(Duration::from_millis(LEAN_TIMEOUT_MS), posted)
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
                    .and_then(|answer| answer)
                    .map_err(|error| RequestError::Io(Arc::new(error)))?;
                bytes::Bytes::from(answer.body)
            }
            // Boxed: reqwest's future is kilobytes, and every send task
            // would carry (and move) that much even on the lean path.
            None => {
                Box::pin(async {
                    let response = self
                        .client
                        .post(url.clone())
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body)
                        .send()
                        .await?;
                    response.bytes().await
                })
                .await?
            }
        };
        let answer: Answer =
            serde_json::from_slice(&bytes).map_err(|source| invalid_json(source, &String::from_utf8_lossy(&bytes)))?;
        if answer.ok {
            return Ok(());
        }
        Err(match (answer.parameters, answer.description) {
            (Some(ResponseParameters::RetryAfter(seconds)), _) => RequestError::RetryAfter(seconds),
            (Some(ResponseParameters::MigrateToChatId(chat)), _) => RequestError::MigrateToChatId(chat),
            (None, Some(error)) => RequestError::Api(error),
            (None, None) => RequestError::Api(ApiError::Unknown("an error without a description".to_owned())),
        })
    }
}

fn invalid_json(source: serde_json::Error, raw: &str) -> RequestError {
    RequestError::InvalidJson { source: Arc::new(source), raw: raw.into() }
}

/// A Bot API answer, read only as far as success or error (its `result`
/// is skipped unparsed).
#[derive(Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    description: Option<ApiError>,
    #[serde(default)]
    parameters: Option<ResponseParameters>,
}

#[derive(Serialize)]
struct SendMessage<'a> {
    chat_id: i64,
    text: &'a str,
    parse_mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_markup: Option<&'a InlineKeyboardMarkup>,
}

#[derive(Serialize)]
struct EditMessageText<'a> {
    chat_id: i64,
    message_id: i32,
    text: &'a str,
    parse_mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_markup: Option<&'a InlineKeyboardMarkup>,
}

#[derive(Serialize)]
struct AnswerCallbackQuery<'a> {
    callback_query_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

#[derive(Serialize)]
struct AnswerPreCheckoutQuery<'a> {
    pre_checkout_query_id: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
}

const HTML: &str = "HTML";

pub(super) async fn execute(bot: &Bot, json: &JsonCalls, request: &Prepared) -> Result<(), RequestError> {
    match request {
        Prepared::Text { chat_id, text, markup } => {
            let body = SendMessage { chat_id: *chat_id, text, parse_mode: HTML, reply_markup: markup.as_ref() };
            json.post(&json.send_message, &body).await
        }
        Prepared::Photo { chat_id, photo, caption, markup } => {
            let mut call = bot.send_photo(ChatId(*chat_id), photo.clone());
            if !caption.is_empty() {
                call = call.caption(caption.clone()).parse_mode(ParseMode::Html);
            }
            if let Some(markup) = markup {
                call = call.reply_markup(markup.clone());
            }
            Box::pin(call.send()).await.map(drop)
        }
        Prepared::Edit { chat_id, message_id, text, markup } => {
            let body = EditMessageText {
                chat_id: *chat_id,
                message_id: *message_id,
                text,
                parse_mode: HTML,
                reply_markup: markup.as_ref(),
            };
            json.post(&json.edit_message_text, &body).await
        }
        Prepared::EditPhoto { chat_id, message_id, photo, caption, markup } => {
            let media = InputMediaPhoto::new(photo.clone()).caption(caption.clone()).parse_mode(ParseMode::Html);
            let mut call = bot.edit_message_media(ChatId(*chat_id), MessageId(*message_id), InputMedia::Photo(media));
            if let Some(markup) = markup {
                call = call.reply_markup(markup.clone());
            }
            Box::pin(call.send()).await.map(drop)
        }
        Prepared::Answer { callback_query_id, text } => {
            let body = AnswerCallbackQuery { callback_query_id, text: text.as_deref() };
            json.post(&json.answer_callback_query, &body).await
        }
        Prepared::Invoice { chat_id, invoice } => {
            let title: String = invoice.title.chars().take(INVOICE_TITLE_CHARS_MAX).collect();
            let description: String = invoice.description.chars().take(INVOICE_DESCRIPTION_CHARS_MAX).collect();
            let price = LabeledPrice::new(title.clone(), invoice.stars);
            let call = bot
                .send_invoice(ChatId(*chat_id), title, description, invoice.payload.clone(), STARS_CURRENCY, [price])
                // Telegram Stars take no payment provider: its token is empty.
                .provider_token("");
            Box::pin(call.send()).await.map(drop)
        }
        Prepared::PreCheckout { pre_checkout_query_id, error } => {
            let body =
                AnswerPreCheckoutQuery { pre_checkout_query_id, ok: error.is_none(), error_message: error.as_deref() };
            json.post(&json.answer_pre_checkout_query, &body).await
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
