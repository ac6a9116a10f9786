//! Anti-abuse rules that keep the economy honest: a concentration cap, fees
//! that grow with order size, a quick-sell fee against wash trading, referral
//! rewards a farm of fresh accounts cannot exploit, and a daily cap on bonuses.
//!
//! Wash trading: selling shares bought less than `hold_minutes_min` market
//! minutes ago pays an extra fee rather than being refused. A refusal would
//! trap a player in a falling asset and break stop-losses, which must fire
//! whenever triggered; the fee (on top of spread, impact and the normal fee)
//! makes a quick round trip cost more than anything it could farm — trade
//! counts, XP (capped per day anyway) or one's own transient price impact.
//!
//! Funnelling: there is no way at all to move cash or shares between players
//! (every trade is against the house; there is no gift or transfer command),
//! so alt accounts cannot feed a main. Starting cash, daily bonuses and
//! referral rewards are per account and capped ([`AbuseRules::bonus_payable`]).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::ids::PlayerId;
use super::money::{Lean, round_money};
use super::rules::MarketRules;

/// Referral rewards: paid to the referrer only once the new player is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReferralRules {
    /// Qualifying trades the new player must make.
    pub trades_min: u32,
    /// Least value of a qualifying trade.
    pub trade_value_min: Decimal,
    /// Distinct local days with a qualifying trade.
    pub active_days_min: u32,
    /// Reward paid to the referrer.
    pub reward: Decimal,
    /// Most rewards per referrer per season.
    pub rewards_per_season_max: u32,
    /// How far up the referral chain cycles are looked for.
    pub chain_depth_max: u32,
}

impl Default for ReferralRules {
    fn default() -> Self {
        // 5 trades of ≥ 100 on 2 days: a person trying the game does that, a
        // farm must pay fees and wait. 5 × 100 a season is 5 % of starting
        // cash: a thank-you, not a strategy.
        Self {
            trades_min: 5,
            trade_value_min: Decimal::from(100),
            active_days_min: 2,
            reward: Decimal::from(100),
            rewards_per_season_max: 5,
            chain_depth_max: 64,
        }
    }
}

/// The configured anti-abuse limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbuseRules {
    /// Most of net worth one asset may be after a buy, in percent.
    pub concentration_max_pct: u32,
    /// The concentration cap applies from this net worth on (newcomers may go all in).
    pub concentration_net_worth_min: Decimal,
    /// Extra fee rate per whole `liquidity_shares` of order size.
    pub size_fee_rate_per_liquidity: Decimal,
    /// Most extra fee rate for size.
    pub size_fee_rate_max: Decimal,
    /// Shares held less than this many market minutes are "young".
    pub hold_minutes_min: u64,
    /// Extra fee rate on the value of young shares sold.
    pub quick_sell_fee_rate: Decimal,
    /// Most recent-buy lots tracked per position (older ones merge).
    pub recent_lots_max: usize,
    /// Most bonus cash (daily bonus, referral rewards) per player per local day.
    pub bonus_daily_max: Decimal,
    pub referral: ReferralRules,
}

impl Default for AbuseRules {
    fn default() -> Self {
        Self {
            // Half of net worth in one asset, from 2.5× starting cash on: a
            // leader must spread out, a newcomer may bet everything.
            concentration_max_pct: 50,
            concentration_net_worth_min: Decimal::from(25_000),
            // An order of 10 % of an asset's liquidity pays +0.2 %; at most +1 %.
            size_fee_rate_per_liquidity: Decimal::new(2, 2),
            size_fee_rate_max: Decimal::new(1, 2),
            // Two half-lives of the fast price impact (30 market minutes):
            // selling into one's own buy's impact costs 0.5 % more.
            hold_minutes_min: 60,
            quick_sell_fee_rate: Decimal::new(5, 3),
            recent_lots_max: 32,
            bonus_daily_max: Decimal::from(1_000),
            referral: ReferralRules::default(),
        }
    }
}

/// Why an action was refused by an anti-abuse rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AbuseRejection {
    /// The buy would put too much of net worth into one asset.
    #[error("at most {pct_max}% of net worth in one asset")]
    Concentration { pct_max: u32, value_max: Decimal },
}

