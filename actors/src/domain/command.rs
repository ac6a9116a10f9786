//! `Command` and `Outcome`: the exchange's whole input and output vocabulary,
//! so a sequencer, a replay or a property test can drive it uniformly.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::event::{CreditReason, Stamped};
use super::exchange::{Exchange, Placed};
use super::ids::{AssetId, OrderId, PlayerId};
use super::order::{OrderRequest, RestingOrder};
use super::rejection::Rejection;

/// Something a player (or an operator) asks the exchange to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Opens the account with starting cash if it does not exist.
    Open { player: PlayerId },
    /// Places an order.
    Place(OrderRequest),
    /// Cancels a resting order.
    Cancel { player: PlayerId, order: OrderId },
    /// Creates cash (bonus, grant).
    Credit { player: PlayerId, amount: Decimal, reason: CreditReason },
    /// Halts or resumes an asset.
    Halt { asset: AssetId, halted: bool },
}

impl Command {
    /// The player the command acts for, if any.
    #[must_use]
    pub fn player(&self) -> Option<PlayerId> {
        match self {
            Self::Open { player } | Self::Cancel { player, .. } | Self::Credit { player, .. } => Some(*player),
            Self::Place(request) => Some(request.player),
            Self::Halt { .. } => None,
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Exchange {
    /// Decides and applies one command; on `Err` nothing changed.
    ///
    /// # Errors
    /// The `Rejection` explaining the player's mistake.
    pub fn execute(&mut self, command: &Command, at_ms: i64, out: &mut Vec<Stamped>) -> Result<Outcome, Rejection> {
        match *command {
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
        }
    }
}
