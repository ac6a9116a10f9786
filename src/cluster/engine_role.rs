//! What an active `engine` process does ([`EngineDuty`]): it consumes the
//! command stream from the cursor (`consumer`, `handling`), answers the
//! gateways' reads (request–reply on a subject only the active engine
//! listens to), publishes prices and a heartbeat naming itself, keeps the
//! cursor moving into the lease, prunes what the cursor left behind, and —
//! in polling mode — is the one process that calls `getUpdates`.

pub mod consumer;
pub mod handling;
pub mod replies;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::Actor as _;
use actors::engine::Engine;
use actors::ports::coordinator::Coordinator;
use actors::ports::{Notifier, NullNotifier};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures_util::StreamExt as _;
use gateway::nats::Link;
use gateway::polling::UpdateSink;
use teloxide_core::types::Update;
use tokio::sync::{broadcast, watch};
use wire::command::update_msg_id;
use wire::subjects::{
    COMMAND_STREAM, COMMAND_UPDATE, ENGINE_QUEUE, ENGINE_STATUS_SUBJECT, OUTBOX_CONSUMER, OUTBOX_STREAM,
    PRICES_SUBJECT, QUERY_SUBJECT,
};
use wire::{Answer, Query};

use self::consumer::Consumer;
use self::handling::Handling;
use super::RoleStatus;
use super::election::{Active, Duty};
use super::notices::{NatsNotifier, Republish};
use super::outbox::{BatchChain, OutboxPublisher};
use crate::answers::Answers;
use crate::config::Settings;
use crate::price_feed::{PriceFeed, STREAM_BACKLOG_MAX};
use crate::store::postgres::PostgresStore;
use crate::store::postgres::lease::Fence;
use crate::telegram::front::{Mode, TelegramClient};
use crate::telegram::update::UpdateHandler;

/// Tries at opening the reply chain at a takeover before giving the lease up.
const CHAIN_OPEN_ATTEMPTS: u32 = 20;
/// How often the cursor is handed to the lease and the market.
const CURSOR_INTERVAL_MS: u64 = 50;
/// How often the active engine says who it is.
const HEARTBEAT_INTERVAL_MS: u64 = 500;
/// Every stored outcome (`prune_outcomes` keeps those after it).
const ALL_OUTCOMES: u64 = i64::MAX as u64;
/// How often what was handled is pruned (streams, outcomes).
const PRUNE_INTERVAL_MS: u64 = 5_000;

/// What an active engine process does.
pub struct EngineDuty {
    pub settings: Settings,
    pub link: Link,
    pub coordinator: Arc<dyn Coordinator>,
    /// The Bot API client, for polling mode (replies go through the gateways).
    pub telegram: Option<TelegramClient>,
    pub status: Arc<RoleStatus>,
    /// The engine's metrics, while active (for `/metrics`).
    pub current: Arc<std::sync::Mutex<Option<Engine>>>,
    stop: Option<watch::Sender<bool>>,
    consumer: Option<Arc<Consumer>>,
}

impl EngineDuty {
    /// The duty of an engine process on `link`.
    #[must_use]
    pub fn new(
        settings: Settings,
        link: Link,
        coordinator: Arc<dyn Coordinator>,
        telegram: Option<TelegramClient>,
        status: Arc<RoleStatus>,
    ) -> Self {
        Self { settings, link, coordinator, telegram, status, current: Arc::default(), stop: None, consumer: None }
    }
}

/// The command stream's creation time (recorded with the cursor) and its last sequence. A stream created anew
/// (its messages gone) restarts its sequences, so the cursor restarts too.
pub(crate) async fn stream_identity(link: &Link) -> Result<(String, u64), String> {
    let stream = link.jetstream.get_stream(COMMAND_STREAM).await.map_err(|e| e.to_string())?;
    let info = stream.get_info().await.map_err(|e| e.to_string())?;
    Ok((info.created.unix_timestamp_nanos().to_string(), info.state.last_sequence))
}

impl Duty for EngineDuty {
    fn notifier(&self, fence: &Arc<Fence>, owed: Option<Republish>) -> Arc<dyn Notifier> {
        match self.settings.engine.universe() {
            Ok(universe) => {
                let publisher = OutboxPublisher::new(self.link.clone());
                Arc::new(NatsNotifier::start(publisher, Arc::new(universe), Arc::clone(fence), owed))
            }
            Err(_) => Arc::new(NullNotifier),
        }
    }

