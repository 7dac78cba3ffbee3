//! The commitment rule: the annuity instalment against the income the
//! applicant has left, both exact.

use num_bigint::BigUint;

use crate::score::Rate;

/// The share of income already committed, `numerator / 10^scale`, exactly
/// as the bureau wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commitment {
    numerator: BigUint,
    denominator: BigUint,
}

impl Commitment {
    /// Parses plain decimal notation (`0`, `0.47`, `1.000`), or `None` when
    /// the text is anything else or the value is above 1.
    pub fn parse(text: &str) -> Option<Self> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return None;
        }
        if text.ends_with('.') {
            return None;
        }
        let scale = u32::try_from(fraction.len()).ok()?;
        let numerator = BigUint::parse_bytes(format!("{whole}{fraction}").as_bytes(), 10)?;
        let denominator = BigUint::from(10u32).pow(scale);
        (numerator <= denominator).then_some(Commitment {
            numerator,
            denominator,
        })
    }

    /// Whether `installment` ≤ `income` × (1 − commitment), all in cents,
    /// compared without rounding: `installment · d ≤ income · (d − n)`.
    pub fn leaves_at_least(&self, income: i64, installment: i64) -> bool {
        let (Ok(income), Ok(installment)) = (u64::try_from(income), u64::try_from(installment))
        else {
            return false;
        };
        let free = &self.denominator - &self.numerator;
        BigUint::from(installment) * &self.denominator <= BigUint::from(income) * free
    }
}

/// The monthly instalment in cents for `amount` cents over `terms` months at
/// `rate`, `amount · i / (1 − (1 + i)^−n)` rounded half-up to the cent, or
/// `None` if it does not fit in cents.
///
/// With `i = r / 1000` the formula is the fraction
/// `amount · r · (1000 + r)^n / (1000 · ((1000 + r)^n − 1000^n))`, computed
/// in integers so that no digit is lost before the one rounding.
pub fn installment(amount: i64, rate: Rate, terms: u8) -> Option<i64> {
    let amount = BigUint::from(u64::try_from(amount).ok()?);
    let rate = BigUint::from(rate.per_mille);
    let thousand = BigUint::from(1000u32);
    let growth = (&thousand + &rate).pow(u32::from(terms));
    let base = thousand.pow(u32::from(terms));
    if growth <= base {
        return None;
    }

    let numerator = amount * rate * &growth;
    let denominator = thousand * (growth - base);
    i64::try_from(round_half_up(numerator, denominator)).ok()
}

/// `numerator / denominator` rounded to the nearest integer, halves up:
/// `floor((2·num + den) / (2·den))`.
fn round_half_up(numerator: BigUint, denominator: BigUint) -> BigUint {
    let two = BigUint::from(2u32);
    (&two * numerator + &denominator) / (two * denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_mille: u32) -> Rate {
        Rate { per_mille }
    }

    #[test]
    fn the_contract_worked_example() {
        assert_eq!(installment(250_000, rate(39), 6), Some(47_535));
        assert_eq!(installment(250_000, rate(42), 9), Some(33_930));
        assert_eq!(installment(250_000, rate(45), 12), Some(27_417));
        assert_eq!(installment(250_000, rate(69), 12), Some(31_308));
    }

    #[test]
    fn instalments_from_the_case_file() {
        assert_eq!(installment(100_000, rate(39), 6), Some(19_014));
        assert_eq!(installment(100_000, rate(64), 6), Some(20_593));
        assert_eq!(installment(400_000, rate(66), 9), Some(60_354));
        assert_eq!(installment(300_000, rate(69), 12), Some(37_570));
    }

    #[test]
    fn halves_round_up() {
        let round = |n: u32, d: u32| round_half_up(BigUint::from(n), BigUint::from(d));
        assert_eq!(round(5, 2), BigUint::from(3u32));
        assert_eq!(round(3, 2), BigUint::from(2u32));
        assert_eq!(round(5, 4), BigUint::from(1u32));
        assert_eq!(round(7, 4), BigUint::from(2u32));
        assert_eq!(round(8, 4), BigUint::from(2u32));
    }

    #[test]
    fn commitment_parses_plain_decimals_only() {
        assert!(Commitment::parse("0").is_some());
        assert!(Commitment::parse("0.47").is_some());
        assert!(Commitment::parse("1.000").is_some());
        assert!(Commitment::parse("1.001").is_none());
        assert!(Commitment::parse("-0.1").is_none());
        assert!(Commitment::parse("4.7e-1").is_none());
        assert!(Commitment::parse(".5").is_none());
        assert!(Commitment::parse("0.").is_none());
        assert!(Commitment::parse("").is_none());
    }

    #[test]
    fn available_income_is_compared_exactly() {
        let c = Commitment::parse("0.8").unwrap();
        assert!(c.leaves_at_least(150_000, 30_000));
        assert!(!c.leaves_at_least(150_000, 30_001));
        let all = Commitment::parse("1").unwrap();
        assert!(all.leaves_at_least(150_000, 0));
        assert!(!all.leaves_at_least(150_000, 1));
        let third = Commitment::parse("0.333").unwrap();
        // 1000.00 × 0.667 = 667.00 exactly.
        assert!(third.leaves_at_least(100_000, 66_700));
        assert!(!third.leaves_at_least(100_000, 66_701));
    }
}
