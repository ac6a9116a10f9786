//! `stockbot simulate`: runs the price model alone (no players) in simulated
//! time, summarises each asset, measures the stylised facts of the 1-minute
//! returns, and optionally writes the price paths as CSV.
//!
//! The stylised facts (`facts`) are printed before the last line.
//!
//! The CSV has the header `minute,ticker,price` and one row per asset per
//! minute, in asset order within a minute. Minute `0` is the initial quote,
//! minutes `1..=hours*60` the quotes after each one-minute model step; prices
//! are the quoted mid rounded to 4 decimals (via `Decimal`, so the text is
//! stable). The same seed and configuration give a byte-identical file.

pub mod facts;
pub mod lags;
pub mod stats;
pub mod tails;

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use actors::config::EngineConfig;
use actors::domain::asset::UniverseError;
use actors::domain::ids::Ticker;
use actors::domain::price_model::{MINUTES_PER_DAY, MarketModel, ModelTick};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use self::facts::{FactsTracker, StylisedFacts};
use self::stats::{ReturnStats, SeriesMoments};

/// Longest simulation accepted, in simulated hours (a leap year). Memory does
/// not grow with the horizon; this bounds run time and CSV size.
pub const HOURS_MAX: f64 = 8_784.0;

/// Decimal places of prices in the CSV and the summary table.
pub const PRICE_DP: u32 = 4;

/// Days per year used to annualise volatility (the game trades every day).
const DAYS_PER_YEAR: f64 = 365.0;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("--hours must be between 2 minutes and {HOURS_MAX} hours, got {0}")]
    Hours(f64),
    #[error("configuration: {0}")]
    Universe(#[from] UniverseError),
    #[error("the model produced a non-finite price for {ticker} at minute {minute}")]
    NonFinitePrice { ticker: Ticker, minute: u64 },
    #[error("writing the CSV: {0}")]
    Io(#[from] io::Error),
}

/// What one asset did over the simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetSummary {
    pub ticker: Ticker,
    pub category: String,
    /// Quoted mid at minute 0.
    pub first: Decimal,
    /// Quoted mid after the last minute.
    pub last: Decimal,
    /// Lowest quoted mid, minute 0 included.
    pub min: Decimal,
    /// Highest quoted mid, minute 0 included.
    pub max: Decimal,
    /// `last / first − 1`, in percent.
    pub return_pct: f64,
    /// Realised volatility of 1-minute log returns, scaled to a day (fraction).
    pub vol_daily: f64,
    /// The same, scaled to a year of 365 days (fraction).
    pub vol_annual: f64,
    /// Minutes in which news (asset, scheduled or category) hit the asset.
    pub news: u64,
    /// Circuit-breaker halts started.
    pub halts: u64,
    /// Minutes spent halted.
    pub halted_minutes: u64,
}

/// The outcome of a simulation run.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    pub seed: u64,
    /// Market minutes simulated (one model step each).
    pub minutes: u64,
    /// One summary per asset, in configuration order.
    pub assets: Vec<AssetSummary>,
    /// Pooled statistics of all assets' 1-minute log returns.
    pub stats: ReturnStats,
    /// The stylised facts of those returns.
    pub facts: StylisedFacts,
}

/// Runs the market model of `config` alone for `hours` simulated hours
/// (`hours × 60` one-minute steps, rounded) from `seed`.
///
/// # Errors
/// An out-of-range horizon, an invalid universe, or a non-finite price.
pub fn simulate(config: &EngineConfig, seed: u64, hours: f64) -> Result<Simulation, SimulateError> {
    simulate_inner(config, seed, hours, None)
}

/// As [`simulate`], also writing the CSV described in the module docs to
/// `csv` (buffered here; the caller need not buffer).
///
/// # Errors
/// As [`simulate`], and any error writing to `csv`.
pub fn simulate_with_csv<W: Write>(
    config: &EngineConfig,
    seed: u64,
    hours: f64,
    csv: &mut W,
) -> Result<Simulation, SimulateError> {
    simulate_inner(config, seed, hours, Some(csv))
}

/// The `stockbot simulate` command: simulates, writes the CSV to `csv` if
/// given, and prints the per-asset table to stdout, ending with the line
/// `kurtosis=X acf_abs1=X acf1=X`.
///
/// # Errors
/// As [`simulate_with_csv`], and errors writing to stdout.
pub fn run(config: &EngineConfig, seed: u64, hours: f64, csv: Option<&Path>) -> Result<(), Box<dyn std::error::Error>> {
    run_to(config, seed, hours, csv, &mut io::stdout().lock())
}

