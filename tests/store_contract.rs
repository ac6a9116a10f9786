#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! The `Store` contract: one suite run against the in-memory store (the
//! reference), PostgreSQL (a fresh database per test on the local server,
//! or `TEST_DATABASE_URL`) and the embedded SQLite store (a temporary
//! directory per test). Batches come from a real `Exchange` driven by a
//! seeded command mix, so the data is what the engine writes; every result
//! is checked against the exchange's own state and, where the port defines
//! it, against the in-memory reference fed the same batches.
//!
//! Throughput (not a test, run by hand):
//! `cargo test --release --test store_contract -- --ignored --nocapture throughput`

#[path = "store_contract/backends.rs"]
mod backends;
#[path = "store_contract/scenario.rs"]
mod scenario;

use std::sync::Arc;
use std::time::Instant;

use actors::domain::account::Account;
use actors::domain::alert::Entitlement;
use actors::domain::command::Command;
use actors::domain::daily::{DAY_MS, UtcOffset};
use actors::domain::event::{CancelReason, Event, ResetReason, Stamped};
use actors::domain::ids::{AssetId, PlayerId};
use actors::domain::order::Side;
use actors::domain::profile::{GameChange, PaymentId};
use actors::ports::memory::MemoryStore;
use actors::ports::{Candle, CommitGate, EventBatch, Store, StoreError};
use backends::{Backend, Embedded, Memory, Postgres};
use rust_decimal::Decimal;
use scenario::{Scenario, shifted};
use stockbot::store::PostgresStore;

/// A store under test next to the reference, fed the same batches.
struct Fixture<B: Backend> {
    backend: B,
    store: Arc<dyn Store>,
    reference: MemoryStore,
}

impl<B: Backend> Fixture<B> {
    async fn new() -> Self {
        let backend = B::create().await;
        let store = backend.store();
        Self { backend, store, reference: MemoryStore::new() }
    }

    /// Appends to both; they must agree on the outcome.
    async fn append(&self, batch: &EventBatch) -> Result<(), StoreError> {
        let result = self.store.append(Arc::new(batch.clone())).await;
        let expected = self.reference.append(Arc::new(batch.clone())).await;
        assert_eq!(result.is_ok(), expected.is_ok(), "store: {result:?}, reference: {expected:?}");
        result
    }

    async fn reopen(&mut self) {
        // Only the harness may hold the store while it reopens.
        self.store = Arc::new(MemoryStore::new());
        self.backend.reopen().await;
        self.store = self.backend.store();
    }

    async fn all_events(&self) -> Vec<Stamped> {
        self.store.events_after(0, usize::MAX).await.unwrap()
    }

    /// Every player's stored ledger is the exchange's, and so are the
    /// stored resting orders (where the store keeps them apart).
    async fn assert_ledgers(&self, scenario: &Scenario) {
        for player in &scenario.players {
            let stored = self.store.load_account(*player).await.unwrap();
            assert_eq!(stored.as_ref(), scenario.exchange.account(*player), "ledger of {player}");
        }
        if let Some(stored) = self.backend.resting_orders().await {
            let mut resting: Vec<u64> =
                scenario.exchange.market_state().books.iter().flat_map(|b| b.resting.iter().map(|o| o.id.0)).collect();
            resting.sort_unstable();
            assert_eq!(stored, resting, "resting orders");
        }
    }
}

/// A scenario with accounts open and `batches` busy batches, all appended.
async fn played<B: Backend>(seed: u64, players: i64, batches: usize) -> (Fixture<B>, Scenario) {
    let fixture = Fixture::<B>::new().await;
    let mut scenario = Scenario::new(seed, players);
    fixture.append(&scenario.open_all()).await.unwrap();
    for _ in 0..batches {
        fixture.append(&scenario.busy(40)).await.unwrap();
    }
    (fixture, scenario)
}

/// Under the game's rules: the first player is referred by nobody and
/// refers the second, sets a time zone, buys an entitlement and claims the
/// daily bonus; then everyone trades, with a review (XP, achievements) after
/// every busy batch.
fn game_profiles(scenario: &mut Scenario) -> Vec<EventBatch> {
    let (first, second) = (scenario.players[0], scenario.players[1]);
    let mut batches = vec![scenario.batch(|s, out| {
        assert!(s.run(Command::Refer { player: second, referrer: first }, out));
        let offset = UtcOffset::from_minutes(120).unwrap();
        assert!(s.run(Command::SetTimeZone { player: first, offset }, out));
        let payment = Some(PaymentId::of("charge-1"));
        assert!(s.run(Command::Grant { player: first, entitlement: Entitlement::Premium, payment }, out));
        assert!(s.run(Command::ClaimDaily { player: first }, out));
    })];
    for _ in 0..5 {
        batches.push(scenario.busy(40));
        batches.push(scenario.batch(|s, out| {
            for player in s.players.clone() {
                assert!(s.run(Command::Review { player }, out));
            }
        }));
    }
    batches
}

/// The player with the most resting orders (then positions) goes bankrupt:
/// their orders are cancelled, the account restarts from starting cash.
/// Returns the batch, the player and their ledger right after.
fn bankruptcy(scenario: &mut Scenario) -> (EventBatch, PlayerId, Account) {
    let victim = *scenario
        .players
        .iter()
        .max_by_key(|p| {
            let account = scenario.exchange.account(**p).unwrap();
            (account.open_orders, account.positions.len())
        })
        .unwrap();
    let before = scenario.exchange.account(victim).unwrap().clone();
    assert!(before.open_orders > 0 && !before.positions.is_empty(), "{before:?}");
    let batch = scenario.batch(|s, out| assert!(s.run(Command::Bankrupt { player: victim }, out)));
    let cancelled = batch
        .events
        .iter()
        .filter(|e| matches!(e.event, Event::OrderCancelled { reason: CancelReason::AccountReset, .. }))
        .count();
    assert_eq!(cancelled, before.open_orders as usize);
    assert!(batch.events.iter().any(|e| matches!(
        e.event,
        Event::AccountReset { player, reason: ResetReason::Bankruptcy, .. } if player == victim
    )));
    assert!(batch.events.iter().any(|e| matches!(e.event, Event::Game { change: GameChange::Bankrupt { .. }, .. })));
    let after = scenario.exchange.account(victim).unwrap().clone();
    (batch, victim, after)
}

