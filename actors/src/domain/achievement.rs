//! Achievements: data-driven rules over the counters the engine keeps per
//! player ([`PlayerStats`]), each granted at most once, with progress for
//! `/achievements`.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An achievement's stable id (`"first_trade"`), as stored on the player.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AchievementId(pub String);

impl AchievementId {
    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for AchievementId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AchievementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The counters and flags the engine maintains per player; achievements are
/// decided from a snapshot of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlayerStats {
    pub trades: u64,
    /// Sales that realized a profit.
    pub profitable_sales: u64,
    pub realized_pnl: Decimal,
    /// Distinct categories with a position held now.
    pub categories_held: u32,
    /// Distinct assets held now.
    pub assets_held: u32,
    /// Current daily-bonus streak.
    pub daily_streak: u32,
    /// Net worth now (holdings at sell-out value plus cash).
    pub net_worth: Decimal,
    pub level: u32,
    pub limit_orders_filled: u64,
    pub stops_triggered: u64,
    /// Crashes (halts or sharp drops) lived through holding the asset.
    pub crashes_survived: u64,
    pub bankruptcies: u32,
    /// Best final rank in any season (1 = champion).
    pub best_season_rank: Option<u32>,
    /// Referrals that earned the player a reward.
    pub referrals_rewarded: u32,
}

/// What unlocks an achievement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AchievementRule {
    TradesAtLeast {
        count: u64,
    },
    ProfitableSalesAtLeast {
        count: u64,
    },
    RealizedProfitAtLeast {
        amount: Decimal,
    },
    DistinctCategoriesHeld {
        count: u32,
    },
    DistinctAssetsHeld {
        count: u32,
    },
    DailyStreakAtLeast {
        days: u32,
    },
    NetWorthAtLeast {
        amount: Decimal,
    },
    LevelAtLeast {
        level: u32,
    },
    LimitOrdersFilledAtLeast {
        count: u64,
    },
    StopsTriggeredAtLeast {
        count: u64,
    },
    /// Held a position through a halt or a sharp drop ("survived a crash").
    CrashesSurvivedAtLeast {
        count: u64,
    },
    /// Finished a season at this rank or better.
    SeasonTopN {
        rank: u32,
    },
    /// Reached this net worth after having gone bankrupt.
    ComebackAfterBankruptcy {
        net_worth: Decimal,
    },
    ReferralsAtLeast {
        count: u32,
    },
}

/// Progress toward a rule: met when `current >= target`. `current` is capped
/// at `target` (it may be negative, e.g. realized losses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub current: Decimal,
    pub target: Decimal,
}

impl Progress {
    fn of(value: Decimal, target: Decimal) -> Self {
        Self { current: value.min(target), target }
    }

    fn count(value: u64, target: u64) -> Self {
        Self::of(Decimal::from(value), Decimal::from(target))
    }

    fn flag(done: bool) -> Self {
        Self::count(u64::from(done), 1)
    }

    /// Whether the rule is met.
    #[must_use]
    pub fn done(&self) -> bool {
        self.current >= self.target
    }
}

/// Progress of `stats` toward `rule`.
#[must_use]
pub fn progress(stats: &PlayerStats, rule: &AchievementRule) -> Progress {
    use AchievementRule as R;
    match *rule {
        R::TradesAtLeast { count } => Progress::count(stats.trades, count),
        R::ProfitableSalesAtLeast { count } => Progress::count(stats.profitable_sales, count),
        R::RealizedProfitAtLeast { amount } => Progress::of(stats.realized_pnl, amount),
        R::DistinctCategoriesHeld { count } => Progress::count(stats.categories_held.into(), count.into()),
        R::DistinctAssetsHeld { count } => Progress::count(stats.assets_held.into(), count.into()),
        R::DailyStreakAtLeast { days } => Progress::count(stats.daily_streak.into(), days.into()),
        R::NetWorthAtLeast { amount } => Progress::of(stats.net_worth, amount),
        R::LevelAtLeast { level } => Progress::count(stats.level.into(), level.into()),
        R::LimitOrdersFilledAtLeast { count } => Progress::count(stats.limit_orders_filled, count),
        R::StopsTriggeredAtLeast { count } => Progress::count(stats.stops_triggered, count),
        R::CrashesSurvivedAtLeast { count } => Progress::count(stats.crashes_survived, count),
        R::SeasonTopN { rank } => Progress::flag(stats.best_season_rank.is_some_and(|best| best <= rank)),
        R::ComebackAfterBankruptcy { net_worth } if stats.bankruptcies > 0 => Progress::of(stats.net_worth, net_worth),
        // Not bankrupt yet: no progress, and a target that cannot be met.
        R::ComebackAfterBankruptcy { net_worth } => {
            Progress { current: Decimal::ZERO, target: net_worth.max(Decimal::new(1, 2)) }
        }
        R::ReferralsAtLeast { count } => Progress::count(stats.referrals_rewarded.into(), count.into()),
    }
}

