//! Building the processes that share a game: `all` on PostgreSQL (active or
//! standby), a `gateway`, an `engine` (active or standby).

use std::sync::Arc;
use std::time::Duration;

use actors::ports::coordinator::Coordinator;
use gateway::backend::LocalBoxFuture;
use gateway::batch::{BatchFuture, Batcher};
use gateway::http;
use gateway::nats::backend::UpdateDedup;
use gateway::nats::{Link, NatsBackend, StreamLimits};
use tokio::sync::watch;

use super::{Application, Running, SPLIT_HTTP_WORKERS, StartupError, front_state, open_coordinator, serve_http};
use crate::cluster::RoleStatus;
use crate::cluster::all_mode::{AllModeDuty, SwitchBackend};
use crate::cluster::election::Election;
use crate::cluster::engine_role::EngineDuty;
use crate::config::Settings;
use crate::price_feed::STREAM_BACKLOG_MAX;
use crate::store::migrate;
use crate::telegram;
use crate::telegram::ingest::UPDATE_DEDUP_TTL_MS;

/// How often start-up looks whether the election made this process active.
const ELECTION_WAIT_POLL_MS: u64 = 20;
/// Extra time a stop may take beyond its drain and flush bounds.
const STOP_SLACK_MS: u64 = 5_000;

/// `DATABASE_URL`, migrated.
async fn migrated_database(settings: &Settings, role: &str) -> Result<String, StartupError> {
    let Some(url) = settings.database_url() else {
        return Err(StartupError::Config(format!(
            "STOCKBOT_ROLE={role} needs PostgreSQL (DATABASE_URL): the embedded store cannot be shared between processes"
        )));
    };
    let mut delay_ms = 250;
    for attempt in 1..=12 {
        match migrate::migrate(&url).await {
            Ok(()) => return Ok(url),
            Err(error) if attempt < 12 => {
                tracing::warn!(%error, attempt, "PostgreSQL not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                delay_ms = (delay_ms * 2).min(4_000);
            }
            Err(error) => return Err(StartupError::Store(error.to_string())),
        }
    }
    Err(StartupError::Store("PostgreSQL unreachable".into()))
}

/// `NATS_URL`, connected, with the streams in place.
async fn nats_link(settings: &Settings, role: &str) -> Result<Link, StartupError> {
    let Some(url) = settings.nats_url() else { return Err(missing_nats(role)) };
    let name = format!("stockbot-{role}:{}", settings.instance_name());
    let link = Link::connect(&url, &name, Duration::from_millis(settings.cluster.nats_connect_wait_ms))
        .await
        .map_err(|error| StartupError::Nats(error.to_string()))?;
    let limits = StreamLimits {
        command_max_bytes: settings.cluster.command_stream_max_bytes,
        command_max_age: Duration::from_secs(settings.cluster.command_stream_max_age_s),
        outbox_max_bytes: settings.cluster.outbox_stream_max_bytes,
    };
    link.ensure_streams(limits).await.map_err(|error| StartupError::Nats(error.to_string()))?;
    Ok(link)
}

fn missing_nats(role: &str) -> StartupError {
    StartupError::Config(format!(
        "STOCKBOT_ROLE={role} needs NATS with JetStream: set NATS_URL (e.g. nats://127.0.0.1:4222)"
    ))
}

/// How long a stop of an elected process may take at most.
fn stop_deadline(settings: &Settings) -> Duration {
    let cluster = &settings.cluster;
    Duration::from_millis(cluster.stop_drain_max_ms + cluster.stop_flush_max_ms + STOP_SLACK_MS)
}

/// Runs the election of this process in the background and waits (at most
/// about two leases) for it to become active: a lone process, or one
/// restarted after a crash, is serving when it says it listens; one that
/// finds another engine renewing the lease starts as a standby.
async fn elect<D: crate::cluster::election::Duty + 'static>(
    settings: &Settings,
    database_url: String,
    status: Arc<RoleStatus>,
    mut duty: D,
) -> Running {
    let election =
        Election { database_url, config: settings.engine.clone(), cluster: settings.cluster.clone(), status };
    let (stop, stopped) = watch::channel(false);
    let waiting = Arc::clone(&election.status);
    let election = actix_web::rt::spawn(async move { election.run(&mut duty, stopped).await });
    let patience =
        Duration::from_millis(settings.cluster.lease_ms.saturating_mul(2) + settings.cluster.standby_poll_ms);
    let deadline = tokio::time::Instant::now() + patience;
    while !waiting.is_active() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(ELECTION_WAIT_POLL_MS)).await;
    }
    if !waiting.is_active() {
        tracing::info!(epoch = waiting.epoch(), "another engine holds the lease: standing by");
    }
    Running::Elected { stop, election, deadline: stop_deadline(settings) }
}