/// Why a referral earns nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReferralRejection {
    #[error("players cannot refer themselves")]
    SelfReferral,
    #[error("only new players can be referred")]
    NotNewPlayer,
    #[error("referrals cannot go in a circle")]
    Cycle,
    #[error("the new player is not active yet")]
    NotActiveYet { trades: u32, trades_min: u32, active_days: u32, active_days_min: u32 },
    #[error("this referral was already rewarded")]
    AlreadyRewarded,
    #[error("at most {rewards_max} referral rewards per season")]
    SeasonCapReached { rewards_max: u32 },
}

/// A referred player's way to "active".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralProgress {
    pub trades: u32,
    pub active_days: u32,
    pub last_active_day: Option<i64>,
    pub rewarded: bool,
}

impl ReferralProgress {
    /// Counts a trade worth `value` on local day `day` (a day earlier than
    /// the last counted one adds no day: clocks going back gain nothing).
    pub fn record_trade(&mut self, value: Decimal, day: i64, rules: &ReferralRules) {
        if value < rules.trade_value_min {
            return;
        }
        self.trades = self.trades.saturating_add(1);
        if self.last_active_day.is_none_or(|last| day > last) {
            self.active_days = self.active_days.saturating_add(1);
            self.last_active_day = Some(day);
        }
    }
}

/// A recent buy of one position: `qty` shares bought at market `minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub minute: u64,
    pub qty: u64,
}

/// A position's recent buys, oldest first, bounded in length. Sales take the
/// oldest shares first (the player's best case), then recent lots in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentBuys {
    lots: Vec<Lot>,
}

impl RecentBuys {
    /// The tracked lots, oldest first.
    #[must_use]
    pub fn lots(&self) -> &[Lot] {
        &self.lots
    }

    /// Records a buy; past the lot limit the two oldest lots merge, dated at
    /// the newer one (leaning against the player, like all rounding).
    pub fn record_buy(&mut self, minute: u64, qty: u64, rules: &AbuseRules) {
        self.prune(minute, rules);
        let minute = self.lots.last().map_or(minute, |last| minute.max(last.minute));
        match self.lots.last_mut() {
            Some(last) if last.minute == minute => last.qty = last.qty.saturating_add(qty),
            _ => self.lots.push(Lot { minute, qty }),
        }
        while self.lots.len() > rules.recent_lots_max.max(1) {
            let oldest = self.lots.remove(0);
            if let Some(next) = self.lots.first_mut() {
                next.qty = next.qty.saturating_add(oldest.qty);
            }
        }
    }

    /// Shares bought less than `hold_minutes_min` before `now_minute`.
    #[must_use]
    pub fn young_qty(&self, now_minute: u64, rules: &AbuseRules) -> u64 {
        self.lots.iter().filter(|lot| is_young(lot, now_minute, rules)).map(|lot| lot.qty).sum()
    }

    /// Records a sale of `qty` out of `held_before` shares at `now_minute`;
    /// returns how many of the sold shares were young.
    pub fn sell(&mut self, held_before: u64, qty: u64, now_minute: u64, rules: &AbuseRules) -> u64 {
        self.prune(now_minute, rules);
        let young = self.young_qty(now_minute, rules).min(held_before);
        let mut young_sold = qty.saturating_sub(held_before - young).min(young);
        let sold = young_sold;
        for lot in &mut self.lots {
            let taken = lot.qty.min(young_sold);
            lot.qty -= taken;
            young_sold -= taken;
        }
        self.lots.retain(|lot| lot.qty > 0);
        sold
    }

    fn prune(&mut self, now_minute: u64, rules: &AbuseRules) {
        self.lots.retain(|lot| is_young(lot, now_minute, rules));
    }
}

fn is_young(lot: &Lot, now_minute: u64, rules: &AbuseRules) -> bool {
    now_minute.saturating_sub(lot.minute) < rules.hold_minutes_min
}

impl AbuseRules {
    /// Checks a buy against the concentration cap: the asset's value after
    /// the buy (`held_value + buy_value`) against `net_worth` before it.
    ///
    /// # Errors
    /// `Concentration` with the largest allowed value of the asset.
    pub fn check_concentration(
        &self,
        held_value: Decimal,
        buy_value: Decimal,
        net_worth: Decimal,
    ) -> Result<(), AbuseRejection> {
        if net_worth < self.concentration_net_worth_min {
            return Ok(());
        }
        let pct_max = self.concentration_max_pct;
        let share = Decimal::from(pct_max) / Decimal::ONE_HUNDRED;
        let value_max = round_money(net_worth.checked_mul(share).unwrap_or(Decimal::MAX), Lean::Down);
        match held_value.checked_add(buy_value) {
            Some(after) if after <= value_max => Ok(()),
            _ => Err(AbuseRejection::Concentration { pct_max, value_max }),
        }
    }

