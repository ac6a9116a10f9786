//! The shared vocabulary of stockbot's roles: what a gateway sends the
//! engine (Telegram updates, play-page messages, queries) and what comes
//! back (replies, Bot API calls, query answers), with the NATS subjects and
//! JetStream streams they travel on. Plain serde types: no engine, no I/O.

pub mod command;
pub mod outgoing;
pub mod query;
pub mod reply;
pub mod subjects;
pub mod update;

mod base64_bytes;

pub use command::{PlayCommand, PlayPlayer};
pub use outgoing::Outgoing;
pub use query::{Answer, EngineStatus, Query};
pub use reply::{Button, InvoiceSpec, Reply, ReplyKind, ReplyPhoto, escape};
