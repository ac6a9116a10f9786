//! `Command` and `Outcome`: the exchange's whole input and output vocabulary,
//! so a sequencer, a replay or a property test can drive it uniformly.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::achievement::AchievementId;
use super::alert::{Alert, AlertId, Direction, Entitlement};
use super::daily::UtcOffset;
use super::event::{CreditReason, Stamped};
use super::exchange::{Exchange, Placed, Review};
use super::ids::{AssetId, OrderId, PlayerId};
use super::order::{OrderRequest, RestingOrder};
use super::profile::PaymentId;
use super::rejection::Rejection;

/// Something a player (or an operator) asks the exchange to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Opens the account with starting cash if it does not exist.
    Open {
        player: PlayerId,
    },
    /// Places an order.
    Place(OrderRequest),
    /// Cancels a resting order.
    Cancel {
        player: PlayerId,
        order: OrderId,
    },
    /// Creates cash (bonus, grant).
    Credit {
        player: PlayerId,
        amount: Decimal,
        reason: CreditReason,
    },
    /// Halts or resumes an asset.
    Halt {
        asset: AssetId,
        halted: bool,
    },
    /// Grants XP and achievements earned since the last review.
    Review {
        player: PlayerId,
    },
    /// Claims today's daily bonus.
    ClaimDaily {
        player: PlayerId,
    },
    /// Sets the player's time zone.
    SetTimeZone {
        player: PlayerId,
        offset: UtcOffset,
    },
    /// Starts a broke player over.
    Bankrupt {
        player: PlayerId,
    },
    SetAlert {
        player: PlayerId,
        asset: AssetId,
        direction: Direction,
        price: Decimal,
    },
    DeleteAlert {
        player: PlayerId,
        alert: AlertId,
    },
    /// Grants an entitlement, once per payment.
    Grant {
        player: PlayerId,
        entitlement: Entitlement,
        payment: Option<PaymentId>,
    },
    /// Links a new player to their referrer.
    Refer {
        player: PlayerId,
        referrer: PlayerId,
    },
    /// Pays `player` for bringing `referee`.
    RewardReferral {
        player: PlayerId,
        referee: PlayerId,
    },
    /// Records a final season rank.
    AwardSeason {
        player: PlayerId,
        rank: u32,
    },
    /// An operator's cash grant, logged with who did it.
    AdminGrant {
        admin: i64,
        player: PlayerId,
        amount: Decimal,
    },
    /// An operator's halt or resume, logged with who did it.
    AdminHalt {
        admin: i64,
        asset: AssetId,
        halted: bool,
    },
    /// An operator's action whose effect is outside the exchange (e.g.
    /// news through the price model), for the audit trail.
    AdminNote {
        admin: i64,
        action: String,
    },
}

