//! The daily bonus (`/daily`) with streaks — once per calendar day in the
//! player's time zone — and bankruptcy (`/bankrupt`) back to starting cash.
//!
//! A time zone is a fixed UTC offset stored on the player ([`UtcOffset`]); no
//! time-zone database is needed. Daylight saving time is handled by updating
//! the player's stored offset when their clocks change (the player sets it).
//! Changing the offset can never pay twice in one local day: a claim must fall
//! on a later local day than the last claim, both by the day number recorded
//! then and by the last claim's instant seen in today's calendar. Because the
//! recorded day number only ratchets forward, offset games gain at most two
//! claims over a player's whole life (offsets span 26 hours, so one instant's
//! day numbers differ by at most two across zones); moving west can cost one
//! day's bonus but never the streak.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::money::{Lean, round_money};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;
/// Westernmost UTC offset accepted (UTC−12:00).
pub const UTC_OFFSET_MINUTES_MIN: i32 = -720;
/// Easternmost UTC offset accepted (UTC+14:00).
pub const UTC_OFFSET_MINUTES_MAX: i32 = 840;

/// A player's time zone as a fixed offset from UTC, in whole minutes within
/// [`UTC_OFFSET_MINUTES_MIN`]`..=`[`UTC_OFFSET_MINUTES_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(try_from = "i32", into = "i32")]
pub struct UtcOffset(i32);

impl UtcOffset {
    /// UTC itself.
    pub const UTC: Self = Self(0);

    /// An offset of `minutes` east of UTC; `None` outside the accepted range.
    #[must_use]
    pub fn from_minutes(minutes: i32) -> Option<Self> {
        (UTC_OFFSET_MINUTES_MIN..=UTC_OFFSET_MINUTES_MAX).contains(&minutes).then_some(Self(minutes))
    }

    /// Minutes east of UTC.
    #[must_use]
    pub fn minutes(self) -> i32 {
        self.0
    }

    fn ms(self) -> i64 {
        i64::from(self.0) * 60_000
    }
}

impl TryFrom<i32> for UtcOffset {
    type Error = String;

    fn try_from(minutes: i32) -> Result<Self, Self::Error> {
        Self::from_minutes(minutes).ok_or_else(|| format!("UTC offset {minutes} min out of range"))
    }
}

impl From<UtcOffset> for i32 {
    fn from(offset: UtcOffset) -> Self {
        offset.0
    }
}

/// The local calendar day of `at_ms` (days since 1970-01-01 in the zone).
#[must_use]
pub fn local_day(at_ms: i64, offset: UtcOffset) -> i64 {
    at_ms.saturating_add(offset.ms()).div_euclid(DAY_MS)
}

/// The instant (UTC ms) local day `day` starts in the zone.
#[must_use]
pub fn local_day_start_ms(day: i64, offset: UtcOffset) -> i64 {
    day.saturating_mul(DAY_MS).saturating_sub(offset.ms())
}

/// The configured daily bonus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DailyRules {
    /// Bonus on the first day of a streak.
    pub bonus_base: Decimal,
    /// Extra bonus per further day of the streak.
    pub bonus_per_streak_day: Decimal,
    /// Largest bonus, however long the streak.
    pub bonus_max: Decimal,
    /// Missed days a streak survives (one: a grace day).
    pub grace_days: u32,
}

impl Default for DailyRules {
    fn default() -> Self {
        // 100 on day 1, +25 a day, capped at 500 from day 17: 1–5 % of the
        // 10,000 starting cash, so showing up matters but never beats trading.
        Self {
            bonus_base: Decimal::from(100),
            bonus_per_streak_day: Decimal::from(25),
            bonus_max: Decimal::from(500),
            grace_days: 1,
        }
    }
}

/// A player's daily-bonus record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyState {
    /// Local day number of the last claim, in the zone in force then.
    pub last_claim_day: Option<i64>,
    /// Instant of the last claim (to see it in a changed zone's calendar).
    pub last_claim_at_ms: Option<i64>,
    /// Claims in the current streak.
    pub streak: u32,
}

impl DailyState {
    /// Records a granted claim.
    pub fn apply(&mut self, claim: &Claim) {
        *self = Self { last_claim_day: Some(claim.day), last_claim_at_ms: Some(claim.at_ms), streak: claim.streak };
    }
}

/// A granted daily bonus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Local day claimed.
    pub day: i64,
    pub at_ms: i64,
    /// Streak including this claim.
    pub streak: u32,
    /// Cash to credit (rounded down to the cent).
    pub bonus: Decimal,
}