    /// The fee on a trade of `qty` shares worth `value`: the market's rate
    /// (less `discount`, a fraction, e.g. premium's) plus a size surcharge
    /// growing with `qty / liquidity_shares`, with the market's floor. The
    /// discount never applies to the surcharge, which holds leaders back.
    #[must_use]
    pub fn graduated_fee(
        &self,
        value: Decimal,
        qty: u64,
        liquidity_shares: u64,
        discount: Decimal,
        market: &MarketRules,
    ) -> Decimal {
        let size = Decimal::from(qty) / Decimal::from(liquidity_shares.max(1));
        let extra = self.size_fee_rate_per_liquidity.checked_mul(size).unwrap_or(Decimal::MAX);
        let extra = extra.min(self.size_fee_rate_max).max(Decimal::ZERO);
        let base = market.fee_rate.max(Decimal::ZERO) * (Decimal::ONE - discount.clamp(Decimal::ZERO, Decimal::ONE));
        let rate = base.checked_add(extra).unwrap_or(Decimal::MAX);
        let fee = value.max(Decimal::ZERO).checked_mul(rate).unwrap_or(Decimal::MAX);
        round_money(fee, Lean::Up).max(market.fee_min)
    }

    /// The extra fee on selling `young_qty` young shares at `price`.
    #[must_use]
    pub fn quick_sell_fee(&self, young_qty: u64, price: Decimal) -> Decimal {
        let value = price.checked_mul(Decimal::from(young_qty)).unwrap_or(Decimal::MAX);
        round_money(value.checked_mul(self.quick_sell_fee_rate).unwrap_or(Decimal::MAX), Lean::Up)
    }

    /// How much of a bonus of `amount` may be paid, given the bonus cash the
    /// player already got this local day.
    #[must_use]
    pub fn bonus_payable(&self, amount: Decimal, bonus_today: Decimal) -> Decimal {
        let room = self.bonus_daily_max.checked_sub(bonus_today.max(Decimal::ZERO)).unwrap_or(Decimal::ZERO);
        room.min(amount).max(Decimal::ZERO)
    }
}

impl ReferralRules {
    /// Checks a `/start <ref>`: not oneself, only for a brand-new account, and
    /// never closing a circle (`referrer_of` walks the existing links).
    ///
    /// # Errors
    /// `SelfReferral`, `NotNewPlayer` or `Cycle`.
    pub fn check_link<F>(
        &self,
        referrer: PlayerId,
        referee: PlayerId,
        referee_is_new: bool,
        referrer_of: F,
    ) -> Result<(), ReferralRejection>
    where
        F: Fn(PlayerId) -> Option<PlayerId>,
    {
        if referrer == referee {
            return Err(ReferralRejection::SelfReferral);
        }
        if !referee_is_new {
            return Err(ReferralRejection::NotNewPlayer);
        }
        let mut up = referrer_of(referrer);
        for _ in 0..self.chain_depth_max {
            match up {
                Some(ancestor) if ancestor == referee || ancestor == referrer => return Err(ReferralRejection::Cycle),
                Some(ancestor) => up = referrer_of(ancestor),
                None => break,
            }
        }
        Ok(())
    }

