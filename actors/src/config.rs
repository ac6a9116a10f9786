//! `EngineConfig`: how the actor system is sized and paced (every limit named,
//! units last), plus the market's rules and universe.

use serde::{Deserialize, Serialize};

use crate::domain::asset::{AssetSpec, CategorySpec, FactorSpec, Universe, UniverseError};
use crate::domain::game::GameRules;
use crate::domain::rules::MarketRules;

/// Sizing and pacing of the engine's actors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// Seed of the price model.
    pub seed: u64,
    /// Real milliseconds per market minute.
    pub tick_interval_ms: u64,
    /// Idle time after which a portfolio actor is passivated.
    pub portfolio_idle_ms: u64,
    /// Most events waiting for the store before the market answers "busy".
    pub pending_events_max: usize,
    /// Group commit: most events in one store transaction.
    pub flush_batch_events_max: usize,
    /// Group commit: longest wait before a partial batch is flushed.
    pub flush_interval_ms: u64,
    /// Group commits in flight at once (each commits after the one before).
    pub flush_pipeline_depth: usize,
    /// Most commands in one market message.
    pub batch_commands_max: usize,
    /// Most single commands waiting to be batched (a full queue answers "busy").
    pub command_queue_max: usize,
    /// How often the market state is snapshotted (bounds replay at start).
    pub snapshot_interval_ms: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            seed: 7,
            tick_interval_ms: 5_000,
            portfolio_idle_ms: 600_000,
            pending_events_max: 200_000,
            flush_batch_events_max: 20_000,
            flush_interval_ms: 2,
            flush_pipeline_depth: 2,
            batch_commands_max: 4_096,
            command_queue_max: 65_536,
            snapshot_interval_ms: 60_000,
        }
    }
}

/// Everything the engine is built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    #[serde(default)]
    pub engine: EngineSettings,
    #[serde(default)]
    pub market: MarketRules,
    /// Levels, achievements, daily bonus, seasons, anti-abuse, entitlements.
    #[serde(default)]
    pub game: GameRules,
    /// The market factor and the dynamics of the market and category factors.
    #[serde(default)]
    pub factors: FactorSpec,
    pub categories: Vec<CategorySpec>,
    pub assets: Vec<AssetSpec>,
}

impl EngineConfig {
    /// Validates the configured universe.
    ///
    /// # Errors
    /// The first problem in the categories or assets.
    pub fn universe(&self) -> Result<Universe, UniverseError> {
        Universe::new(self.categories.clone(), self.assets.clone())?.with_factors(self.factors)
    }
}
