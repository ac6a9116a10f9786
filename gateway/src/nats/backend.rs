//! `NatsBackend`: a gateway's [`Backend`]. A Telegram update goes on the
//! command stream with its `update_id` as the message id (a Telegram retry,
//! or the same update reaching two gateways, is one command) and is taken
//! once JetStream acknowledged it; the shared 24 h update dedup is marked only
//! then. A play message gets its id here, once, and goes the same way with
//! the subject its answer is to come back on; the gateway waits for that
//! answer through a failover (a new engine reads the stream from its cursor
//! and answers). Reads go to the active engine by request–reply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage as Publish;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::{broadcast, oneshot};
use wire::command::{PlayAnswer, play_msg_id, update_msg_id};
use wire::subjects::{
    COMMAND_PLAY, COMMAND_UPDATE, ENGINE_STATUS_SUBJECT, PLAY_ANSWER_PREFIX, PRICES_SUBJECT, QUERY_SUBJECT,
    REPLY_TO_HEADER,
};
use wire::{Answer, EngineStatus, PlayCommand, Query, Reply};

use super::link::Link;
use crate::backend::{Backend, Inbound, LocalBoxFuture, PlayFailure, Readiness, Refused};
use crate::http::stream::STREAM_BACKLOG_MAX;

/// Longest one read waits for the active engine before asking again.
const QUERY_ATTEMPT_TIMEOUT_MS: u64 = 2_000;
/// Pause between attempts while no engine answers.
const RETRY_PAUSE_MS: u64 = 100;

/// The shared 24 h dedup of Telegram update ids (Telegram may redeliver an
/// update for a day; JetStream's own dedup window is minutes).
pub trait UpdateDedup: Send + Sync + 'static {
    /// Whether `update_id` was taken before (on doubt: `false`, take it).
    fn seen(&self, update_id: i64) -> LocalBoxFuture<bool>;
    /// Marks `update_id` as taken.
    fn mark(&self, update_id: i64) -> LocalBoxFuture<()>;
}

/// Counters of a gateway.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    pub updates_published: AtomicU64,
    pub updates_duplicate: AtomicU64,
    pub updates_refused: AtomicU64,
    pub plays_published: AtomicU64,
    pub plays_answered: AtomicU64,
    pub plays_timed_out: AtomicU64,
    pub queries_forwarded: AtomicU64,
    pub queries_failed: AtomicU64,
}

/// The gateway's way to the game.
pub struct NatsBackend {
    link: Link,
    dedup: Arc<dyn UpdateDedup>,
    /// This gateway's play answers come back under this subject prefix.
    answers_subject: String,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Vec<Reply>>>>>,
    engine: Arc<Mutex<Option<EngineStatus>>>,
    prices: broadcast::Sender<Arc<str>>,
    play_wait: Duration,
    metrics: Arc<GatewayMetrics>,
    /// Renders the sender's and the outbox's metrics (Prometheus text).
    extra_metrics: Arc<dyn Fn() -> String + Send + Sync>,
}