/// As [`run`], printing the report to `out` instead of stdout.
///
/// # Errors
/// As [`run`].
pub fn run_to<W: Write>(
    config: &EngineConfig,
    seed: u64,
    hours: f64,
    csv: Option<&Path>,
    out: &mut W,
) -> Result<(), Box<dyn std::error::Error>> {
    let simulation = match csv {
        Some(path) => {
            let mut file = File::create(path).map_err(|error| format!("creating {}: {error}", path.display()))?;
            let simulation = simulate_with_csv(config, seed, hours, &mut file)?;
            file.sync_all()?;
            simulation
        }
        None => simulate(config, seed, hours)?,
    };
    let mut out = BufWriter::new(out);
    write!(out, "{simulation}")?;
    out.flush()?;
    Ok(())
}

impl fmt::Display for Simulation {
    /// The report `stockbot simulate` prints: a header, the per-asset table,
    /// totals, and the stats line last.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[allow(clippy::cast_precision_loss)]
        let hours = self.minutes as f64 / 60.0;
        writeln!(
            f,
            "market simulation: seed {}, {hours} h ({} one-minute steps), {} assets, no players",
            self.seed,
            self.minutes,
            self.assets.len()
        )?;
        let category_width = self.assets.iter().map(|a| a.category.len()).max().unwrap_or(0).max("category".len());
        writeln!(
            f,
            "{:<8} {:<category_width$} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9} {:>9} {:>5} {:>5}",
            "ticker", "category", "first", "last", "min", "max", "return%", "vol_ann%", "vol_day%", "news", "halts"
        )?;
        for a in &self.assets {
            writeln!(
                f,
                "{:<8} {:<category_width$} {:>12.4} {:>12.4} {:>12.4} {:>12.4} {:>9.2} {:>9.2} {:>9.2} {:>5} {:>5}",
                a.ticker.as_str(),
                a.category,
                a.first,
                a.last,
                a.min,
                a.max,
                a.return_pct,
                a.vol_annual * 100.0,
                a.vol_daily * 100.0,
                a.news,
                a.halts
            )?;
        }
        let news: u64 = self.assets.iter().map(|a| a.news).sum();
        let halts: u64 = self.assets.iter().map(|a| a.halts).sum();
        let halted: u64 = self.assets.iter().map(|a| a.halted_minutes).sum();
        writeln!(
            f,
            "totals: {news} news hits, {halts} circuit-breaker halts ({halted} halted asset-minutes), {} returns pooled",
            self.stats.returns
        )?;
        writeln!(f, "{}", self.facts)?;
        writeln!(f, "{}", self.stats)
    }
}

fn simulate_inner(
    config: &EngineConfig,
    seed: u64,
    hours: f64,
    csv: Option<&mut dyn Write>,
) -> Result<Simulation, SimulateError> {
    let minutes = minutes_for(hours)?;
    let universe = config.universe()?;
    let mut model = MarketModel::new(&universe, seed);
    let mut trackers = universe
        .assets()
        .iter()
        .zip(&model.assets)
        .map(|(spec, asset)| Tracker::new(spec.ticker, &spec.category, asset.mid()))
        .collect::<Result<Vec<_>, _>>()?;

    let mut csv = csv.map(BufWriter::new);
    if let Some(out) = csv.as_mut() {
        writeln!(out, "minute,ticker,price")?;
        for tracker in &trackers {
            write_row(out, 0, tracker)?;
        }
    }
    let mut facts = FactsTracker::new(universe.asset_categories());
    let mut minute_returns = Vec::with_capacity(trackers.len());
    for minute in 1..=minutes {
        let ticks = model.step();
        minute_returns.clear();
        for (tracker, tick) in trackers.iter_mut().zip(&ticks) {
            minute_returns.push(tracker.observe(tick, minute)?);
            if let Some(out) = csv.as_mut() {
                write_row(out, minute, tracker)?;
            }
        }
        facts.push_minute(&minute_returns);
    }
    if let Some(out) = csv.as_mut() {
        out.flush()?;
    }

    let returns: Vec<SeriesMoments> = trackers.iter().map(|t| t.returns).collect();
    let abs_returns: Vec<SeriesMoments> = trackers.iter().map(|t| t.abs_returns).collect();
    Ok(Simulation {
        seed,
        minutes,
        stats: ReturnStats::pooled(&returns, &abs_returns),
        facts: facts.facts(),
        assets: trackers.into_iter().map(Tracker::summary).collect(),
    })
}

