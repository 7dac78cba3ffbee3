//! One evaluation: snapshot the active policy, instantiate it fresh, call
//! it, check what it returned, and say whether a failure is worth retrying.
//!
//! # Which failures are retried
//!
//! A policy is a pure function of the application, the date and the bureau
//! answers, so a failure is only worth retrying when one of those, or the
//! host, might behave differently next time:
//!
//! | failure | retried | why |
//! |---|---|---|
//! | a bureau question failed | yes | the bureau may be back; this wins over any other failure of the same evaluation, since the policy may have failed only because of it |
//! | deadline exceeded | yes | the host may have been overloaded; the attempt budget bounds a policy that always loops |
//! | instantiation failed | yes | host resources (the instance pool) may be free later |
//! | memory limit exceeded | no | same input, same allocations |
//! | trap | no | same input, same trap |
//! | the policy returned `invalid-application` or `internal` | no | it said so |
//! | the decision is malformed (terms not 6, 9 or 12, money not positive) | no | the policy is wrong |

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use loan_core::{Application, BureauAnswers, DecisionRecord, Money, PolicyRef, Terms, Verdict};
use uuid::Uuid;
use wasmtime::Trap;

use crate::bindings::wit;
use crate::bureau::{Bureau, BureauError};
use crate::engine::PolicyEngine;
use crate::imports::{Applicant, LogTags, wit_date};
use crate::policy::{ActivePolicy, Policy, describe};
use crate::sandbox::{DeadlineExceeded, MemoryLimitExceeded, within_deadline};

/// Longest text accepted from a policy (a refusal reason, an error), in
/// characters; longer text is cut.
const MAX_POLICY_TEXT: usize = 500;

/// What a policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An offer.
    Approved {
        /// Amount granted.
        amount: Money,
        /// Number of instalments.
        terms: Terms,
        /// Monthly instalment.
        installment: Money,
    },
    /// A refusal.
    Refused {
        /// Name of the refusing policy.
        policy: String,
        /// Its short reason.
        reason: String,
    },
}

/// A decision and what it was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The decision.
    pub decision: Decision,
    /// The bureau answers the policy asked for.
    pub bureau: BureauAnswers,
    /// The evaluation date the policy was given.
    pub evaluated_on: Date,
    /// The policy that decided.
    pub policy: PolicyRef,
}

impl Evaluation {
    /// The decision as the store records it, after `attempts` evaluations.
    pub fn into_record(self, attempts: u32) -> DecisionRecord {
        let (verdict, refused_policy, reason, amount, terms, installment) = match self.decision {
            Decision::Approved {
                amount,
                terms,
                installment,
            } => (
                Verdict::Approved,
                None,
                None,
                Some(amount),
                Some(terms.get()),
                Some(installment),
            ),
            Decision::Refused { policy, reason } => (
                Verdict::Refused,
                Some(policy),
                Some(reason),
                None,
                None,
                None,
            ),
        };
        DecisionRecord {
            verdict,
            refused_policy,
            reason,
            amount,
            terms,
            installment,
            policy: self.policy,
            bureau: self.bureau,
            evaluated_on: self.evaluated_on,
            attempts,
            decided_at: Timestamp::now(),
        }
    }
}

/// Why an evaluation reached no decision. Messages hold no personal data
/// and no secret; see the module documentation for which are retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvaluationError {
    /// A bureau question failed.
    #[error("{0}")]
    Bureau(BureauError),
    /// The policy computed past its deadline.
    #[error("the policy computed for longer than its deadline of {} ms", .0.as_millis())]
    DeadlineExceeded(Duration),
    /// The policy could not be instantiated.
    #[error("the policy could not be instantiated: {0}")]
    Instantiate(String),
    /// The policy used more memory than its limit.
    #[error("the policy used more than its memory limit of {} MiB", .0 >> 20)]
    MemoryLimit(usize),
    /// The policy trapped.
    #[error("the policy crashed: {0}")]
    Trap(String),
    /// The policy found the application invalid.
    #[error("the policy found the application invalid: {0}")]
    InvalidApplication(String),
    /// The policy reported an internal failure.
    #[error("the policy failed: {0}")]
    Policy(String),
    /// The policy returned a malformed decision.
    #[error("the policy returned a malformed decision: {0}")]
    BadOutput(String),
}

impl EvaluationError {
    /// Whether evaluating again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EvaluationError::Bureau(_)
                | EvaluationError::DeadlineExceeded(_)
                | EvaluationError::Instantiate(_)
        )
    }
}

