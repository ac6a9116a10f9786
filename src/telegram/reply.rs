//! The one place that turns engine outcomes and `Rejection`s into words: a
//! [`Reply`] (the `wire` type every role shares) of HTML text, everything
//! from players or config escaped, with inline buttons. The reply rules
//! (receipts stay, views edit in place, errors offer the next step, one
//! screen per reply, a menu for plain text) are stated on [`wire::reply`];
//! [`settle`] marks the buttons that edit in place.

use actors::domain::exchange::{Fill, Quote};
use actors::domain::money::format_money;
use actors::domain::order::Side;
use actors::domain::rejection::Rejection;
use rust_decimal::Decimal;

use super::command::ParseError;

pub use wire::reply::{
    Button, CALLBACK_DATA_LEN_MAX, InvoiceSpec, REPLY_CHARS_MAX, REPLY_LINES_MAX, Reply, ReplyKind, ReplyPhoto, escape,
};

/// How a view is shown: as text, or as a picture (which only a picture
/// can replace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    Text,
    Photo,
}

/// The medium of the view `command` draws, or `None` when it is no view
/// (its answer is a receipt: a trade, a bonus, a cancellation…).
#[must_use]
pub fn view_medium(command: &str) -> Option<Medium> {
    let name = command.split_whitespace().next()?.split('@').next()?.to_ascii_lowercase();
    match name.as_str() {
        "/chart" => Some(Medium::Photo),
        "/quote" | "/portfolio" | "/p" | "/market" | "/history" | "/orders" | "/top" | "/help" | "/level"
        | "/achievements" | "/alerts" | "/news" => Some(Medium::Text),
        _ => None,
    }
}

/// Marks the buttons of a view that lead to a view of the same medium: a
/// press on one replaces the view in place. Receipts, errors and menus keep
/// unmarked buttons, so they are never overwritten.
#[must_use]
pub fn settle(mut reply: Reply) -> Reply {
    if reply.kind != ReplyKind::View {
        return reply;
    }
    let medium = if reply.photo.is_some() { Medium::Photo } else { Medium::Text };
    for button in reply.buttons.iter_mut().flatten() {
        button.edits = button.web_app.is_none() && view_medium(&button.data) == Some(medium);
    }
    reply
}

/// The short menu answering text that is no command.
#[must_use]
pub fn menu() -> Reply {
    Reply::text("🤖 I answer commands. Tap one below, or send /help for the full list.")
        .with_row(vec![Button::new("Market", "/market"), Button::new("Portfolio", "/portfolio")])
        .with_row(vec![Button::new("Daily bonus", "/daily"), Button::new("Help", "/help")])
        .kind(ReplyKind::Menu)
}

/// An error reply: `text`, and the next step as a button.
#[must_use]
pub fn error(text: impl Into<String>, next: Button) -> Reply {
    Reply::text(text).with_row(vec![next]).kind(ReplyKind::Error)
}

/// A price for people: grouped, two decimals.
#[must_use]
pub fn money(amount: Decimal) -> String {
    format_money(amount)
}

/// The reply to a fill. Its first word (after the emoji) is `Bought` or
/// `Sold`, and no other reply starts that way.
#[must_use]
pub fn fill(fill: &Fill, ticker: &str) -> Reply {
    let trade = &fill.trade;
    let (emoji, verb) = match trade.side {
        Side::Buy => ("🟢", "Bought"),
        Side::Sell => ("🔴", "Sold"),
    };
    let text = format!(
        "{emoji} {verb} {qty} {ticker} at {price} avg\nFee: {fee} · Total: {total}\nCash now: {cash} · You hold {held} {ticker}",
        qty = trade.qty,
        ticker = escape(ticker),
        price = money(trade.price),
        fee = money(trade.fee),
        total = money(trade.value()),
        cash = money(fill.cash_after),
        held = fill.held_after,
    );
    Reply::text(text).with_row(vec![
        Button::new("Portfolio", "/portfolio"),
        Button::new(format!("Quote {ticker}"), format!("/quote {ticker}")),
    ])
}