impl Command {
    /// The player the command acts for, if any.
    #[must_use]
    pub fn player(&self) -> Option<PlayerId> {
        match self {
            Self::Open { player }
            | Self::Cancel { player, .. }
            | Self::Credit { player, .. }
            | Self::Review { player }
            | Self::ClaimDaily { player }
            | Self::SetTimeZone { player, .. }
            | Self::Bankrupt { player }
            | Self::SetAlert { player, .. }
            | Self::DeleteAlert { player, .. }
            | Self::Grant { player, .. }
            | Self::Refer { player, .. }
            | Self::RewardReferral { player, .. }
            | Self::AwardSeason { player, .. }
            | Self::AdminGrant { player, .. } => Some(*player),
            Self::Place(request) => Some(request.player),
            Self::Halt { .. } | Self::AdminHalt { .. } | Self::AdminNote { .. } => None,
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// `true` when the account was created now.
    Opened {
        new: bool,
    },
    Placed(Placed),
    Cancelled(RestingOrder),
    /// The new cash balance.
    Credited {
        cash: Decimal,
    },
    Halted,
    /// An operator's note was logged.
    Noted,
    Reviewed(Review),
    /// The new cash, the bonus paid and the streak.
    DailyClaimed {
        cash: Decimal,
        bonus: Decimal,
        streak: u32,
    },
    TimeZoneSet,
    /// Back to this cash.
    Bankrupted {
        cash: Decimal,
    },
    AlertSet(Alert),
    AlertDeleted(Alert),
    /// `false` when it was already granted (a repeated payment).
    Granted {
        new: bool,
    },
    Referred,
    /// The reward paid.
    ReferralRewarded {
        reward: Decimal,
    },
    /// Season achievements earned.
    SeasonAwarded {
        achievements: Vec<AchievementId>,
    },
}

impl Exchange {
    /// Decides and applies one command; on `Err` nothing changed.
    ///
    /// # Errors
    /// The `Rejection` explaining the player's mistake.
    pub fn execute(&mut self, command: &Command, at_ms: i64, out: &mut Vec<Stamped>) -> Result<Outcome, Rejection> {
        if let Some(player) = command.player() {
            self.ensure_season(player, at_ms, out);
        }
        match *command {
            Command::AdminNote { admin, ref action } => {
                self.admin_note(admin, action.clone(), at_ms, out);
                Ok(Outcome::Noted)
            }
            Command::Open { player } => self.open_account(player, at_ms, out).map(|new| Outcome::Opened { new }),
            Command::Place(ref request) => self.place(request, at_ms, out).map(Outcome::Placed),
            Command::Cancel { player, order } => self.cancel(player, order, at_ms, out).map(Outcome::Cancelled),
            Command::Credit { player, amount, reason } => {
                self.credit(player, amount, reason, at_ms, out).map(|cash| Outcome::Credited { cash })
            }
            Command::Halt { asset, halted } => {
                if self.book(asset).is_none() {
                    return Err(Rejection::BadTicker { given: format!("#{}", asset.0) });
                }
                self.set_halted(asset, halted, at_ms, out);
                Ok(Outcome::Halted)
            }
            Command::Review { player } => self.review(player, at_ms, out).map(Outcome::Reviewed),
            Command::ClaimDaily { player } => self
                .claim_daily(player, at_ms, out)
                .map(|(cash, bonus, streak)| Outcome::DailyClaimed { cash, bonus, streak }),
            Command::SetTimeZone { player, offset } => {
                self.set_time_zone(player, offset, at_ms, out).map(|()| Outcome::TimeZoneSet)
            }
            Command::Bankrupt { player } => self.bankrupt(player, at_ms, out).map(|cash| Outcome::Bankrupted { cash }),
            Command::SetAlert { player, asset, direction, price } => {
                self.set_alert(player, asset, direction, price, at_ms, out).map(Outcome::AlertSet)
            }
            Command::DeleteAlert { player, alert } => {
                self.delete_alert(player, alert, at_ms, out).map(Outcome::AlertDeleted)
            }
            Command::Grant { player, entitlement, payment } => {
                self.grant(player, entitlement, payment, at_ms, out).map(|new| Outcome::Granted { new })
            }
            Command::Refer { player, referrer } => self.refer(player, referrer, at_ms, out).map(|()| Outcome::Referred),
            Command::RewardReferral { player, referee } => {
                self.reward_referral(player, referee, at_ms, out).map(|reward| Outcome::ReferralRewarded { reward })
            }
            Command::AwardSeason { player, rank } => {
                self.award_season(player, rank, at_ms, out).map(|achievements| Outcome::SeasonAwarded { achievements })
            }
            Command::AdminGrant { admin, player, amount } => {
                // A refused grant emits nothing, so it logs nothing either.
                let cash = self.credit(player, amount, CreditReason::AdminGrant, at_ms, out)?;
                self.admin_note(admin, format!("grant {} {amount}", player.0), at_ms, out);
                Ok(Outcome::Credited { cash })
            }
            Command::AdminHalt { admin, asset, halted } => {
                if self.book(asset).is_none() {
                    return Err(Rejection::BadTicker { given: format!("#{}", asset.0) });
                }
                let verb = if halted { "halt" } else { "resume" };
                let ticker = self.universe().ticker(asset).map_or_else(String::new, |t| t.to_string());
                self.admin_note(admin, format!("{verb} {ticker}"), at_ms, out);
                self.set_halted(asset, halted, at_ms, out);
                Ok(Outcome::Halted)
            }
        }
    }
}
