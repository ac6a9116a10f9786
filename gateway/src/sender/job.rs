//! What the sender moves around: a message prepared for the Bot API
//! (`Prepared`, keyboard built once), a `Job` with its attempt counts, the
//! `Lane` it waits in, and what a request's outcome looks like on the way
//! back to the scheduler (`Outcome`, `Done`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use teloxide_core::types::{InlineKeyboardButton, InlineKeyboardMarkup, InputFile, WebAppInfo};
use tokio::sync::oneshot;
use wire::{Button, InvoiceSpec};

use super::Outgoing;
use super::budget::Scope;

/// A request's result, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
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
    /// The send budget had no room: nothing was sent; ask again at `until`.
    Wait {
        until: Instant,
        scope: Scope,
    },
    /// The send budget says the chat blocked the bot (some sender saw the
    /// 403): nothing was sent.
    BlockedElsewhere,
}

pub(super) struct Done {
    pub(super) lane: Lane,
    pub(super) job: Job,
    pub(super) outcome: Outcome,
}

/// A message ready to be sent: keyboard built once, photo shared across retries.
#[derive(Debug, Clone)]
pub(super) enum Prepared {
    Text {
        chat_id: i64,
        text: String,
        markup: Option<InlineKeyboardMarkup>,
    },
    Photo {
        chat_id: i64,
        photo: InputFile,
        caption: String,
        markup: Option<InlineKeyboardMarkup>,
    },
    Edit {
        chat_id: i64,
        message_id: i32,
        text: String,
        markup: Option<InlineKeyboardMarkup>,
    },
    /// `editMessageMedia` with a new photo.
    EditPhoto {
        chat_id: i64,
        message_id: i32,
        photo: InputFile,
        caption: String,
        markup: Option<InlineKeyboardMarkup>,
    },
    Answer {
        callback_query_id: String,
        text: Option<String>,
    },
    /// `sendInvoice` in Telegram Stars.
    Invoice {
        chat_id: i64,
        invoice: InvoiceSpec,
    },
    /// `answerPreCheckoutQuery`: ok without an error message.
    PreCheckout {
        pre_checkout_query_id: String,
        error: Option<String>,
    },
}

impl Prepared {
    pub(super) fn retarget(&mut self, to: i64) {
        match self {
            Self::Text { chat_id, .. }
            | Self::Photo { chat_id, .. }
            | Self::Edit { chat_id, .. }
            | Self::EditPhoto { chat_id, .. }
            | Self::Invoice { chat_id, .. } => *chat_id = to,
            Self::Answer { .. } | Self::PreCheckout { .. } => {}
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) request: Prepared,
    /// Transient failures so far.
    pub(super) attempts: u32,
    /// 429 answers so far.
    pub(super) retries_429: u32,
    /// It answers a message the chat just sent (the chat is not blocking
    /// the bot, whatever an old mark says).
    pub(super) replying: bool,
    /// Told when the job is done: dropped with its last copy, whether it
    /// was sent, given up or discarded.
    pub(super) completion: Option<Arc<Completion>>,
}

/// Fires its signal when dropped (see [`Job::completion`]).
#[derive(Debug)]
pub(super) struct Completion(Option<oneshot::Sender<()>>);

impl Completion {
    pub(super) fn new() -> (Arc<Self>, oneshot::Receiver<()>) {
        let (done, wait) = oneshot::channel();
        (Arc::new(Self(Some(done))), wait)
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            let _ = done.send(());
        }
    }
}

impl Job {
    pub(super) fn prepare(message: Outgoing) -> (Lane, Self) {
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
            Outgoing::EditPhoto { chat_id, message_id, png, caption } => {
                let markup = keyboard(&caption.buttons);
                let photo = InputFile::memory(png).file_name("chart.png");
                (Lane::Chat(chat_id), Prepared::EditPhoto { chat_id, message_id, photo, caption: caption.text, markup })
            }
            Outgoing::AnswerCallback { callback_query_id, text } => {
                (Lane::Callback, Prepared::Answer { callback_query_id, text })
            }
            Outgoing::Invoice { chat_id, invoice } => (Lane::Chat(chat_id), Prepared::Invoice { chat_id, invoice }),
            // Telegram gives a checkout 10 s: it goes out with the callback answers.
            Outgoing::AnswerPreCheckout { pre_checkout_query_id, error } => {
                (Lane::Callback, Prepared::PreCheckout { pre_checkout_query_id, error })
            }
        };
        (lane, Self { request, attempts: 0, retries_429: 0, replying: false, completion: None })
    }
}

fn keyboard(rows: &[Vec<Button>]) -> Option<InlineKeyboardMarkup> {
    if rows.iter().all(Vec::is_empty) {
        return None;
    }
    Some(InlineKeyboardMarkup::new(rows.iter().filter(|row| !row.is_empty()).map(|row| {
        row.iter().map(|button| match button.web_app.as_deref().and_then(|url| url.parse().ok()) {
            Some(url) => InlineKeyboardButton::web_app(button.text.clone(), WebAppInfo { url }),
            None => InlineKeyboardButton::callback(button.text.clone(), button.callback_data()),
        })
    })))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    Callback,
    Chat(i64),
}

pub(super) struct Dispatch {
    pub(super) lane: Lane,
    pub(super) job: Job,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use wire::Reply;

    use super::*;

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
}
