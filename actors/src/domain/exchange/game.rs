//! The game commands of the exchange — reviews (XP, achievements, referral
//! activity), daily bonus, bankruptcy, season rollover, alerts, entitlements,
//! referrals and operator actions — decided against the ledgers and the
//! [`GameRules`](crate::domain::game::GameRules), applied as events.

use rust_decimal::Decimal;

use super::Exchange;
use crate::domain::account::Account;
use crate::domain::achievement::{AchievementId, PlayerStats};
use crate::domain::alert::{self, Alert, AlertId, AlertRejection, Direction, Entitlement};
use crate::domain::daily::{self, BankruptRejection, DailyRejection, local_day};
use crate::domain::event::{CancelReason, CreditReason, Event, ResetReason, Stamped};
use crate::domain::ids::{AssetId, OrderId, PlayerId};
use crate::domain::money::{Lean, price_from_f64};
use crate::domain::order::Side;
use crate::domain::profile::{GameChange, PaymentId, XpGain};
use crate::domain::rejection::Rejection;

/// What a review found: XP and achievements earned since the last one.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Review {
    pub xp_gained: u64,
    pub xp: u64,
    pub level_before: u32,
    pub level: u32,
    pub achievements: Vec<AchievementId>,
    /// Holdings at sell-out value (after fees) plus cash.
    pub net_worth: Decimal,
    /// Net worth against the season's starting cash, in percent.
    pub return_pct: Decimal,
    /// The player just became active: their referrer is due a reward.
    pub referrer_due: Option<PlayerId>,
    /// Times the player went bankrupt (marked on the boards).
    pub bankruptcies: u32,
}

/// A player's standing for the boards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub net_worth: Decimal,
    pub return_pct: Decimal,
}

impl Exchange {
    /// The player's level.
    #[must_use]
    pub fn level_of(&self, account: &Account) -> u32 {
        self.game.progression.level_for_xp(account.profile.xp)
    }

    /// Net worth: cash plus holdings at what selling them now would bring,
    /// after impact and fees.
    #[must_use]
    pub fn net_worth(&self, account: &Account) -> Decimal {
        let mut worth = account.cash;
        for position in account.positions.iter().filter(|p| p.qty > 0) {
            let Some(book) = self.books.get(position.asset.index()) else { continue };
            let Some(estimate) = book.estimate(&self.rules, Side::Sell, position.qty) else { continue };
            let value = estimate.price * Decimal::from(position.qty);
            worth += (value - self.fee_for(account, book, position.qty, value)).max(Decimal::ZERO);
        }
        worth
    }

    /// Net worth and return against starting cash.
    #[must_use]
    pub fn standing(&self, account: &Account) -> Standing {
        let net_worth = self.net_worth(account);
        let start = self.rules.starting_cash;
        let return_pct = if start > Decimal::ZERO {
            ((net_worth - start) * Decimal::ONE_HUNDRED / start).round_dp(2)
        } else {
            Decimal::ZERO
        };
        Standing { net_worth, return_pct }
    }

    /// Starts the player's new season if one began since their last action:
    /// open orders are cancelled and the account restarts from starting cash.
    pub(crate) fn ensure_season(&mut self, player: PlayerId, at_ms: i64, out: &mut Vec<Stamped>) {
        if !self.game.gated {
            return;
        }
        let current = self.game.seasons.season_of(at_ms).0;
        let Some(account) = self.accounts.get(&player) else { return };
        if account.season >= current {
            return;
        }
        self.cancel_all(player, at_ms, out);
        let reason = ResetReason::Season { season: current };
        self.emit(Event::AccountReset { player, cash: self.rules.starting_cash, reason }, at_ms, out);
    }

    fn cancel_all(&mut self, player: PlayerId, at_ms: i64, out: &mut Vec<Stamped>) {
        let orders: Vec<OrderId> = self.orders_of(player).map(|o| o.id).collect();
        for order in orders {
            self.emit(Event::OrderCancelled { order, player, reason: CancelReason::AccountReset }, at_ms, out);
        }
    }

