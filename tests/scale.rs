//! The scale test — run by hand, never in CI (`#[ignore]`): fills a fresh
//! PostgreSQL database with 1,000,000 players and 10,000,000 trades through
//! the store's own append path (group commits of 1,000 players: each one's
//! opening and ten fills, with the ledgers they leave), checkpoints, saves
//! the market snapshot a server resumes from, and checks that the audit
//! agrees. README.md ("The audit at scale") says how to measure `serve` on it.
//!
//! ```sh
//! createdb -h 127.0.0.1 -U postgres stockbot_scale
//! STOCKBOT_SCALE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/stockbot_scale \
//!   cargo test --release --test scale -- --ignored --nocapture
//! ```
//! `STOCKBOT_SCALE_PLAYERS` and `STOCKBOT_SCALE_TRADES` change the size;
//! the local player `scale-N` is the Nth.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use actors::domain::account::Account;
use actors::domain::event::{Event, Stamped, Trade};
use actors::domain::exchange::Exchange;
use actors::domain::ids::{AssetId, TradeId};
use actors::domain::order::Side;
use actors::domain::price_model::MarketModel;
use actors::ports::{EventBatch, MarketSnapshot, Store};
use rust_decimal::Decimal;
use stockbot::bot::local_player_id;
use stockbot::config::Settings;
use stockbot::store::postgres::PostgresStore;

/// Players per appended batch (one group commit).
const PLAYERS_PER_BATCH: usize = 1_000;
/// Clock time of the generated log (2024-06-01).
const AT_MS: i64 = 1_717_200_000_000;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.replace('_', "").parse().ok()).unwrap_or(default)
}

/// Writes the log: per player an opening, then `trades` fills (buy one
/// share, sell it back, alternately), as the market would have.
struct Generator {
    prices: Vec<Decimal>,
    starting_cash: Decimal,
    fee: Decimal,
    next_seq: u64,
    next_trade: u64,
}

impl Generator {
    fn batch(&mut self, players: std::ops::Range<usize>, trades_per_player: usize, extra: usize) -> EventBatch {
        let mut batch = EventBatch::default();
        for index in players {
            let player = local_player_id(&format!("scale-{index}"));
            let mut account = Account::opened(self.starting_cash, 0);
            self.push(&mut batch, Event::AccountOpened { player, cash: self.starting_cash, season: 0 });
            let trades = trades_per_player + usize::from(index < extra);
            for n in 0..trades {
                let asset = (index + n / 2) % self.prices.len();
                let side = if n % 2 == 0 { Side::Buy } else { Side::Sell };
                let trade = Trade {
                    id: TradeId(self.next_trade),
                    order: None,
                    player,
                    asset: AssetId(u16::try_from(asset).unwrap()),
                    side,
                    qty: 1,
                    price: self.prices[asset],
                    fee: self.fee,
                };
                self.next_trade += 1;
                account.apply_trade(&trade);
                self.push(&mut batch, Event::Traded(trade));
            }
            batch.accounts.push((player, account));
        }
        batch
    }

    fn push(&mut self, batch: &mut EventBatch, event: Event) {
        batch.events.push(Stamped { seq: self.next_seq, at_ms: AT_MS, event });
        self.next_seq += 1;
    }
}

#[test]
#[ignore = "fills a database with 10 M trades: run by hand (see the module docs)"]
fn a_million_players_and_ten_million_trades() {
    let url = std::env::var("STOCKBOT_SCALE_DATABASE_URL").expect("STOCKBOT_SCALE_DATABASE_URL names a fresh database");
    let players = env_or("STOCKBOT_SCALE_PLAYERS", 1_000_000);
    let trades = env_or("STOCKBOT_SCALE_TRADES", 10_000_000);
    actix::System::new().block_on(async move {
        let config = Settings::load_from(None).unwrap().engine;
        let universe = Arc::new(config.universe().unwrap());
        let store = PostgresStore::connect_and_migrate(&url, 8).await.unwrap();
        let mut generator = Generator {
            prices: universe.assets().iter().map(|spec| spec.initial_price).collect(),
            starting_cash: config.market.starting_cash,
            fee: config.market.fee_min,
            next_seq: 1,
            next_trade: 1,
        };
        let started = Instant::now();
        for first in (0..players).step_by(PLAYERS_PER_BATCH) {
            let batch =
                generator.batch(first..(first + PLAYERS_PER_BATCH).min(players), trades / players, trades % players);
            store.append(Arc::new(batch)).await.unwrap();
            if (first / PLAYERS_PER_BATCH) % 100 == 99 {
                println!("{} events in {:.1} s", generator.next_seq - 1, started.elapsed().as_secs_f64());
            }
        }
        store.checkpoint().await.unwrap();
        // The snapshot a server resumes from: the configured market, after the log.
        let model = MarketModel::new(&universe, config.engine.seed);
        let mut exchange = Exchange::new(Arc::clone(&universe), config.market.clone()).market_state();
        exchange.next_seq = generator.next_seq;
        exchange.next_trade = generator.next_trade;
        let snapshot = MarketSnapshot { exchange, sectors: model.sectors, assets: model.assets };
        store.save_market(Arc::new(snapshot)).await.unwrap();
        let events = generator.next_seq - 1;
        #[allow(clippy::cast_precision_loss)]
        let rate = events as f64 / started.elapsed().as_secs_f64();
        println!(
            "{players} players, {} trades: {events} events in {:.1} s ({rate:.0}/s), checkpointed",
            generator.next_trade - 1,
            started.elapsed().as_secs_f64()
        );
        let tickers: Vec<String> = universe.assets().iter().map(|spec| spec.ticker.as_str().to_owned()).collect();
        let audit_started = Instant::now();
        let audit = store.audit(Arc::new(tickers)).await.unwrap();
        println!("audit ok={} events={} in {:.1} s", audit.ok, audit.events, audit_started.elapsed().as_secs_f64());
        assert!(audit.ok, "{audit:?}");
        assert_eq!(audit.events, events);
    });
}
