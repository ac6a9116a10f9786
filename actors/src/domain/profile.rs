//! `Profile`: a player's game record beside the money ledger — XP and what
//! it has been granted for, achievements, daily-bonus streak, time zone,
//! entitlements and the payments that granted them, referral state and
//! bankruptcies — changed only by [`GameChange`] events.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::achievement::AchievementId;
use super::alert::Entitlement;
use super::daily::{Claim, DailyState, UtcOffset};
use super::ids::PlayerId;

/// Most payment ids remembered per player (a payment is granted once; the
/// front end also deduplicates updates).
pub const PAYMENTS_REMEMBERED_MAX: usize = 64;

/// A payment's identity: a 128-bit hash of the payment provider's charge id
/// (commands stay `Copy`; a collision needs ~2^64 payments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PaymentId {
    pub hi: u64,
    pub lo: u64,
}

impl PaymentId {
    /// The id of a charge (FNV-1a, 128 bits).
    #[must_use]
    pub fn of(charge_id: &str) -> Self {
        let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
        for byte in charge_id.bytes() {
            hash ^= u128::from(byte);
            hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        }
        #[allow(clippy::cast_possible_truncation)]
        Self { hi: (hash >> 64) as u64, lo: hash as u64 }
    }
}

/// XP already earned on one local day, for the daily caps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XpDay {
    pub day: i64,
    pub trade_xp: u64,
    pub profit_xp: u64,
    /// Bonus cash (daily bonus, referral rewards) paid on that day.
    pub bonus: Decimal,
}

/// A player's game record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    pub xp: u64,
    /// Lifetime traded value XP has been granted for.
    pub value_counted: Decimal,
    /// Lifetime realized profit XP has been granted for.
    pub pnl_counted: Decimal,
    pub xp_day: XpDay,
    pub achievements: BTreeSet<AchievementId>,
    pub daily: DailyState,
    pub utc_offset: UtcOffset,
    /// When the time zone last changed (a change cannot buy an extra claim).
    pub zone_changed_at_ms: Option<i64>,
    pub entitlements: BTreeSet<Entitlement>,
    /// Payments already granted (newest last, bounded).
    pub payments: Vec<PaymentId>,
    /// Local days with trade XP (a referred player's activity).
    pub active_days: u32,
    pub last_active_day: Option<i64>,
    /// When the first of those days began for this player.
    pub first_active_at_ms: Option<i64>,
    pub crashes_survived: u64,
    pub stops_triggered: u64,
    pub bankruptcies: u32,
    pub last_bankrupt_at_ms: Option<i64>,
    /// Best final rank in any season.
    pub best_season_rank: Option<u32>,
    /// Titles earned at seasons' ends, newest last.
    pub titles: Vec<String>,
    /// Who brought this player, if anyone.
    pub referrer: Option<PlayerId>,
    /// Whether this player's referrer was rewarded for them.
    pub referral_rewarded: bool,
    /// Players this player was rewarded for, this season.
    pub referees_rewarded: BTreeSet<PlayerId>,
}

impl Profile {
    /// Whether a payment id was already granted.
    #[must_use]
    pub fn has_payment(&self, id: PaymentId) -> bool {
        self.payments.contains(&id)
    }

    /// The XP counters of `day` (fresh on a new day).
    #[must_use]
    pub fn xp_on(&self, day: i64) -> XpDay {
        if self.xp_day.day == day { self.xp_day } else { XpDay { day, ..XpDay::default() } }
    }

