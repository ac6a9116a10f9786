//! `MarketActor`: the supervisor and single sequencer. Every command passes
//! through it and is applied to the `Exchange` synchronously, in arrival
//! order, with no I/O awaited mid-command; the resulting events go to the
//! persistence actor, and callers hear back only once their batch is durable.
//! It creates the asset actors, activates a portfolio actor per active player
//! and passivates it when idle, and rebuilds a stopped child from its state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::prelude::*;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use tokio::sync::oneshot;

use crate::asset::{AssetActor, StepResult};
use crate::clock::SharedClock;
use crate::config::EngineSettings;
use crate::domain::account::Account;
use crate::domain::applied::{AppliedCommands, CommandKey};
use crate::domain::command::{Command, Outcome};
use crate::domain::event::{Event, Stamped, Tick};
use crate::domain::exchange::{Exchange, ExchangeState, Quote};
use crate::domain::ids::{AssetId, PlayerId};
use crate::domain::ledger::PlayerLedger;
use crate::domain::price_model::{AssetModel, News, SectorModel};
use crate::domain::rejection::Rejection;
use crate::metrics::EngineMetrics;
use crate::persistence::{FlushAll, PersistEvents, PersistenceActor};
use crate::portfolio::{Hydrate, PlayerEvents, PortfolioActor};
use crate::ports::{EventBatch, MarketSnapshot, Notice, Notifier, Store, StoreError};

/// The result of one command, as its caller sees it.
pub type CommandResult = Result<Outcome, Rejection>;

/// Commands to apply in order; each gets its own result, delivered once the
/// events they caused are durable.
#[derive(Message)]
#[rtype(result = "Vec<CommandResult>")]
pub struct ExecuteBatch(pub Vec<Keyed>);

/// A command, with its key when it comes from a command stream (a keyed
/// command delivered again answers as it did and changes nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    pub key: Option<CommandKey>,
    pub command: Command,
}

impl From<Command> for Keyed {
    fn from(command: Command) -> Self {
        Self { key: None, command }
    }
}

/// Every stream message up to `cursor` is fully handled: their commands'
/// outcomes need not be kept any longer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AdvanceApplied {
    pub cursor: u64,
}

/// A portfolio actor's load of its player finished.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AccountLoaded {
    pub player: PlayerId,
    pub result: Result<Option<Account>, StoreError>,
    pub portfolio: Addr<PortfolioActor>,
}

/// An idle portfolio actor asks to be let go; `true` = granted.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Passivate {
    pub player: PlayerId,
}

/// The models' new minute, from the ticker.
#[derive(Message)]
#[rtype(result = "PricesChanged")]
pub struct ApplyTicks {
    pub steps: Vec<StepResult>,
    pub sectors: Vec<SectorModel>,
}

/// Prices after a market minute, for subscribers (alerts, play page, fan-out).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PricesChanged {
    pub minute: u64,
    pub quotes: Arc<Vec<Quote>>,
    pub news: Arc<Vec<(AssetId, News)>>,
}

/// Model state changed between steps (operator news queued): keep it for
/// snapshots and for rebuilding the asset actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateModels {
    pub asset: Option<(AssetId, Box<AssetModel>)>,
    pub sectors: Option<Vec<SectorModel>>,
}

/// A stopped asset actor must be rebuilt from its last known model state.
#[derive(Message)]
#[rtype(result = "Option<Addr<AssetActor>>")]
pub struct RestartAsset {
    pub asset: AssetId,
}

/// All current quotes.
#[derive(Message)]
#[rtype(result = "Vec<Quote>")]
pub struct GetQuotes;

/// A player's price alerts (alerts stay live while the player is passive).
#[derive(Message)]
#[rtype(result = "Vec<crate::domain::alert::Alert>")]
pub struct GetAlerts {
    pub player: PlayerId,
}

/// A loaded player's ledger straight from the sequencer.
#[derive(Message)]
#[rtype(result = "Option<PlayerLedger>")]
pub struct GetLedger {
    pub player: PlayerId,
}

/// The portfolio actor of an active player.
#[derive(Message)]
#[rtype(result = "Option<Addr<PortfolioActor>>")]
pub struct GetPortfolioActor {
    pub player: PlayerId,
}

/// The exchange's state (tests, audits).
#[derive(Message)]
#[rtype(result = "ExchangeState")]
pub struct GetState;

