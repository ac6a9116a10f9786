//! The engine's side of the outbox stream: Bot API calls published for the
//! gateways' senders, each JetStream message with an id of its own, so one
//! published again (a retry, or a takeover handling a message a second
//! time) is dropped as a duplicate. [`OutboxPublisher`] waits for the
//! stream's acknowledgement; [`NatsNotifier`] is the engine's `Notifier`
//! (fills of resting orders, alerts) on top of it.

use std::sync::Arc;
use std::time::Duration;

use actors::domain::asset::Universe;
use actors::domain::ids::PlayerId;
use actors::ports::{Notice, Notifier};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use gateway::nats::Link;
use tokio::sync::mpsc;
use wire::Outgoing;
use wire::subjects::OUTBOX_SUBJECT;

use crate::telegram::sender::notice_reply;

/// Notices waiting to be published at most (past it they are dropped, logged).
pub const NOTICES_QUEUED_MAX: usize = 100_000;
/// Pause between attempts while the outbox does not acknowledge.
const RETRY_PAUSE_MS: u64 = 100;

/// Publishes Bot API calls on the outbox stream.
#[derive(Clone)]
pub struct OutboxPublisher {
    link: Link,
}

impl OutboxPublisher {
    /// A publisher on `link`.
    #[must_use]
    pub fn new(link: Link) -> Self {
        Self { link }
    }

    /// Publishes `calls` as one message with id `id`, trying until the
    /// stream acknowledges it or `attempts` are used up; returns whether it
    /// was acknowledged.
    pub async fn publish(&self, id: &str, calls: &[Outgoing], attempts: u32) -> bool {
        if calls.is_empty() {
            return true;
        }
        let payload = match serde_json::to_vec(calls) {
            Ok(payload) => Bytes::from(payload),
            Err(error) => {
                tracing::error!(%error, "outbox calls not encodable; dropped");
                return true;
            }
        };
        for attempt in 1..=attempts.max(1) {
            let message = PublishMessage::build().payload(payload.clone()).message_id(id);
            let acknowledged = async {
                let ack = self.link.jetstream.send_publish(OUTBOX_SUBJECT, message).await.map_err(|e| e.to_string())?;
                ack.await.map_err(|e| e.to_string())
            };
            match acknowledged.await {
                Ok(_) => return true,
                Err(error) => {
                    tracing::warn!(%error, id, attempt, "outbox publish not acknowledged");
                    tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS * u64::from(attempt.min(20)))).await;
                }
            }
        }
        false
    }
}

/// The engine's `Notifier` in a split deployment: each notice becomes an
/// outbox message to the player's private chat, its id taken from what it
/// is about (the trade, the order, the alert), so it goes out once.
pub struct NatsNotifier {
    queue: mpsc::Sender<(String, Outgoing)>,
    universe: Arc<Universe>,
}

impl NatsNotifier {
    /// A notifier naming assets from `universe`, publishing through
    /// `publisher` from a task of the current runtime.
    #[must_use]
    pub fn start(publisher: OutboxPublisher, universe: Arc<Universe>) -> Self {
        let (queue, mut notices) = mpsc::channel::<(String, Outgoing)>(NOTICES_QUEUED_MAX);
        tokio::spawn(async move {
            while let Some((id, call)) = notices.recv().await {
                let publisher = publisher.clone();
                tokio::spawn(async move {
                    if !publisher.publish(&id, &[call], 50).await {
                        tracing::warn!(id, "notice not published");
                    }
                });
            }
        });
        Self { queue, universe }
    }
}

/// The outbox id of a notice: what it is about.
fn notice_id(notice: &Notice) -> String {
    match notice {
        Notice::OrderFilled(trade) => format!("n:fill:{}", trade.id.0),
        Notice::OrderDropped { order } => format!("n:drop:{}", order.0),
        Notice::AlertFired { alert, .. } => format!("n:alert:{}", alert.id.0),
    }
}

impl Notifier for NatsNotifier {
    fn notify(&self, player: PlayerId, notice: Notice) {
        if player.is_local() || player.0 == 0 {
            return;
        }
        let reply = notice_reply(&notice, &self.universe);
        let call = Outgoing::Text { chat_id: player.0, reply };
        if self.queue.try_send((notice_id(&notice), call)).is_err() {
            tracing::warn!(player_id = player.0, "notice queue full; notice dropped");
        }
    }
}
