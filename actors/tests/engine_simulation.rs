#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! Seeded simulation of the whole engine, through the actor system, checked
//! against a simple reference model written apart from the engine, for the
//! conservation invariants.
//!
//! A thousand players send random commands — opens, market, limit and stop
//! orders, cancels (valid and not), credits, bad input — as batches of many
//! players and as single commands from many concurrent callers, with market
//! minutes, operator halts and passivation of idle portfolios in between.
//! The reference keeps each player's cash, holdings and open orders and is
//! updated only from what the engine tells its callers (command results) and
//! its notifier (fills of resting orders); it never reads the engine's state
//! to update itself. Every result is checked against it, and at checkpoints
//! the engine's ledgers and portfolio projections, the event log (its own
//! invariants, conservation), its replay and the store's ledgers.
//!
//! Some rounds "churn": the clock races and the store is slow, so idle
//! players are passivated while their last events are still on the way to
//! the store, and some players send a command before the previous one is
//! answered. The run ends with a restart from the store. A second test takes
//! the store down mid-run.
//!
//! The seed comes from `SIM_SEED` (default [`DEFAULT_SEED`]); every failure
//! names it. Within a round each asset is traded by one player at most, so
//! no outcome depends on how concurrent commands interleave: a seed replays
//! the same outcomes (only the interleaving of players in the log and the
//! timestamps of churn rounds vary).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actors::clock::ManualClock;
use actors::config::{EngineConfig, EngineSettings};
use actors::domain::account::Account;
use actors::domain::asset::{AssetSpec, CategorySpec, ModelParams};
use actors::domain::command::{Command, Outcome};
use actors::domain::event::{CancelReason, CreditReason, Event, Stamped, Trade};
use actors::domain::exchange::{Exchange, ExchangeState, Placed};
use actors::domain::ids::{AssetId, LimitPrice, OrderId, PlayerId, QTY_MAX, Quantity, Ticker, TradeId};
use actors::domain::ledger::PlayerLedger;
use actors::domain::money::MONEY_MAX;
use actors::domain::order::{OrderKind, OrderRequest, RestingOrder, Side, Trigger};
use actors::domain::rejection::Rejection;
use actors::domain::rules::MarketRules;
use actors::engine::{Engine, EngineDeps};
use actors::market::{CommandResult, PricesChanged};
use actors::metrics::EngineMetrics;
use actors::ports::memory::MemoryStore;
use actors::ports::{
    Audit, BoxFuture, Candle, EventBatch, MarketSnapshot, Notice, Notifier, Store, StoreError, TradeRecord,
};
use futures_util::future::join_all;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

// ---- configuration ---------------------------------------------------------

/// Seed used when `SIM_SEED` is not set.
const DEFAULT_SEED: u64 = 0x5EED_0001;
const PLAYERS: usize = 1_000;
/// The main simulation sends at least this many commands.
const COMMANDS_MIN: u64 = 100_000;
const CHECKPOINT_EVERY_ROUNDS: u64 = 40;
/// Rounds run against the engine restarted from the store.
const ROUNDS_AFTER_RESTART: u64 = 15;
/// Real time allowed for idle portfolio actors to be passivated.
const PASSIVATION_WAIT_MAX: Duration = Duration::from_secs(15);
const CLOCK_START_MS: i64 = 1_700_000_000_000;
/// How far the clock jumps at each passivation (far beyond the idle time).
const CLOCK_JUMP_MS: i64 = 10_000_000;
/// Rounds `CHURN_ROUNDS.start..CHURN_ROUNDS.end` of every checkpoint period
/// run while the clock races, so idle players are passivated (and reloaded)
/// while their last events may still be on the way to the store.
const CHURN_ROUNDS: std::ops::Range<u64> = 20..30;
/// The racing clock: market milliseconds added per real tick.
const CHURN_ADVANCE_MS: i64 = 100;
const CHURN_TICK: Duration = Duration::from_millis(5);
/// Longest pause of a player between two commands in a churn round.
const CHURN_THINK_MS_MAX: u64 = 20;
/// In churn rounds the store takes this long to append, and some players
/// send a command before their previous one is confirmed.
const CHURN_APPEND_DELAY_MS: u64 = 15;

const ASSETS: usize = 48;
const CATEGORIES: [&str; 4] = ["Tech", "Energy", "Health", "Space"];
const PRICES_CENTS: [i64; 8] = [250, 790, 1_800, 4_200, 9_500, 23_000, 61_000, 145_000];