    /// Grants XP for trading and profit since the last review (daily caps
    /// apply; amounts worth less than a point wait for more), then the
    /// achievements the player now meets, each once.
    ///
    /// # Errors
    /// `NoAccount`.
    pub fn review(&mut self, player: PlayerId, at_ms: i64, out: &mut Vec<Stamped>) -> Result<Review, Rejection> {
        let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
        let profile = &account.profile;
        let progression = &self.game.progression;
        let xp_before = profile.xp;
        let level_before = progression.level_for_xp(xp_before);
        let day = local_day(at_ms, profile.utc_offset);
        let today = profile.xp_on(day);
        let value_new = account.traded_value - profile.value_counted;
        let pnl_counted = profile.pnl_counted.max(account.realized_pnl);
        let pnl_new = pnl_counted - profile.pnl_counted;
        let gained = XpGain {
            trade: progression.xp_for_trade(value_new, today.trade_xp),
            profit: progression.xp_for_profit(pnl_new, today.profit_xp),
        };
        // Value and profit too small to earn a point even on a fresh day
        // stay uncounted and add up with what comes next: a point per
        // `trade_value_per_xp` traded, however it was split into orders
        // (and no event for every small order).
        let earns = progression.xp_for_trade(value_new, 0) > 0 || progression.xp_for_profit(pnl_new, 0) > 0;
        if earns {
            let value_counted = account.traded_value;
            let utc_day = local_day(at_ms, daily::UtcOffset::UTC);
            let change = GameChange::Xp { gained, day, utc_day, at_ms, value_counted, pnl_counted };
            self.emit(Event::Game { player, change }, at_ms, out);
        }
        self.note_crash(player, at_ms, out);

        let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
        let standing = self.standing(account);
        // Until nothing new: achievement XP may reach a level that unlocks a
        // level achievement.
        let mut unlocked = Vec::new();
        loop {
            let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
            let stats = self.stats(account, standing.net_worth);
            let fresh = self.game.achievements.newly_unlocked(&stats, &account.profile.achievements);
            if fresh.is_empty() {
                break;
            }
            for id in fresh {
                let xp = self.game.achievements.get(id.as_str()).map_or(0, |def| def.xp);
                self.emit(Event::Game { player, change: GameChange::Achieved { id: id.clone(), xp } }, at_ms, out);
                unlocked.push(id);
            }
        }
        let referrer_due = self.referral_due(player, at_ms, out);

        let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
        let xp = account.profile.xp;
        Ok(Review {
            xp_gained: xp.saturating_sub(xp_before),
            xp,
            level_before,
            level: self.game.progression.level_for_xp(xp),
            achievements: unlocked,
            net_worth: standing.net_worth,
            return_pct: standing.return_pct,
            referrer_due,
            bankruptcies: account.profile.bankruptcies,
        })
    }

    /// Records a crash the player holds through: a held asset halted, or
    /// marked at least the configured fraction under what it cost.
    fn note_crash(&mut self, player: PlayerId, at_ms: i64, out: &mut Vec<Stamped>) {
        let Some(account) = self.accounts.get(&player) else { return };
        if account.profile.crashes_survived > 0 {
            return;
        }
        let crashed = account.positions.iter().filter(|p| p.qty > 0).any(|position| {
            let Some(book) = self.books.get(position.asset.index()) else { return false };
            let cost = position.cost_basis / Decimal::from(position.qty);
            let mid = price_from_f64(book.mid(&self.rules), Lean::Down).unwrap_or_default();
            self.game.achievements.is_crash_survived(position.qty, cost, mid, book.halted())
        });
        if crashed {
            self.emit(Event::Game { player, change: GameChange::CrashSurvived }, at_ms, out);
        }
    }

    /// Marks a referred player active once they traded enough, on enough
    /// days; returns the referrer to reward.
    fn referral_due(&mut self, player: PlayerId, at_ms: i64, out: &mut Vec<Stamped>) -> Option<PlayerId> {
        let account = self.accounts.get(&player)?;
        let profile = &account.profile;
        let rules = &self.game.abuse.referral;
        let referrer = profile.referrer.filter(|_| !profile.referral_rewarded)?;
        let qualifying_value = rules.trade_value_min * Decimal::from(rules.trades_min);
        // Days apart in time, not only in the calendar: a farm must wait.
        let waited_ms = i64::from(rules.active_days_min.saturating_sub(1)).saturating_mul(daily::DAY_MS);
        let active = account.trades >= u64::from(rules.trades_min)
            && account.traded_value >= qualifying_value
            && profile.active_days >= rules.active_days_min
            && profile.first_active_at_ms.is_some_and(|first| at_ms.saturating_sub(first) >= waited_ms);
        if !active {
            return None;
        }
        self.emit(Event::Game { player, change: GameChange::ReferralQualified }, at_ms, out);
        Some(referrer)
    }