/// A month later a new season has begun: every player's next command
/// (a review) resets their account first.
fn new_season(scenario: &mut Scenario) -> EventBatch {
    scenario.now_ms += 29 * DAY_MS;
    let batch = scenario.batch(|s, out| {
        for player in s.players.clone() {
            assert!(s.run(Command::Review { player }, out));
        }
    });
    let resets = batch
        .events
        .iter()
        .filter(|e| matches!(e.event, Event::AccountReset { reason: ResetReason::Season { .. }, .. }));
    assert_eq!(resets.count(), scenario.players.len());
    batch
}

/// The game records the profile test relies on are really there.
fn assert_rich_profiles(scenario: &Scenario) {
    let (first, second) = (scenario.players[0], scenario.players[1]);
    let profile = &scenario.exchange.account(first).unwrap().profile;
    assert!(profile.xp > 0 && !profile.achievements.is_empty(), "{profile:?}");
    assert!(profile.entitlements.contains(&Entitlement::Premium) && profile.payments.len() == 1, "{profile:?}");
    assert!(profile.daily.streak > 0 && profile.utc_offset.minutes() == 120, "{profile:?}");
    assert_eq!(scenario.exchange.account(second).unwrap().profile.referrer, Some(first));
    let accounts: Vec<_> = scenario.players.iter().filter_map(|p| scenario.exchange.account(*p)).collect();
    assert!(accounts.iter().all(|a| a.season != 0 && a.traded_value > Decimal::ZERO));
    assert!(accounts.iter().any(|a| a.resting_fills > 0), "resting fills");
    assert!(accounts.iter().any(|a| a.profitable_sales > 0), "profitable sales");
}

fn is_invalid<T: std::fmt::Debug>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Invalid(_)))
}

// ---- the cases ------------------------------------------------------------

mod cases {
    use super::*;

    pub async fn append_and_load_roundtrip<B: Backend>() {
        let (fixture, mut scenario) = played::<B>(1, 12, 8).await;
        // A position bought, then sold whole in a later batch, leaves no trace.
        let player = PlayerId(500);
        let bought = scenario.batch(|s, out| {
            assert!(s.run(Command::Open { player }, out));
            assert!(s.market(player, 2, Side::Buy, 3, out));
        });
        fixture.append(&bought).await.unwrap();
        assert_eq!(fixture.store.load_account(player).await.unwrap().unwrap().held(AssetId(2)), 3);
        let sold = scenario.batch(|s, out| assert!(s.market(player, 2, Side::Sell, 3, out)));
        fixture.append(&sold).await.unwrap();
        let stored = fixture.store.load_account(player).await.unwrap().unwrap();
        assert!(stored.positions.is_empty());
        assert_eq!(Some(&stored), scenario.exchange.account(player));
        fixture.assert_ledgers(&scenario).await;

        let accounts: Vec<_> = scenario.players.iter().filter_map(|p| scenario.exchange.account(*p)).collect();
        assert!(accounts.iter().any(|a| a.positions.len() >= 2), "someone holds two assets");
        assert!(accounts.iter().any(|a| a.open_orders > 0 && a.reserved_cash > Decimal::ZERO), "resting buys");
        assert!(accounts.iter().any(|a| a.positions.iter().any(|p| p.reserved_qty > 0)), "resting sells");
        assert!(scenario.count(|e| matches!(e, Event::Traded(t) if t.order.is_some())) > 0, "resting fills");
        assert!(scenario.count(|e| matches!(e, Event::OrderCancelled { .. })) > 0, "cancels");
        assert!(scenario.count(|e| matches!(e, Event::CashCredited { .. })) > 0, "credits");

        assert_eq!(fixture.store.load_account(PlayerId(987_654)).await.unwrap(), None);
        assert_eq!(fixture.all_events().await, scenario.log);
        fixture.store.ping().await.unwrap();
    }

    pub async fn seq_must_continue_the_log<B: Backend>() {
        let fixture = Fixture::<B>::new().await;
        let mut scenario = Scenario::new(2, 6);
        let opened = scenario.open_all();
        assert!(is_invalid(&fixture.append(&shifted(&opened, 1)).await), "an empty log starts at 1");
        fixture.append(&opened).await.unwrap();
        let next = scenario.busy(30);
        assert!(is_invalid(&fixture.append(&shifted(&next, 1)).await), "a gap");
        assert!(is_invalid(&fixture.append(&shifted(&next, -1)).await), "a repeated seq");
        assert!(is_invalid(&fixture.append(&shifted(&next, -5)).await), "repeated seqs");

        // The refused batches left nothing: neither events nor ledgers.
        assert_eq!(fixture.all_events().await, opened.events);
        for (player, account) in &opened.accounts {
            assert_eq!(fixture.store.load_account(*player).await.unwrap().as_ref(), Some(account));
        }
        assert!(fixture.store.trades_of(scenario.players[0], u64::MAX, 100).await.unwrap().is_empty());
        assert!(fixture.store.audit(scenario.tickers()).await.unwrap().ok);

        fixture.append(&next).await.unwrap();
        assert_eq!(fixture.all_events().await, scenario.log);
        fixture.assert_ledgers(&scenario).await;
    }

