//! Chart backfill on the real embedded store: a fresh market gets a day of
//! candles drawn by the price model from its history seed — the same path
//! `stockbot simulate` prints for that seed, scaled to end at the opening
//! price — and a market that has candles is left alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;

use actors::domain::ids::AssetId;
use actors::domain::price_model::MarketModel;
use actors::ports::Store;
use stockbot::backfill::{self, HISTORY_MINUTES};
use stockbot::config::Settings;
use stockbot::store::embedded::EmbeddedStore;

const NOW_MS: i64 = 1_800_000_000_000 + 12_345;

#[tokio::test]
async fn a_fresh_market_gets_the_models_seeded_past_and_a_restart_keeps_it() {
    let config = Settings::load_from(None).unwrap().engine;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    let universe = config.universe().unwrap();

    assert_eq!(backfill::seed_history(&config, &store, NOW_MS).await.unwrap(), universe.assets().len());

    // The CSV `stockbot simulate --seed <history seed> --hours 24` writes.
    let seed = backfill::history_seed(config.engine.seed);
    let mut csv = Vec::new();
    stockbot::simulate::simulate_with_csv(&config, seed, 24.0, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let opening = MarketModel::new(&universe, config.engine.seed);
    let minute_ms = 60_000;
    let live_minute_ms = NOW_MS - NOW_MS % minute_ms;
    for (index, spec) in universe.assets().iter().enumerate() {
        let candles = store.candles(AssetId(u16::try_from(index).unwrap()), i64::MIN, usize::MAX).await.unwrap();
        assert_eq!(candles.len() as u64, HISTORY_MINUTES, "{}", spec.ticker);
        assert_eq!(candles.last().unwrap().start_ms, live_minute_ms - minute_ms, "ends just before the live market");
        assert!(candles.windows(2).all(|w| w[1].start_ms - w[0].start_ms == minute_ms), "one candle a minute");
        let close = candles.last().unwrap().close;
        let opening_mid = opening.assets[index].mid();
        assert!((close / opening_mid - 1.0).abs() < 1e-9, "no jump into the live market: {close} vs {opening_mid}");
        // Same returns as the simulation (its CSV rounds prices to 4 dp).
        let simulated: Vec<f64> = csv
            .lines()
            .skip(1)
            .filter(|row| row.split(',').nth(1) == Some(spec.ticker.as_str()))
            .map(|row| row.rsplit(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(simulated.len() as u64, HISTORY_MINUTES + 1);
        let scale = close / simulated.last().unwrap();
        for (candle, (open, close)) in candles.iter().zip(simulated.iter().zip(&simulated[1..])) {
            let tolerance = 1e-4 * scale + 1e-9 * candle.open.abs();
            assert!((candle.open - open * scale).abs() <= tolerance * 2.0, "{} open {candle:?} vs {open}", spec.ticker);
            assert!((candle.close - close * scale).abs() <= tolerance * 2.0, "{} close", spec.ticker);
        }
        // A moving market, not a flat line.
        let moved = candles.iter().filter(|c| (c.close - c.open).abs() > 0.0).count();
        assert!(moved > candles.len() / 2, "{}: only {moved} moving minutes", spec.ticker);
    }

    // A restart (candles present) writes nothing and changes nothing.
    let before = store.candles(AssetId(0), i64::MIN, usize::MAX).await.unwrap();
    assert_eq!(backfill::seed_history(&config, &store, NOW_MS + 3_600_000).await.unwrap(), 0);
    assert_eq!(store.candles(AssetId(0), i64::MIN, usize::MAX).await.unwrap(), before);
}