/// A quote with buy/sell buttons.
#[must_use]
pub fn quote(quote: &Quote, ticker: &str, name: &str, category: &str) -> Reply {
    let status = if quote.halted { "\n⛔ Trading halted" } else { "" };
    let text = format!(
        "<b>{ticker}</b> — {name} ({category})\nBid {bid} · Ask {ask}{status}",
        ticker = escape(ticker),
        name = escape(name),
        category = escape(category),
        bid = money(quote.bid),
        ask = money(quote.ask),
    );
    let trade_row = |verb: &str, label: &str| {
        [1, 10, 100].map(|qty| Button::new(format!("{label} {qty}"), format!("/{verb} {ticker} {qty}")))
    };
    Reply::text(text)
        .kind(ReplyKind::View)
        .with_row(trade_row("buy", "Buy").to_vec())
        .with_row(trade_row("sell", "Sell").to_vec())
        .with_row(vec![
            Button::new("↻ Refresh", format!("/quote {ticker}")),
            Button::new("Chart", format!("/chart {ticker}")),
        ])
}

/// Words for a player's mistake (or a refusal), saying what to do.
#[must_use]
pub fn rejection(rejection: &Rejection) -> Reply {
    let text = match rejection {
        Rejection::BadTicker { given } => format!("⚠️ '{}' is not a ticker. See /market for the list.", escape(given)),
        Rejection::UnknownTicker { ticker } => {
            format!("⚠️ There is no asset {}. See /market for the list.", escape(ticker.as_str()))
        }
        Rejection::BadQuantity { given } => {
            format!("⚠️ '{}' is not a quantity: use a whole number of shares, like 10.", escape(given))
        }
        Rejection::BadPrice { given } => {
            format!("⚠️ '{}' is not a price: use a positive number with at most 2 decimals, like 12.50.", escape(given))
        }
        Rejection::OrderTooLarge { qty_max } => format!("⚠️ At most {qty_max} shares per order."),
        Rejection::OrderTooSmall { value_min } => format!("⚠️ Orders must be worth at least {}.", money(*value_min)),
        Rejection::ExceedsLiquidity { qty_max } => {
            format!("⚠️ That order is too large for this market right now: try at most {qty_max} shares.")
        }
        Rejection::PositionLimit { ticker, qty_max, held } => {
            format!("⚠️ You may hold at most {qty_max} {}; you hold {held}.", escape(ticker.as_str()))
        }
        Rejection::InsufficientCash { needed, available } => {
            format!("⚠️ Not enough cash: this buy needs {}, you have {}.", money(*needed), money(*available))
        }
        Rejection::InsufficientShares { ticker, needed, available } => format!(
            "⚠️ Not enough shares: you want to sell {needed} {t}, you have {available} {t} free to sell.",
            t = escape(ticker.as_str())
        ),
        Rejection::Halted { ticker, .. } => {
            format!("⛔ Trading in {} is halted for now. Try again in a few minutes.", escape(ticker.as_str()))
        }
        Rejection::TooManyOpenOrders { open_max } => {
            format!("⚠️ You have {open_max} open orders, the most allowed. Cancel one in /orders first.")
        }
        Rejection::PriceWouldExecute { ticker, market } => format!(
            "⚠️ The bid of {} is already at {} or below: a stop there would sell at once. Use /sell instead.",
            escape(ticker.as_str()),
            money(*market)
        ),
        Rejection::StopOnlySells => "⚠️ Stop orders protect what you hold: they only sell.".to_owned(),
        Rejection::UnknownOrder { order_id } => format!("⚠️ You have no open order #{order_id}. See /orders."),
        Rejection::NoAccount => "👋 You don't have an account yet: send /start to begin.".to_owned(),
        Rejection::AmountTooLarge => "⚠️ That amount is too large.".to_owned(),
        Rejection::Busy => "⏳ The market is busy right now. Nothing was done; try again in a moment.".to_owned(),
        Rejection::Unavailable => "⏳ Temporarily unavailable. Nothing was done; try again in a moment.".to_owned(),
        Rejection::Locked { what, level } => {
            format!(
                "🔒 {} unlock at level {level}. Trade and claim /daily to earn XP; see /level.",
                capitalized(&escape(what))
            )
        }
        Rejection::Concentration { pct_max, value_max } => format!(
            "⚠️ At most {pct_max}% of your net worth may sit in one asset: you may hold up to {} of it. Spread out.",
            money(*value_max)
        ),
        Rejection::AlreadyClaimed { next_claim_at_ms } => {
            format!("⏰ You already claimed today's bonus. Come back {}.", when(*next_claim_at_ms))
        }
        Rejection::NotBroke { net_worth, threshold } => format!(
            "🙂 You are not broke: your net worth is {}. /bankrupt is for net worths under {}.",
            money(*net_worth),
            money(*threshold)
        ),
        Rejection::BankruptcyCoolingDown { next_allowed_at_ms } => {
            format!("⏳ You went bankrupt recently. You may start over again {}.", when(*next_allowed_at_ms))
        }
        Rejection::TooManyAlerts { alerts_max } => {
            format!("⚠️ You have {alerts_max} alerts, the most allowed. Delete one in /alerts first.")
        }
        Rejection::AlertAlreadyThere { mid } => {
            format!("⚠️ The price is already there ({}): that alert would never fire.", money(*mid))
        }
        Rejection::UnknownAlert { alert } => format!("⚠️ You have no alert #{alert}. See /alerts."),
        Rejection::Referral { reason } => format!("ℹ️ That referral does not count: {}.", escape(reason)),
    };
    error(text, next_step(rejection))
}

