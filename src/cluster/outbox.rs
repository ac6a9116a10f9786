//! The engine's side of the outbox stream. Replies go out in batches on a
//! chain ([`BatchChain`]): each batch says through which command-stream
//! message replies are out, and is published only if the batches' last
//! message is the chain's own last — so an engine that lost its lease can
//! never publish after its successor opened its chain, and the successor
//! reads from the last batch where to go on. Calls that cannot wait for a
//! batch (a reply held up behind a slow command, a command handled again
//! after a takeover; fills, alerts and button answers on a subject of their
//! own) go out singly ([`OutboxPublisher`]), each with an id of what it is
//! about, so one published again is dropped as a duplicate. The engine's
//! notices go out as singles too (`super::notices`).

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use gateway::nats::Link;
use wire::Outgoing;
use wire::subjects::{EPOCH_HEADER, OUTBOX_BATCHES, OUTBOX_STREAM, THROUGH_HEADER};

/// Pause between attempts while the outbox does not acknowledge.
const RETRY_PAUSE_MS: u64 = 100;

/// Publishes Bot API calls one by one on the outbox stream.
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

    /// Publishes `calls` on `subject` as one message with id `id`, trying
    /// until the stream acknowledges it or `attempts` are used up; returns
    /// whether it was acknowledged.
    pub async fn publish(&self, subject: &'static str, id: &str, calls: &[Outgoing], attempts: u32) -> bool {
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
                let ack = self.link.jetstream.send_publish(subject, message).await?;
                ack.await
            };
            match acknowledged.await {
                Ok(_) => return true,
                Err(error) => {
                    if error.kind() == PublishErrorKind::StreamNotFound {
                        self.link.restore_streams().await;
                    }
                    tracing::warn!(%error, id, attempt, "outbox publish not acknowledged");
                    tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS * u64::from(attempt.min(20)))).await;
                }
            }
        }
        false
    }
}

/// Why a batch was not published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// Another engine published on the chain: this one lost its lease.
    Superseded,
    /// NATS did not take it (down, slow, the stream full): try again.
    Unavailable(String),
}

/// The chain of reply batches of one lease epoch.
pub struct BatchChain {
    link: Link,
    epoch: u64,
    /// Stream sequence of the batches' last message (this chain's own).
    last: u64,
}

/// The batches' last message: its stream sequence and the command-stream
/// message its replies are out through (0, 0 when there is none).
async fn last_batch(link: &Link) -> Result<(u64, u64, u64), String> {
    let stream = link.jetstream.get_stream(OUTBOX_STREAM).await.map_err(|e| e.to_string())?;
    match stream.get_last_raw_message_by_subject(OUTBOX_BATCHES).await {
        Ok(message) => {
            let header = |name: &str| {
                message.headers.get(name).and_then(|value| value.as_str().parse::<u64>().ok()).unwrap_or(0)
            };
            Ok((message.sequence, header(THROUGH_HEADER), header(EPOCH_HEADER)))
        }
        Err(error) if error.kind() == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
            Ok((0, 0, 0))
        }
        Err(error) => Err(error.to_string()),
    }
}

impl BatchChain {
    /// Opens the chain of `epoch`: reads through which command-stream
    /// message replies are out (the last batch says), then publishes an
    /// empty batch after it, which no earlier holder can publish past.
    /// Returns the chain and that message.
    ///
    /// # Errors
    /// NATS did not answer within `attempts` tries.
    pub async fn open(link: Link, epoch: u64, attempts: u32) -> Result<(Self, u64), String> {
        let mut error = String::new();
        for attempt in 1..=attempts.max(1) {
            let (last, through, _) = match last_batch(&link).await {
                Ok(found) => found,
                Err(failed) => {
                    error = failed;
                    tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS * u64::from(attempt.min(20)))).await;
                    continue;
                }
            };
            let mut chain = Self { link: link.clone(), epoch, last };
            match chain.publish(through, &[]).await {
                Ok(()) => return Ok((chain, through)),
                // An earlier holder published meanwhile: read again.
                Err(ChainError::Superseded) => {}
                Err(ChainError::Unavailable(failed)) => {
                    error = failed;
                    tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS * u64::from(attempt.min(20)))).await;
                }
            }
        }
        Err(format!("the outbox chain could not be opened: {error}"))
    }

    /// The stream sequence of the chain's last batch (the outbox is never
    /// pruned past it).
    #[must_use]
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Publishes `calls` as the batch of replies through command-stream
    /// message `through`, once: after the chain's last message, with an id
    /// of its own (a retry of one that was stored is a duplicate).
    ///
    /// # Errors
    /// `Superseded` when another engine published on the chain;
    /// `Unavailable` when NATS did not take it.
    pub async fn publish(&mut self, through: u64, calls: &[Outgoing]) -> Result<(), ChainError> {
        let payload = serde_json::to_vec(calls).map_err(|error| ChainError::Unavailable(error.to_string()))?;
        let message = PublishMessage::build()
            .payload(Bytes::from(payload))
            .message_id(format!("b:{}:{through}", self.epoch))
            .expected_last_subject_sequence(self.last)
            .header(THROUGH_HEADER, through.to_string().as_str())
            .header(EPOCH_HEADER, self.epoch.to_string().as_str());
        let acknowledged = async {
            let ack = self.link.jetstream.send_publish(OUTBOX_BATCHES, message).await?;
            ack.await
        };
        match acknowledged.await {
            Ok(ack) => {
                self.last = ack.sequence;
                Ok(())
            }
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                // A retry of this very batch that was stored after all?
                match last_batch(&self.link).await {
                    Ok((last, last_through, epoch)) if epoch == self.epoch && last_through == through => {
                        self.last = last;
                        Ok(())
                    }
                    Ok(_) => Err(ChainError::Superseded),
                    Err(error) => Err(ChainError::Unavailable(error)),
                }
            }
            Err(error) => {
                if error.kind() == PublishErrorKind::StreamNotFound {
                    // Made anew, empty: the chain's last batch is gone with
                    // it, so the next publish finds the chain broken and this
                    // engine hands over to one that opens a new chain.
                    self.link.restore_streams().await;
                }
                Err(ChainError::Unavailable(error.to_string()))
            }
        }
    }
}