/// Why `/daily` paid nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DailyRejection {
    /// Today's bonus is already taken.
    #[error("daily bonus already claimed")]
    AlreadyClaimed { next_claim_at_ms: i64 },
}

/// Decides a `/daily` at `at_ms` for a player in zone `offset`.
///
/// # Errors
/// `AlreadyClaimed` (with the next claimable instant) when a claim already
/// falls on this local day or later — also when the clock went backwards.
pub fn claim(state: &DailyState, at_ms: i64, offset: UtcOffset, rules: &DailyRules) -> Result<Claim, DailyRejection> {
    let today = local_day(at_ms, offset);
    let seen_now = state.last_claim_at_ms.map(|last_ms| local_day(last_ms, offset));
    if let Some(paid_through) = state.last_claim_day.max(seen_now).filter(|paid_through| today <= *paid_through) {
        let next_claim_at_ms = local_day_start_ms(paid_through.saturating_add(1), offset);
        return Err(DailyRejection::AlreadyClaimed { next_claim_at_ms });
    }
    let streak = match state.last_claim_day {
        Some(last) if today.saturating_sub(last) <= 1 + i64::from(rules.grace_days) => state.streak.saturating_add(1),
        _ => 1,
    };
    Ok(Claim { day: today, at_ms, streak, bonus: bonus_for_streak(streak, rules) })
}

/// The bonus on day `streak` of a streak: base + step × (streak − 1), capped,
/// never negative, rounded down to the cent.
#[must_use]
pub fn bonus_for_streak(streak: u32, rules: &DailyRules) -> Decimal {
    let cap = rules.bonus_max.max(Decimal::ZERO);
    let raw = rules
        .bonus_per_streak_day
        .checked_mul(Decimal::from(streak.saturating_sub(1)))
        .and_then(|extra| extra.checked_add(rules.bonus_base))
        .unwrap_or(cap);
    round_money(raw.clamp(Decimal::ZERO, cap), Lean::Down)
}

/// When a broke player may start over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BankruptcyRules {
    /// Net worth below this fraction of starting cash counts as broke.
    pub net_worth_max_fraction: Decimal,
    /// Least time between two bankruptcies.
    pub cooldown_ms: i64,
}

impl Default for BankruptcyRules {
    fn default() -> Self {
        // 5 %: only a wiped-out player restarts; a week: restarting is not a
        // way to gamble the starting cash again and again.
        Self { net_worth_max_fraction: Decimal::new(5, 2), cooldown_ms: 7 * DAY_MS }
    }
}

/// Why `/bankrupt` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BankruptRejection {
    /// The player is not broke.
    #[error("not broke")]
    NotBroke { net_worth: Decimal, threshold: Decimal },
    /// The last bankruptcy was too recent.
    #[error("bankruptcy cooling down")]
    CoolingDown { next_allowed_at_ms: i64 },
}

