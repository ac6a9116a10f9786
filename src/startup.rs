//! `Application`: builds everything from `Settings` for the configured role
//! — one process doing everything (`all`), a stateless `gateway`, or an
//! `engine` — binds (port 0 in tests), and runs until SIGINT/SIGTERM, then
//! stops in order, every wait bounded: no more updates, the ones taken
//! handled, the replies sent, the HTTP server closed, the engine flushed (and
//! its lease freed for a standby).

mod split;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use actix_web::dev::Server;
use actix_web::{App, HttpServer};
use actors::clock::SystemClock;
use actors::engine::{Engine, EngineDeps, EngineError};
use actors::ports::coordinator::Coordinator;
use actors::ports::{Notifier, NullNotifier, Store};
use gateway::http::{self, AppState, CommandIds};
use tokio::sync::watch;

use crate::answers::Answers;
use crate::bot::{Bot, GameOptions};
use crate::config::{Role, Settings};
use crate::coord::fallback::FallbackCoordinator;
use crate::coord::local::LocalCoordinator;
use crate::local::LocalBackend;
use crate::price_feed::{PriceFeed, STREAM_BACKLOG_MAX};
use crate::store::embedded::EmbeddedStore;
use crate::store::postgres::PostgresStore;
use crate::telegram;
use crate::telegram::front::RunningFront;
use crate::telegram::sender::{SenderHandle, TelegramNotifier};

/// At a stop, longest wait for the updates already taken to be handled.
pub const STOP_UPDATES_DRAIN_MAX_MS: u64 = 10_000;
/// At a stop, longest wait for queued Telegram messages to go out.
pub const STOP_SEND_DRAIN_MAX_MS: u64 = 10_000;
/// After the engine's flush, longest wait for the notices it sent meanwhile.
pub const STOP_NOTICES_DRAIN_MAX_MS: u64 = 2_000;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {bind}: {source}")]
    Bind { bind: String, source: std::io::Error },
    #[error("store: {0}")]
    Store(String),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("telegram: {0}")]
    Telegram(String),
    #[error("{0}")]
    Config(String),
    #[error("NATS: {0}")]
    Nats(String),
}

/// What runs behind the HTTP server, by role.
enum Running {
    /// One process on the embedded store: the engine, always active.
    Single { engine: Box<Engine>, front: Option<RunningFront>, flush: Duration },
    /// An engine process (or `all` on PostgreSQL): the election runs it.
    Elected { stop: watch::Sender<bool>, election: tokio::task::JoinHandle<()>, deadline: Duration },
    /// A gateway: the outbox pump feeds its sender.
    Gateway {
        stop: watch::Sender<bool>,
        pump: Option<tokio::task::JoinHandle<()>>,
        outbox: Arc<gateway::nats::outbox::OutboxMetrics>,
    },
}

/// A built server, bound and ready to run.
pub struct Application {
    address: SocketAddr,
    server: Server,
    running: Running,
    sender: Option<SenderHandle>,
}