/// One configured achievement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AchievementDef {
    pub id: AchievementId,
    pub name: String,
    pub description: String,
    /// XP granted with it.
    #[serde(default)]
    pub xp: u64,
    pub rule: AchievementRule,
}

/// The configured achievements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AchievementRules {
    pub achievements: Vec<AchievementDef>,
    /// A fall of at least this fraction while held counts as a crash.
    pub crash_drop_fraction: Decimal,
}

impl Default for AchievementRules {
    fn default() -> Self {
        use AchievementRule as R;
        let money = Decimal::from;
        let def = |id: &str, name: &str, description: &str, xp, rule| AchievementDef {
            id: AchievementId(id.to_owned()),
            name: name.to_owned(),
            description: description.to_owned(),
            xp,
            rule,
        };
        // Money thresholds assume the default 10,000 starting cash.
        let achievements = vec![
            def("first_trade", "First trade", "Make your first trade", 25, R::TradesAtLeast { count: 1 }),
            def("trades_100", "Regular", "Make 100 trades", 50, R::TradesAtLeast { count: 100 }),
            def("trades_1000", "Market maker", "Make 1,000 trades", 150, R::TradesAtLeast { count: 1_000 }),
            def("first_profit", "In the green", "Sell at a profit", 25, R::ProfitableSalesAtLeast { count: 1 }),
            def(
                "profit_1k",
                "Four figures",
                "Realize 1,000 profit",
                75,
                R::RealizedProfitAtLeast { amount: money(1_000) },
            ),
            def(
                "profit_10k",
                "Five figures",
                "Realize 10,000 profit",
                200,
                R::RealizedProfitAtLeast { amount: money(10_000) },
            ),
            def("diversified", "Diversified", "Hold 5 categories at once", 75, R::DistinctCategoriesHeld { count: 5 }),
            def("portfolio_10", "Collector", "Hold 10 assets at once", 75, R::DistinctAssetsHeld { count: 10 }),
            def("streak_3", "Habit", "Claim the daily bonus 3 days running", 20, R::DailyStreakAtLeast { days: 3 }),
            def("streak_10", "Dedicated", "A 10-day daily streak", 75, R::DailyStreakAtLeast { days: 10 }),
            def("streak_30", "Unstoppable", "A 30-day daily streak", 200, R::DailyStreakAtLeast { days: 30 }),
            def(
                "net_worth_20k",
                "Doubled",
                "Reach a net worth of 20,000",
                100,
                R::NetWorthAtLeast { amount: money(20_000) },
            ),
            def(
                "net_worth_100k",
                "Tycoon",
                "Reach a net worth of 100,000",
                300,
                R::NetWorthAtLeast { amount: money(100_000) },
            ),
            def("level_5", "Seasoned", "Reach level 5", 0, R::LevelAtLeast { level: 5 }),
            def("level_10", "Veteran", "Reach level 10", 0, R::LevelAtLeast { level: 10 }),
            def(
                "first_limit_fill",
                "Patient",
                "Have a limit order filled",
                25,
                R::LimitOrdersFilledAtLeast { count: 1 },
            ),
            def("first_stop", "Safety net", "Have a stop-loss trigger", 25, R::StopsTriggeredAtLeast { count: 1 }),
            def(
                "survived_crash",
                "Diamond hands",
                "Hold through a halt or a 10% drop",
                50,
                R::CrashesSurvivedAtLeast { count: 1 },
            ),
            def(
                "comeback",
                "Comeback",
                "Reach 15,000 after a bankruptcy",
                150,
                R::ComebackAfterBankruptcy { net_worth: money(15_000) },
            ),
            def("recruiter", "Recruiter", "Bring an active friend", 50, R::ReferralsAtLeast { count: 1 }),
            def("season_top10", "Top 10", "Finish a season in the top 10", 200, R::SeasonTopN { rank: 10 }),
            def("season_top3", "Podium", "Finish a season in the top 3", 300, R::SeasonTopN { rank: 3 }),
            def("season_champion", "Champion", "Win a season", 500, R::SeasonTopN { rank: 1 }),
        ];
        Self { achievements, crash_drop_fraction: Decimal::new(10, 2) }
    }
}

