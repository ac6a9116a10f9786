//! `stockbot playtest`: a seeded run of scripted players — honest and
//! abusive — through the same command path as Telegram (`Bot::handle_text`),
//! on a hand-stepped engine in simulated time, ending with the store's
//! conservation audit and per-strategy results.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actors::clock::{Clock, ManualClock};
use actors::domain::exchange::Quote;
use actors::domain::ids::PlayerId;
use actors::domain::price_model::mix_seed;
use actors::engine::{Engine, EngineDeps, EngineError};
use actors::ports::coordinator::{BoardScore, CoordError, Coordinator, LockToken, PricesUpdate, RateDecision};
use actors::ports::memory::MemoryStore;
use actors::ports::{BoxFuture, NullNotifier, Store, StoreError};
use futures_util::future::join_all;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::bot::{Bot, GameOptions, Speaker};
use crate::config::Settings;
use crate::coord::local::LocalCoordinator;
use crate::telegram::reply::Reply;

/// Simulated start: Monday 2026-03-02 00:00 UTC.
pub const START_MS: i64 = 1_772_409_600_000;
/// Simulated time per round: one market minute.
pub const ROUND_MS: i64 = 60_000;
/// Longest run accepted, in hours.
pub const HOURS_MAX: f64 = 24.0 * 28.0;
/// Most players accepted.
pub const PLAYERS_MAX: u32 = 100_000;
/// Messages in one spam burst (sent within one instant).
pub const SPAM_BURST: usize = 50;
/// Copies of one command in one button-mashing burst.
pub const MASH_BURST: usize = 30;
/// Alts per referral-farm main (the season's reward cap).
pub const FARM_ALTS: usize = 5;

/// The scripted behaviours, one per player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    /// Buys a spread of level-1 assets at the start, holds, claims `/daily`.
    BuyAndHold,
    /// Random market buys and sells of sensible sizes.
    ActiveTrader,
    /// Bursts of `/quote`, `/portfolio`, `/buy T 1`, `/market`.
    Spammer,
    /// Buys then sells the same shares at once, over and over.
    WashTrader,
    /// The same `/buy` (or `/sell`) text many times at once.
    ButtonMasher,
    /// A main account plus alts that `/start r<main>` and trade the minimum,
    /// jumping time zones to count two active days at once.
    ReferralFarm,
    /// All in on one asset, `/bankrupt` again and again.
    BankruptAbuser,
    /// `/daily` many times a day, hopping time zones between claims.
    DailyAbuser,
}

impl Strategy {
    /// Every strategy, in report order.
    pub const ALL: [Self; 8] = [
        Self::BuyAndHold,
        Self::ActiveTrader,
        Self::Spammer,
        Self::WashTrader,
        Self::ButtonMasher,
        Self::ReferralFarm,
        Self::BankruptAbuser,
        Self::DailyAbuser,
    ];

    /// Short name for tables.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::BuyAndHold => "buy_and_hold",
            Self::ActiveTrader => "active_trader",
            Self::Spammer => "spammer",
            Self::WashTrader => "wash_trader",
            Self::ButtonMasher => "button_masher",
            Self::ReferralFarm => "referral_farm",
            Self::BankruptAbuser => "bankrupt_abuser",
            Self::DailyAbuser => "daily_abuser",
        }
    }

    /// Whether the strategy tries to game the rules.
    #[must_use]
    pub fn is_abusive(self) -> bool {
        !matches!(self, Self::BuyAndHold | Self::ActiveTrader)
    }
}

/// What one strategy's players ended with.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyReport {
    pub strategy: Strategy,
    pub players: u32,
    pub mean_net_worth: f64,
    pub mean_return_pct: f64,
    /// Commands sent.
    pub commands: u64,
    /// Fills confirmed to the players.
    pub trades: u64,
    /// Replies refusing an action (⚠️ ⛔ 🔒 ⏰ ⏳ 🙂 ℹ️).
    pub rejected: u64,
    /// Commands refused by the rate limit (a 🐢 reply or silence).
    pub throttled: u64,
    /// Daily bonuses paid.
    pub daily_bonuses: u64,
    /// Most daily bonuses paid to one player.
    pub daily_bonuses_max: u64,
    /// Referral rewards paid to this strategy's players.
    pub referral_rewards: u64,
    /// Bankruptcies granted.
    pub bankruptcies: u64,
}

