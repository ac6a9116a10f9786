//! `Engine`: the handle the interface layer holds. It starts the actor system
//! (market with its asset actors, ticker, persistence, portfolio arbiter),
//! resumes from the store's snapshot, and offers typed async calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::prelude::*;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::clock::SharedClock;
use crate::config::EngineConfig;
use crate::domain::applied::{AppliedCommands, CommandKey};
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
    AdvanceApplied, CommandResult, ExecuteBatch, GetAssetActors, GetLedger, GetPortfolioActor, GetQuotes, GetState,
    Keyed, MarketActor, MarketParts, PricesChanged, Shutdown,
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
    #[error("the final flush did not finish: {events} events were not written")]
    Unflushed { events: u64 },
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

/// What an engine starts from: the exchange as of the end of the log (the
/// ledgers of players with resting orders attached), the price models, and
/// the outcomes of stream commands applied above the stream cursor.
pub struct Recovered {
    pub exchange: Exchange,
    pub models: Vec<AssetModel>,
    pub sectors: Vec<SectorModel>,
    pub applied: AppliedCommands,
}

/// The market as the store last saved it (or the configured market, saved
/// as the first snapshot), before the log tail after it is applied.
///
/// # Errors
/// A store that cannot be read or written.
pub async fn load_market(
    store: &Arc<dyn Store>,
    config: &EngineConfig,
    universe: &Arc<Universe>,
) -> Result<(Exchange, Vec<AssetModel>, Vec<SectorModel>), EngineError> {
    let (rules, game) = (config.market.clone(), Arc::new(config.game.clone()));
    match store.load_market().await? {
        Some(snapshot) if snapshot.assets.len() == universe.len() => {
            let exchange = Exchange::from_state(Arc::clone(universe), rules, snapshot.exchange).with_game_rules(game);
            Ok((exchange, snapshot.assets, snapshot.sectors))
        }
        _ => {
            let model = MarketModel::new(universe, config.engine.seed);
            let exchange = Exchange::new(Arc::clone(universe), rules).with_game_rules(game);
            let first = MarketSnapshot {
                exchange: exchange.market_state(),
                sectors: model.sectors.clone(),
                assets: model.assets.clone(),
            };
            store.save_market(Arc::new(first)).await?;
            Ok((exchange, model.assets, model.sectors))
        }
    }
}

/// Applies the log after `exchange`'s last event, page by page.
///
/// # Errors
/// A store that cannot be read.
pub async fn catch_up(store: &Arc<dyn Store>, exchange: &mut Exchange) -> Result<(), EngineError> {
    loop {
        let after = exchange.next_seq().saturating_sub(1);
        let page = store.events_after(after, REPLAY_PAGE_EVENTS).await?;
        if page.is_empty() {
            return Ok(());
        }
        for stamped in &page {
            exchange.apply(stamped);
        }
    }
}

/// Loads the ledgers of the players whose orders rest on the books.
///
/// # Errors
/// A store that cannot be read.
pub async fn attach_resting(store: &Arc<dyn Store>, exchange: &mut Exchange) -> Result<(), EngineError> {
    for player in exchange.players_with_orders() {
        if exchange.account(player).is_none()
            && let Some(account) = store.load_account(player).await?
        {
            exchange.attach(player, account);
        }
    }
    Ok(())
}

/// Steps price models that lag the exchange (a snapshot older than the
/// log's last minute) up to its minute, so a resumed market moves on at
/// once instead of replaying minutes the log has already seen.
pub fn fast_forward(
    universe: &Universe,
    models: &mut Vec<AssetModel>,
    sectors: &mut Vec<SectorModel>,
    exchange_minute: u64,
) {
    let lagging = models.iter().map(AssetModel::minute).min().unwrap_or(exchange_minute);
    if lagging >= exchange_minute {
        return;
    }
    // The universe's layout with the saved states in place of fresh ones.
    let mut market = MarketModel::new(universe, 0);
    market.sectors = std::mem::take(sectors);
    market.assets = std::mem::take(models);
    for _ in lagging..exchange_minute {
        market.step();
    }
    *models = market.assets;
    *sectors = market.sectors;
}