/// The asset actors, in asset order (for the ticker).
#[derive(Message)]
#[rtype(result = "Vec<Addr<AssetActor>>")]
pub struct GetAssetActors;

/// Stop taking work, flush everything and save a snapshot.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Shutdown;

/// What the market is built from.
pub struct MarketParts {
    pub exchange: Exchange,
    pub models: Vec<AssetModel>,
    pub sectors: Vec<SectorModel>,
    pub settings: EngineSettings,
    pub clock: SharedClock,
    pub store: Arc<dyn Store>,
    pub notifier: Arc<dyn Notifier>,
    pub persistence: Addr<PersistenceActor>,
    pub metrics: Arc<EngineMetrics>,
    pub store_healthy: Arc<AtomicBool>,
    pub portfolio_arbiter: ArbiterHandle,
    /// Outcomes of stream commands applied before (restored at a takeover).
    pub applied: AppliedCommands,
}

/// A batch's events for portfolio projections and its notices, waiting for
/// the batch to be durable.
struct Undelivered {
    last_seq: u64,
    routed: Vec<(PlayerId, SmallVec<[Stamped; 2]>)>,
    notices: Vec<(PlayerId, Notice)>,
}

/// A command waiting for its player's ledger to load.
struct Parked {
    keyed: Keyed,
    reply: oneshot::Sender<CommandResult>,
}

/// Supervisor and sequencer of one market.
pub struct MarketActor {
    exchange: Exchange,
    models: Vec<AssetModel>,
    sectors: Vec<SectorModel>,
    assets: Vec<Addr<AssetActor>>,
    settings: EngineSettings,
    clock: SharedClock,
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    persistence: Addr<PersistenceActor>,
    metrics: Arc<EngineMetrics>,
    store_healthy: Arc<AtomicBool>,
    portfolio_arbiter: ArbiterHandle,
    /// Active players (their ledger, or their lack of one, is loaded).
    portfolios: FxHashMap<PlayerId, Addr<PortfolioActor>>,
    activating: FxHashMap<PlayerId, Vec<Parked>>,
    /// Ledgers let go before their last events were durable, by that event's seq.
    detached: FxHashMap<PlayerId, (Account, u64)>,
    durable_seq: u64,
    closing: bool,
    last_snapshot_ms: i64,
    /// Scratch space of `route`, kept to reuse its allocation.
    routing: FxHashMap<PlayerId, SmallVec<[Stamped; 2]>>,
    /// Batches handed to persistence and not yet delivered, in log order.
    undelivered: std::collections::VecDeque<Undelivered>,
    /// Stream commands applied, with their outcomes (for redeliveries).
    applied: AppliedCommands,
}

impl MarketActor {
    /// A market over `parts`; asset actors start with it.
    #[must_use]
    pub fn new(parts: MarketParts) -> Self {
        let durable_seq = parts.exchange.next_seq().saturating_sub(1);
        Self {
            exchange: parts.exchange,
            models: parts.models,
            sectors: parts.sectors,
            assets: Vec::new(),
            settings: parts.settings,
            clock: parts.clock,
            store: parts.store,
            notifier: parts.notifier,
            persistence: parts.persistence,
            metrics: parts.metrics,
            store_healthy: parts.store_healthy,
            portfolio_arbiter: parts.portfolio_arbiter,
            portfolios: FxHashMap::default(),
            activating: FxHashMap::default(),
            detached: FxHashMap::default(),
            durable_seq,
            closing: false,
            last_snapshot_ms: 0,
            routing: FxHashMap::default(),
            undelivered: std::collections::VecDeque::new(),
            applied: parts.applied,
        }
    }

    /// Makes `player` active now if their ledger is in memory; otherwise
    /// starts loading it and returns `false` (the caller parks the command).
    fn ensure_active(&mut self, player: PlayerId, ctx: &mut Context<Self>) -> bool {
        if self.portfolios.contains_key(&player) {
            return true;
        }
        if self.activating.contains_key(&player) {
            return false;
        }
        if let Some((account, _)) = self.detached.remove(&player) {
            // Its newest state is still in memory: no need to ask the store.
            self.exchange.attach(player, account);
        }
        if self.exchange.account(player).is_some() {
            self.spawn_portfolio(player, ctx);
            return true;
        }
        self.activating.insert(player, Vec::new());
        // It loads the ledger and reports back with `AccountLoaded`.
        self.start_portfolio(player, true, ctx);
        false
    }

