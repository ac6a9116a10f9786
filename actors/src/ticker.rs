//! `TickerActor`: the market's heartbeat. Every `tick_interval_ms` of the
//! injected `Clock` it steps the category factors (which it owns), then every
//! asset actor, hands the new minute to the market (which triggers resting
//! orders), and broadcasts the new prices to its subscribers. It also runs
//! the news feed: headlines of each minute's news and breaker halts, and
//! operator news queued into the models.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;
use tokio::sync::broadcast;

use crate::asset::{AssetActor, InjectNews, StepModel, StepResult};
use crate::clock::SharedClock;
use crate::domain::asset::Universe;
use crate::domain::ids::AssetId;
use crate::domain::news::{AssetMinute, CategoryMinute, Headline, HeadlineLog, NewsError, NewsTarget, Newsroom};
use crate::domain::price_model::{PendingNews, SectorModel, SectorMove};
use crate::market::{ApplyTicks, MarketActor, PricesChanged, RestartAsset, UpdateModels};

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

/// Queues checked operator news into the model of its target; it lands at
/// the target's next step.
#[derive(Message)]
#[rtype(result = "Result<(), NewsError>")]
pub struct QueueNews {
    pub target: NewsTarget,
    pub news: PendingNews,
}

/// Headlines a subscriber may fall behind by before it skips the oldest.
pub const HEADLINE_CHANNEL_CAPACITY: usize = 256;

/// The news feed: the recent headlines and their live subscribers. Shared by
/// the ticker (model news, breaker halts) and the engine (operator halts).
pub struct NewsFeed {
    newsroom: Newsroom,
    clock: SharedClock,
    /// The last market minute stepped (operator halts happen "in" it).
    minute: AtomicU64,
    log: Mutex<HeadlineLog>,
    sender: broadcast::Sender<Headline>,
}

impl NewsFeed {
    /// A feed for `universe` keeping `kept` headlines, starting at `minute`.
    #[must_use]
    pub fn new(universe: &Universe, clock: SharedClock, kept: usize, minute: u64) -> Self {
        let (sender, _) = broadcast::channel(HEADLINE_CHANNEL_CAPACITY);
        Self {
            newsroom: Newsroom::new(universe),
            clock,
            minute: AtomicU64::new(minute),
            log: Mutex::new(HeadlineLog::new(kept)),
            sender,
        }
    }

    /// Keeps and broadcasts `headlines`, in order.
    pub fn publish(&self, headlines: Vec<Headline>) {
        if headlines.is_empty() {
            return;
        }
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        for headline in headlines {
            log.push(headline.clone());
            // No subscriber is not an error.
            let _ = self.sender.send(headline);
        }
    }

    /// Up to `limit` recent headlines, newest first.
    #[must_use]
    pub fn latest(&self, limit: usize) -> Vec<Headline> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).latest(limit)
    }

    /// A receiver of every headline published from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Headline> {
        self.sender.subscribe()
    }

    /// Reports an operator's (durable) halt or resumption of `asset`.
    pub fn operator_halt(&self, asset: AssetId, halted: bool) {
        let minute = self.minute.load(Ordering::Relaxed);
        let headline = self.newsroom.halt(asset, minute, self.clock.now_ms(), halted, false);
        self.publish(headline.into_iter().collect());
    }

    /// The headlines of one stepped minute.
    fn minute_headlines(
        &self,
        moves: &[SectorMove],
        sector_texts: &[Option<String>],
        steps: &[StepResult],
    ) -> Vec<Headline> {
        let minute =
            steps.iter().map(|step| step.minute).max().unwrap_or_else(|| self.minute.load(Ordering::Relaxed) + 1);
        self.minute.fetch_max(minute, Ordering::Relaxed);
        let categories: Vec<CategoryMinute<'_>> = moves
            .iter()
            .enumerate()
            .map(|(index, step)| {
                let text = sector_texts.get(index).and_then(Option::as_deref);
                CategoryMinute { news: step.news, injected: step.injected.map(|news| (news, text)) }
            })
            .collect();
        let assets: Vec<AssetMinute<'_>> = steps
            .iter()
            .map(|step| AssetMinute {
                asset: step.asset,
                minute: step.minute,
                news: step.tick.news,
                injected: step.tick.injected.map(|news| (news, step.injected_text.as_deref())),
                breaker: step.model.breaker_change(),
            })
            .collect();
        // Every category carries the same market factor: the first one's news is the market's.
        let market = moves.first().and_then(|step| step.market_news);
        self.newsroom.minute_headlines(minute, self.clock.now_ms(), market, &categories, &assets)
    }
}

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
    news: Arc<NewsFeed>,
    /// Whether the clock drives steps (off in tests that step by hand).
    autonomous: bool,
}

impl TickerActor {
    /// A ticker over the market's asset actors and the category factors.
    #[must_use]
    #[allow(clippy::too_many_arguments)] // one per collaborator; a parts struct would only rename them
    pub fn new(
        clock: SharedClock,
        tick_interval_ms: u64,
        market: Addr<MarketActor>,
        assets: Vec<Addr<AssetActor>>,
        sectors: Vec<SectorModel>,
        asset_category: Vec<usize>,
        news: Arc<NewsFeed>,
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
            news,
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
        let sector_texts: Vec<Option<String>> =
            self.sectors.iter().map(|sector| sector.next_injection().and_then(|news| news.text.clone())).collect();
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
        let feed = Arc::clone(&self.news);
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
            let headlines = feed.minute_headlines(&moves, &sector_texts, &steps);
            let changed = market.send(ApplyTicks { steps, sectors }).await.ok();
            // After the market applied the minute, so a reader sees the price
            // the headline talks about.
            feed.publish(headlines);
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

impl Handler<QueueNews> for TickerActor {
    type Result = AtomicResponse<Self, Result<(), NewsError>>;

    /// Atomic, so no step runs between queueing the news and handing the
    /// model's new state to the market.
    fn handle(&mut self, QueueNews { target, news }: QueueNews, _: &mut Context<Self>) -> Self::Result {
        let market = self.market.clone();
        let work: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), NewsError>>>> = match target {
            NewsTarget::Category(index) => {
                let queued = match self.sectors.get_mut(index) {
                    Some(sector) => sector.inject(news).map_err(NewsError::from),
                    None => Err(NewsError::UnknownTarget(format!("category #{index}"))),
                };
                let sectors = self.sectors.clone();
                Box::pin(async move {
                    queued?;
                    market
                        .send(UpdateModels { asset: None, sectors: Some(sectors) })
                        .await
                        .map_err(|_| NewsError::Unavailable)
                })
            }
            NewsTarget::Asset(asset) => {
                let addr = self.assets.get(asset.index()).cloned();
                Box::pin(async move {
                    let addr = addr.ok_or_else(|| NewsError::UnknownTarget(format!("asset #{}", asset.0)))?;
                    let model = addr.send(InjectNews(news)).await.map_err(|_| NewsError::Unavailable)??;
                    market
                        .send(UpdateModels { asset: Some((asset, model)), sectors: None })
                        .await
                        .map_err(|_| NewsError::Unavailable)
                })
            }
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

impl Handler<StepNow> for TickerActor {
    type Result = AtomicResponse<Self, Option<PricesChanged>>;

    fn handle(&mut self, _: StepNow, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(Box::pin(self.step()))
    }
}
