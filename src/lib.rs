//! stockbot's server: configuration, the command line, and (in later
//! modules) the HTTP, Telegram and storage adapters around the engine.

pub mod config;
pub mod simulate;