/// `all` on PostgreSQL: the whole game, while this process holds the lease.
pub async fn build_elected_all(settings: &Settings) -> Result<Application, StartupError> {
    let url = migrated_database(settings, "all").await?;
    let coordinator = open_coordinator(settings).await;
    let telegram_client = telegram::front::connect(settings).await.map_err(StartupError::Telegram)?;
    let sender = telegram_client.as_ref().map(|client| client.sender.clone());
    let status = RoleStatus::new(settings.instance_name(), Duration::from_millis(settings.cluster.lease_margin_ms));
    let (prices, _) = tokio::sync::broadcast::channel(STREAM_BACKLOG_MAX);
    let switch = SwitchBackend::new(Arc::clone(&status), prices);
    let state = front_state(settings, Arc::clone(&switch) as Arc<dyn gateway::backend::Backend>);
    let (address, server) = serve_http(settings, None, move |config| http::routes(config, &state))?;
    let duty = AllModeDuty::new(settings.clone(), telegram_client, coordinator, switch);
    let running = elect(settings, url, status, duty).await;
    Ok(Application { address, server, running, sender })
}

/// An engine process: the sequencer, while it holds the lease.
pub async fn build_engine(settings: &Settings) -> Result<Application, StartupError> {
    if settings.nats_url().is_none() {
        return Err(missing_nats("engine"));
    }
    let url = migrated_database(settings, "engine").await?;
    let link = nats_link(settings, "engine").await?;
    let coordinator = open_coordinator(settings).await;
    // Only for polling: replies go out through the gateways' senders.
    let telegram_client = match settings.telegram.mode.as_deref().map(str::trim) {
        Some("webhook" | "off") => None,
        _ => telegram::front::connect(settings).await.map_err(StartupError::Telegram)?,
    };
    let status = RoleStatus::new(settings.instance_name(), Duration::from_millis(settings.cluster.lease_margin_ms));
    let (prices, _) = tokio::sync::broadcast::channel(STREAM_BACKLOG_MAX);
    let switch = SwitchBackend::new(Arc::clone(&status), prices);
    let duty = EngineDuty::new(settings.clone(), link, coordinator, telegram_client, Arc::clone(&status));
    let engine_metrics = Arc::clone(&duty.current);
    switch.set(Some(Arc::new(EngineMetricsBackend { engine: engine_metrics })));
    let state = front_state(settings, Arc::clone(&switch) as Arc<dyn gateway::backend::Backend>);
    let (address, server) =
        serve_http(settings, Some(SPLIT_HTTP_WORKERS), move |config| http::engine_routes(config, &state))?;
    let running = elect(settings, url, status, duty).await;
    Ok(Application { address, server, running, sender: None })
}

/// A gateway: the webhook, the play page, the API and the senders.
pub async fn build_gateway(settings: &Settings) -> Result<Application, StartupError> {
    let link = nats_link(settings, "gateway").await?;
    let coordinator = open_coordinator(settings).await;
    let telegram_client = telegram::front::connect(settings).await.map_err(StartupError::Telegram)?;
    if let Some(client) = &telegram_client {
        telegram::front::register(client, settings).await;
    }
    let sender = telegram_client.as_ref().map(|client| client.sender.clone());
    let (stop, stopped) = watch::channel(false);
    let outbox = Arc::new(gateway::nats::outbox::OutboxMetrics::default());
    let pump = sender.as_ref().map(|sender| {
        actix_web::rt::spawn(gateway::nats::outbox::run(link.clone(), sender.clone(), Arc::clone(&outbox), stopped))
    });
    let sender_metrics = sender.clone();
    let outbox_metrics = Arc::clone(&outbox);
    let extra_metrics: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || {
        let mut text = gateway::nats::outbox::render(&outbox_metrics);
        if let Some(sender) = &sender_metrics {
            text.push_str(&crate::metrics::render_sender(sender.metrics()));
        }
        text
    });
    let dedup = Arc::new(CoordinatorDedup::new(coordinator));
    let play_wait = Duration::from_millis(settings.cluster.play_wait_ms);
    let backend = NatsBackend::start(link, &settings.instance_name(), dedup, play_wait, extra_metrics)
        .await
        .map_err(|error| StartupError::Nats(error.to_string()))?;
    let state = front_state(settings, Arc::new(backend));
    let (address, server) = serve_http(settings, Some(SPLIT_HTTP_WORKERS), move |config| http::routes(config, &state))?;
    Ok(Application { address, server, running: Running::Gateway { stop, pump, outbox }, sender })
}

