//! The chat front on the engine side: parsing what players type into typed
//! commands, rendering replies (HTML with every outside string escaped, plus
//! buttons), handling Telegram updates, and the in-process ingest queue. The
//! same code serves Telegram and the local play page.

pub mod command;
pub mod front;
pub mod ingest;
pub mod outbox;
pub mod reply;
pub mod sender;
pub mod update;

pub use gateway::polling;
