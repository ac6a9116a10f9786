//! Chart backfill: a fresh market gets a past, so `/chart` shows a day of
//! history from the first minute — drawn by the price model itself from a
//! seed of its own ([`history_seed`]), never noise. The candles are exactly
//! what `stockbot simulate --seed <history_seed> --hours 24` prints for each
//! asset, scaled so each path ends at the asset's opening price (same
//! returns, no jump into the live market).

use std::sync::Arc;

use actors::config::EngineConfig;
use actors::domain::asset::UniverseError;
use actors::domain::ids::AssetId;
use actors::domain::price_model::{MarketModel, mix_seed};
use actors::ports::{Candle, Store, StoreError};

/// Minutes of past drawn for a fresh market (a day).
pub const HISTORY_MINUTES: u64 = 24 * 60;
/// Length of a candle, in ms.
const MINUTE_MS: i64 = 60_000;
/// The seed stream of the past (so the past is not the future replayed).
const HISTORY_STREAM: u64 = 0x4849_5354;

/// Why the backfill could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("configuration: {0}")]
    Universe(#[from] UniverseError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The seed the past of a market with `seed` is drawn from.
#[must_use]
pub fn history_seed(seed: u64) -> u64 {
    mix_seed(seed, HISTORY_STREAM)
}

/// Writes the seeded past of every asset that has no candle yet, ending
/// just before the minute of `now_ms`; returns how many assets got one.
///
/// Call it where the one active engine starts, before it ticks: in the
/// single process before `Engine::start`, in a cluster after winning the
/// lease and before `Engine::start_recovered`. A standby must never call
/// it (the write is not fenced by the lease epoch). An asset with candles
/// (a restart, or a market that already traded) is left as it is.
///
/// # Errors
/// An invalid universe, or a store that cannot be read or written.
pub async fn seed_history(config: &EngineConfig, store: &Arc<dyn Store>, now_ms: i64) -> Result<usize, BackfillError> {
    let universe = config.universe()?;
    let opening = MarketModel::new(&universe, config.engine.seed);
    let mut fresh = Vec::new();
    for (index, asset) in opening.assets.iter().enumerate() {
        let id = AssetId(u16::try_from(index).unwrap_or(u16::MAX));
        if store.candles(id, i64::MIN, 1).await?.is_empty() {
            fresh.push((index, id, asset.mid()));
        }
    }
    if fresh.is_empty() {
        return Ok(0);
    }
    let paths = history_paths(config, HISTORY_MINUTES)?;
    let first_ms = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS - i64::try_from(HISTORY_MINUTES).unwrap_or(0) * MINUTE_MS;
    let mut candles = Vec::with_capacity(fresh.len() * paths.len());
    for (index, id, opening_mid) in &fresh {
        let path: Vec<f64> = paths.iter().filter_map(|minute| minute.get(*index).copied()).collect();
        let Some(last) = path.last().copied().filter(|last| *last > 0.0) else { continue };
        let scale = opening_mid / last;
        let mut start_ms = first_ms;
        for pair in path.windows(2) {
            if let [open, close] = pair {
                let (open, close) = (open * scale, close * scale);
                candles.push((
                    *id,
                    Candle { start_ms, open, high: open.max(close), low: open.min(close), close, volume: 0 },
                ));
            }
            start_ms += MINUTE_MS;
        }
    }
    tracing::info!(assets = fresh.len(), candles = candles.len(), "chart backfill from the price model's seeded past");
    store.seed_candles(Arc::new(candles)).await?;
    Ok(fresh.len())
}

/// The model's mids from [`history_seed`], minute 0 to `minutes`, one row
/// per minute with one mid per asset (as `stockbot simulate` sees them).
///
/// # Errors
/// An invalid universe.
pub fn history_paths(config: &EngineConfig, minutes: u64) -> Result<Vec<Vec<f64>>, UniverseError> {
    let universe = config.universe()?;
    let mut model = MarketModel::new(&universe, history_seed(config.engine.seed));
    let mut rows = Vec::with_capacity(usize::try_from(minutes).unwrap_or(0) + 1);
    rows.push(model.assets.iter().map(|asset| asset.mid()).collect());
    for _ in 0..minutes {
        rows.push(model.step().iter().map(|tick| tick.mid).collect());
    }
    Ok(rows)
}
