//! The chat front: parsing what players type into typed commands, and
//! rendering replies (HTML with every outside string escaped, plus buttons).
//! The same code serves Telegram and the local play page.

pub mod command;
pub mod front;
pub mod ingest;
pub mod polling;
pub mod reply;
pub mod sender;
pub mod update;