fn sim_seed() -> u64 {
    match std::env::var("SIM_SEED") {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("SIM_SEED={text:?} is not a number"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

/// A universe with cheap and dear assets, thin ones (orders hit the
/// liquidity limit) and two wild ones (circuit breakers fire).
fn config(seed: u64) -> EngineConfig {
    let categories = CATEGORIES
        .iter()
        .map(|name| CategorySpec { name: (*name).to_owned(), vol_daily: 0.012, jump_rate_daily: 0.2, jump_sigma: 0.02 })
        .collect();
    let assets = (0..ASSETS)
        .map(|index| {
            let wild = index % 24 == 7;
            let thin = index % 6 == 5;
            #[allow(clippy::cast_precision_loss)]
            let model = ModelParams {
                vol_daily: if wild { 0.45 } else { 0.01 + (index % 5) as f64 * 0.008 },
                jump_rate_daily: if wild { 40.0 } else { 0.3 },
                jump_sigma: if wild { 0.05 } else { 0.012 },
                liquidity_shares: if thin { 40.0 } else { 20_000.0 * (1 + index % 7) as f64 },
                spread_bps: ((index * 7) % 40) as f64,
                ..ModelParams::default()
            };
            AssetSpec {
                ticker: Ticker::parse(&format!("S{index:02}")).unwrap(),
                name: format!("Sim asset {index}"),
                category: CATEGORIES[index % CATEGORIES.len()].to_owned(),
                initial_price: Decimal::new(PRICES_CENTS[index % PRICES_CENTS.len()], 2),
                model,
            }
        })
        .collect();
    let engine = EngineSettings {
        seed,
        portfolio_idle_ms: 100,
        flush_interval_ms: 1,
        batch_commands_max: 512,
        ..EngineSettings::default()
    };
    let market =
        MarketRules { order_qty_max: 5_000, position_qty_max: 2_500, open_orders_max: 8, ..MarketRules::default() };
    EngineConfig {
        engine,
        market,
        game: actors::domain::game::GameRules::open(),
        factors: Default::default(),
        categories,
        assets,
    }
}

/// Telegram-like ids and local play-page ids (negative) alike.
fn player_id(index: usize) -> PlayerId {
    let index = i64::try_from(index).unwrap();
    if index % 4 == 0 { PlayerId(-1 - index) } else { PlayerId(10_000 + index * 7_919) }
}

fn asset(index: usize) -> AssetId {
    AssetId(u16::try_from(index).unwrap())
}

/// SplitMix64: derives independent seeds for per-player generators.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fails the test, naming the seed that reproduces it.
macro_rules! check {
    ($seed:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            panic!("simulation failed (reproduce with SIM_SEED={}): {}", $seed, format!($($arg)+));
        }
    };
}

// ---- the reference model ---------------------------------------------------

/// What one player has, as far as the engine has told anyone.
#[derive(Debug, Clone)]
struct RefPlayer {
    id: PlayerId,
    opened: bool,
    cash: Decimal,
    held: BTreeMap<AssetId, u64>,
    orders: BTreeMap<OrderId, RestingOrder>,
    /// Some of the player's filled or cancelled orders (for stale cancels).
    finished: VecDeque<OrderId>,
    trades: u64,
    /// Passivated at the last checkpoint and not asked anything since.
    cold: bool,
    /// Leaves orders far from the market resting (the others' ledgers can
    /// be passivated between their rounds).
    patient: bool,
}

impl Default for RefPlayer {
    fn default() -> Self {
        Self {
            id: PlayerId(0),
            opened: false,
            cash: Decimal::ZERO,
            held: BTreeMap::new(),
            orders: BTreeMap::new(),
            finished: VecDeque::new(),
            trades: 0,
            cold: false,
            patient: false,
        }
    }
}

impl RefPlayer {
    fn new(id: PlayerId, patient: bool) -> Self {
        Self { id, patient, ..Self::default() }
    }

    fn reserved_cash(&self) -> Decimal {
        self.orders.values().map(|o| o.reserved_cash).sum()
    }

    fn free_cash(&self) -> Decimal {
        self.cash - self.reserved_cash()
    }

    fn held(&self, asset: AssetId) -> u64 {
        self.held.get(&asset).copied().unwrap_or(0)
    }

    fn reserved_qty(&self, asset: AssetId) -> u64 {
        self.orders.values().filter(|o| o.asset == asset && o.side == Side::Sell).map(|o| o.qty).sum()
    }

    fn free_qty(&self, asset: AssetId) -> u64 {
        self.held(asset).saturating_sub(self.reserved_qty(asset))
    }

    fn finish(&mut self, order: OrderId) {
        self.finished.push_back(order);
        if self.finished.len() > 8 {
            self.finished.pop_front();
        }
    }

    /// Books a fill the engine reported.
    fn apply_trade(&mut self, seed: u64, trade: &Trade) {
        self.cash += trade.cash_delta();
        self.trades += 1;
        let held = self.held.entry(trade.asset).or_insert(0);
        match trade.side {
            Side::Buy => *held += trade.qty,
            Side::Sell => {
                check!(seed, *held >= trade.qty, "{:?} sold {} shares holding {}", self.id, trade.qty, held);
                *held -= trade.qty;
            }
        }
        if *held == 0 {
            self.held.remove(&trade.asset);
        }
    }
}

/// The fee rule, written independently of the engine:
/// `max(fee_min, value × fee_rate rounded up to the cent)`.
fn fee_of(rules: &MarketRules, value: Decimal) -> Decimal {
    (value * rules.fee_rate).round_dp_with_strategy(2, RoundingStrategy::ToPositiveInfinity).max(rules.fee_min)
}

/// What the checks of one round need to know besides the player.
#[derive(Debug, Clone)]
struct Ctx {
    seed: u64,
    rules: MarketRules,
    assets: usize,
    /// Halted by an operator or by a circuit breaker, as of this round.
    halted: Vec<bool>,
}

/// What a batch of checks saw, merged into the simulation afterwards.
#[derive(Debug, Default)]
struct Observed {
    commands: u64,
    counts: BTreeMap<String, u64>,
    trades: Vec<TradeId>,
    placed: Vec<OrderId>,
}

impl Observed {
    fn count(&mut self, key: impl Into<String>) {
        *self.counts.entry(key.into()).or_default() += 1;
    }
}

fn outcome_name(result: &CommandResult) -> &'static str {
    match result {
        Ok(Outcome::Opened { new: true }) => "ok.opened",
        Ok(Outcome::Opened { new: false }) => "ok.already_open",
        Ok(Outcome::Placed(Placed::Filled(_))) => "ok.filled",
        Ok(Outcome::Placed(Placed::Resting(_))) => "ok.resting",
        Ok(Outcome::Cancelled(_)) => "ok.cancelled",
        Ok(Outcome::Credited { .. }) => "ok.credited",
        Ok(Outcome::Halted) => "ok.halted",
        Ok(_) => "ok.game",
        Err(rejection) => match rejection {
            Rejection::BadTicker { .. } => "rej.bad_ticker",
            Rejection::UnknownTicker { .. } => "rej.unknown_ticker",
            Rejection::BadQuantity { .. } => "rej.bad_quantity",
            Rejection::BadPrice { .. } => "rej.bad_price",
            Rejection::OrderTooLarge { .. } => "rej.order_too_large",
            Rejection::OrderTooSmall { .. } => "rej.order_too_small",
            Rejection::ExceedsLiquidity { .. } => "rej.exceeds_liquidity",
            Rejection::PositionLimit { .. } => "rej.position_limit",
            Rejection::InsufficientCash { .. } => "rej.insufficient_cash",
            Rejection::InsufficientShares { .. } => "rej.insufficient_shares",
            Rejection::Halted { .. } => "rej.halted",
            Rejection::TooManyOpenOrders { .. } => "rej.too_many_open_orders",
            Rejection::PriceWouldExecute { .. } => "rej.price_would_execute",
            Rejection::StopOnlySells => "rej.stop_only_sells",
            Rejection::UnknownOrder { .. } => "rej.unknown_order",
            Rejection::NoAccount => "rej.no_account",
            Rejection::AmountTooLarge => "rej.amount_too_large",
            Rejection::Busy => "rej.busy",
            Rejection::Unavailable => "rej.unavailable",
            _ => "rej.game",
        },
    }
}

/// A fill's price is whole cents and its fee obeys the fee rule.
fn check_trade_money(ctx: &Ctx, trade: &Trade, what: &dyn Fn() -> String) {
    check!(ctx.seed, trade.price > Decimal::ZERO && trade.price.normalize().scale() <= 2, "bad price: {}", what());
    let fee = fee_of(&ctx.rules, trade.value());
    check!(ctx.seed, trade.fee == fee, "fee {} should be {fee}: {}", trade.fee, what());
}

/// Checks one command's result against the reference, then books it there.
fn apply_result(
    ctx: &Ctx,
    p: &mut RefPlayer,
    command: &Command,
    label: &'static str,
    result: &CommandResult,
    obs: &mut Observed,
) {
    obs.commands += 1;
    obs.count(format!("cmd.{label}"));
    obs.count(outcome_name(result));
    if matches!(result, Err(Rejection::Busy | Rejection::Unavailable)) {
        // Refused before it was applied: nothing changed.
        return;
    }
    if p.cold {
        obs.count("reloads");
        p.cold = false;
    }
    let before = format!("{p:?}");
    let what = || format!("{label} {command:?} -> {result:?}; reference before: {before}");
    match command {
        Command::Open { player } => {
            check!(ctx.seed, *player == p.id, "routed to the wrong player: {}", what());
            match result {
                Ok(Outcome::Opened { new }) => {
                    check!(ctx.seed, *new != p.opened, "`new` is wrong: {}", what());
                    if *new {
                        p.opened = true;
                        p.cash = ctx.rules.starting_cash;
                    }
                }
                _ => check!(ctx.seed, false, "an open must succeed: {}", what()),
            }
        }
        Command::Place(request) => {
            check!(ctx.seed, request.player == p.id, "routed to the wrong player: {}", what());
            check_place(ctx, p, request, result, obs, &what);
        }
        Command::Cancel { player, order } => {
            check!(ctx.seed, *player == p.id, "routed to the wrong player: {}", what());
            match result {
                Ok(Outcome::Cancelled(cancelled)) => {
                    let mine = p.orders.remove(order);
                    check!(ctx.seed, mine == Some(*cancelled), "cancelled an order that is not open: {}", what());
                    p.finish(*order);
                }
                Err(Rejection::UnknownOrder { order_id }) => {
                    check!(ctx.seed, order_id == order, "wrong id in the rejection: {}", what());
                    check!(ctx.seed, !p.orders.contains_key(order), "the player's open order is unknown: {}", what());
                }
                _ => check!(ctx.seed, false, "unexpected cancel result: {}", what()),
            }
        }
        Command::Credit { player, amount, .. } => {
            check!(ctx.seed, *player == p.id, "routed to the wrong player: {}", what());
            let rounded = amount.round_dp_with_strategy(2, RoundingStrategy::ToNegativeInfinity);
            let absurd = *amount <= Decimal::ZERO
                || *amount > MONEY_MAX
                || p.cash + *amount > MONEY_MAX * Decimal::from(1000)
                || rounded <= Decimal::ZERO;
            let expected = if !p.opened {
                Err(Rejection::NoAccount)
            } else if absurd {
                Err(Rejection::AmountTooLarge)
            } else {
                Ok(())
            };
            match (expected, result) {
                (Ok(()), Ok(Outcome::Credited { cash })) => {
                    p.cash += rounded;
                    check!(ctx.seed, *cash == p.cash, "credited balance {cash} should be {}: {}", p.cash, what());
                }
                (Err(expected), Err(got)) => check!(ctx.seed, expected == *got, "expected {expected:?}: {}", what()),
                (expected, _) => check!(ctx.seed, false, "expected {expected:?}: {}", what()),
            }
        }
        _ => check!(ctx.seed, false, "not a command of this simulation: {}", what()),
    }
    check!(
        ctx.seed,
        p.cash >= Decimal::ZERO && p.free_cash() >= Decimal::ZERO,
        "negative cash after {}: {p:?}",
        what()
    );
}

fn check_place(
    ctx: &Ctx,
    p: &mut RefPlayer,
    request: &OrderRequest,
    result: &CommandResult,
    obs: &mut Observed,
    what: &dyn Fn() -> String,
) {
    let seed = ctx.seed;
    let (qty, side, asset) = (request.qty.get(), request.side, request.asset);
    let rules = &ctx.rules;
    // Checks that come before any state is looked at, in the engine's order.
    if asset.index() >= ctx.assets {
        check!(seed, matches!(result, Err(Rejection::BadTicker { .. })), "unknown asset id: {}", what());
        return;
    }
    if qty > rules.order_qty_max {
        let expected = Err(Rejection::OrderTooLarge { qty_max: rules.order_qty_max });
        check!(seed, *result == expected, "expected OrderTooLarge: {}", what());
        return;
    }
    let halted = ctx.halted[asset.index()];
    check!(seed, halted == matches!(result, Err(Rejection::Halted { .. })), "halted is {halted}: {}", what());
    if halted {
        return;
    }
    if !p.opened {
        check!(seed, *result == Err(Rejection::NoAccount), "expected NoAccount: {}", what());
        return;
    }
    check!(seed, *result != Err(Rejection::NoAccount), "NoAccount after Open: {}", what());
    let is_stop = matches!(request.kind, OrderKind::Stop(_));
    if is_stop && side == Side::Buy {
        check!(seed, *result == Err(Rejection::StopOnlySells), "expected StopOnlySells: {}", what());
        return;
    }
    match result {
        Ok(Outcome::Placed(Placed::Filled(fill))) => {
            let trade = &fill.trade;
            check!(
                seed,
                trade.player == p.id
                    && trade.asset == asset
                    && trade.side == side
                    && trade.qty == qty
                    && trade.order.is_none(),
                "fill does not match the order: {}",
                what()
            );
            check!(seed, !is_stop, "a stop filled when placed: {}", what());
            check_trade_money(ctx, trade, what);
            if let OrderKind::Limit(limit) = request.kind {
                let within = match side {
                    Side::Buy => trade.price <= limit.get(),
                    Side::Sell => trade.price >= limit.get(),
                };
                check!(seed, within, "filled beyond the limit: {}", what());
            }
            let value = trade.value();
            match side {
                Side::Buy => {
                    check!(seed, value + trade.fee <= p.free_cash(), "bought beyond free cash: {}", what());
                    check!(seed, p.held(asset) + qty <= rules.position_qty_max, "beyond the position cap: {}", what());
                }
                Side::Sell => check!(seed, qty <= p.free_qty(asset), "sold shares not free: {}", what()),
            }
            let closes = side == Side::Sell && qty == p.held(asset);
            check!(seed, value >= rules.order_value_min || closes, "filled below the order minimum: {}", what());
            p.apply_trade(seed, trade);
            check!(
                seed,
                fill.cash_after == p.cash && fill.held_after == p.held(asset),
                "fill says cash {} held {}, reference has {} and {}: {}",
                fill.cash_after,
                fill.held_after,
                p.cash,
                p.held(asset),
                what()
            );
            obs.trades.push(trade.id);
        }
        Ok(Outcome::Placed(Placed::Resting(order))) => {
            let (trigger, price) = match request.kind {
                OrderKind::Market => panic!("simulation failed (SIM_SEED={seed}): a market order rested: {}", what()),
                OrderKind::Limit(limit) => (Trigger::Limit(limit.get()), limit.get()),
                OrderKind::Stop(stop) => (Trigger::Stop(stop.get()), stop.get()),
            };
            check!(
                seed,
                order.player == p.id
                    && order.asset == asset
                    && order.side == side
                    && order.qty == qty
                    && order.trigger == trigger,
                "resting order does not match the request: {}",
                what()
            );
            let open_max = usize::try_from(rules.open_orders_max).unwrap();
            check!(seed, p.orders.len() < open_max, "beyond the open-order cap: {}", what());
            let value = price * Decimal::from(qty);
            check!(seed, value >= rules.order_value_min, "rests below the order minimum: {}", what());
            match side {
                Side::Buy => {
                    let reserve = value + fee_of(rules, value);
                    check!(seed, order.reserved_cash == reserve, "reserves {reserve} for a buy: {}", what());
                    check!(seed, reserve <= p.free_cash(), "reserved beyond free cash: {}", what());
                    check!(seed, p.held(asset) + qty <= rules.position_qty_max, "beyond the position cap: {}", what());
                }
                Side::Sell => {
                    check!(seed, order.reserved_cash.is_zero(), "a sell reserves cash: {}", what());
                    check!(seed, qty <= p.free_qty(asset), "rests a sell of shares not free: {}", what());
                }
            }
            check!(seed, !p.orders.contains_key(&order.id), "order id reused: {}", what());
            p.orders.insert(order.id, *order);
            obs.placed.push(order.id);
        }
        Err(Rejection::InsufficientShares { needed, available, .. }) => {
            let free = p.free_qty(asset);
            check!(
                seed,
                side == Side::Sell && *needed == qty && *available == free && qty > free,
                "InsufficientShares with {free} free: {}",
                what()
            );
        }
        Err(Rejection::InsufficientCash { needed, available }) => {
            let free = p.free_cash().max(Decimal::ZERO);
            check!(
                seed,
                side == Side::Buy && *available == free && needed > available,
                "InsufficientCash with {free} free: {}",
                what()
            );
        }
        Err(Rejection::TooManyOpenOrders { open_max }) => {
            check!(
                seed,
                *open_max == rules.open_orders_max
                    && request.kind != OrderKind::Market
                    && p.orders.len() >= usize::try_from(*open_max).unwrap(),
                "TooManyOpenOrders with {} open: {}",
                p.orders.len(),
                what()
            );
        }
        Err(Rejection::PositionLimit { held, qty_max, .. }) => {
            check!(
                seed,
                side == Side::Buy
                    && *held == p.held(asset)
                    && *qty_max == rules.position_qty_max
                    && *held + qty > *qty_max,
                "PositionLimit: {}",
                what()
            );
        }
        Err(Rejection::PriceWouldExecute { .. }) => check!(seed, is_stop, "PriceWouldExecute: {}", what()),
        Err(Rejection::OrderTooSmall { .. }) => {
            // Closing a whole position at the market is always allowed.
            let closing_market_sell = request.kind == OrderKind::Market && side == Side::Sell && qty == p.held(asset);
            check!(seed, !closing_market_sell, "a closing sell was too small: {}", what());
        }
        Err(Rejection::ExceedsLiquidity { .. }) => check!(seed, !is_stop, "a stop checked liquidity: {}", what()),
        _ => check!(seed, false, "unexpected result: {}", what()),
    }
}

/// Checks a notice about a resting order against the reference, then books it.
fn apply_notice(ctx: &Ctx, p: &mut RefPlayer, player: PlayerId, notice: &Notice, obs: &mut Observed) {
    let seed = ctx.seed;
    let before = format!("{p:?}");
    let what = || format!("{notice:?} for {player:?}; reference before: {before}");
    check!(seed, player == p.id, "notice routed to the wrong player: {}", what());
    match notice {
        Notice::AlertFired { .. } => check!(seed, false, "no alerts in this simulation: {}", what()),
        Notice::OrderFilled(trade) => {
            let Some(order) = trade.order.and_then(|id| p.orders.get(&id).copied()) else {
                panic!("simulation failed (reproduce with SIM_SEED={seed}): fill of an order not open: {}", what());
            };
            check!(
                seed,
                trade.player == p.id
                    && trade.asset == order.asset
                    && trade.side == order.side
                    && trade.qty == order.qty,
                "fill does not match the order: {}",
                what()
            );
            check_trade_money(ctx, trade, &what);
            match order.trigger {
                Trigger::Limit(limit) => {
                    let within = match order.side {
                        Side::Buy => trade.price <= limit,
                        Side::Sell => trade.price >= limit,
                    };
                    check!(seed, within, "resting fill beyond its limit: {}", what());
                }
                Trigger::Stop(_) => check!(seed, order.side == Side::Sell, "a stop bought: {}", what()),
            }
            let value = trade.value();
            match order.side {
                Side::Buy => {
                    let available = p.free_cash() + order.reserved_cash;
                    check!(seed, value + trade.fee <= available, "resting buy beyond its cash: {}", what());
                    let capped = p.held(order.asset) + order.qty <= ctx.rules.position_qty_max;
                    check!(seed, capped, "resting buy beyond the position cap: {}", what());
                }
                Side::Sell => {
                    let available = p.free_qty(order.asset) + order.qty;
                    check!(seed, order.qty <= available, "resting sell of shares not held: {}", what());
                }
            }
            let closes = order.side == Side::Sell && order.qty == p.held(order.asset);
            check!(seed, value >= ctx.rules.order_value_min || closes, "resting fill below the minimum: {}", what());
            p.orders.remove(&order.id);
            p.finish(order.id);
            p.apply_trade(seed, trade);
            obs.trades.push(trade.id);
            obs.count("resting.filled");
        }
        Notice::OrderDropped { order } => {
            check!(seed, p.orders.remove(order).is_some(), "dropped an order not open: {}", what());
            p.finish(*order);
            obs.count("resting.dropped");
        }
    }
    check!(seed, p.cash >= Decimal::ZERO && p.free_cash() >= Decimal::ZERO, "negative cash after {}", what());
}

/// Compares an engine ledger (from the sequencer or a portfolio projection)
/// with the reference; returns its cash.
fn compare_ledger(seed: u64, p: &RefPlayer, ledger: Option<&PlayerLedger>, source: &str) -> Decimal {
    let Some(ledger) = ledger else {
        check!(seed, !p.opened, "{source}: no ledger for opened player {p:?}");
        return Decimal::ZERO;
    };
    check!(seed, p.opened, "{source}: a ledger for {:?} who never opened: {ledger:?}", p.id);
    let account = &ledger.account;
    let what = || format!("{source}: engine {ledger:?} vs reference {p:?}");
    check!(seed, account.cash == p.cash, "cash differs: {}", what());
    check!(seed, account.reserved_cash == p.reserved_cash(), "reserved cash differs: {}", what());
    check!(seed, account.cash >= account.reserved_cash && account.cash >= Decimal::ZERO, "negative: {}", what());
    check!(seed, account.trades == p.trades, "trade count differs: {}", what());
    check!(seed, usize::try_from(account.open_orders).unwrap() == p.orders.len(), "open count differs: {}", what());
    let mut assets: BTreeSet<AssetId> = p.held.keys().copied().collect();
    assets.extend(p.orders.values().filter(|o| o.side == Side::Sell).map(|o| o.asset));
    check!(seed, account.positions.len() == assets.len(), "positions differ: {}", what());
    for position in &account.positions {
        check!(
            seed,
            position.qty == p.held(position.asset) && position.reserved_qty == p.reserved_qty(position.asset),
            "position differs: {}",
            what()
        );
        check!(
            seed,
            position.reserved_qty <= position.qty
                && position.cost_basis >= Decimal::ZERO
                && (position.qty > 0 || position.cost_basis.is_zero()),
            "position is inconsistent: {}",
            what()
        );
    }
    let mut orders = ledger.orders.clone();
    orders.sort_by_key(|o| o.id);
    let expected: Vec<RestingOrder> = p.orders.values().copied().collect();
    check!(seed, orders == expected, "open orders differ: {}", what());
    account.cash
}

// ---- command generation ----------------------------------------------------

/// A player's part in a round. A trader is the only one who may move the
/// prices of its assets this round; everyone else sends commands whose
/// outcome no other player's trades can change.
#[derive(Debug, Clone)]
enum Role {
    Trader(Vec<AssetId>),
    Bystander,
}

/// Prices at the start of a round, and order ids to cancel by mistake.
#[derive(Debug, Clone)]
struct View {
    bid: Vec<f64>,
    ask: Vec<f64>,
    foreign_orders: Vec<OrderId>,
    next_order: u64,
}

fn money(value: f64) -> Decimal {
    #[allow(clippy::cast_possible_truncation)]
    let cents = (value * 100.0).round().max(1.0) as i64;
    Decimal::new(cents, 2)
}

fn price(value: f64) -> LimitPrice {
    LimitPrice::new(money(value)).unwrap()
}

fn qty(shares: u64) -> Quantity {
    Quantity::new(shares.clamp(1, QTY_MAX)).unwrap()
}

/// Shares worth about `budget` at `price` (at least one).
fn shares_for(budget: f64, price: f64) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let shares = (budget / price.max(0.01)).floor().clamp(1.0, 1e9) as u64;
    shares
}

