//! `Reply`: one message the bot says back — HTML text (everything from
//! players or config escaped by whoever wrote it), inline buttons, and
//! optionally a picture or a Telegram Stars invoice.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Telegram's limit on `callback_data`, in bytes.
pub const CALLBACK_DATA_LEN_MAX: usize = 64;

/// An inline button; `data` is itself a command text, so the play page and
/// Telegram callbacks run the same path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub text: String,
    pub data: String,
}

impl Button {
    /// A button that runs `command` when pressed (cut to
    /// [`CALLBACK_DATA_LEN_MAX`] bytes on a character boundary).
    #[must_use]
    pub fn new(text: impl Into<String>, command: impl Into<String>) -> Self {
        let mut data: String = command.into();
        // Cut on a character boundary (`truncate` panics inside one: a
        // category name with accents would take `/market` down).
        let end = data
            .char_indices()
            .map(|(at, c)| at + c.len_utf8())
            .take_while(|end| *end <= CALLBACK_DATA_LEN_MAX)
            .last()
            .unwrap_or(0);
        data.truncate(end);
        Self { text: text.into(), data }
    }
}

/// A picture sent with a reply (the reply's text is its caption).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyPhoto {
    /// The PNG itself, for Telegram (base64 on the wire; empty where only
    /// `url` is wanted, as on the play page).
    #[serde(with = "crate::base64_bytes::shared", default, skip_serializing_if = "is_empty")]
    pub png: Arc<Vec<u8>>,
    /// Where the play page can load the same picture.
    pub url: String,
}

fn is_empty(png: &Arc<Vec<u8>>) -> bool {
    png.is_empty()
}

/// One message to the player.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// HTML (Telegram's subset).
    pub text: String,
    /// Rows of inline buttons.
    #[serde(default)]
    pub buttons: Vec<Vec<Button>>,
    /// A picture, when the reply is one (charts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<ReplyPhoto>,
    /// A Telegram Stars invoice to send after the text (payments on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<InvoiceSpec>,
}

/// An invoice in Telegram Stars (`XTR`): one price, no provider token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceSpec {
    pub title: String,
    pub description: String,
    /// Comes back in `pre_checkout_query` and `successful_payment`.
    pub payload: String,
    pub stars: u32,
}

impl Reply {
    /// A reply without buttons.
    #[must_use]
    pub fn text(text: impl Into<String>) -> Self {
        Self { text: text.into(), buttons: Vec::new(), photo: None, invoice: None }
    }

    /// Adds a row of buttons.
    #[must_use]
    pub fn with_row(mut self, row: Vec<Button>) -> Self {
        if !row.is_empty() {
            self.buttons.push(row);
        }
        self
    }

    /// The same reply without its picture's bytes (the play page loads the
    /// picture from its URL).
    #[must_use]
    pub fn without_png(mut self) -> Self {
        if let Some(photo) = self.photo.as_mut() {
            photo.png = Arc::new(Vec::new());
        }
        self
    }
}

/// Escapes text for Telegram's HTML parse mode.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn button_data_is_cut_on_a_character_boundary() {
        let button = Button::new("x", format!("/market {}", "é".repeat(40)));
        assert!(button.data.len() <= CALLBACK_DATA_LEN_MAX);
        assert!(button.data.starts_with("/market é"));
    }

    #[test]
    fn a_reply_with_a_picture_round_trips_and_the_play_page_gets_no_bytes() {
        let mut reply = Reply::text("<b>ACME</b>").with_row(vec![Button::new("1h", "/chart ACME 1h")]);
        reply.photo = Some(ReplyPhoto { png: Arc::new(vec![137, 80, 78, 71]), url: "/api/chart?ticker=ACME".into() });
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<Reply>(&json).unwrap(), reply);
        let page = serde_json::to_value(reply.without_png()).unwrap();
        assert!(page["photo"].get("png").is_none());
        assert_eq!(page["photo"]["url"], "/api/chart?ticker=ACME");
    }

    #[test]
    fn escape_covers_html_specials() {
        assert_eq!(escape("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    }
}