impl NatsBackend {
    /// Starts listening for play answers, engine heartbeats and prices, and
    /// returns the backend. `token` names this gateway's answer subject.
    ///
    /// # Errors
    /// The subscriptions could not be made.
    pub async fn start(
        link: Link,
        token: &str,
        dedup: Arc<dyn UpdateDedup>,
        play_wait: Duration,
        extra_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> Result<Self, async_nats::SubscribeError> {
        let token: String = token.chars().filter(char::is_ascii_alphanumeric).collect();
        let answers_subject = format!("{PLAY_ANSWER_PREFIX}.{token}");
        let waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Vec<Reply>>>>> = Arc::default();
        let mut answers = link.client.subscribe(format!("{answers_subject}.*")).await?;
        let routes = Arc::clone(&waiting);
        tokio::spawn(async move {
            while let Some(message) = answers.next().await {
                let Ok(answer) = serde_json::from_slice::<PlayAnswer>(&message.payload) else { continue };
                let waiter = routes.lock().unwrap_or_else(PoisonError::into_inner).remove(&answer.id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(answer.replies);
                }
            }
        });
        let engine: Arc<Mutex<Option<EngineStatus>>> = Arc::default();
        let mut beats = link.client.subscribe(ENGINE_STATUS_SUBJECT).await?;
        let seen = Arc::clone(&engine);
        tokio::spawn(async move {
            while let Some(message) = beats.next().await {
                if let Ok(status) = serde_json::from_slice::<EngineStatus>(&message.payload) {
                    let mut last = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    // A superseded engine's late beat never hides the new one.
                    if last.as_ref().is_none_or(|last| status.epoch >= last.epoch) {
                        *last = Some(status);
                    }
                }
            }
        });
        let (prices, _) = broadcast::channel(STREAM_BACKLOG_MAX);
        let mut minutes = link.client.subscribe(PRICES_SUBJECT).await?;
        let feed = prices.clone();
        tokio::spawn(async move {
            while let Some(message) = minutes.next().await {
                if let Ok(text) = std::str::from_utf8(&message.payload) {
                    let _ = feed.send(Arc::from(text));
                }
            }
        });
        Ok(Self {
            link,
            dedup,
            answers_subject,
            waiting,
            engine,
            prices,
            play_wait,
            metrics: Arc::default(),
            extra_metrics,
        })
    }

    /// The gateway's counters.
    #[must_use]
    pub fn metrics(&self) -> &Arc<GatewayMetrics> {
        &self.metrics
    }
}

/// Publishes until JetStream acknowledges (a repeat with the same id is a
/// duplicate it drops) or `deadline` passes.
async fn publish_acknowledged(
    link: &Link,
    subject: &'static str,
    message: impl Fn() -> Publish,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    loop {
        let attempt = async {
            let ack = link.jetstream.send_publish(subject, message()).await?;
            ack.await
        };
        match attempt.await {
            Ok(_) => return Ok(()),
            // JetStream lost the stream (NATS came back without its store): make it again.
            Err(error)
                if error.kind() == async_nats::jetstream::context::PublishErrorKind::StreamNotFound
                    && tokio::time::Instant::now() < deadline =>
            {
                link.restore_streams().await;
                tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
            }
            Err(error) if tokio::time::Instant::now() + Duration::from_millis(RETRY_PAUSE_MS) < deadline => {
                tracing::debug!(%error, subject, "publish not acknowledged; again");
                tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

impl Backend for NatsBackend {
    fn submit_update(&self, update: Inbound, payload: Bytes) -> LocalBoxFuture<Result<(), Refused>> {
        let (link, dedup, metrics) = (self.link.clone(), Arc::clone(&self.dedup), Arc::clone(&self.metrics));
        Box::pin(async move {
            let update_id = i64::from(update.update_id);
            if !update.handled {
                // A kind the bot does not handle: taken and ignored.
                return Ok(());
            }
            if dedup.seen(update_id).await {
                metrics.updates_duplicate.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            let id = update_msg_id(update_id);
            let message = || Publish::build().payload(payload.clone()).message_id(&id);
            // Telegram waits about a minute for an answer: a short outage of
            // NATS is ridden out here rather than bounced back.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(super::link::JETSTREAM_TIMEOUT_MS);
            match publish_acknowledged(&link, COMMAND_UPDATE, message, deadline).await {
                Ok(()) => {
                    metrics.updates_published.fetch_add(1, Ordering::Relaxed);
                    dedup.mark(update_id).await;
                    Ok(())
                }
                Err(error) => {
                    metrics.updates_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, update_id, "update not taken: the command stream did not acknowledge it");
                    Err(if error.contains("maximum") { Refused::Full } else { Refused::Unavailable })
                }
            }
        })
    }

    fn play(&self, command: PlayCommand) -> LocalBoxFuture<Result<Vec<Reply>, PlayFailure>> {
        let (link, metrics, waiting) = (self.link.clone(), Arc::clone(&self.metrics), Arc::clone(&self.waiting));
        let reply_to = format!("{}.{}", self.answers_subject, token_of(&command.id));
        let deadline = tokio::time::Instant::now() + self.play_wait;
        Box::pin(async move {
            let payload = match serde_json::to_vec(&command) {
                Ok(payload) => Bytes::from(payload),
                Err(error) => return Err(PlayFailure::Unavailable(error.to_string())),
            };
            let (answer, answered) = oneshot::channel();
            waiting.lock().unwrap_or_else(PoisonError::into_inner).insert(command.id.clone(), answer);
            let forget = Forget { waiting: &waiting, id: &command.id };
            let id = play_msg_id(&command.id);
            let message =
                || Publish::build().payload(payload.clone()).message_id(&id).header(REPLY_TO_HEADER, reply_to.as_str());
            if let Err(error) = publish_acknowledged(&link, COMMAND_PLAY, message, deadline).await {
                return Err(PlayFailure::Unavailable(error));
            }
            metrics.plays_published.fetch_add(1, Ordering::Relaxed);
            // Taken: an engine answers it, the one active now or the next.
            let result = match tokio::time::timeout_at(deadline, answered).await {
                Ok(Ok(replies)) => {
                    metrics.plays_answered.fetch_add(1, Ordering::Relaxed);
                    Ok(replies)
                }
                _ => {
                    metrics.plays_timed_out.fetch_add(1, Ordering::Relaxed);
                    Err(PlayFailure::TimedOut)
                }
            };
            drop(forget);
            result
        })
    }

    fn query(&self, query: Query) -> LocalBoxFuture<Answer> {
        if query == Query::Engine {
            let seen = self.engine.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let (epoch, instance) = seen.map_or((0, String::new()), |status| (status.epoch, status.instance));
            let status = EngineStatus { role: "gateway".to_owned(), epoch, instance };
            return Box::pin(async move { Answer::json(200, &status) });
        }
        let (link, metrics) = (self.link.clone(), Arc::clone(&self.metrics));
        let deadline = tokio::time::Instant::now() + self.play_wait;
        Box::pin(async move {
            let Ok(payload) = serde_json::to_vec(&query) else { return Answer::error(500, "query not encodable") };
            let payload = Bytes::from(payload);
            loop {
                let attempt = tokio::time::timeout(
                    Duration::from_millis(QUERY_ATTEMPT_TIMEOUT_MS),
                    link.client.request(QUERY_SUBJECT, payload.clone()),
                );
                match attempt.await {
                    Ok(Ok(message)) => match serde_json::from_slice::<Answer>(&message.payload) {
                        Ok(answer) => {
                            metrics.queries_forwarded.fetch_add(1, Ordering::Relaxed);
                            return answer;
                        }
                        Err(error) => {
                            return Answer::error(502, &format!("the engine's answer is unreadable: {error}"));
                        }
                    },
                    // No active engine right now (a takeover), or a slow one: again.
                    _ if tokio::time::Instant::now() + Duration::from_millis(RETRY_PAUSE_MS) < deadline => {
                        tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
                    }
                    _ => {
                        metrics.queries_failed.fetch_add(1, Ordering::Relaxed);
                        return Answer::error(503, "no engine answered; try again in a moment");
                    }
                }
            }
        })
    }

    fn readiness(&self) -> LocalBoxFuture<Readiness> {
        let readiness = if self.link.is_connected() {
            Readiness { ready: true, detail: "ready".to_owned() }
        } else {
            Readiness { ready: false, detail: "NATS unreachable".to_owned() }
        };
        Box::pin(async move { readiness })
    }

    fn metrics(&self) -> LocalBoxFuture<String> {
        let seen = self.engine.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let text = render_metrics(&self.metrics, seen.as_ref(), self.link.is_connected()) + &(self.extra_metrics)();
        Box::pin(async move { text })
    }

    fn prices(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        Some(self.prices.subscribe())
    }
}

/// Takes a waiter out of the map however the wait ends.
struct Forget<'a> {
    waiting: &'a Mutex<HashMap<String, oneshot::Sender<Vec<Reply>>>>,
    id: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(self.id);
    }
}

/// A NATS subject token for a command id (letters, digits and dashes only).
fn token_of(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

fn render_metrics(metrics: &GatewayMetrics, engine: Option<&EngineStatus>, connected: bool) -> String {
    use std::fmt::Write as _;
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let mut text = String::with_capacity(1024);
    let _ = writeln!(text, "# HELP stockbot_role This process's role.\n# TYPE stockbot_role gauge");
    let _ = writeln!(text, "stockbot_role{{role=\"gateway\"}} 1");
    let epoch = engine.map_or(0, |status| status.epoch);
    let _ = writeln!(
        text,
        "# HELP stockbot_lease_epoch Epoch of the active engine last seen.\n# TYPE stockbot_lease_epoch gauge\nstockbot_lease_epoch {epoch}"
    );
    let _ = writeln!(
        text,
        "# HELP stockbot_nats_connected NATS answers.\n# TYPE stockbot_nats_connected gauge\nstockbot_nats_connected {}",
        u8::from(connected)
    );
    let counters = [
        ("stockbot_gateway_updates_published_total", "Updates put on the command stream.", &metrics.updates_published),
        ("stockbot_gateway_updates_duplicate_total", "Updates seen before and dropped.", &metrics.updates_duplicate),
        ("stockbot_gateway_updates_refused_total", "Updates answered 503.", &metrics.updates_refused),
        (
            "stockbot_gateway_plays_published_total",
            "Play messages put on the command stream.",
            &metrics.plays_published,
        ),
        ("stockbot_gateway_plays_answered_total", "Play messages answered.", &metrics.plays_answered),
        ("stockbot_gateway_plays_timed_out_total", "Play messages given up waiting.", &metrics.plays_timed_out),
        ("stockbot_gateway_queries_total", "Reads answered by the engine.", &metrics.queries_forwarded),
        ("stockbot_gateway_queries_failed_total", "Reads no engine answered.", &metrics.queries_failed),
    ];
    for (name, help, counter) in counters {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", get(counter));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_ids_make_safe_subject_tokens() {
        assert_eq!(token_of("gw1-18c-2a"), "gw1-18c-2a");
        assert_eq!(token_of("a.b*c>"), "a_b_c_");
    }
}
