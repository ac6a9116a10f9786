//! Handling one command-stream message in an active engine: a Telegram
//! update runs through the same update handler as in one process, its Bot
//! API calls collected for the outbox once the update is handled (its
//! effects are durable by then); a play message runs through the bot and
//! its answer goes back to the gateway that waits for it. The bot is keyed
//! by the message, so a message handled a second time (after a takeover)
//! applies nothing twice, and its replies go out singly under the id its
//! first handling may have used, so they go out once.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_nats::jetstream;
use bytes::Bytes;
use gateway::nats::Link;
use teloxide_core::types::{Update, UpdateKind};
use tokio::sync::OwnedSemaphorePermit;
use wire::command::PlayAnswer;
use wire::subjects::{COMMAND_PLAY, COMMAND_UPDATE, OUTBOX_NOTICES, OUTBOX_SINGLES, REPLY_TO_HEADER};
use wire::update::TextMessage;
use wire::{Outgoing, PlayCommand, PlayPlayer, Reply};

use super::super::RoleStatus;
use super::super::outbox::OutboxPublisher;
use crate::bot::local_player_id;
use crate::local::play_speaker;
use crate::telegram::outbox::Outbox;
use crate::telegram::update::UpdateHandler;

/// Attempts at publishing a message's replies before it is left for the
/// next engine (the cursor does not pass it).
const REPLY_ATTEMPTS_MAX: u32 = 100;

/// What one message asks.
enum Ask {
    /// A plain text message, read by the fast path.
    Text(TextMessage),
    Update(Box<Update>),
    Play {
        command: PlayCommand,
        reply_to: Option<String>,
    },
    /// Unreadable: skipped (logged).
    Unreadable(String),
}

/// One message taken from the stream.
pub struct Work {
    pub seq: u64,
    /// Messages of one lane (a chat, a player) are handled one at a time.
    pub lane: i64,
    ask: Ask,
    /// Its place among the messages handled at once (kept until its replies are out).
    pub slot: Option<OwnedSemaphorePermit>,
}

/// A message handled: the calls to make, or that they went out already.
pub struct Finished {
    pub calls: Vec<Outgoing>,
    pub out: bool,
}

impl Work {
    /// The work of stream message `seq`.
    #[must_use]
    pub fn new(seq: u64, message: &jetstream::Message, slot: OwnedSemaphorePermit) -> Self {
        let ask = match message.subject.as_str() {
            COMMAND_UPDATE => match TextMessage::parse(&message.payload) {
                Some(text) => Ask::Text(text),
                None => match serde_json::from_slice::<Update>(&message.payload) {
                    Ok(update) => Ask::Update(Box::new(update)),
                    Err(error) => Ask::Unreadable(format!("update: {error}")),
                },
            },
            COMMAND_PLAY => match serde_json::from_slice::<PlayCommand>(&message.payload) {
                Ok(command) => {
                    let reply_to = message
                        .headers
                        .as_ref()
                        .and_then(|headers| headers.get(REPLY_TO_HEADER))
                        .map(|value| value.as_str().to_owned());
                    Ask::Play { command, reply_to }
                }
                Err(error) => Ask::Unreadable(format!("play command: {error}")),
            },
            other => Ask::Unreadable(format!("unknown subject {other}")),
        };
        let lane = match &ask {
            Ask::Text(text) => text.chat_id,
            Ask::Update(update) => update_lane(update),
            Ask::Play { command, .. } => match &command.player {
                PlayPlayer::Local { name } => local_player_id(name).0,
                PlayPlayer::Telegram { user_id, .. } => *user_id,
            },
            Ask::Unreadable(_) => 0,
        };
        Self { seq, lane, ask, slot: Some(slot) }
    }
}

/// The chat an update belongs to (its messages are handled in order).
fn update_lane(update: &Update) -> i64 {
    match &update.kind {
        UpdateKind::Message(message) => message.chat.id.0,
        UpdateKind::CallbackQuery(query) => {
            query.message.as_ref().map_or_else(|| user_lane(query.from.id.0), |message| message.chat().id.0)
        }
        UpdateKind::PreCheckoutQuery(query) => user_lane(query.from.id.0),
        _ => i64::from(update.id.0),
    }
}

