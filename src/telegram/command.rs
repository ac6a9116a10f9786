//! `BotCommand`: what a player typed, parsed into a typed command, or a
//! `ParseError` that says what was wrong and how to write it.

use actors::domain::ids::{LimitPrice, OrderId, Quantity, Ticker};
use actors::domain::order::Side;
use actors::domain::rejection::Rejection;
use rust_decimal::Decimal;

/// Longest message text looked at; Telegram's own limit is 4,096.
pub const TEXT_LEN_MAX: usize = 4_096;

/// The chart's time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartRange {
    Hour,
    Day,
    Week,
}

/// Which way a price alert looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertDirection {
    Above,
    Below,
}

/// A player command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotCommand {
    Start {
        referral: Option<String>,
    },
    Help,
    Market {
        category: Option<String>,
    },
    Quote {
        ticker: Ticker,
    },
    /// Market order, or limit order with `limit`.
    Trade {
        side: Side,
        ticker: Ticker,
        qty: Quantity,
        limit: Option<LimitPrice>,
    },
    Stop {
        ticker: Ticker,
        qty: Quantity,
        price: LimitPrice,
    },
    Orders,
    Cancel {
        order: OrderId,
    },
    Portfolio,
    History {
        page: u32,
    },
    Chart {
        ticker: Ticker,
        range: ChartRange,
    },
    Top {
        board: TopBoard,
        page: u32,
    },
    Achievements,
    Level,
    Daily,
    Alert {
        ticker: Ticker,
        direction: AlertDirection,
        price: LimitPrice,
    },
    Alerts,
    /// Deletes one of the player's alerts.
    Unalert {
        alert: u64,
    },
    Premium,
    /// Starts over when broke.
    Bankrupt,
    /// Sets the player's UTC offset for the daily bonus's calendar.
    TimeZone {
        minutes: i32,
    },
    /// Latest market news.
    News,
    /// Operator commands (checked against the configured admins).
    Admin {
        action: AdminAction,
    },
}

/// Which board `/top` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopBoard {
    NetWorth,
    Return,
    /// Today's biggest gains.
    Gainers,
}

/// An operator command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAction {
    Halt {
        ticker: Ticker,
        halted: bool,
    },
    /// News moving `target` (a ticker or a category name) by `move_pct` percent.
    News {
        target: String,
        move_pct: Decimal,
        text: String,
    },
    Grant {
        player: i64,
        amount: Decimal,
    },
}

/// Why a text is not a command the bot can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Plain text, or a command addressed to another bot: stay quiet.
    NotForUs,
    /// A `/word` the bot does not know.
    Unknown { command: String },
    /// A known command written wrongly: the usage line says how.
    Usage { usage: &'static str },
    /// A well-formed command with a bad value.
    Invalid(Rejection),
}

impl From<Rejection> for ParseError {
    fn from(rejection: Rejection) -> Self {
        Self::Invalid(rejection)
    }
}

/// Usage lines, shown on mistakes and in /help.
pub mod usage {
    pub const QUOTE: &str = "/quote TICKER — e.g. /quote ACME";
    pub const BUY: &str = "/buy TICKER QTY [@ PRICE] — e.g. /buy ACME 10 or /buy ACME 10 @ 12.50";
    pub const SELL: &str = "/sell TICKER QTY [@ PRICE] — e.g. /sell ACME 5";
    pub const STOP: &str = "/stop TICKER QTY @ PRICE — sell if the price falls to PRICE";
    pub const CANCEL: &str = "/cancel ORDER_ID — see /orders";
    pub const CHART: &str = "/chart TICKER [1h|1d|1w]";
    pub const ALERT: &str = "/alert TICKER > PRICE or /alert TICKER < PRICE";
    pub const HISTORY: &str = "/history [PAGE]";
    pub const TOP: &str = "/top [return|gainers] [PAGE]";
    pub const UNALERT: &str = "/unalert ALERT_ID — see /alerts";
    pub const TIMEZONE: &str = "/timezone +HH[:MM] or -HH[:MM] — your UTC offset, e.g. /timezone +5:30";
    pub const ADMIN: &str = "/admin halt TICKER | /admin resume TICKER | /admin news TICKER|CATEGORY ±PCT TEXT | /admin grant PLAYER AMOUNT";
}

