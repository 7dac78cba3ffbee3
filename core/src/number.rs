//! Exact values of JSON numbers, read from their source text and never
//! through binary floating point or a rounding decimal parser.

use rust_decimal::Decimal;

/// Most significant digits a [`Decimal`] holds exactly.
const MAX_DIGITS: usize = 28;
/// Most decimal places a [`Decimal`] holds.
const MAX_SCALE: i64 = 28;

/// The exact value of `text`, a number in JSON syntax (RFC 8259 §6), or
/// `None` when `text` is not one or its exact value does not fit a
/// [`Decimal`]. Nothing is rounded: `1.5e3` is 1500, `1000.000…0` with any
/// number of zeros is 1000, `0e999999` is 0, while
/// `999.99999999999999999999999999999` (too many digits to hold) and `1e400`
/// are `None`.
pub fn exact_decimal(text: &str) -> Option<Decimal> {
    let (negative, int_part, frac_part, exponent) = split(text)?;

    // value = digits × 10^(exponent − len(frac_part))
    let digits = format!("{int_part}{frac_part}");
    let significant = digits.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    if trimmed.is_empty() {
        return Some(Decimal::ZERO);
    }
    let stripped = (significant.len() - trimmed.len()) as i64;
    let power = exponent
        .saturating_sub(frac_part.len() as i64)
        .saturating_add(stripped);

    let mut value = if power >= 0 {
        if trimmed.len() as i64 + power > MAX_DIGITS as i64 {
            return None;
        }
        let text = format!("{trimmed}{}", "0".repeat(power as usize));
        Decimal::from_str_exact(&text).ok()?
    } else {
        if -power > MAX_SCALE || trimmed.len() > MAX_DIGITS {
            return None;
        }
        let mantissa: i128 = trimmed.parse().ok()?;
        Decimal::try_from_i128_with_scale(mantissa, (-power) as u32).ok()?
    };
    value.set_sign_negative(negative);
    Some(value)
}

/// The sign, integer digits, fraction digits and exponent of a JSON
/// number, or `None` when `text` breaks the grammar. An exponent too large
/// for an `i64` saturates, which is far past any representable value.
fn split(text: &str) -> Option<(bool, &str, &str, i64)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((int_part, frac_part)) => (int_part, Some(frac_part)),
        None => (mantissa, None),
    };

    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || (int_part.len() > 1 && int_part.starts_with('0')) {
        return None;
    }
    if frac_part.is_some_and(|f| !all_digits(f)) {
        return None;
    }
    let exponent = match exponent {
        None => 0,
        Some(exp) => {
            let (sign, digits) = match exp.as_bytes().first() {
                Some(b'-') => (-1, &exp[1..]),
                Some(b'+') => (1, &exp[1..]),
                _ => (1, exp),
            };
            if !all_digits(digits) {
                return None;
            }
            digits
                .parse::<i64>()
                .map_or(sign * (i64::MAX / 2), |e| sign * e)
        }
    };
    Some((negative, int_part, frac_part.unwrap_or(""), exponent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn exact_values_in_any_form() {
        assert_eq!(exact_decimal("1.5e3"), Some(dec("1500")));
        assert_eq!(exact_decimal("12.0"), Some(dec("12")));
        assert_eq!(exact_decimal("0.6e1"), Some(dec("6")));
        assert_eq!(exact_decimal("190.14"), Some(dec("190.14")));
        assert_eq!(exact_decimal("-0.5E-2"), Some(dec("-0.005")));
        assert_eq!(exact_decimal("0e999999"), Some(Decimal::ZERO));
        assert_eq!(
            exact_decimal("0e99999999999999999999999"),
            Some(Decimal::ZERO)
        );
        let long_zeros = format!("1000.{}", "0".repeat(40));
        assert_eq!(exact_decimal(&long_zeros), Some(dec("1000")));
        assert_eq!(exact_decimal("100000e-2"), Some(dec("1000")));
    }

    #[test]
    fn nothing_is_rounded() {
        assert_eq!(exact_decimal("999.99999999999999999999999999999e0"), None);
        assert_eq!(exact_decimal("1000.00000000000000000000000000001e0"), None);
        assert_eq!(exact_decimal("1.00000000000000000000000000001e0"), None);
        assert_eq!(exact_decimal("1e400"), None);
        assert_eq!(exact_decimal("1e-400"), None);
        assert_eq!(exact_decimal("1e99999999999999999999"), None);
    }

    #[test]
    fn only_json_number_syntax() {
        for bad in [
            "", "-", "+1", "01", "1.", ".5", "1e", "1e+", "0x10", " 1", "1_000", "NaN",
        ] {
            assert_eq!(exact_decimal(bad), None, "{bad:?}");
        }
    }
}