/// The whole run's result.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaytestReport {
    pub seed: u64,
    pub hours: f64,
    pub players: u32,
    pub rounds: u64,
    pub strategies: Vec<StrategyReport>,
    /// Mean net worth of the referral farms' main accounts alone.
    pub farm_main_mean_net_worth: f64,
    /// The store's conservation audit (as `GET /admin/audit`).
    pub audit_ok: bool,
    pub events: u64,
    /// The bot's throttle counter.
    pub throttled_metric: u64,
    pub starting_cash: f64,
    pub wall: Duration,
}

impl PlaytestReport {
    /// The report of `strategy`.
    #[must_use]
    pub fn of(&self, strategy: Strategy) -> Option<&StrategyReport> {
        self.strategies.iter().find(|s| s.strategy == strategy)
    }

    /// Mean net worth of honest buy-and-hold.
    #[must_use]
    pub fn honest_mean(&self) -> f64 {
        self.of(Strategy::BuyAndHold).map_or(0.0, |s| s.mean_net_worth)
    }

    /// The abusive strategy with the highest mean net worth.
    #[must_use]
    pub fn best_abusive(&self) -> Option<&StrategyReport> {
        self.strategies
            .iter()
            .filter(|s| s.strategy.is_abusive() && s.players > 0)
            .max_by(|a, b| a.mean_net_worth.total_cmp(&b.mean_net_worth))
    }

    /// Rejected actions over all players.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.strategies.iter().map(|s| s.rejected).sum()
    }

    /// Throttled commands seen by the players.
    #[must_use]
    pub fn throttled(&self) -> u64 {
        self.strategies.iter().map(|s| s.throttled).sum()
    }
}

impl fmt::Display for PlaytestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "playtest: seed {}, {} h ({} one-minute rounds), {} players, starting cash {:.2}",
            self.seed, self.hours, self.rounds, self.players, self.starting_cash
        )?;
        writeln!(
            f,
            "{:<16} {:>7} {:>12} {:>9} {:>9} {:>8} {:>8} {:>9} {:>6} {:>6} {:>5} {:>5}",
            "strategy",
            "players",
            "mean_worth",
            "return%",
            "commands",
            "trades",
            "rejected",
            "throttled",
            "daily",
            "dmax",
            "refs",
            "bkpt"
        )?;
        for s in &self.strategies {
            writeln!(
                f,
                "{:<16} {:>7} {:>12.2} {:>9.3} {:>9} {:>8} {:>8} {:>9} {:>6} {:>6} {:>5} {:>5}",
                s.strategy.name(),
                s.players,
                s.mean_net_worth,
                s.mean_return_pct,
                s.commands,
                s.trades,
                s.rejected,
                s.throttled,
                s.daily_bonuses,
                s.daily_bonuses_max,
                s.referral_rewards,
                s.bankruptcies
            )?;
        }
        writeln!(f, "referral farm mains alone: mean net worth {:.2}", self.farm_main_mean_net_worth)?;
        writeln!(
            f,
            "audit ok: {} · events: {} · throttled (bot metric): {} · wall: {:.1} s",
            self.audit_ok,
            self.events,
            self.throttled_metric,
            self.wall.as_secs_f64()
        )?;
        let best = self.best_abusive();
        write!(
            f,
            "audit_ok={} players={} hours={} throttled={} rejected={} honest_mean={:.2} best_abusive={}:{:.2}",
            self.audit_ok,
            self.players,
            self.hours,
            self.throttled_metric,
            self.rejected(),
            self.honest_mean(),
            best.map_or("none", |s| s.strategy.name()),
            best.map_or(0.0, |s| s.mean_net_worth)
        )
    }
}