/// The 24 h update dedup on the coordinator (Redis across gateways). The
/// asks of concurrent webhook requests go together: one `MGET` for all the
/// updates that came in while the last one was out, one pipeline of `SET`s
/// for all those acknowledged meanwhile.
struct CoordinatorDedup {
    seen: Batcher<String, bool>,
    mark: Batcher<String, ()>,
}

/// Most update ids asked about (or marked) in one round trip.
const DEDUP_BATCH_MAX: usize = 512;

impl CoordinatorDedup {
    fn new(coordinator: Arc<dyn Coordinator>) -> Self {
        let asking = Arc::clone(&coordinator);
        let seen = Batcher::new(DEDUP_BATCH_MAX, move |keys: Vec<String>| {
            let count = keys.len();
            let asked = asking.seen_many(keys);
            Box::pin(async move {
                match asked.await {
                    Ok(seen) => seen,
                    // Without the dedup, taking a repeat beats losing an update
                    // (the stream still drops repeats within its window).
                    Err(error) => {
                        tracing::warn!(%error, "update dedup unavailable");
                        vec![false; count]
                    }
                }
            }) as BatchFuture<bool>
        });
        let mark = Batcher::new(DEDUP_BATCH_MAX, move |keys: Vec<String>| {
            let count = keys.len();
            let marked = coordinator.mark_many(keys, UPDATE_DEDUP_TTL_MS);
            Box::pin(async move {
                if let Err(error) = marked.await {
                    tracing::warn!(%error, "update dedup not marked");
                }
                vec![(); count]
            }) as BatchFuture<()>
        });
        Self { seen, mark }
    }
}

fn dedup_key(update_id: i64) -> String {
    format!("upd:{update_id}")
}

impl UpdateDedup for CoordinatorDedup {
    fn seen(&self, update_id: i64) -> LocalBoxFuture<bool> {
        let seen = self.seen.clone();
        Box::pin(async move { seen.ask(dedup_key(update_id)).await.unwrap_or(false) })
    }

    fn mark(&self, update_id: i64) -> LocalBoxFuture<()> {
        let mark = self.mark.clone();
        Box::pin(async move {
            let _ = mark.ask(dedup_key(update_id)).await;
        })
    }
}

/// An engine process's `/metrics` while active: the engine's counters.
struct EngineMetricsBackend {
    engine: Arc<std::sync::Mutex<Option<actors::engine::Engine>>>,
}

impl gateway::backend::Backend for EngineMetricsBackend {
    fn submit_update(
        &self,
        _update: gateway::backend::Inbound,
        _raw: bytes::Bytes,
    ) -> LocalBoxFuture<Result<(), gateway::backend::Refused>> {
        Box::pin(async { Err(gateway::backend::Refused::Unavailable) })
    }

    fn play(
        &self,
        _command: wire::PlayCommand,
    ) -> LocalBoxFuture<Result<Vec<wire::Reply>, gateway::backend::PlayFailure>> {
        Box::pin(async { Err(gateway::backend::PlayFailure::Unavailable("an engine takes no players".into())) })
    }

    fn query(&self, _query: wire::Query) -> LocalBoxFuture<wire::Answer> {
        Box::pin(async { wire::Answer::error(404, "ask a gateway") })
    }

    fn readiness(&self) -> LocalBoxFuture<gateway::backend::Readiness> {
        let engine = self.engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Box::pin(async move {
            let ready = match engine {
                Some(engine) => engine.quotes().await.is_ok() && engine.store_healthy(),
                None => false,
            };
            let detail = if ready { "active" } else { "standby" };
            gateway::backend::Readiness { ready, detail: detail.to_owned() }
        })
    }

    fn metrics(&self) -> LocalBoxFuture<String> {
        let engine = self.engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let text = engine.map(|engine| crate::metrics::render_engine(engine.metrics())).unwrap_or_default();
        Box::pin(async move { text })
    }

    fn prices(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<str>>> {
        None
    }
}