/// The button that takes a player on after `rejection`.
fn next_step(rejection: &Rejection) -> Button {
    let quote =
        |ticker: &actors::domain::ids::Ticker| Button::new(format!("Quote {ticker}"), format!("/quote {ticker}"));
    match rejection {
        Rejection::BadTicker { .. } | Rejection::UnknownTicker { .. } | Rejection::Referral { .. } => {
            Button::new("Market", "/market")
        }
        Rejection::Halted { ticker, .. } | Rejection::PriceWouldExecute { ticker, .. } => quote(ticker),
        Rejection::TooManyOpenOrders { .. } | Rejection::UnknownOrder { .. } => Button::new("Orders", "/orders"),
        Rejection::TooManyAlerts { .. } | Rejection::AlertAlreadyThere { .. } | Rejection::UnknownAlert { .. } => {
            Button::new("Alerts", "/alerts")
        }
        Rejection::NoAccount => Button::new("Start", "/start"),
        Rejection::Locked { .. } | Rejection::AlreadyClaimed { .. } => Button::new("Level", "/level"),
        Rejection::BadQuantity { .. } | Rejection::BadPrice { .. } | Rejection::AmountTooLarge => {
            Button::new("Help", "/help")
        }
        Rejection::OrderTooLarge { .. }
        | Rejection::OrderTooSmall { .. }
        | Rejection::ExceedsLiquidity { .. }
        | Rejection::PositionLimit { .. }
        | Rejection::InsufficientCash { .. }
        | Rejection::InsufficientShares { .. }
        | Rejection::StopOnlySells
        | Rejection::Busy
        | Rejection::Unavailable
        | Rejection::Concentration { .. }
        | Rejection::NotBroke { .. }
        | Rejection::BankruptcyCoolingDown { .. } => Button::new("Portfolio", "/portfolio"),
    }
}

/// `text` with its first letter upper-cased.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

/// A UTC instant as players read it, e.g. "at 2026-11-28 00:00 UTC".
#[must_use]
pub fn when(at_ms: i64) -> String {
    let days = at_ms.div_euclid(86_400_000);
    let minute_of_day = at_ms.rem_euclid(86_400_000) / 60_000;
    let (year, month, day) = civil_from_days(days);
    format!("at {year:04}-{month:02}-{day:02} {:02}:{:02} UTC", minute_of_day / 60, minute_of_day % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, u32::try_from(month).unwrap_or(1), u32::try_from(day).unwrap_or(1))
}

