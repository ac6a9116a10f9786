//! Identifier and quantity newtypes, parsed once at the edge ("parse, don't
//! validate"): tickers, players, orders, quantities and limit prices.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::money::{MONEY_DP, MONEY_MAX};
use super::rejection::Rejection;

/// A player. Telegram users keep their (positive) user id; local play-page
/// players get negative ids so the two namespaces never meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlayerId(pub i64);

impl PlayerId {
    /// Whether this id belongs to the local play page rather than Telegram.
    #[must_use]
    pub fn is_local(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for PlayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Index of an asset in the market's universe (dense, 0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AssetId(pub u16);

impl AssetId {
    /// The index into per-asset vectors.
    #[must_use]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A resting order's id, unique for the life of the market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrderId(pub u64);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A fill's id, unique for the life of the market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TradeId(pub u64);

/// Longest ticker symbol accepted.
pub const TICKER_LEN_MAX: usize = 8;

/// An asset's ticker symbol: 1–8 ASCII letters or digits, upper case,
/// stored inline so it is `Copy` and cheap to hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticker {
    bytes: [u8; TICKER_LEN_MAX],
    len: u8,
}

impl Ticker {
    /// Parses a ticker case-insensitively (`acme` → `ACME`).
    ///
    /// # Errors
    /// `Rejection::BadTicker` for empty, too long or non-alphanumeric input.
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        let text = text.trim();
        let bad = || Rejection::BadTicker { given: clip(text, 16) };
        if text.is_empty() || text.len() > TICKER_LEN_MAX {
            return Err(bad());
        }
        let mut bytes = [0_u8; TICKER_LEN_MAX];
        for (slot, byte) in bytes.iter_mut().zip(text.bytes()) {
            if !byte.is_ascii_alphanumeric() {
                return Err(bad());
            }
            *slot = byte.to_ascii_uppercase();
        }
        #[allow(clippy::cast_possible_truncation)]
        let len = text.len() as u8;
        Ok(Self { bytes, len })
    }

    /// The symbol as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        let len = usize::from(self.len).min(TICKER_LEN_MAX);
        self.bytes.get(..len).and_then(|bytes| std::str::from_utf8(bytes).ok()).unwrap_or("")
    }
}

impl fmt::Display for Ticker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Ticker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ticker({})", self.as_str())
    }
}

impl Serialize for Ticker {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Ticker {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|_| serde::de::Error::custom(format!("bad ticker {text:?}")))
    }
}

/// Largest quantity any single order may carry; the market's own per-order
/// and per-position limits are tighter and live in config.
pub const QTY_MAX: u64 = 1_000_000_000;

/// A whole number of shares, at least 1 and at most [`QTY_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Quantity(u64);

impl Quantity {
    /// Builds a quantity from a number.
    ///
    /// # Errors
    /// `Rejection::BadQuantity` for 0 or more than [`QTY_MAX`].
    pub fn new(shares: u64) -> Result<Self, Rejection> {
        if shares == 0 || shares > QTY_MAX {
            return Err(Rejection::BadQuantity { given: shares.to_string() });
        }
        Ok(Self(shares))
    }

    /// Parses what a player typed ("10", "1,000", "1_000").
    ///
    /// # Errors
    /// `Rejection::BadQuantity` for anything but a whole number in range.
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        let cleaned: String = text.trim().chars().filter(|c| *c != ',' && *c != '_').collect();
        let bad = || Rejection::BadQuantity { given: clip(text.trim(), 24) };
        if cleaned.is_empty() || cleaned.len() > 12 || !cleaned.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let shares: u64 = cleaned.parse().map_err(|_| bad())?;
        Self::new(shares).map_err(|_| bad())
    }

    /// The number of shares.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A limit or stop price typed by a player: positive, at most two decimals,
/// at most [`MONEY_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LimitPrice(Decimal);

impl LimitPrice {
    /// Builds a price from a decimal.
    ///
    /// # Errors
    /// `Rejection::BadPrice` for zero, negative, over-precise or huge values.
    pub fn new(price: Decimal) -> Result<Self, Rejection> {
        if price <= Decimal::ZERO || price > MONEY_MAX || price.normalize().scale() > MONEY_DP {
            return Err(Rejection::BadPrice { given: clip(&price.to_string(), 24) });
        }
        Ok(Self(price.normalize()))
    }

    /// Parses what a player typed ("12.5", "$12.50", "1,200").
    ///
    /// # Errors
    /// `Rejection::BadPrice` for anything that is not a sane price.
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        let trimmed = text.trim();
        let bad = || Rejection::BadPrice { given: clip(trimmed, 24) };
        let cleaned: String = trimmed.trim_start_matches('$').chars().filter(|c| *c != ',').collect();
        // A sane price has at most 10 integer and 2 fractional digits; checking
        // the length first keeps 30-digit input away from the decimal parser.
        let well_formed = !cleaned.is_empty()
            && cleaned.len() <= 14
            && cleaned.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && cleaned.bytes().filter(|b| *b == b'.').count() <= 1;
        if !well_formed {
            return Err(bad());
        }
        let price: Decimal = cleaned.parse().map_err(|_| bad())?;
        Self::new(price).map_err(|_| bad())
    }

    /// The price.
    #[must_use]
    pub fn get(self) -> Decimal {
        self.0
    }
}

/// Cuts player-provided text for echoing in a rejection (char-boundary safe).
fn clip(text: &str, chars_max: usize) -> String {
    text.chars().take(chars_max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn tickers_parse_case_insensitively() {
        assert_eq!(Ticker::parse("acme").map(|t| t.to_string()), Ok("ACME".to_owned()));
        assert!(Ticker::parse("").is_err());
        assert!(Ticker::parse("TOOLONGTICKER").is_err());
        assert!(Ticker::parse("A;DROP").is_err());
        assert!(Ticker::parse("ÄBC").is_err());
    }

    #[test]
    fn quantities_reject_nonsense() {
        assert_eq!(Quantity::parse("1,000").map(Quantity::get), Ok(1000));
        for bad in ["0", "-1", "1.5", "", "abc", "99999999999999999999999", "1e3", "١٢"] {
            assert!(Quantity::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn prices_reject_nonsense() {
        assert_eq!(LimitPrice::parse("$12.50").map(LimitPrice::get), Ok(dec!(12.5)));
        for bad in ["0", "-3", "1.234", "123456789012345678901234567890", "1e9", "NaN", "1..2", ""] {
            assert!(LimitPrice::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