fn order(p: &RefPlayer, asset: AssetId, side: Side, shares: u64, kind: OrderKind) -> Command {
    Command::Place(OrderRequest { player: p.id, asset, side, qty: qty(shares), kind })
}

fn gen_command(
    p: &RefPlayer,
    role: &Role,
    view: &View,
    rules: &MarketRules,
    rng: &mut Pcg64Mcg,
) -> (Command, &'static str) {
    if !p.opened {
        if rng.random_range(0..100) < 80 {
            return (Command::Open { player: p.id }, "open");
        }
        let (command, _) = gen_bystander(p, view, rules, rng);
        return (command, "before_open");
    }
    match role {
        Role::Trader(mine) if rng.random_range(0..100) < 88 => gen_trader(p, mine, view, rules, rng),
        _ => gen_bystander(p, view, rules, rng),
    }
}

fn gen_trader(
    p: &RefPlayer,
    mine: &[AssetId],
    view: &View,
    rules: &MarketRules,
    rng: &mut Pcg64Mcg,
) -> (Command, &'static str) {
    let asset = mine[rng.random_range(0..mine.len())];
    let (bid, ask) = (view.bid[asset.index()], view.ask[asset.index()]);
    let free_cash = p.free_cash().to_f64().unwrap_or(0.0).max(0.0);
    let held: Vec<AssetId> = mine.iter().copied().filter(|a| p.held(*a) > 0).collect();
    let with_free: Vec<AssetId> = held.iter().copied().filter(|a| p.free_qty(*a) > 0).collect();
    let budget = |rng: &mut Pcg64Mcg| {
        if rng.random_range(0..10) == 0 {
            rng.random_range(500..=rules.order_qty_max)
        } else {
            shares_for(free_cash * rng.random_range(0.02..0.3), ask)
        }
    };
    let roll = rng.random_range(0..82);
    match roll {
        0..=23 => (order(p, asset, Side::Buy, budget(rng), OrderKind::Market), "market_buy"),
        24..=43 if !held.is_empty() => {
            let asset = held[rng.random_range(0..held.len())];
            let (all, free) = (p.held(asset), p.free_qty(asset));
            let shares = match rng.random_range(0..20) {
                0..=13 if free > 0 => rng.random_range(1..=free),
                0..=16 => all,
                _ => free + rng.random_range(1..=20),
            };
            (order(p, asset, Side::Sell, shares, OrderKind::Market), "market_sell")
        }
        44..=51 => {
            let kind = OrderKind::Limit(price(ask * 1.02));
            (order(p, asset, Side::Buy, budget(rng), kind), "limit_buy_marketable")
        }
        52..=57 if !with_free.is_empty() => {
            let asset = with_free[rng.random_range(0..with_free.len())];
            let kind = OrderKind::Limit(price(view.bid[asset.index()] * 0.98));
            (order(p, asset, Side::Sell, rng.random_range(1..=p.free_qty(asset)), kind), "limit_sell_marketable")
        }
        58..=67 => {
            let kind = OrderKind::Limit(price(bid * (1.0 - rng.random_range(0.0..0.006))));
            let shares = shares_for(free_cash * rng.random_range(0.01..0.15), bid);
            (order(p, asset, Side::Buy, shares, kind), "limit_buy_near")
        }
        68..=74 if !with_free.is_empty() => {
            let asset = with_free[rng.random_range(0..with_free.len())];
            let kind = OrderKind::Limit(price(view.ask[asset.index()] * (1.0 + rng.random_range(0.0..0.006))));
            (order(p, asset, Side::Sell, rng.random_range(1..=p.free_qty(asset)), kind), "limit_sell_near")
        }
        75..=81 if !with_free.is_empty() => {
            let asset = with_free[rng.random_range(0..with_free.len())];
            let kind = OrderKind::Stop(price(view.bid[asset.index()] * (1.0 - rng.random_range(0.0005..0.01))));
            let free = p.free_qty(asset);
            let shares = if rng.random_bool(0.5) { free } else { rng.random_range(1..=free) };
            (order(p, asset, Side::Sell, shares, kind), "stop_near")
        }
        _ if !p.orders.is_empty() && rng.random_bool(0.5) => cancel_own(p, rng),
        _ => (order(p, asset, Side::Buy, budget(rng), OrderKind::Market), "market_buy"),
    }
}