    pub async fn events_after_pages<B: Backend>() {
        let (fixture, scenario) = played::<B>(3, 8, 5).await;
        let log = &scenario.log;
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let page = fixture.store.events_after(after, 7).await.unwrap();
            assert!(page.len() <= 7);
            let Some(last) = page.last() else { break };
            after = last.seq;
            paged.extend(page);
        }
        assert_eq!(&paged, log);
        assert_eq!(fixture.store.events_after(5, 3).await.unwrap(), log[5..8].to_vec());
        assert!(fixture.store.events_after(log.len() as u64, 10).await.unwrap().is_empty());
        assert!(fixture.store.events_after(0, 0).await.unwrap().is_empty());
        assert_eq!(fixture.store.events_after(0, usize::MAX).await.unwrap(), *log);
    }

    pub async fn market_snapshot_roundtrip<B: Backend>() {
        let fixture = Fixture::<B>::new().await;
        let mut scenario = Scenario::new(4, 6);
        assert!(fixture.store.load_market().await.unwrap().is_none());
        let first = scenario.snapshot();
        fixture.store.save_market(Arc::new(first.clone())).await.unwrap();
        let loaded = fixture.store.load_market().await.unwrap().unwrap();
        assert_eq!(serde_json::to_string(&loaded).unwrap(), serde_json::to_string(&first).unwrap());

        fixture.append(&scenario.open_all()).await.unwrap();
        for _ in 0..4 {
            fixture.append(&scenario.busy(40)).await.unwrap();
        }
        let later = scenario.snapshot();
        assert!(later.exchange.books.iter().any(|book| !book.resting.is_empty()), "books with resting orders");
        fixture.store.save_market(Arc::new(later.clone())).await.unwrap();
        let loaded = fixture.store.load_market().await.unwrap().unwrap();
        assert_eq!(loaded.exchange, later.exchange);
        assert_eq!(serde_json::to_string(&loaded).unwrap(), serde_json::to_string(&later).unwrap());
    }

    pub async fn audit_reconciles_and_catches_tampering<B: Backend>() {
        let (mut fixture, scenario) = played::<B>(5, 10, 6).await;
        let tickers = scenario.tickers();
        let audit = fixture.store.audit(Arc::clone(&tickers)).await.unwrap();
        assert!(audit.ok, "{audit:?}");
        assert_eq!(audit, fixture.reference.audit(Arc::clone(&tickers)).await.unwrap());
        assert_eq!(audit.events, scenario.log.len() as u64);
        let accounts: Vec<_> = scenario.players.iter().filter_map(|p| scenario.exchange.account(*p)).collect();
        assert_eq!(audit.cash_total, accounts.iter().map(|a| a.cash).sum::<Decimal>());
        for (index, ticker) in tickers.iter().enumerate() {
            let held: u64 = accounts.iter().map(|a| a.held(AssetId(index as u16))).sum();
            assert_eq!(audit.shares.get(ticker).copied().unwrap_or(0), held, "{ticker}");
        }
        // Assets the caller cannot name are reported by id.
        let unnamed = fixture.store.audit(Arc::new(vec!["ACME".to_owned()])).await.unwrap();
        assert_eq!(unnamed, fixture.reference.audit(Arc::new(vec!["ACME".to_owned()])).await.unwrap());

        let victim = scenario.players[3];
        fixture.backend.tamper_cash(victim, Decimal::new(1, 2)).await;
        fixture.store = fixture.backend.store();
        let audit = fixture.store.audit(Arc::clone(&tickers)).await.unwrap();
        assert!(!audit.ok, "one cent too many must be noticed");
        assert_eq!(audit.cash_total, accounts.iter().map(|a| a.cash).sum::<Decimal>() + Decimal::new(1, 2));
    }

    pub async fn trades_of_pages_newest_first<B: Backend>() {
        let (fixture, scenario) = played::<B>(6, 5, 8).await;
        let player = *scenario
            .players
            .iter()
            .max_by_key(|p| scenario.count(|e| matches!(e, Event::Traded(t) if t.player == **p)))
            .unwrap();
        let mut expected: Vec<_> = scenario
            .log
            .iter()
            .filter_map(|e| match &e.event {
                Event::Traded(trade) if trade.player == player => Some((e.seq, e.at_ms, *trade)),
                _ => None,
            })
            .collect();
        expected.reverse();
        assert!(expected.len() >= 7, "player {player} traded {} times", expected.len());

        let mut paged = Vec::new();
        let mut before = u64::MAX;
        loop {
            let page = fixture.store.trades_of(player, before, 3).await.unwrap();
            assert_eq!(page, fixture.reference.trades_of(player, before, 3).await.unwrap());
            let Some(last) = page.last() else { break };
            before = last.seq;
            paged.extend(page);
        }
        let paged: Vec<_> = paged.iter().map(|r| (r.seq, r.at_ms, r.trade)).collect();
        assert_eq!(paged, expected);
        assert!(fixture.store.trades_of(player, 1, 10).await.unwrap().is_empty());
        assert!(fixture.store.trades_of(PlayerId(987_654), u64::MAX, 10).await.unwrap().is_empty());
    }

    pub async fn candles_bucket_by_minute<B: Backend>() {
        let (fixture, scenario) = played::<B>(7, 8, 12).await;
        let mut traded_volume = 0;
        for asset in 0..3_u16 {
            let asset = AssetId(asset);
            let candles = fixture.store.candles(asset, 0, 10_000).await.unwrap();
            assert_eq!(candles, fixture.reference.candles(asset, 0, 10_000).await.unwrap());
            assert!(candles.len() >= 3, "{asset:?}: {candles:?}");
            assert!(candles.windows(2).all(|w| w[0].start_ms < w[1].start_ms));
            assert!(candles.iter().all(|c| c.start_ms % 60_000 == 0 && c.low <= c.open && c.open <= c.high));
            assert!(candles.iter().all(|c| c.low <= c.close && c.close <= c.high));
            traded_volume += candles.iter().map(|c| c.volume).sum::<u64>();

            let since = candles[1].start_ms;
            let page = fixture.store.candles(asset, since, 2).await.unwrap();
            assert_eq!(page, candles[1..3].to_vec());
            assert_eq!(page, fixture.reference.candles(asset, since, 2).await.unwrap());
        }
        assert!(traded_volume > 0);
        assert!(scenario.log.len() > 100);
    }

    /// The chart backfill's candles: written before the live ones, never
    /// over one, and written again without effect.
    pub async fn seeded_candles_never_overwrite<B: Backend>() {
        let (fixture, _) = played::<B>(8, 6, 6).await;
        let asset = AssetId(1);
        let live = fixture.store.candles(asset, i64::MIN, 10_000).await.unwrap();
        let first = live[0];
        let past = |start_ms: i64, price: f64| Candle {
            start_ms,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: 0,
        };
        let seeded = Arc::new(vec![
            (asset, past(first.start_ms - 120_000, 1.5)),
            (asset, past(first.start_ms - 60_000, 1.25)),
            (asset, past(first.start_ms, 999.0)),
        ]);
        for _ in 0..2 {
            fixture.store.seed_candles(Arc::clone(&seeded)).await.unwrap();
            fixture.reference.seed_candles(Arc::clone(&seeded)).await.unwrap();
        }
        let all = fixture.store.candles(asset, i64::MIN, 10_000).await.unwrap();
        assert_eq!(all.len(), live.len() + 2, "{all:?}");
        assert_eq!(all[..2], [seeded[0].1, seeded[1].1]);
        assert_eq!(all[2..], live[..], "a live candle was overwritten");
        assert_eq!(all, fixture.reference.candles(asset, i64::MIN, 10_000).await.unwrap());
        let other = fixture.store.candles(AssetId(0), i64::MIN, 10_000).await.unwrap();
        assert_eq!(other, fixture.reference.candles(AssetId(0), i64::MIN, 10_000).await.unwrap());
    }

    pub async fn same_player_twice_last_wins<B: Backend>() {
        let fixture = Fixture::<B>::new().await;
        let mut scenario = Scenario::new(8, 6);
        fixture.append(&scenario.open_all()).await.unwrap();
        let player = PlayerId(500);
        let first = scenario.batch(|s, out| {
            assert!(s.run(Command::Open { player }, out));
            assert!(s.market(player, 0, Side::Buy, 4, out));
            assert!(s.market(player, 1, Side::Buy, 2, out));
        });
        let busy = scenario.busy(30);
        let second = scenario.batch(|s, out| assert!(s.market(player, 0, Side::Sell, 4, out)));
        // What group commit makes of three market batches: one batch, with
        // the player's ledger three times (each as it stood after its batch).
        let mut merged = EventBatch::default();
        for batch in [&first, &busy, &second] {
            merged.events.extend(batch.events.iter().cloned());
            merged.accounts.extend(batch.accounts.iter().cloned());
        }
        assert!(merged.accounts.iter().filter(|(p, _)| *p == player).count() >= 2);
        fixture.append(&merged).await.unwrap();
        fixture.assert_ledgers(&scenario).await;
        let stored = fixture.store.load_account(player).await.unwrap().unwrap();
        assert_eq!(Some(&stored), scenario.exchange.account(player));
        assert_eq!(stored.held(AssetId(0)), 0, "the position sold in the last batch is gone");
        assert_eq!(stored.held(AssetId(1)), 2);
        assert!(fixture.store.audit(scenario.tickers()).await.unwrap().ok);
    }

    pub async fn survives_reopen<B: Backend>() {
        let (mut fixture, mut scenario) = played::<B>(9, 8, 5).await;
        let snapshot = scenario.snapshot();
        fixture.store.save_market(Arc::new(snapshot.clone())).await.unwrap();
        let audit = fixture.store.audit(scenario.tickers()).await.unwrap();
        let candles = fixture.store.candles(AssetId(0), 0, 1_000).await.unwrap();
        let trades = fixture.store.trades_of(scenario.players[0], u64::MAX, 1_000).await.unwrap();

        fixture.reopen().await;
        assert_eq!(fixture.all_events().await, scenario.log);
        fixture.assert_ledgers(&scenario).await;
        let loaded = fixture.store.load_market().await.unwrap().unwrap();
        assert_eq!(serde_json::to_string(&loaded).unwrap(), serde_json::to_string(&snapshot).unwrap());
        assert_eq!(fixture.store.audit(scenario.tickers()).await.unwrap(), audit);
        assert_eq!(fixture.store.candles(AssetId(0), 0, 1_000).await.unwrap(), candles);
        assert_eq!(fixture.store.trades_of(scenario.players[0], u64::MAX, 1_000).await.unwrap(), trades);

        // The reopened log goes on where it stopped.
        let next = scenario.busy(20);
        assert!(is_invalid(&fixture.append(&shifted(&next, -1)).await));
        fixture.append(&next).await.unwrap();
        fixture.assert_ledgers(&scenario).await;
        assert!(fixture.store.audit(scenario.tickers()).await.unwrap().ok);
    }

    /// The game record, lifetime counters and season come back exactly, as
    /// appended and after a reopen.
    pub async fn game_profile_roundtrip<B: Backend>() {
        let mut fixture = Fixture::<B>::new().await;
        let mut scenario = Scenario::new(16, 6).with_game();
        fixture.append(&scenario.open_all()).await.unwrap();
        for batch in game_profiles(&mut scenario) {
            fixture.append(&batch).await.unwrap();
        }
        assert_rich_profiles(&scenario);
        fixture.assert_ledgers(&scenario).await;
        fixture.reopen().await;
        fixture.assert_ledgers(&scenario).await;
        assert!(fixture.store.audit(scenario.tickers()).await.unwrap().ok);
        fixture.reopen().await;
        fixture.assert_ledgers(&scenario).await;
    }

    /// A bankruptcy and a new season reset accounts: a reset account holds
    /// nothing, and conservation holds from each player's last reset on.
    pub async fn audit_reconciles_resets<B: Backend>() {
        let mut fixture = Fixture::<B>::new().await;
        let mut scenario = Scenario::new(17, 8).with_game();
        let tickers = scenario.tickers();
        fixture.append(&scenario.open_all()).await.unwrap();
        for batch in game_profiles(&mut scenario) {
            fixture.append(&batch).await.unwrap();
        }
        let (batch, victim, after) = bankruptcy(&mut scenario);
        fixture.append(&batch).await.unwrap();
        let loaded = fixture.store.load_account(victim).await.unwrap().unwrap();
        assert_eq!(loaded, after);
        assert!(loaded.positions.is_empty() && loaded.open_orders == 0 && loaded.reserved_cash.is_zero());
        assert_eq!(loaded.cash, scenario.exchange.rules().starting_cash);
        assert_eq!(loaded.profile.bankruptcies, 1);
        let audit = fixture.store.audit(Arc::clone(&tickers)).await.unwrap();
        assert!(audit.ok, "{audit:?}");
        assert_eq!(audit, fixture.reference.audit(Arc::clone(&tickers)).await.unwrap());

        // The bankrupt trades again; then a new season resets everyone.
        for _ in 0..2 {
            fixture.append(&scenario.busy(40)).await.unwrap();
        }
        fixture.append(&new_season(&mut scenario)).await.unwrap();
        for player in &scenario.players {
            let loaded = fixture.store.load_account(*player).await.unwrap().unwrap();
            assert!(loaded.positions.is_empty(), "{player}: {loaded:?}");
            assert_eq!(loaded.cash, scenario.exchange.rules().starting_cash);
            assert_eq!(Some(&loaded), scenario.exchange.account(*player));
        }
        for _ in 0..3 {
            fixture.append(&scenario.busy(40)).await.unwrap();
        }
        fixture.assert_ledgers(&scenario).await;
        let audit = fixture.store.audit(Arc::clone(&tickers)).await.unwrap();
        assert!(audit.ok, "{audit:?}");
        assert_eq!(audit, fixture.reference.audit(Arc::clone(&tickers)).await.unwrap());
        let accounts: Vec<_> = scenario.players.iter().filter_map(|p| scenario.exchange.account(*p)).collect();
        assert_eq!(audit.cash_total, accounts.iter().map(|a| a.cash).sum::<Decimal>());

        fixture.reopen().await;
        fixture.assert_ledgers(&scenario).await;
        assert_eq!(fixture.store.audit(Arc::clone(&tickers)).await.unwrap(), audit);
        fixture.backend.tamper_cash(victim, Decimal::new(-1, 2)).await;
        fixture.store = fixture.backend.store();
        let audit = fixture.store.audit(Arc::clone(&tickers)).await.unwrap();
        assert!(!audit.ok, "one cent missing after a reset must be noticed");
    }

    // ---- SQL stores only (the reference has no transactions to roll back) --

    /// A batch that fails after its events went in (a fill whose trade id is
    /// taken) leaves nothing behind.
    pub async fn failing_batch_writes_nothing<B: Backend>() {
        let backend = B::create().await;
        let store = backend.store();
        let mut scenario = Scenario::new(10, 8);
        store.append(Arc::new(scenario.open_all())).await.unwrap();
        store.append(Arc::new(scenario.busy(40))).await.unwrap();
        let before_events = store.events_after(0, usize::MAX).await.unwrap();
        let before_audit = store.audit(scenario.tickers()).await.unwrap();
        let before_candles = store.candles(AssetId(0), 0, 1_000).await.unwrap();
        let taken = scenario.log.iter().find_map(|e| match &e.event {
            Event::Traded(trade) => Some(trade.id),
            _ => None,
        });

        let next = scenario.busy(40);
        let mut broken = next.clone();
        let last_fill = broken.events.iter_mut().rev().find_map(|e| match &mut e.event {
            Event::Traded(trade) => Some(trade),
            _ => None,
        });
        last_fill.unwrap().id = taken.unwrap();
        let result = store.append(Arc::new(broken)).await;
        assert!(is_invalid(&result), "{result:?}");

        assert_eq!(store.events_after(0, usize::MAX).await.unwrap(), before_events);
        assert_eq!(store.audit(scenario.tickers()).await.unwrap(), before_audit);
        assert_eq!(store.candles(AssetId(0), 0, 1_000).await.unwrap(), before_candles);
        store.append(Arc::new(next)).await.unwrap();
        assert_eq!(store.events_after(0, usize::MAX).await.unwrap(), scenario.log);
        for player in &scenario.players {
            assert_eq!(store.load_account(*player).await.unwrap().as_ref(), scenario.exchange.account(*player));
        }
    }

    /// Pipelined group commit: a batch appended after one still committing
    /// commits after it (both land, in order), and one whose predecessor
    /// failed writes nothing and can be sent again after it.
    pub async fn pipelined_appends_keep_the_log<B: Backend>() {
        let fixture = Fixture::<B>::new().await;
        let mut scenario = Scenario::new(21, 8);
        fixture.append(&scenario.open_all()).await.unwrap();
        for _ in 0..3 {
            let (first, second) = (scenario.busy(30), scenario.busy(30));
            let (signal, gate) = CommitGate::new();
            let later = Arc::clone(&fixture.store).append_after(Arc::new(second.clone()), gate);
            let earlier = fixture.store.append(Arc::new(first.clone()));
            let earlier = async move {
                let result = earlier.await;
                signal.done(result.is_ok());
                result
            };
            let (earlier, later) = tokio::join!(earlier, later);
            earlier.unwrap();
            later.unwrap();
            fixture.reference.append(Arc::new(first)).await.unwrap();
            fixture.reference.append(Arc::new(second)).await.unwrap();
        }
        assert_eq!(fixture.store.events_after(0, usize::MAX).await.unwrap(), scenario.log);

        let (first, second) = (scenario.busy(30), scenario.busy(30));
        let (signal, gate) = CommitGate::new();
        signal.done(false);
        let refused = Arc::clone(&fixture.store).append_after(Arc::new(second.clone()), gate).await;
        assert!(matches!(refused, Err(StoreError::Unavailable(_))), "{refused:?}");
        let (signal, gate) = CommitGate::new();
        drop(signal);
        let refused = Arc::clone(&fixture.store).append_after(Arc::new(second.clone()), gate).await;
        assert!(matches!(refused, Err(StoreError::Unavailable(_))), "{refused:?}");
        fixture.append(&first).await.unwrap();
        fixture.append(&second).await.unwrap();
        assert_eq!(fixture.store.events_after(0, usize::MAX).await.unwrap(), scenario.log);
        fixture.assert_ledgers(&scenario).await;
        let audit = fixture.store.audit(scenario.tickers()).await.unwrap();
        assert!(audit.ok, "{audit:?}");
        assert_eq!(audit, fixture.reference.audit(scenario.tickers()).await.unwrap());
    }

    /// Seqs must be contiguous inside a batch too.
    pub async fn gap_inside_a_batch_is_refused<B: Backend>() {
        let backend = B::create().await;
        let store = backend.store();
        let mut scenario = Scenario::new(11, 4);
        let opened = scenario.open_all();
        let mut holed = opened.clone();
        holed.events[2].seq += 1;
        let result = store.append(Arc::new(holed)).await;
        assert!(is_invalid(&result), "{result:?}");
        assert!(store.events_after(0, 100).await.unwrap().is_empty());
        store.append(Arc::new(opened)).await.unwrap();
    }

    /// A batch sent again after it committed (its acknowledgement was lost)
    /// is recognised and not written twice.
    pub async fn retried_batch_is_written_once<B: Backend>() {
        let backend = B::create().await;
        let store = backend.store();
        let mut scenario = Scenario::new(12, 6);
        store.append(Arc::new(scenario.open_all())).await.unwrap();
        let batch = Arc::new(scenario.busy(40));
        store.append(Arc::clone(&batch)).await.unwrap();
        store.append(Arc::clone(&batch)).await.unwrap();
        assert_eq!(store.events_after(0, usize::MAX).await.unwrap(), scenario.log);
        assert!(store.audit(scenario.tickers()).await.unwrap().ok);
    }
}