    /// Starts a portfolio actor on the portfolio arbiter; `load` = it reads
    /// the player from the store itself (else the market hydrates it).
    fn start_portfolio(&self, player: PlayerId, load: bool, ctx: &mut Context<Self>) -> Addr<PortfolioActor> {
        let me = ctx.address();
        let (store, clock, metrics, idle_ms) = (
            Arc::clone(&self.store),
            Arc::clone(&self.clock),
            Arc::clone(&self.metrics),
            self.settings.portfolio_idle_ms,
        );
        PortfolioActor::start_in_arbiter(&self.portfolio_arbiter, move |_| {
            let actor = PortfolioActor::new(player, me, store, clock, metrics, idle_ms);
            if load { actor } else { actor.loaded() }
        })
    }

    /// Why new work must be refused right now, if it must.
    fn admission(&self) -> Option<Rejection> {
        if self.closing || !self.store_healthy.load(Ordering::SeqCst) {
            return Some(Rejection::Unavailable);
        }
        let pending = self.metrics.pending_events.load(Ordering::Relaxed);
        if pending >= self.settings.pending_events_max as u64 {
            return Some(Rejection::Busy);
        }
        None
    }

    /// Applies one command whose player is loaded — or, for a stream
    /// command applied before, answers with its first outcome. A keyed
    /// command that changed something is remembered in `outcomes` (stored
    /// with its events).
    fn apply_keyed(
        &mut self,
        keyed: &Keyed,
        now_ms: i64,
        out: &mut Vec<Stamped>,
        outcomes: &mut Vec<(CommandKey, Outcome)>,
    ) -> CommandResult {
        let Some(key) = keyed.key else { return self.apply_command(&keyed.command, now_ms, out) };
        if let Some(outcome) = self.applied.get(key) {
            self.metrics.redelivered.fetch_add(1, Ordering::Relaxed);
            return Ok(outcome.clone());
        }
        let before = out.len();
        let result = self.apply_command(&keyed.command, now_ms, out);
        if let Ok(outcome) = &result
            && out.len() > before
        {
            self.applied.record(key, outcome.clone());
            outcomes.push((key, outcome.clone()));
        }
        result
    }

