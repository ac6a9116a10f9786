//! The conservation check every store's audit runs, one player at a time:
//! a player's cash and shares as the log says they must be (openings,
//! credits, fills, resets, in log order, up to the seq their stored ledger
//! stands at) set against that ledger, and running totals over the players
//! seen. A store streams its players in any order it likes, each once, so
//! the audit's memory holds one player, never the log.

use std::collections::{BTreeMap, VecDeque};

use rust_decimal::Decimal;

use super::Audit;
use crate::domain::event::{Event, Trade};
use crate::domain::order::Side;

/// One player's cash and shares (per asset index).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Balances {
    pub cash: Decimal,
    pub shares: BTreeMap<usize, i128>,
}

impl Balances {
    /// Applies one event of the player's log (events that move no balance
    /// are ignored): an opening sets the cash, a reset sets it and writes the
    /// shares off, credits and fills add up.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::AccountOpened { cash, .. } => self.cash = *cash,
            Event::AccountReset { cash, .. } => {
                self.cash = *cash;
                self.shares.clear();
            }
            Event::CashCredited { amount, .. } => self.cash += *amount,
            Event::Traded(trade) => self.trade(trade),
            _ => {}
        }
    }

    fn trade(&mut self, trade: &Trade) {
        self.cash += trade.cash_delta();
        let signed = match trade.side {
            Side::Buy => i128::from(trade.qty),
            Side::Sell => -i128::from(trade.qty),
        };
        *self.shares.entry(trade.asset.index()).or_default() += signed;
    }

    /// Adds a stored position.
    pub fn hold(&mut self, asset: usize, qty: i128) {
        *self.shares.entry(asset).or_default() += qty;
    }

    fn nonzero_shares(&self) -> impl Iterator<Item = (&usize, &i128)> {
        self.shares.iter().filter(|(_, qty)| **qty != 0)
    }
}

/// One player's log replayed in seq order up to a cutoff: the player's
/// events other than fills are queued first (a player has few), then the
/// fills stream through, each after the queued events that precede it.
#[derive(Debug, Clone)]
pub struct PlayerReplay {
    cutoff: u64,
    queued: VecDeque<(u64, Event)>,
    balances: Balances,
    last_fill_seq: u64,
}

impl PlayerReplay {
    /// A replay of everything with `seq <= cutoff`.
    #[must_use]
    pub fn new(cutoff: u64) -> Self {
        Self { cutoff, queued: VecDeque::new(), balances: Balances::default(), last_fill_seq: 0 }
    }

    /// Queues an event other than a fill; the player's events come in seq order.
    pub fn event(&mut self, seq: u64, event: Event) {
        if seq <= self.cutoff {
            self.queued.push_back((seq, event));
        }
    }

    /// Applies a fill after the queued events before it. Fills come in seq
    /// order; a fill seen already (stored twice by a retried write) counts once.
    pub fn fill(&mut self, seq: u64, trade: &Trade) {
        if seq > self.cutoff || seq <= self.last_fill_seq {
            return;
        }
        self.apply_queued_before(seq);
        self.balances.trade(trade);
        self.last_fill_seq = seq;
    }

    fn apply_queued_before(&mut self, seq: u64) {
        while self.queued.front().is_some_and(|(queued, _)| *queued < seq) {
            if let Some((_, event)) = self.queued.pop_front() {
                self.balances.apply(&event);
            }
        }
    }

    /// The player's balances by the log.
    #[must_use]
    pub fn finish(mut self) -> Balances {
        self.apply_queued_before(u64::MAX);
        self.balances
    }
}

/// The audit's running result: totals of the stored ledgers, mismatches
/// between them and the log, negatives. Memory: one entry per asset.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    cash_total: Decimal,
    shares: BTreeMap<usize, i128>,
    cash_mismatches: u64,
    share_mismatches: u64,
    negative: bool,
    players: u64,
}

impl Tally {
    /// Sets one player's balances by the log against its stored ledger
    /// (`None`: no ledger stored, as if all zero). Each player once.
    pub fn settle(&mut self, expected: &Balances, stored: Option<&Balances>) {
        let empty = Balances::default();
        let stored = stored.unwrap_or(&empty);
        self.players += 1;
        self.cash_total += stored.cash;
        self.cash_mismatches += u64::from(expected.cash != stored.cash);
        self.negative |= stored.cash.is_sign_negative() && !stored.cash.is_zero();
        for (asset, qty) in stored.nonzero_shares() {
            *self.shares.entry(*asset).or_default() += *qty;
            self.negative |= *qty < 0;
            self.share_mismatches += u64::from(expected.shares.get(asset).copied().unwrap_or(0) != *qty);
        }
        let only_expected =
            expected.nonzero_shares().filter(|(asset, _)| stored.shares.get(asset).is_none_or(|q| *q == 0));
        self.share_mismatches += only_expected.count() as u64;
    }