/// Resumes from the store: the last market snapshot (or the configured
/// market), the log tail after it, and the ledgers of players whose orders
/// rest on the books.
async fn recover(deps: &EngineDeps, config: &EngineConfig, universe: &Arc<Universe>) -> Result<Recovered, EngineError> {
    let (mut exchange, models, sectors) = load_market(&deps.store, config, universe).await?;
    catch_up(&deps.store, &mut exchange).await?;
    attach_resting(&deps.store, &mut exchange).await?;
    Ok(Recovered { exchange, models, sectors, applied: AppliedCommands::default() })
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
    queue: mpsc::Sender<(Keyed, oneshot::Sender<CommandResult>)>,
    news: Arc<NewsFeed>,
    /// The market's and the portfolios' threads.
    threads: Arc<Vec<ArbiterHandle>>,
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
    mut queue: mpsc::Receiver<(Keyed, oneshot::Sender<CommandResult>)>,
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
        let recovered = recover(&deps, config, &universe).await?;
        Self::start_recovered(config, deps, recovered).await
    }

    /// Starts the engine from state already recovered (a standby taking
    /// over, having followed the log). Price models lagging the exchange are
    /// first stepped up to its minute.
    ///
    /// # Errors
    /// An invalid universe.
    pub async fn start_recovered(
        config: &EngineConfig,
        deps: EngineDeps,
        recovered: Recovered,
    ) -> Result<Self, EngineError> {
        let universe = Arc::new(config.universe()?);
        let rules = config.market.clone();
        let game = Arc::new(config.game.clone());
        let settings = config.engine.clone();
        let Recovered { exchange, mut models, mut sectors, applied } = recovered;
        fast_forward(&universe, &mut models, &mut sectors, exchange.last_minute());
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
        let threads = Arc::new(vec![market_arbiter.handle(), portfolio_arbiter.clone()]);
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
            applied,
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
            threads,
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
        let keyed: Vec<Keyed> = commands.into_iter().map(Keyed::from).collect();
        let results = if keyed.len() <= self.batch_commands_max {
            self.market.send(ExecuteBatch(keyed)).await.map_err(|_| EngineError::Stopped)?
        } else {
            let mut results = Vec::with_capacity(keyed.len());
            for chunk in keyed.chunks(self.batch_commands_max) {
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
        self.execute_keyed(None, command).await
    }

    /// [`Engine::execute_one`] for a command of a stream message: with a
    /// `key`, a command applied before (delivered again after a takeover)
    /// answers with its first outcome and changes nothing.
    ///
    /// # Errors
    /// As [`Engine::execute_one`].
    pub async fn execute_keyed(&self, key: Option<CommandKey>, command: Command) -> Result<Outcome, Rejection> {
        let (reply, result) = oneshot::channel();
        let halt = halt_of(&command);
        match self.queue.try_send((Keyed { key, command }, reply)) {
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

    /// Every stream message up to `cursor` is fully handled: the outcomes
    /// of their commands need not be kept.
    pub fn advance_applied(&self, cursor: u64) {
        self.market.do_send(AdvanceApplied { cursor });
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

    /// Stops the engine's threads at once, flushing nothing (an engine that
    /// was superseded: whatever it holds may not be written any more).
    pub fn halt(&self) {
        for thread in self.threads.iter() {
            thread.stop();
        }
    }

    /// [`Engine::shutdown`], given up after `timeout` (a store that refuses
    /// or cannot take writes must not hold a stop forever); says in the log
    /// how many events were left unwritten.
    ///
    /// # Errors
    /// The store's error, or `Unflushed` with the events left behind.
    pub async fn shutdown_within(&self, timeout: std::time::Duration) -> Result<(), EngineError> {
        match tokio::time::timeout(timeout, self.shutdown()).await {
            Ok(result) => result,
            Err(_) => {
                let events = self.metrics.pending_events.load(Ordering::Relaxed);
                tracing::error!(
                    events,
                    timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    "the final flush did not finish in time; these events were not written (their commands were never confirmed)"
                );
                Err(EngineError::Unflushed { events })
            }
        }
    }
}
