//! The credit bureau: the [`Bureau`] interface, the range checks every
//! answer goes through, and fixed answers for the case runner and
//! benchmarks. The HTTP client and the simulator live in submodules.

pub mod http;
pub mod simulator;

use async_trait::async_trait;
use loan_core::Cpf;
use rust_decimal::Decimal;

/// The highest score the bureau gives.
pub const SCORE_MAX: u16 = 1000;

/// Why a bureau question could not be answered. Never a refusal: the
/// evaluation is retried later. Messages never hold the CPF or the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BureauError {
    /// The bureau could not be reached, timed out or answered with an error.
    #[error("the credit bureau is unavailable: {0}")]
    Unavailable(String),
    /// The bureau answered with something other than a value in range.
    #[error("the credit bureau gave an invalid answer: {0}")]
    InvalidAnswer(String),
}

/// Answers questions about one applicant. Implementations need not check
/// ranges: the host checks every answer before a policy sees it.
#[async_trait]
pub trait Bureau: Send + Sync + 'static {
    /// The applicant's credit score, 0 to 1000.
    async fn score(&self, cpf: &Cpf) -> Result<u16, BureauError>;

    /// The share of the applicant's income already committed, 0 to 1.
    async fn commitment(&self, cpf: &Cpf) -> Result<Decimal, BureauError>;
}

/// `score` if it is within 0 to 1000.
pub(crate) fn check_score(score: u16) -> Result<u16, BureauError> {
    if score <= SCORE_MAX {
        Ok(score)
    } else {
        Err(BureauError::InvalidAnswer(format!(
            "score {score} is outside 0 to {SCORE_MAX}"
        )))
    }
}

/// `commitment`, normalised, if it is within 0 to 1.
pub(crate) fn check_commitment(commitment: Decimal) -> Result<Decimal, BureauError> {
    if commitment >= Decimal::ZERO && commitment <= Decimal::ONE {
        Ok(commitment.normalize())
    } else {
        Err(BureauError::InvalidAnswer(format!(
            "commitment {commitment} is outside 0 to 1"
        )))
    }
}

/// The exact value of a JSON number given as its source text, or `None`
/// when the text is not a number or the value does not fit a decimal. The
/// text is never read through a binary float.
pub(crate) fn exact_number(raw: &str) -> Option<Decimal> {
    loan_core::number::exact_decimal(raw.trim())
}

/// A score from the JSON text of a bureau answer: a number whose exact
/// value is an integer from 0 to 1000 (`800` and `800.0` alike).
pub(crate) fn parse_score(raw: &str) -> Result<u16, BureauError> {
    let invalid = || {
        BureauError::InvalidAnswer(format!(
            "score {raw} is not an integer from 0 to {SCORE_MAX}"
        ))
    };
    let value = exact_number(raw).ok_or_else(invalid)?.normalize();
    if value.scale() != 0 {
        return Err(invalid());
    }
    let score = u16::try_from(value).map_err(|_| invalid())?;
    check_score(score).map_err(|_| invalid())
}

/// A commitment from the JSON text of a bureau answer: a number from 0 to 1.
pub(crate) fn parse_commitment(raw: &str) -> Result<Decimal, BureauError> {
    let value = exact_number(raw).ok_or_else(|| {
        BureauError::InvalidAnswer(format!("commitment {raw} is not a number from 0 to 1"))
    })?;
    check_commitment(value)
}

/// A bureau with the same answers for everyone: for the case runner, whose
/// cases give the answers, and for benchmarks, which must not measure the
/// network.
#[derive(Debug, Clone)]
pub struct FixedBureau {
    score: Result<u16, BureauError>,
    commitment: Result<Decimal, BureauError>,
}

impl FixedBureau {
    /// A bureau answering `score` and `commitment`.
    pub fn new(score: u16, commitment: Decimal) -> Self {
        FixedBureau::answering(Ok(score), Ok(commitment))
    }

    /// A bureau giving these answers, failures included.
    pub fn answering(
        score: Result<u16, BureauError>,
        commitment: Result<Decimal, BureauError>,
    ) -> Self {
        FixedBureau { score, commitment }
    }
}

#[async_trait]
impl Bureau for FixedBureau {
    async fn score(&self, _cpf: &Cpf) -> Result<u16, BureauError> {
        self.score.clone()
    }

    async fn commitment(&self, _cpf: &Cpf) -> Result<Decimal, BureauError> {
        self.commitment.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn scores_are_exact_integers_in_range() {
        assert_eq!(parse_score("0"), Ok(0));
        assert_eq!(parse_score("1000"), Ok(1000));
        assert_eq!(parse_score("800.0"), Ok(800));
        assert_eq!(parse_score("8e2"), Ok(800));
        for bad in [
            "1001", "-1", "800.5", "\"800\"", "null", "true", "1e400", "65536",
        ] {
            assert!(
                matches!(parse_score(bad), Err(BureauError::InvalidAnswer(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn commitments_are_exact_and_in_range() {
        assert_eq!(parse_commitment("0.47"), Ok(dec("0.47")));
        assert_eq!(parse_commitment("0.0"), Ok(Decimal::ZERO));
        assert_eq!(parse_commitment("1"), Ok(Decimal::ONE));
        assert_eq!(parse_commitment("4.7e-1"), Ok(dec("0.47")));
        assert_eq!(
            parse_commitment("0.1000000000000000055511151231257827").map(|d| d.to_string()),
            Err(BureauError::InvalidAnswer(
                "commitment 0.1000000000000000055511151231257827 is not a number from 0 to 1"
                    .into()
            ))
        );
        for bad in ["1.0000001", "-0.01", "\"0.5\"", "{}", "2"] {
            assert!(
                matches!(parse_commitment(bad), Err(BureauError::InvalidAnswer(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn normalised_commitments_print_plainly() {
        assert_eq!(check_commitment(dec("0.470")).unwrap().to_string(), "0.47");
        assert_eq!(check_commitment(dec("1.00")).unwrap().to_string(), "1");
        assert_eq!(check_commitment(dec("0.0")).unwrap().to_string(), "0");
        assert!(check_score(1001).is_err());
    }
}