fn cancel_own(p: &RefPlayer, rng: &mut Pcg64Mcg) -> (Command, &'static str) {
    let ids: Vec<OrderId> = p.orders.keys().copied().collect();
    (Command::Cancel { player: p.id, order: ids[rng.random_range(0..ids.len())] }, "cancel_own")
}

/// More cash than the player can have by the end of a round, whatever its
/// other commands of the round do (open, credits, sales).
fn wealth_bound(p: &RefPlayer, view: &View, rules: &MarketRules) -> f64 {
    let holdings: f64 = p.held.iter().map(|(asset, qty)| view.ask[asset.index()] * 1.5 * *qty as f64).sum();
    let cash = p.cash.to_f64().unwrap_or(0.0) + rules.starting_cash.to_f64().unwrap_or(0.0);
    cash + holdings + 10_000.0
}

/// Commands whose outcome no other player's trade this round can change:
/// no trades, prices far from the market, mistakes.
fn gen_bystander(p: &RefPlayer, view: &View, rules: &MarketRules, rng: &mut Pcg64Mcg) -> (Command, &'static str) {
    let assets = view.bid.len();
    let asset = self::asset(rng.random_range(0..assets));
    let (bid, ask) = (view.bid[asset.index()], view.ask[asset.index()]);
    let free_cash = p.free_cash().to_f64().unwrap_or(0.0).max(0.0);
    let with_free: Vec<AssetId> = p.held.keys().copied().filter(|a| p.free_qty(*a) > 0).collect();
    let roll = if p.patient { rng.random_range(0..100) } else { rng.random_range(24..100) };
    match roll {
        0..=9 => {
            let limit = bid * rng.random_range(0.3..0.6);
            let shares = shares_for(free_cash * rng.random_range(0.01..0.15), limit);
            (order(p, asset, Side::Buy, shares, OrderKind::Limit(price(limit))), "limit_buy_far")
        }
        10..=17 if !with_free.is_empty() => {
            let asset = with_free[rng.random_range(0..with_free.len())];
            let kind = OrderKind::Limit(price(view.ask[asset.index()] * rng.random_range(1.6..3.0)));
            (order(p, asset, Side::Sell, rng.random_range(1..=p.free_qty(asset)), kind), "limit_sell_far")
        }
        18..=23 if !with_free.is_empty() => {
            let asset = with_free[rng.random_range(0..with_free.len())];
            let kind = OrderKind::Stop(price(view.bid[asset.index()] * rng.random_range(0.3..0.6)));
            (order(p, asset, Side::Sell, rng.random_range(1..=p.free_qty(asset)), kind), "stop_far")
        }
        24..=37 if !p.orders.is_empty() => cancel_own(p, rng),
        24..=45 => {
            let order = match rng.random_range(0..4) {
                0 => OrderId(0),
                1 if !view.foreign_orders.is_empty() => {
                    view.foreign_orders[rng.random_range(0..view.foreign_orders.len())]
                }
                2 if !p.finished.is_empty() => p.finished[rng.random_range(0..p.finished.len())],
                _ => OrderId(view.next_order + rng.random_range(1_000..1_000_000)),
            };
            (Command::Cancel { player: p.id, order }, "cancel_invalid")
        }
        46..=55 => {
            let amount = match rng.random_range(0..10) {
                0..=5 => Decimal::new(rng.random_range(100..=50_000), 2),
                6 => Decimal::new(rng.random_range(1_000..=99_999), 3),
                7 => Decimal::new(rng.random_range(1..=9), 3),
                8 => -Decimal::new(rng.random_range(0..=10_000), 2),
                _ => MONEY_MAX + Decimal::new(rng.random_range(1..=1_000), 2),
            };
            let reason = if rng.random_bool(0.5) { CreditReason::DailyBonus } else { CreditReason::AdminGrant };
            (Command::Credit { player: p.id, amount, reason }, "credit")
        }
        56..=58 => (Command::Open { player: p.id }, "open_again"),
        59..=63 => {
            let unknown = AssetId(rng.random_range(u16::try_from(assets).unwrap()..=u16::MAX));
            (order(p, unknown, Side::Buy, rng.random_range(1..=100), OrderKind::Market), "unknown_asset")
        }
        64..=68 => {
            let shares = rng.random_range(rules.order_qty_max + 1..=QTY_MAX);
            let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
            (order(p, asset, side, shares, OrderKind::Market), "qty_above_limit")
        }
        69..=78 => {
            // Held, not free: a cancel earlier this round may free shares.
            let shares = p.held(asset) + rng.random_range(1..=50);
            (order(p, asset, Side::Sell, shares, OrderKind::Market), "sell_not_held")
        }
        79..=86 => {
            // Commands are generated before earlier ones of the same round
            // are answered, so "beyond cash" must hold whatever they did.
            let bound = 2.0 * wealth_bound(p, view, rules);
            let dearest =
                (0..assets).map(self::asset).max_by(|a, b| view.ask[a.index()].total_cmp(&view.ask[b.index()]));
            let target = if shares_for(bound, ask) < rules.order_qty_max { Some(asset) } else { dearest };
            match target {
                Some(target) if shares_for(bound, view.ask[target.index()]) < rules.order_qty_max => {
                    let shares = shares_for(bound, view.ask[target.index()]) + 1 + rng.random_range(0..10);
                    (order(p, target, Side::Buy, shares, OrderKind::Market), "buy_beyond_cash")
                }
                _ => (order(p, asset, Side::Buy, rules.order_qty_max + 1, OrderKind::Market), "qty_above_limit"),
            }
        }
        87..=89 => {
            let kind = OrderKind::Stop(price(bid * 0.5));
            (order(p, asset, Side::Buy, rng.random_range(1..=10), kind), "stop_buy")
        }
        _ => {
            let limit = bid * 0.5;
            let shares = shares_for(2.0 * free_cash, limit) + 1;
            (order(p, asset, Side::Buy, shares, OrderKind::Limit(price(limit))), "limit_buy_beyond_cash")
        }
    }
}

/// How many commands a player sends in one round.
fn commands_per_round(rng: &mut Pcg64Mcg, role: &Role) -> usize {
    match role {
        Role::Trader(_) => rng.random_range(2..=6),
        Role::Bystander => rng.random_range(1..=3),
    }
}

/// How a player sends its commands in a single-command round.
#[derive(Debug, Clone, Copy, Default)]
struct Pace {
    /// Longest pause before each command (0: none).
    think_ms_max: u64,
    /// Whether the player sometimes sends a command before the previous one
    /// is confirmed (both generated from the reference as it was).
    pipelined: bool,
}

/// One player's commands sent one at a time (or two at a time when
/// pipelined), each generated from the reference as it stands after the
/// previous results.
#[allow(clippy::too_many_arguments)]
async fn run_player(
    engine: Engine,
    ctx: Arc<Ctx>,
    view: Arc<View>,
    index: usize,
    mut p: RefPlayer,
    role: Role,
    commands: usize,
    rng_seed: u64,
    pace: Pace,
) -> (usize, RefPlayer, Observed) {
    let mut rng = Pcg64Mcg::seed_from_u64(rng_seed);
    let mut obs = Observed::default();
    let mut sent = 0;
    while sent < commands {
        if pace.think_ms_max > 0 {
            actix::clock::sleep(Duration::from_millis(rng.random_range(0..=pace.think_ms_max))).await;
        }
        let (first, first_label) = gen_command(&p, &role, &view, &ctx.rules, &mut rng);
        if pace.pipelined && sent + 1 < commands && rng.random_bool(0.5) {
            let (second, second_label) = gen_command(&p, &role, &view, &ctx.rules, &mut rng);
            let gap = Duration::from_millis(rng.random_range(1..=2 * CHURN_APPEND_DELAY_MS));
            // The first is queued when first polled, so it stays first.
            let (first_result, second_result) = futures_util::join!(engine.execute_one(first.clone()), async {
                actix::clock::sleep(gap).await;
                engine.execute_one(second.clone()).await
            });
            apply_result(&ctx, &mut p, &first, first_label, &first_result, &mut obs);
            apply_result(&ctx, &mut p, &second, second_label, &second_result, &mut obs);
            obs.count("pipelined");
            sent += 2;
        } else {
            let result = engine.execute_one(first.clone()).await;
            apply_result(&ctx, &mut p, &first, first_label, &result, &mut obs);
            sent += 1;
        }
    }
    obs.counts.insert("mode.single".into(), obs.commands);
    (index, p, obs)
}