    /// Applies one command whose player is loaded.
    fn apply_command(&mut self, command: &Command, now_ms: i64, out: &mut Vec<Stamped>) -> CommandResult {
        let result = self.exchange.execute(command, now_ms, out);
        self.metrics.commands.fetch_add(1, Ordering::Relaxed);
        match &result {
            Ok(Outcome::Placed(crate::domain::exchange::Placed::Filled(_))) => {
                self.metrics.trades.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => {
                self.metrics.rejections.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// Starts a portfolio actor for an already loaded player and hydrates it.
    fn spawn_portfolio(&mut self, player: PlayerId, ctx: &mut Context<Self>) {
        let addr = self.start_portfolio(player, false, ctx);
        addr.do_send(Hydrate { ledger: self.ledger_of(player), seq: self.exchange.next_seq().saturating_sub(1) });
        self.portfolios.insert(player, addr);
    }

    fn ledger_of(&self, player: PlayerId) -> PlayerLedger {
        let account = self.exchange.account(player).cloned().unwrap_or_default();
        PlayerLedger::new(account, self.exchange.orders_of(player).copied().collect())
    }

    /// Hands events (and the stream outcomes they carry out) to persistence;
    /// the receiver fires once they are durable.
    fn persist(
        &mut self,
        events: Vec<Stamped>,
        outcomes: Vec<(CommandKey, Outcome)>,
        touched: Vec<PlayerId>,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (ack, done) = oneshot::channel();
        self.metrics.pending_events.fetch_add(events.len() as u64, Ordering::Relaxed);
        let now_ms = self.clock.now_ms();
        let interval_ms = i64::try_from(self.settings.snapshot_interval_ms).unwrap_or(i64::MAX);
        let snapshot = if now_ms.saturating_sub(self.last_snapshot_ms) >= interval_ms {
            self.last_snapshot_ms = now_ms;
            Some(Arc::new(self.snapshot()))
        } else {
            None
        };
        let accounts = touched
            .into_iter()
            .filter_map(|player| self.exchange.account(player).map(|account| (player, account.clone())))
            .collect();
        self.persistence.do_send(PersistEvents { batch: EventBatch { events, accounts, outcomes }, snapshot, ack });
        done
    }

    /// The market-wide state to resume from (no player ledgers).
    fn snapshot(&self) -> MarketSnapshot {
        MarketSnapshot {
            exchange: self.exchange.market_state(),
            sectors: self.sectors.clone(),
            assets: self.models.clone(),
        }
    }

    /// Each touched player's events (copies, to send to their portfolio
    /// actor once durable).
    fn route(&mut self, events: &[Stamped]) -> Vec<(PlayerId, SmallVec<[Stamped; 2]>)> {
        for stamped in events {
            if let Some(player) = stamped.event.player() {
                self.routing.entry(player).or_default().push(stamped.clone());
            }
        }
        self.routing.drain().collect()
    }

    /// After a batch is durable: advance the durable mark, forget detached
    /// ledgers the store now has, and feed portfolio projections and notices.
    fn on_durable(&mut self, last_seq: u64) {
        self.durable_seq = self.durable_seq.max(last_seq);
        let durable = self.durable_seq;
        if !self.detached.is_empty() {
            self.detached.retain(|_, (_, seq)| *seq > durable);
        }
        // Batches become durable in log order, but actix runs the futures
        // waiting for them in no fixed order: deliver every batch up to the
        // durable mark, oldest first, or a projection would skip the events
        // of an older batch as already seen.
        let mut deliveries = Vec::new();
        while self.undelivered.front().is_some_and(|batch| batch.last_seq <= durable) {
            let Some(batch) = self.undelivered.pop_front() else { break };
            for (player, events) in batch.routed {
                if let Some(addr) = self.portfolios.get(&player) {
                    deliveries.push((addr.clone(), events));
                }
            }
            for (player, notice) in batch.notices {
                self.notifier.notify(player, notice);
            }
        }
        self.notifier.durable_through(durable);
        // One hop to the portfolio thread per batch, not one per player:
        // there each actor's mailbox is fed without waking another thread.
        if !deliveries.is_empty() {
            self.portfolio_arbiter.spawn(async move {
                for (addr, events) in deliveries {
                    addr.do_send(PlayerEvents(events));
                }
            });
        }
    }

    /// Persists `events` (with the stream outcomes they carry out) and runs
    /// `finish` once they are durable (or failed).
    fn after_durable<R, F>(
        &mut self,
        events: Vec<Stamped>,
        outcomes: Vec<(CommandKey, Outcome)>,
        finish: F,
    ) -> ResponseActFuture<Self, R>
    where
        R: 'static,
        F: FnOnce(bool, &mut Self) -> R + 'static,
    {
        if events.is_empty() {
            let value = finish(true, self);
            return Box::pin(fut::ready(value));
        }
        let last_seq = events.last().map_or(0, |e| e.seq);
        let routed = self.route(&events);
        let notices = Notice::of_events(&events);
        let done = self.persist(events, outcomes, routed.iter().map(|(player, _)| *player).collect());
        self.undelivered.push_back(Undelivered { last_seq, routed, notices });
        Box::pin(async move { matches!(done.await, Ok(Ok(()))) }.into_actor(self).map(move |durable, actor, _| {
            if durable {
                actor.on_durable(last_seq);
            } else {
                actor.undelivered.retain(|batch| batch.last_seq != last_seq);
            }
            finish(durable, actor)
        }))
    }

    fn run_parked(&mut self, player: PlayerId, ctx: &mut Context<Self>) {
        let parked = self.activating.remove(&player).unwrap_or_default();
        if parked.is_empty() {
            return;
        }
        let now_ms = self.clock.now_ms();
        let (mut out, mut outcomes) = (Vec::new(), Vec::new());
        let mut replies = Vec::with_capacity(parked.len());
        for Parked { keyed, reply } in parked {
            let result = match self.admission() {
                Some(refusal) => Err(refusal),
                None => self.apply_keyed(&keyed, now_ms, &mut out, &mut outcomes),
            };
            replies.push((reply, result));
        }
        let finish = self.after_durable(out, outcomes, move |durable, _| {
            for (reply, result) in replies {
                let _ = reply.send(if durable { result } else { Err(Rejection::Unavailable) });
            }
        });
        ctx.spawn(finish);
    }
}

impl Actor for MarketActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        self.assets = self
            .models
            .iter()
            .cloned()
            .zip(self.exchange.universe().ids())
            .map(|(model, asset)| AssetActor::new(asset, model).start())
            .collect();
    }
}

impl Handler<ExecuteBatch> for MarketActor {
    type Result = ResponseActFuture<Self, Vec<CommandResult>>;

    fn handle(&mut self, ExecuteBatch(commands): ExecuteBatch, ctx: &mut Context<Self>) -> Self::Result {
        let now_ms = self.clock.now_ms();
        let admission = self.admission();
        let mut out = Vec::with_capacity(commands.len() * 2);
        let mut outcomes = Vec::new();
        let mut results: Vec<Result<CommandResult, oneshot::Receiver<CommandResult>>> =
            Vec::with_capacity(commands.len());
        for (index, keyed) in commands.iter().enumerate() {
            if let Some(refusal) = &admission {
                self.metrics.busy_rejections.fetch_add(1, Ordering::Relaxed);
                results.push(Ok(Err(refusal.clone())));
                continue;
            }
            if index >= self.settings.batch_commands_max {
                results.push(Ok(Err(Rejection::Busy)));
                continue;
            }
            match keyed.command.player() {
                Some(player) if !self.ensure_active(player, ctx) => {
                    let (reply, receiver) = oneshot::channel();
                    self.activating.entry(player).or_default().push(Parked { keyed: keyed.clone(), reply });
                    results.push(Err(receiver));
                }
                _ => results.push(Ok(self.apply_keyed(keyed, now_ms, &mut out, &mut outcomes))),
            }
        }
        let durable = self.after_durable(out, outcomes, |durable, _| durable);
        Box::pin(durable.then(|durable, actor, _| {
            async move {
                let mut settled = Vec::with_capacity(results.len());
                for result in results {
                    settled.push(match result {
                        Ok(result) if durable || result.is_err() => result,
                        Ok(_) => Err(Rejection::Unavailable),
                        Err(parked) => parked.await.unwrap_or(Err(Rejection::Unavailable)),
                    });
                }
                settled
            }
            .into_actor(actor)
        }))
    }
}

impl Handler<AccountLoaded> for MarketActor {
    type Result = ();

    fn handle(&mut self, loaded: AccountLoaded, ctx: &mut Context<Self>) {
        let player = loaded.player;
        match loaded.result {
            Ok(found) => {
                if let Some(account) = found {
                    self.exchange.attach(player, account);
                }
                loaded.portfolio.do_send(Hydrate {
                    ledger: self.ledger_of(player),
                    seq: self.exchange.next_seq().saturating_sub(1),
                });
                self.portfolios.insert(player, loaded.portfolio);
                self.run_parked(player, ctx);
            }
            Err(error) => {
                tracing::warn!(%error, %player, "could not load player");
                for parked in self.activating.remove(&player).unwrap_or_default() {
                    let _ = parked.reply.send(Err(Rejection::Unavailable));
                }
                // The actor that failed to load is not kept.
                drop(loaded.portfolio);
            }
        }
    }
}

impl Handler<Passivate> for MarketActor {
    type Result = bool;

    fn handle(&mut self, Passivate { player }: Passivate, _: &mut Context<Self>) -> bool {
        if self.activating.contains_key(&player) {
            return false;
        }
        if self.exchange.account(player).is_some() {
            // Refused while the player has resting orders on the books.
            let Some(account) = self.exchange.detach(player) else { return false };
            let last_seq = self.exchange.next_seq().saturating_sub(1);
            if last_seq > self.durable_seq {
                self.detached.insert(player, (account, last_seq));
            }
        }
        self.portfolios.remove(&player);
        true
    }
}

impl Handler<ApplyTicks> for MarketActor {
    type Result = ResponseActFuture<Self, PricesChanged>;

    fn handle(&mut self, message: ApplyTicks, _: &mut Context<Self>) -> Self::Result {
        let now_ms = self.clock.now_ms();
        let mut out = Vec::with_capacity(message.steps.len() + 8);
        let mut news = Vec::new();
        let mut minute = 0;
        for step in message.steps {
            let asset = step.asset;
            minute = minute.max(step.minute);
            let tick = Tick {
                asset,
                minute: step.minute,
                model_mid: step.tick.mid,
                sigma_daily: step.tick.sigma_daily,
                halted: step.tick.halted,
            };
            self.exchange.tick(tick, now_ms, &mut out);
            if let Some(item) = step.tick.news {
                news.push((asset, item));
            }
            if let Some(slot) = self.models.get_mut(asset.index()) {
                *slot = *step.model;
            }
        }
        self.sectors = message.sectors;
        self.metrics.ticks.fetch_add(1, Ordering::Relaxed);
        let trades = out.iter().filter(|e| matches!(e.event, Event::Traded(_))).count() as u64;
        self.metrics.trades.fetch_add(trades, Ordering::Relaxed);
        self.after_durable(out, Vec::new(), move |_, actor| {
            let quotes = actor.exchange.universe().ids().filter_map(|asset| actor.exchange.quote(asset)).collect();
            PricesChanged { minute, quotes: Arc::new(quotes), news: Arc::new(news) }
        })
    }
}

impl Handler<AdvanceApplied> for MarketActor {
    type Result = ();

    fn handle(&mut self, AdvanceApplied { cursor }: AdvanceApplied, _: &mut Context<Self>) {
        self.applied.advance(cursor);
    }
}

impl Handler<UpdateModels> for MarketActor {
    type Result = ();

    fn handle(&mut self, message: UpdateModels, _: &mut Context<Self>) {
        if let Some((asset, model)) = message.asset
            && let Some(slot) = self.models.get_mut(asset.index())
        {
            *slot = *model;
        }
        if let Some(sectors) = message.sectors {
            self.sectors = sectors;
        }
    }
}

impl Handler<RestartAsset> for MarketActor {
    type Result = Option<Addr<AssetActor>>;

    fn handle(&mut self, RestartAsset { asset }: RestartAsset, _: &mut Context<Self>) -> Self::Result {
        let model = self.models.get(asset.index())?.clone();
        tracing::warn!(asset = asset.0, "asset actor stopped; rebuilding it from its last state");
        let addr = AssetActor::new(asset, model).start();
        if let Some(slot) = self.assets.get_mut(asset.index()) {
            *slot = addr.clone();
        }
        Some(addr)
    }
}

impl Handler<GetQuotes> for MarketActor {
    type Result = Vec<Quote>;

    fn handle(&mut self, _: GetQuotes, _: &mut Context<Self>) -> Vec<Quote> {
        self.exchange.universe().ids().filter_map(|asset| self.exchange.quote(asset)).collect()
    }
}

impl Handler<GetAlerts> for MarketActor {
    type Result = Vec<crate::domain::alert::Alert>;

    fn handle(&mut self, GetAlerts { player }: GetAlerts, _: &mut Context<Self>) -> Self::Result {
        self.exchange.alerts_of(player).copied().collect()
    }
}

impl Handler<GetLedger> for MarketActor {
    type Result = Option<PlayerLedger>;

    fn handle(&mut self, GetLedger { player }: GetLedger, _: &mut Context<Self>) -> Self::Result {
        self.exchange.account(player).map(|_| self.ledger_of(player))
    }
}

impl Handler<GetPortfolioActor> for MarketActor {
    type Result = Option<Addr<PortfolioActor>>;

    fn handle(&mut self, GetPortfolioActor { player }: GetPortfolioActor, ctx: &mut Context<Self>) -> Self::Result {
        let addr = self.portfolios.get(&player)?.clone();
        if addr.connected() {
            return Some(addr);
        }
        // Supervision: the actor died; rebuild it from the sequencer's ledger.
        tracing::warn!(%player, "portfolio actor stopped; rebuilding it from the ledger");
        self.portfolios.remove(&player);
        self.exchange.account(player)?;
        self.spawn_portfolio(player, ctx);
        self.portfolios.get(&player).cloned()
    }
}

impl Handler<GetState> for MarketActor {
    type Result = MessageResult<GetState>;

    fn handle(&mut self, _: GetState, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.exchange.state())
    }
}

impl Handler<GetAssetActors> for MarketActor {
    type Result = Vec<Addr<AssetActor>>;

    fn handle(&mut self, _: GetAssetActors, _: &mut Context<Self>) -> Self::Result {
        self.assets.clone()
    }
}

impl Handler<Shutdown> for MarketActor {
    type Result = ResponseActFuture<Self, Result<(), StoreError>>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        let flush = self.persistence.send(FlushAll);
        Box::pin(
            async move { flush.await.map_err(|_| StoreError::Unavailable("persistence stopped".into()))? }
                .into_actor(self)
                .then(|flushed, actor, _| {
                    let mut state = actor.exchange.state();
                    state.accounts.clear();
                    let snapshot = MarketSnapshot {
                        exchange: state,
                        sectors: actor.sectors.clone(),
                        assets: actor.models.clone(),
                    };
                    let save = actor.store.save_market(Arc::new(snapshot));
                    async move {
                        flushed?;
                        save.await
                    }
                    .into_actor(actor)
                }),
        )
    }
}
