//! stockbot's engine: the pure, deterministic game domain (`domain`) and the
//! actix actors that own it. Infrastructure is reached only through `ports`.

pub mod asset;
pub mod clock;
pub mod config;
pub mod domain;
pub mod engine;
pub mod market;
pub mod metrics;
pub mod persistence;
pub mod portfolio;
pub mod ports;
pub mod ticker;