macro_rules! contract {
    ($backend:ident: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                cases::$case::<super::$backend>().await;
            }
        )*
    };
}

macro_rules! shared_suite {
    ($module:ident, $backend:ident) => {
        mod $module {
            use super::cases;
            contract!($backend:
                append_and_load_roundtrip,
                seq_must_continue_the_log,
                events_after_pages,
                market_snapshot_roundtrip,
                audit_reconciles_and_catches_tampering,
                trades_of_pages_newest_first,
                candles_bucket_by_minute,
                seeded_candles_never_overwrite,
                same_player_twice_last_wins,
                survives_reopen,
                game_profile_roundtrip,
                audit_reconciles_resets,
                pipelined_appends_keep_the_log,
            );
        }
    };
}

shared_suite!(memory, Memory);
shared_suite!(postgres, Postgres);
shared_suite!(embedded, Embedded);

macro_rules! sql_suite {
    ($module:ident, $backend:ident) => {
        mod $module {
            use super::cases;
            contract!($backend: failing_batch_writes_nothing, gap_inside_a_batch_is_refused, retried_batch_is_written_once);
        }
    };
}

sql_suite!(postgres_sql, Postgres);
sql_suite!(embedded_sql, Embedded);

// ---- adapter specifics ----------------------------------------------------

