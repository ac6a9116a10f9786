//! Property tests of the game around trading, through the `Exchange` with
//! the default (gated) game rules: random sequences of trades, reviews,
//! daily claims with a clock that jumps (also backwards and across
//! midnight, with time-zone changes), bankruptcies, alerts, grants and
//! season changes. Checked after every step: conservation against the log
//! (resets are explicit events), replay reproduces the state, XP and levels
//! never fall, no achievement or payment is granted twice, at most one daily
//! claim per local day, level caps hold.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use actors::domain::alert::{Direction, Entitlement};
use actors::domain::asset::{AssetSpec, CategorySpec, ModelParams, Universe};
use actors::domain::command::Command;
use actors::domain::daily::UtcOffset;
use actors::domain::event::{Event, Stamped, Tick};
use actors::domain::exchange::Exchange;
use actors::domain::game::GameRules;
use actors::domain::ids::{AssetId, PlayerId, Quantity, Ticker};
use actors::domain::order::{OrderKind, OrderRequest, Side};
use actors::domain::profile::{GameChange, PaymentId};
use actors::domain::rules::MarketRules;
use proptest::prelude::*;
use rust_decimal::Decimal;

const CATEGORIES: [&str; 6] = ["C0", "C1", "C2", "C3", "C4", "C5"];
const PLAYERS: i64 = 4;
const HOUR_MS: i64 = 3_600_000;
/// 2026-03-01T00:00:00Z: seasons (28 days from 2024-01-01) end inside the runs.
const START_MS: i64 = 1_772_323_200_000;

fn universe() -> Arc<Universe> {
    let categories = CATEGORIES
        .iter()
        .map(|name| CategorySpec { name: (*name).to_owned(), vol_daily: 0.015, jump_rate_daily: 0.2, jump_sigma: 0.02 })
        .collect();
    let assets = (0..12)
        .map(|index| AssetSpec {
            ticker: Ticker::parse(&format!("T{index}")).unwrap(),
            name: format!("Asset {index}"),
            category: CATEGORIES[index % CATEGORIES.len()].to_owned(),
            initial_price: Decimal::new(2_000 + 700 * i64::try_from(index).unwrap(), 2),
            model: ModelParams::default(),
        })
        .collect();
    Arc::new(Universe::new(categories, assets).unwrap())
}

#[derive(Debug, Clone)]
enum Op {
    /// Moves the clock (may go back an hour: clocks are not trusted).
    Clock {
        hours: i64,
    },
    Open {
        player: i64,
    },
    Trade {
        player: i64,
        asset: u16,
        buy: bool,
        qty: u64,
        kind: u8,
    },
    Review {
        player: i64,
    },
    Daily {
        player: i64,
    },
    Zone {
        player: i64,
        minutes: i32,
    },
    Bankrupt {
        player: i64,
    },
    Alert {
        player: i64,
        asset: u16,
        above: bool,
        pct: i64,
    },
    Grant {
        player: i64,
        payment: u8,
    },
    Tick {
        asset: u16,
        move_bps: i32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let player = 0..PLAYERS;
    prop_oneof![
        3 => (-1_i64..=30).prop_map(|hours| Op::Clock { hours }),
        2 => player.clone().prop_map(|player| Op::Open { player }),
        8 => (player.clone(), 0_u16..12, any::<bool>(), prop_oneof![1_u64..20, 20_u64..5_000, 5_000_u64..200_000], 0_u8..3)
            .prop_map(|(player, asset, buy, qty, kind)| Op::Trade { player, asset, buy, qty, kind }),
        4 => player.clone().prop_map(|player| Op::Review { player }),
        4 => player.clone().prop_map(|player| Op::Daily { player }),
        1 => (player.clone(), prop_oneof![Just(0), -720_i32..=840]).prop_map(|(player, minutes)| Op::Zone { player, minutes }),
        1 => player.clone().prop_map(|player| Op::Bankrupt { player }),
        2 => (player.clone(), 0_u16..12, any::<bool>(), 1_i64..30).prop_map(|(player, asset, above, pct)| Op::Alert { player, asset, above, pct }),
        1 => (player.clone(), 0_u8..3).prop_map(|(player, payment)| Op::Grant { player, payment }),
        4 => (0_u16..12, -2_000_i32..=2_000).prop_map(|(asset, move_bps)| Op::Tick { asset, move_bps }),
    ]
}

struct Sim {
    ex: Exchange,
    log: Vec<Stamped>,
    at_ms: i64,
    minute: u64,
}

impl Sim {
    fn new() -> Self {
        let ex = Exchange::new(universe(), MarketRules::default()).with_game_rules(Arc::new(GameRules::default()));
        Self { ex, log: Vec::new(), at_ms: START_MS, minute: 0 }
    }