/// Why a run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum PlaytestError {
    #[error("--hours must be in (0, {HOURS_MAX}] and --players in [1, {PLAYERS_MAX}]")]
    Args,
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Runs the playtest in its own actix system (call it outside one).
///
/// # Errors
/// Bad arguments, or an engine or store that fails.
pub fn run(settings: &Settings, seed: u64, hours: f64, players: u32) -> Result<PlaytestReport, PlaytestError> {
    if !(hours > 0.0 && hours <= HOURS_MAX) || players == 0 || players > PLAYERS_MAX {
        return Err(PlaytestError::Args);
    }
    let settings = settings.clone();
    actix_web::rt::System::new().block_on(async move { run_async(&settings, seed, hours, players).await })
}

/// A small deterministic generator (splitmix over `mix_seed`).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix_seed(self.0, 0x9a7e)
    }

    fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
        usize::try_from(self.next() % n64).unwrap_or(0)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        #[allow(clippy::cast_precision_loss)]
        let unit = (self.next() >> 11) as f64 / (1_u64 << 53) as f64;
        unit < p
    }
}

/// What one player's messages got.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    commands: u64,
    trades: u64,
    rejected: u64,
    throttled: u64,
    bonuses: u64,
    bankruptcies: u64,
}

impl Counts {
    fn add(&mut self, other: Self) {
        self.commands += other.commands;
        self.trades += other.trades;
        self.rejected += other.rejected;
        self.throttled += other.throttled;
        self.bonuses += other.bonuses;
        self.bankruptcies += other.bankruptcies;
    }

    fn classify(&mut self, replies: &[Reply]) {
        self.commands += 1;
        // A throttled command beyond the window's first gets no reply at all.
        if replies.is_empty() {
            self.throttled += 1;
        }
        for reply in replies {
            let text = reply.text.as_str();
            if text.starts_with("🐢") {
                self.throttled += 1;
            } else if text.starts_with("🟢 Bought") || text.starts_with("🔴 Sold") {
                self.trades += 1;
            } else if text.starts_with("🎁 Daily bonus") {
                self.bonuses += 1;
            } else if text.starts_with("🔄 Fresh start") {
                self.bankruptcies += 1;
            } else if ["⚠️", "⛔", "🔒", "⏰", "⏳", "🙂", "ℹ️"].iter().any(|p| text.starts_with(p))
                || text.contains("send /start")
            {
                self.rejected += 1;
            }
        }
    }
}

/// What every player sees in a round.
struct Round {
    index: u64,
    now_ms: i64,
    quotes: Vec<Quote>,
    /// Asset ids tradable at level 1 (the first categories).
    level1: Vec<usize>,
    tickers: Vec<String>,
    /// Rounds in the run.
    rounds: u64,
}

impl Round {
    fn ticker(&self, asset: usize) -> &str {
        self.tickers.get(asset).map_or("ACME", String::as_str)
    }

    fn ask(&self, asset: usize) -> f64 {
        self.quotes.get(asset).and_then(|q| q.ask.to_f64()).unwrap_or(0.0)
    }

    fn random_level1(&self, rng: &mut Rng) -> usize {
        self.level1.get(rng.below(self.level1.len())).copied().unwrap_or(0)
    }

    /// `/buy` text for about `value` of `asset`, if at least one share.
    fn buy_worth(&self, asset: usize, value: f64) -> Option<String> {
        let ask = self.ask(asset);
        if ask <= 0.0 {
            return None;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let qty = (value / ask).floor() as u64;
        (qty > 0).then(|| format!("/buy {} {qty}", self.ticker(asset)))
    }
}

/// One scripted player.
struct Player {
    id: PlayerId,
    strategy: Strategy,
    /// For a referral-farm alt: its main's id.
    main: Option<PlayerId>,
    rng: Rng,
    counts: Counts,
    /// The masher alternates buy and sell bursts; the bankrupt abuser goes all in again after a restart.
    flag: bool,
    /// The daily abuser's next time zone.
    zone: usize,
}

/// Time zones the daily abuser hops through.
const ZONES: [&str; 6] = ["-12:00", "-06:00", "+00:00", "+05:30", "+09:00", "+14:00"];

impl Player {
    fn speaker(&self) -> Speaker {
        Speaker { player: self.id, chat: None, name: format!("p{}", self.id.0) }
    }