/// A server that is not there is `Unavailable`, from every call, never a panic.
#[tokio::test]
async fn postgres_on_a_closed_port_is_unavailable() {
    let url = "postgres://postgres@127.0.0.1:1/postgres";
    let refused = PostgresStore::connect(url, 2).await;
    assert!(matches!(refused, Err(StoreError::Unavailable(_))), "{refused:?}");
    let refused = stockbot::store::migrate(url).await;
    assert!(matches!(refused, Err(StoreError::Unavailable(_))), "{refused:?}");

    let store = PostgresStore::connect_lazy(url, 2).unwrap();
    let mut scenario = Scenario::new(13, 2);
    let unavailable = |result: Result<(), StoreError>| assert!(matches!(result, Err(StoreError::Unavailable(_))));
    unavailable(store.append(Arc::new(scenario.open_all())).await);
    unavailable(store.ping().await);
    unavailable(store.load_account(PlayerId(1)).await.map(drop));
    unavailable(store.load_market().await.map(drop));
    unavailable(store.save_market(Arc::new(scenario.snapshot())).await);
    unavailable(store.events_after(0, 10).await.map(drop));
    unavailable(store.audit(scenario.tickers()).await.map(drop));
    unavailable(store.trades_of(PlayerId(1), u64::MAX, 10).await.map(drop));
    unavailable(store.candles(AssetId(0), 0, 10).await.map(drop));

    assert!(matches!(PostgresStore::connect_lazy("not a url", 2), Err(StoreError::Invalid(_))));
    assert!(matches!(PostgresStore::connect_lazy(url, 0), Err(StoreError::Invalid(_))));
}