    /// Applies one change (already decided by the exchange).
    pub fn apply(&mut self, change: &GameChange) {
        match change {
            GameChange::Xp { gained, day, utc_day, at_ms, value_counted, pnl_counted } => {
                let mut today = self.xp_on(*day);
                today.trade_xp = today.trade_xp.saturating_add(gained.trade);
                today.profit_xp = today.profit_xp.saturating_add(gained.profit);
                self.xp_day = today;
                self.xp = self.xp.saturating_add(gained.total());
                if gained.trade > 0 && self.last_active_day.is_none_or(|last| *utc_day > last) {
                    self.active_days = self.active_days.saturating_add(1);
                    self.last_active_day = Some(*utc_day);
                    self.first_active_at_ms = Some(self.first_active_at_ms.unwrap_or(*at_ms));
                }
                self.value_counted = *value_counted;
                self.pnl_counted = *pnl_counted;
            }
            GameChange::Achieved { id, xp } => {
                if self.achievements.insert(id.clone()) {
                    self.xp = self.xp.saturating_add(*xp);
                }
            }
            GameChange::DailyClaimed { claim, xp, bonus_paid } => {
                self.daily.apply(claim);
                self.xp = self.xp.saturating_add(*xp);
                let mut today = self.xp_on(claim.day);
                today.bonus += *bonus_paid;
                self.xp_day = today;
            }
            GameChange::TimeZone { offset, at_ms } => {
                self.utc_offset = *offset;
                self.zone_changed_at_ms = Some(*at_ms);
            }
            GameChange::Entitled { entitlement, payment } => {
                self.entitlements.insert(*entitlement);
                if let Some(payment) = payment {
                    if self.payments.len() >= PAYMENTS_REMEMBERED_MAX {
                        self.payments.remove(0);
                    }
                    self.payments.push(*payment);
                }
            }
            GameChange::StopTriggered => self.stops_triggered = self.stops_triggered.saturating_add(1),
            GameChange::CrashSurvived => self.crashes_survived = self.crashes_survived.saturating_add(1),
            GameChange::Bankrupt { at_ms } => {
                self.bankruptcies = self.bankruptcies.saturating_add(1);
                self.last_bankrupt_at_ms = Some(*at_ms);
            }
            GameChange::SeasonStarted => self.referees_rewarded.clear(),
            GameChange::SeasonAwarded { rank, title } => {
                self.best_season_rank = Some(self.best_season_rank.map_or(*rank, |best| best.min(*rank)));
                if let Some(title) = title {
                    self.titles.push(title.clone());
                }
            }
            GameChange::Referred { referrer } => self.referrer = Some(*referrer),
            GameChange::ReferralQualified => self.referral_rewarded = true,
            GameChange::ReferralRewarded { referee } => {
                self.referees_rewarded.insert(*referee);
            }
        }
    }
}

/// XP gained in one review, by source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XpGain {
    pub trade: u64,
    pub profit: u64,
}

impl XpGain {
    /// All XP gained.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.trade.saturating_add(self.profit)
    }
}

/// A change of a player's game record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GameChange {
    /// XP for trading and profit since the last review, on local `day`
    /// (`utc_day` and `at_ms` count active days: a time zone cannot make two).
    Xp {
        gained: XpGain,
        day: i64,
        #[serde(default)]
        utc_day: i64,
        #[serde(default)]
        at_ms: i64,
        value_counted: Decimal,
        pnl_counted: Decimal,
    },
    /// An achievement, unlocked once, with its XP.
    Achieved {
        id: AchievementId,
        xp: u64,
    },
    /// A daily bonus claim (its cash is a separate `CashCredited`).
    DailyClaimed {
        claim: Claim,
        xp: u64,
        bonus_paid: Decimal,
    },
    TimeZone {
        offset: UtcOffset,
        #[serde(default)]
        at_ms: i64,
    },
    /// An entitlement, granted by `payment` (a payment id) or by an operator.
    Entitled {
        entitlement: Entitlement,
        payment: Option<PaymentId>,
    },
    StopTriggered,
    CrashSurvived,
    /// Went bankrupt (the reset itself is an `AccountReset`).
    Bankrupt {
        at_ms: i64,
    },
    /// The account moved into a new season (its reset is an `AccountReset`).
    SeasonStarted,
    /// A final season rank, with a title for the best.
    SeasonAwarded {
        rank: u32,
        title: Option<String>,
    },
    Referred {
        referrer: PlayerId,
    },
    /// This player became active: their referrer was paid.
    ReferralQualified,
    /// This player was paid for bringing `referee`.
    ReferralRewarded {
        referee: PlayerId,
    },
}