    fn stats(&self, account: &Account, net_worth: Decimal) -> PlayerStats {
        player_stats(account, net_worth, self.universe.asset_categories(), &self.game.progression)
    }

    /// Pays today's daily bonus (once per local day; the streak survives a
    /// grace day), capped by the daily bonus limit. Returns the new cash, the
    /// bonus paid and the streak.
    ///
    /// # Errors
    /// `NoAccount`, `AlreadyClaimed`.
    pub fn claim_daily(
        &mut self,
        player: PlayerId,
        at_ms: i64,
        out: &mut Vec<Stamped>,
    ) -> Result<(Decimal, Decimal, u32), Rejection> {
        let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
        let profile = &account.profile;
        // After a time-zone change, a full day since the last claim: moving
        // the calendar never pays twice.
        if let (Some(changed), Some(last)) = (profile.zone_changed_at_ms, profile.daily.last_claim_at_ms)
            && changed >= last
            && at_ms < last.saturating_add(daily::DAY_MS)
        {
            return Err(Rejection::AlreadyClaimed { next_claim_at_ms: last.saturating_add(daily::DAY_MS) });
        }
        let claim = daily::claim(&profile.daily, at_ms, profile.utc_offset, &self.game.daily).map_err(
            |DailyRejection::AlreadyClaimed { next_claim_at_ms }| Rejection::AlreadyClaimed { next_claim_at_ms },
        )?;
        let bonus_paid = self.game.abuse.bonus_payable(claim.bonus, profile.xp_on(claim.day).bonus);
        let xp = self.game.progression.xp_for_daily_claim(claim.streak);
        let streak = claim.streak;
        self.emit(Event::Game { player, change: GameChange::DailyClaimed { claim, xp, bonus_paid } }, at_ms, out);
        if bonus_paid > Decimal::ZERO {
            self.emit(Event::CashCredited { player, amount: bonus_paid, reason: CreditReason::DailyBonus }, at_ms, out);
        }
        let cash = self.accounts.get(&player).map_or(Decimal::ZERO, |a| a.cash);
        Ok((cash, bonus_paid, streak))
    }

    /// Sets the player's time zone (for the daily bonus's calendar day).
    ///
    /// # Errors
    /// `NoAccount`.
    pub fn set_time_zone(
        &mut self,
        player: PlayerId,
        offset: daily::UtcOffset,
        at_ms: i64,
        out: &mut Vec<Stamped>,
    ) -> Result<(), Rejection> {
        let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
        if account.profile.utc_offset != offset {
            self.emit(Event::Game { player, change: GameChange::TimeZone { offset, at_ms } }, at_ms, out);
        }
        Ok(())
    }

    /// Starts a broke player over from starting cash (holdings written off,
    /// open orders cancelled), at most once per cooldown.
    ///
    /// # Errors
    /// `NoAccount`, `NotBroke`, `BankruptcyCoolingDown`.
    pub fn bankrupt(&mut self, player: PlayerId, at_ms: i64, out: &mut Vec<Stamped>) -> Result<Decimal, Rejection> {
        let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
        let net_worth = self.net_worth(account);
        let starting = self.rules.starting_cash;
        daily::bankrupt(net_worth, starting, account.profile.last_bankrupt_at_ms, at_ms, &self.game.bankruptcy)
            .map_err(|rejection| match rejection {
                BankruptRejection::NotBroke { net_worth, threshold } => Rejection::NotBroke { net_worth, threshold },
                BankruptRejection::CoolingDown { next_allowed_at_ms } => {
                    Rejection::BankruptcyCoolingDown { next_allowed_at_ms }
                }
            })?;
        self.cancel_all(player, at_ms, out);
        let reason = ResetReason::Bankruptcy;
        self.emit(Event::AccountReset { player, cash: starting, reason }, at_ms, out);
        self.emit(Event::Game { player, change: GameChange::Bankrupt { at_ms } }, at_ms, out);
        Ok(starting)
    }

