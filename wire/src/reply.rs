//! `Reply`: one message the bot says back — HTML text (everything from
//! players or config escaped by whoever wrote it), inline buttons, and
//! optionally a picture or a Telegram Stars invoice — and its [`ReplyKind`],
//! which carries the reply rules:
//!
//! - receipts and notifications are never overwritten: a button under one
//!   always answers with a new message;
//! - views (a quote, a list, a board tab, a chart range, a page) edit in
//!   place: a [`Button::edits`] button on a view replaces that view;
//! - every error names the next step and offers it as a button where one
//!   exists;
//! - every reply fits one phone screen: at most [`REPLY_LINES_MAX`] lines and
//!   [`REPLY_CHARS_MAX`] characters (longer ones are paged or folded);
//! - text that is no command gets a short menu.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Telegram's limit on `callback_data`, in bytes.
pub const CALLBACK_DATA_LEN_MAX: usize = 64;

/// Most lines in one reply: what a phone shows without scrolling.
pub const REPLY_LINES_MAX: usize = 20;
/// Most characters in one reply (Telegram's own limit on a message).
pub const REPLY_CHARS_MAX: usize = 4_096;

/// Marks `callback_data` of a button that edits the message it sits on.
pub const EDIT_MARK: char = '~';

/// What a reply is; decides whether a button press may overwrite it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// What happened (a fill, an order placed or cancelled, a bonus, an
    /// announcement): never overwritten.
    #[default]
    Receipt,
    /// A look at the current state: its view buttons replace it in place.
    View,
    /// A mistake or refusal: says what to do next, with a button for it.
    Error,
    /// The short menu answering text that is no command.
    Menu,
}

/// An inline button; `data` is itself a command text, so the play page and
/// Telegram callbacks run the same path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub text: String,
    pub data: String,
    /// Pressing it replaces the message it sits on (a view's own
    /// navigation), instead of answering with a new message.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub edits: bool,
    /// Opens this URL as a Telegram Mini App instead of running `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_app: Option<String>,
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
        Self { text: text.into(), data, edits: false, web_app: None }
    }

    /// A button that opens `url` as a Telegram Mini App (the play page
    /// gets it as a plain button running `command`).
    #[must_use]
    pub fn web_app(text: impl Into<String>, command: impl Into<String>, url: impl Into<String>) -> Self {
        Self { web_app: Some(url.into()), ..Self::new(text, command) }
    }

    /// The `callback_data` Telegram carries: the command, after
    /// [`EDIT_MARK`] when the button edits (cut to
    /// [`CALLBACK_DATA_LEN_MAX`] bytes).
    #[must_use]
    pub fn callback_data(&self) -> String {
        if self.edits { Self::new("", format!("{EDIT_MARK}{}", self.data)).data } else { self.data.clone() }
    }

    /// Reads `callback_data`: the command, and whether the press edits.
    #[must_use]
    pub fn parse_callback(data: &str) -> (&str, bool) {
        data.strip_prefix(EDIT_MARK).map_or((data, false), |command| (command, true))
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
    /// What the reply is (see the module's rules).
    #[serde(default)]
    pub kind: ReplyKind,
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
        Self { text: text.into(), buttons: Vec::new(), kind: ReplyKind::Receipt, photo: None, invoice: None }
    }

    /// The same reply as a `kind`.
    #[must_use]
    pub fn kind(mut self, kind: ReplyKind) -> Self {
        self.kind = kind;
        self
    }

    /// Lines of text the reply shows.
    #[must_use]
    pub fn lines(&self) -> usize {
        self.text.lines().count()
    }

    /// Whether the reply fits one phone screen (the rule of this module).
    #[must_use]
    pub fn fits(&self) -> bool {
        self.lines() <= REPLY_LINES_MAX && self.text.chars().count() <= REPLY_CHARS_MAX
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
    fn an_edit_mark_rides_in_callback_data_and_reads_back() {
        let mut button = Button::new("↻", "/portfolio");
        assert_eq!(button.callback_data(), "/portfolio");
        button.edits = true;
        assert_eq!(button.callback_data(), "~/portfolio");
        assert_eq!(Button::parse_callback(&button.callback_data()), ("/portfolio", true));
        assert_eq!(Button::parse_callback("/portfolio"), ("/portfolio", false));
        button.data = format!("/market {}", "x".repeat(70));
        assert!(button.callback_data().len() <= CALLBACK_DATA_LEN_MAX);
    }

    #[test]
    fn escape_covers_html_specials() {
        assert_eq!(escape("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    }
}
