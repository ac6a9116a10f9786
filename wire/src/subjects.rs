//! The NATS names shared by gateways and engines. Commands and replies go
//! through JetStream (stored, deduplicated by message id, replayable);
//! queries, play answers, prices and the engine's heartbeat are plain NATS
//! subjects (nobody needs them after the moment has passed).

/// The stream of commands, gateway → engine.
pub const COMMAND_STREAM: &str = "STOCKBOT_COMMANDS";
/// Every subject of [`COMMAND_STREAM`].
pub const COMMAND_SUBJECTS: &str = "stockbot.cmd.>";
/// A Telegram update (the payload is the update's JSON).
pub const COMMAND_UPDATE: &str = "stockbot.cmd.update";
/// A play-page message (the payload is a `PlayCommand`).
pub const COMMAND_PLAY: &str = "stockbot.cmd.play";

/// The stream of Bot API calls, engine → senders in the gateways. Every
/// message's payload is a `Vec<Outgoing>` (empty: a marker, nothing to send).
pub const OUTBOX_STREAM: &str = "STOCKBOT_OUTBOX";
/// Every subject of [`OUTBOX_STREAM`].
pub const OUTBOX_SUBJECTS: &str = "stockbot.out.>";
/// The replies of every command-stream message up to the one named in the
/// [`THROUGH_HEADER`], one message per batch; each published only if the
/// subject's last message is the publisher's own last (an engine that lost
/// its lease cannot publish after its successor's first).
pub const OUTBOX_BATCHES: &str = "stockbot.out.batch";
/// The replies of one command-stream message published on their own (held
/// back by a slow message, or handled again after a takeover), with the
/// message id `r:<seq>`, so one published again is dropped as a duplicate.
pub const OUTBOX_SINGLES: &str = "stockbot.out.single";
/// Calls that answer nothing the chat sent — fills of resting orders,
/// alerts — and button answers, each with a message id of what it is about.
pub const OUTBOX_NOTICES: &str = "stockbot.out.notice";
/// On an [`OUTBOX_BATCHES`] message: every command-stream message up to
/// this sequence is handled and its replies are out (in this batch, an
/// earlier one or a single).
pub const THROUGH_HEADER: &str = "Stockbot-Through";
/// On an [`OUTBOX_BATCHES`] message: the lease epoch of its publisher.
pub const EPOCH_HEADER: &str = "Stockbot-Epoch";
/// The durable consumer every gateway's sender pulls from (each message
/// goes to one of them).
pub const OUTBOX_CONSUMER: &str = "senders";

/// Where the engine answers a play command: this prefix, then the
/// receiving gateway's inbox token (header [`REPLY_TO_HEADER`]).
pub const PLAY_ANSWER_PREFIX: &str = "stockbot.play";
/// The header naming the subject a play command's answer goes to.
pub const REPLY_TO_HEADER: &str = "Stockbot-Reply-To";

/// Queries for the active engine (request–reply; only the active engine
/// subscribes, in the queue group [`ENGINE_QUEUE`]).
pub const QUERY_SUBJECT: &str = "stockbot.query";
/// The queue group of active engines (at most one is subscribed at a time).
pub const ENGINE_QUEUE: &str = "engine";

/// Each market minute's prices (the payload is the `/api/stream` JSON).
pub const PRICES_SUBJECT: &str = "stockbot.prices";
/// The active engine's heartbeat (the payload is an `EngineStatus`).
pub const ENGINE_STATUS_SUBJECT: &str = "stockbot.engine.status";