    /// Sets a price alert on `asset`.
    ///
    /// # Errors
    /// `NoAccount`, `BadTicker`, `BadPrice`, `TooManyAlerts`, `AlertAlreadyThere`.
    pub fn set_alert(
        &mut self,
        player: PlayerId,
        asset: AssetId,
        direction: Direction,
        price: Decimal,
        at_ms: i64,
        out: &mut Vec<Stamped>,
    ) -> Result<Alert, Rejection> {
        let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
        let book = self.books.get(asset.index()).ok_or(Rejection::BadTicker { given: format!("#{}", asset.0) })?;
        let mid = price_from_f64(book.mid(&self.rules), Lean::Down).unwrap_or_default();
        let perks = self.perks_of(account);
        let existing = self.alerts_of(player).count();
        alert::check_new(existing, direction, price, mid, &perks).map_err(|rejection| match rejection {
            AlertRejection::TooMany { alerts_max } => Rejection::TooManyAlerts { alerts_max },
            AlertRejection::AlreadyThere { mid } => Rejection::AlertAlreadyThere { mid },
            AlertRejection::BadPrice => Rejection::BadPrice { given: price.to_string() },
        })?;
        let alert = Alert { id: AlertId(self.next_alert), player, asset, direction, price };
        self.emit(Event::AlertSet(alert), at_ms, out);
        Ok(alert)
    }

    /// Deletes one of the player's alerts.
    ///
    /// # Errors
    /// `UnknownAlert`.
    pub fn delete_alert(
        &mut self,
        player: PlayerId,
        alert: AlertId,
        at_ms: i64,
        out: &mut Vec<Stamped>,
    ) -> Result<Alert, Rejection> {
        let found = self
            .alerts_of(player)
            .find(|a| a.id == alert)
            .copied()
            .ok_or(Rejection::UnknownAlert { alert: alert.0 })?;
        self.emit(Event::AlertDeleted { alert, player }, at_ms, out);
        Ok(found)
    }

    /// Fires the alerts on `asset` its last tick crossed (each once).
    pub(crate) fn fire_alerts(&mut self, asset: AssetId, mid_before: f64, at_ms: i64, out: &mut Vec<Stamped>) {
        if self.alerts.is_empty() {
            return;
        }
        let Some(book) = self.books.get(asset.index()) else { return };
        let from = price_from_f64(mid_before, Lean::Down).unwrap_or_default();
        let to = price_from_f64(book.mid(&self.rules), Lean::Down).unwrap_or_default();
        let fired: Vec<Alert> =
            self.alerts.iter().filter(|a| a.asset == asset && a.crossed(from, to)).copied().collect();
        for alert in fired {
            self.emit(Event::AlertFired { alert, from, to }, at_ms, out);
        }
    }

    /// Grants an entitlement; `Ok(false)` when this payment (or, for an
    /// operator's grant, the entitlement) was already granted.
    ///
    /// # Errors
    /// `NoAccount`.
    pub fn grant(
        &mut self,
        player: PlayerId,
        entitlement: Entitlement,
        payment: Option<PaymentId>,
        at_ms: i64,
        out: &mut Vec<Stamped>,
    ) -> Result<bool, Rejection> {
        let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
        let already = match payment {
            Some(payment) => account.profile.has_payment(payment),
            None => account.profile.entitlements.contains(&entitlement),
        };
        if already {
            return Ok(false);
        }
        self.emit(Event::Game { player, change: GameChange::Entitled { entitlement, payment } }, at_ms, out);
        Ok(true)
    }

    /// Links a brand-new player to the player who brought them.
    ///
    /// # Errors
    /// `NoAccount`, `Referral` (self-referral, not a new player, a cycle).
    pub fn refer(
        &mut self,
        player: PlayerId,
        referrer: PlayerId,
        at_ms: i64,
        out: &mut Vec<Stamped>,
    ) -> Result<(), Rejection> {
        let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
        let is_new = account.trades == 0 && account.profile.referrer.is_none() && account.profile.xp == 0;
        let referrer_of = |p: PlayerId| self.accounts.get(&p).and_then(|a| a.profile.referrer);
        self.game
            .abuse
            .referral
            .check_link(referrer, player, is_new, referrer_of)
            .map_err(|reason| Rejection::Referral { reason: reason.to_string() })?;
        self.emit(Event::Game { player, change: GameChange::Referred { referrer } }, at_ms, out);
        Ok(())
    }

