//! stockbot's gateway: everything that faces players and Telegram and keeps
//! no game state — the HTTP front (webhook, play page, `/api/…`, admin API),
//! the rate-limited Telegram sender and the polling loop. It speaks to the
//! game through the [`backend::Backend`] trait and the `wire` types only; it
//! does not depend on the engine.

pub mod backend;
pub mod batch;
pub mod http;
pub mod http1;
pub mod nats;
pub mod polling;
pub mod sender;
pub mod webapp;
