//! Realistic batches for the store contract: a real `Exchange` driven by a
//! seeded mix of commands (market, limit and stop orders, cancels, credits)
//! and price ticks that move the model and trigger resting orders. Each
//! batch carries the events the exchange emitted and the ledgers of the
//! players they touched, exactly as the engine hands them to the store.

use std::sync::Arc;

use actors::domain::asset::{AssetSpec, CategorySpec, ModelParams, Universe};
use actors::domain::command::Command;
use actors::domain::event::{CreditReason, Event, Stamped, Tick};
use actors::domain::exchange::Exchange;
use actors::domain::game::GameRules;
use actors::domain::ids::{AssetId, LimitPrice, PlayerId, Quantity, Ticker};
use actors::domain::order::{OrderKind, OrderRequest, Side};
use actors::domain::price_model::MarketModel;
use actors::domain::progression::{LevelUnlock, OrderType};
use actors::domain::rules::MarketRules;
use actors::ports::{EventBatch, MarketSnapshot};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

const TICKERS: [&str; 3] = ["ACME", "BOLT", "CRUX"];
const PRICES_CENTS: [i64; 3] = [12_345, 2_050, 98_000];
/// Market time between two commands.
const COMMAND_MS: i64 = 350;

/// A market with players, its full log so far, and a seeded command mix.
pub struct Scenario {
    pub exchange: Exchange,
    pub players: Vec<PlayerId>,
    /// Every event emitted so far, in order.
    pub log: Vec<Stamped>,
    pub now_ms: i64,
    minute: u64,
    mids: Vec<f64>,
    universe: Arc<Universe>,
    rng: StdRng,
}