/// Decides a `/bankrupt`: allowed when net worth (holdings at sell-out value)
/// is below the threshold and the cooldown has passed.
///
/// # Errors
/// `NotBroke` or `CoolingDown` (also when the clock is before the last one).
pub fn bankrupt(
    net_worth: Decimal,
    starting_cash: Decimal,
    last_bankrupt_at_ms: Option<i64>,
    at_ms: i64,
    rules: &BankruptcyRules,
) -> Result<(), BankruptRejection> {
    let threshold =
        round_money(starting_cash.checked_mul(rules.net_worth_max_fraction).unwrap_or_default(), Lean::Down);
    if net_worth >= threshold {
        return Err(BankruptRejection::NotBroke { net_worth, threshold });
    }
    if let Some(last_ms) = last_bankrupt_at_ms {
        let next_allowed_at_ms = last_ms.saturating_add(rules.cooldown_ms.max(0));
        if at_ms < next_allowed_at_ms {
            return Err(BankruptRejection::CoolingDown { next_allowed_at_ms });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    const HOUR_MS: i64 = 3_600_000;
    /// 2025-03-10T00:00:00Z.
    const T0: i64 = 1_741_564_800_000;

    fn offset(minutes: i32) -> UtcOffset {
        UtcOffset::from_minutes(minutes).unwrap()
    }

    fn claim_at(state: &mut DailyState, at_ms: i64, zone: UtcOffset) -> Result<Claim, DailyRejection> {
        let granted = claim(state, at_ms, zone, &DailyRules::default())?;
        state.apply(&granted);
        Ok(granted)
    }

    #[test]
    fn offsets_are_bounded() {
        assert!(UtcOffset::from_minutes(-721).is_none());
        assert!(UtcOffset::from_minutes(841).is_none());
        assert_eq!(serde_json::from_str::<UtcOffset>("330").unwrap().minutes(), 330);
        assert!(serde_json::from_str::<UtcOffset>("900").is_err());
    }

    #[test]
    fn once_per_local_day_around_midnight() {
        let zone = offset(120); // UTC+2: local midnight is 22:00 UTC
        let mut state = DailyState::default();
        let first = claim_at(&mut state, T0 + 21 * HOUR_MS + 59 * 60_000, zone).unwrap();
        assert_eq!((first.streak, first.bonus), (1, dec!(100)));
        let again = claim(&state, T0 + 21 * HOUR_MS + 59 * 60_000 + 30_000, zone, &DailyRules::default());
        assert_eq!(again, Err(DailyRejection::AlreadyClaimed { next_claim_at_ms: T0 + 22 * HOUR_MS }));
        let next = claim_at(&mut state, T0 + 22 * HOUR_MS, zone).unwrap();
        assert_eq!((next.day, next.streak, next.bonus), (first.day + 1, 2, dec!(125)));
    }

    #[test]
    fn a_clock_going_backwards_never_pays_again() {
        let mut state = DailyState::default();
        claim_at(&mut state, T0 + 5 * DAY_MS, UtcOffset::UTC).unwrap();
        for back_ms in [1, HOUR_MS, DAY_MS, 30 * DAY_MS] {
            assert!(claim(&state, T0 + 5 * DAY_MS - back_ms, UtcOffset::UTC, &DailyRules::default()).is_err());
        }
    }

    #[test]
    fn an_offset_change_never_pays_twice_in_one_local_day() {
        // Claim at 01:00 local in UTC−12 (13:00 UTC), then jump to UTC+14,
        // where that instant is already tomorrow 03:00.
        let mut state = DailyState::default();
        claim_at(&mut state, T0 + 13 * HOUR_MS, offset(-720)).unwrap();
        assert!(claim(&state, T0 + 13 * HOUR_MS + 60_000, offset(840), &DailyRules::default()).is_err());
        // A DST switch (+1 h → +2 h) just after local midnight pays nothing more.
        let mut state = DailyState::default();
        claim_at(&mut state, T0 + 23 * HOUR_MS + 30 * 60_000, offset(60)).unwrap(); // 00:30 local
        assert!(claim(&state, T0 + 23 * HOUR_MS + 40 * 60_000, offset(120), &DailyRules::default()).is_err());
        assert!(claim(&state, T0 + 2 * DAY_MS - 2 * HOUR_MS, offset(120), &DailyRules::default()).is_ok());
    }

    #[test]
    fn streak_survives_one_missed_day_and_breaks_after_two() {
        let mut state = DailyState::default();
        for day in 0..3 {
            claim_at(&mut state, T0 + day * DAY_MS, UtcOffset::UTC).unwrap();
        }
        assert_eq!(claim_at(&mut state, T0 + 4 * DAY_MS, UtcOffset::UTC).unwrap().streak, 4); // missed day 3
        assert_eq!(claim_at(&mut state, T0 + 7 * DAY_MS, UtcOffset::UTC).unwrap().streak, 1); // missed 5 and 6
    }

    #[test]
    fn bonus_grows_to_its_cap() {
        let rules = DailyRules::default();
        assert_eq!(bonus_for_streak(0, &rules), dec!(100));
        assert_eq!(bonus_for_streak(3, &rules), dec!(150));
        assert_eq!(bonus_for_streak(17, &rules), dec!(500));
        assert_eq!(bonus_for_streak(u32::MAX, &rules), dec!(500));
    }

    #[test]
    fn bankruptcy_needs_a_broke_player_and_a_cooldown() {
        let rules = BankruptcyRules::default();
        let start = dec!(10000);
        assert_eq!(
            bankrupt(dec!(500), start, None, T0, &rules),
            Err(BankruptRejection::NotBroke { net_worth: dec!(500), threshold: dec!(500) })
        );
        assert_eq!(bankrupt(dec!(499.99), start, None, T0, &rules), Ok(()));
        let cooling = Err(BankruptRejection::CoolingDown { next_allowed_at_ms: T0 + 7 * DAY_MS });
        assert_eq!(bankrupt(dec!(0), start, Some(T0), T0 + 7 * DAY_MS - 1, &rules), cooling);
        assert_eq!(bankrupt(dec!(0), start, Some(T0), T0 - DAY_MS, &rules), cooling);
        assert_eq!(bankrupt(dec!(0), start, Some(T0), T0 + 7 * DAY_MS, &rules), Ok(()));
    }

    /// A clock that jumps around: forward, backward, a minute, a day; and a
    /// zone that may change between any two attempts.
    fn attempts() -> impl Strategy<Value = Vec<(i64, i32)>> {
        let step = prop_oneof![-2 * DAY_MS..2 * DAY_MS, -HOUR_MS..HOUR_MS, Just(DAY_MS), Just(-1_i64), 0..5 * DAY_MS];
        proptest::collection::vec((step, UTC_OFFSET_MINUTES_MIN..=UTC_OFFSET_MINUTES_MAX), 1..120)
    }

    /// A fixed seed per module (deterministic CI) unless `PROPTEST_RNG_603`
    /// or `PROPTEST_CASES` ask to explore.
    fn config() -> ProptestConfig {
        let base = ProptestConfig::default();
        let fixed = proptest::test_runner::RngSeed::Fixed(603);
        let rng_seed = if std::env::var_os("PROPTEST_RNG_603").is_some() { base.rng_seed } else { fixed };
        let cases = if std::env::var_os("PROPTEST_CASES").is_some() { base.cases } else { 512 };
        ProptestConfig { cases, rng_seed, failure_persistence: None, ..base }
    }

    proptest! {
        #![proptest_config(config())]

        /// Whatever the clock and the zone do, no paid claim shares its local
        /// day (in the zone in force when it was paid) with any earlier paid
        /// claim, and the total paid is bounded by the elapsed time.
        #[test]
        fn never_two_claims_in_one_local_day(steps in attempts(), fixed_zone in any::<bool>()) {
            let rules = DailyRules::default();
            let mut state = DailyState::default();
            let mut now = T0;
            let mut paid: Vec<Claim> = Vec::new();
            let (mut min_ms, mut max_ms) = (now, now);
            for (step, minutes) in steps {
                now += step;
                let zone = if fixed_zone { offset(330) } else { offset(minutes) };
                if let Ok(granted) = claim(&state, now, zone, &rules) {
                    for earlier in &paid {
                        prop_assert!(local_day(earlier.at_ms, zone) < granted.day);
                        prop_assert!(earlier.day < granted.day);
                        prop_assert!(earlier.at_ms < granted.at_ms);
                    }
                    prop_assert!(granted.bonus <= rules.bonus_max && granted.bonus > Decimal::ZERO);
                    let first_day = paid.first().map_or(granted.day, |c| c.day);
                    prop_assert!(i64::from(granted.streak) <= granted.day - first_day + 1);
                    prop_assert!(granted.streak as usize <= paid.len() + 1);
                    state.apply(&granted);
                    min_ms = min_ms.min(now);
                    max_ms = max_ms.max(now);
                    paid.push(granted);
                }
            }
            let slack = if fixed_zone { 1 } else { 3 };
            prop_assert!(paid.len() as i64 <= (max_ms - min_ms) / DAY_MS + 1 + slack);
        }

        /// The rejection's next claim instant is exactly when claiming works.
        #[test]
        fn next_claim_instant_is_exact(gap_ms in 0..3 * DAY_MS, before in -720..=840_i32, after in -720..=840_i32) {
            let mut state = DailyState::default();
            claim_at(&mut state, T0, offset(before)).unwrap();
            if let Err(DailyRejection::AlreadyClaimed { next_claim_at_ms }) =
                claim(&state, T0 + gap_ms, offset(after), &DailyRules::default())
            {
                prop_assert!(next_claim_at_ms > T0 + gap_ms);
                prop_assert!(claim(&state, next_claim_at_ms - 1, offset(after), &DailyRules::default()).is_err());
                prop_assert!(claim(&state, next_claim_at_ms, offset(after), &DailyRules::default()).is_ok());
            }
        }

        #[test]
        fn bonus_never_exceeds_its_cap(
            streak in any::<u32>(),
            base in 0..10_000_i64,
            step in 0..10_000_i64,
            cap in 0..10_000_i64,
        ) {
            let rules = DailyRules {
                bonus_base: Decimal::new(base, 2),
                bonus_per_streak_day: Decimal::new(step, 2),
                bonus_max: Decimal::new(cap, 2),
                grace_days: 1,
            };
            let bonus = bonus_for_streak(streak, &rules);
            prop_assert!(bonus <= rules.bonus_max && bonus >= Decimal::ZERO);
            prop_assert!(bonus_for_streak(streak.saturating_add(1), &rules) >= bonus);
        }
    }
}