    async fn send(&mut self, bot: &Bot, text: &str) -> Vec<Reply> {
        let replies = bot.handle_text(&self.speaker(), text).await;
        self.counts.classify(&replies);
        replies
    }

    async fn send_all(&mut self, bot: &Bot, texts: &[String]) {
        for text in texts {
            self.send(bot, text).await;
        }
    }

    /// Cash and held shares `(asset, qty)`.
    async fn holdings(&self, bot: &Bot) -> (f64, Vec<(usize, u64)>) {
        match bot.engine().ledger(self.id).await {
            Ok(Some(ledger)) => (
                ledger.account.cash.to_f64().unwrap_or(0.0),
                ledger
                    .account
                    .positions
                    .iter()
                    .filter(|p| p.qty > p.reserved_qty)
                    .map(|p| (usize::from(p.asset.0), p.qty - p.reserved_qty))
                    .collect(),
            ),
            _ => (0.0, Vec::new()),
        }
    }

    /// A spread of five level-1 assets with most of the cash.
    async fn buy_spread(&mut self, bot: &Bot, round: &Round) {
        let (cash, _) = self.holdings(bot).await;
        let mut picked: Vec<usize> = Vec::new();
        while picked.len() < 5.min(round.level1.len()) {
            let asset = round.random_level1(&mut self.rng);
            if !picked.contains(&asset) {
                picked.push(asset);
            }
        }
        let texts: Vec<String> = picked.iter().filter_map(|a| round.buy_worth(*a, cash * 0.19)).collect();
        self.send_all(bot, &texts).await;
    }

    /// A claim at the start of each UTC day.
    fn new_day(round: &Round) -> bool {
        (round.now_ms - START_MS).rem_euclid(86_400_000) < ROUND_MS
    }

