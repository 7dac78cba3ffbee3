//! Exact amounts of money in integer cents.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An amount of money, exact to the cent. Stored and carried as integer
/// cents; binary floating point never touches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    /// An amount from integer cents.
    pub const fn from_cents(cents: i64) -> Self {
        Money(cents)
    }

    /// The amount in integer cents.
    pub const fn cents(self) -> i64 {
        self.0
    }

    /// The amount from an exact decimal with at most two decimal places, or
    /// `None` when it has more or does not fit.
    pub fn from_decimal(value: Decimal) -> Option<Self> {
        let value = value.normalize();
        if value.scale() > 2 {
            return None;
        }
        let cents = value.checked_mul(Decimal::ONE_HUNDRED)?;
        i64::try_from(cents).ok().map(Money)
    }

    /// The amount as an exact decimal.
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }
}

impl fmt::Display for Money {
    /// Plain decimal notation with two decimal places, e.g. `2500.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn decimals_convert_exactly() {
        let m = Money::from_decimal(Decimal::from_str("190.14").unwrap()).unwrap();
        assert_eq!(m.cents(), 19014);
        assert_eq!(m.to_string(), "190.14");
        assert_eq!(Money::from_cents(250000).to_string(), "2500.00");
        assert_eq!(Money::from_cents(-5).to_string(), "-0.05");
    }

    #[test]
    fn more_than_two_places_is_rejected_unless_trailing_zeros() {
        assert!(Money::from_decimal(Decimal::from_str("1000.001").unwrap()).is_none());
        assert_eq!(
            Money::from_decimal(Decimal::from_str("1000.100").unwrap()),
            Some(Money::from_cents(100010))
        );
    }
}