/// Words for a text that did not parse.
#[must_use]
pub fn parse_error(parse_error: &ParseError) -> Option<Reply> {
    match parse_error {
        ParseError::NotForUs => None,
        ParseError::Unknown { command } => Some(error(
            format!("🤔 I don't know /{}. Send /help for the list of commands.", escape(command)),
            Button::new("Help", "/help"),
        )),
        ParseError::Usage { usage } => {
            Some(error(format!("✍️ Usage: {}", escape(usage)), Button::new("Help", "/help")))
        }
        ParseError::Invalid(rejected) => Some(rejection(rejected)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actors::domain::ids::{OrderId, Ticker};
    use rust_decimal::Decimal;

    use super::*;

    /// Every rejection, with the longest values a player can cause.
    fn every_rejection() -> Vec<Rejection> {
        let ticker = Ticker::parse("ACME").unwrap();
        let big = Decimal::new(999_999_999_999_999, 2);
        let given = "x".repeat(4_000);
        vec![
            Rejection::BadTicker { given: given.chars().take(32).collect() },
            Rejection::UnknownTicker { ticker },
            Rejection::BadQuantity { given: given.chars().take(32).collect() },
            Rejection::BadPrice { given: given.chars().take(32).collect() },
            Rejection::OrderTooLarge { qty_max: u64::MAX },
            Rejection::OrderTooSmall { value_min: big },
            Rejection::ExceedsLiquidity { qty_max: u64::MAX },
            Rejection::PositionLimit { ticker, qty_max: u64::MAX, held: u64::MAX },
            Rejection::InsufficientCash { needed: big, available: big },
            Rejection::InsufficientShares { ticker, needed: u64::MAX, available: u64::MAX },
            Rejection::Halted { ticker, resumes_at_ms: i64::MAX },
            Rejection::TooManyOpenOrders { open_max: u32::MAX },
            Rejection::PriceWouldExecute { ticker, market: big },
            Rejection::StopOnlySells,
            Rejection::UnknownOrder { order_id: OrderId(u64::MAX) },
            Rejection::NoAccount,
            Rejection::AmountTooLarge,
            Rejection::Locked { what: "stop orders".into(), level: u32::MAX },
            Rejection::Concentration { pct_max: 50, value_max: big },
            Rejection::AlreadyClaimed { next_claim_at_ms: 0 },
            Rejection::NotBroke { net_worth: big, threshold: big },
            Rejection::BankruptcyCoolingDown { next_allowed_at_ms: i64::MAX },
            Rejection::TooManyAlerts { alerts_max: u32::MAX },
            Rejection::AlertAlreadyThere { mid: big },
            Rejection::UnknownAlert { alert: u64::MAX },
            Rejection::Referral { reason: "you cannot refer yourself".into() },
            Rejection::Busy,
            Rejection::Unavailable,
        ]
    }

    #[test]
    fn every_rejection_fits_a_screen_and_offers_its_next_step() {
        for rejected in every_rejection() {
            let reply = rejection(&rejected);
            assert!(reply.fits(), "{rejected:?}: {}", reply.text);
            assert_eq!(reply.kind, ReplyKind::Error, "{rejected:?}");
            let next = reply.buttons.iter().flatten().next();
            assert!(next.is_some_and(|button| button.data.starts_with('/')), "{rejected:?}: no next step");
        }
    }

    #[test]
    fn only_a_views_own_buttons_edit_it() {
        let view = Reply::text("💼 Portfolio")
            .kind(ReplyKind::View)
            .with_row(vec![Button::new("↻", "/portfolio"), Button::new("Buy", "/buy ACME 1")])
            .with_row(vec![Button::new("Chart", "/chart ACME")]);
        let settled = settle(view);
        let edits: Vec<bool> = settled.buttons.iter().flatten().map(|button| button.edits).collect();
        assert_eq!(edits, [true, false, false], "text view → text views only");
        let receipt = settle(Reply::text("🟢 Bought").with_row(vec![Button::new("Portfolio", "/portfolio")]));
        assert!(receipt.buttons.iter().flatten().all(|button| !button.edits), "a receipt is never overwritten");
        let mut chart = Reply::text("📊")
            .kind(ReplyKind::View)
            .with_row(vec![Button::new("1h", "/chart ACME 1h"), Button::new("Quote", "/quote ACME")]);
        chart.photo = Some(ReplyPhoto { png: std::sync::Arc::new(vec![1]), url: String::new() });
        let edits: Vec<bool> = settle(chart).buttons.iter().flatten().map(|button| button.edits).collect();
        assert_eq!(edits, [true, false], "a chart's ranges edit it; a quote cannot replace a picture");
        assert!(menu().fits() && !menu().buttons.is_empty());
    }
}