    fn step(&mut self, op: &Op) {
        let at_ms = self.at_ms;
        let command = match *op {
            Op::Clock { hours } => {
                self.at_ms += hours * HOUR_MS;
                return;
            }
            Op::Tick { asset, move_bps } => {
                let asset = AssetId(asset);
                let book = self.ex.book(asset).unwrap();
                self.minute = self.minute.max(book.minute) + 1;
                let model_mid = (book.model_mid * (f64::from(move_bps) / 10_000.0).exp()).clamp(0.5, 50_000.0);
                let tick = Tick { asset, minute: self.minute, model_mid, sigma_daily: 0.02, halted: false };
                self.ex.tick(tick, at_ms, &mut self.log);
                return;
            }
            Op::Open { player } => Command::Open { player: PlayerId(player) },
            Op::Trade { player, asset, buy, qty, kind } => {
                let asset = AssetId(asset);
                let mid = self.ex.quote(asset).unwrap().mid;
                let side = if buy { Side::Buy } else { Side::Sell };
                let away = if buy { 0.97 } else { 1.03 };
                let price = || actors::domain::ids::LimitPrice::new(Decimal::try_from(mid * away).unwrap().round_dp(2));
                let kind = match kind {
                    0 => OrderKind::Market,
                    1 => OrderKind::Limit(price().ok().unwrap()),
                    _ => OrderKind::Stop(
                        actors::domain::ids::LimitPrice::new(Decimal::try_from(mid * 0.9).unwrap().round_dp(2))
                            .unwrap(),
                    ),
                };
                let side = if matches!(kind, OrderKind::Stop(_)) { Side::Sell } else { side };
                Command::Place(OrderRequest {
                    player: PlayerId(player),
                    asset,
                    side,
                    qty: Quantity::new(qty).unwrap(),
                    kind,
                })
            }
            Op::Review { player } => Command::Review { player: PlayerId(player) },
            Op::Daily { player } => Command::ClaimDaily { player: PlayerId(player) },
            Op::Zone { player, minutes } => {
                Command::SetTimeZone { player: PlayerId(player), offset: UtcOffset::from_minutes(minutes).unwrap() }
            }
            Op::Bankrupt { player } => Command::Bankrupt { player: PlayerId(player) },
            Op::Alert { player, asset, above, pct } => {
                let mid = Decimal::try_from(self.ex.quote(AssetId(asset)).unwrap().mid).unwrap();
                let factor = Decimal::ONE + Decimal::new(if above { pct } else { -pct }, 2);
                let direction = if above { Direction::Above } else { Direction::Below };
                Command::SetAlert {
                    player: PlayerId(player),
                    asset: AssetId(asset),
                    direction,
                    price: (mid * factor).round_dp(2),
                }
            }
            Op::Grant { player, payment } => Command::Grant {
                player: PlayerId(player),
                entitlement: Entitlement::Premium,
                payment: Some(PaymentId::of(&format!("charge-{payment}"))),
            },
        };
        let before = self.log.len();
        let state_before = self.ex.state();
        match self.ex.execute(&command, at_ms, &mut self.log) {
            Ok(_) => {}
            Err(_) => {
                // A refusal may still have started the player's new season
                // (cancel + reset are their own events); nothing else.
                let emitted = &self.log[before..];
                assert!(
                    emitted
                        .iter()
                        .all(|s| matches!(s.event, Event::AccountReset { .. } | Event::OrderCancelled { .. })),
                    "{command:?} refused but emitted {emitted:?}"
                );
                if emitted.is_empty() {
                    assert_eq!(self.ex.state(), state_before, "{command:?} refused but changed state");
                }
            }
        }
    }
}

/// Balances as the log says they must be.
#[derive(Default)]
struct Expected {
    cash: HashMap<PlayerId, Decimal>,
    shares: BTreeMap<(PlayerId, AssetId), i128>,
}

fn expected(log: &[Stamped]) -> Expected {
    let mut e = Expected::default();
    for stamped in log {
        match &stamped.event {
            Event::AccountOpened { player, cash, .. } => {
                e.cash.insert(*player, *cash);
            }
            Event::CashCredited { player, amount, .. } => *e.cash.entry(*player).or_default() += *amount,
            Event::AccountReset { player, cash, .. } => {
                e.cash.insert(*player, *cash);
                e.shares.retain(|(holder, _), _| holder != player);
            }
            Event::Traded(trade) => {
                *e.cash.entry(trade.player).or_default() += trade.cash_delta();
                let signed = if trade.side == Side::Buy { i128::from(trade.qty) } else { -i128::from(trade.qty) };
                *e.shares.entry((trade.player, trade.asset)).or_default() += signed;
            }
            _ => {}
        }
    }
    e.shares.retain(|_, qty| *qty != 0);
    e
}

fn check(sim: &Sim, xp_seen: &mut HashMap<PlayerId, u64>) {
    let ex = &sim.ex;
    // Conservation: every ledger is what the log says, to the cent and share.
    let e = expected(&sim.log);
    for (player, account) in ex.players() {
        assert_eq!(e.cash.get(player).copied().unwrap_or_default(), account.cash, "cash of {player:?}");
        assert!(account.cash >= Decimal::ZERO && account.free_cash() >= Decimal::ZERO, "negative cash {player:?}");
        for position in &account.positions {
            let logged = e.shares.get(&(*player, position.asset)).copied().unwrap_or(0);
            assert_eq!(logged, i128::from(position.qty), "shares of {player:?} in {:?}", position.asset);
        }
        // XP (and so the level) never falls.
        let xp = account.profile.xp;
        let seen = xp_seen.entry(*player).or_insert(0);
        assert!(xp >= *seen, "XP of {player:?} fell from {seen} to {xp}");
        *seen = xp;
        // Level caps: no position above what the level allows.
        let cap = ex.unlocks_of(account).position_qty_max(ex.rules().position_qty_max);
        for position in &account.positions {
            assert!(position.qty <= cap.max(ex.rules().position_qty_max), "position over any cap");
        }
    }
    // Replay reproduces the state exactly.
    let mut replayed =
        Exchange::new(universe(), MarketRules::default()).with_game_rules(Arc::new(GameRules::default()));
    for stamped in &sim.log {
        replayed.apply(stamped);
    }
    assert_eq!(replayed.state(), ex.state(), "replay differs");
}

/// Once-only facts of the whole log.
fn check_log(log: &[Stamped]) {
    let mut achieved: BTreeSet<(PlayerId, String)> = BTreeSet::new();
    let mut paid: BTreeSet<(PlayerId, PaymentId)> = BTreeSet::new();
    let mut claim_days: BTreeSet<(PlayerId, i64)> = BTreeSet::new();
    let mut last_claim: HashMap<PlayerId, i64> = HashMap::new();
    let mut fired: BTreeSet<u64> = BTreeSet::new();
    for stamped in log {
        match &stamped.event {
            Event::Game { player, change: GameChange::Achieved { id, .. } } => {
                assert!(achieved.insert((*player, id.to_string())), "{id} granted twice to {player:?}");
            }
            Event::Game { player, change: GameChange::Entitled { payment: Some(payment), .. } } => {
                assert!(paid.insert((*player, *payment)), "payment {payment:?} granted twice");
            }
            Event::Game { player, change: GameChange::DailyClaimed { claim, .. } } => {
                // Never twice on one local day, whatever the clock or zone did;
                // and each claim's day is after the previous claim's.
                assert!(
                    claim_days.insert((*player, claim.day)),
                    "two daily claims on day {} for {player:?}",
                    claim.day
                );
                if let Some(previous) = last_claim.insert(*player, claim.day) {
                    assert!(claim.day > previous, "claim day went from {previous} to {}", claim.day);
                }
            }
            Event::AlertFired { alert, .. } => assert!(fired.insert(alert.id.0), "alert {} fired twice", alert.id.0),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn game_rules_hold_under_random_play(ops in prop::collection::vec(op(), 1..160)) {
        let mut sim = Sim::new();
        let mut xp_seen = HashMap::new();
        for player in 0..PLAYERS {
            sim.step(&Op::Open { player });
        }
        for (index, op) in ops.iter().enumerate() {
            sim.step(op);
            if index % 16 == 0 {
                check(&sim, &mut xp_seen);
            }
        }
        check(&sim, &mut xp_seen);
        check_log(&sim.log);
    }
}

#[test]
fn a_new_season_resets_portfolios_with_explicit_events() {
    let mut sim = Sim::new();
    sim.step(&Op::Open { player: 1 });
    sim.step(&Op::Trade { player: 1, asset: 0, buy: true, qty: 50, kind: 0 });
    sim.step(&Op::Daily { player: 1 });
    let account = sim.ex.account(PlayerId(1)).unwrap();
    assert!(!account.positions.is_empty());
    let season = account.season;
    // 29 days later a new season has begun: the next command resets first.
    sim.at_ms += 29 * 24 * HOUR_MS;
    sim.step(&Op::Review { player: 1 });
    let account = sim.ex.account(PlayerId(1)).unwrap();
    assert!(account.season > season, "season did not advance");
    assert!(account.positions.is_empty(), "holdings survived the season");
    assert_eq!(account.cash, MarketRules::default().starting_cash);
    assert!(account.profile.xp > 0, "XP is kept across seasons");
    assert!(sim.log.iter().any(|s| matches!(s.event, Event::AccountReset { .. })));
    let e = expected(&sim.log);
    assert_eq!(e.cash[&PlayerId(1)], account.cash);
}

#[test]
fn daily_bonus_once_per_local_day_around_midnight() {
    let mut sim = Sim::new();
    sim.step(&Op::Open { player: 2 });
    // 23:59 UTC, then 00:01 UTC: two days, two claims.
    sim.at_ms = START_MS + 24 * HOUR_MS - 60_000;
    sim.step(&Op::Daily { player: 2 });
    sim.at_ms += 120_000;
    sim.step(&Op::Daily { player: 2 });
    // Moving east (+14h) puts the player on a later local day: still at most
    // one claim per local day, and never more than the calendar allows.
    sim.step(&Op::Zone { player: 2, minutes: 840 });
    sim.step(&Op::Daily { player: 2 });
    sim.step(&Op::Daily { player: 2 });
    // The clock going back does not reopen a day.
    sim.at_ms -= 3 * HOUR_MS;
    sim.step(&Op::Daily { player: 2 });
    let claims = sim
        .log
        .iter()
        .filter(|s| matches!(s.event, Event::Game { change: GameChange::DailyClaimed { .. }, .. }))
        .count();
    assert!(claims <= 3, "{claims} claims");
    check_log(&sim.log);
}

#[test]
fn small_orders_add_up_to_trading_xp() {
    let xp_events = |sim: &Sim| -> Vec<u64> {
        sim.log
            .iter()
            .filter_map(|stamped| match &stamped.event {
                Event::Game { change: GameChange::Xp { gained, .. }, .. } => Some(gained.trade),
                _ => None,
            })
            .collect()
    };
    let mut sim = Sim::new();
    sim.step(&Op::Open { player: 3 });
    // T0 trades near 20: three shares are worth about 60, under a point's 100.
    sim.step(&Op::Trade { player: 3, asset: 0, buy: true, qty: 3, kind: 0 });
    sim.step(&Op::Review { player: 3 });
    assert_eq!(xp_events(&sim), Vec::<u64>::new(), "too little for a point: nothing counted yet");
    sim.step(&Op::Trade { player: 3, asset: 0, buy: false, qty: 3, kind: 0 });
    sim.step(&Op::Review { player: 3 });
    assert_eq!(xp_events(&sim), vec![1], "two small orders together earn the point");
}
