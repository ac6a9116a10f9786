//! NATS for the split roles: the connection and the JetStream streams both
//! roles use (`link`), the gateway's [`Backend`](crate::backend::Backend) that
//! puts commands on the command stream and waits for their answers
//! (`backend`), and the pump that feeds the outbox stream to this gateway's
//! Telegram sender (`outbox`).

pub mod backend;
pub mod link;
pub mod outbox;

pub use backend::NatsBackend;
pub use link::{Link, LinkError, StreamLimits};
