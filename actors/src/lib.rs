//! stockbot's engine: the pure, deterministic game domain (`domain`) and the
//! actix actors that own it. Infrastructure is reached only through `ports`.

pub mod clock;
pub mod config;
pub mod domain;
pub mod ports;
