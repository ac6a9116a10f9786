//! What the hot paths read of a Telegram update without building the whole
//! `Update` (teloxide's types are complete, and slow to parse): a gateway
//! needs the id and whether the bot handles the kind at all
//! ([`UpdateHead`]); the engine reads a plain text message from a person —
//! the bulk of all traffic — in one pass ([`TextMessage`]) and leaves
//! everything else to the complete types.

use serde::Deserialize;
use serde::de::IgnoredAny;

/// The head of an update, as a gateway reads it.
#[derive(Debug, Deserialize)]
pub struct UpdateHead {
    pub update_id: u32,
    #[serde(default)]
    message: Option<IgnoredAny>,
    #[serde(default)]
    callback_query: Option<IgnoredAny>,
    #[serde(default)]
    pre_checkout_query: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
}

impl UpdateHead {
    /// Reads the head of `json`.
    ///
    /// # Errors
    /// Not JSON, or no `update_id` that fits 32 bits (the Bot API's own bound).
    pub fn parse(json: &[u8]) -> Result<Self, serde_json::Error> {
        // An object, as the complete types take it (serde would also read
        // the fields from an array).
        if json.trim_ascii_start().first() != Some(&b'{') {
            return Err(<serde_json::Error as serde::de::Error>::custom("an update is a JSON object"));
        }
        serde_json::from_slice(json)
    }

    /// Whether the bot does anything with this kind of update (a message,
    /// a button press, a checkout); the rest is taken and ignored.
    #[must_use]
    pub fn handled(&self) -> bool {
        self.message.is_some() || self.callback_query.is_some() || self.pre_checkout_query.is_some()
    }
}

/// A plain text message from a person: no payment, no group migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMessage {
    pub update_id: u32,
    pub chat_id: i64,
    pub private: bool,
    pub user_id: u64,
    /// First and last name, as Telegram shows the user.
    pub name: String,
    pub text: String,
}

#[derive(Deserialize)]
struct TextUpdate {
    update_id: u32,
    message: Message,
}

/// The fields a message must carry to be one (as the complete types ask),
/// and those that make it more than text.
#[derive(Deserialize)]
struct Message {
    #[serde(rename = "message_id")]
    _message_id: i32,
    #[serde(rename = "date")]
    _date: i64,
    chat: Chat,
    from: Option<User>,
    text: Option<String>,
    successful_payment: Option<IgnoredAny>,
    migrate_to_chat_id: Option<IgnoredAny>,
    migrate_from_chat_id: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct User {
    id: u64,
    is_bot: bool,
    first_name: String,
    last_name: Option<String>,
}

impl TextMessage {
    /// `json` as a plain text message from a person; `None` for anything
    /// else (other kinds, service messages, bots, what does not parse).
    #[must_use]
    pub fn parse(json: &[u8]) -> Option<Self> {
        let update: TextUpdate = serde_json::from_slice(json).ok()?;
        let message = update.message;
        if message.successful_payment.is_some()
            || message.migrate_to_chat_id.is_some()
            || message.migrate_from_chat_id.is_some()
        {
            return None;
        }
        let user = message.from.filter(|user| !user.is_bot)?;
        let mut name = user.first_name;
        if let Some(last) = user.last_name {
            name.push(' ');
            name.push_str(&last);
        }
        Some(Self {
            update_id: update.update_id,
            chat_id: message.chat.id,
            private: message.chat.kind == "private",
            user_id: user.id,
            name,
            text: message.text?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TEXT: &str = r#"{"update_id":7,"message":{"message_id":3,"date":1700000000,
        "chat":{"id":42,"type":"private","first_name":"Ann"},
        "from":{"id":42,"is_bot":false,"first_name":"Ann","last_name":"Lee"},
        "text":"/buy ACME 1","entities":[{"type":"bot_command","offset":0,"length":4}]}}"#;

    #[test]
    fn a_head_knows_the_id_and_whether_the_kind_is_handled() {
        let head = UpdateHead::parse(TEXT.as_bytes()).unwrap();
        assert_eq!((head.update_id, head.handled()), (7, true));
        let member = r#"{"update_id":8,"my_chat_member":{"chat":{"id":1}}}"#;
        let head = UpdateHead::parse(member.as_bytes()).unwrap();
        assert!(!head.handled());
        assert!(UpdateHead::parse(br#"{"update_id":9,"callback_query":{"id":"q"}}"#).unwrap().handled());
        for bad in
            [&b"{not json"[..], br#"{"message":{}}"#, br#"{"update_id":-1}"#, br#"{"update_id":"1"}"#, b"[1, 2, 3]"]
        {
            assert!(UpdateHead::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_plain_text_message_reads_in_one_pass() {
        let message = TextMessage::parse(TEXT.as_bytes()).unwrap();
        assert_eq!(
            message,
            TextMessage {
                update_id: 7,
                chat_id: 42,
                private: true,
                user_id: 42,
                name: "Ann Lee".into(),
                text: "/buy ACME 1".into()
            }
        );
    }

    #[test]
    fn anything_more_than_text_is_left_to_the_complete_types() {
        let swap = |from: &str, to: &str| TEXT.replace(from, to);
        for other in [
            swap(r#""text":"/buy ACME 1","#, ""),
            swap(r#""is_bot":false"#, r#""is_bot":true"#),
            swap(r#""text":"#, r#""successful_payment":{},"text":"#),
            swap(r#""text":"#, r#""migrate_to_chat_id":-100,"text":"#),
            swap(r#""date":1700000000,"#, ""),
            swap(r#""message""#, r#""edited_message""#),
        ] {
            assert_eq!(TextMessage::parse(other.as_bytes()), None, "{other}");
        }
    }
}
