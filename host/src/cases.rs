//! The case runner: every case of a case file (`shared/cases/*.json`)
//! through the API's validation and the worker's evaluation path, with the
//! case's date and bureau answers, compared with the expected outcome.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::civil::Date;
use loan_core::settings::PolicySettings;
use loan_core::{Application, Money};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::bureau::{BureauError, FixedBureau, exact_number};
use crate::engine::{EngineError, PolicyEngine};
use crate::evaluation::{Decision, EvaluationRequest, Evaluator};
use crate::policy::PolicyError;

/// Why the cases could not be run (as opposed to a case failing).
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The case file could not be read.
    #[error("cannot read the case file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The case file is not in the case format.
    #[error("the case file {path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The engine could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The policy could not be loaded.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// One case as the file writes it.
#[derive(Deserialize)]
struct Case {
    id: String,
    today: Date,
    application: Box<RawValue>,
    #[serde(default)]
    bureau: CaseBureau,
    expected: ExpectedCase,
}

#[derive(Deserialize, Default)]
struct CaseBureau {
    score: Option<Box<RawValue>>,
    commitment: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ExpectedCase {
    result: Verdict,
    #[serde(default)]
    refused_policy: Option<String>,
    #[serde(default)]
    terms: Option<u8>,
    #[serde(default)]
    amount: Option<Box<RawValue>>,
    #[serde(default)]
    installment: Option<Box<RawValue>>,
}

/// How a case ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// An offer.
    Approved,
    /// A refusal.
    Refused,
    /// No decision: the evaluation failed (a bureau answer out of range).
    Error,
    /// The API rejects the request.
    Invalid,
}

/// An outcome, expected or observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    /// How the case ended.
    pub verdict: Verdict,
    /// The refusing policy, when refused.
    pub refused_policy: Option<String>,
    /// Instalments offered, when approved.
    pub terms: Option<u8>,
    /// Amount granted, when approved.
    pub amount: Option<Money>,
    /// Instalment, when approved.
    pub installment: Option<Money>,
    /// Why, for an error or an invalid request.
    pub detail: Option<String>,
}

impl CaseOutcome {
    fn only(verdict: Verdict, detail: String) -> Self {
        CaseOutcome {
            verdict,
            refused_policy: None,
            terms: None,
            amount: None,
            installment: None,
            detail: Some(detail),
        }
    }

    /// Whether `self`, observed, matches `expected`: the verdict, and for a
    /// decision the refusing policy, terms, amount and instalment.
    fn matches(&self, expected: &CaseOutcome) -> bool {
        let decided = matches!(expected.verdict, Verdict::Approved | Verdict::Refused);
        self.verdict == expected.verdict
            && (!decided
                || (self.refused_policy == expected.refused_policy
                    && self.terms == expected.terms
                    && self.amount == expected.amount
                    && self.installment == expected.installment))
    }
}

impl fmt::Display for CaseOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |money: Option<Money>| money.map_or("-".to_owned(), |m| m.to_string());
        match self.verdict {
            Verdict::Approved => write!(
                f,
                "approved {} x {} of {}",
                self.terms.map_or("-".to_owned(), |t| t.to_string()),
                show(self.installment),
                show(self.amount)
            ),
            Verdict::Refused => write!(
                f,
                "refused by {}",
                self.refused_policy.as_deref().unwrap_or("-")
            ),
            Verdict::Error => f.write_str("error"),
            Verdict::Invalid => f.write_str("invalid"),
        }
    }
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's id.
    pub id: String,
    /// What the case file expects.
    pub expected: CaseOutcome,
    /// What happened.
    pub got: CaseOutcome,
}

impl CaseResult {
    /// Whether what happened is what was expected.
    pub fn passed(&self) -> bool {
        self.got.matches(&self.expected)
    }
}

/// The results of a case file.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// One result per case, in file order.
    pub results: Vec<CaseResult>,
}