fn user_lane(user_id: u64) -> i64 {
    i64::try_from(user_id).unwrap_or(i64::MAX)
}

/// Handles messages for one active engine.
pub struct Handling {
    pub handler: UpdateHandler,
    pub publisher: OutboxPublisher,
    pub link: Link,
    /// Messages up to here may have been handled by an earlier engine.
    pub replay_through: u64,
    pub status: Arc<RoleStatus>,
}

impl Handling {
    /// Handles `work`; `None` when it was handled before (after a
    /// takeover) and its replies could not be published again (it is left
    /// for the next engine).
    pub async fn handle(&self, work: Work) -> Option<Finished> {
        let replay = work.seq <= self.replay_through;
        let bot = self.handler.bot().for_message(work.seq, replay);
        let done = match work.ask {
            Ask::Text(text) => {
                let out = Collected::new(self.publisher.clone(), work.seq);
                self.handler.handle_text_message_with(&bot, text, &out).await;
                out.finish(replay).await
            }
            Ask::Update(update) => {
                let out = Collected::new(self.publisher.clone(), work.seq);
                self.handler.handle_with(&bot, *update, &out).await;
                out.finish(replay).await
            }
            Ask::Play { command, reply_to } => {
                let speaker = play_speaker(&command.player);
                let replies: Vec<Reply> =
                    bot.handle_text(&speaker, &command.text).await.into_iter().map(Reply::without_png).collect();
                if let Some(reply_to) = reply_to {
                    self.answer(reply_to, PlayAnswer { id: command.id, replies }).await;
                }
                Some(Finished { calls: Vec::new(), out: true })
            }
            Ask::Unreadable(why) => {
                tracing::warn!(seq = work.seq, %why, "command skipped");
                Some(Finished { calls: Vec::new(), out: true })
            }
        };
        self.status.commands.fetch_add(1, Ordering::Relaxed);
        done
    }

    /// Sends a play answer to the gateway waiting for it (if it is gone,
    /// nobody waits: nothing to do).
    async fn answer(&self, subject: String, answer: PlayAnswer) {
        match serde_json::to_vec(&answer) {
            Ok(payload) => {
                if let Err(error) = self.link.client.publish(subject, Bytes::from(payload)).await {
                    tracing::warn!(%error, "play answer not sent");
                }
            }
            Err(error) => tracing::error!(%error, "play answer not encodable"),
        }
    }
}

/// The Bot API calls of one update: callback answers go out at once, the
/// replies together once the update is handled.
struct Collected {
    publisher: OutboxPublisher,
    seq: u64,
    calls: RefCell<Vec<Outgoing>>,
    immediate: AtomicU32,
}

impl Collected {
    fn new(publisher: OutboxPublisher, seq: u64) -> Self {
        Self { publisher, seq, calls: RefCell::new(Vec::new()), immediate: AtomicU32::new(0) }
    }

    /// The replies to batch; for a message handled before (`replay`), the
    /// replies published singly with the id `r:{seq}` (an earlier holder
    /// may have published them so, and then the stream drops this copy as
    /// a duplicate) — `None` if the outbox did not take them.
    async fn finish(self, replay: bool) -> Option<Finished> {
        let calls = self.calls.into_inner();
        if !replay {
            return Some(Finished { calls, out: false });
        }
        let published =
            self.publisher.publish(OUTBOX_SINGLES, &format!("r:{}", self.seq), &calls, REPLY_ATTEMPTS_MAX).await;
        published.then_some(Finished { calls: Vec::new(), out: true })
    }
}

impl Outbox for Collected {
    fn send_now(&self, message: Outgoing) {
        let id = format!("a:{}:{}", self.seq, self.immediate.fetch_add(1, Ordering::Relaxed));
        let publisher = self.publisher.clone();
        actix::spawn(async move {
            publisher.publish(OUTBOX_NOTICES, &id, &[message], 5).await;
        });
    }

    fn send(&self, message: Outgoing) {
        self.calls.borrow_mut().push(message);
    }
}
