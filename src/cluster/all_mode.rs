//! `all` on PostgreSQL: one process does everything, but only while it holds
//! the engine lease. [`SwitchBackend`] is the HTTP front's backend of such a
//! process (and of an `engine`): the game while active, "standby" (503)
//! while another process is. [`AllModeDuty`] is what an active `all` process
//! does: its own Telegram ingest (webhook or polling), play page and reads.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use actix::Actor as _;
use actors::ports::coordinator::Coordinator;
use actors::ports::{Notifier, NullNotifier};
use bytes::Bytes;
use gateway::backend::{Backend, Inbound, LocalBoxFuture, PlayFailure, Readiness, Refused};
use tokio::sync::broadcast;
use wire::{Answer, PlayCommand, Query, Reply};

use super::RoleStatus;
use super::election::{Active, Duty};
use super::notices::Republish;
use crate::answers::{Answers, StatusSource};
use crate::config::Settings;
use crate::local::LocalBackend;
use crate::price_feed::PriceFeed;
use crate::store::postgres::lease::Fence;
use crate::telegram::front::{RunningFront, TelegramClient};
use crate::telegram::sender::TelegramNotifier;

/// The backend of a process that may stand by: the active game's backend,
/// or standby answers.
pub struct SwitchBackend {
    status: Arc<RoleStatus>,
    current: RwLock<Option<Arc<dyn Backend>>>,
    /// Live prices, kept across takeovers (the page's stream stays open).
    prices: broadcast::Sender<Arc<str>>,
}

impl SwitchBackend {
    /// Standing by, reporting `status`.
    #[must_use]
    pub fn new(status: Arc<RoleStatus>, prices: broadcast::Sender<Arc<str>>) -> Arc<Self> {
        Arc::new(Self { status, current: RwLock::new(None), prices })
    }

    /// Serves `backend` (active) or nothing (standby).
    pub fn set(&self, backend: Option<Arc<dyn Backend>>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = backend;
    }

    fn current(&self) -> Option<Arc<dyn Backend>> {
        if !self.status.is_active() {
            return None;
        }
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The status source of `/admin/engine`.
    #[must_use]
    pub fn status_source(&self) -> StatusSource {
        let status = Arc::clone(&self.status);
        Arc::new(move || status.engine_status())
    }
}

/// What a standby says to players.
const STANDBY: &str = "standby: another engine is active; try again in a moment";

impl Backend for SwitchBackend {
    fn submit_update(&self, update: Inbound, raw: Bytes) -> LocalBoxFuture<Result<(), Refused>> {
        match self.current() {
            Some(backend) => backend.submit_update(update, raw),
            // Telegram retries; a balancer sends it to the active one.
            None => Box::pin(async { Err(Refused::Stopping) }),
        }
    }

    fn play(&self, command: PlayCommand) -> LocalBoxFuture<Result<Vec<Reply>, PlayFailure>> {
        match self.current() {
            Some(backend) => backend.play(command),
            None => Box::pin(async { Err(PlayFailure::Unavailable(STANDBY.to_owned())) }),
        }
    }

    fn query(&self, query: Query) -> LocalBoxFuture<Answer> {
        if query == Query::Engine {
            let status = self.status.engine_status();
            return Box::pin(async move { Answer::json(200, &status) });
        }
        match self.current() {
            Some(backend) => backend.query(query),
            None => Box::pin(async { Answer::error(503, STANDBY) }),
        }
    }

    fn readiness(&self) -> LocalBoxFuture<Readiness> {
        // The lease decides first: a paused engine that woke up after its
        // lease ran out is not ready, whatever its backend still says.
        match self.current().filter(|_| self.status.is_active()) {
            Some(backend) => backend.readiness(),
            None => {
                let detail = self.status.role_name().to_owned();
                Box::pin(async move { Readiness { ready: false, detail } })
            }
        }
    }

    fn metrics(&self) -> LocalBoxFuture<String> {
        let own = self.status.render_metrics();
        match self.current() {
            Some(backend) => {
                let inner = backend.metrics();
                Box::pin(async move { own + &inner.await })
            }
            None => Box::pin(async move { own }),
        }
    }

    fn prices(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        Some(self.prices.subscribe())
    }
}

/// What an active `all` process does.
pub struct AllModeDuty {
    pub settings: Settings,
    pub telegram: Option<TelegramClient>,
    pub coordinator: Arc<dyn Coordinator>,
    pub switch: Arc<SwitchBackend>,
    front: Option<RunningFront>,
}

impl AllModeDuty {
    /// The duty of an `all` process serving through `switch`.
    #[must_use]
    pub fn new(
        settings: Settings,
        telegram: Option<TelegramClient>,
        coordinator: Arc<dyn Coordinator>,
        switch: Arc<SwitchBackend>,
    ) -> Self {
        Self { settings, telegram, coordinator, switch, front: None }
    }
}

impl Duty for AllModeDuty {
    /// Notices go straight to Telegram: how far they are out is not known
    /// (the lease forgets it), so nothing owed is published again.
    fn notifier(&self, _fence: &Arc<Fence>, _owed: Option<Republish>) -> Arc<dyn Notifier> {
        match &self.telegram {
            Some(client) => match self.settings.engine.universe() {
                Ok(universe) => Arc::new(TelegramNotifier::new(client.sender.clone(), Arc::new(universe))),
                Err(_) => Arc::new(NullNotifier),
            },
            None => Arc::new(NullNotifier),
        }
    }

    async fn activate(&mut self, active: &Active) -> Result<(), String> {
        let feed = PriceFeed::new(Arc::clone(active.engine.universe()), self.switch.prices.clone()).start();
        active.engine.subscribe(feed.recipient());
        let username = self.telegram.as_ref().and_then(|client| client.username.clone());
        let bot = crate::startup::game_bot(
            &self.settings,
            active.engine.clone(),
            Arc::clone(&active.store),
            username,
            &self.coordinator,
        );
        let front = match &self.telegram {
            Some(client) => Some(
                crate::telegram::front::start(client, bot.clone(), Arc::clone(&self.coordinator), &self.settings).await,
            ),
            None => None,
        };
        let backend = LocalBackend {
            answers: Answers::new(bot.clone(), Arc::clone(&active.store), self.switch.status_source()),
            bot,
            store: Arc::clone(&active.store),
            ingest: front.as_ref().map(|front| front.ingest.clone()),
            prices: self.switch.prices.clone(),
        };
        self.front = front;
        self.switch.set(Some(Arc::new(backend)));
        Ok(())
    }

    async fn deactivate(&mut self, drain: Duration) {
        self.switch.set(None);
        if let Some(mut front) = self.front.take()
            && !front.stop(drain).await
        {
            tracing::warn!("some updates were still being handled when this engine stepped down");
        }
        if let Some(client) = &self.telegram
            && !client.sender.flush(drain).await
        {
            tracing::warn!("Telegram messages left unsent when this engine stepped down");
        }
    }
}