/// Minutes to simulate for `hours`, within `[2, HOURS_MAX × 60]`.
fn minutes_for(hours: f64) -> Result<u64, SimulateError> {
    let minutes = (hours * 60.0).round();
    if !hours.is_finite() || !(2.0..=HOURS_MAX * 60.0).contains(&minutes) {
        return Err(SimulateError::Hours(hours));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(minutes as u64)
}

fn write_row(out: &mut impl Write, minute: u64, tracker: &Tracker) -> io::Result<()> {
    writeln!(out, "{minute},{},{:.4}", tracker.ticker.as_str(), tracker.last_quote)
}

/// A price as `Decimal` with [`PRICE_DP`] places; `None` if not finite.
fn to_price(mid: f64) -> Option<Decimal> {
    Decimal::from_f64(mid).map(|price| price.round_dp_with_strategy(PRICE_DP, RoundingStrategy::MidpointAwayFromZero))
}

/// One asset's running summary while the simulation runs.
struct Tracker {
    ticker: Ticker,
    category: String,
    first: f64,
    last: f64,
    min: f64,
    max: f64,
    last_quote: Decimal,
    returns: SeriesMoments,
    abs_returns: SeriesMoments,
    news: u64,
    halts: u64,
    halted_minutes: u64,
    halted: bool,
}

impl Tracker {
    fn new(ticker: Ticker, category: &str, mid: f64) -> Result<Self, SimulateError> {
        let last_quote = to_price(mid).ok_or(SimulateError::NonFinitePrice { ticker, minute: 0 })?;
        Ok(Self {
            ticker,
            category: category.to_owned(),
            first: mid,
            last: mid,
            min: mid,
            max: mid,
            last_quote,
            returns: SeriesMoments::default(),
            abs_returns: SeriesMoments::default(),
            news: 0,
            halts: 0,
            halted_minutes: 0,
            halted: false,
        })
    }

    /// Takes the minute's tick; returns the 1-minute log return of the mid.
    fn observe(&mut self, tick: &ModelTick, minute: u64) -> Result<f64, SimulateError> {
        let mid = tick.mid;
        let quote = to_price(mid).filter(|_| mid > 0.0);
        self.last_quote = quote.ok_or(SimulateError::NonFinitePrice { ticker: self.ticker, minute })?;
        let log_return = (mid / self.last).ln();
        self.returns.push(log_return);
        self.abs_returns.push(log_return.abs());
        self.last = mid;
        self.min = self.min.min(mid);
        self.max = self.max.max(mid);
        self.news += u64::from(tick.news.is_some());
        self.halts += u64::from(tick.halted && !self.halted);
        self.halted_minutes += u64::from(tick.halted);
        self.halted = tick.halted;
        Ok(log_return)
    }

    fn summary(self) -> AssetSummary {
        let vol_daily = self.returns.std_dev() * MINUTES_PER_DAY.sqrt();
        // Every price went through `to_price` in `new`/`observe`, so these convert.
        let price = |mid: f64| to_price(mid).unwrap_or_default();
        AssetSummary {
            ticker: self.ticker,
            category: self.category,
            first: price(self.first),
            last: price(self.last),
            min: price(self.min),
            max: price(self.max),
            return_pct: (self.last / self.first - 1.0) * 100.0,
            vol_daily,
            vol_annual: vol_daily * DAYS_PER_YEAR.sqrt(),
            news: self.news,
            halts: self.halts,
            halted_minutes: self.halted_minutes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizon_is_bounded() {
        assert_eq!(minutes_for(168.0).unwrap(), 10_080);
        assert_eq!(minutes_for(0.5).unwrap(), 30);
        for bad in [0.0, 0.01, -1.0, f64::NAN, f64::INFINITY, HOURS_MAX + 1.0] {
            assert!(minutes_for(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prices_have_four_places() {
        assert_eq!(format!("{:.4}", to_price(48.2).unwrap()), "48.2000");
        assert_eq!(format!("{:.4}", to_price(9.876_54).unwrap()), "9.8765");
        assert!(to_price(f64::NAN).is_none());
    }
}
