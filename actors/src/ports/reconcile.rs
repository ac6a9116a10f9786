//! `Reconciliation`: the conservation check every store's audit runs — cash
//! and shares per player as the log says they must be (openings, credits,
//! fills, resets, in log order), set against the stored ledgers.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;

use crate::domain::event::Event;
use crate::domain::ids::PlayerId;
use crate::domain::order::Side;

/// Balances per player: cash, and shares per asset index.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    pub cash: HashMap<PlayerId, Decimal>,
    pub shares: BTreeMap<(PlayerId, usize), i128>,
}

impl Reconciliation {
    /// Applies one event of the log (events that move no balance are ignored).
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::AccountOpened { player, cash, .. } => {
                self.cash.insert(*player, *cash);
            }
            Event::AccountReset { player, cash, .. } => {
                self.cash.insert(*player, *cash);
                let first = (*player, 0);
                let held: Vec<(PlayerId, usize)> = self
                    .shares
                    .range(first..)
                    .take_while(|((holder, _), _)| holder == player)
                    .map(|(k, _)| *k)
                    .collect();
                for key in held {
                    self.shares.remove(&key);
                }
            }
            Event::CashCredited { player, amount, .. } => *self.cash.entry(*player).or_default() += *amount,
            Event::Traded(trade) => {
                *self.cash.entry(trade.player).or_default() += trade.cash_delta();
                let signed = match trade.side {
                    Side::Buy => i128::from(trade.qty),
                    Side::Sell => -i128::from(trade.qty),
                };
                *self.shares.entry((trade.player, trade.asset.index())).or_default() += signed;
            }
            _ => {}
        }
    }

    /// Records a stored ledger's balances.
    pub fn hold(&mut self, player: PlayerId, cash: Decimal, positions: impl IntoIterator<Item = (usize, i128)>) {
        *self.cash.entry(player).or_default() += cash;
        for (asset, qty) in positions {
            *self.shares.entry((player, asset)).or_default() += qty;
        }
    }

    /// Sum of all cash.
    #[must_use]
    pub fn cash_total(&self) -> Decimal {
        self.cash.values().copied().sum()
    }

    /// Whether any balance is negative.
    #[must_use]
    pub fn has_negative(&self) -> bool {
        self.cash.values().any(|cash| cash.is_sign_negative() && !cash.is_zero())
            || self.shares.values().any(|q| *q < 0)
    }

    /// Players whose cash differs between `self` and `other`, and
    /// (player, asset) pairs whose shares do (a missing entry counts as 0).
    #[must_use]
    pub fn mismatches(&self, other: &Self) -> (usize, usize) {
        let cash = |this: &Self, that: &Self| {
            this.cash
                .iter()
                .filter(|(player, cash)| that.cash.get(player).copied().unwrap_or_default() != **cash)
                .count()
        };
        let only_other = other.cash.iter().filter(|(player, cash)| !self.cash.contains_key(player) && !cash.is_zero());
        let shares = |this: &Self, that: &Self| {
            this.shares.iter().filter(|(key, qty)| that.shares.get(key).copied().unwrap_or(0) != **qty).count()
        };
        let only_other_shares =
            other.shares.iter().filter(|(key, qty)| !self.shares.contains_key(key) && **qty != 0).count();
        (cash(self, other) + only_other.count(), shares(self, other) + only_other_shares)
    }

    /// Shares per asset index over all players (assets nobody holds left out).
    #[must_use]
    pub fn shares_per_asset(&self) -> BTreeMap<usize, i128> {
        let mut per_asset: BTreeMap<usize, i128> = BTreeMap::new();
        for ((_, asset), qty) in &self.shares {
            *per_asset.entry(*asset).or_default() += *qty;
        }
        per_asset.retain(|_, qty| *qty != 0);
        per_asset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{ResetReason, Trade};
    use crate::domain::ids::{AssetId, TradeId};

    fn trade(player: PlayerId, side: Side, qty: u64) -> Event {
        Event::Traded(Trade {
            id: TradeId(1),
            order: None,
            player,
            asset: AssetId(2),
            side,
            qty,
            price: Decimal::from(10),
            fee: Decimal::ONE,
        })
    }

    #[test]
    fn the_log_and_matching_ledgers_agree_and_a_changed_one_does_not() {
        let (alice, bob) = (PlayerId(1), PlayerId(2));
        let mut log = Reconciliation::default();
        for event in [
            Event::AccountOpened { player: alice, cash: Decimal::from(100), season: 0 },
            Event::AccountOpened { player: bob, cash: Decimal::from(100), season: 0 },
            trade(alice, Side::Buy, 3),
            trade(bob, Side::Buy, 1),
            Event::AccountReset { player: bob, cash: Decimal::from(50), reason: ResetReason::Bankruptcy },
            trade(alice, Side::Sell, 1),
        ] {
            log.apply(&event);
        }
        let mut stored = Reconciliation::default();
        stored.hold(alice, Decimal::from(100 - 31 + 9), [(2, 2)]);
        stored.hold(bob, Decimal::from(50), []);
        assert_eq!(log.mismatches(&stored), (0, 0));
        assert_eq!(stored.shares_per_asset(), BTreeMap::from([(2, 2)]));
        assert!(!stored.has_negative());

        let mut tampered = stored.clone();
        tampered.hold(bob, Decimal::ONE, [(4, 1)]);
        assert_eq!(log.mismatches(&tampered), (1, 1));
        assert_eq!(tampered.mismatches(&log), (1, 1));
    }
}
