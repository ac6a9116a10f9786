//! Money: `Decimal` amounts and the one rounding rule every price, fee and
//! balance goes through.

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places of every cash amount and every quoted price.
pub const MONEY_DP: u32 = 2;

/// The largest cash amount or price the engine accepts (a limit on everything).
pub const MONEY_MAX: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// Which way a rounding must lean: always against the player, so rounding can
/// never be farmed for money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lean {
    /// Round toward +∞ (what a player pays: buy prices, fees).
    Up,
    /// Round toward −∞ (what a player receives: sell prices).
    Down,
}

/// The one rounding rule: cents, leaning against the player.
#[must_use]
pub fn round_money(amount: Decimal, lean: Lean) -> Decimal {
    let strategy = match lean {
        Lean::Up => RoundingStrategy::ToPositiveInfinity,
        Lean::Down => RoundingStrategy::ToNegativeInfinity,
    };
    amount.round_dp_with_strategy(MONEY_DP, strategy)
}

/// Converts a model price (`f64`, where the maths runs) into a quoted price in
/// cents, leaning against the player. Returns `None` for non-finite input or
/// prices outside `(0, MONEY_MAX]`.
#[must_use]
pub fn price_from_f64(price: f64, lean: Lean) -> Option<Decimal> {
    if !price.is_finite() || price <= 0.0 {
        return None;
    }
    let cents = match lean {
        Lean::Up => (price * 100.0).ceil(),
        Lean::Down => (price * 100.0).floor(),
    };
    // Exact integer arithmetic from here on; 1e11 cents = MONEY_MAX.
    if !(1.0..=1e11).contains(&cents) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    let cents = cents as i64;
    Some(Decimal::new(cents, MONEY_DP))
}

/// Formats money for people: thousands separators and exactly two decimals
/// (`1234.5` → `1,234.50`).
#[must_use]
pub fn format_money(amount: Decimal) -> String {
    let rounded = amount.round_dp_with_strategy(MONEY_DP, RoundingStrategy::MidpointAwayFromZero);
    let text = format!("{:.2}", rounded.abs());
    let (int_part, frac_part) = text.split_once('.').unwrap_or((text.as_str(), "00"));
    let mut grouped = String::with_capacity(int_part.len() + int_part.len() / 3 + 4);
    for (index, digit) in int_part.chars().enumerate() {
        if index > 0 && (int_part.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if rounded.is_sign_negative() && !rounded.is_zero() { "-" } else { "" };
    format!("{sign}{grouped}.{frac_part}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn rounding_leans_against_the_player() {
        assert_eq!(round_money(dec!(1.001), Lean::Up), dec!(1.01));
        assert_eq!(round_money(dec!(1.009), Lean::Down), dec!(1.00));
        assert_eq!(price_from_f64(12.341, Lean::Up), Some(dec!(12.35)));
        assert_eq!(price_from_f64(12.349, Lean::Down), Some(dec!(12.34)));
        assert_eq!(price_from_f64(f64::NAN, Lean::Up), None);
        assert_eq!(price_from_f64(-1.0, Lean::Up), None);
        assert_eq!(price_from_f64(1e12, Lean::Up), None);
    }

    #[test]
    fn formats_with_grouping() {
        assert_eq!(format_money(dec!(1234.5)), "1,234.50");
        assert_eq!(format_money(dec!(0)), "0.00");
        assert_eq!(format_money(dec!(-1000000)), "-1,000,000.00");
        assert_eq!(format_money(dec!(999.999)), "1,000.00");
    }
}