impl AchievementRules {
    /// The achievement with this id.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<&AchievementDef> {
        self.achievements.iter().find(|def| def.id.as_str() == id)
    }

    /// Achievements `stats` meets that are not in `already`, in config order,
    /// each once (even if the config repeats an id).
    #[must_use]
    pub fn newly_unlocked(&self, stats: &PlayerStats, already: &BTreeSet<AchievementId>) -> Vec<AchievementId> {
        let mut fresh: Vec<AchievementId> = Vec::new();
        for def in &self.achievements {
            if !already.contains(&def.id) && !fresh.contains(&def.id) && progress(stats, &def.rule).done() {
                fresh.push(def.id.clone());
            }
        }
        fresh
    }

    /// The season achievements a final `rank` earns.
    #[must_use]
    pub fn for_season_rank(&self, rank: u32) -> Vec<AchievementId> {
        let stats = PlayerStats { best_season_rank: Some(rank), ..PlayerStats::default() };
        let mut ids: Vec<AchievementId> = Vec::new();
        for def in &self.achievements {
            if matches!(def.rule, AchievementRule::SeasonTopN { .. })
                && progress(&stats, &def.rule).done()
                && !ids.contains(&def.id)
            {
                ids.push(def.id.clone());
            }
        }
        ids
    }

    /// Whether an asset move counts as a crash survived by a holder of
    /// `held_qty` shares: a halt, or a fall from `reference_price` (e.g. the
    /// circuit breaker's window start) of at least `crash_drop_fraction`.
    #[must_use]
    pub fn is_crash_survived(&self, held_qty: u64, reference_price: Decimal, price: Decimal, halted: bool) -> bool {
        let floor =
            Decimal::ONE.checked_sub(self.crash_drop_fraction).and_then(|kept| reference_price.checked_mul(kept));
        held_qty > 0 && (halted || floor.is_some_and(|floor| price <= floor && reference_price > Decimal::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn ids(list: &[AchievementId]) -> Vec<&str> {
        list.iter().map(AchievementId::as_str).collect()
    }

    #[test]
    fn at_least_fifteen_distinct_achievements() {
        let rules = AchievementRules::default();
        let distinct: BTreeSet<_> = rules.achievements.iter().map(|def| def.id.clone()).collect();
        assert!(distinct.len() >= 15);
        assert_eq!(distinct.len(), rules.achievements.len());
    }

    #[test]
    fn first_trade_then_first_profit() {
        let rules = AchievementRules::default();
        let mut already = BTreeSet::new();
        let stats = PlayerStats { trades: 1, net_worth: dec!(10000), level: 1, ..PlayerStats::default() };
        let fresh = rules.newly_unlocked(&stats, &already);
        assert_eq!(ids(&fresh), ["first_trade"]);
        already.extend(fresh);
        assert!(rules.newly_unlocked(&stats, &already).is_empty());
        let stats = PlayerStats { trades: 2, profitable_sales: 1, realized_pnl: dec!(3.5), ..stats };
        assert_eq!(ids(&rules.newly_unlocked(&stats, &already)), ["first_profit"]);
    }

    #[test]
    fn progress_reports_current_and_target() {
        let stats = PlayerStats { trades: 40, realized_pnl: dec!(-20), ..PlayerStats::default() };
        let trades = progress(&stats, &AchievementRule::TradesAtLeast { count: 100 });
        assert_eq!((trades.current, trades.target, trades.done()), (dec!(40), dec!(100), false));
        let profit = progress(&stats, &AchievementRule::RealizedProfitAtLeast { amount: dec!(1000) });
        assert_eq!(profit.current, dec!(-20));
        let comeback = AchievementRule::ComebackAfterBankruptcy { net_worth: dec!(0) };
        assert!(!progress(&PlayerStats { net_worth: dec!(50000), ..stats.clone() }, &comeback).done());
        assert!(progress(&PlayerStats { bankruptcies: 1, ..stats }, &comeback).done());
    }

    #[test]
    fn season_ranks_earn_nested_achievements() {
        let rules = AchievementRules::default();
        assert_eq!(ids(&rules.for_season_rank(1)), ["season_top10", "season_top3", "season_champion"]);
        assert_eq!(ids(&rules.for_season_rank(7)), ["season_top10"]);
        assert!(rules.for_season_rank(11).is_empty());
    }

    #[test]
    fn crashes_need_a_holding_and_a_halt_or_a_deep_drop() {
        let rules = AchievementRules::default();
        assert!(rules.is_crash_survived(1, dec!(100), dec!(90), false));
        assert!(!rules.is_crash_survived(1, dec!(100), dec!(90.01), false));
        assert!(rules.is_crash_survived(1, dec!(100), dec!(100), true));
        assert!(!rules.is_crash_survived(0, dec!(100), dec!(50), true));
    }

    #[test]
    fn rules_round_trip_through_config() {
        let rules = AchievementRules::default();
        let json = serde_json::to_string(&rules).unwrap();
        assert_eq!(serde_json::from_str::<AchievementRules>(&json).unwrap(), rules);
        let rule: AchievementRule = serde_json::from_str(r#"{"kind": "trades_at_least", "count": 5}"#).unwrap();
        assert_eq!(rule, AchievementRule::TradesAtLeast { count: 5 });
    }

    fn any_stats() -> impl Strategy<Value = PlayerStats> {
        let small = || 0..40_u32;
        (
            (0..2_000_u64, 0..50_u64, -20_000..40_000_i64, small(), small(), small(), 0..150_000_i64),
            (0..12_u32, 0..3_u64, 0..3_u64, 0..3_u64, 0..3_u32, proptest::option::of(1..30_u32), 0..3_u32),
        )
            .prop_map(
                |(
                    (trades, sales, pnl, cats, assets, streak, worth),
                    (level, limits, stops, crashes, bk, rank, refs),
                )| {
                    PlayerStats {
                        trades,
                        profitable_sales: sales,
                        realized_pnl: Decimal::from(pnl),
                        categories_held: cats % 8,
                        assets_held: assets,
                        daily_streak: streak,
                        net_worth: Decimal::from(worth),
                        level,
                        limit_orders_filled: limits,
                        stops_triggered: stops,
                        crashes_survived: crashes,
                        bankruptcies: bk,
                        best_season_rank: rank,
                        referrals_rewarded: refs,
                    }
                },
            )
    }

    /// `low` with every counter raised by `bump`'s (a better rank included).
    fn raised(low: &PlayerStats, bump: &PlayerStats) -> PlayerStats {
        PlayerStats {
            trades: low.trades + bump.trades,
            profitable_sales: low.profitable_sales + bump.profitable_sales,
            realized_pnl: low.realized_pnl + bump.realized_pnl.abs(),
            categories_held: low.categories_held + bump.categories_held,
            assets_held: low.assets_held + bump.assets_held,
            daily_streak: low.daily_streak + bump.daily_streak,
            net_worth: low.net_worth + bump.net_worth,
            level: low.level + bump.level,
            limit_orders_filled: low.limit_orders_filled + bump.limit_orders_filled,
            stops_triggered: low.stops_triggered + bump.stops_triggered,
            crashes_survived: low.crashes_survived + bump.crashes_survived,
            bankruptcies: low.bankruptcies + bump.bankruptcies,
            best_season_rank: match (low.best_season_rank, bump.best_season_rank) {
                (Some(l), Some(b)) => Some(l.min(b)),
                (l, b) => l.or(b),
            },
            referrals_rewarded: low.referrals_rewarded + bump.referrals_rewarded,
        }
    }

    /// A fixed seed per module (deterministic CI) unless `PROPTEST_RNG_602`
    /// or `PROPTEST_CASES` ask to explore.
    fn config() -> ProptestConfig {
        let base = ProptestConfig::default();
        let fixed = proptest::test_runner::RngSeed::Fixed(602);
        let rng_seed = if std::env::var_os("PROPTEST_RNG_602").is_some() { base.rng_seed } else { fixed };
        let cases = if std::env::var_os("PROPTEST_CASES").is_some() { base.cases } else { 512 };
        ProptestConfig { cases, rng_seed, failure_persistence: None, ..base }
    }

    proptest! {
        #![proptest_config(config())]

        /// Feeding any sequence of snapshots (counters up or down), nothing is
        /// granted twice, the granted set only grows, and everything met is
        /// granted by the end of each step.
        #[test]
        fn never_granted_twice(snapshots in proptest::collection::vec(any_stats(), 1..40)) {
            let rules = AchievementRules::default();
            let mut granted: BTreeSet<AchievementId> = BTreeSet::new();
            let mut all: Vec<AchievementId> = Vec::new();
            for stats in &snapshots {
                let before = granted.clone();
                for id in rules.newly_unlocked(stats, &granted) {
                    prop_assert!(!before.contains(&id));
                    prop_assert!(granted.insert(id.clone()), "{} granted twice in one step", id);
                    all.push(id);
                }
                prop_assert!(granted.is_superset(&before));
                for def in &rules.achievements {
                    if progress(stats, &def.rule).done() {
                        prop_assert!(granted.contains(&def.id));
                    }
                }
            }
            prop_assert_eq!(all.len(), granted.len());
        }

        /// Rules are monotone: better stats never meet fewer achievements, and
        /// progress never exceeds its target.
        #[test]
        fn better_stats_meet_at_least_as_much(low in any_stats(), bump in any_stats()) {
            let rules = AchievementRules::default();
            let high = raised(&low, &bump);
            for def in &rules.achievements {
                let (p_low, p_high) = (progress(&low, &def.rule), progress(&high, &def.rule));
                prop_assert!(p_low.current <= p_low.target && p_high.current >= p_low.current);
                if p_low.done() {
                    prop_assert!(p_high.done(), "{} lost", def.id);
                }
            }
        }
    }
}