impl Application {
    /// Builds the configured role. Must run inside the actix system.
    ///
    /// # Errors
    /// An invalid configuration (a split role without `NATS_URL`, an engine
    /// without PostgreSQL), a store or NATS that cannot be reached, a bind
    /// error.
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        match settings.role().map_err(StartupError::Config)? {
            Role::All if settings.database_url().is_some() => split::build_elected_all(settings).await,
            Role::All => Self::build_single(settings).await,
            Role::Gateway => split::build_gateway(settings).await,
            Role::Engine => split::build_engine(settings).await,
        }
    }

    /// One process on the embedded store: opens it, starts the engine,
    /// binds the HTTP server.
    async fn build_single(settings: &Settings) -> Result<Self, StartupError> {
        let store = open_store(settings).await?;
        let coordinator = open_coordinator(settings).await;
        let telegram = telegram::front::connect(settings).await.map_err(StartupError::Telegram)?;
        let universe = Arc::new(settings.engine.universe().map_err(EngineError::from)?);
        let notifier: Arc<dyn Notifier> = match &telegram {
            Some(client) => Arc::new(TelegramNotifier::new(client.sender.clone(), universe)),
            None => Arc::new(NullNotifier),
        };
        // The one engine of this process is the active one: it writes the
        // fresh market's past before its first tick.
        if let Err(error) =
            crate::backfill::seed_history(&settings.engine, &store, actors::clock::Clock::now_ms(&SystemClock)).await
        {
            tracing::warn!(%error, "chart backfill skipped");
        }
        let deps =
            EngineDeps { store: Arc::clone(&store), clock: Arc::new(SystemClock), notifier, autonomous_ticker: true };
        let engine = Engine::start(&settings.engine, deps).await?;
        let (prices, _) = tokio::sync::broadcast::channel(STREAM_BACKLOG_MAX);
        let feed = PriceFeed::new(Arc::clone(engine.universe()), prices.clone()).start();
        engine.subscribe(feed.recipient());
        let username = telegram.as_ref().and_then(|client| client.username.clone());
        let bot = game_bot(settings, engine.clone(), Arc::clone(&store), username, &coordinator);
        let front = match &telegram {
            Some(client) => Some(telegram::front::start(client, bot.clone(), Arc::clone(&coordinator), settings).await),
            None => None,
        };
        let sender = telegram.as_ref().map(|client| client.sender.clone());
        let status: crate::answers::StatusSource = {
            let instance = settings.instance_name();
            Arc::new(move || wire::EngineStatus { role: "active".to_owned(), epoch: 0, instance: instance.clone() })
        };
        let backend = LocalBackend {
            answers: Answers::new(bot.clone(), Arc::clone(&store), status),
            bot,
            store,
            ingest: front.as_ref().map(|front| front.ingest.clone()),
            prices,
        };
        let state = front_state(settings, Arc::new(backend));
        let (address, server) = serve_http(settings, None, move |config| http::routes(config, &state))?;
        let flush = Duration::from_millis(settings.cluster.stop_flush_max_ms);
        Ok(Self { address, server, running: Running::Single { engine: Box::new(engine), front, flush }, sender })
    }

    /// Where the server listens.
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until SIGINT/SIGTERM, then stops gracefully (every wait
    /// bounded): takes no more Telegram updates (the webhook answers 503,
    /// polling stops), handles the ones already taken, sends the queued
    /// replies, stops taking connections and lets requests in flight
    /// finish, and flushes all state (an engine then frees its lease).
    ///
    /// # Errors
    /// The server's I/O error, or a final flush that failed.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let Self { address, server, running, sender } = self;
        let handle = server.handle();
        let server = actix_web::rt::spawn(server);
        wait_for_signal().await;
        let flushed = match running {
            Running::Single { engine, mut front, flush } => {
                if let Some(front) = front.as_mut() {
                    tracing::info!("signal received: handling the updates already taken");
                    if !front.stop(Duration::from_millis(STOP_UPDATES_DRAIN_MAX_MS)).await {
                        tracing::warn!("some updates were still being handled at the stop");
                    }
                }
                flush_sender(sender.as_ref(), STOP_SEND_DRAIN_MAX_MS).await;
                tracing::info!("draining requests");
                handle.stop(true).await;
                tracing::info!("flushing state");
                let flushed = engine.shutdown_within(flush).await;
                flush_sender(sender.as_ref(), STOP_NOTICES_DRAIN_MAX_MS).await;
                flushed.map_err(StartupError::from)
            }
            Running::Elected { stop, election, deadline } => {
                tracing::info!("signal received: stopping the engine");
                let _ = stop.send(true);
                if tokio::time::timeout(deadline, election).await.is_err() {
                    tracing::error!("the engine did not stop in time; leaving anyway");
                }
                flush_sender(sender.as_ref(), STOP_SEND_DRAIN_MAX_MS).await;
                handle.stop(true).await;
                Ok(())
            }
            Running::Gateway { stop, pump, outbox } => {
                tracing::info!("signal received: draining requests");
                handle.stop(true).await;
                // No more replies taken; those taken go out, then are acknowledged.
                let _ = stop.send(true);
                if let Some(pump) = pump
                    && tokio::time::timeout(Duration::from_millis(STOP_NOTICES_DRAIN_MAX_MS), pump).await.is_err()
                {
                    tracing::warn!("the outbox pump did not stop in time");
                }
                flush_sender(sender.as_ref(), STOP_SEND_DRAIN_MAX_MS).await;
                let settle = Duration::from_millis(STOP_NOTICES_DRAIN_MAX_MS);
                if !gateway::nats::outbox::settle(&outbox, settle).await {
                    tracing::warn!("replies not acknowledged at the stop go to another gateway");
                }
                Ok(())
            }
        };
        let served = server.await;
        flushed?;
        tracing::info!("stopped cleanly");
        match served {
            Ok(result) => result.map_err(|source| StartupError::Bind { bind: address.to_string(), source }),
            Err(_) => Ok(()),
        }
    }
}

/// HTTP workers of a split role unless `STOCKBOT_HTTP_WORKERS` says otherwise:
/// a gateway's requests are short hops to NATS and an engine's HTTP is only
/// health, metrics and admin, so one worker thread serves them; more threads
/// only add hand-offs between threads on a small machine. Scale a gateway out
/// by adding instances.
pub const SPLIT_HTTP_WORKERS: usize = 1;

/// Binds `settings.bind` and starts an HTTP server with `routes`, on
/// `settings.http_workers` workers, else `default_workers`, else one per core.
fn serve_http<F>(
    settings: &Settings,
    default_workers: Option<usize>,
    routes: F,
) -> Result<(SocketAddr, Server), StartupError>
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
{
    let bind_error = |source| StartupError::Bind { bind: settings.bind.clone(), source };
    let addresses = settings.bind.to_socket_addrs().map_err(bind_error)?;
    let listener = gateway::http1::listen(addresses).and_then(|listener| listener.into_std()).map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    let mut server = HttpServer::new(move || App::new().configure(routes.clone()));
    if let Some(workers) = settings.http_workers.or(default_workers).filter(|workers| *workers > 0) {
        server = server.workers(workers);
    }
    let server = server
        .listen(listener)
        .map_err(|source| StartupError::Bind { bind: address.to_string(), source })?
        .shutdown_timeout(10)
        .disable_signals()
        .run();
    Ok((address, server))
}