    async fn activate(&mut self, active: &Active) -> Result<(), String> {
        let (identity, last) = stream_identity(&self.link).await?;
        let mut cursor = active.cursor;
        let mut replay_through = active.replay_through;
        // Replies may be out further than the stored cursor says: the last
        // batch knows, and its chain, opened now, stays closed to every
        // earlier holder.
        let (chain, replies_through) =
            BatchChain::open(self.link.clone(), active.fence.epoch(), CHAIN_OPEN_ATTEMPTS).await?;
        // A stream behind the cursor was created anew (NATS lost the old
        // one). Its creation time is no proof: NATS 2.9 resets it when it
        // recovers a stream from disk.
        if active.stream.is_empty() || cursor > last {
            if !active.stream.is_empty() {
                tracing::warn!(cursor, last, new = %identity, "the command stream was created anew: its cursor starts over");
            }
            cursor = 0;
            replay_through = 0;
            active
                .postgres
                .set_command_stream(Arc::clone(&active.fence), identity.clone(), 0)
                .await
                .map_err(|error| error.to_string())?;
            // The old stream's message numbers mean nothing in the new one:
            // its outcomes must not answer the new stream's commands.
            active.engine.advance_applied(u64::MAX);
            active.postgres.prune_outcomes(ALL_OUTCOMES).await.map_err(|error| error.to_string())?;
        } else if (cursor..=last).contains(&replies_through) {
            // Handled, durable and answered: those messages are not read again.
            cursor = replies_through;
        }
        let username = self.telegram.as_ref().and_then(|client| client.username.clone());
        let bot = crate::startup::game_bot(
            &self.settings,
            active.engine.clone(),
            Arc::clone(&active.store),
            username,
            &self.coordinator,
        );
        let (prices, _) = broadcast::channel(STREAM_BACKLOG_MAX);
        let client = self.link.client.clone();
        let feed = PriceFeed::new(Arc::clone(active.engine.universe()), prices).publishing(Arc::new(move |body| {
            let client = client.clone();
            tokio::spawn(async move {
                let _ = client.publish(PRICES_SUBJECT, Bytes::from(body.as_bytes().to_vec())).await;
            });
        }));
        active.engine.subscribe(feed.start().recipient());
        let handling = Handling {
            handler: UpdateHandler::new(bot.clone(), Arc::clone(&self.coordinator)),
            publisher: OutboxPublisher::new(self.link.clone()),
            link: self.link.clone(),
            replay_through,
            status: Arc::clone(&self.status),
        };
        let consumer = Arc::new(Consumer::new(cursor, self.settings.cluster.handling_max, Arc::new(handling)));
        let fence = Arc::clone(&active.fence);
        // Under this engine the stream was replaced (NATS lost it): its
        // cursor counts in a stream that is gone. Stepping down lets the next
        // holder start the cursor over, cleanly.
        consumer.on_replaced(Arc::new(move || {
            tracing::error!("the command stream was created anew under this engine; stepping down");
            fence.step_down();
        }));
        let (stop, stopped) = watch::channel(false);
        let fence = Arc::clone(&active.fence);
        let superseded: Arc<dyn Fn() + Send + Sync> = Arc::new(move || fence.step_down());
        let (replies, watermark) = (Arc::clone(&consumer.replies), Arc::clone(&consumer.watermark));
        let publisher = OutboxPublisher::new(self.link.clone());
        let stopping = stopped.clone();
        actix::spawn(async move { replies.run(chain, publisher, watermark, stopping, superseded).await });
        let reader = Arc::clone(&consumer);
        let link = self.link.clone();
        let stopping = stopped.clone();
        actix::spawn(async move { reader.run(link, stopping).await });
        actix::spawn(keep_cursor(
            Arc::clone(&consumer),
            active.engine.clone(),
            Arc::clone(&active.fence),
            stopped.clone(),
        ));
        actix::spawn(prune(
            self.link.clone(),
            active.postgres.clone(),
            Arc::clone(&active.fence),
            Arc::clone(&consumer),
            Arc::clone(&self.status),
            stopped.clone(),
        ));
        let answers = Answers::new(bot, Arc::clone(&active.store), {
            let status = Arc::clone(&self.status);
            Arc::new(move || status.engine_status())
        });
        let subscription = self.link.client.queue_subscribe(QUERY_SUBJECT, ENGINE_QUEUE.to_owned()).await;
        let queries = subscription.map_err(|error| error.to_string())?;
        actix::spawn(answer_queries(self.link.clone(), queries, answers, stopped.clone()));
        actix::spawn(beat(self.link.clone(), Arc::clone(&self.status), stopped.clone()));
        if let Some(client) = self.telegram.as_ref().filter(|client| client.mode == Mode::Polling) {
            let sink = StreamSink { link: self.link.clone(), stopped: stopped.clone() };
            actix::spawn(gateway::polling::run(client.api.clone(), sink));
        }
        *self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(active.engine.clone());
        self.stop = Some(stop);
        self.consumer = Some(consumer);
        Ok(())
    }

    async fn deactivate(&mut self, drain: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(consumer) = self.consumer.take() {
            let deadline = tokio::time::Instant::now() + drain;
            while consumer.in_flight() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let left = consumer.in_flight();
            if left > 0 {
                tracing::warn!(left, "commands still being handled when this engine stopped taking work");
            }
        }
        *self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// Hands the cursor to the lease (stored with the next commit or heartbeat)
/// and to the market (outcomes behind it are forgotten).
async fn keep_cursor(consumer: Arc<Consumer>, engine: Engine, fence: Arc<Fence>, mut stopped: watch::Receiver<bool>) {
    let mut last = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(CURSOR_INTERVAL_MS)) => {}
            _ = stopped.changed() => {}
        }
        let cursor = consumer.cursor();
        if cursor > last {
            fence.advance_cursor(cursor);
            engine.advance_applied(cursor);
            last = cursor;
        }
        if *stopped.borrow() {
            return;
        }
    }
}