impl CaseReport {
    /// Whether every case passed (and there was at least one).
    pub fn all_passed(&self) -> bool {
        !self.results.is_empty() && self.results.iter().all(CaseResult::passed)
    }

    /// The cases that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.results.iter().filter(|r| !r.passed())
    }
}

impl fmt::Display for CaseReport {
    /// A table of id, expected, got and PASS/FAIL, the reasons of the
    /// failures, and a closing `N passed, N failed` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id_width = self
            .results
            .iter()
            .map(|r| r.id.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let rows: Vec<(String, String)> = self
            .results
            .iter()
            .map(|r| (r.expected.to_string(), r.got.to_string()))
            .collect();
        let width = rows
            .iter()
            .flat_map(|(e, g)| [e.len(), g.len()])
            .max()
            .unwrap_or(8)
            .max(8);
        writeln!(
            f,
            "{:id_width$}  {:width$}  {:width$}  result",
            "id", "expected", "got"
        )?;
        for (result, (expected, got)) in self.results.iter().zip(&rows) {
            let mark = if result.passed() { "PASS" } else { "FAIL" };
            writeln!(
                f,
                "{:id_width$}  {expected:width$}  {got:width$}  {mark}",
                result.id
            )?;
        }
        for failure in self.failures() {
            if let Some(detail) = &failure.got.detail {
                writeln!(f, "{}: {detail}", failure.id)?;
            }
        }
        let failed = self.failures().count();
        writeln!(f, "{} passed, {failed} failed", self.results.len() - failed)
    }
}

/// Runs every case of `cases_file` against the policy component at
/// `policy`, in an engine built from `settings` (its `path` is not used).
pub async fn run_cases(
    cases_file: &Path,
    policy: &Path,
    settings: &PolicySettings,
) -> Result<CaseReport, CaseError> {
    let text = tokio::fs::read_to_string(cases_file)
        .await
        .map_err(|source| CaseError::Read {
            path: cases_file.to_owned(),
            source,
        })?;
    let malformed = |reason: String| CaseError::Malformed {
        path: cases_file.to_owned(),
        reason,
    };
    let cases: Vec<Case> = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;

    let engine = PolicyEngine::new(settings)?;
    let policy = engine.load(policy).await?;
    let evaluator = Evaluator::new(engine, policy);

    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        let expected = expected(&case.expected)
            .map_err(|reason| malformed(format!("case {}: {reason}", case.id)))?;
        let got = run_case(&evaluator, &case).await;
        results.push(CaseResult {
            id: case.id,
            expected,
            got,
        });
    }
    Ok(CaseReport { results })
}

/// Validates the case's application as the API would, then evaluates it
/// as the worker would.
async fn run_case(evaluator: &Evaluator, case: &Case) -> CaseOutcome {
    let application = match Application::from_json(case.application.get().as_bytes(), case.today) {
        Ok(application) => application,
        Err(errors) => return CaseOutcome::only(Verdict::Invalid, errors.to_string()),
    };
    let bureau = FixedBureau::answering(
        case_score(case.bureau.score.as_deref()),
        case_commitment(case.bureau.commitment.as_deref()),
    );
    let request = EvaluationRequest {
        loan_id: None,
        application: &application,
        bureau: Arc::new(bureau),
        today: case.today,
    };
    match evaluator.evaluate(request).await {
        Err(error) => CaseOutcome::only(Verdict::Error, error.to_string()),
        Ok(evaluation) => match evaluation.decision {
            Decision::Approved {
                amount,
                terms,
                installment,
            } => CaseOutcome {
                verdict: Verdict::Approved,
                refused_policy: None,
                terms: Some(terms.get()),
                amount: Some(amount),
                installment: Some(installment),
                detail: None,
            },
            Decision::Refused { policy, reason } => CaseOutcome {
                verdict: Verdict::Refused,
                refused_policy: Some(policy),
                terms: None,
                amount: None,
                installment: None,
                detail: Some(reason),
            },
        },
    }
}