    /// The reward due to the referrer of a player with `progress`, given the
    /// referral rewards the referrer already got this season.
    ///
    /// # Errors
    /// `AlreadyRewarded`, `NotActiveYet` or `SeasonCapReached`.
    pub fn reward(
        &self,
        progress: &ReferralProgress,
        referrer_rewards_this_season: u32,
    ) -> Result<Decimal, ReferralRejection> {
        if progress.rewarded {
            return Err(ReferralRejection::AlreadyRewarded);
        }
        if progress.trades < self.trades_min || progress.active_days < self.active_days_min {
            return Err(ReferralRejection::NotActiveYet {
                trades: progress.trades,
                trades_min: self.trades_min,
                active_days: progress.active_days,
                active_days_min: self.active_days_min,
            });
        }
        if referrer_rewards_this_season >= self.rewards_per_season_max {
            return Err(ReferralRejection::SeasonCapReached { rewards_max: self.rewards_per_season_max });
        }
        Ok(round_money(self.reward.max(Decimal::ZERO), Lean::Down))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    #[test]
    fn concentration_binds_only_above_the_minimum_net_worth() {
        let rules = AbuseRules::default();
        assert_eq!(rules.check_concentration(dec!(0), dec!(20000), dec!(20000)), Ok(()));
        assert_eq!(rules.check_concentration(dec!(20000), dec!(5000), dec!(50000)), Ok(()));
        assert_eq!(
            rules.check_concentration(dec!(20000), dec!(5000.01), dec!(50000)),
            Err(AbuseRejection::Concentration { pct_max: 50, value_max: dec!(25000) })
        );
    }

    #[test]
    fn fees_grow_with_size_and_premium_discounts_only_the_base() {
        let (rules, market) = (AbuseRules::default(), MarketRules::default());
        assert_eq!(rules.graduated_fee(dec!(10), 1, 50_000, dec!(0), &market), dec!(0.10)); // the floor
        assert_eq!(rules.graduated_fee(dec!(10000), 100, 50_000, dec!(0), &market), dec!(10.40));
        assert_eq!(rules.graduated_fee(dec!(500000), 5_000, 50_000, dec!(0), &market), dec!(1500));
        assert_eq!(rules.graduated_fee(dec!(500000), 5_000, 50_000, dec!(0.25), &market), dec!(1375));
        assert_eq!(rules.graduated_fee(dec!(500000), 50_000, 0, dec!(0), &market), dec!(5500)); // capped
    }

    #[test]
    fn quick_sells_pay_extra_on_young_shares_only() {
        let rules = AbuseRules::default();
        let mut buys = RecentBuys::default();
        buys.record_buy(100, 10, &rules);
        buys.record_buy(130, 5, &rules);
        // 20 old shares held before; selling 25 takes 20 old, then 5 young.
        assert_eq!(buys.sell(35, 25, 140, &rules), 5);
        assert_eq!(buys.lots(), [Lot { minute: 100, qty: 5 }, Lot { minute: 130, qty: 5 }]);
        assert_eq!(buys.young_qty(160, &rules), 5); // the minute-100 lot has aged
        assert_eq!(buys.sell(10, 10, 200, &rules), 0);
        assert_eq!(rules.quick_sell_fee(5, dec!(12.34)), dec!(0.31));
    }

    #[test]
    fn referrals_need_a_new_active_player_within_the_season_cap() {
        let rules = ReferralRules::default();
        let links = |p: PlayerId| (p.0 > 1).then_some(PlayerId(p.0 - 1)); // 3 → 2 → 1
        assert_eq!(rules.check_link(PlayerId(4), PlayerId(4), true, links), Err(ReferralRejection::SelfReferral));
        assert_eq!(rules.check_link(PlayerId(3), PlayerId(9), false, links), Err(ReferralRejection::NotNewPlayer));
        assert_eq!(rules.check_link(PlayerId(3), PlayerId(1), true, links), Err(ReferralRejection::Cycle));
        assert_eq!(rules.check_link(PlayerId(3), PlayerId(9), true, links), Ok(()));
        let mut progress = ReferralProgress::default();
        for day in [10, 10, 10, 10, 9, 9] {
            progress.record_trade(dec!(150), day, &rules);
        }
        progress.record_trade(dec!(99.99), 11, &rules);
        assert!(matches!(rules.reward(&progress, 0), Err(ReferralRejection::NotActiveYet { active_days: 1, .. })));
        progress.record_trade(dec!(100), 11, &rules);
        assert_eq!(rules.reward(&progress, 4), Ok(dec!(100)));
        assert_eq!(rules.reward(&progress, 5), Err(ReferralRejection::SeasonCapReached { rewards_max: 5 }));
        let paid = ReferralProgress { rewarded: true, ..progress };
        assert_eq!(rules.reward(&paid, 0), Err(ReferralRejection::AlreadyRewarded));
    }

    #[test]
    fn bonuses_are_capped_per_day() {
        let rules = AbuseRules::default();
        assert_eq!(rules.bonus_payable(dec!(500), dec!(0)), dec!(500));
        assert_eq!(rules.bonus_payable(dec!(500), dec!(800)), dec!(200));
        assert_eq!(rules.bonus_payable(dec!(500), dec!(1200)), dec!(0));
    }

    /// A fixed seed per module (deterministic CI) unless `PROPTEST_RNG_605`
    /// or `PROPTEST_CASES` ask to explore.
    fn config() -> ProptestConfig {
        let base = ProptestConfig::default();
        let fixed = proptest::test_runner::RngSeed::Fixed(605);
        let rng_seed = if std::env::var_os("PROPTEST_RNG_605").is_some() { base.rng_seed } else { fixed };
        let cases = if std::env::var_os("PROPTEST_CASES").is_some() { base.cases } else { 512 };
        ProptestConfig { cases, rng_seed, failure_persistence: None, ..base }
    }

    proptest! {
        #![proptest_config(config())]

        /// Under random buys and sells, a sale's young shares are exactly those
        /// a first-in-first-out reference model finds (or more, leaning
        /// against the player, once lots merge); shares held past the minimum
        /// hold never pay the quick-sell fee; young shares never exceed holdings.
        #[test]
        fn recent_buys_match_a_fifo_reference(
            ops in proptest::collection::vec((any::<bool>(), 1..500_u64, 0..90_u64), 0..200),
        ) {
            let exact = AbuseRules { recent_lots_max: 1_000, ..AbuseRules::default() };
            let bounded = AbuseRules { recent_lots_max: 4, ..AbuseRules::default() };
            let (mut tracked, mut merged) = (RecentBuys::default(), RecentBuys::default());
            let mut reference: std::collections::VecDeque<Lot> = std::collections::VecDeque::new();
            let (mut held, mut now, mut last_buy) = (0_u64, 0_u64, None);
            for (is_buy, qty, step) in ops {
                now += step;
                if is_buy {
                    tracked.record_buy(now, qty, &exact);
                    merged.record_buy(now, qty, &bounded);
                    reference.push_back(Lot { minute: now, qty });
                    held += qty;
                    last_buy = Some(now);
                    continue;
                }
                let qty = qty.min(held);
                let (mut left, mut young_ref) = (qty, 0);
                while left > 0 {
                    let Some(lot) = reference.front_mut() else { break };
                    let taken = lot.qty.min(left);
                    (lot.qty, left) = (lot.qty - taken, left - taken);
                    if now - lot.minute < exact.hold_minutes_min {
                        young_ref += taken;
                    }
                    if lot.qty == 0 {
                        reference.pop_front();
                    }
                }
                let young = tracked.sell(held, qty, now, &exact);
                prop_assert_eq!(young, young_ref);
                let young_merged = merged.sell(held, qty, now, &bounded);
                prop_assert!(young_merged >= young && young_merged <= qty);
                if last_buy.is_none_or(|at| now - at >= exact.hold_minutes_min) {
                    prop_assert_eq!(young_merged, 0);
                }
                held -= qty;
                prop_assert!(merged.young_qty(now, &bounded) <= held);
                prop_assert!(merged.lots().len() <= bounded.recent_lots_max);
            }
        }

        /// A fee never falls as the order grows, a discount never raises it,
        /// and it never drops below the floor.
        #[test]
        fn fees_are_monotone(
            price_cents in 1..1_000_000_i64,
            qty in 1..100_000_u64,
            more in 0..100_000_u64,
            liq in 0..1_000_000_u64,
            d in 0..=100_i64,
        ) {
            let (rules, market) = (AbuseRules::default(), MarketRules::default());
            let price = Decimal::new(price_cents, 2);
            let fee = |q: u64, disc| rules.graduated_fee(price * Decimal::from(q), q, liq, disc, &market);
            prop_assert!(fee(qty + more, Decimal::ZERO) >= fee(qty, Decimal::ZERO));
            prop_assert!(fee(qty, Decimal::new(d, 2)) <= fee(qty, Decimal::ZERO));
            prop_assert!(fee(qty, Decimal::new(d, 2)) >= market.fee_min);
        }

        /// The concentration cap holds after every accepted buy, and refusing a
        /// buy means refusing every larger one.
        #[test]
        fn concentration_cap_holds(
            held in 0..10_000_000_i64,
            buy in 0..10_000_000_i64,
            more in 0..1_000_000_i64,
            worth in 0..20_000_000_i64,
        ) {
            let rules = AbuseRules::default();
            let (held, buy, worth) = (Decimal::new(held, 2), Decimal::new(buy, 2), Decimal::new(worth, 2));
            match rules.check_concentration(held, buy, worth) {
                Ok(()) => {
                    prop_assert!(worth < rules.concentration_net_worth_min || (held + buy) * Decimal::from(2) <= worth);
                }
                Err(_) => prop_assert!(rules.check_concentration(held, buy + Decimal::new(more, 2), worth).is_err()),
            }
        }
    }
}