/// What to evaluate.
#[derive(Clone)]
pub struct EvaluationRequest<'a> {
    /// The loan, for log lines; `None` outside the worker.
    pub loan_id: Option<Uuid>,
    /// The application.
    pub application: &'a Application,
    /// The bureau to ask about the applicant.
    pub bureau: Arc<dyn Bureau>,
    /// The evaluation date.
    pub today: Date,
}

/// Evaluates applications with the active policy. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Evaluator {
    engine: PolicyEngine,
    active: ActivePolicy,
}

impl Evaluator {
    /// An evaluator with `policy` active.
    pub fn new(engine: PolicyEngine, policy: Arc<Policy>) -> Self {
        Evaluator {
            engine,
            active: ActivePolicy::new(policy),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    /// The active policy, for evaluations to come.
    pub fn active(&self) -> &ActivePolicy {
        &self.active
    }

    /// Today in the configured time zone.
    pub fn today(&self) -> Date {
        self.engine.today()
    }

    /// Evaluates with the policy active now.
    pub async fn evaluate(
        &self,
        request: EvaluationRequest<'_>,
    ) -> Result<Evaluation, EvaluationError> {
        let policy = self.active.snapshot();
        self.evaluate_with(&policy, request).await
    }

    /// Evaluates with `policy`, in a fresh instance.
    pub async fn evaluate_with(
        &self,
        policy: &Policy,
        request: EvaluationRequest<'_>,
    ) -> Result<Evaluation, EvaluationError> {
        let EvaluationRequest {
            loan_id,
            application,
            bureau,
            today,
        } = request;

        let _slot = self.engine.slot().await.ok_or_else(|| {
            EvaluationError::Instantiate("the engine is shutting down".to_owned())
        })?;
        let applicant = Applicant::new(application.cpf.clone(), bureau);
        let tags = LogTags::new(loan_id, policy.digest().to_owned());
        let mut store = self.engine.store(Some(applicant), today, tags);
        let budget = store.data().budget.clone();
        let input = wit_application(application);

        let outcome = within_deadline(&budget, async {
            let instance = policy
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(Failure::Instantiate)?;
            instance
                .call_evaluate(&mut store, input)
                .await
                .map_err(Failure::Run)
        })
        .await;

        let state = store.data();
        let result = match outcome {
            Err(DeadlineExceeded { deadline }) => Err(EvaluationError::DeadlineExceeded(deadline)),
            Ok(Err(failure)) => Err(failure.classify()),
            Ok(Ok(Err(error))) => Err(policy_error(error)),
            Ok(Ok(Ok(decision))) => check(decision, application),
        };
        match (result, state.bureau_failure()) {
            (Ok(decision), _) => Ok(Evaluation {
                decision,
                bureau: state.bureau_answers(),
                evaluated_on: today,
                policy: policy.reference().clone(),
            }),
            // A failure after a failed bureau question is the bureau's.
            (Err(_), Some(bureau)) => Err(EvaluationError::Bureau(bureau)),
            (Err(error), None) => Err(error),
        }
    }
}

/// The application as the policy sees it: no name, no CPF.
fn wit_application(application: &Application) -> wit::Application {
    wit::Application {
        amount: application.amount.cents(),
        terms: application.terms.get(),
        income: application.income.cents(),
        birthdate: wit_date(application.birthdate),
    }
}

/// A failure of wasmtime while running a policy.
enum Failure {
    Instantiate(wasmtime::Error),
    Run(wasmtime::Error),
}

impl Failure {
    fn classify(self) -> EvaluationError {
        let (error, instantiating) = match self {
            Failure::Instantiate(error) => (error, true),
            Failure::Run(error) => (error, false),
        };
        if let Some(DeadlineExceeded { deadline }) = error.downcast_ref() {
            EvaluationError::DeadlineExceeded(*deadline)
        } else if let Some(MemoryLimitExceeded { limit, .. }) = error.downcast_ref() {
            EvaluationError::MemoryLimit(*limit)
        } else if let Some(trap) = error.downcast_ref::<Trap>() {
            EvaluationError::Trap(trap.to_string())
        } else if instantiating {
            EvaluationError::Instantiate(describe(&error))
        } else {
            EvaluationError::Trap(describe(&error))
        }
    }
}

fn policy_error(error: wit::EvaluationError) -> EvaluationError {
    match error {
        wit::EvaluationError::Bureau(error) => EvaluationError::Bureau(error.into()),
        wit::EvaluationError::InvalidApplication(reason) => {
            EvaluationError::InvalidApplication(cut(reason))
        }
        wit::EvaluationError::Internal(reason) => EvaluationError::Policy(cut(reason)),
    }
}

/// Checks a decision against what the service can honour.
fn check(decision: wit::Decision, application: &Application) -> Result<Decision, EvaluationError> {
    let bad = |reason: String| Err(EvaluationError::BadOutput(reason));
    match decision {
        wit::Decision::Approved(offer) => {
            let Ok(terms) = Terms::try_from(offer.terms) else {
                return bad(format!("{} terms is not one of 6, 9 or 12", offer.terms));
            };
            if offer.amount <= 0 || offer.amount > application.amount.cents() {
                return bad(format!(
                    "the amount of {} is not between 0 and the requested amount",
                    Money::from_cents(offer.amount)
                ));
            }
            if offer.installment <= 0 {
                return bad(format!(
                    "the instalment of {} is not positive",
                    Money::from_cents(offer.installment)
                ));
            }
            Ok(Decision::Approved {
                amount: Money::from_cents(offer.amount),
                terms,
                installment: Money::from_cents(offer.installment),
            })
        }
        wit::Decision::Refused(refusal) => {
            let policy = refusal.policy.trim();
            if policy.is_empty() || policy.chars().count() > 64 {
                return bad("a refusal must name its policy in 1 to 64 characters".to_owned());
            }
            Ok(Decision::Refused {
                policy: policy.to_owned(),
                reason: cut(refusal.reason),
            })
        }
    }
}

/// `text` cut to [`MAX_POLICY_TEXT`] characters.
fn cut(text: String) -> String {
    match text.char_indices().nth(MAX_POLICY_TEXT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loan_core::Cpf;

    fn application() -> Application {
        Application {
            name: "Maria".into(),
            cpf: Cpf::parse("12345678909").unwrap(),
            birthdate: Date::new(1990, 1, 1).unwrap(),
            amount: Money::from_cents(250_000),
            terms: Terms::try_from(6).unwrap(),
            income: Money::from_cents(150_000),
        }
    }

    fn offer(amount: i64, terms: u8, installment: i64) -> wit::Decision {
        wit::Decision::Approved(wit::Offer {
            amount,
            terms,
            installment,
        })
    }

    #[test]
    fn malformed_offers_are_rejected() {
        let app = application();
        assert!(check(offer(250_000, 12, 27_417), &app).is_ok());
        for bad in [
            offer(250_000, 7, 27_417),
            offer(0, 12, 27_417),
            offer(-1, 12, 27_417),
            offer(250_001, 12, 27_417),
            offer(250_000, 12, 0),
        ] {
            assert!(matches!(
                check(bad, &app),
                Err(EvaluationError::BadOutput(_))
            ));
        }
    }

    #[test]
    fn refusals_must_name_a_policy() {
        let refusal = |policy: &str| {
            wit::Decision::Refused(wit::Refusal {
                policy: policy.into(),
                reason: "x".repeat(1000),
            })
        };
        let Ok(Decision::Refused { reason, .. }) = check(refusal("age"), &application()) else {
            panic!("expected a refusal");
        };
        assert_eq!(reason.chars().count(), MAX_POLICY_TEXT + 1);
        assert!(check(refusal("  "), &application()).is_err());
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let unavailable = BureauError::Unavailable("down".into());
        assert!(EvaluationError::Bureau(unavailable).is_retryable());
        assert!(EvaluationError::DeadlineExceeded(Duration::from_secs(1)).is_retryable());
        assert!(EvaluationError::Instantiate("pool".into()).is_retryable());
        assert!(!EvaluationError::MemoryLimit(1 << 26).is_retryable());
        assert!(!EvaluationError::Trap("unreachable".into()).is_retryable());
        assert!(!EvaluationError::InvalidApplication("terms".into()).is_retryable());
        assert!(!EvaluationError::Policy("bug".into()).is_retryable());
        assert!(!EvaluationError::BadOutput("terms".into()).is_retryable());
    }

    #[test]
    fn records_carry_the_offer_or_the_refusal() {
        let evaluation = Evaluation {
            decision: Decision::Approved {
                amount: Money::from_cents(250_000),
                terms: Terms::try_from(12).unwrap(),
                installment: Money::from_cents(27_417),
            },
            bureau: BureauAnswers {
                score: Some(950),
                commitment: Some("0.8".into()),
            },
            evaluated_on: Date::new(2024, 6, 15).unwrap(),
            policy: PolicyRef {
                digest: "sha256:00".into(),
                name: "reference".into(),
                version: "0.1.0".into(),
            },
        };
        let record = evaluation.into_record(2);
        assert_eq!(record.verdict, Verdict::Approved);
        assert_eq!(record.terms, Some(12));
        assert_eq!(record.installment, Some(Money::from_cents(27_417)));
        assert_eq!(record.refused_policy, None);
        assert_eq!(record.attempts, 2);
    }
}