/// The game's options from the settings.
#[must_use]
pub fn game_options(settings: &Settings) -> GameOptions {
    GameOptions {
        admins: settings.admin_ids(),
        // A price of 0 cannot be invoiced: payments stay off.
        premium_price_stars: settings.premium_price_stars.filter(|stars| *stars > 0),
        player_commands_per_window: settings.limits.player_commands_per_window,
        chat_commands_per_window: settings.limits.chat_commands_per_window,
        rate_window_ms: settings.limits.window_ms,
        webapp_url: settings.telegram.webapp_button_url().map(str::to_owned),
    }
}

/// The command path over `engine`, with boards and limits in `coordinator`.
#[must_use]
pub fn game_bot(
    settings: &Settings,
    engine: Engine,
    store: Arc<dyn Store>,
    username: Option<String>,
    coordinator: &Arc<dyn Coordinator>,
) -> Bot {
    Bot::new(engine, store, username).with_game(Arc::clone(coordinator), game_options(settings))
}

/// The HTTP front's state over `backend`, from the settings.
#[must_use]
pub fn front_state(settings: &Settings, backend: Arc<dyn gateway::backend::Backend>) -> AppState {
    let secret = |value: Option<&crate::config::Secret>| value.map(|t| t.expose().to_owned()).filter(|t| !t.is_empty());
    AppState {
        backend,
        admin_token: secret(settings.admin_token.as_ref()),
        play_enabled: settings.play_enabled(),
        webhook_secret: secret(settings.telegram.webhook_secret.as_ref()),
        ids: Arc::new(CommandIds::new(&settings.instance_name())),
        webapp: webapp_auth(settings),
    }
}

/// The Mini App `initData` check, when a bot token and `TELEGRAM_WEBAPP_URL`
/// are configured.
fn webapp_auth(settings: &Settings) -> Option<gateway::webapp::WebAppAuth> {
    settings.telegram.webapp_url()?;
    let token = settings.telegram.bot_token.as_ref()?.expose();
    let max_age_s = settings.telegram.webapp_max_age_s.unwrap_or(crate::config::WEBAPP_MAX_AGE_S_DEFAULT);
    Some(gateway::webapp::WebAppAuth::new(token, max_age_s))
}

/// Waits (at most `timeout_ms`) for the Telegram messages queued so far.
async fn flush_sender(sender: Option<&SenderHandle>, timeout_ms: u64) {
    let Some(sender) = sender else { return };
    tracing::info!("sending the queued Telegram messages");
    if !sender.flush(Duration::from_millis(timeout_ms)).await {
        let left = sender.metrics().queued.load(std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(left, "Telegram messages left unsent at the stop");
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The configured store: PostgreSQL with `DATABASE_URL`, else embedded.
///
/// # Errors
/// A store that cannot be opened.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, StartupError> {
    if let Some(url) = settings.database_url.as_ref().map(|u| u.expose().to_owned()).filter(|u| !u.is_empty()) {
        let mut delay_ms = 250;
        for attempt in 1..=STORE_CONNECT_ATTEMPTS {
            match PostgresStore::connect_and_migrate(&url, POSTGRES_POOL_SIZE).await {
                Ok(store) => return Ok(Arc::new(store)),
                Err(error) if attempt < STORE_CONNECT_ATTEMPTS => {
                    tracing::warn!(%error, attempt, "PostgreSQL not reachable yet; retrying");
                    actix_web::rt::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                    delay_ms = (delay_ms * 2).min(4_000);
                }
                Err(error) => return Err(StartupError::Store(error.to_string())),
            }
        }
    }
    let store =
        EmbeddedStore::open(&settings.data_dir).await.map_err(|error| StartupError::Store(error.to_string()))?;
    Ok(Arc::new(store))
}

/// Connections in the PostgreSQL pool.
pub const POSTGRES_POOL_SIZE: usize = 8;
/// Tries to reach PostgreSQL at start before giving up (~30 s).
const STORE_CONNECT_ATTEMPTS: u32 = 12;

/// The configured coordinator: Redis (falling back to local while it is
/// down) with `REDIS_URL`, else local.
pub async fn open_coordinator(settings: &Settings) -> Arc<dyn Coordinator> {
    if let Some(url) = settings.redis_url.as_ref().map(|u| u.expose().to_owned()).filter(|u| !u.is_empty()) {
        match FallbackCoordinator::connect(&url, &settings.redis_prefix).await {
            Ok(coordinator) => return Arc::new(coordinator),
            Err(error) => tracing::warn!(%error, "Redis unavailable; coordinating in-process only"),
        }
    }
    Arc::new(LocalCoordinator::new())
}