/// `connect` never migrates; `migrate` applies each version once.
#[tokio::test]
async fn postgres_migrates_only_when_asked() {
    let database = backends::FreshDatabase::create().await;
    let store = PostgresStore::connect(&database.url, 2).await.unwrap();
    let mut scenario = Scenario::new(14, 2);
    let batch = Arc::new(scenario.open_all());
    assert!(is_invalid(&store.append(Arc::clone(&batch)).await), "no schema yet");

    stockbot::store::migrate(&database.url).await.unwrap();
    stockbot::store::migrate(&database.url).await.unwrap();
    let client = database.client().await;
    let versions: Vec<i32> = client
        .query("SELECT version FROM schema_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
    store.append(batch).await.unwrap();
    assert!(store.audit(scenario.tickers()).await.unwrap().ok);
}

/// Stored ledgers behind the log: events after their checkpoint, or fills
/// the checkpoint did not put in the player's history (the journal's tail
/// after the watermark).
const BEHIND: &str = "SELECT COUNT(*) FROM players WHERE ledger_seq < GREATEST(\
     (SELECT MAX(seq) FROM events WHERE player = players.player \
      AND kind IN ('AccountOpened', 'CashCredited', 'Traded', 'Game', 'AccountReset')), \
     (SELECT MAX(last_seq) FROM player_fills WHERE player = players.player)) \
     OR (SELECT seq FROM fill_watermark) < (SELECT MAX(last_seq) FROM fill_batches)";

/// PostgreSQL checkpoints ledgers in the background: a store dropped with
/// ledgers still dirty (as by a crash) loses nothing — loads rebuild them
/// from the last checkpoint, the log after it and the resting orders, and an
/// audit brings the stored ledgers up to date.
#[tokio::test]
async fn postgres_rebuilds_ledgers_not_checkpointed() {
    let database = backends::FreshDatabase::create().await;
    let reference = MemoryStore::new();
    let mut scenario = Scenario::new(15, 12);
    let store = PostgresStore::connect_and_migrate(&database.url, 2).await.unwrap();
    let opened = scenario.open_all();
    store.append(Arc::new(opened.clone())).await.unwrap();
    reference.append(Arc::new(opened)).await.unwrap();
    for round in 0..8 {
        let batch = scenario.busy(40);
        store.append(Arc::new(batch.clone())).await.unwrap();
        reference.append(Arc::new(batch)).await.unwrap();
        if round == 3 {
            store.checkpoint().await.unwrap();
        }
    }
    drop(store);

    let store = PostgresStore::connect(&database.url, 2).await.unwrap();
    for player in &scenario.players {
        let loaded = store.load_account(*player).await.unwrap();
        assert_eq!(loaded.as_ref(), scenario.exchange.account(*player), "ledger of {player}");
    }
    assert_eq!(store.load_account(PlayerId(987_654)).await.unwrap(), None);
    let audit = store.audit(scenario.tickers()).await.unwrap();
    assert!(audit.ok, "{audit:?}");
    assert_eq!(audit, reference.audit(scenario.tickers()).await.unwrap());
    let client = database.client().await;
    let behind: i64 = client.query_one(BEHIND, &[]).await.unwrap().get(0);
    assert_eq!(behind, 0, "the audit brought every ledger up to date");
}

/// The same with the game: profiles, counters and seasons survive a crash
/// (rebuilt from the checkpoint and the game changes and resets after it),
/// the audit's rebuilt ledgers are checkpointed with their profiles, and a
/// store reopened on those checkpoints alone loads the same accounts.
#[tokio::test]
async fn postgres_rebuilds_game_ledgers_not_checkpointed() {
    let database = backends::FreshDatabase::create().await;
    let reference = MemoryStore::new();
    let mut scenario = Scenario::new(18, 8).with_game();
    let store = PostgresStore::connect_and_migrate(&database.url, 2).await.unwrap();
    let mut batches = vec![scenario.open_all()];
    batches.extend(game_profiles(&mut scenario));
    let checkpoint_at = batches.len();
    batches.push(bankruptcy(&mut scenario).0);
    batches.push(scenario.busy(40));
    batches.push(new_season(&mut scenario));
    batches.push(scenario.busy(40));
    assert_rich_profiles(&scenario);
    for (index, batch) in batches.into_iter().enumerate() {
        if index == checkpoint_at {
            store.checkpoint().await.unwrap();
        }
        store.append(Arc::new(batch.clone())).await.unwrap();
        reference.append(Arc::new(batch)).await.unwrap();
    }
    drop(store);

    let store = PostgresStore::connect(&database.url, 2).await.unwrap();
    for player in &scenario.players {
        let loaded = store.load_account(*player).await.unwrap();
        assert_eq!(loaded.as_ref(), scenario.exchange.account(*player), "ledger of {player}");
    }
    let audit = store.audit(scenario.tickers()).await.unwrap();
    assert!(audit.ok, "{audit:?}");
    assert_eq!(audit, reference.audit(scenario.tickers()).await.unwrap());
    drop(store);

    let client = database.client().await;
    let behind: i64 = client.query_one(BEHIND, &[]).await.unwrap().get(0);
    assert_eq!(behind, 0, "the audit checkpointed every ledger");
    let first = scenario.players[0];
    let xp: String = client
        .query_one("SELECT profile -> 'profile' ->> 'xp' FROM players WHERE player = $1", &[&first.0])
        .await
        .unwrap()
        .get(0);
    assert_eq!(xp, scenario.exchange.account(first).unwrap().profile.xp.to_string());
    let store = PostgresStore::connect(&database.url, 2).await.unwrap();
    for player in &scenario.players {
        let loaded = store.load_account(*player).await.unwrap();
        assert_eq!(loaded.as_ref(), scenario.exchange.account(*player), "checkpointed ledger of {player}");
    }
}

/// A V4 database (every fill a `Traded` event and a `trades` row, ledgers
/// never checkpointed) upgraded by V5: fills move into history chunks, the
/// log reads back unchanged, ledgers rebuild, histories page, the audit
/// agrees with the reference, and trading continues on the journal.
#[tokio::test]
async fn postgres_v5_keeps_a_v4_log() {
    const V4: [&str; 4] = [
        include_str!("../sql/V1__init.sql"),
        include_str!("../sql/V2__lighter_writes.sql"),
        include_str!("../sql/V3__ledger_checkpoints.sql"),
        include_str!("../sql/V4__player_profiles.sql"),
    ];
    let database = backends::FreshDatabase::create().await;
    let client = database.client().await;
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    for (version, sql) in (1..).zip(V4) {
        client.batch_execute(sql).await.unwrap();
        let checksum = stockbot::store::migrate::checksum(sql);
        client
            .execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, 'v4', $2)",
                &[&version, &checksum],
            )
            .await
            .unwrap();
    }
    let reference = MemoryStore::new();
    let mut scenario = Scenario::new(19, 6);
    let mut batches = vec![scenario.open_all()];
    for round in 0..4 {
        batches.push(scenario.market_round(12, round));
    }
    for batch in &batches {
        reference.append(Arc::new(batch.clone())).await.unwrap();
        for stamped in &batch.events {
            let (seq, player) = (i64::try_from(stamped.seq).unwrap(), stamped.event.player().map(|p| p.0));
            let kind = serde_json::to_value(&stamped.event).unwrap();
            let kind = kind
                .as_object()
                .map_or_else(|| kind.as_str().unwrap().to_owned(), |o| o.keys().next().unwrap().clone());
            client
                .execute(
                    "INSERT INTO events (seq, at_ms, kind, player, payload) VALUES ($1, $2, $3, $4, $5)",
                    &[&seq, &stamped.at_ms, &kind, &player, &tokio_postgres::types::Json(stamped)],
                )
                .await
                .unwrap();
            if let Event::Traded(trade) = &stamped.event {
                let side = if trade.side == Side::Buy { "Buy" } else { "Sell" };
                client
                    .execute(
                        "INSERT INTO trades (trade_id, seq, at_ms, player, asset, side, qty, price, fee, order_id) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)",
                        &[
                            &i64::try_from(trade.id.0).unwrap(),
                            &seq,
                            &stamped.at_ms,
                            &trade.player.0,
                            &i32::from(trade.asset.0),
                            &side,
                            &i64::try_from(trade.qty).unwrap(),
                            &trade.price,
                            &trade.fee,
                        ],
                    )
                    .await
                    .unwrap();
            }
        }
    }
    assert!(scenario.count(|e| matches!(e, Event::Traded(_))) > 20, "the V4 log holds fills");
    stockbot::store::migrate(&database.url).await.unwrap();

    let store = PostgresStore::connect(&database.url, 2).await.unwrap();
    assert_eq!(store.events_after(0, usize::MAX).await.unwrap(), scenario.log);
    for player in &scenario.players {
        assert_eq!(store.load_account(*player).await.unwrap().as_ref(), scenario.exchange.account(*player));
        assert_eq!(
            store.trades_of(*player, u64::MAX, 3).await.unwrap(),
            reference.trades_of(*player, u64::MAX, 3).await.unwrap()
        );
    }
    let batch = scenario.market_round(12, 4);
    store.append(Arc::new(batch.clone())).await.unwrap();
    reference.append(Arc::new(batch)).await.unwrap();
    let audit = store.audit(scenario.tickers()).await.unwrap();
    assert!(audit.ok, "{audit:?}");
    assert_eq!(audit, reference.audit(scenario.tickers()).await.unwrap());
    assert_eq!(store.events_after(0, usize::MAX).await.unwrap(), scenario.log);
    let first = scenario.players[0];
    assert_eq!(
        store.trades_of(first, u64::MAX, 100).await.unwrap(),
        reference.trades_of(first, u64::MAX, 100).await.unwrap()
    );
    let viewed: i64 = client.query_one("SELECT COUNT(*) FROM trades", &[]).await.unwrap().get(0);
    assert_eq!(usize::try_from(viewed).unwrap(), scenario.count(|e| matches!(e, Event::Traded(_))));
}

