//! Adapters of the engine's `Coordinator` port: Redis (shared by every
//! instance), local (one process), and a fallback that answers from local
//! state while Redis is down.

pub mod fallback;
pub mod local;
pub mod redis;