/// Drops what was handled: command-stream messages up to the cursor the
/// database confirmed storing (a takeover never needs one of them), their
/// stored outcomes, and outbox messages every sender acknowledged — but the
/// last batch, which says how far replies are out.
async fn prune(
    link: Link,
    postgres: PostgresStore,
    fence: Arc<Fence>,
    consumer: Arc<Consumer>,
    status: Arc<RoleStatus>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(PRUNE_INTERVAL_MS)) => {}
            _ = stopped.changed() => return,
        }
        let stored = fence.stored_cursor();
        if let Err(error) = postgres.prune_outcomes(stored).await {
            tracing::debug!(%error, "outcomes not pruned");
        }
        match link.jetstream.get_stream(COMMAND_STREAM).await {
            Ok(stream) => {
                if stored > 0
                    && let Err(error) = stream.purge().sequence(stored.saturating_add(1)).await
                {
                    tracing::debug!(%error, "command stream not purged");
                }
                if let Ok(info) = stream.get_info().await {
                    status.lag.store(info.state.last_sequence.saturating_sub(fence.cursor()), Ordering::Relaxed);
                }
            }
            Err(error) => tracing::debug!(%error, "command stream not reachable for pruning"),
        }
        if let Err(error) = prune_outbox(&link, consumer.replies.last_batch()).await {
            tracing::debug!(%error, "outbox not pruned");
        }
    }
}

/// Purges the outbox below what every sender acknowledged, keeping the
/// batch at `last_batch`.
async fn prune_outbox(link: &Link, last_batch: u64) -> Result<(), String> {
    let stream = link.jetstream.get_stream(OUTBOX_STREAM).await.map_err(|e| e.to_string())?;
    let acknowledged =
        stream.consumer_info(OUTBOX_CONSUMER).await.map_err(|e| e.to_string())?.ack_floor.stream_sequence;
    // One purge of every subject, never a purge filtered by subject: NATS
    // 2.9 moved the senders' consumer past unsent messages of the other
    // subjects when a filtered purge ran (replies were lost under load).
    // What is after the last batch stays until the next batch is out.
    let below = acknowledged.saturating_add(1).min(last_batch);
    if below > 1 {
        stream.purge().sequence(below).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Answers the gateways' reads while active.
async fn answer_queries(
    link: Link,
    mut queries: async_nats::Subscriber,
    answers: Answers,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            message = queries.next() => message,
            _ = stopped.changed() => None,
        };
        let Some(message) = message else {
            let _ = queries.unsubscribe().await;
            return;
        };
        let Some(reply) = message.reply.clone() else { continue };
        let (answers, client) = (answers.clone(), link.client.clone());
        actix::spawn(async move {
            let answer = match serde_json::from_slice::<Query>(&message.payload) {
                Ok(query) => answers.answer(query).await,
                Err(error) => Answer::error(400, &format!("unreadable query: {error}")),
            };
            if let Ok(payload) = serde_json::to_vec(&answer) {
                let _ = client.publish(reply, Bytes::from(payload)).await;
            }
        });
    }
}

/// Says who the active engine is, for the gateways' `/admin/engine`.
async fn beat(link: Link, status: Arc<RoleStatus>, mut stopped: watch::Receiver<bool>) {
    loop {
        if status.is_active()
            && let Ok(payload) = serde_json::to_vec(&status.engine_status())
        {
            let _ = link.client.publish(ENGINE_STATUS_SUBJECT, Bytes::from(payload)).await;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(HEARTBEAT_INTERVAL_MS)) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Polled updates go on the command stream like the gateways' (the same
/// message id: an update is one command however it arrived).
#[derive(Clone)]
struct StreamSink {
    link: Link,
    stopped: watch::Receiver<bool>,
}

impl UpdateSink for StreamSink {
    async fn push(&self, update: Update) -> bool {
        let Ok(payload) = serde_json::to_vec(&update) else { return true };
        let payload = Bytes::from(payload);
        let id = update_msg_id(i64::from(update.id.0));
        while !self.is_closed() {
            let message = PublishMessage::build().payload(payload.clone()).message_id(&id);
            let acknowledged = async {
                let ack = self.link.jetstream.send_publish(COMMAND_UPDATE, message).await.map_err(|e| e.to_string())?;
                ack.await.map_err(|e| e.to_string())
            };
            match acknowledged.await {
                Ok(_) => return true,
                Err(error) => {
                    tracing::warn!(%error, "polled update not acknowledged; again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        false
    }

    async fn closed(&self) {
        let mut stopped = self.stopped.clone();
        while !*stopped.borrow() {
            if stopped.changed().await.is_err() {
                return;
            }
        }
    }

    fn is_closed(&self) -> bool {
        *self.stopped.borrow()
    }
}