/// The case's score as the bureau would give it. A value the bureau
/// interface cannot carry (negative, fractional, huge) is an invalid answer
/// at once; anything else goes through the host's own range check.
fn case_score(raw: Option<&RawValue>) -> Result<u16, BureauError> {
    let raw = raw.ok_or_else(|| BureauError::Unavailable("the case gives no score".into()))?;
    exact_number(raw.get())
        .map(|value| value.normalize())
        .filter(|value| value.scale() == 0)
        .and_then(|value| u16::try_from(value).ok())
        .ok_or_else(|| BureauError::InvalidAnswer(format!("score {} is not an integer", raw.get())))
}

/// The case's commitment as the bureau would give it.
fn case_commitment(raw: Option<&RawValue>) -> Result<Decimal, BureauError> {
    let raw = raw.ok_or_else(|| BureauError::Unavailable("the case gives no commitment".into()))?;
    exact_number(raw.get()).ok_or_else(|| {
        BureauError::InvalidAnswer(format!("commitment {} is not a number", raw.get()))
    })
}

fn expected(case: &ExpectedCase) -> Result<CaseOutcome, String> {
    let money = |raw: &Option<Box<RawValue>>| -> Result<Option<Money>, String> {
        raw.as_deref()
            .map(|raw| {
                exact_number(raw.get())
                    .and_then(Money::from_decimal)
                    .ok_or_else(|| format!("{} is not an amount of money", raw.get()))
            })
            .transpose()
    };
    Ok(CaseOutcome {
        verdict: case.result,
        refused_policy: case.refused_policy.clone(),
        terms: case.terms,
        amount: money(&case.amount)?,
        installment: money(&case.installment)?,
        detail: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn case_answers_keep_their_exact_value() {
        assert_eq!(case_score(Some(&raw("800"))), Ok(800));
        // Out of range but representable: left to the host's range check.
        assert_eq!(case_score(Some(&raw("1001"))), Ok(1001));
        assert!(matches!(
            case_score(Some(&raw("-1"))),
            Err(BureauError::InvalidAnswer(_))
        ));
        assert!(matches!(
            case_score(Some(&raw("600.5"))),
            Err(BureauError::InvalidAnswer(_))
        ));
        assert!(matches!(case_score(None), Err(BureauError::Unavailable(_))));
        assert_eq!(
            case_commitment(Some(&raw("0.1"))).unwrap().to_string(),
            "0.1"
        );
        assert_eq!(
            case_commitment(Some(&raw("1.5"))).unwrap().to_string(),
            "1.5"
        );
    }

    #[test]
    fn decisions_compare_every_field_errors_only_the_verdict() {
        let approved = CaseOutcome {
            verdict: Verdict::Approved,
            refused_policy: None,
            terms: Some(12),
            amount: Some(Money::from_cents(250_000)),
            installment: Some(Money::from_cents(27_417)),
            detail: None,
        };
        assert!(approved.matches(&approved));
        let other_installment = CaseOutcome {
            installment: Some(Money::from_cents(27_418)),
            ..approved.clone()
        };
        assert!(!other_installment.matches(&approved));
        let error = CaseOutcome::only(Verdict::Error, "bureau".into());
        let expected_error = CaseOutcome::only(Verdict::Error, String::new());
        assert!(error.matches(&expected_error));
        assert!(!error.matches(&approved));
    }

    #[test]
    fn the_report_ends_with_a_count() {
        let outcome = CaseOutcome::only(Verdict::Invalid, "amount".into());
        let report = CaseReport {
            results: vec![
                CaseResult {
                    id: "a".into(),
                    expected: outcome.clone(),
                    got: outcome.clone(),
                },
                CaseResult {
                    id: "b".into(),
                    expected: CaseOutcome::only(Verdict::Error, String::new()),
                    got: outcome,
                },
            ],
        };
        let text = report.to_string();
        assert!(!report.all_passed());
        assert!(text.contains("a   invalid   invalid   PASS"), "{text}");
        assert!(text.contains("FAIL"));
        assert!(text.ends_with("1 passed, 1 failed\n"));
    }
}
