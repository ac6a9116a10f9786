#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! Property tests of the pure domain (`actors::domain`): the game's
//! invariants checked after every step of random command sequences run
//! against random markets (random ticks move prices, halt assets and trigger
//! resting orders):
//! conservation of cash and shares, nothing negative, no order filled twice,
//! round trips never make money, exact replay of the event log (also through
//! JSON and through a snapshot), and bad input rejected without a trace.
//!
//! Runs are deterministic: every test has its own fixed seed, overridden by
//! `PROPTEST_RNG_SEED` (and the case count by `PROPTEST_CASES`) to explore.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use actors::domain::asset::{AssetSpec, CategorySpec, ModelParams, Universe};
use actors::domain::command::{Command, Outcome};
use actors::domain::event::{CancelReason, CreditReason, Event, Stamped, Tick, Trade};
use actors::domain::exchange::{Exchange, ExchangeState, Placed};
use actors::domain::ids::{AssetId, LimitPrice, OrderId, PlayerId, QTY_MAX, Quantity, TICKER_LEN_MAX, Ticker, TradeId};
use actors::domain::money::{MONEY_DP, MONEY_MAX};
use actors::domain::order::{OrderKind, OrderRequest, RestingOrder, Side, Trigger};
use actors::domain::rejection::Rejection;
use actors::domain::rules::MarketRules;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngSeed, TestRunner};
use rust_decimal::Decimal;

// ---- configuration ---------------------------------------------------------

const CASES: u32 = 1024;
const COMMANDS_MAX: usize = 200;
/// Sane range of the model mid that random ticks move within.
const MID_MIN: f64 = 1.0;
const MID_MAX: f64 = 20_000.0;

/// A fixed seed per test (deterministic CI), unless the environment asks for
/// another seed or case count.
fn config(seed: u64) -> ProptestConfig {
    let base = ProptestConfig::default();
    let rng_seed = if std::env::var_os("PROPTEST_RNG_SEED").is_some() { base.rng_seed } else { RngSeed::Fixed(seed) };
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { base.cases } else { CASES };
    ProptestConfig { cases, rng_seed, failure_persistence: None, ..base }
}

// ---- the market under test -------------------------------------------------

/// A universe, its rules and the players who may act.
#[derive(Debug, Clone)]
struct Market {
    universe: Arc<Universe>,
    rules: MarketRules,
    players: Vec<PlayerId>,
}

#[derive(Debug, Clone)]
struct AssetParams {
    category: usize,
    price_cents: i64,
    vol_daily: f64,
    liquidity_shares: f64,
    spread_bps: f64,
}

const CATEGORIES: [&str; 3] = ["Tech", "Energy", "Health"];

fn asset_params() -> impl Strategy<Value = AssetParams> {
    (
        0..CATEGORIES.len(),
        prop_oneof![201_i64..2_000, 2_000_i64..50_000, 50_000_i64..=500_000],
        0.005..0.08_f64,
        prop_oneof![200.0..5_000.0_f64, 5_000.0..300_000.0_f64],
        prop_oneof![1 => Just(0.0_f64), 4 => 0.0..60.0_f64],
    )
        .prop_map(|(category, price_cents, vol_daily, liquidity_shares, spread_bps)| AssetParams {
            category,
            price_cents,
            vol_daily,
            liquidity_shares,
            spread_bps,
        })
}

fn universe(params: &[AssetParams]) -> Arc<Universe> {
    let categories = CATEGORIES
        .iter()
        .map(|name| CategorySpec { name: (*name).to_owned(), vol_daily: 0.015, jump_rate_daily: 0.2, jump_sigma: 0.02 })
        .collect();
    let assets = params
        .iter()
        .enumerate()
        .map(|(index, p)| AssetSpec {
            ticker: Ticker::parse(&format!("T{index}")).unwrap(),
            name: format!("Asset {index}"),
            category: CATEGORIES[p.category].to_owned(),
            initial_price: Decimal::new(p.price_cents, MONEY_DP),
            model: ModelParams {
                vol_daily: p.vol_daily,
                liquidity_shares: p.liquidity_shares,
                spread_bps: p.spread_bps,
                ..ModelParams::default()
            },
        })
        .collect();
    Arc::new(Universe::new(categories, assets).unwrap())
}

/// Rules around the defaults, with limits small enough to be hit.
fn rules() -> impl Strategy<Value = MarketRules> {
    (
        prop_oneof![Just(10_000_i64), 500_i64..200_000],
        prop_oneof![Just(Decimal::new(1, 3)), (0_i64..=50).prop_map(|r| Decimal::new(r, 4))],
        1_i64..=100,
        prop_oneof![Just(100_000_u64), 500_u64..100_000],
        prop_oneof![Just(1_000_000_u64), 2_000_u64..1_000_000, 50_u64..2_000],
        prop_oneof![2_u32..=4, 5_u32..=20],
    )
        .prop_map(|(starting_cash, fee_rate, fee_min_cents, order_qty_max, position_qty_max, open_orders_max)| {
            MarketRules {
                starting_cash: Decimal::from(starting_cash),
                fee_rate,
                fee_min: Decimal::new(fee_min_cents, MONEY_DP),
                order_qty_max,
                position_qty_max,
                open_orders_max,
                ..MarketRules::default()
            }
        })
}

fn market() -> impl Strategy<Value = Market> {
    (vec(asset_params(), 2..=6), rules(), 5_usize..=50).prop_map(|(params, rules, players)| Market {
        universe: universe(&params),
        rules,
        players: (0..players).map(player_id).collect(),
    })
}

/// Telegram ids (positive) and local play-page ids (negative) alike.
fn player_id(index: usize) -> PlayerId {
    let index = i64::try_from(index).unwrap();
    if index % 3 == 0 { PlayerId(-1 - index) } else { PlayerId(1_000_000 + index * 7_919) }
}

// ---- random operations -----------------------------------------------------

/// One step of a workload. Indices are taken modulo the market's players and
/// assets; prices are relative to the current quote so that resting orders
/// sit near the market and random ticks trigger them.
#[derive(Debug, Clone)]
enum Op {
    Open { player: Index },
    Market { player: Index, asset: Index, side: Side, qty: u64 },
    Limit { player: Index, asset: Index, side: Side, qty: u64, offset_bps: i32 },
    Stop { player: Index, asset: Index, qty: u64, below_bps: i32 },
    Cancel { player: Index, pick: Index, mode: CancelMode },
    Credit { player: Index, mantissa: i64, scale: u32 },
    Halt { asset: Index, halted: bool },
    Tick { asset: Index, minutes: u64, move_bps: i32, sigma_daily: f64, halted: bool },
}

