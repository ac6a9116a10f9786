//! Commands a gateway hands the engine: a Telegram update travels as its
//! own JSON (the body Telegram sent), a play-page message as a
//! [`PlayCommand`]. Each carries an id fixed at the gateway that received it,
//! kept through every retry, so a command is applied once however often it
//! is sent.

use serde::{Deserialize, Serialize};

use crate::reply::Reply;

/// Who speaks on the play page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlayPlayer {
    /// A local player, by name (ids in their own namespace).
    Local { name: String },
    /// A Telegram user, proven by Mini App `initData`.
    Telegram { user_id: i64, name: String },
}

/// A play-page (or Mini App) message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayCommand {
    /// Given once by the gateway; the dedup key of this command.
    pub id: String,
    pub player: PlayPlayer,
    pub text: String,
}

/// The engine's answer to a [`PlayCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayAnswer {
    /// The id of the command answered.
    pub id: String,
    pub replies: Vec<Reply>,
}

/// The message id (JetStream dedup key) of a Telegram update.
#[must_use]
pub fn update_msg_id(update_id: i64) -> String {
    format!("u:{update_id}")
}

/// The message id (JetStream dedup key) of a play command.
#[must_use]
pub fn play_msg_id(id: &str) -> String {
    format!("p:{id}")
}
