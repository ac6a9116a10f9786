//! `GameRules`: the configured rules of the game around trading —
//! progression, achievements, daily bonus, bankruptcy, seasons, anti-abuse
//! and entitlements — with the per-level unlocks worked out once, so the
//! trade path looks them up instead of rebuilding them.

use serde::{Deserialize, Serialize};

use super::abuse::AbuseRules;
use super::achievement::AchievementRules;
use super::daily::{BankruptcyRules, DailyRules};
use super::progression::{OrderType, ProgressionRules, Unlocks};
use super::season::SeasonRules;

/// Highest level with precomputed unlocks (higher levels share its unlocks).
const LEVELS_TABLED: usize = 64;

/// Everything configurable about the game beside the market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GameRules {
    /// Whether levels gate categories, order types and position sizes
    /// (off: everything open from the start, e.g. for load tests).
    pub gated: bool,
    pub progression: ProgressionRules,
    pub achievements: AchievementRules,
    pub daily: DailyRules,
    pub bankruptcy: BankruptcyRules,
    pub seasons: SeasonRules,
    pub abuse: AbuseRules,
    pub entitlements: super::alert::EntitlementRules,
}

impl Default for GameRules {
    fn default() -> Self {
        Self {
            gated: true,
            progression: ProgressionRules::default(),
            achievements: AchievementRules::default(),
            daily: DailyRules::default(),
            bankruptcy: BankruptcyRules::default(),
            seasons: SeasonRules::default(),
            abuse: AbuseRules::default(),
            entitlements: super::alert::EntitlementRules::default(),
        }
    }
}

impl GameRules {
    /// The default rules with nothing gated by level.
    #[must_use]
    pub fn open() -> Self {
        Self { gated: false, ..Self::default() }
    }
}

/// Unlocks per level, computed once from [`ProgressionRules`].
#[derive(Debug, Clone)]
pub struct LevelTable {
    by_level: Vec<Unlocks>,
    open: Option<Unlocks>,
}

impl LevelTable {
    /// The table of `rules`; with `gated` off every level unlocks everything.
    #[must_use]
    pub fn new(rules: &GameRules) -> Self {
        let by_level = (0..=LEVELS_TABLED)
            .map(|level| rules.progression.unlocks(u32::try_from(level).unwrap_or(u32::MAX)))
            .collect();
        let open = (!rules.gated).then(|| Unlocks {
            level: 0,
            categories_count: u32::MAX,
            order_types: [OrderType::Market, OrderType::Limit, OrderType::Stop].into_iter().collect(),
            position_cap_pct: 100,
            open_orders_max: u32::MAX,
        });
        Self { by_level, open }
    }

    /// What `level` unlocks.
    #[must_use]
    pub fn unlocks(&self, level: u32) -> &Unlocks {
        if let Some(open) = &self.open {
            return open;
        }
        let index = usize::try_from(level).unwrap_or(LEVELS_TABLED).min(LEVELS_TABLED);
        // The table holds LEVELS_TABLED + 1 entries.
        #[allow(clippy::indexing_slicing)]
        &self.by_level[index]
    }
}
