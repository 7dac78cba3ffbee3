//! The Brazilian taxpayer number (CPF) and its check digits.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A valid CPF, held as its 11 bare digits.
///
/// Deliberately not `Display`: a CPF is personal data and must not end up in
/// a log line by accident. Use [`Cpf::digits`] where it is really needed.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cpf(String);

/// Why a text is not a valid CPF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CpfError {
    /// Neither 11 bare digits nor the `000.000.000-00` mask.
    #[error("must be 11 digits, bare or as 000.000.000-00")]
    Format,
    /// One digit repeated eleven times.
    #[error("must not be one digit repeated eleven times")]
    Repeated,
    /// A check digit does not match.
    #[error("has wrong check digits")]
    CheckDigits,
}

impl Cpf {
    /// Parses a CPF written bare (`12345678909`) or masked (`123.456.789-09`).
    pub fn parse(text: &str) -> Result<Self, CpfError> {
        let bytes = text.as_bytes();
        let digits: Vec<u8> = match bytes.len() {
            11 if bytes.iter().all(u8::is_ascii_digit) => bytes.to_vec(),
            14 => {
                let mask_ok = bytes.iter().enumerate().all(|(i, b)| match i {
                    3 | 7 => *b == b'.',
                    11 => *b == b'-',
                    _ => b.is_ascii_digit(),
                });
                if !mask_ok {
                    return Err(CpfError::Format);
                }
                bytes.iter().copied().filter(u8::is_ascii_digit).collect()
            }
            _ => return Err(CpfError::Format),
        };
        let values: Vec<u32> = digits.iter().map(|d| u32::from(d - b'0')).collect();

        if values.iter().all(|d| *d == values[0]) {
            return Err(CpfError::Repeated);
        }
        if check_digit(&values[..9]) != values[9] || check_digit(&values[..10]) != values[10] {
            return Err(CpfError::CheckDigits);
        }
        // Only ASCII digits were kept above.
        Ok(Cpf(String::from_utf8_lossy(&digits).into_owned()))
    }

    /// The valid CPF whose first nine digits are `base` (taken modulo
    /// 10^9), or `None` when that would be one digit repeated eleven times.
    /// For generating test and benchmark data.
    pub fn from_base(base: u32) -> Option<Self> {
        let mut values: Vec<u32> = format!("{:09}", base % 1_000_000_000)
            .bytes()
            .map(|b| u32::from(b - b'0'))
            .collect();
        values.push(check_digit(&values));
        values.push(check_digit(&values));
        let text: String = values.iter().map(|d| char::from(b'0' + *d as u8)).collect();
        Cpf::parse(&text).ok()
    }

    /// The 11 bare digits.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

/// The mod-11 check digit over `digits`, weighted from `len + 1` down to 2.
fn check_digit(digits: &[u32]) -> u32 {
    let weight_start = digits.len() as u32 + 1;
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| d * (weight_start - i as u32))
        .sum();
    let rest = sum % 11;
    if rest < 2 { 0 } else { 11 - rest }
}

impl fmt::Debug for Cpf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cpf(***)")
    }
}

impl TryFrom<String> for Cpf {
    type Error = CpfError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Cpf::parse(&value)
    }
}

impl From<Cpf> for String {
    fn from(value: Cpf) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_bare_and_masked() {
        assert_eq!(Cpf::parse("12345678909").unwrap().digits(), "12345678909");
        assert_eq!(
            Cpf::parse("123.456.789-09").unwrap().digits(),
            "12345678909"
        );
    }

    #[test]
    fn rejects_bad_forms() {
        assert_eq!(Cpf::parse("12345678900"), Err(CpfError::CheckDigits));
        assert_eq!(Cpf::parse("111.111.111-11"), Err(CpfError::Repeated));
        assert_eq!(Cpf::parse("1234567890"), Err(CpfError::Format));
        assert_eq!(Cpf::parse("123.456.78909"), Err(CpfError::Format));
        assert_eq!(Cpf::parse("123-456-789.09"), Err(CpfError::Format));
        assert_eq!(Cpf::parse("١٢٣٤٥٦٧٨٩٠٩"), Err(CpfError::Format));
    }

    #[test]
    fn generated_cpfs_are_valid() {
        assert_eq!(Cpf::from_base(123_456_789).unwrap().digits(), "12345678909");
        assert_eq!(Cpf::from_base(0), None);
        for base in (1..1_000_000_000).step_by(7_919_123) {
            let cpf = Cpf::from_base(base).unwrap();
            assert_eq!(Cpf::parse(cpf.digits()).unwrap(), cpf);
        }
    }

    #[test]
    fn debug_hides_digits() {
        assert_eq!(
            format!("{:?}", Cpf::parse("12345678909").unwrap()),
            "Cpf(***)"
        );
    }
}
