//! `PlayerLedger`: one player's account and open orders rebuilt from the
//! player's own events — the projection a portfolio actor keeps, evolving by
//! the same `Account` rules as the exchange.

use serde::{Deserialize, Serialize};

use super::account::Account;
use super::event::Event;
use super::order::RestingOrder;

/// A player's account and open orders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerLedger {
    pub account: Account,
    pub orders: Vec<RestingOrder>,
}

impl PlayerLedger {
    /// A ledger starting from a loaded account and its open orders.
    #[must_use]
    pub fn new(account: Account, orders: Vec<RestingOrder>) -> Self {
        Self { account, orders }
    }

    /// Applies one of the player's events (others' events are ignored by the
    /// caller's routing; market-wide events change nothing here).
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::AccountOpened { cash, season, .. } => self.account = Account::opened(*cash, *season),
            Event::CashCredited { amount, .. } => self.account.cash += *amount,
            Event::Traded(trade) => {
                if let Some(order) = trade.order {
                    self.remove_order(order);
                }
                self.account.apply_trade(trade);
            }
            Event::OrderPlaced(order) => {
                self.account.reserve_for(order);
                self.orders.push(*order);
            }
            Event::OrderCancelled { order, .. } => self.remove_order(*order),
            Event::Game { change, .. } => self.account.apply_game(change),
            Event::AccountReset { cash, reason, .. } => self.account.reset(*cash, *reason),
            Event::Ticked(_)
            | Event::TradingHalted { .. }
            | Event::AlertSet(_)
            | Event::AlertFired { .. }
            | Event::AlertDeleted { .. }
            | Event::AdminActed { .. } => {}
        }
    }

    fn remove_order(&mut self, order: super::ids::OrderId) {
        if let Some(index) = self.orders.iter().position(|o| o.id == order) {
            let removed = self.orders.remove(index);
            self.account.release_for(&removed);
        }
    }
}