#[derive(Debug, Clone, Copy)]
enum CancelMode {
    /// One of the player's own resting orders.
    Own,
    /// Anyone's resting order (usually not the player's).
    AnyResting,
    /// Any id ever issued (or one past it): mostly filled or cancelled orders.
    AnyIssued,
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![3 => Just(Side::Buy), 2 => Just(Side::Sell)]
}

/// Mostly small orders, some large, a few beyond `order_qty_max`.
fn qty() -> impl Strategy<Value = u64> {
    prop_oneof![6 => 1_u64..100, 3 => 100_u64..5_000, 1 => 5_000_u64..=150_000]
}

fn tick_op() -> impl Strategy<Value = Op> {
    (
        any::<Index>(),
        prop_oneof![1 => Just(0_u64), 20 => 1_u64..=240],
        prop_oneof![3 => -300_i32..=300, 1 => -1_500_i32..=1_500],
        prop_oneof![0.001..0.05_f64, 0.05..0.3_f64],
        prop::bool::weighted(0.08),
    )
        .prop_map(|(asset, minutes, move_bps, sigma_daily, halted)| Op::Tick {
            asset,
            minutes,
            move_bps,
            sigma_daily,
            halted,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let cancel_mode =
        prop_oneof![3 => Just(CancelMode::Own), 1 => Just(CancelMode::AnyResting), 1 => Just(CancelMode::AnyIssued)];
    let credit = prop_oneof![
        4 => (1_i64..100_000_000, Just(MONEY_DP)),
        1 => (-10_000_i64..=0, 0_u32..=4),
        1 => (1_i64..1_000, 3_u32..=6),
    ];
    prop_oneof![
        3 => any::<Index>().prop_map(|player| Op::Open { player }),
        8 => (any::<Index>(), any::<Index>(), side(), qty())
            .prop_map(|(player, asset, side, qty)| Op::Market { player, asset, side, qty }),
        6 => (any::<Index>(), any::<Index>(), side(), qty(), -800_i32..=800)
            .prop_map(|(player, asset, side, qty, offset_bps)| Op::Limit { player, asset, side, qty, offset_bps }),
        3 => (any::<Index>(), any::<Index>(), qty(), -200_i32..=1_500)
            .prop_map(|(player, asset, qty, below_bps)| Op::Stop { player, asset, qty, below_bps }),
        3 => (any::<Index>(), any::<Index>(), cancel_mode)
            .prop_map(|(player, pick, mode)| Op::Cancel { player, pick, mode }),
        2 => (any::<Index>(), credit).prop_map(|(player, (mantissa, scale))| Op::Credit { player, mantissa, scale }),
        1 => (any::<Index>(), prop::bool::weighted(0.2)).prop_map(|(asset, halted)| Op::Halt { asset, halted }),
        8 => tick_op(),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    vec(op(), 1..=COMMANDS_MAX)
}

// ---- driving the exchange --------------------------------------------------

/// An exchange, its complete event log, and the clock of the workload.
struct Sim {
    market: Market,
    ex: Exchange,
    log: Vec<Stamped>,
    at_ms: i64,
}

type Step = (Command, Result<Outcome, Rejection>);

impl Sim {
    fn new(market: &Market) -> Self {
        let ex = Exchange::new(Arc::clone(&market.universe), market.rules.clone());
        Self { market: market.clone(), ex, log: Vec::new(), at_ms: 1_700_000_000_000 }
    }

    /// Half the time one of the first three players, so that some players
    /// are busy enough to hit their limits.
    fn player(&self, index: Index) -> PlayerId {
        let players = &self.market.players;
        let slot = index.index(2 * players.len());
        players.get(slot).copied().unwrap_or(players[slot % 3])
    }

    fn asset(&self, index: Index) -> AssetId {
        AssetId(u16::try_from(index.index(self.market.universe.len())).unwrap())
    }

    /// Who trades what: sells mostly go to a player holding free shares, for
    /// shares they hold (and mostly no more than are free), so that sells,
    /// stops and their reservations get exercised rather than refused;
    /// a quarter of them sell every free share.
    fn target(&self, player: Index, asset: Index, side: Side, qty: u64) -> (PlayerId, AssetId, u64) {
        let chosen = self.player(player);
        if side == Side::Buy || asset.index(4) == 0 {
            return (chosen, self.asset(asset), qty);
        }
        let mut holders: Vec<(PlayerId, AssetId, u64)> = self
            .ex
            .players()
            .flat_map(|(p, a)| a.positions.iter().map(|pos| (*p, pos.asset, pos.free_qty())))
            .filter(|(_, _, free)| *free > 0)
            .collect();
        holders.sort_unstable();
        if holders.iter().any(|(p, _, _)| *p == chosen) {
            holders.retain(|(p, _, _)| *p == chosen);
        }
        let Some((player, asset, free)) = (!holders.is_empty()).then(|| *asset.get(&holders)) else {
            return (chosen, self.asset(asset), qty);
        };
        let qty = match qty % 4 {
            0 => qty,
            1 => free,
            _ => qty.min(free),
        };
        (player, asset, qty)
    }

    fn resting(&self) -> Vec<RestingOrder> {
        resting_orders(&self.ex)
    }

    /// Runs one operation; `None` for ticks and for operations that cannot be
    /// expressed (a price the edge would refuse, no quote).
    fn step(&mut self, op: &Op) -> Option<Step> {
        self.at_ms += 997;
        let command = match *op {
            Op::Tick { asset, minutes, move_bps, sigma_daily, halted } => {
                let asset = self.asset(asset);
                let book = self.ex.book(asset)?;
                let model_mid = (book.model_mid * (f64::from(move_bps) / 10_000.0).exp()).clamp(MID_MIN, MID_MAX);
                let tick = Tick { asset, minute: book.minute + minutes, model_mid, sigma_daily, halted };
                self.ex.tick(tick, self.at_ms, &mut self.log);
                return None;
            }
            Op::Open { player } => Command::Open { player: self.player(player) },
            Op::Market { player, asset, side, qty } => {
                let (player, asset, qty) = self.target(player, asset, side, qty);
                let kind = OrderKind::Market;
                Command::Place(OrderRequest { player, asset, side, qty: Quantity::new(qty).ok()?, kind })
            }
            Op::Limit { player, asset, side, qty, offset_bps } => {
                let (player, asset, qty) = self.target(player, asset, side, qty);
                let mid = self.ex.quote(asset)?.mid;
                let limit = LimitPrice::new(cents(mid * (1.0 + f64::from(offset_bps) / 10_000.0))).ok()?;
                let kind = OrderKind::Limit(limit);
                Command::Place(OrderRequest { player, asset, side, qty: Quantity::new(qty).ok()?, kind })
            }
            Op::Stop { player, asset, qty, below_bps } => {
                let (player, asset, qty) = self.target(player, asset, Side::Sell, qty);
                let mid = self.ex.quote(asset)?.mid;
                let stop = LimitPrice::new(cents(mid * (1.0 - f64::from(below_bps) / 10_000.0))).ok()?;
                let kind = OrderKind::Stop(stop);
                Command::Place(OrderRequest { player, asset, side: Side::Sell, qty: Quantity::new(qty).ok()?, kind })
            }
            Op::Cancel { player, pick, mode } => {
                let player = self.player(player);
                let resting = self.resting();
                let candidates: Vec<OrderId> = match mode {
                    CancelMode::Own => resting.iter().filter(|o| o.player == player).map(|o| o.id).collect(),
                    CancelMode::AnyResting => resting.iter().map(|o| o.id).collect(),
                    CancelMode::AnyIssued => (1..=self.ex.state().next_order).map(OrderId).collect(),
                };
                let order =
                    if candidates.is_empty() { OrderId(1 + pick.index(1_000) as u64) } else { *pick.get(&candidates) };
                Command::Cancel { player, order }
            }
            Op::Credit { player, mantissa, scale } => Command::Credit {
                player: self.player(player),
                amount: Decimal::new(mantissa, scale),
                reason: CreditReason::DailyBonus,
            },
            Op::Halt { asset, halted } => Command::Halt { asset: self.asset(asset), halted },
        };
        Some(self.run(command))
    }

    fn run(&mut self, command: Command) -> Step {
        let result = self.ex.execute(&command, self.at_ms, &mut self.log);
        (command, result)
    }

    /// Opens most players' accounts; every fifth player waits for an `Open`.
    fn open_most(&mut self) {
        for (index, player) in self.market.players.clone().into_iter().enumerate() {
            if index % 5 != 4 {
                self.run(Command::Open { player }).1.unwrap();
            }
        }
    }

    /// Opens every player's account.
    fn open_everyone(&mut self) {
        for player in self.market.players.clone() {
            self.run(Command::Open { player }).1.unwrap();
        }
    }
}

/// Rounds a model price to cents (at least one cent).
fn cents(price: f64) -> Decimal {
    let cents = (price * 100.0).round().clamp(1.0, 1e13);
    #[allow(clippy::cast_possible_truncation)]
    Decimal::new(cents as i64, MONEY_DP)
}

fn resting_orders(ex: &Exchange) -> Vec<RestingOrder> {
    ex.universe().ids().filter_map(|asset| ex.book(asset)).flat_map(|book| book.resting.iter().copied()).collect()
}

// ---- reference models folded from the event log ---------------------------

/// What the ledgers must add up to, computed from the events alone.
#[derive(Debug, Default)]
struct Ledger {
    seen: usize,
    /// Starting cash plus credits: the only cash created.
    created: Decimal,
    /// Sum of `Trade::cash_delta` over all fills.
    traded: Decimal,
    cash: BTreeMap<PlayerId, Decimal>,
    held: BTreeMap<(PlayerId, AssetId), i128>,
    net_bought: BTreeMap<AssetId, i128>,
    trades: BTreeMap<PlayerId, u64>,
}

impl Ledger {
    fn absorb(&mut self, log: &[Stamped]) {
        for stamped in &log[self.seen..] {
            match &stamped.event {
                Event::AccountReset { player, cash, .. } => {
                    let before = self.cash.insert(*player, *cash).unwrap_or_default();
                    self.created += *cash - before;
                    for ((holder, asset), qty) in &mut self.held {
                        if holder == player {
                            *self.net_bought.entry(*asset).or_default() -= *qty;
                            *qty = 0;
                        }
                    }
                }
                Event::AccountOpened { player, cash, .. } => {
                    self.created += *cash;
                    *self.cash.entry(*player).or_default() += *cash;
                }
                Event::CashCredited { player, amount, .. } => {
                    self.created += *amount;
                    *self.cash.entry(*player).or_default() += *amount;
                }
                Event::Traded(trade) => {
                    self.traded += trade.cash_delta();
                    *self.cash.entry(trade.player).or_default() += trade.cash_delta();
                    let signed = match trade.side {
                        Side::Buy => i128::from(trade.qty),
                        Side::Sell => -i128::from(trade.qty),
                    };
                    *self.held.entry((trade.player, trade.asset)).or_default() += signed;
                    *self.net_bought.entry(trade.asset).or_default() += signed;
                    *self.trades.entry(trade.player).or_default() += 1;
                }
                _ => {}
            }
        }
        self.seen = log.len();
    }

    /// Conservation (DESIGN §6): the ledgers reconcile with the log.
    fn assert_reconciles(&self, ex: &Exchange) {
        let total: Decimal = ex.players().map(|(_, a)| a.cash).sum();
        assert_eq!(total, self.created + self.traded, "total cash ≠ opened + credited + Σ cash_delta");
        let loaded: BTreeSet<PlayerId> = ex.players().map(|(p, _)| *p).collect();
        assert_eq!(loaded, self.cash.keys().copied().collect(), "accounts ≠ AccountOpened events");
        let assets: Vec<AssetId> = ex.universe().ids().collect();
        for (player, account) in ex.players() {
            assert_eq!(account.cash, self.cash[player], "cash of {player}");
            assert_eq!(account.trades, self.trades.get(player).copied().unwrap_or(0), "trade count of {player}");
            for asset in &assets {
                let expected = self.held.get(&(*player, *asset)).copied().unwrap_or(0);
                assert_eq!(i128::from(account.held(*asset)), expected, "{player} holds {asset:?}");
            }
        }
        for asset in &assets {
            let held: i128 = ex.players().map(|(_, a)| i128::from(a.held(*asset))).sum();
            assert_eq!(held, self.net_bought.get(asset).copied().unwrap_or(0), "shares of {asset:?} ≠ net bought");
        }
    }
}

/// Reservations equal what the open resting orders reserve.
fn assert_reservations_match_books(ex: &Exchange) {
    let mut cash: BTreeMap<PlayerId, Decimal> = BTreeMap::new();
    let mut qty: BTreeMap<(PlayerId, AssetId), u64> = BTreeMap::new();
    let mut open: BTreeMap<PlayerId, u32> = BTreeMap::new();
    for asset in ex.universe().ids() {
        for order in &ex.book(asset).unwrap().resting {
            assert_eq!(order.asset, asset, "order {} rests on another asset's book", order.id);
            assert!(ex.account(order.player).is_some(), "order {} of an unknown player", order.id);
            *cash.entry(order.player).or_default() += order.reserved_cash;
            *open.entry(order.player).or_default() += 1;
            match order.side {
                Side::Sell => {
                    assert_eq!(order.reserved_cash, Decimal::ZERO, "a sell reserves no cash");
                    *qty.entry((order.player, order.asset)).or_default() += order.qty;
                }
                Side::Buy => assert!(order.reserved_cash > Decimal::ZERO, "a resting buy reserves cash"),
            }
        }
    }
    for (player, account) in ex.players() {
        assert_eq!(account.reserved_cash, cash.get(player).copied().unwrap_or_default(), "reserved cash of {player}");
        assert_eq!(account.open_orders, open.get(player).copied().unwrap_or(0), "open orders of {player}");
        for position in &account.positions {
            let reserved = qty.get(&(*player, position.asset)).copied().unwrap_or(0);
            assert_eq!(position.reserved_qty, reserved, "reserved {:?} of {player}", position.asset);
        }
        for ((owner, asset), reserved) in &qty {
            if owner == player {
                assert!(account.position(*asset).is_some_and(|p| p.reserved_qty == *reserved));
            }
        }
    }
}

/// Nothing negative (DESIGN §6), and positions kept tidy.
fn assert_nothing_negative(ex: &Exchange) {
    for (player, account) in ex.players() {
        assert!(account.cash >= Decimal::ZERO, "{player} cash {}", account.cash);
        assert!(account.reserved_cash >= Decimal::ZERO, "{player} reserved {}", account.reserved_cash);
        assert!(account.free_cash() >= Decimal::ZERO, "{player} free cash {}", account.free_cash());
        assert!(
            account.positions.windows(2).all(|w| w[0].asset < w[1].asset),
            "{player} positions unsorted or duplicated"
        );
        for position in &account.positions {
            assert!(position.reserved_qty <= position.qty, "{player} reserves more {:?} than held", position.asset);
            assert!(position.qty > 0 || position.reserved_qty > 0, "{player} keeps an empty position");
            assert!(position.cost_basis >= Decimal::ZERO, "{player} cost basis {}", position.cost_basis);
            assert_eq!(position.free_qty(), position.qty - position.reserved_qty);
        }
    }
}

/// Order lifecycle folded from the log: placed once, closed (filled or
/// cancelled) at most once, never touched after.
#[derive(Debug, Default)]
struct Lifecycle {
    seen: usize,
    placed: BTreeMap<OrderId, RestingOrder>,
    filled: BTreeSet<OrderId>,
    cancelled: BTreeSet<OrderId>,
    trade_ids: BTreeSet<TradeId>,
    next_seq: u64,
}

impl Lifecycle {
    fn closed(&self, order: OrderId) -> bool {
        self.filled.contains(&order) || self.cancelled.contains(&order)
    }

    fn absorb(&mut self, log: &[Stamped]) {
        for stamped in &log[self.seen..] {
            self.next_seq = self.next_seq.max(1);
            assert_eq!(stamped.seq, self.next_seq, "sequence numbers have a gap");
            self.next_seq += 1;
            match &stamped.event {
                Event::OrderPlaced(order) => {
                    assert!(self.placed.insert(order.id, *order).is_none(), "order id {} reused", order.id);
                }
                Event::Traded(trade) => {
                    assert!(self.trade_ids.insert(trade.id), "trade id {:?} reused", trade.id);
                    if let Some(id) = trade.order {
                        let order = self.placed.get(&id).unwrap_or_else(|| panic!("fill of unknown order {id}"));
                        assert!(!self.filled.contains(&id), "order {id} filled twice");
                        assert!(!self.cancelled.contains(&id), "order {id} filled after its cancellation");
                        assert_resting_fill_honours_order(trade, order);
                        self.filled.insert(id);
                    }
                }
                Event::OrderCancelled { order, player, .. } => {
                    let placed = self.placed.get(order).unwrap_or_else(|| panic!("cancel of unknown order {order}"));
                    assert_eq!(placed.player, *player, "order {order} cancelled for another player");
                    assert!(!self.closed(*order), "order {order} cancelled after it was closed");
                    self.cancelled.insert(*order);
                }
                _ => {}
            }
        }
        self.seen = log.len();
    }

    /// Exactly the open orders are on the books, each once.
    fn assert_books(&self, ex: &Exchange) {
        let mut on_books = BTreeMap::new();
        for order in resting_orders(ex) {
            assert!(on_books.insert(order.id, order).is_none(), "order {} rests twice", order.id);
            assert!(!self.closed(order.id), "closed order {} still on a book", order.id);
        }
        let open: BTreeMap<OrderId, RestingOrder> =
            self.placed.iter().filter(|(id, _)| !self.closed(**id)).map(|(id, o)| (*id, *o)).collect();
        assert_eq!(on_books, open, "books ≠ placed − filled − cancelled");
    }
}

fn assert_resting_fill_honours_order(trade: &Trade, order: &RestingOrder) {
    assert_eq!(
        (trade.player, trade.asset, trade.side, trade.qty),
        (order.player, order.asset, order.side, order.qty),
        "fill of order {} differs from the order",
        order.id
    );
    if let Trigger::Limit(limit) = order.trigger {
        match order.side {
            Side::Buy => assert!(trade.price <= limit, "limit buy {} filled at {} > {limit}", order.id, trade.price),
            Side::Sell => assert!(trade.price >= limit, "limit sell {} filled at {} < {limit}", order.id, trade.price),
        }
    }
}

/// Runs a workload on a market with most accounts open.
fn simulated(market: &Market, ops: &[Op]) -> Sim {
    let mut sim = Sim::new(market);
    sim.open_most();
    for op in ops {
        sim.step(op);
    }
    sim
}

/// Restores a snapshot and applies the log's tail to it.
fn restore(market: &Market, snapshot: ExchangeState, tail: &[Stamped]) -> Exchange {
    let mut restored = Exchange::from_state(Arc::clone(&market.universe), market.rules.clone(), snapshot);
    for stamped in tail {
        restored.apply(stamped);
    }
    restored
}

/// Equal states, except that the books' floats may differ in their last bits.
fn assert_same_but_float_bits(got: &ExchangeState, want: &ExchangeState) {
    assert_eq!(got.accounts, want.accounts);
    assert_eq!((got.next_seq, got.next_trade, got.next_order), (want.next_seq, want.next_trade, want.next_order));
    assert_eq!(got.books.len(), want.books.len());
    let close = |a: f64, b: f64| a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0);
    for (got, want) in got.books.iter().zip(&want.books) {
        assert_eq!(got.resting, want.resting);
        assert_eq!(
            (got.minute, got.breaker_halted, got.admin_halted),
            (want.minute, want.breaker_halted, want.admin_halted)
        );
        for (a, b) in [
            (got.model_mid, want.model_mid),
            (got.sigma_daily, want.sigma_daily),
            (got.sigma_base, want.sigma_base),
            (got.half_spread, want.half_spread),
            (got.liquidity_shares, want.liquidity_shares),
            (got.flow_fast, want.flow_fast),
            (got.flow_slow, want.flow_slow),
        ] {
            assert!(close(a, b), "{a} vs {b}");
        }
    }
}

/// Replays a log into a fresh exchange of the same market.
fn replay(market: &Market, log: &[Stamped]) -> Exchange {
    let mut fresh = Exchange::new(Arc::clone(&market.universe), market.rules.clone());
    for stamped in log {
        fresh.apply(stamped);
    }
    fresh
}

// ---- 1–3, 5: random workloads ----------------------------------------------

proptest! {
    #![proptest_config(config(0x5EED_0001))]

    /// Σ cash = Σ AccountOpened + Σ CashCredited + Σ cash_delta; holdings
    /// per player and asset = net traded; reservations = open orders'.
    #[test]
    fn conservation_holds_after_every_step(market in market(), ops in ops()) {
        let mut sim = Sim::new(&market);
        sim.open_most();
        let mut ledger = Ledger::default();
        for op in &ops {
            sim.step(op);
            ledger.absorb(&sim.log);
            ledger.assert_reconciles(&sim.ex);
            assert_reservations_match_books(&sim.ex);
        }
    }
}

proptest! {
    #![proptest_config(config(0x5EED_0002))]

    /// Cash, free cash, holdings and free shares never go negative, whoever
    /// trades and however prices move.
    #[test]
    fn nothing_goes_negative(market in market(), ops in ops()) {
        let mut sim = Sim::new(&market);
        sim.open_most();
        for op in &ops {
            sim.step(op);
            assert_nothing_negative(&sim.ex);
        }
        for stamped in &sim.log {
            if let Event::Traded(trade) = &stamped.event {
                assert!(trade.qty > 0 && trade.price > Decimal::ZERO, "empty or free trade {trade:?}");
                assert!(trade.fee >= market.rules.fee_min, "fee below the floor: {trade:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(config(0x5EED_0003))]

    /// Each order fills at most once, never after its cancellation; closed
    /// orders leave every book, and cancelling one again is refused.
    #[test]
    fn no_order_fills_twice(market in market(), ops in ops()) {
        let mut sim = Sim::new(&market);
        sim.open_most();
        let mut lifecycle = Lifecycle::default();
        lifecycle.absorb(&sim.log);
        for op in &ops {
            let step = sim.step(op);
            if let Some((Command::Cancel { order, .. }, result)) = &step
                && lifecycle.closed(*order)
            {
                assert_eq!(result, &Err(Rejection::UnknownOrder { order_id: *order }));
            }
            lifecycle.absorb(&sim.log);
            lifecycle.assert_books(&sim.ex);
        }
    }
}

proptest! {
    #![proptest_config(config(0x5EED_0005))]

    /// The log replays into the same state, bit for bit (f64 fields with ==),
    /// from scratch and from a snapshot taken anywhere plus the log's tail.
    #[test]
    fn replay_reproduces_state_exactly(market in market(), ops in ops(), cut in any::<Index>()) {
        let sim = simulated(&market, &ops);
        let original = sim.ex.state();
        prop_assert_eq!(&replay(&market, &sim.log).state(), &original);

        let (head, tail) = sim.log.split_at(cut.index(sim.log.len() + 1));
        let snapshot = replay(&market, head).state();
        prop_assert_eq!(&restore(&market, snapshot, tail).state(), &original);
    }

    /// Through JSON (log and snapshot), ledgers, orders and counters come
    /// back exactly and the books' floats within an ULP or so; bit-exactness
    /// is `replay_through_json_is_bit_exact`.
    #[test]
    fn replay_through_json_keeps_ledgers_exact(market in market(), ops in ops(), cut in any::<Index>()) {
        let sim = simulated(&market, &ops);
        let original = sim.ex.state();
        let decoded: Vec<Stamped> = serde_json::from_str(&serde_json::to_string(&sim.log).unwrap()).unwrap();
        assert_same_but_float_bits(&replay(&market, &decoded).state(), &original);

        let (head, tail) = sim.log.split_at(cut.index(sim.log.len() + 1));
        let snapshot = serde_json::to_string(&replay(&market, head).state()).unwrap();
        let snapshot: ExchangeState = serde_json::from_str(&snapshot).unwrap();
        assert_same_but_float_bits(&restore(&market, snapshot, tail).state(), &original);
    }

    /// Replay through JSON is bit for bit too (serde_json's `float_roundtrip`
    /// feature makes floats come back exactly).
    #[test]
    fn replay_through_json_is_bit_exact(market in market(), ops in ops(), cut in any::<Index>()) {
        let sim = simulated(&market, &ops);
        let original = sim.ex.state();
        let decoded: Vec<Stamped> = serde_json::from_str(&serde_json::to_string(&sim.log).unwrap()).unwrap();
        prop_assert_eq!(&decoded, &sim.log);
        prop_assert_eq!(&replay(&market, &decoded).state(), &original);

        let (head, tail) = sim.log.split_at(cut.index(sim.log.len() + 1));
        let snapshot = serde_json::to_string(&replay(&market, head).state()).unwrap();
        let snapshot: ExchangeState = serde_json::from_str(&snapshot).unwrap();
        prop_assert_eq!(&restore(&market, snapshot, tail).state(), &original);
    }

    /// A rejected command changes nothing and emits nothing (nothing is
    /// half-applied); neither does a stale or repeated tick.
    #[test]
    fn rejections_change_nothing(market in market(), ops in ops()) {
        let mut sim = Sim::new(&market);
        sim.open_most();
        for op in &ops {
            let before = sim.ex.state();
            let events = sim.log.len();
            let stale = match op {
                Op::Tick { asset, minutes: 0, .. } => sim.ex.book(sim.asset(*asset)).is_some_and(|b| b.minute > 0),
                _ => false,
            };
            match sim.step(op) {
                Some((command, Err(rejection))) => {
                    prop_assert_eq!(sim.log.len(), events, "{:?} → {:?} emitted events", command, rejection);
                    prop_assert_eq!(&sim.ex.state(), &before, "{:?} → {:?} changed state", command, rejection);
                }
                None if stale => {
                    prop_assert_eq!(sim.log.len(), events, "stale {:?} emitted events", op);
                    prop_assert_eq!(&sim.ex.state(), &before, "stale {:?} changed state", op);
                }
                _ => {}
            }
        }
    }
}

// ---- 4: round trips --------------------------------------------------------

/// A market after random prior flow by other players and random ticks, and a
/// rich newcomer about to trade `asset`, which is open for trading.
fn primed(market: &Market, prior: &[Op], asset: Index) -> (Sim, PlayerId, AssetId) {
    let mut sim = Sim::new(market);
    sim.open_everyone();
    for op in prior {
        sim.step(op);
    }
    let asset = sim.asset(asset);
    sim.run(Command::Halt { asset, halted: false }).1.unwrap();
    let book = sim.ex.book(asset).unwrap();
    if book.halted() {
        let tick = Tick {
            asset,
            minute: book.minute + 1,
            model_mid: book.model_mid,
            sigma_daily: book.sigma_daily,
            halted: false,
        };
        sim.ex.tick(tick, sim.at_ms, &mut sim.log);
    }
    let trader = PlayerId(i64::MAX);
    sim.run(Command::Open { player: trader }).1.unwrap();
    sim.run(Command::Credit { player: trader, amount: MONEY_MAX, reason: CreditReason::AdminGrant }).1.unwrap();
    (sim, trader, asset)
}

fn market_order(player: PlayerId, asset: AssetId, side: Side, qty: u64) -> Command {
    Command::Place(OrderRequest { player, asset, side, qty: Quantity::new(qty).unwrap(), kind: OrderKind::Market })
}

fn cash(ex: &Exchange, player: PlayerId) -> Decimal {
    ex.account(player).unwrap().cash
}

fn filled(result: Result<Outcome, Rejection>) -> Trade {
    match result {
        Ok(Outcome::Placed(Placed::Filled(fill))) => fill.trade,
        other => panic!("expected a fill, got {other:?}"),
    }
}

/// The largest quantity in `[qty_min, wanted]` (halving from `wanted`) the
/// market lets `player` buy now, if any; only liquidity, cash and the
/// position cap may stand in the way.
fn buyable(ex: &Exchange, player: PlayerId, asset: AssetId, wanted: u64, qty_min: u64) -> Option<u64> {
    let mut qty = wanted;
    while qty >= qty_min && qty > 0 {
        let mut probe = ex.clone();
        match probe.execute(&market_order(player, asset, Side::Buy, qty), 0, &mut Vec::new()) {
            Ok(_) => return Some(qty),
            Err(
                Rejection::ExceedsLiquidity { .. }
                | Rejection::InsufficientCash { .. }
                | Rejection::PositionLimit { .. },
            ) => qty /= 2,
            Err(other) => panic!("buying {qty} of {asset:?} refused: {other:?}"),
        }
    }
    None
}

/// Splits `qty` into `weights.len()` pieces of at least `piece_min` (fewer if
/// `qty` is too small), proportional to the weights beyond that minimum.
fn split(qty: u64, weights: &[u64], piece_min: u64) -> Vec<u64> {
    let count = weights.len().min(usize::try_from(qty / piece_min.max(1)).unwrap_or(usize::MAX));
    let weights = &weights[..count];
    let total: u64 = weights.iter().sum();
    let spare = qty - piece_min * count as u64;
    let mut pieces: Vec<u64> = weights.iter().map(|w| piece_min + spare * w / total.max(1)).collect();
    let given: u64 = pieces.iter().sum();
    if let Some(last) = pieces.last_mut() {
        *last += qty - given;
    }
    pieces
}

fn prior_ops() -> impl Strategy<Value = Vec<Op>> {
    vec(prop_oneof![2 => op(), 1 => tick_op()], 0..=60)
}

proptest! {
    #![proptest_config(config(0x5EED_0004))]

    /// Buying Q then at once selling Q strictly loses cash, whatever the
    /// asset, Q, prices and prior flow; buying in pieces loses too, and saves
    /// nothing beyond a cent of rounding per share.
    #[test]
    fn round_trips_lose_money(
        market in market(),
        prior in prior_ops(),
        asset in any::<Index>(),
        wanted in prop_oneof![1_u64..100, 1_u64..=100_000],
        weights in vec(1_u64..100, 2..=8),
    ) {
        let (sim, trader, asset) = primed(&market, &prior, asset);
        // Enough shares that selling them back is worth the minimum order.
        let bid = sim.ex.quote(asset).unwrap().bid;
        let qty_min = (Decimal::TWO * market.rules.order_value_min / bid).ceil().try_into().unwrap_or(u64::MAX).max(1);
        let wanted = wanted.max(qty_min).min(market.rules.order_qty_max);
        let qty = buyable(&sim.ex, trader, asset, wanted, qty_min);
        prop_assume!(qty.is_some());
        let qty = qty.unwrap();
        let start = cash(&sim.ex, trader);

        let mut whole = sim.ex.clone();
        let mut out = Vec::new();
        let bought = filled(whole.execute(&market_order(trader, asset, Side::Buy, qty), 1, &mut out));
        let sold = filled(whole.execute(&market_order(trader, asset, Side::Sell, qty), 2, &mut out));
        let end = cash(&whole, trader);
        prop_assert!(end < start, "round trip of {} made {}: bought {:?}, sold {:?}", qty, end - start, bought, sold);
        prop_assert!(sold.price <= bought.price, "sold at {} above the {} paid", sold.price, bought.price);
        prop_assert_eq!(whole.account(trader).unwrap().held(asset), 0);
        prop_assert!(whole.account(trader).unwrap().realized_pnl < Decimal::ZERO);

        let pieces = split(qty, &weights, qty_min);
        let mut pieced = sim.ex.clone();
        for piece in &pieces {
            filled(pieced.execute(&market_order(trader, asset, Side::Buy, *piece), 1, &mut out));
        }
        filled(pieced.execute(&market_order(trader, asset, Side::Sell, qty), 2, &mut out));
        let pieced_end = cash(&pieced, trader);
        prop_assert!(pieced_end < start, "pieces {:?} made {}", pieces, pieced_end - start);
        // Splitting walks the same impact curve; only per-piece rounding to
        // the cent (buy and sell side) and the fee on it may differ.
        let slack = Decimal::new(2, 2) * Decimal::from(qty) * (Decimal::ONE + market.rules.fee_rate) + Decimal::new(2, 2);
        prop_assert!(
            pieced_end <= end + slack,
            "pieces {:?} ended with {} vs {} for the whole {}", pieces, pieced_end, end, qty
        );
    }
}

// ---- 6: bad input ----------------------------------------------------------

/// Commands no player should get through, whatever the state.
fn absurd_command(sim: &Sim, choice: u8, index: Index, big: u64) -> Command {
    let player = sim.player(index);
    let asset = sim.asset(index);
    let rules = &sim.market.rules;
    let request = |player, asset, side, qty, kind| {
        Command::Place(OrderRequest { player, asset, side, qty: Quantity::new(qty).unwrap(), kind })
    };
    let too_many = rules.order_qty_max + 1 + big % (QTY_MAX - rules.order_qty_max);
    let unknown_asset = AssetId(u16::try_from(sim.market.universe.len()).unwrap() + (big % 60_000) as u16);
    let limit = LimitPrice::new(Decimal::ONE).unwrap();
    match choice % 12 {
        0 => request(player, asset, Side::Buy, too_many, OrderKind::Market),
        1 => request(player, asset, Side::Sell, too_many, OrderKind::Limit(limit)),
        2 => request(player, unknown_asset, Side::Buy, 1, OrderKind::Market),
        3 => request(player, AssetId(999), Side::Sell, 1, OrderKind::Stop(limit)),
        4 => request(PlayerId(i64::MIN), asset, Side::Buy, 1, OrderKind::Market),
        5 => request(player, asset, Side::Buy, 1, OrderKind::Stop(limit)),
        6 => Command::Credit { player, amount: Decimal::ZERO, reason: CreditReason::DailyBonus },
        7 => Command::Credit { player, amount: -Decimal::from(big), reason: CreditReason::AdminGrant },
        8 => Command::Credit { player, amount: MONEY_MAX + Decimal::new(1, 2), reason: CreditReason::AdminGrant },
        9 => Command::Credit { player, amount: Decimal::MAX, reason: CreditReason::Referral },
        10 => Command::Credit { player: PlayerId(i64::MIN), amount: Decimal::ONE, reason: CreditReason::DailyBonus },
        _ => Command::Cancel { player, order: OrderId(sim.ex.state().next_order + big % 1_000) },
    }
}

proptest! {
    #![proptest_config(config(0x5EED_0006))]

    /// Absurd orders and credits (quantities above the cap, unknown assets,
    /// unknown players, stop buys, zero/negative/huge credits, unknown
    /// orders) are rejections that leave the state untouched, in any state.
    #[test]
    fn absurd_commands_are_rejected_and_change_nothing(
        market in market(),
        prior in prior_ops(),
        absurd in vec((any::<u8>(), any::<Index>(), any::<u64>()), 1..=24),
    ) {
        let mut sim = Sim::new(&market);
        sim.open_everyone();
        for op in &prior {
            sim.step(op);
        }
        for (choice, index, big) in absurd {
            let command = absurd_command(&sim, choice, index, big);
            let before = sim.ex.state();
            let events = sim.log.len();
            let result = sim.ex.execute(&command, sim.at_ms, &mut sim.log);
            prop_assert!(result.is_err(), "{:?} accepted: {:?}", command, result);
            prop_assert_eq!(sim.log.len(), events);
            prop_assert_eq!(&sim.ex.state(), &before);
        }
    }

    /// Sub-cent credits would create no money; they are refused like zero.
    #[test]
    fn sub_cent_credits_are_rejected(market in market(), mantissa in 1_i64..10, scale in 3_u32..=12) {
        let mut sim = Sim::new(&market);
        sim.open_everyone();
        let player = market.players[0];
        let before = sim.ex.state();
        let amount = Decimal::new(mantissa, scale);
        let result = sim.run(Command::Credit { player, amount, reason: CreditReason::DailyBonus }).1;
        prop_assert_eq!(result, Err(Rejection::AmountTooLarge));
        prop_assert_eq!(&sim.ex.state(), &before);
    }

    #[test]
    fn quantity_parse_never_panics(text in prop_oneof![".*", "\\PC*", any::<String>(), "[-+ ,_0-9.e]{0,30}"]) {
        match Quantity::parse(&text) {
            Ok(qty) => {
                prop_assert!((1..=QTY_MAX).contains(&qty.get()));
                let digits: String = text.trim().chars().filter(|c| *c != ',' && *c != '_').collect();
                prop_assert_eq!(digits.trim_start_matches('0'), qty.get().to_string());
            }
            Err(Rejection::BadQuantity { given }) => prop_assert!(given.chars().count() <= 24),
            Err(other) => prop_assert!(false, "unexpected rejection {:?}", other),
        }
    }

    #[test]
    fn quantity_parse_takes_exactly_the_valid_numbers(shares in prop_oneof![1..=QTY_MAX, Just(0), QTY_MAX + 1..]) {
        let plain = Quantity::parse(&shares.to_string()).map(Quantity::get);
        let grouped = Quantity::parse(&group_thousands(shares)).map(Quantity::get);
        if (1..=QTY_MAX).contains(&shares) {
            prop_assert_eq!(plain, Ok(shares));
            prop_assert_eq!(grouped, Ok(shares));
        } else {
            prop_assert!(plain.is_err() && grouped.is_err());
            prop_assert!(Quantity::new(shares).is_err());
        }
    }

    #[test]
    fn quantity_parse_rejects_negative_fractional_and_huge(
        text in prop_oneof!["-[0-9]{1,20}", "[0-9]{1,6}\\.[0-9]{1,4}", "[1-9][0-9]{12,40}", "0{1,10}", "[0-9]{1,5}[eE][0-9]"],
    ) {
        prop_assert!(matches!(Quantity::parse(&text), Err(Rejection::BadQuantity { .. })), "{:?} accepted", text);
    }

    #[test]
    fn limit_price_parse_never_panics(text in prop_oneof![".*", "\\PC*", any::<String>(), "[-+$ ,0-9.eE]{0,40}"]) {
        match LimitPrice::parse(&text) {
            Ok(price) => {
                let price = price.get();
                prop_assert!(price > Decimal::ZERO && price <= MONEY_MAX, "{:?} → {}", text, price);
                prop_assert!(price.scale() <= MONEY_DP);
            }
            Err(Rejection::BadPrice { given }) => prop_assert!(given.chars().count() <= 24),
            Err(other) => prop_assert!(false, "unexpected rejection {:?}", other),
        }
    }

    #[test]
    fn limit_price_parse_takes_every_sane_price(cents in 1_i64..=100_000_000_000) {
        let text = format!("{}.{:02}", cents / 100, cents % 100);
        prop_assert_eq!(LimitPrice::parse(&text).map(LimitPrice::get), Ok(Decimal::new(cents, MONEY_DP)));
        prop_assert_eq!(LimitPrice::parse(&format!("${text}")).map(LimitPrice::get), Ok(Decimal::new(cents, MONEY_DP)));
    }

    #[test]
    fn limit_price_parse_rejects_absurd_prices(
        text in prop_oneof![
            "[1-9][0-9]{29}",
            "[1-9][0-9]{10,12}(\\.[0-9]{1,2})?",
            "1000000000\\.(0[1-9]|[1-9][0-9])",
            "[0-9]{1,6}\\.[0-9]{2}[1-9]",
            "-[0-9]{1,8}(\\.[0-9]{1,2})?",
            "0{1,5}(\\.0{1,2})?",
            "[0-9]{1,4}\\.[0-9]{1,2}\\.[0-9]",
            "[0-9]{1,4}[eE][0-9]{1,3}",
            "[0-9]{1,4}[^0-9.,$\\s][0-9]{0,4}",
        ],
    ) {
        let result = LimitPrice::parse(&text);
        prop_assert!(matches!(result, Err(Rejection::BadPrice { .. })), "{:?} accepted: {:?}", text, result);
    }

    #[test]
    fn limit_price_new_never_panics(lo in any::<u32>(), mid in any::<u32>(), hi in any::<u32>(), negative in any::<bool>(), scale in 0_u32..=28) {
        let price = Decimal::from_parts(lo, mid, hi, negative, scale);
        match LimitPrice::new(price) {
            Ok(limit) => {
                prop_assert_eq!(limit.get(), price);
                prop_assert!(price > Decimal::ZERO && price <= MONEY_MAX && limit.get().scale() <= MONEY_DP);
            }
            Err(rejection) => prop_assert!(matches!(rejection, Rejection::BadPrice { .. }), "{:?}", rejection),
        }
    }

    #[test]
    fn ticker_parse_never_panics(text in prop_oneof![".*", "\\PC*", any::<String>(), "[ A-Za-z0-9;'\"$.-]{0,12}"]) {
        match Ticker::parse(&text) {
            Ok(ticker) => {
                let symbol = ticker.as_str();
                prop_assert!((1..=TICKER_LEN_MAX).contains(&symbol.len()));
                prop_assert!(symbol.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
                prop_assert_eq!(symbol, text.trim().to_ascii_uppercase());
            }
            Err(Rejection::BadTicker { given }) => prop_assert!(given.chars().count() <= 16),
            Err(other) => prop_assert!(false, "unexpected rejection {:?}", other),
        }
    }

    #[test]
    fn ticker_parse_takes_exactly_short_alphanumerics(
        good in "[A-Za-z0-9]{1,8}",
        long in "[A-Za-z0-9]{9,40}",
        (head, bad, tail) in ("[A-Za-z0-9]{0,3}", "[^A-Za-z0-9\\s]", "[A-Za-z0-9]{0,3}"),
    ) {
        prop_assert_eq!(Ticker::parse(&format!(" {good}\t")).map(|t| t.to_string()), Ok(good.to_ascii_uppercase()));
        prop_assert!(Ticker::parse(&long).is_err());
        let with_bad = format!("{head}{bad}{tail}");
        if !with_bad.trim().is_empty() {
            prop_assert!(Ticker::parse(&with_bad).is_err(), "{:?} accepted", with_bad);
        }
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

// ---- the workload is meaningful -------------------------------------------

/// The generator reaches every interesting path: fills of both kinds of
/// resting order, both cancel reasons, and the main rejections. Guards the
/// properties above against a workload that quietly stopped trading.
#[test]
fn workload_exercises_the_market() {
    let mut runner = TestRunner::deterministic();
    let strategy = (market(), ops());
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..256 {
        let (market, ops) = strategy.new_tree(&mut runner).unwrap().current();
        let mut sim = Sim::new(&market);
        sim.open_most();
        for op in &ops {
            if let Some((_, Err(rejection))) = sim.step(op) {
                let name = format!("{rejection:?}");
                *seen.entry(name.split([' ', '{']).next().unwrap().to_owned()).or_default() += 1;
            }
        }
        for stamped in &sim.log {
            let kind = match &stamped.event {
                Event::Traded(Trade { order: None, .. }) => "fill: market",
                Event::Traded(Trade { order: Some(id), .. }) => {
                    let placed = sim.log.iter().find_map(|s| match &s.event {
                        Event::OrderPlaced(o) if o.id == *id => Some(o.trigger),
                        _ => None,
                    });
                    match placed {
                        Some(Trigger::Limit(_)) => "fill: resting limit",
                        Some(Trigger::Stop(_)) => "fill: stop",
                        None => "fill: unknown order",
                    }
                }
                Event::OrderPlaced(_) => "placed",
                Event::OrderCancelled { reason: CancelReason::ByPlayer, .. } => "cancelled: by player",
                Event::OrderCancelled { reason: CancelReason::Unfillable, .. } => "cancelled: unfillable",
                Event::Ticked(tick) if tick.halted => "tick: halted",
                Event::Ticked(_) => "tick",
                Event::CashCredited { .. } => "credited",
                Event::TradingHalted { .. } => "admin halt",
                Event::AccountOpened { .. } => "opened",
                _ => "game",
            };
            *seen.entry(kind.to_owned()).or_default() += 1;
        }
    }
    let expected = [
        "fill: market",
        "fill: resting limit",
        "fill: stop",
        "placed",
        "cancelled: by player",
        "cancelled: unfillable",
        "tick",
        "tick: halted",
        "credited",
        "admin halt",
        "InsufficientCash",
        "InsufficientShares",
        "OrderTooLarge",
        "ExceedsLiquidity",
        "TooManyOpenOrders",
        "Halted",
        "PriceWouldExecute",
        "UnknownOrder",
        "AmountTooLarge",
    ];
    for kind in expected {
        assert!(seen.get(kind).copied().unwrap_or(0) > 0, "the workload never produced {kind}: {seen:?}");
    }
    println!("{seen:#?}");
    assert_eq!(seen.get("fill: unknown order"), None);
}
