//! `PortfolioActor`: one per active player. Activated on the player's first
//! command (it loads the player's ledger from the store and hands it to the
//! market), it keeps the player's ledger as a projection of their events for
//! reads, and asks to be passivated when the player has been idle.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use smallvec::SmallVec;

use crate::clock::SharedClock;
use crate::domain::event::Stamped;
use crate::domain::ids::PlayerId;
use crate::domain::ledger::PlayerLedger;
use crate::market::{AccountLoaded, MarketActor, Passivate};
use crate::metrics::EngineMetrics;
use crate::ports::Store;

/// The player's own events of one market batch, in log order (usually one,
/// so they travel inline).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PlayerEvents(pub SmallVec<[Stamped; 2]>);

/// Replaces the projection (after activation or a supervisor restart) with
/// the ledger as of event `seq`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Hydrate {
    pub ledger: PlayerLedger,
    pub seq: u64,
}

/// The player's ledger as last applied.
#[derive(Message)]
#[rtype(result = "PortfolioView")]
pub struct GetPortfolio;

/// A player's ledger and the last event applied to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, MessageResponse)]
pub struct PortfolioView {
    pub ledger: PlayerLedger,
    pub last_seq: u64,
}

/// Owns one active player's portfolio projection.
pub struct PortfolioActor {
    player: PlayerId,
    market: Addr<MarketActor>,
    store: Arc<dyn Store>,
    clock: SharedClock,
    metrics: Arc<EngineMetrics>,
    idle_ms: u64,
    last_active_ms: i64,
    ledger: PlayerLedger,
    last_seq: u64,
    needs_load: bool,
    /// Set by every message; the idle check turns it into a timestamp, so
    /// the hot path never reads the clock.
    touched: bool,
}

impl PortfolioActor {
    /// A portfolio actor that will load `player` once started.
    #[must_use]
    pub fn new(
        player: PlayerId,
        market: Addr<MarketActor>,
        store: Arc<dyn Store>,
        clock: SharedClock,
        metrics: Arc<EngineMetrics>,
        idle_ms: u64,
    ) -> Self {
        let now = clock.now_ms();
        Self {
            player,
            market,
            store,
            clock,
            metrics,
            idle_ms,
            last_active_ms: now,
            ledger: PlayerLedger::default(),
            last_seq: 0,
            needs_load: true,
            touched: false,
        }
    }

    /// For a player the market already holds: no store load, the market
    /// hydrates the projection directly.
    #[must_use]
    pub fn loaded(mut self) -> Self {
        self.needs_load = false;
        self
    }

    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        if std::mem::take(&mut self.touched) {
            self.last_active_ms = self.clock.now_ms();
            return;
        }
        let idle_for = self.clock.now_ms().saturating_sub(self.last_active_ms);
        if u64::try_from(idle_for).unwrap_or(0) < self.idle_ms {
            return;
        }
        let request = self.market.send(Passivate { player: self.player });
        ctx.wait(request.into_actor(self).map(|answer, actor, ctx| {
            match answer {
                // The market let go of the ledger: this actor is done.
                Ok(true) => ctx.stop(),
                // Still needed (open orders): look again after another idle period.
                Ok(false) => actor.last_active_ms = actor.clock.now_ms(),
                Err(_) => ctx.stop(),
            }
        }));
    }
}

impl Actor for PortfolioActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.metrics.active_portfolios.fetch_add(1, Ordering::Relaxed);
        if self.needs_load {
            let load = self.store.load_account(self.player);
            let (player, market, me) = (self.player, self.market.clone(), ctx.address());
            ctx.spawn(
                async move {
                    let result = load.await;
                    let failed = result.is_err();
                    market.do_send(AccountLoaded { player, result, portfolio: me });
                    failed
                }
                .into_actor(self)
                .map(|failed, _, ctx| {
                    // The market does not keep an actor whose load failed; its
                    // idle timer would otherwise keep it alive, asking to
                    // passivate a player whose ledger another actor now serves.
                    if failed {
                        ctx.stop();
                    }
                }),
            );
        }
        let period = Duration::from_millis((self.idle_ms / 4).clamp(50, 60_000));
        ctx.run_interval(period, Self::check_idle);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.metrics.active_portfolios.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Handler<PlayerEvents> for PortfolioActor {
    type Result = ();

    fn handle(&mut self, message: PlayerEvents, _: &mut Context<Self>) {
        for stamped in &message.0 {
            if stamped.seq > self.last_seq {
                self.ledger.apply(&stamped.event);
                self.last_seq = stamped.seq;
            }
        }
        self.touched = true;
    }
}

impl Handler<Hydrate> for PortfolioActor {
    type Result = ();

    fn handle(&mut self, message: Hydrate, _: &mut Context<Self>) {
        self.ledger = message.ledger;
        self.last_seq = message.seq;
    }
}

impl Handler<GetPortfolio> for PortfolioActor {
    type Result = PortfolioView;

    fn handle(&mut self, _: GetPortfolio, _: &mut Context<Self>) -> PortfolioView {
        self.touched = true;
        PortfolioView { ledger: self.ledger.clone(), last_seq: self.last_seq }
    }
}
