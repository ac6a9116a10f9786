//! `Engine`: the handle the interface layer holds. It starts the actor system
//! (market with its asset actors, ticker, persistence, portfolio arbiter),
//! resumes from the store's snapshot, and offers typed async calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::prelude::*;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::clock::SharedClock;
use crate::config::EngineConfig;
use crate::domain::asset::{Universe, UniverseError};
use crate::domain::command::{Command, Outcome};
use crate::domain::exchange::{Exchange, ExchangeState, Quote};
use crate::domain::game::GameRules;
use crate::domain::ids::{AssetId, PlayerId};
use crate::domain::ledger::PlayerLedger;
use crate::domain::news::{HEADLINES_KEPT, Headline, NewsError, NewsTarget, pending_news};
use crate::domain::price_model::{AssetModel, MarketModel, SectorModel};
use crate::domain::rejection::Rejection;
use crate::domain::rules::MarketRules;
use crate::market::{
    CommandResult, ExecuteBatch, GetAssetActors, GetLedger, GetPortfolioActor, GetQuotes, GetState, MarketActor,
    MarketParts, PricesChanged, Shutdown,
};
use crate::metrics::EngineMetrics;
use crate::persistence::PersistenceActor;
use crate::portfolio::{GetPortfolio, PortfolioView};
use crate::ports::{MarketSnapshot, Notifier, Store, StoreError};
use crate::ticker::{NewsFeed, QueueNews, StepNow, Subscribe, TickerActor};

/// Why the engine could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Universe(#[from] UniverseError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the engine has stopped")]
    Stopped,
}

/// What the engine needs from outside.
pub struct EngineDeps {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub notifier: Arc<dyn Notifier>,
    /// Whether the ticker steps on the clock by itself (off for hand-stepped tests).
    pub autonomous_ticker: bool,
}

/// Most events read from the store per page while replaying the log tail.
const REPLAY_PAGE_EVENTS: usize = 10_000;

/// Resumes from the store: the last market snapshot (or the configured
/// market, saved as the first snapshot), the log tail after it, and the
/// ledgers of players whose orders rest on the books.
async fn recover(
    deps: &EngineDeps,
    universe: &Arc<Universe>,
    rules: &MarketRules,
    game: &Arc<GameRules>,
    seed: u64,
) -> Result<(Exchange, Vec<AssetModel>, Vec<SectorModel>), EngineError> {
    let (mut exchange, models, sectors) = match deps.store.load_market().await? {
        Some(snapshot) if snapshot.assets.len() == universe.len() => {
            let exchange = Exchange::from_state(Arc::clone(universe), rules.clone(), snapshot.exchange)
                .with_game_rules(Arc::clone(game));
            (exchange, snapshot.assets, snapshot.sectors)
        }
        _ => {
            let model = MarketModel::new(universe, seed);
            let exchange = Exchange::new(Arc::clone(universe), rules.clone()).with_game_rules(Arc::clone(game));
            let first = MarketSnapshot {
                exchange: exchange.market_state(),
                sectors: model.sectors.clone(),
                assets: model.assets.clone(),
            };
            deps.store.save_market(Arc::new(first)).await?;
            (exchange, model.assets, model.sectors)
        }
    };
    loop {
        let after = exchange.next_seq().saturating_sub(1);
        let page = deps.store.events_after(after, REPLAY_PAGE_EVENTS).await?;
        if page.is_empty() {
            break;
        }
        for stamped in &page {
            exchange.apply(stamped);
        }
    }
    for player in exchange.players_with_orders() {
        if let Some(account) = deps.store.load_account(player).await? {
            exchange.attach(player, account);
        }
    }
    Ok((exchange, models, sectors))
}

/// A running engine.
#[derive(Clone)]
pub struct Engine {
    market: Addr<MarketActor>,
    ticker: Addr<TickerActor>,
    universe: Arc<Universe>,
    rules: MarketRules,
    game: Arc<GameRules>,
    clock: SharedClock,
    metrics: Arc<EngineMetrics>,
    store_healthy: Arc<AtomicBool>,
    batch_commands_max: usize,
    queue: mpsc::Sender<(Command, oneshot::Sender<CommandResult>)>,
    news: Arc<NewsFeed>,
}

