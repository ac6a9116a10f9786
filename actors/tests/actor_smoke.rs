//! Smoke test of the actor system: open, buy, sell, tick, persist, passivate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;

use actors::clock::ManualClock;
use actors::config::EngineConfig;
use actors::domain::asset::{AssetSpec, CategorySpec, ModelParams};
use actors::domain::command::{Command, Outcome};
use actors::domain::exchange::Placed;
use actors::domain::game::GameRules;
use actors::domain::ids::{AssetId, PlayerId, Quantity, Ticker};
use actors::domain::order::{OrderKind, OrderRequest, Side};
use actors::engine::{Engine, EngineDeps};
use actors::ports::NullNotifier;
use actors::ports::memory::MemoryStore;
use rust_decimal_macros::dec;

fn config() -> EngineConfig {
    let categories =
        vec![CategorySpec { name: "Tech".into(), vol_daily: 0.015, jump_rate_daily: 0.1, jump_sigma: 0.02 }];
    let assets = ["ACME", "QBIT"]
        .iter()
        .map(|t| AssetSpec {
            ticker: Ticker::parse(t).unwrap(),
            name: format!("{t} Inc"),
            category: "Tech".into(),
            initial_price: dec!(50),
            model: ModelParams::default(),
        })
        .collect();
    EngineConfig {
        engine: Default::default(),
        market: Default::default(),
        game: GameRules::open(),
        factors: Default::default(),
        categories,
        assets,
    }
}

#[actix::test]
async fn trades_flow_through_the_actor_system() {
    let config = config();
    let store = MemoryStore::new();
    let clock = ManualClock::new(1_700_000_000_000);
    let deps = EngineDeps {
        store: Arc::new(store.clone()),
        clock: Arc::new(clock.clone()),
        notifier: Arc::new(NullNotifier),
        autonomous_ticker: false,
    };
    let engine = Engine::start(&config, deps).await.unwrap();
    let player = PlayerId(42);
    assert_eq!(engine.execute_one(Command::Open { player }).await, Ok(Outcome::Opened { new: true }));
    let buy = OrderRequest {
        player,
        asset: AssetId(0),
        side: Side::Buy,
        qty: Quantity::new(10).unwrap(),
        kind: OrderKind::Market,
    };
    let outcome = engine.execute_one(Command::Place(buy)).await.unwrap();
    let Outcome::Placed(Placed::Filled(fill)) = outcome else { panic!("expected a fill, got {outcome:?}") };
    assert_eq!(fill.held_after, 10);
    assert!(fill.cash_after < dec!(10000) - dec!(500));
    let changed = engine.step().await.unwrap().unwrap();
    assert_eq!(changed.quotes.len(), 2);
    let portfolio = engine.portfolio(player).await.unwrap().unwrap();
    assert_eq!(portfolio.ledger.account.held(AssetId(0)), 10);
    assert_eq!(portfolio.ledger.account.cash, fill.cash_after);
    engine.shutdown().await.unwrap();
    assert!(store.len() >= 4, "open, trade and two ticks are durable");
    assert!(engine.execute_one(Command::Open { player: PlayerId(7) }).await.is_err(), "closed after shutdown");
}