/// Parses a message. `bot_username` (without `@`) lets `/cmd@ThisBot` through
/// and ignores `/cmd@OtherBot`.
///
/// # Errors
/// A [`ParseError`] for anything that is not a runnable command.
pub fn parse(text: &str, bot_username: Option<&str>) -> Result<BotCommand, ParseError> {
    let text: String = text.chars().take(TEXT_LEN_MAX).collect();
    let text = text.trim();
    let Some(rest) = text.strip_prefix('/') else { return Err(ParseError::NotForUs) };
    let mut words = rest.split_whitespace();
    let head = words.next().unwrap_or("");
    let (name, addressee) = head.split_once('@').map_or((head, None), |(name, bot)| (name, Some(bot)));
    if let (Some(addressee), Some(us)) = (addressee, bot_username)
        && !addressee.eq_ignore_ascii_case(us)
    {
        return Err(ParseError::NotForUs);
    }
    let name = name.to_ascii_lowercase();
    let args: Vec<&str> = words.collect();
    match name.as_str() {
        "start" => Ok(BotCommand::Start { referral: args.first().map(|r| r.chars().take(64).collect()) }),
        "help" => Ok(BotCommand::Help),
        "market" => Ok(BotCommand::Market { category: (!args.is_empty()).then(|| args.join(" ")) }),
        "quote" => match args.as_slice() {
            [ticker] => Ok(BotCommand::Quote { ticker: Ticker::parse(ticker)? }),
            _ => Err(ParseError::Usage { usage: usage::QUOTE }),
        },
        "buy" => parse_trade(Side::Buy, &args, usage::BUY),
        "sell" => parse_trade(Side::Sell, &args, usage::SELL),
        "stop" => match split_at_sign(&args).as_ref().map(|(before, after)| (before.as_slice(), after.as_slice())) {
            Some(([ticker, qty], [price])) => Ok(BotCommand::Stop {
                ticker: Ticker::parse(ticker)?,
                qty: Quantity::parse(qty)?,
                price: LimitPrice::parse(price)?,
            }),
            _ => Err(ParseError::Usage { usage: usage::STOP }),
        },
        "orders" => Ok(BotCommand::Orders),
        "cancel" => match args.as_slice() {
            [id] => {
                let id = id.trim_start_matches('#');
                id.parse::<u64>()
                    .map(|id| BotCommand::Cancel { order: OrderId(id) })
                    .map_err(|_| ParseError::Usage { usage: usage::CANCEL })
            }
            _ => Err(ParseError::Usage { usage: usage::CANCEL }),
        },
        "portfolio" | "p" => Ok(BotCommand::Portfolio),
        "history" => match args.as_slice() {
            [] => Ok(BotCommand::History { page: 1 }),
            [page] => page
                .parse::<u32>()
                .ok()
                .filter(|p| (1..=10_000).contains(p))
                .map(|page| BotCommand::History { page })
                .ok_or(ParseError::Usage { usage: usage::HISTORY }),
            _ => Err(ParseError::Usage { usage: usage::HISTORY }),
        },
        "chart" => {
            let range = match args.get(1).map(|r| r.to_ascii_lowercase()) {
                None => Some(ChartRange::Day),
                Some(r) if r == "1h" => Some(ChartRange::Hour),
                Some(r) if r == "1d" => Some(ChartRange::Day),
                Some(r) if r == "1w" => Some(ChartRange::Week),
                Some(_) => None,
            };
            match (args.as_slice(), range) {
                ([ticker] | [ticker, _], Some(range)) => {
                    Ok(BotCommand::Chart { ticker: Ticker::parse(ticker)?, range })
                }
                _ => Err(ParseError::Usage { usage: usage::CHART }),
            }
        }
        "top" => parse_top(&args),
        "unalert" => match args.as_slice() {
            [id] => id
                .trim_start_matches('#')
                .parse::<u64>()
                .map(|alert| BotCommand::Unalert { alert })
                .map_err(|_| ParseError::Usage { usage: usage::UNALERT }),
            _ => Err(ParseError::Usage { usage: usage::UNALERT }),
        },
        "bankrupt" => Ok(BotCommand::Bankrupt),
        "timezone" | "tz" => match args.as_slice() {
            [offset] => parse_offset(offset).map(|minutes| BotCommand::TimeZone { minutes }),
            _ => Err(ParseError::Usage { usage: usage::TIMEZONE }),
        },
        "news" => Ok(BotCommand::News),
        "admin" => parse_admin(&args).map(|action| BotCommand::Admin { action }),
        "achievements" => Ok(BotCommand::Achievements),
        "level" => Ok(BotCommand::Level),
        "daily" => Ok(BotCommand::Daily),
        "alert" => parse_alert(&args),
        "alerts" => Ok(BotCommand::Alerts),
        "premium" => Ok(BotCommand::Premium),
        "" => Err(ParseError::NotForUs),
        other => Err(ParseError::Unknown { command: other.chars().take(32).collect() }),
    }
}