/// The asset and new state of an operator's halt or resumption.
fn halt_of(command: &Command) -> Option<(AssetId, bool)> {
    match command {
        Command::Halt { asset, halted } | Command::AdminHalt { asset, halted, .. } => Some((*asset, *halted)),
        _ => None,
    }
}

/// Drains single commands into market batches: whatever has queued up while
/// the previous batch was being sent goes out as the next one.
async fn batch_commands(
    market: Addr<MarketActor>,
    mut queue: mpsc::Receiver<(Command, oneshot::Sender<CommandResult>)>,
    batch_commands_max: usize,
) {
    while let Some((command, reply)) = queue.recv().await {
        let mut commands = vec![command];
        let mut replies = vec![reply];
        while commands.len() < batch_commands_max {
            match queue.try_recv() {
                Ok((command, reply)) => {
                    commands.push(command);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        let request = market.send(ExecuteBatch(commands));
        actix::spawn(async move {
            match request.await {
                Ok(results) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
                Err(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(Rejection::Unavailable));
                    }
                }
            }
        });
    }
}

impl Engine {
    /// Starts the engine inside the running actix system: resumes from the
    /// store's market snapshot if there is one, else from the configuration.
    ///
    /// # Errors
    /// An invalid universe, or a store that cannot be read.
    pub async fn start(config: &EngineConfig, deps: EngineDeps) -> Result<Self, EngineError> {
        let universe = Arc::new(config.universe()?);
        let rules = config.market.clone();
        let game = Arc::new(config.game.clone());
        let settings = config.engine.clone();
        let (exchange, models, sectors) = recover(&deps, &universe, &rules, &game, settings.seed).await?;
        let minute = models.iter().map(AssetModel::minute).max().unwrap_or(0);
        let metrics = Arc::new(EngineMetrics::default());
        let store_healthy = Arc::new(AtomicBool::new(true));
        let persistence = PersistenceActor::new(
            Arc::clone(&deps.store),
            Arc::clone(&metrics),
            Arc::clone(&store_healthy),
            settings.flush_batch_events_max,
            settings.flush_interval_ms,
        )
        .with_pipeline_depth(settings.flush_pipeline_depth)
        .start();
        let market_arbiter = Arbiter::new();
        let portfolio_arbiter = Arbiter::new().handle();
        let parts = MarketParts {
            exchange,
            models,
            sectors: sectors.clone(),
            settings: settings.clone(),
            clock: Arc::clone(&deps.clock),
            store: Arc::clone(&deps.store),
            notifier: deps.notifier,
            persistence,
            metrics: Arc::clone(&metrics),
            store_healthy: Arc::clone(&store_healthy),
            portfolio_arbiter,
        };
        let market = MarketActor::start_in_arbiter(&market_arbiter.handle(), move |_| MarketActor::new(parts));
        let assets = market.send(GetAssetActors).await.map_err(|_| EngineError::Stopped)?;
        let (clock, interval, categories) =
            (Arc::clone(&deps.clock), settings.tick_interval_ms, universe.asset_categories().to_vec());
        let (market_for_ticker, autonomous) = (market.clone(), deps.autonomous_ticker);
        let news = Arc::new(NewsFeed::new(&universe, Arc::clone(&deps.clock), HEADLINES_KEPT, minute));
        let feed = Arc::clone(&news);
        let ticker = TickerActor::start_in_arbiter(&market_arbiter.handle(), move |_| {
            TickerActor::new(clock, interval, market_for_ticker, assets, sectors, categories, feed, autonomous)
        });
        let (queue, commands) = mpsc::channel(settings.command_queue_max.max(1));
        actix::spawn(batch_commands(market.clone(), commands, settings.batch_commands_max.max(1)));
        Ok(Self {
            queue,
            market,
            ticker,
            universe,
            rules,
            game,
            clock: Arc::clone(&deps.clock),
            metrics,
            store_healthy,
            batch_commands_max: settings.batch_commands_max.max(1),
            news,
        })
    }

    /// The asset universe.
    #[must_use]
    pub fn universe(&self) -> &Arc<Universe> {
        &self.universe
    }

    /// The engine's time (market time: the clock it was started with), in ms.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The game's rules (levels, achievements, daily bonus, seasons, …).
    #[must_use]
    pub fn game_rules(&self) -> &Arc<GameRules> {
        &self.game
    }

    /// The market's rules.
    #[must_use]
    pub fn rules(&self) -> &MarketRules {
        &self.rules
    }

    /// The engine's counters.
    #[must_use]
    pub fn metrics(&self) -> &Arc<EngineMetrics> {
        &self.metrics
    }

    /// Whether the store took the last flush.
    #[must_use]
    pub fn store_healthy(&self) -> bool {
        self.store_healthy.load(Ordering::SeqCst)
    }

    /// Runs commands in order; each result arrives once durable. Batches
    /// larger than one market message are split.
    ///
    /// # Errors
    /// `Stopped` if the market is gone.
    pub async fn execute(&self, commands: Vec<Command>) -> Result<Vec<CommandResult>, EngineError> {
        let halts: Vec<(usize, AssetId, bool)> = commands
            .iter()
            .enumerate()
            .filter_map(|(index, command)| halt_of(command).map(|(asset, halted)| (index, asset, halted)))
            .collect();
        let results = if commands.len() <= self.batch_commands_max {
            self.market.send(ExecuteBatch(commands)).await.map_err(|_| EngineError::Stopped)?
        } else {
            let mut results = Vec::with_capacity(commands.len());
            for chunk in commands.chunks(self.batch_commands_max) {
                let part = self.market.send(ExecuteBatch(chunk.to_vec())).await.map_err(|_| EngineError::Stopped)?;
                results.extend(part);
            }
            results
        };
        for (index, asset, halted) in halts {
            if matches!(results.get(index), Some(Ok(Outcome::Halted))) {
                self.news.operator_halt(asset, halted);
            }
        }
        Ok(results)
    }

    /// Runs one command. Commands arriving together from many callers are
    /// coalesced into one market message (smart batching); a full queue is
    /// refused at once with `Busy`.
    ///
    /// # Errors
    /// The command's `Rejection`; `Busy` when the queue is full;
    /// `Unavailable` if the engine stopped.
    pub async fn execute_one(&self, command: Command) -> Result<Outcome, Rejection> {
        let (reply, result) = oneshot::channel();
        let halt = halt_of(&command);
        match self.queue.try_send((command, reply)) {
            Ok(()) => {
                let outcome = result.await.unwrap_or(Err(Rejection::Unavailable));
                if let (Some((asset, halted)), Ok(Outcome::Halted)) = (halt, &outcome) {
                    self.news.operator_halt(asset, halted);
                }
                outcome
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.busy_rejections.fetch_add(1, Ordering::Relaxed);
                Err(Rejection::Busy)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Rejection::Unavailable),
        }
    }

    /// Every asset's quote.
    ///
    /// # Errors
    /// `Stopped` if the market is gone.
    pub async fn quotes(&self) -> Result<Vec<Quote>, EngineError> {
        self.market.send(GetQuotes).await.map_err(|_| EngineError::Stopped)
    }

    /// A player's price alerts, oldest first.
    ///
    /// # Errors
    /// `Stopped` when the market is gone.
    pub async fn alerts(&self, player: PlayerId) -> Result<Vec<crate::domain::alert::Alert>, EngineError> {
        self.market.send(crate::market::GetAlerts { player }).await.map_err(|_| EngineError::Stopped)
    }

    /// A player's ledger from the sequencer, loading the player if needed;
    /// `None` for a player without an account.
    ///
    /// # Errors
    /// `Unavailable` when the store cannot load the player.
    pub async fn ledger(&self, player: PlayerId) -> Result<Option<PlayerLedger>, Rejection> {
        let ledger = self.market.send(GetLedger { player }).await.map_err(|_| Rejection::Unavailable)?;
        if ledger.is_some() {
            return Ok(ledger);
        }
        self.activate(player).await?;
        self.market.send(GetLedger { player }).await.map_err(|_| Rejection::Unavailable)
    }

    /// A player's portfolio as their portfolio actor projects it.
    ///
    /// # Errors
    /// `Unavailable` when the player cannot be loaded.
    pub async fn portfolio(&self, player: PlayerId) -> Result<Option<PortfolioView>, Rejection> {
        let mut actor = self.market.send(GetPortfolioActor { player }).await.map_err(|_| Rejection::Unavailable)?;
        if actor.is_none() {
            self.activate(player).await?;
            actor = self.market.send(GetPortfolioActor { player }).await.map_err(|_| Rejection::Unavailable)?;
        }
        match actor {
            Some(addr) => addr.send(GetPortfolio).await.map(Some).map_err(|_| Rejection::Unavailable),
            None => Ok(None),
        }
    }

    /// Loads a player (without opening an account).
    async fn activate(&self, player: PlayerId) -> Result<(), Rejection> {
        // Cancelling a non-existent order is a no-op that still loads the player.
        let probe = Command::Cancel { player, order: crate::domain::ids::OrderId(0) };
        match self.execute_one(probe).await {
            Err(Rejection::Unavailable) => Err(Rejection::Unavailable),
            Err(Rejection::Busy) => Err(Rejection::Busy),
            _ => Ok(()),
        }
    }

    /// The exchange's whole state.
    ///
    /// # Errors
    /// `Stopped` if the market is gone.
    pub async fn state(&self) -> Result<ExchangeState, EngineError> {
        self.market.send(GetState).await.map_err(|_| EngineError::Stopped)
    }

    /// Steps the market one minute now.
    ///
    /// # Errors
    /// `Stopped` if the ticker is gone.
    pub async fn step(&self) -> Result<Option<PricesChanged>, EngineError> {
        self.ticker.send(StepNow).await.map_err(|_| EngineError::Stopped)
    }

    /// Subscribes to price changes.
    pub fn subscribe(&self, subscriber: Recipient<PricesChanged>) {
        self.ticker.do_send(Subscribe(subscriber));
    }

    /// Up to `limit` recent headlines (at most [`HEADLINES_KEPT`] are kept),
    /// newest first.
    #[must_use]
    pub fn headlines(&self, limit: usize) -> Vec<Headline> {
        self.news.latest(limit)
    }

    /// A receiver of every headline from now on, in order. A subscriber more
    /// than `HEADLINE_CHANNEL_CAPACITY` headlines behind gets
    /// `RecvError::Lagged` and skips the oldest; `RecvError::Closed` once the
    /// engine is gone.
    #[must_use]
    pub fn subscribe_headlines(&self) -> broadcast::Receiver<Headline> {
        self.news.subscribe()
    }

    /// Operator news: `log_jump` (within ±0.5) hits `target`'s price and fair
    /// value at its next market minute, with `text` as the headline (else a
    /// generated one). The pending news is part of the model's state, so a
    /// snapshot keeps it; up to `PENDING_NEWS_MAX` wait per target, one
    /// landing per minute. Parse `target` with [`NewsTarget::parse`].
    ///
    /// # Errors
    /// `OutOfBounds`, `TextTooLong`, `UnknownTarget`, `QueueFull`;
    /// `Unavailable` if the engine stopped.
    pub async fn inject_news(&self, target: NewsTarget, log_jump: f64, text: Option<String>) -> Result<(), NewsError> {
        let news = pending_news(log_jump, text)?;
        self.ticker.send(QueueNews { target, news }).await.map_err(|_| NewsError::Unavailable)?
    }

    /// Stops taking work, flushes everything and saves a snapshot.
    ///
    /// # Errors
    /// The store's error if the final flush or snapshot failed.
    pub async fn shutdown(&self) -> Result<(), EngineError> {
        self.market.send(Shutdown).await.map_err(|_| EngineError::Stopped)?.map_err(EngineError::from)
    }
}
