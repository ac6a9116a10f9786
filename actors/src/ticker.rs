//! `TickerActor`: the market's heartbeat. Every `tick_interval_ms` of the
//! injected `Clock` it steps the category factors (which it owns), then every
//! asset actor, hands the new minute to the market (which triggers resting
//! orders), and broadcasts the new prices to its subscribers.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;

use crate::asset::{AssetActor, StepModel, StepResult};
use crate::clock::SharedClock;
use crate::domain::price_model::{SectorModel, SectorMove};
use crate::market::{ApplyTicks, MarketActor, PricesChanged, RestartAsset};

/// Most market minutes caught up in one go after a stall.
pub const CATCH_UP_STEPS_MAX: u64 = 60;
/// How often the ticker looks at the clock, at most.
const POLL_INTERVAL_MS_MAX: u64 = 250;

/// Adds a subscriber to price changes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<PricesChanged>);

/// Steps the market one minute now, whatever the clock says (tests, tools).
#[derive(Message)]
#[rtype(result = "Option<PricesChanged>")]
pub struct StepNow;

/// Drives the price models on the clock.
pub struct TickerActor {
    clock: SharedClock,
    tick_interval_ms: u64,
    market: Addr<MarketActor>,
    assets: Vec<Addr<AssetActor>>,
    sectors: Vec<SectorModel>,
    asset_category: Arc<Vec<usize>>,
    next_step_at_ms: i64,
    subscribers: Vec<Recipient<PricesChanged>>,
    /// Whether the clock drives steps (off in tests that step by hand).
    autonomous: bool,
}

impl TickerActor {
    /// A ticker over the market's asset actors and the category factors.
    #[must_use]
    pub fn new(
        clock: SharedClock,
        tick_interval_ms: u64,
        market: Addr<MarketActor>,
        assets: Vec<Addr<AssetActor>>,
        sectors: Vec<SectorModel>,
        asset_category: Vec<usize>,
        autonomous: bool,
    ) -> Self {
        let next_step_at_ms = clock.now_ms().saturating_add(i64::try_from(tick_interval_ms).unwrap_or(i64::MAX));
        Self {
            clock,
            tick_interval_ms: tick_interval_ms.max(1),
            market,
            assets,
            sectors,
            asset_category: Arc::new(asset_category),
            next_step_at_ms,
            subscribers: Vec::new(),
            autonomous,
        }
    }

    /// Steps due by the clock, capped.
    fn due_steps(&mut self) -> u64 {
        let now = self.clock.now_ms();
        if now < self.next_step_at_ms {
            return 0;
        }
        let interval = i64::try_from(self.tick_interval_ms).unwrap_or(i64::MAX);
        let due = u64::try_from((now - self.next_step_at_ms) / interval + 1).unwrap_or(1);
        let steps = due.min(CATCH_UP_STEPS_MAX);
        // Past the cap the market skips time rather than racing to catch up.
        self.next_step_at_ms = if due > CATCH_UP_STEPS_MAX {
            now + interval
        } else {
            self.next_step_at_ms + interval * i64::try_from(steps).unwrap_or(1)
        };
        steps
    }

    /// One market minute: factors, then assets (in parallel), then the market.
    fn step(&mut self) -> impl ActorFuture<Self, Output = Option<PricesChanged>> + 'static {
        let moves: Vec<SectorMove> = self.sectors.iter_mut().map(SectorModel::step).collect();
        let sectors = self.sectors.clone();
        let requests: Vec<_> = self
            .assets
            .iter()
            .zip(self.asset_category.iter())
            .map(|(addr, category)| {
                let sector = moves.get(*category).copied().unwrap_or_default();
                (addr.clone(), sector)
            })
            .collect();
        let market = self.market.clone();
        async move {
            let replies =
                join_all(requests.iter().map(|(addr, sector)| addr.send(StepModel { sector: *sector }))).await;
            let mut steps: Vec<StepResult> = Vec::with_capacity(replies.len());
            let mut restarted = Vec::new();
            for (index, reply) in replies.into_iter().enumerate() {
                match reply {
                    Ok(step) => steps.push(step),
                    Err(_) => {
                        // Supervision: the market rebuilds the asset from its
                        // last model state; it misses this minute only.
                        #[allow(clippy::cast_possible_truncation)]
                        let asset = crate::domain::ids::AssetId(index as u16);
                        if let Ok(Some(addr)) = market.send(RestartAsset { asset }).await {
                            restarted.push((index, addr));
                        }
                    }
                }
            }
            let changed = market.send(ApplyTicks { steps, sectors }).await.ok();
            (changed, restarted)
        }
        .into_actor(self)
        .map(|(changed, restarted), actor, _| {
            for (index, addr) in restarted {
                if let Some(slot) = actor.assets.get_mut(index) {
                    *slot = addr;
                }
            }
            if let Some(changed) = &changed {
                actor.subscribers.retain(|subscriber| subscriber.connected());
                for subscriber in &actor.subscribers {
                    subscriber.do_send(changed.clone());
                }
            }
            changed
        })
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        for _ in 0..self.due_steps() {
            // `wait` keeps steps strictly one after another.
            ctx.wait(self.step().map(|_, _, _| ()));
        }
    }
}

impl Actor for TickerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.autonomous {
            let period = Duration::from_millis(self.tick_interval_ms.min(POLL_INTERVAL_MS_MAX));
            ctx.run_interval(period, Self::poll);
        }
    }
}

impl Handler<Subscribe> for TickerActor {
    type Result = ();

    fn handle(&mut self, Subscribe(subscriber): Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(subscriber);
    }
}

impl Handler<StepNow> for TickerActor {
    type Result = AtomicResponse<Self, Option<PricesChanged>>;

    fn handle(&mut self, _: StepNow, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(Box::pin(self.step()))
    }
}