    async fn act(&mut self, bot: &Bot, round: &Round) {
        if round.index == 0 {
            let start = self.main.map_or_else(|| "/start".to_owned(), |main| format!("/start r{}", main.0));
            self.send(bot, &start).await;
        }
        match self.strategy {
            Strategy::BuyAndHold => {
                if Self::new_day(round) {
                    self.send(bot, "/daily").await;
                }
                if round.index == 0 {
                    self.buy_spread(bot, round).await;
                }
                if round.index % 360 == 180 {
                    self.send(bot, "/portfolio").await;
                }
            }
            Strategy::ActiveTrader => {
                if Self::new_day(round) {
                    self.send(bot, "/daily").await;
                }
                if self.rng.chance(0.05) {
                    let (cash, held) = self.holdings(bot).await;
                    let sell = !held.is_empty() && (self.rng.chance(0.5) || cash < 500.0);
                    if sell {
                        if let Some((asset, qty)) = held.get(self.rng.below(held.len())).copied() {
                            let qty = if self.rng.chance(0.5) { qty } else { qty.div_ceil(2) };
                            let text = format!("/sell {} {qty}", round.ticker(asset));
                            self.send(bot, &text).await;
                        }
                    } else {
                        let asset = round.random_level1(&mut self.rng);
                        #[allow(clippy::cast_precision_loss)]
                        let value = (300 + self.rng.below(1_700)) as f64;
                        if let Some(text) = round.buy_worth(asset, value.min(cash * 0.9)) {
                            self.send(bot, &text).await;
                        }
                    }
                }
            }
            Strategy::Spammer => {
                if Self::new_day(round) {
                    self.send(bot, "/daily").await;
                }
                if round.index == 0 || self.rng.chance(1.0 / 30.0) {
                    let ticker = round.ticker(round.random_level1(&mut self.rng)).to_owned();
                    let texts: Vec<String> = (0..SPAM_BURST)
                        .map(|i| match i % 4 {
                            0 => format!("/quote {ticker}"),
                            1 => "/portfolio".to_owned(),
                            2 => format!("/buy {ticker} 1"),
                            _ => "/market".to_owned(),
                        })
                        .collect();
                    self.send_all(bot, &texts).await;
                }
            }
            Strategy::WashTrader => {
                if Self::new_day(round) {
                    self.send(bot, "/daily").await;
                }
                if self.rng.chance(0.1) {
                    let asset = round.random_level1(&mut self.rng);
                    if let Some(buy) = round.buy_worth(asset, 2_000.0) {
                        let sell = buy.replacen("/buy", "/sell", 1);
                        self.send_all(bot, &[buy, sell]).await;
                        // Then collect the XP, achievements and level they hoped to farm.
                        if self.rng.chance(0.1) {
                            self.send_all(bot, &["/level".to_owned(), "/achievements".to_owned()]).await;
                        }
                    }
                }
            }
            Strategy::ButtonMasher => {
                if Self::new_day(round) {
                    self.send(bot, "/daily").await;
                }
                if self.rng.chance(0.05) {
                    let text = if self.flag {
                        let (_, held) = self.holdings(bot).await;
                        held.first().map(|(asset, qty)| format!("/sell {} {}", round.ticker(*asset), qty.div_ceil(3)))
                    } else {
                        let asset = round.random_level1(&mut self.rng);
                        round.buy_worth(asset, 1_000.0)
                    };
                    self.flag = !self.flag;
                    if let Some(text) = text {
                        // Taps arrive together: all in flight at once.
                        let speaker = self.speaker();
                        let all = join_all((0..MASH_BURST).map(|_| bot.handle_text(&speaker, &text))).await;
                        for replies in &all {
                            self.counts.classify(replies);
                        }
                    }
                }
            }
            Strategy::ReferralFarm => match self.main {
                None => {
                    if Self::new_day(round) {
                        self.send(bot, "/daily").await;
                    }
                    if round.index == 0 {
                        self.buy_spread(bot, round).await;
                    }
                }
                Some(_) if round.index == 0 => {
                    // The minimum to qualify: 5 trades of ≥ 100 on 2 local
                    // days, the two days made at once by hopping east.
                    let asset = round.random_level1(&mut self.rng);
                    if let Some(buy) = round.buy_worth(asset, 130.0) {
                        let sell = buy.replacen("/buy", "/sell", 1);
                        let texts = [
                            "/timezone -12:00".to_owned(),
                            buy.clone(),
                            sell.clone(),
                            buy.clone(),
                            "/timezone +14:00".to_owned(),
                            sell,
                            buy,
                        ];
                        self.send_all(bot, &texts).await;
                    }
                }
                Some(_) => {}
            },
            Strategy::BankruptAbuser => {
                if Self::new_day(round) {
                    self.send(bot, "/daily").await;
                }
                if round.index == 0 || self.flag {
                    let (cash, _) = self.holdings(bot).await;
                    let asset = round.random_level1(&mut self.rng);
                    if let Some(text) = round.buy_worth(asset, cash * 0.98) {
                        self.send(bot, &text).await;
                    }
                    self.flag = false;
                }
                if round.index % 60 == 30 {
                    let before = self.counts.bankruptcies;
                    for _ in 0..3 {
                        self.send(bot, "/bankrupt").await;
                    }
                    self.flag = self.counts.bankruptcies > before;
                }
            }
            Strategy::DailyAbuser => {
                if round.index == 0 {
                    self.buy_spread(bot, round).await;
                }
                if round.index.is_multiple_of(20) {
                    let zone = ZONES.get(self.zone % ZONES.len()).copied().unwrap_or("+00:00");
                    self.zone += 1;
                    let texts = [
                        "/daily".to_owned(),
                        "/daily".to_owned(),
                        format!("/timezone {zone}"),
                        "/daily".to_owned(),
                        "/daily".to_owned(),
                    ];
                    self.send_all(bot, &texts).await;
                }
            }
        }
        // Everyone looks at the board now and then (at the end, all do).
        if round.index + 1 == round.rounds {
            self.send(bot, "/top").await;
        }
    }
}

/// The rate limits and once-per-window keys of a [`LocalCoordinator`] on the
/// simulated clock (the local coordinator reads the wall clock); everything
/// else is the local coordinator's.
struct SimCoordinator {
    inner: LocalCoordinator,
    clock: ManualClock,
    /// key → (count, window end ms).
    rates: Mutex<HashMap<String, (u32, i64)>>,
    /// key → expiry ms.
    seen: Mutex<HashMap<String, i64>>,
}

/// Keys kept before expired ones are swept.
const SIM_KEYS_MAX: usize = 100_000;

impl SimCoordinator {
    fn ttl_ms(ms: u64) -> i64 {
        i64::try_from(ms.max(1)).unwrap_or(i64::MAX)
    }
}

impl Coordinator for SimCoordinator {
    fn first_seen(&self, key: &str, ttl_ms: u64) -> BoxFuture<Result<bool, CoordError>> {
        let now = self.clock.now_ms();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() > SIM_KEYS_MAX {
            seen.retain(|_, ends| *ends > now);
        }
        let first = match seen.get(key) {
            Some(ends) if *ends > now => false,
            _ => {
                seen.insert(key.to_owned(), now.saturating_add(Self::ttl_ms(ttl_ms)));
                true
            }
        };
        Box::pin(std::future::ready(Ok(first)))
    }