// ---- the notifier ----------------------------------------------------------

/// Records notices about resting orders for the reference.
#[derive(Default)]
struct Recorder {
    notices: Mutex<Vec<(PlayerId, Notice)>>,
}

impl Recorder {
    fn take(&self) -> Vec<(PlayerId, Notice)> {
        std::mem::take(&mut *self.notices.lock().unwrap())
    }

    fn is_empty(&self) -> bool {
        self.notices.lock().unwrap().is_empty()
    }
}

impl Notifier for Recorder {
    fn notify(&self, player: PlayerId, notice: Notice) {
        self.notices.lock().unwrap().push((player, notice));
    }
}

/// Moves the manual clock on its own, in real time, until stopped.
struct ClockDriver {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl ClockDriver {
    fn start(clock: ManualClock) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = actix::spawn(async move {
            while !flag.load(Ordering::SeqCst) {
                clock.advance(CHURN_ADVANCE_MS);
                actix::clock::sleep(CHURN_TICK).await;
            }
        });
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
    }
}

/// The in-memory store with a switchable delay before each append, to
/// widen the window in which events are applied but not yet durable.
#[derive(Clone)]
struct SlowStore {
    inner: MemoryStore,
    append_delay_ms: Arc<AtomicU64>,
}

impl Store for SlowStore {
    fn append(&self, batch: Arc<EventBatch>) -> BoxFuture<Result<(), StoreError>> {
        let delay_ms = self.append_delay_ms.load(Ordering::SeqCst);
        if delay_ms == 0 {
            return self.inner.append(batch);
        }
        let inner = self.inner.clone();
        Box::pin(async move {
            actix::clock::sleep(Duration::from_millis(delay_ms)).await;
            inner.append(batch).await
        })
    }

    fn load_account(&self, player: PlayerId) -> BoxFuture<Result<Option<Account>, StoreError>> {
        self.inner.load_account(player)
    }

    fn load_market(&self) -> BoxFuture<Result<Option<MarketSnapshot>, StoreError>> {
        self.inner.load_market()
    }

    fn save_market(&self, snapshot: Arc<MarketSnapshot>) -> BoxFuture<Result<(), StoreError>> {
        self.inner.save_market(snapshot)
    }

    fn events_after(&self, after: u64, limit: usize) -> BoxFuture<Result<Vec<Stamped>, StoreError>> {
        self.inner.events_after(after, limit)
    }

    fn ping(&self) -> BoxFuture<Result<(), StoreError>> {
        self.inner.ping()
    }

    fn audit(&self, tickers: Arc<Vec<String>>) -> BoxFuture<Result<Audit, StoreError>> {
        self.inner.audit(tickers)
    }

    fn trades_of(
        &self,
        player: PlayerId,
        before_seq: u64,
        limit: usize,
    ) -> BoxFuture<Result<Vec<TradeRecord>, StoreError>> {
        self.inner.trades_of(player, before_seq, limit)
    }

    fn candles(&self, asset: AssetId, since_ms: i64, limit: usize) -> BoxFuture<Result<Vec<Candle>, StoreError>> {
        self.inner.candles(asset, since_ms, limit)
    }

    fn seed_candles(&self, candles: Arc<Vec<(AssetId, Candle)>>) -> BoxFuture<Result<(), StoreError>> {
        self.inner.seed_candles(candles)
    }
}

// ---- the event log ---------------------------------------------------------

/// What the event log says, after checking its own invariants.
#[derive(Debug, Default)]
struct LogTotals {
    cash: Decimal,
    shares: BTreeMap<AssetId, i128>,
    open_orders: BTreeSet<OrderId>,
    trades: HashSet<TradeId>,
    placed: HashSet<OrderId>,
    resting_fills: u64,
    dropped: u64,
    cancelled_by_players: u64,
}

/// Contiguous sequence numbers; every order placed once and ended (filled
/// or cancelled) at most once, by its owner's events; trade ids unique;
/// totals for conservation.
fn check_log(seed: u64, log: &[Stamped]) -> LogTotals {
    let mut totals = LogTotals::default();
    let mut placed: HashMap<OrderId, RestingOrder> = HashMap::new();
    let mut ended: HashSet<OrderId> = HashSet::new();
    let mut opened: HashSet<PlayerId> = HashSet::new();
    for (index, stamped) in log.iter().enumerate() {
        check!(seed, stamped.seq == index as u64 + 1, "log seq {} at position {index}", stamped.seq);
        match &stamped.event {
            Event::AccountOpened { player, cash, .. } => {
                check!(seed, opened.insert(*player), "{player:?} opened twice (seq {})", stamped.seq);
                totals.cash += *cash;
            }
            Event::CashCredited { player, amount, .. } => {
                check!(seed, opened.contains(player) && *amount > Decimal::ZERO, "bad credit at seq {}", stamped.seq);
                totals.cash += *amount;
            }
            Event::Traded(trade) => {
                check!(seed, totals.trades.insert(trade.id), "trade {:?} logged twice", trade.id);
                check!(seed, opened.contains(&trade.player), "trade of a player without account: {trade:?}");
                if let Some(id) = trade.order {
                    let order = placed.get(&id);
                    check!(seed, order.is_some(), "fill of order {id} never placed: {trade:?}");
                    check!(seed, ended.insert(id), "order {id} filled after it ended: {trade:?}");
                    let order = order.unwrap();
                    check!(
                        seed,
                        order.player == trade.player
                            && order.asset == trade.asset
                            && order.side == trade.side
                            && order.qty == trade.qty,
                        "fill {trade:?} does not match order {order:?}"
                    );
                    totals.resting_fills += 1;
                }
                totals.cash += trade.cash_delta();
                let signed = match trade.side {
                    Side::Buy => i128::from(trade.qty),
                    Side::Sell => -i128::from(trade.qty),
                };
                *totals.shares.entry(trade.asset).or_default() += signed;
            }
            Event::OrderPlaced(order) => {
                check!(seed, placed.insert(order.id, *order).is_none(), "order {} placed twice", order.id);
                check!(seed, totals.placed.insert(order.id), "order {} placed twice", order.id);
            }
            Event::OrderCancelled { order, player, reason } => {
                let owner = placed.get(order).map(|o| o.player);
                check!(seed, owner == Some(*player), "cancel of {order} by {player:?}, owner {owner:?}");
                check!(seed, ended.insert(*order), "order {order} cancelled after it ended");
                match reason {
                    CancelReason::ByPlayer => totals.cancelled_by_players += 1,
                    CancelReason::Unfillable => totals.dropped += 1,
                    CancelReason::AccountReset => check!(seed, false, "no resets in this simulation"),
                }
            }
            Event::Ticked(_)
            | Event::TradingHalted { .. }
            | Event::Game { change: actors::domain::profile::GameChange::StopTriggered, .. } => {}
            other => check!(seed, false, "not an event of this simulation: {other:?}"),
        }
    }
    for (asset, shares) in &totals.shares {
        check!(seed, *shares >= 0, "the log leaves {shares} shares of {asset:?}");
    }
    totals.open_orders = placed.keys().filter(|id| !ended.contains(id)).copied().collect();
    totals
}

/// The live exchange equals the replay of its log, part by part.
fn compare_states(seed: u64, live: &ExchangeState, replayed: &ExchangeState, label: &str) {
    check!(
        seed,
        (live.next_seq, live.next_trade, live.next_order)
            == (replayed.next_seq, replayed.next_trade, replayed.next_order),
        "{label}: counters differ from the replay"
    );
    check!(seed, live.books.len() == replayed.books.len(), "{label}: book count differs");
    for (index, (a, b)) in live.books.iter().zip(&replayed.books).enumerate() {
        check!(seed, a == b, "{label}: book {index} differs from its replay:\n live {a:?}\n replay {b:?}");
    }
    check!(
        seed,
        live.accounts.len() == replayed.accounts.len(),
        "{label}: {} live accounts, {} replayed",
        live.accounts.len(),
        replayed.accounts.len()
    );
    for (a, b) in live.accounts.iter().zip(&replayed.accounts) {
        check!(seed, a == b, "{label}: account differs from its replay:\n live {a:?}\n replay {b:?}");
    }
}

// ---- the simulation --------------------------------------------------------

struct Sim {
    seed: u64,
    config: EngineConfig,
    store: MemoryStore,
    append_delay_ms: Arc<AtomicU64>,
    clock: ManualClock,
    clock_ms: i64,
    clock_driver: Option<ClockDriver>,
    /// What the last audit found, to compare runs of one seed.
    digest: String,
    recorder: Arc<Recorder>,
    engine: Engine,
    rng: Pcg64Mcg,
    players: Vec<RefPlayer>,
    index: HashMap<PlayerId, usize>,
    admin_halted: Vec<bool>,
    admin_halted_round: Vec<u64>,
    breaker: Vec<bool>,
    log_cursor: u64,
    trades: HashSet<TradeId>,
    placed: HashSet<OrderId>,
    counts: BTreeMap<String, u64>,
    commands: u64,
    round: u64,
    checkpoints: u64,
}

impl Sim {
    async fn start(seed: u64, players: usize) -> Self {
        let config = config(seed);
        let store = MemoryStore::new();
        let append_delay_ms = Arc::new(AtomicU64::new(0));
        let clock = ManualClock::new(CLOCK_START_MS);
        let recorder = Arc::new(Recorder::default());
        let slow = SlowStore { inner: store.clone(), append_delay_ms: Arc::clone(&append_delay_ms) };
        let engine = Self::start_engine(&config, &slow, &clock, &recorder).await;
        let players: Vec<RefPlayer> = (0..players).map(|i| RefPlayer::new(player_id(i), i % 3 == 0)).collect();
        let index = players.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
        Self {
            seed,
            config,
            store,
            append_delay_ms,
            clock,
            clock_ms: CLOCK_START_MS,
            clock_driver: None,
            digest: String::new(),
            recorder,
            engine,
            rng: Pcg64Mcg::seed_from_u64(seed),
            players,
            index,
            admin_halted: vec![false; ASSETS],
            admin_halted_round: vec![0; ASSETS],
            breaker: vec![false; ASSETS],
            log_cursor: 0,
            trades: HashSet::new(),
            placed: HashSet::new(),
            counts: BTreeMap::new(),
            commands: 0,
            round: 0,
            checkpoints: 0,
        }
    }

