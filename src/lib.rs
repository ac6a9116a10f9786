//! stockbot's server: configuration, the command line, and (in later
//! modules) the HTTP, Telegram and storage adapters around the engine.

pub mod answers;
pub mod audit;
pub mod backfill;
pub mod bot;
pub mod chart;
pub mod cluster;
pub mod config;
pub mod coord;
pub mod loadgen;
pub mod local;
pub mod metrics;
pub mod playtest;
pub mod price_feed;
pub mod simulate;
pub mod startup;
pub mod store;
pub mod telegram;
pub mod telemetry;
