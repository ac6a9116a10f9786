//! `Link`: one NATS connection with its JetStream context, and the two
//! streams of a split deployment — commands (gateway → engine) and the
//! outbox (engine → senders, each message taken by one sender through a
//! shared durable consumer). Both keep their messages by limits (bounded,
//! new messages refused when full, so nothing acknowledged is ever
//! dropped); the active engine purges what was handled: commands behind its
//! cursor, outbox messages every sender acknowledged, but the outbox's last
//! batch, which says how far replies are out.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use wire::subjects::{COMMAND_STREAM, COMMAND_SUBJECTS, OUTBOX_STREAM, OUTBOX_SUBJECTS};

/// Longest wait for one JetStream API answer (publish acks included).
pub const JETSTREAM_TIMEOUT_MS: u64 = 5_000;
/// Most publishes awaiting their acknowledgement on one connection.
pub const PUBLISH_IN_FLIGHT_MAX: usize = 65_536;
/// JetStream drops a message whose id it saw within this window.
pub const DUPLICATE_WINDOW_MS: u64 = 600_000;
/// Longest pause between two reconnection attempts.
const RECONNECT_DELAY_MAX_MS: u64 = 1_000;

/// Why NATS could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("NATS at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("JetStream refused the stream {stream}: {reason}")]
    Stream { stream: &'static str, reason: String },
}

/// Bounds of the streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    pub command_max_bytes: i64,
    pub command_max_age: Duration,
    pub outbox_max_bytes: i64,
}

/// A NATS connection and its JetStream context. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Link {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    /// Counts the connections made after the first (a reconnection): a
    /// consumer reads anew at once instead of waiting out missed heartbeats.
    reconnections: tokio::sync::watch::Receiver<u64>,
    /// The bounds the streams were made with, to make them again if
    /// JetStream lost them (its store gone).
    limits: std::sync::Arc<std::sync::Mutex<Option<StreamLimits>>>,
}

impl Link {
    /// Connects as `name`, trying for up to `wait` (NATS may still be
    /// starting); later outages are ridden out by reconnecting.
    ///
    /// # Errors
    /// `Unreachable` when no connection came within `wait`.
    pub async fn connect(url: &str, name: &str, wait: Duration) -> Result<Self, LinkError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut delay = Duration::from_millis(100);
        let (reconnected, reconnections) = tokio::sync::watch::channel(0_u64);
        let reconnected = std::sync::Arc::new(reconnected);
        loop {
            let reconnected = std::sync::Arc::clone(&reconnected);
            let options = async_nats::ConnectOptions::new()
                .name(name)
                .connection_timeout(Duration::from_secs(2))
                .reconnect_delay_callback(|attempts| {
                    Duration::from_millis((attempts as u64 * 100).min(RECONNECT_DELAY_MAX_MS))
                })
                .event_callback(move |event| {
                    let reconnected = std::sync::Arc::clone(&reconnected);
                    async move {
                        match event {
                            async_nats::Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
                            async_nats::Event::Connected => {
                                tracing::info!("NATS connected");
                                reconnected.send_modify(|count| *count += 1);
                            }
                            other => tracing::debug!(%other, "NATS event"),
                        }
                    }
                });
            match options.connect(url).await {
                Ok(client) => {
                    let jetstream = jetstream::ContextBuilder::new()
                        .timeout(Duration::from_millis(JETSTREAM_TIMEOUT_MS))
                        .max_ack_inflight(PUBLISH_IN_FLIGHT_MAX)
                        .backpressure_on_inflight(true)
                        .build(client.clone());
                    let mut reconnections = reconnections.clone();
                    reconnections.mark_unchanged();
                    return Ok(Self { client, jetstream, reconnections, limits: std::sync::Arc::default() });
                }
                Err(error) if tokio::time::Instant::now() + delay < deadline => {
                    tracing::warn!(%error, "NATS not reachable yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(error) => return Err(LinkError::Unreachable { url: url.to_owned(), reason: error.to_string() }),
            }
        }
    }

    /// Changes whenever the connection comes back after a loss (from the
    /// moment of this call on).
    #[must_use]
    pub fn reconnections(&self) -> tokio::sync::watch::Receiver<u64> {
        let mut receiver = self.reconnections.clone();
        receiver.mark_unchanged();
        receiver
    }

    /// Whether the connection is up now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Makes the streams again with the bounds `ensure_streams` was given,
    /// after JetStream answered that one is gone (NATS came back without
    /// its store): a process that finds a stream missing restores it at
    /// once instead of waiting for the next one to start. Whether they are
    /// in place.
    pub async fn restore_streams(&self) -> bool {
        let limits = *self.limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(limits) = limits else { return false };
        match self.ensure_streams(limits).await {
            Ok(()) => {
                tracing::warn!("a JetStream stream was gone: made anew");
                true
            }
            Err(error) => {
                tracing::warn!(%error, "a JetStream stream is gone and could not be made anew");
                false
            }
        }
    }

    /// Whether a stream lookup failed because JetStream has no such stream.
    #[must_use]
    pub fn is_missing(error: &jetstream::context::GetStreamError) -> bool {
        matches!(
            error.kind(),
            jetstream::context::GetStreamErrorKind::JetStream(error)
                if error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
        )
    }

    /// Creates the streams, or brings their bounds up to date.
    ///
    /// # Errors
    /// JetStream off, or a stream it refuses.
    pub async fn ensure_streams(&self, limits: StreamLimits) -> Result<(), LinkError> {
        *self.limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(limits);
        let commands = stream::Config {
            name: COMMAND_STREAM.to_owned(),
            subjects: vec![COMMAND_SUBJECTS.to_owned()],
            retention: stream::RetentionPolicy::Limits,
            // Full: refuse new commands (the webhook answers 503, Telegram
            // retries) rather than drop acknowledged ones.
            discard: stream::DiscardPolicy::New,
            max_bytes: limits.command_max_bytes,
            max_age: limits.command_max_age,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_millis(DUPLICATE_WINDOW_MS),
            ..Default::default()
        };
        let outbox = stream::Config {
            name: OUTBOX_STREAM.to_owned(),
            subjects: vec![OUTBOX_SUBJECTS.to_owned()],
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::New,
            max_bytes: limits.outbox_max_bytes,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_millis(DUPLICATE_WINDOW_MS),
            ..Default::default()
        };
        // An outbox made by an older version was a work queue: its retention
        // cannot change in place, so it is made anew (once).
        if let Ok(old) = self.jetstream.get_stream(OUTBOX_STREAM).await
            && let Ok(info) = old.get_info().await
            && info.config.retention != stream::RetentionPolicy::Limits
        {
            tracing::warn!(
                messages = info.state.messages,
                "the outbox stream is a work queue of an older version: made anew"
            );
            self.jetstream
                .delete_stream(OUTBOX_STREAM)
                .await
                .map_err(|error| LinkError::Stream { stream: OUTBOX_STREAM, reason: error.to_string() })?;
        }
        for (name, config) in [(COMMAND_STREAM, commands), (OUTBOX_STREAM, outbox)] {
            self.jetstream
                .create_or_update_stream(config)
                .await
                .map_err(|error| LinkError::Stream { stream: name, reason: error.to_string() })?;
        }
        Ok(())
    }
}
