//! stockbot's server: configuration, the command line, and (in later
//! modules) the HTTP, Telegram and storage adapters around the engine.

pub mod bot;
pub mod chart;
pub mod config;
pub mod coord;
pub mod http;
pub mod loadgen;
pub mod playtest;
pub mod simulate;
pub mod startup;
pub mod store;
pub mod telegram;
pub mod telemetry;