fn parse_trade(side: Side, args: &[&str], usage: &'static str) -> Result<BotCommand, ParseError> {
    let split = split_at_sign(args);
    if let Some(([ticker, qty], [price])) = split.as_ref().map(|(before, after)| (before.as_slice(), after.as_slice()))
    {
        return Ok(BotCommand::Trade {
            side,
            ticker: Ticker::parse(ticker)?,
            qty: Quantity::parse(qty)?,
            limit: Some(LimitPrice::parse(price)?),
        });
    }
    match args {
        [ticker, qty] => {
            Ok(BotCommand::Trade { side, ticker: Ticker::parse(ticker)?, qty: Quantity::parse(qty)?, limit: None })
        }
        _ => Err(ParseError::Usage { usage }),
    }
}

fn parse_top(args: &[&str]) -> Result<BotCommand, ParseError> {
    let mut board = TopBoard::NetWorth;
    let mut page = 1;
    for arg in args {
        match arg.to_ascii_lowercase().as_str() {
            "return" | "returns" | "%" => board = TopBoard::Return,
            "gainers" | "today" => board = TopBoard::Gainers,
            "worth" | "networth" => board = TopBoard::NetWorth,
            other => {
                page = other
                    .parse::<u32>()
                    .ok()
                    .filter(|p| (1..=10_000).contains(p))
                    .ok_or(ParseError::Usage { usage: usage::TOP })?;
            }
        }
    }
    Ok(BotCommand::Top { board, page })
}

/// `+5`, `-3:30`, `5:45`, `UTC+2` → minutes east of UTC.
fn parse_offset(text: &str) -> Result<i32, ParseError> {
    let bad = ParseError::Usage { usage: usage::TIMEZONE };
    let text = text.trim().trim_start_matches("UTC").trim_start_matches("utc").trim_start_matches("GMT");
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let (hours, minutes) = rest.split_once(':').unwrap_or((rest, "0"));
    let hours: i32 = hours.parse().map_err(|_| bad.clone())?;
    let minutes: i32 = minutes.parse().map_err(|_| bad.clone())?;
    if !(0..=14).contains(&hours) || !(0..60).contains(&minutes) {
        return Err(bad);
    }
    Ok(sign * (hours * 60 + minutes))
}