    async fn start_engine(
        config: &EngineConfig,
        store: &SlowStore,
        clock: &ManualClock,
        recorder: &Arc<Recorder>,
    ) -> Engine {
        let notifier: Arc<dyn Notifier> = Arc::clone(recorder) as Arc<dyn Notifier>;
        let deps = EngineDeps {
            store: Arc::new(store.clone()),
            clock: Arc::new(clock.clone()),
            notifier,
            autonomous_ticker: false,
        };
        Engine::start(config, deps).await.unwrap()
    }

    fn ctx(&self) -> Ctx {
        let halted = self.admin_halted.iter().zip(&self.breaker).map(|(admin, breaker)| *admin || *breaker).collect();
        Ctx { seed: self.seed, rules: self.config.market.clone(), assets: ASSETS, halted }
    }

    fn bump(&mut self, key: &str, by: u64) {
        *self.counts.entry(key.to_owned()).or_default() += by;
    }

    fn count(&self, key: &str) -> u64 {
        self.counts.get(key).copied().unwrap_or(0)
    }

    fn merge(&mut self, obs: Observed) {
        let seed = self.seed;
        self.commands += obs.commands;
        for (key, n) in obs.counts {
            *self.counts.entry(key).or_default() += n;
        }
        for id in obs.trades {
            check!(seed, self.trades.insert(id), "trade id {id:?} reported twice");
        }
        for id in obs.placed {
            check!(seed, self.placed.insert(id), "order id {id} reported twice");
        }
    }

    async fn view(&mut self) -> View {
        let quotes = self.engine.quotes().await.unwrap();
        check!(self.seed, quotes.len() == ASSETS, "{} quotes", quotes.len());
        let mut bid = vec![0.0; ASSETS];
        let mut ask = vec![0.0; ASSETS];
        for quote in &quotes {
            bid[quote.asset.index()] = quote.bid.to_f64().unwrap();
            ask[quote.asset.index()] = quote.ask.to_f64().unwrap();
        }
        let mut open: Vec<OrderId> = self.players.iter().flat_map(|p| p.orders.keys().copied()).collect();
        open.shuffle(&mut self.rng);
        open.truncate(32);
        let next_order = self.placed.iter().map(|id| id.0).max().unwrap_or(0) + 1;
        View { bid, ask, foreign_orders: open, next_order }
    }