impl Scenario {
    /// A market of three assets and `players` players (ids 1..=players).
    pub fn new(seed: u64, players: i64) -> Self {
        let categories =
            vec![CategorySpec { name: "Tech".to_owned(), vol_daily: 0.015, jump_rate_daily: 0.1, jump_sigma: 0.01 }];
        let assets = TICKERS
            .iter()
            .zip(PRICES_CENTS)
            .map(|(ticker, cents)| AssetSpec {
                ticker: Ticker::parse(ticker).unwrap(),
                name: format!("{ticker} Corp"),
                category: "Tech".to_owned(),
                initial_price: Decimal::new(cents, 2),
                model: ModelParams { liquidity_shares: 200_000.0, ..ModelParams::default() },
            })
            .collect();
        let universe = Arc::new(Universe::new(categories, assets).unwrap());
        let exchange = Exchange::new(Arc::clone(&universe), MarketRules::default());
        let mids = PRICES_CENTS.iter().map(|cents| *cents as f64 / 100.0).collect();
        Self {
            exchange,
            players: (1..=players).map(PlayerId).collect(),
            log: Vec::new(),
            // A few seconds into a minute, so batches straddle minute boundaries.
            now_ms: 1_700_000_017_000,
            minute: 0,
            mids,
            universe,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The same market under the game's rules (levels, seasons, bankruptcy,
    /// XP), with every order type open from the first level and bankruptcy
    /// open to anyone (so a test can reset an account without losing 95 %
    /// of it first).
    pub fn with_game(mut self) -> Self {
        let mut rules = GameRules::default();
        rules.progression.unlocks = vec![LevelUnlock {
            level: 0,
            categories_count: None,
            order_types: vec![OrderType::Market, OrderType::Limit, OrderType::Stop],
            position_cap_pct: None,
            open_orders_max: Some(20),
        }];
        rules.bankruptcy.net_worth_max_fraction = Decimal::from(1_000);
        self.exchange = self.exchange.with_game_rules(Arc::new(rules));
        self
    }

    /// Tickers by asset id (the audit's argument).
    pub fn tickers(&self) -> Arc<Vec<String>> {
        Arc::new(TICKERS.iter().map(|t| (*t).to_owned()).collect())
    }

    /// Runs `commands` against the exchange and returns what they emitted
    /// with the ledgers of every player they touched.
    pub fn batch(&mut self, commands: impl FnOnce(&mut Self, &mut Vec<Stamped>)) -> EventBatch {
        let mut events = Vec::new();
        commands(self, &mut events);
        self.log.extend(events.iter().cloned());
        let mut touched: Vec<PlayerId> = Vec::new();
        for stamped in &events {
            if let Some(player) = stamped.event.player()
                && !touched.contains(&player)
            {
                touched.push(player);
            }
        }
        let accounts = touched
            .into_iter()
            .filter_map(|player| self.exchange.account(player).map(|account| (player, account.clone())))
            .collect();
        EventBatch { events, accounts, ..EventBatch::default() }
    }

    /// Opens every player's account.
    pub fn open_all(&mut self) -> EventBatch {
        self.batch(|s, out| {
            for player in s.players.clone() {
                s.run(Command::Open { player }, out);
            }
        })
    }

    /// One command at the current time; rejections are part of the game.
    pub fn run(&mut self, command: Command, out: &mut Vec<Stamped>) -> bool {
        let ok = self.exchange.execute(&command, self.now_ms, out).is_ok();
        self.now_ms += COMMAND_MS;
        ok
    }

    /// A market order.
    pub fn market(&mut self, player: PlayerId, asset: u16, side: Side, qty: u64, out: &mut Vec<Stamped>) -> bool {
        let request = OrderRequest {
            player,
            asset: AssetId(asset),
            side,
            qty: Quantity::new(qty).unwrap(),
            kind: OrderKind::Market,
        };
        self.run(Command::Place(request), out)
    }

    /// Moves every asset's model one minute (and fills what that triggers).
    pub fn tick_all(&mut self, out: &mut Vec<Stamped>) {
        self.minute += 1;
        for index in 0..self.mids.len() {
            let shock = if self.rng.random_bool(0.15) { 0.08 } else { 0.02 };
            let step = (self.rng.random::<f64>() - 0.5) * 2.0 * shock;
            self.mids[index] = (self.mids[index] * (1.0 + step)).clamp(1.0, 10_000.0);
            let tick = Tick {
                asset: AssetId(index as u16),
                minute: self.minute,
                model_mid: self.mids[index],
                sigma_daily: 0.02,
                halted: false,
            };
            self.exchange.tick(tick, self.now_ms, out);
            self.now_ms += COMMAND_MS;
        }
    }

    /// `commands` random commands with a round of ticks in the middle.
    pub fn busy(&mut self, commands: usize) -> EventBatch {
        self.batch(|s, out| {
            for i in 0..commands {
                if i == commands / 2 {
                    s.tick_all(out);
                }
                s.random_command(out);
            }
        })
    }

    /// `trades` market orders by `trades` players, buying on even rounds and
    /// selling on odd ones (the throughput workload).
    pub fn market_round(&mut self, trades: usize, round: usize) -> EventBatch {
        self.batch(|s, out| {
            let side = if round.is_multiple_of(2) { Side::Buy } else { Side::Sell };
            for i in 0..trades {
                let player = s.players[i % s.players.len()];
                let asset = ((i + round / 2) % TICKERS.len()) as u16;
                s.market(player, asset, side, 1 + (i % 3) as u64, out);
            }
        })
    }

    fn random_command(&mut self, out: &mut Vec<Stamped>) {
        let player = self.players[self.rng.random_range(0..self.players.len())];
        let asset = self.rng.random_range(0..TICKERS.len()) as u16;
        let held = self.exchange.account(player).map_or(0, |a| a.free_qty(AssetId(asset)));
        let (bid, ask) = self.exchange.quote(AssetId(asset)).map_or((Decimal::ONE, Decimal::ONE), |q| (q.bid, q.ask));
        let roll = self.rng.random_range(0..100);
        let command = match roll {
            0..=34 => {
                let qty = self.rng.random_range(1..=12);
                self.order(player, asset, Side::Buy, qty, OrderKind::Market)
            }
            35..=54 if held > 0 => {
                let qty = self.rng.random_range(1..=held);
                self.order(player, asset, Side::Sell, qty, OrderKind::Market)
            }
            55..=69 => {
                let qty = self.rng.random_range(1..=5);
                self.order(player, asset, Side::Buy, qty, OrderKind::Limit(limit(bid, 0.97)))
            }
            70..=79 if held > 0 => self.order(player, asset, Side::Sell, held, OrderKind::Limit(limit(ask, 1.03))),
            80..=87 if held > 0 => {
                let qty = self.rng.random_range(1..=held);
                self.order(player, asset, Side::Sell, qty, OrderKind::Stop(limit(bid, 0.96)))
            }
            88..=94 => {
                let order = self.exchange.orders_of(player).next().map(|o| o.id);
                match order {
                    Some(order) => Command::Cancel { player, order },
                    None => Command::Open { player },
                }
            }
            _ => Command::Credit { player, amount: Decimal::new(5_025, 2), reason: CreditReason::DailyBonus },
        };
        self.run(command, out);
    }

    fn order(&self, player: PlayerId, asset: u16, side: Side, qty: u64, kind: OrderKind) -> Command {
        Command::Place(OrderRequest { player, asset: AssetId(asset), side, qty: Quantity::new(qty).unwrap(), kind })
    }

    /// The market-wide snapshot as the engine saves it.
    pub fn snapshot(&self) -> MarketSnapshot {
        let model = MarketModel::new(&self.universe, 7);
        MarketSnapshot { exchange: self.exchange.market_state(), sectors: model.sectors, assets: model.assets }
    }

    /// Counts of the kinds of events logged so far (to check a scenario
    /// really exercises what a test relies on).
    pub fn count(&self, pick: impl Fn(&Event) -> bool) -> usize {
        self.log.iter().filter(|e| pick(&e.event)).count()
    }
}

/// A limit price `factor` away from `price`, in cents.
fn limit(price: Decimal, factor: f64) -> LimitPrice {
    let factor = Decimal::try_from(factor).unwrap();
    LimitPrice::new((price * factor).round_dp(2).max(Decimal::new(1, 2))).unwrap()
}

/// The batch with every seq moved by `delta` (still contiguous).
pub fn shifted(batch: &EventBatch, delta: i64) -> EventBatch {
    let mut moved = batch.clone();
    for stamped in &mut moved.events {
        stamped.seq = stamped.seq.checked_add_signed(delta).unwrap();
    }
    moved
}
