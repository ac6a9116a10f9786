//! The engine's `Notifier` for Telegram players (`TelegramNotifier`) on top
//! of the gateway's rate-limited sender, and the words of each notice. The
//! sender itself lives in the gateway crate (`gateway::sender`), re-exported
//! here.

use std::sync::Arc;

use actors::domain::asset::Universe;
use actors::domain::event::Trade;
use actors::domain::ids::PlayerId;
use actors::domain::order::Side;
use actors::ports::{Notice, Notifier};
pub use gateway::sender::*;

use super::reply::{Button, Reply, escape, money};
use crate::config::TelegramSettings;

/// The configured sending limits, Telegram's defaults where unset.
#[must_use]
pub fn rate_limits(settings: &TelegramSettings) -> RateLimits {
    let defaults = RateLimits::default();
    RateLimits {
        global_per_sec: settings.rate_global_per_sec.unwrap_or(defaults.global_per_sec),
        chat_per_sec: settings.rate_chat_per_sec.unwrap_or(defaults.chat_per_sec),
        group_per_min: settings.rate_group_per_min.unwrap_or(defaults.group_per_min),
    }
}

/// The engine's `Notifier` for Telegram players: renders notices and queues
/// them to the player's private chat (chat id = user id). Local (play page)
/// players are skipped.
pub struct TelegramNotifier {
    sender: SenderHandle,
    universe: Arc<Universe>,
}

impl TelegramNotifier {
    /// A notifier sending through `sender`, naming assets from `universe`.
    #[must_use]
    pub fn new(sender: SenderHandle, universe: Arc<Universe>) -> Self {
        Self { sender, universe }
    }
}

impl Notifier for TelegramNotifier {
    fn notify(&self, player: PlayerId, notice: Notice) {
        if player.is_local() || player.0 == 0 {
            return;
        }
        let reply = notice_reply(&notice, &self.universe);
        if let Err(error) = self.sender.send(Outgoing::Text { chat_id: player.0, reply }) {
            tracing::debug!(player_id = player.0, %error, "notice not queued");
        }
    }
}

/// The words for a notice. Never starts with "Bought"/"Sold" (only trade
/// replies do).
#[must_use]
pub fn notice_reply(notice: &Notice, universe: &Universe) -> Reply {
    match notice {
        Notice::OrderFilled(trade) => fill_notice(trade, universe),
        Notice::OrderDropped { order } => Reply::text(format!(
            "🔔 Order #{order} was withdrawn: it could not be filled when it triggered. See /orders."
        ))
        .with_row(vec![Button::new("Orders", "/orders"), Button::new("Portfolio", "/portfolio")]),
        Notice::AlertFired { alert, from, to } => {
            let ticker =
                universe.ticker(alert.asset).map_or_else(|| format!("#{}", alert.asset.0), |t| t.as_str().to_owned());
            let (verb, sign) = match alert.direction {
                actors::domain::alert::Direction::Above => ("rose", "≥"),
                actors::domain::alert::Direction::Below => ("fell", "≤"),
            };
            Reply::text(format!(
                "🔔 Alert #{id}: {ticker} {verb} to {to} (from {from}), crossing your alert {sign} {price}.",
                id = alert.id.0,
                ticker = crate::telegram::reply::escape(&ticker),
                to = crate::telegram::reply::money(*to),
                from = crate::telegram::reply::money(*from),
                price = crate::telegram::reply::money(alert.price),
            ))
            .with_row(vec![
                Button::new(format!("Quote {ticker}"), format!("/quote {ticker}")),
                Button::new("Alerts", "/alerts"),
            ])
        }
    }
}

fn fill_notice(trade: &Trade, universe: &Universe) -> Reply {
    let ticker = universe.ticker(trade.asset).map_or_else(|| format!("#{}", trade.asset.0), |t| t.as_str().to_owned());
    let verb = match trade.side {
        Side::Buy => "bought",
        Side::Sell => "sold",
    };
    let order = trade.order.map_or_else(|| "Your order".to_owned(), |order| format!("Order #{order}"));
    let text = format!(
        "🔔 {order} filled — {verb} {qty} {ticker} at {price} avg, fee {fee}",
        qty = trade.qty,
        ticker = escape(&ticker),
        price = money(trade.price),
        fee = money(trade.fee),
    );
    Reply::text(text).with_row(vec![
        Button::new("Portfolio", "/portfolio"),
        Button::new(format!("Quote {ticker}"), format!("/quote {ticker}")),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use actors::domain::asset::{AssetSpec, CategorySpec};
    use actors::domain::ids::{AssetId, OrderId, Ticker, TradeId};
    use rust_decimal_macros::dec;

    use super::*;

    fn universe() -> Universe {
        let category = CategorySpec { name: "Tech".into(), vol_daily: 0.01, jump_rate_daily: 0.1, jump_sigma: 0.01 };
        let asset = AssetSpec {
            ticker: Ticker::parse("ACME").unwrap(),
            name: "Acme".into(),
            category: "Tech".into(),
            initial_price: dec!(50),
            model: actors::domain::asset::ModelParams::default(),
        };
        Universe::new(vec![category], vec![asset]).unwrap()
    }

    #[test]
    fn fill_notice_names_order_side_and_price_but_does_not_start_like_a_trade_reply() {
        let trade = Trade {
            id: TradeId(1),
            order: Some(OrderId(12)),
            player: PlayerId(5),
            asset: AssetId(0),
            side: Side::Buy,
            qty: 10,
            price: dec!(48.2),
            fee: dec!(0.49),
        };
        let reply = notice_reply(&Notice::OrderFilled(trade), &universe());
        assert_eq!(reply.text, "🔔 Order #12 filled — bought 10 ACME at 48.20 avg, fee 0.49");
        let second = reply.text.split_whitespace().nth(1).unwrap();
        assert!(second != "Bought" && second != "Sold");
        assert_eq!(reply.buttons[0][1].data, "/quote ACME");
        let dropped = notice_reply(&Notice::OrderDropped { order: OrderId(3) }, &universe());
        assert!(dropped.text.starts_with("🔔 Order #3 was withdrawn"));
    }
}