    /// A random set of players for one round.
    fn participants(&mut self, min: usize, max: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..self.players.len()).collect();
        all.shuffle(&mut self.rng);
        all.truncate(self.rng.random_range(min..=max).min(self.players.len()));
        all
    }

    /// Gives each of the first participants assets of its own to trade,
    /// preferring assets it holds (so that it sells as well as buys).
    fn roles(&mut self, participants: &[usize]) -> Vec<(usize, Role)> {
        let traders = self.rng.random_range(ASSETS / 2..=ASSETS).min(participants.len());
        let mut taken = [false; ASSETS];
        let mut owned: Vec<Vec<AssetId>> = vec![Vec::new(); traders];
        for (slot, player) in owned.iter_mut().zip(participants) {
            let held: Vec<AssetId> = self.players[*player].held.keys().copied().filter(|a| !taken[a.index()]).collect();
            if !held.is_empty() && self.rng.random_bool(0.7) {
                let pick = held[self.rng.random_range(0..held.len())];
                taken[pick.index()] = true;
                slot.push(pick);
            }
        }
        let mut rest: Vec<AssetId> = (0..ASSETS).filter(|i| !taken[*i]).map(asset).collect();
        rest.shuffle(&mut self.rng);
        let mut rest = rest.into_iter();
        for slot in owned.iter_mut().filter(|slot| slot.is_empty()) {
            slot.extend(rest.next());
        }
        for spare in rest {
            if traders > 0 && self.rng.random_bool(0.5) {
                owned[self.rng.random_range(0..traders)].push(spare);
            }
        }
        let mut owned = owned.into_iter();
        participants.iter().map(|player| (*player, owned.next().map_or(Role::Bystander, Role::Trader))).collect()
    }

    /// One round of the main simulation: maybe operator halts, the
    /// participants' commands (batched or single), then maybe market minutes.
    async fn round(&mut self) {
        self.round += 1;
        let churn = CHURN_ROUNDS.contains(&(self.round % CHECKPOINT_EVERY_ROUNDS));
        if churn && self.clock_driver.is_none() {
            self.clock_driver = Some(ClockDriver::start(self.clock.clone()));
            self.append_delay_ms.store(CHURN_APPEND_DELAY_MS, Ordering::SeqCst);
        } else if !churn {
            self.calm_clock().await;
        }
        if self.rng.random_range(0..12) == 0 {
            self.admin().await;
        }
        let participants = self.participants(120, 300);
        let roles = self.roles(&participants);
        if self.rng.random_bool(0.5) {
            self.batch_round(roles).await;
        } else {
            let pace = if churn { Pace { think_ms_max: CHURN_THINK_MS_MAX, pipelined: true } } else { Pace::default() };
            self.single_round(roles, pace).await;
        }
        let steps = match self.rng.random_range(0..10) {
            0..=3 => 0,
            4..=8 => 1,
            _ => 2,
        };
        for _ in 0..steps {
            self.step().await;
        }
        if churn {
            self.bump("churn.rounds", 1);
            self.bump("churn.active_after", EngineMetrics::get(&self.engine.metrics().active_portfolios));
            self.bump("churn.participants", participants.len() as u64);
        }
    }

    /// Stops a racing clock and sets it to a time that depends on the seed only.
    async fn calm_clock(&mut self) {
        if let Some(driver) = self.clock_driver.take() {
            self.append_delay_ms.store(0, Ordering::SeqCst);
            driver.stop().await;
            self.clock_ms += CLOCK_JUMP_MS;
            self.clock.set(self.clock_ms);
        }
    }

    /// Commands of many players interleaved into batches, the batches sent
    /// at once (each player in one batch only).
    fn plan_batches(
        &mut self,
        roles: &[(usize, Role)],
        view: &View,
        groups: usize,
    ) -> Vec<Vec<(usize, Command, &'static str)>> {
        let rules = self.config.market.clone();
        let mut lists: Vec<(usize, VecDeque<(Command, &'static str)>)> = Vec::with_capacity(roles.len());
        let mut group_of: HashMap<usize, usize> = HashMap::with_capacity(roles.len());
        for (index, role) in roles {
            let n = commands_per_round(&mut self.rng, role);
            let mut rng = Pcg64Mcg::seed_from_u64(mix(self.seed, self.round, *index as u64));
            let p = &self.players[*index];
            let list = (0..n).map(|_| gen_command(p, role, view, &rules, &mut rng)).collect();
            lists.push((*index, list));
            group_of.insert(*index, self.rng.random_range(0..groups));
        }
        let mut batches = vec![Vec::new(); groups];
        while !lists.is_empty() {
            let pick = self.rng.random_range(0..lists.len());
            let index = lists[pick].0;
            let (command, label) = lists[pick].1.pop_front().unwrap();
            batches[group_of[&index]].push((index, command, label));
            if lists[pick].1.is_empty() {
                lists.swap_remove(pick);
            }
        }
        batches.retain(|batch| !batch.is_empty());
        batches
    }

    /// Books a batch's results in command order.
    fn apply_batch(&mut self, ctx: &Ctx, batch: &[(usize, Command, &'static str)], results: &[CommandResult]) {
        check!(self.seed, batch.len() == results.len(), "{} results for {} commands", results.len(), batch.len());
        let mut obs = Observed::default();
        for ((index, command, label), result) in batch.iter().zip(results) {
            apply_result(ctx, &mut self.players[*index], command, label, result, &mut obs);
        }
        obs.counts.insert("mode.batched".into(), obs.commands);
        self.merge(obs);
    }

    async fn batch_round(&mut self, roles: Vec<(usize, Role)>) {
        let ctx = self.ctx();
        let view = self.view().await;
        let groups = self.rng.random_range(1..=4);
        let batches = self.plan_batches(&roles, &view, groups);
        let requests = batches.iter().map(|batch| {
            let commands: Vec<Command> = batch.iter().map(|(_, command, _)| command.clone()).collect();
            self.engine.execute(commands)
        });
        let results = join_all(requests).await;
        for (batch, results) in batches.iter().zip(results) {
            self.apply_batch(&ctx, batch, &results.unwrap());
        }
    }

    async fn single_round(&mut self, roles: Vec<(usize, Role)>, pace: Pace) {
        let ctx = Arc::new(self.ctx());
        let view = Arc::new(self.view().await);
        let mut tasks = Vec::with_capacity(roles.len());
        for (index, role) in roles {
            let n = commands_per_round(&mut self.rng, &role);
            let p = std::mem::take(&mut self.players[index]);
            let rng_seed = mix(self.seed, self.round, index as u64);
            let (engine, ctx, view) = (self.engine.clone(), Arc::clone(&ctx), Arc::clone(&view));
            tasks.push(run_player(engine, ctx, view, index, p, role, n, rng_seed, pace));
        }
        for (index, p, obs) in join_all(tasks).await {
            self.players[index] = p;
            self.merge(obs);
        }
    }

    /// Operators halt and resume assets (and name one that does not exist).
    async fn admin(&mut self) {
        let seed = self.seed;
        let mut commands = Vec::new();
        for index in 0..ASSETS {
            if self.admin_halted[index] && self.round - self.admin_halted_round[index] >= 4 {
                commands.push(Command::Halt { asset: asset(index), halted: false });
            }
        }
        if self.rng.random_bool(0.7) {
            let index = self.rng.random_range(0..ASSETS);
            commands.push(Command::Halt { asset: asset(index), halted: !self.admin_halted[index] });
        }
        if self.rng.random_bool(0.3) {
            let unknown = AssetId(self.rng.random_range(u16::try_from(ASSETS).unwrap()..=u16::MAX));
            commands.push(Command::Halt { asset: unknown, halted: true });
        }
        if commands.is_empty() {
            return;
        }
        let results = self.engine.execute(commands.clone()).await.unwrap();
        check!(seed, results.len() == commands.len(), "halt results missing");
        for (command, result) in commands.iter().zip(&results) {
            let Command::Halt { asset, halted } = command else { unreachable!() };
            if asset.index() < ASSETS {
                check!(seed, *result == Ok(Outcome::Halted), "{command:?} -> {result:?}");
                self.admin_halted[asset.index()] = *halted;
                self.admin_halted_round[asset.index()] = self.round;
            } else {
                check!(seed, matches!(result, Err(Rejection::BadTicker { .. })), "{command:?} -> {result:?}");
            }
            self.bump(outcome_name(result), 1);
            self.bump("cmd.halt", 1);
            self.commands += 1;
        }
    }

    /// One market minute; books the fills and drops of resting orders it
    /// caused (as notified) and learns which assets are halted now.
    async fn step(&mut self) {
        let changed = self.engine.step().await.unwrap();
        let changed = changed.unwrap_or_else(|| panic!("SIM_SEED={}: the market did not step", self.seed));
        self.after_step(&changed).await;
    }

    async fn after_step(&mut self, changed: &PricesChanged) {
        self.bump("steps", 1);
        let ctx = self.ctx();
        let mut obs = Observed::default();
        for (player, notice) in self.recorder.take() {
            let index = self.index.get(&player).copied();
            check!(self.seed, index.is_some(), "notice for unknown player {player:?}");
            apply_notice(&ctx, &mut self.players[index.unwrap()], player, &notice, &mut obs);
        }
        self.merge(obs);
        self.sync_ticks().await;
        for quote in changed.quotes.iter() {
            let index = quote.asset.index();
            let halted = self.admin_halted[index] || self.breaker[index];
            check!(self.seed, quote.halted == halted, "quote {quote:?} halted, reference says {halted}");
        }
    }

    /// Circuit breakers from the market minutes in the log.
    async fn sync_ticks(&mut self) {
        let events = self.store.events_after(self.log_cursor, usize::MAX).await.unwrap();
        for stamped in &events {
            if let Event::Ticked(tick) = &stamped.event {
                if tick.halted && !self.breaker[tick.asset.index()] {
                    self.bump("breaker_halts", 1);
                }
                self.breaker[tick.asset.index()] = tick.halted;
            }
        }
        if let Some(last) = events.last() {
            self.log_cursor = last.seq;
        }
    }

    /// Cancels the open orders of most players (so that they can be
    /// passivated), checks everything, then passivates idle players.
    async fn checkpoint(&mut self, label: &str) {
        self.calm_clock().await;
        self.checkpoints += 1;
        self.tidy().await;
        self.audit(label).await;
        self.passivate(label).await;
    }

    async fn tidy(&mut self) {
        let parity = self.checkpoints % 2;
        let batch: Vec<(usize, Command, &'static str)> = self
            .players
            .iter()
            .enumerate()
            .filter(|(index, p)| !p.patient || *index as u64 % 2 == parity)
            .flat_map(|(index, p)| {
                p.orders
                    .keys()
                    .map(move |order| (index, Command::Cancel { player: p.id, order: *order }, "tidy_cancel"))
            })
            .collect();
        if batch.is_empty() {
            return;
        }
        let ctx = self.ctx();
        let results = self.engine.execute(batch.iter().map(|(_, command, _)| command.clone()).collect()).await.unwrap();
        check!(self.seed, results.iter().all(|r| matches!(r, Ok(Outcome::Cancelled(_)))), "a tidy cancel failed");
        self.apply_batch(&ctx, &batch, &results);
    }

    /// Everything at once against the reference: every ledger and portfolio
    /// projection, the log's invariants and conservation, the replay of the
    /// log, the store's ledgers.
    async fn audit(&mut self, label: &str) {
        let seed = self.seed;
        let log = self.store.log();
        let totals = check_log(seed, &log);
        check!(seed, totals.trades == self.trades, "{label}: logged trades differ from those reported");
        check!(seed, totals.placed == self.placed, "{label}: logged orders differ from those reported");
        check!(
            seed,
            totals.resting_fills == self.count("resting.filled") && totals.dropped == self.count("resting.dropped"),
            "{label}: {} resting fills and {} drops logged, {} and {} notified",
            totals.resting_fills,
            totals.dropped,
            self.count("resting.filled"),
            self.count("resting.dropped")
        );
        check!(
            seed,
            totals.cancelled_by_players == self.count("ok.cancelled"),
            "{label}: {} cancels logged, {} confirmed",
            totals.cancelled_by_players,
            self.count("ok.cancelled")
        );
        let reference_cash: Decimal = self.players.iter().map(|p| p.cash).sum();
        check!(
            seed,
            totals.cash == reference_cash,
            "{label}: the log creates {} cash, players hold {reference_cash}",
            totals.cash
        );
        let mut reference_shares: BTreeMap<AssetId, i128> = BTreeMap::new();
        for p in &self.players {
            for (asset, qty) in &p.held {
                *reference_shares.entry(*asset).or_default() += i128::from(*qty);
            }
        }
        let logged_shares: BTreeMap<AssetId, i128> =
            totals.shares.iter().filter(|(_, qty)| **qty != 0).map(|(a, q)| (*a, *q)).collect();
        check!(seed, logged_shares == reference_shares, "{label}: shares in the log differ from the reference");
        let reference_open: BTreeSet<OrderId> = self.players.iter().flat_map(|p| p.orders.keys().copied()).collect();
        check!(seed, totals.open_orders == reference_open, "{label}: open orders in the log differ");

        let mut ledger_cash = Decimal::ZERO;
        for p in &self.players {
            let ledger = self.engine.ledger(p.id).await;
            check!(seed, ledger.is_ok(), "{label}: ledger of {:?}: {ledger:?}", p.id);
            ledger_cash += compare_ledger(seed, p, ledger.unwrap().as_ref(), label);
            let view = self.engine.portfolio(p.id).await;
            check!(seed, view.is_ok(), "{label}: portfolio of {:?}: {view:?}", p.id);
            let projection = view.unwrap().map(|v| v.ledger);
            if p.opened {
                compare_ledger(seed, p, projection.as_ref(), &format!("{label} (portfolio projection)"));
            } else {
                let empty = projection.is_none_or(|ledger| ledger == PlayerLedger::default());
                check!(seed, empty, "{label}: a projection for {:?} who never opened", p.id);
            }
        }
        check!(seed, ledger_cash == reference_cash, "{label}: ledgers hold {ledger_cash}, reference {reference_cash}");

        let universe = Arc::new(self.config.universe().unwrap());
        let mut replay = Exchange::new(universe, self.config.market.clone());
        for stamped in &log {
            replay.apply(stamped);
        }
        let replayed = replay.state();
        // Every player was just loaded by the ledger checks above.
        let live = self.engine.state().await.unwrap();
        compare_states(seed, &live, &replayed, label);
        self.digest = format!(
            "events={} trades={} orders={} open={} cash={}",
            log.len(),
            totals.trades.len(),
            totals.placed.len(),
            totals.open_orders.len(),
            totals.cash
        );
        let opened = self.players.iter().filter(|p| p.opened).count();
        check!(seed, replayed.accounts.len() == opened, "{label}: {} accounts replayed", replayed.accounts.len());
        for (player, account) in &replayed.accounts {
            let stored = self.store.load_account(*player).await.unwrap();
            check!(seed, stored.as_ref() == Some(account), "{label}: stored ledger of {player:?} differs from replay");
        }
        self.bump("audits", 1);
    }

    /// Moves the clock past the idle time until every portfolio actor
    /// without open orders is passivated, then checks the market let go of
    /// exactly those ledgers.
    async fn passivate(&mut self, label: &str) {
        let seed = self.seed;
        let with_orders: BTreeSet<PlayerId> =
            self.players.iter().filter(|p| !p.orders.is_empty()).map(|p| p.id).collect();
        let started = Instant::now();
        loop {
            self.clock.advance(1_000);
            actix::clock::sleep(Duration::from_millis(60)).await;
            let active = EngineMetrics::get(&self.engine.metrics().active_portfolios);
            if active == with_orders.len() as u64 {
                break;
            }
            check!(
                seed,
                started.elapsed() < PASSIVATION_WAIT_MAX,
                "{label}: {active} portfolio actors still active after {:?}; {} players have open orders",
                started.elapsed(),
                with_orders.len()
            );
        }
        // Back to a clock that depends on the seed only.
        self.clock_ms += CLOCK_JUMP_MS;
        self.clock.set(self.clock_ms);
        let state = self.engine.state().await.unwrap();
        let loaded: BTreeSet<PlayerId> = state.accounts.iter().map(|(player, _)| *player).collect();
        check!(seed, loaded == with_orders, "{label}: after passivation the market holds {} ledgers", loaded.len());
        let mut passivated = 0;
        for p in &mut self.players {
            if p.opened && p.orders.is_empty() {
                p.cold = true;
                passivated += 1;
            }
        }
        self.bump("passivated", passivated);
    }

    /// Shuts the engine down and starts a new one from the store.
    async fn restart(&mut self) {
        let seed = self.seed;
        self.engine.shutdown().await.unwrap();
        let refused = self.engine.execute_one(Command::Open { player: player_id(0) }).await;
        check!(seed, refused == Err(Rejection::Unavailable), "a stopped engine answered {refused:?}");
        self.recorder = Arc::new(Recorder::default());
        let slow = SlowStore { inner: self.store.clone(), append_delay_ms: Arc::clone(&self.append_delay_ms) };
        self.engine = Self::start_engine(&self.config, &slow, &self.clock, &self.recorder).await;
        for p in &mut self.players {
            p.cold = p.opened && p.orders.is_empty();
        }
    }

    fn summary(&self, started: Instant) -> String {
        let mut text = format!(
            "seed={} players={} rounds={} commands={} (batched {}, single {}) steps={} resting fills={} drops={} \
             breaker halts={} passivated={} reloads={} audits={} elapsed={:?}\n  last audit: {}\n",
            self.seed,
            self.players.len(),
            self.round,
            self.commands,
            self.count("mode.batched"),
            self.count("mode.single"),
            self.count("steps"),
            self.count("resting.filled"),
            self.count("resting.dropped"),
            self.count("breaker_halts"),
            self.count("passivated"),
            self.count("reloads"),
            self.count("audits"),
            started.elapsed(),
            self.digest,
        );
        let churn_rounds = self.count("churn.rounds").max(1);
        text += &format!(
            "  churn: {} rounds with a racing clock and a slow store, {} pipelined pairs, {} players per round, \
             {} portfolio actors active after each\n",
            self.count("churn.rounds"),
            self.count("pipelined"),
            self.count("churn.participants") / churn_rounds,
            self.count("churn.active_after") / churn_rounds,
        );
        for prefix in ["cmd.", "ok.", "rej."] {
            let line: Vec<String> = self
                .counts
                .iter()
                .filter(|(key, _)| key.starts_with(prefix))
                .map(|(key, n)| format!("{}={n}", &key[prefix.len()..]))
                .collect();
            text += &format!("  {prefix} {}\n", line.join(" "));
        }
        text
    }
}

// ---- the tests -------------------------------------------------------------

/// 100,000+ random commands from 1,000 players through the actor system,
/// checked result by result and at checkpoints against the reference.
#[actix::test]
async fn engine_matches_reference_model() {
    let seed = sim_seed();
    eprintln!("engine_simulation: SIM_SEED={seed}");
    let started = Instant::now();
    let mut sim = Sim::start(seed, PLAYERS).await;
    while sim.commands < COMMANDS_MIN {
        sim.round().await;
        if sim.round % CHECKPOINT_EVERY_ROUNDS == 0 {
            let label = format!("checkpoint after round {}", sim.round);
            sim.checkpoint(&label).await;
        }
    }
    sim.checkpoint("final checkpoint").await;
    // Every player loads from the store again and must still match.
    sim.audit("after passivating everyone").await;

    // A restart resumes from the store's snapshot and log.
    sim.restart().await;
    sim.audit("after restart").await;
    for _ in 0..ROUNDS_AFTER_RESTART {
        sim.round().await;
    }
    sim.checkpoint("after restart and more rounds").await;

    let seed = sim.seed;
    check!(seed, sim.count("rej.unavailable") == 0 && sim.count("rej.busy") == 0, "refusals without an outage");
    for key in [
        "ok.filled",
        "ok.resting",
        "ok.cancelled",
        "ok.credited",
        "ok.halted",
        "rej.insufficient_cash",
        "rej.insufficient_shares",
        "rej.no_account",
        "rej.unknown_order",
        "rej.bad_ticker",
        "rej.order_too_large",
        "rej.halted",
        "resting.filled",
        "reloads",
    ] {
        check!(seed, sim.count(key) > 0, "the workload never produced {key}");
    }
    eprintln!("engine_simulation: {}", sim.summary(started));
}

/// The store goes down mid-run: new work is refused, work already applied
/// waits for the store, nothing is half-applied, and after recovery every
/// confirmed change is in the log and the reference still matches.
#[actix::test]
async fn store_outage_loses_nothing_confirmed() {
    let seed = sim_seed();
    eprintln!("engine_simulation (outage): SIM_SEED={seed}");
    let started = Instant::now();
    let mut sim = Sim::start(seed, 160).await;
    for _ in 0..30 {
        sim.round().await;
    }
    sim.checkpoint("before the outage").await;

    // Warm some players (a credit loads them); the rest stay passivated.
    let mut opened: Vec<usize> = (0..sim.players.len()).filter(|i| sim.players[*i].opened).collect();
    opened.shuffle(&mut sim.rng);
    let cold: Vec<usize> = opened.iter().copied().filter(|i| sim.players[*i].cold).take(30).collect();
    let warm: Vec<usize> = opened.iter().copied().filter(|i| !cold.contains(i)).take(60).collect();
    check!(seed, cold.len() >= 12 && warm.len() >= 40, "{} cold and {} warm players", cold.len(), warm.len());
    let credits: Vec<(usize, Command, &'static str)> = warm
        .iter()
        .map(|i| {
            let command =
                Command::Credit { player: sim.players[*i].id, amount: Decimal::ONE, reason: CreditReason::AdminGrant };
            (*i, command, "warm_credit")
        })
        .collect();
    let ctx = sim.ctx();
    let results = sim.engine.execute(credits.iter().map(|(_, c, _)| c.clone()).collect()).await.unwrap();
    sim.apply_batch(&ctx, &credits, &results);

    let view = sim.view().await;
    let ctx = sim.ctx();
    let logged = sim.store.len();
    sim.store.set_available(false);

    // Batch A: warm players (applied, then waiting for the store) and cold
    // ones (their load fails: refused). Singles race the store's failure.
    let a_players: Vec<usize> = warm[..20].iter().chain(&cold[..10]).copied().collect();
    let single_players: Vec<usize> = warm[20..40].to_vec();
    let mut everyone: Vec<usize> = a_players.clone();
    everyone.extend(&single_players);
    let roles = sim.roles(&everyone);
    let (a_roles, single_roles): (Vec<_>, Vec<_>) = roles.into_iter().partition(|(i, _)| a_players.contains(i));
    let mut batch_a = sim.plan_batches(&a_roles, &view, 1).pop().unwrap();
    let first = warm[0];
    let credit =
        Command::Credit { player: sim.players[first].id, amount: Decimal::ONE, reason: CreditReason::AdminGrant };
    batch_a.insert(0, (first, credit, "outage_credit"));
    let pending_a = actix::spawn({
        let engine = sim.engine.clone();
        let commands: Vec<Command> = batch_a.iter().map(|(_, c, _)| c.clone()).collect();
        async move { engine.execute(commands).await }
    });
    // Batch A is applied (its events wait for the store) before the singles go.
    let waited = Instant::now();
    while EngineMetrics::get(&sim.engine.metrics().pending_events) == 0 {
        check!(seed, waited.elapsed() < Duration::from_secs(10), "batch A was never applied");
        actix::clock::sleep(Duration::from_millis(1)).await;
    }
    let ctx_arc = Arc::new(ctx.clone());
    let view_arc = Arc::new(view.clone());
    let singles: Vec<_> = single_roles
        .into_iter()
        .map(|(index, role)| {
            let p = std::mem::take(&mut sim.players[index]);
            let rng_seed = mix(seed, 1_000_000, index as u64);
            actix::spawn(run_player(
                sim.engine.clone(),
                Arc::clone(&ctx_arc),
                Arc::clone(&view_arc),
                index,
                p,
                role,
                1,
                rng_seed,
                Pace::default(),
            ))
        })
        .collect();

    let waited = Instant::now();
    while sim.engine.store_healthy() {
        check!(seed, waited.elapsed() < Duration::from_secs(10), "the engine never noticed the outage");
        actix::clock::sleep(Duration::from_millis(2)).await;
    }
    // A market minute during the outage: applied, not yet durable.
    let pending_step = actix::spawn({
        let engine = sim.engine.clone();
        async move { engine.step().await }
    });

    // New work is refused and leaves no trace.
    let b_players: Vec<usize> = opened.iter().copied().filter(|i| !everyone.contains(i)).take(40).collect();
    let b_roles = sim.roles(&b_players);
    let batch_b = sim.plan_batches(&b_roles, &view, 1).pop().unwrap();
    let results_b = sim.engine.execute(batch_b.iter().map(|(_, c, _)| c.clone()).collect()).await.unwrap();
    check!(seed, results_b.iter().all(|r| *r == Err(Rejection::Unavailable)), "work accepted during the outage");
    sim.apply_batch(&ctx, &batch_b, &results_b);
    for index in &b_players[..10] {
        let refused = sim.engine.execute_one(Command::Open { player: sim.players[*index].id }).await;
        check!(seed, refused == Err(Rejection::Unavailable), "a single command during the outage: {refused:?}");
    }
    let unloaded = sim.players[cold[11]].id;
    let ledger = sim.engine.ledger(unloaded).await;
    check!(seed, ledger == Err(Rejection::Unavailable), "loading {unloaded:?} during the outage: {ledger:?}");

    actix::clock::sleep(Duration::from_millis(150)).await;
    check!(seed, !pending_a.is_finished(), "batch A was answered before it was durable");
    check!(seed, !pending_step.is_finished(), "a market minute finished before it was durable");
    check!(seed, sim.store.len() == logged, "the store grew while it was down");
    check!(seed, sim.recorder.is_empty(), "a fill was notified before it was durable");

    // Recovery: everything waiting completes.
    sim.store.set_available(true);
    let results_a = pending_a.await.unwrap().unwrap();
    for ((index, command, _), result) in batch_a.iter().zip(&results_a) {
        if cold.contains(index) {
            check!(seed, *result == Err(Rejection::Unavailable), "cold {command:?} during the outage: {result:?}");
        } else {
            check!(seed, *result != Err(Rejection::Unavailable), "warm {command:?} refused: {result:?}");
        }
    }
    sim.apply_batch(&ctx, &batch_a, &results_a);
    for single in singles {
        let (index, p, obs) = single.await.unwrap();
        sim.players[index] = p;
        sim.merge(obs);
    }
    let changed = pending_step.await.unwrap().unwrap().unwrap();
    sim.after_step(&changed).await;
    check!(seed, sim.engine.store_healthy(), "the store is back but the engine says otherwise");
    check!(seed, sim.store.len() > logged, "nothing was written after recovery");
    sim.audit("right after recovery").await;

    // The players whose load failed load now, and leave orders resting.
    let view = sim.view().await;
    let ctx = sim.ctx();
    let rests: Vec<(usize, Command, &'static str)> = cold[..10]
        .iter()
        .map(|index| {
            let p = &sim.players[*index];
            let (index, asset) = (*index, asset(index % ASSETS));
            let limit = price(view.bid[asset.index()] * 0.5);
            (index, order(p, asset, Side::Buy, 1, OrderKind::Limit(limit)), "rest_after_outage")
        })
        .collect();
    let results = sim.engine.execute(rests.iter().map(|(_, c, _)| c.clone()).collect()).await.unwrap();
    sim.apply_batch(&ctx, &rests, &results);
    check!(
        seed,
        results.iter().any(|r| matches!(r, Ok(Outcome::Placed(Placed::Resting(_))))),
        "no command succeeded after recovery: {results:?}"
    );
    for _ in 0..10 {
        sim.round().await;
    }
    sim.checkpoint("after the outage").await;
    sim.audit("after the outage, everyone reloaded").await;
    check!(seed, sim.count("rej.unavailable") > 0, "the outage refused nothing");
    eprintln!("engine_simulation (outage): {}", sim.summary(started));
}