fn parse_admin(args: &[&str]) -> Result<AdminAction, ParseError> {
    let usage = ParseError::Usage { usage: usage::ADMIN };
    let verb = args.first().map(|v| v.to_ascii_lowercase());
    match (verb.as_deref(), args.get(1..).unwrap_or_default()) {
        (Some("halt"), [ticker]) => Ok(AdminAction::Halt { ticker: Ticker::parse(ticker)?, halted: true }),
        (Some("resume"), [ticker]) => Ok(AdminAction::Halt { ticker: Ticker::parse(ticker)?, halted: false }),
        (Some("grant"), [player, amount]) => {
            let player = player.parse::<i64>().map_err(|_| usage.clone())?;
            let amount =
                amount.replace(',', "").parse::<Decimal>().ok().filter(|a| *a > Decimal::ZERO).ok_or_else(|| {
                    ParseError::Invalid(Rejection::BadPrice { given: (*amount).chars().take(32).collect() })
                })?;
            Ok(AdminAction::Grant { player, amount })
        }
        (Some("news"), [target, pct, text @ ..]) => {
            let move_pct = pct
                .trim_end_matches('%')
                .parse::<Decimal>()
                .ok()
                .filter(|p| p.abs() <= Decimal::from(50) && !p.is_zero())
                .ok_or(usage.clone())?;
            let text: String = text.join(" ").chars().take(200).collect();
            Ok(AdminAction::News { target: (*target).chars().take(32).collect(), move_pct, text })
        }
        _ => Err(usage),
    }
}

fn parse_alert(args: &[&str]) -> Result<BotCommand, ParseError> {
    let joined = args.join(" ");
    let (ticker, direction, price) = if let Some((t, p)) = joined.split_once('>') {
        (t, AlertDirection::Above, p)
    } else if let Some((t, p)) = joined.split_once('<') {
        (t, AlertDirection::Below, p)
    } else {
        return Err(ParseError::Usage { usage: usage::ALERT });
    };
    if ticker.trim().is_empty() || price.trim().is_empty() {
        return Err(ParseError::Usage { usage: usage::ALERT });
    }
    Ok(BotCommand::Alert { ticker: Ticker::parse(ticker)?, direction, price: LimitPrice::parse(price)? })
}

/// Splits `A B @ C` (or `A B @C`) into the words before and after `@`.
fn split_at_sign<'a>(args: &[&'a str]) -> Option<(Vec<&'a str>, Vec<&'a str>)> {
    let at = args.iter().position(|a| a.starts_with('@'))?;
    let (before, after) = args.split_at(at);
    let mut after: Vec<&str> = after.to_vec();
    let first = after.first_mut()?;
    *first = first.trim_start_matches('@');
    after.retain(|a| !a.is_empty());
    Some((before.to_vec(), after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trades_and_limits() {
        let buy = parse("/buy acme 10", None).unwrap();
        assert!(matches!(buy, BotCommand::Trade { side: Side::Buy, limit: None, .. }));
        let limit = parse("/sell ACME 3 @ 12.50", None).unwrap();
        assert!(matches!(limit, BotCommand::Trade { side: Side::Sell, limit: Some(_), .. }));
        let tight = parse("/buy ACME 3 @12.5", None).unwrap();
        assert!(matches!(tight, BotCommand::Trade { limit: Some(_), .. }));
        assert!(matches!(parse("/stop ACME 3 @ 9", None), Ok(BotCommand::Stop { .. })));
    }

    #[test]
    fn respects_addressee() {
        assert!(matches!(parse("/top@StockBot", Some("stockbot")), Ok(BotCommand::Top { .. })));
        assert_eq!(parse("/top@OtherBot", Some("stockbot")), Err(ParseError::NotForUs));
        assert_eq!(parse("hello", None), Err(ParseError::NotForUs));
    }

    #[test]
    fn explains_mistakes() {
        assert!(matches!(parse("/buy ACME", None), Err(ParseError::Usage { .. })));
        assert!(matches!(parse("/buy ACME 0", None), Err(ParseError::Invalid(Rejection::BadQuantity { .. }))));
        assert!(matches!(parse("/buy AC;ME 1", None), Err(ParseError::Invalid(Rejection::BadTicker { .. }))));
        assert!(matches!(parse("/frobnicate", None), Err(ParseError::Unknown { .. })));
        assert!(matches!(
            parse("/alert ACME > 12", None),
            Ok(BotCommand::Alert { direction: AlertDirection::Above, .. })
        ));
        let huge = format!("/buy ACME {}", "9".repeat(40));
        assert!(matches!(parse(&huge, None), Err(ParseError::Invalid(_))));
    }
}
