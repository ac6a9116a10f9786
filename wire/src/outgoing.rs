//! `Outgoing`: one Bot API call to make for a player — what the engine's
//! command path produces and a sender (in any gateway) delivers.

use serde::{Deserialize, Serialize};

use crate::reply::{InvoiceSpec, Reply};

/// One Bot API call to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Outgoing {
    /// `sendMessage` in HTML parse mode, with the reply's buttons as an inline keyboard.
    Text { chat_id: i64, reply: Reply },
    /// `sendPhoto` (multipart upload of `png`) with the reply as its HTML caption and keyboard.
    Photo {
        chat_id: i64,
        #[serde(with = "crate::base64_bytes")]
        png: Vec<u8>,
        caption: Reply,
    },
    /// `editMessageText`; "message is not modified" counts as success.
    Edit { chat_id: i64, message_id: i32, reply: Reply },
    /// `editMessageMedia`: a new picture (and caption, keyboard) for a photo
    /// message — a chart view's range tap.
    EditPhoto {
        chat_id: i64,
        message_id: i32,
        #[serde(with = "crate::base64_bytes")]
        png: Vec<u8>,
        caption: Reply,
    },
    /// `answerCallbackQuery`: not limited per chat, sent before queued messages.
    AnswerCallback { callback_query_id: String, text: Option<String> },
    /// `sendInvoice` in Telegram Stars (`XTR`, one price, empty provider token).
    Invoice { chat_id: i64, invoice: InvoiceSpec },
    /// `answerPreCheckoutQuery`: `error: None` accepts the checkout, `Some`
    /// refuses it with that message. Goes out like a callback answer (Telegram
    /// waits 10 s at most).
    AnswerPreCheckout { pre_checkout_query_id: String, error: Option<String> },
}

impl Outgoing {
    /// The chat this goes to; `None` for callback and checkout answers.
    #[must_use]
    pub fn chat_id(&self) -> Option<i64> {
        match self {
            Self::Text { chat_id, .. }
            | Self::Photo { chat_id, .. }
            | Self::Edit { chat_id, .. }
            | Self::EditPhoto { chat_id, .. }
            | Self::Invoice { chat_id, .. } => Some(*chat_id),
            Self::AnswerCallback { .. } | Self::AnswerPreCheckout { .. } => None,
        }
    }

    /// A reply as a message: a photo with caption when it carries one.
    #[must_use]
    pub fn of_reply(chat_id: i64, reply: Reply) -> Self {
        match reply.photo.clone() {
            Some(photo) => Self::Photo { chat_id, png: photo.png.as_ref().clone(), caption: reply },
            None => Self::Text { chat_id, reply },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn calls_round_trip_as_tagged_json() {
        let calls = vec![
            Outgoing::Text { chat_id: 5, reply: Reply::text("hi") },
            Outgoing::Photo { chat_id: -7, png: vec![1, 2, 3], caption: Reply::text("chart") },
            Outgoing::AnswerCallback { callback_query_id: "q1".into(), text: None },
        ];
        let json = serde_json::to_string(&calls).unwrap();
        assert!(json.contains(r#""call":"photo""#) && json.contains(r#""png":"AQID""#), "{json}");
        assert_eq!(serde_json::from_str::<Vec<Outgoing>>(&json).unwrap(), calls);
    }
}
