//! The reference credit policy: age, then score, then commitment, as section
//! 3 of the loan contract defines them. The first refusal ends the
//! evaluation, and the bureau is asked only what the next rule needs.

mod age;
mod commitment;
mod score;

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy",
});

use loan::policy::bureau;
use loan::policy::context;
use loan::policy::log::{self, Level};
use loan::policy::types::{BureauError, Offer, Refusal};

use commitment::{Commitment, installment};

/// The policy as the host sees it.
struct Reference;

export!(Reference);

impl Guest for Reference {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "reference".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    fn evaluate(application: Application) -> Result<Decision, EvaluationError> {
        check(&application)?;

        let today = context::current().today;
        if age::completed_years(&application.birthdate, &today) < age::ADULT {
            return Ok(refuse("age", "the applicant is under 18"));
        }

        let score = bureau::score().map_err(EvaluationError::Bureau)?;
        if score < score::MINIMUM {
            return Ok(refuse("score", "the credit score is below 600"));
        }
        let rates = score::monthly_rates(score).ok_or_else(|| {
            EvaluationError::Bureau(BureauError::InvalidAnswer(format!(
                "score {score} is outside 0 to 1000"
            )))
        })?;

        let text = bureau::commitment().map_err(EvaluationError::Bureau)?;
        let commitment = Commitment::parse(&text).ok_or_else(|| {
            EvaluationError::Bureau(BureauError::InvalidAnswer(format!(
                "commitment {text:?} is not a decimal from 0 to 1"
            )))
        })?;

        // From the requested terms upward, never down: the first instalment
        // the applicant can afford is the offer.
        for (terms, rate) in rates.from(application.terms) {
            let installment = installment(application.amount, rate, terms)
                .ok_or_else(|| EvaluationError::Internal("the instalment overflows".into()))?;
            if commitment.leaves_at_least(application.income, installment) {
                log::log(Level::Debug, &format!("offering {terms} terms"));
                return Ok(Decision::Approved(Offer {
                    amount: application.amount,
                    terms,
                    installment,
                }));
            }
        }
        Ok(refuse(
            "commitment",
            "no instalment from the requested terms up to 12 fits the income left after commitments",
        ))
    }
}

/// The preconditions this policy relies on; the API already enforces them,
/// so a breach means the host sent something it should not have.
fn check(application: &Application) -> Result<(), EvaluationError> {
    let problem = if !score::TERMS.contains(&application.terms) {
        "terms must be 6, 9 or 12"
    } else if application.amount <= 0 {
        "amount must be positive"
    } else if application.income < 0 {
        "income must not be negative"
    } else {
        return Ok(());
    };
    Err(EvaluationError::InvalidApplication(problem.to_owned()))
}

fn refuse(policy: &str, reason: &str) -> Decision {
    log::log(Level::Debug, &format!("refused by {policy}"));
    Decision::Refused(Refusal {
        policy: policy.to_owned(),
        reason: reason.to_owned(),
    })
}
