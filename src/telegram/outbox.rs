//! `Outbox`: where the Bot API calls of a handled update go. In one process
//! they go straight to the sender (the update's effects are durable by the
//! time its replies are made); in an engine they are published for the
//! gateways' senders once the update is handled.

use super::sender::{Outgoing, SenderHandle};

/// Where a handled update's Bot API calls go.
pub trait Outbox {
    /// Goes out at once, before the update's work (callback and checkout
    /// answers: they only stop a spinner or a checkout timer).
    fn send_now(&self, message: Outgoing);
    /// Goes out with the update's replies (a reply also tells the sender
    /// the chat has not blocked the bot: it just wrote to it).
    fn send(&self, message: Outgoing);
}

impl Outbox for SenderHandle {
    fn send_now(&self, message: Outgoing) {
        Outbox::send(self, message);
    }

    fn send(&self, message: Outgoing) {
        if let Err(error) = SenderHandle::send_reply(self, message) {
            tracing::warn!(?error, "reply not queued");
        }
    }
}