/// The embedded store makes its directory and names its file.
#[tokio::test]
async fn embedded_creates_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a").join("b");
    let store = stockbot::store::EmbeddedStore::open(&nested).await.unwrap();
    assert_eq!(store.path(), nested.join("stockbot.sqlite3"));
    store.ping().await.unwrap();
    assert!(store.path().exists());
}

// ---- throughput (run by hand) ---------------------------------------------

/// Appends `batches` batches of `trades` market orders each and prints the rate.
async fn measure(name: &str, store: &dyn Store, trades: usize, batches: usize) {
    let mut scenario = Scenario::new(99, 1_000);
    store.append(Arc::new(scenario.open_all())).await.unwrap();
    let work: Vec<Arc<EventBatch>> = (0..batches).map(|round| Arc::new(scenario.market_round(trades, round))).collect();
    let events: usize = work.iter().map(|b| b.events.len()).sum();
    let fills = scenario.count(|e| matches!(e, Event::Traded(_)));
    let mut took = Vec::with_capacity(batches);
    let started = Instant::now();
    for batch in work {
        let one = Instant::now();
        store.append(batch).await.unwrap();
        took.push(one.elapsed().as_secs_f64());
    }
    let seconds = started.elapsed().as_secs_f64();
    took.sort_by(f64::total_cmp);
    let median = took[took.len() / 2];
    println!(
        "{name}: {batches} batches of {trades} orders: {:.0} events/s, {:.0} trades/s overall; \
         median batch {:.2} ms ({:.0} trades/s)",
        events as f64 / seconds,
        fills as f64 / seconds,
        median * 1_000.0,
        fills as f64 / batches as f64 / median,
    );
    assert!(store.audit(scenario.tickers()).await.unwrap().ok);
}

#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn throughput_postgres() {
    for (trades, batches) in [(1, 500), (100, 200), (1_000, 60), (10_000, 8)] {
        let backend = Postgres::create().await;
        measure("postgres", &*backend.store(), trades, batches).await;
    }
}

#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn throughput_embedded() {
    for (trades, batches) in [(1, 500), (100, 200), (1_000, 60), (10_000, 8)] {
        let backend = Embedded::create().await;
        measure("embedded", &*backend.store(), trades, batches).await;
    }
}