    /// Pays `referrer` for bringing `referee` (who became active), at most
    /// once per referee and a few times a season. Returns the reward paid.
    ///
    /// # Errors
    /// `NoAccount`, `Referral` (already paid, season cap reached).
    pub fn reward_referral(
        &mut self,
        referrer: PlayerId,
        referee: PlayerId,
        at_ms: i64,
        out: &mut Vec<Stamped>,
    ) -> Result<Decimal, Rejection> {
        let account = self.accounts.get(&referrer).ok_or(Rejection::NoAccount)?;
        let rules = &self.game.abuse.referral;
        if account.profile.referees_rewarded.contains(&referee) {
            return Err(Rejection::Referral { reason: "already rewarded".to_owned() });
        }
        let progress = crate::domain::abuse::ReferralProgress {
            trades: rules.trades_min,
            active_days: rules.active_days_min,
            last_active_day: None,
            rewarded: false,
        };
        let rewarded = u32::try_from(account.profile.referees_rewarded.len()).unwrap_or(u32::MAX);
        let reward =
            rules.reward(&progress, rewarded).map_err(|reason| Rejection::Referral { reason: reason.to_string() })?;
        let day = local_day(at_ms, account.profile.utc_offset);
        let reward = self.game.abuse.bonus_payable(reward, account.profile.xp_on(day).bonus);
        self.emit(Event::Game { player: referrer, change: GameChange::ReferralRewarded { referee } }, at_ms, out);
        if reward > Decimal::ZERO {
            let event = Event::CashCredited { player: referrer, amount: reward, reason: CreditReason::Referral };
            self.emit(event, at_ms, out);
        }
        Ok(reward)
    }

    /// Records a final season rank: its title and season achievements.
    ///
    /// # Errors
    /// `NoAccount`.
    pub fn award_season(
        &mut self,
        player: PlayerId,
        rank: u32,
        at_ms: i64,
        out: &mut Vec<Stamped>,
    ) -> Result<Vec<AchievementId>, Rejection> {
        let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
        if account.profile.best_season_rank.is_some_and(|best| best <= rank) && rank > 10 {
            return Ok(Vec::new());
        }
        let title = self.game.seasons.title_for(rank).map(str::to_owned);
        let fresh: Vec<AchievementId> = self
            .game
            .achievements
            .for_season_rank(rank)
            .into_iter()
            .filter(|id| !account.profile.achievements.contains(id))
            .collect();
        self.emit(Event::Game { player, change: GameChange::SeasonAwarded { rank, title } }, at_ms, out);
        for id in &fresh {
            let xp = self.game.achievements.get(id.as_str()).map_or(0, |def| def.xp);
            self.emit(Event::Game { player, change: GameChange::Achieved { id: id.clone(), xp } }, at_ms, out);
        }
        Ok(fresh)
    }

    /// Writes an operator's action to the log (its effect is its own event).
    pub fn admin_note(&mut self, admin: i64, action: String, at_ms: i64, out: &mut Vec<Stamped>) {
        self.emit(Event::AdminActed { admin, action }, at_ms, out);
    }
}

/// The counters achievements are decided on, for a player with `account`
/// and `net_worth`; `asset_categories` maps each asset to its category.
#[must_use]
pub fn player_stats(
    account: &Account,
    net_worth: Decimal,
    asset_categories: &[usize],
    progression: &crate::domain::progression::ProgressionRules,
) -> PlayerStats {
    let profile = &account.profile;
    let mut held: Vec<usize> = account
        .positions
        .iter()
        .filter(|p| p.qty > 0)
        .filter_map(|p| asset_categories.get(p.asset.index()).copied())
        .collect();
    let assets_held = u32::try_from(held.len()).unwrap_or(u32::MAX);
    held.sort_unstable();
    held.dedup();
    PlayerStats {
        trades: account.trades,
        profitable_sales: account.profitable_sales,
        realized_pnl: account.realized_pnl,
        categories_held: u32::try_from(held.len()).unwrap_or(u32::MAX),
        assets_held,
        daily_streak: profile.daily.streak,
        net_worth,
        level: progression.level_for_xp(profile.xp),
        limit_orders_filled: account.resting_fills.saturating_sub(profile.stops_triggered),
        stops_triggered: profile.stops_triggered,
        crashes_survived: profile.crashes_survived,
        bankruptcies: profile.bankruptcies,
        best_season_rank: profile.best_season_rank,
        referrals_rewarded: u32::try_from(profile.referees_rewarded.len()).unwrap_or(u32::MAX),
    }
}