    fn seen(&self, key: &str) -> BoxFuture<Result<bool, CoordError>> {
        let now = self.clock.now_ms();
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner).get(key).is_some_and(|ends| *ends > now);
        Box::pin(std::future::ready(Ok(seen)))
    }

    fn rate_limit(&self, key: &str, limit: u32, window_ms: u64) -> BoxFuture<Result<RateDecision, CoordError>> {
        let now = self.clock.now_ms();
        let mut rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        if rates.len() > SIM_KEYS_MAX {
            rates.retain(|_, (_, ends)| *ends > now);
        }
        let decision = match rates.get_mut(key) {
            Some((count, ends)) if *ends > now => {
                if *count < limit {
                    *count += 1;
                    RateDecision::Allowed
                } else {
                    RateDecision::Throttled { retry_after_ms: u64::try_from(*ends - now).unwrap_or(1).max(1) }
                }
            }
            _ if limit == 0 => RateDecision::Throttled { retry_after_ms: window_ms.max(1) },
            _ => {
                rates.insert(key.to_owned(), (1, now.saturating_add(Self::ttl_ms(window_ms))));
                RateDecision::Allowed
            }
        };
        Box::pin(std::future::ready(Ok(decision)))
    }

    fn seen_many(&self, keys: Vec<String>) -> BoxFuture<Result<Vec<bool>, CoordError>> {
        let now = self.clock.now_ms();
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let found = keys.iter().map(|key| seen.get(key).is_some_and(|ends| *ends > now)).collect();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn mark_many(&self, keys: Vec<String>, ttl_ms: u64) -> BoxFuture<Result<(), CoordError>> {
        let ends = self.clock.now_ms().saturating_add(Self::ttl_ms(ttl_ms));
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            seen.insert(key, ends);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn try_lock(&self, key: &str, ttl_ms: u64) -> BoxFuture<Result<Option<LockToken>, CoordError>> {
        self.inner.try_lock(key, ttl_ms)
    }

    fn unlock(&self, key: &str, token: LockToken) -> BoxFuture<Result<(), CoordError>> {
        self.inner.unlock(key, token)
    }

    fn publish_prices(&self, update: PricesUpdate) -> BoxFuture<Result<(), CoordError>> {
        self.inner.publish_prices(update)
    }

    fn latest_prices(&self) -> BoxFuture<Result<Option<PricesUpdate>, CoordError>> {
        self.inner.latest_prices()
    }

    fn board_set(&self, board: &str, player: PlayerId, score: f64) -> BoxFuture<Result<(), CoordError>> {
        self.inner.board_set(board, player, score)
    }

    fn boards_set(&self, scores: Vec<BoardScore>) -> BoxFuture<Result<(), CoordError>> {
        self.inner.boards_set(scores)
    }

    fn boards_set_absent(&self, scores: Vec<BoardScore>) -> BoxFuture<Result<Vec<f64>, CoordError>> {
        self.inner.boards_set_absent(scores)
    }

    fn board_range(&self, board: &str, offset: u64, limit: u64) -> BoxFuture<Result<Vec<(PlayerId, f64)>, CoordError>> {
        self.inner.board_range(board, offset, limit)
    }

    fn board_rank(&self, board: &str, player: PlayerId) -> BoxFuture<Result<Option<(u64, f64)>, CoordError>> {
        self.inner.board_rank(board, player)
    }

    fn board_count(&self, board: &str) -> BoxFuture<Result<u64, CoordError>> {
        self.inner.board_count(board)
    }

    fn board_remove(&self, board: &str, player: PlayerId) -> BoxFuture<Result<(), CoordError>> {
        self.inner.board_remove(board, player)
    }

    fn board_move(&self, from: &str, to: &str) -> BoxFuture<Result<(), CoordError>> {
        self.inner.board_move(from, to)
    }

    fn board_clear(&self, board: &str) -> BoxFuture<Result<(), CoordError>> {
        self.inner.board_clear(board)
    }

    fn names_set(&self, entries: Vec<(PlayerId, String)>) -> BoxFuture<Result<(), CoordError>> {
        self.inner.names_set(entries)
    }

    fn names_get(&self, players: Vec<PlayerId>) -> BoxFuture<Result<Vec<Option<String>>, CoordError>> {
        self.inner.names_get(players)
    }

    fn ping(&self) -> BoxFuture<Result<(), CoordError>> {
        self.inner.ping()
    }
}

/// The players: strategies round-robin; referral farms in groups of a main
/// and [`FARM_ALTS`] alts.
fn cast(seed: u64, players: u32) -> Vec<Player> {
    let mut cast = Vec::new();
    let mut farm_seen = 0_usize;
    let mut main = PlayerId(0);
    for i in 0..players {
        let id = PlayerId(1_000_000 + i64::from(i));
        let strategy = Strategy::ALL.get(usize::try_from(i).unwrap_or(0) % Strategy::ALL.len()).copied();
        let strategy = strategy.unwrap_or(Strategy::BuyAndHold);
        let mut alt_of = None;
        if strategy == Strategy::ReferralFarm {
            if farm_seen.is_multiple_of(FARM_ALTS + 1) {
                main = id;
            } else {
                alt_of = Some(main);
            }
            farm_seen += 1;
        }
        cast.push(Player {
            id,
            strategy,
            main: alt_of,
            rng: Rng(mix_seed(seed, u64::from(i))),
            counts: Counts::default(),
            flag: false,
            zone: 0,
        });
    }
    cast
}

/// Holdings at the bid less the selling fee, plus cash.
fn net_worth(engine: &Engine, cash: Decimal, positions: &[(usize, u64)], quotes: &[Quote]) -> f64 {
    let rules = engine.rules();
    let mut worth = cash;
    for (asset, qty) in positions {
        let Some(quote) = quotes.get(*asset) else { continue };
        let value = quote.bid * Decimal::from(*qty);
        let fee = (value * rules.fee_rate).max(rules.fee_min);
        worth += (value - fee).max(Decimal::ZERO);
    }
    worth.to_f64().unwrap_or(0.0)
}

async fn run_async(settings: &Settings, seed: u64, hours: f64, players: u32) -> Result<PlaytestReport, PlaytestError> {
    let wall = Instant::now();
    let memory = MemoryStore::new();
    let store: Arc<dyn Store> = Arc::new(memory);
    let clock = ManualClock::new(START_MS);
    let mut config = settings.engine.clone();
    // The market follows the run's seed (as `stockbot simulate --seed`).
    config.engine.seed = seed;
    let deps = EngineDeps {
        store: Arc::clone(&store),
        clock: Arc::new(clock.clone()),
        notifier: Arc::new(NullNotifier),
        autonomous_ticker: false,
    };
    let engine = Engine::start(&config, deps).await?;
    let coordinator = Arc::new(SimCoordinator {
        inner: LocalCoordinator::new(),
        clock: clock.clone(),
        rates: Mutex::new(HashMap::new()),
        seen: Mutex::new(HashMap::new()),
    });
    let bot = Bot::new(engine.clone(), Arc::clone(&store), None)
        .with_game(
            Arc::clone(&coordinator) as Arc<dyn Coordinator>,
            GameOptions { admins: vec![], ..GameOptions::default() },
        )
        .with_limiter(coordinator);

    let universe = engine.universe();
    let tickers: Vec<String> = universe.assets().iter().map(|a| a.ticker.to_string()).collect();
    let open_categories = usize::try_from(engine.game_rules().progression.unlocks(1).categories_count).unwrap_or(1);
    let level1_names: Vec<&str> = universe.categories().iter().take(open_categories).map(|c| c.name.as_str()).collect();
    let level1: Vec<usize> = universe
        .assets()
        .iter()
        .enumerate()
        .filter(|(_, a)| level1_names.contains(&a.category.as_str()))
        .map(|(i, _)| i)
        .collect();

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rounds = (hours * 60.0).round().max(1.0) as u64;
    let mut cast = cast(seed, players);
    for index in 0..rounds {
        let now_ms = START_MS + i64::try_from(index).unwrap_or(0) * ROUND_MS;
        clock.set(now_ms);
        let quotes = engine.quotes().await?;
        let round = Round { index, now_ms, quotes, level1: level1.clone(), tickers: tickers.clone(), rounds };
        if index == 0 {
            // Referrers open their accounts before their alts name them.
            let (mains, rest): (Vec<&mut Player>, Vec<&mut Player>) = cast.iter_mut().partition(|p| p.main.is_none());
            join_all(mains.into_iter().map(|p| p.act(&bot, &round))).await;
            join_all(rest.into_iter().map(|p| p.act(&bot, &round))).await;
        } else {
            join_all(cast.iter_mut().map(|p| p.act(&bot, &round))).await;
        }
        engine.step().await?;
    }
    clock.set(START_MS + i64::try_from(rounds).unwrap_or(0) * ROUND_MS);

    let quotes = engine.quotes().await?;
    let starting_cash = engine.rules().starting_cash;
    let mut sums: HashMap<Strategy, (u32, f64, Counts, u64, u64)> = HashMap::new();
    let (mut main_sum, mut mains) = (0.0, 0_u32);
    for player in &cast {
        let (worth, referrals) = match engine.ledger(player.id).await {
            Ok(Some(ledger)) => {
                let positions: Vec<(usize, u64)> =
                    ledger.account.positions.iter().map(|p| (usize::from(p.asset.0), p.qty)).collect();
                let worth = net_worth(&engine, ledger.account.cash, &positions, &quotes);
                (worth, u64::try_from(ledger.account.profile.referees_rewarded.len()).unwrap_or(0))
            }
            _ => (0.0, 0),
        };
        if player.strategy == Strategy::ReferralFarm && player.main.is_none() {
            main_sum += worth;
            mains += 1;
        }
        let entry = sums.entry(player.strategy).or_insert((0, 0.0, Counts::default(), 0, 0));
        entry.0 += 1;
        entry.1 += worth;
        entry.2.add(player.counts);
        entry.3 += referrals;
        entry.4 = entry.4.max(player.counts.bonuses);
    }
    let start = starting_cash.to_f64().unwrap_or(1.0);
    let strategies = Strategy::ALL
        .iter()
        .map(|strategy| {
            let (n, worth, counts, referrals, bonus_max) =
                sums.get(strategy).copied().unwrap_or((0, 0.0, Counts::default(), 0, 0));
            let mean = if n > 0 { worth / f64::from(n) } else { 0.0 };
            StrategyReport {
                strategy: *strategy,
                players: n,
                mean_net_worth: mean,
                mean_return_pct: (mean / start - 1.0) * 100.0,
                commands: counts.commands,
                trades: counts.trades,
                rejected: counts.rejected,
                throttled: counts.throttled,
                daily_bonuses: counts.bonuses,
                daily_bonuses_max: bonus_max,
                referral_rewards: referrals,
                bankruptcies: counts.bankruptcies,
            }
        })
        .collect();
    let audit = store.audit(Arc::new(tickers)).await?;
    let throttled_metric = bot.metrics().throttled.load(std::sync::atomic::Ordering::Relaxed);
    engine.shutdown().await?;
    Ok(PlaytestReport {
        seed,
        hours,
        players,
        rounds,
        strategies,
        farm_main_mean_net_worth: if mains > 0 { main_sum / f64::from(mains) } else { 0.0 },
        audit_ok: audit.ok,
        events: audit.events,
        throttled_metric,
        starting_cash: start,
        wall: wall.elapsed(),
    })
}