    /// Records a stored value that must not be negative and is (a reservation).
    pub fn negative_found(&mut self) {
        self.negative = true;
    }

    /// Players whose cash differs, and (player, asset) pairs whose shares do.
    #[must_use]
    pub fn mismatches(&self) -> (u64, u64) {
        (self.cash_mismatches, self.share_mismatches)
    }

    /// Players settled.
    #[must_use]
    pub fn players(&self) -> u64 {
        self.players
    }

    /// The audit: ok when nothing differs and nothing is negative; shares
    /// named by `tickers` (index = asset id), `events` the log's length.
    #[must_use]
    pub fn into_audit(self, tickers: &[String], events: u64) -> Audit {
        let shares = self
            .shares
            .into_iter()
            .filter(|(_, qty)| *qty != 0)
            .map(|(asset, qty)| {
                let name = tickers.get(asset).cloned().unwrap_or_else(|| format!("#{asset}"));
                (name, u64::try_from(qty).unwrap_or(0))
            })
            .collect();
        Audit {
            ok: self.cash_mismatches == 0 && self.share_mismatches == 0 && !self.negative,
            cash_total: self.cash_total,
            shares,
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::ResetReason;
    use crate::domain::ids::{AssetId, PlayerId, TradeId};

    fn trade(side: Side, qty: u64) -> Trade {
        Trade {
            id: TradeId(1),
            order: None,
            player: PlayerId(1),
            asset: AssetId(2),
            side,
            qty,
            price: Decimal::from(10),
            fee: Decimal::ONE,
        }
    }

    fn opened(cash: i64) -> Event {
        Event::AccountOpened { player: PlayerId(1), cash: Decimal::from(cash), season: 0 }
    }

    #[test]
    fn a_replay_applies_events_and_fills_in_seq_order_up_to_its_cutoff() {
        let mut replay = PlayerReplay::new(6);
        replay.event(1, opened(100));
        replay.event(
            4,
            Event::AccountReset { player: PlayerId(1), cash: Decimal::from(50), reason: ResetReason::Bankruptcy },
        );
        replay.event(
            7,
            Event::CashCredited {
                player: PlayerId(1),
                amount: Decimal::from(5),
                reason: crate::domain::event::CreditReason::DailyBonus,
            },
        );
        replay.fill(2, &trade(Side::Buy, 3)); // before the reset: written off
        replay.fill(2, &trade(Side::Buy, 3)); // stored twice: counted once
        replay.fill(5, &trade(Side::Buy, 1));
        replay.fill(8, &trade(Side::Sell, 1)); // after the cutoff
        let balances = replay.finish();
        assert_eq!(balances.cash, Decimal::from(50 - 11));
        assert_eq!(balances.shares, BTreeMap::from([(2, 1)]));
    }

    #[test]
    fn the_tally_counts_mismatches_totals_and_negatives() {
        let mut expected = Balances { cash: Decimal::from(78), ..Balances::default() };
        expected.hold(2, 2);
        let mut tally = Tally::default();
        tally.settle(&expected, Some(&expected.clone()));
        assert_eq!(tally.mismatches(), (0, 0));

        let mut tampered = expected.clone();
        tampered.cash += Decimal::ONE;
        tampered.hold(4, 1);
        tally.settle(&expected, Some(&tampered));
        assert_eq!(tally.mismatches(), (1, 1));
        // A player the log knows but no ledger was stored for.
        tally.settle(&expected, None);
        assert_eq!(tally.mismatches(), (2, 2));
        assert_eq!(tally.players(), 3);
        let audit = tally.clone().into_audit(&["A".into(), "B".into(), "C".into()], 9);
        assert!(!audit.ok);
        assert_eq!(audit.cash_total, Decimal::from(78 + 79));
        assert_eq!(audit.shares, BTreeMap::from([("C".to_owned(), 4), ("#4".to_owned(), 1)]));

        let mut clean = Tally::default();
        let negative = Balances { cash: Decimal::from(-1), ..Balances::default() };
        clean.settle(&negative, Some(&negative));
        assert!(!clean.into_audit(&[], 0).ok, "a negative balance fails the audit even when the log agrees");
    }
}
