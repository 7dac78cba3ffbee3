//! What the API shows of a loan: [`LoanView`], the reply to a request
//! ([`Accepted`]) and the health answer. None of them holds personal data.

use jiff::Timestamp;
use loan_core::{LoanRecord, LoanStatus, Money, PolicyRef, Verdict};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

/// The reply to an accepted loan request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Accepted {
    /// The new loan's id; read it at `/loan/{id}`.
    pub id: Uuid,
}

/// The answer of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the API answers.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Where a loan is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted, no decision yet.
    Processing,
    /// Decided: see `result`.
    Completed,
    /// Evaluation could not finish: see `reason`.
    Failed,
}

/// The decision on a completed loan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// An offer was made: see `amount`, `terms` and `installment`.
    Approved,
    /// A policy refused: see `refused_policy` and `reason`.
    Refused,
}

/// The policy component that decided, or that was in use when the
/// evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PolicyView {
    /// `sha256:` and the hex digest of the component.
    pub digest: String,
    /// The name the policy gives itself.
    pub name: String,
    /// The version the policy gives itself.
    pub version: String,
}

impl From<&PolicyRef> for PolicyView {
    fn from(policy: &PolicyRef) -> Self {
        PolicyView {
            digest: policy.digest.clone(),
            name: policy.name.clone(),
            version: policy.version.clone(),
        }
    }
}

/// A loan as `GET /loan/{id}` shows it. The applicant's name, CPF,
/// birthdate and income are never part of it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b",
    "status": "completed",
    "result": "approved",
    "refused_policy": null,
    "amount": 2500.00,
    "terms": 12,
    "installment": 274.17,
    "reason": null,
    "policy": {"digest": "sha256:0a1b…", "name": "reference", "version": "1.0.0"},
    "created_at": "2024-06-15T12:00:00Z",
    "updated_at": "2024-06-15T12:00:01Z"
}))]
pub struct LoanView {
    /// The loan's id.
    pub id: Uuid,
    /// `processing` until a decision exists, then `completed`; `failed` when
    /// evaluation could not finish.
    pub status: Status,
    /// `approved` or `refused` once completed, else null.
    pub result: Option<Decision>,
    /// Name of the refusing policy when refused, else null.
    pub refused_policy: Option<String>,
    /// Amount granted when approved, a number with two decimals, else null.
    #[schema(value_type = Option<f64>, example = 2500.00)]
    pub amount: Option<Box<RawValue>>,
    /// Number of instalments offered when approved, else null.
    pub terms: Option<u8>,
    /// Monthly instalment when approved, a number with two decimals, else
    /// null.
    #[schema(value_type = Option<f64>, example = 274.17)]
    pub installment: Option<Box<RawValue>>,
    /// Why the loan was refused or why its evaluation failed, else null.
    pub reason: Option<String>,
    /// The policy that decided, or the one in use when evaluation failed.
    pub policy: Option<PolicyView>,
    /// When the request was accepted (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When the loan's state last changed (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<&LoanRecord> for LoanView {
    fn from(loan: &LoanRecord) -> Self {
        let mut view = LoanView {
            id: loan.id,
            status: match loan.status {
                LoanStatus::Processing => Status::Processing,
                LoanStatus::Completed => Status::Completed,
                LoanStatus::Failed => Status::Failed,
            },
            result: None,
            refused_policy: None,
            amount: None,
            terms: None,
            installment: None,
            reason: None,
            policy: None,
            created_at: loan.created_at,
            updated_at: loan.updated_at,
        };

        // The status decides which record is shown, so a stray record can
        // never contradict it.
        match (loan.status, &loan.decision, &loan.failure) {
            (LoanStatus::Completed, Some(decision), _) => {
                view.policy = Some(PolicyView::from(&decision.policy));
                match decision.verdict {
                    Verdict::Approved => {
                        view.result = Some(Decision::Approved);
                        view.amount = decision.amount.map(json_money);
                        view.terms = decision.terms;
                        view.installment = decision.installment.map(json_money);
                    }
                    Verdict::Refused => {
                        view.result = Some(Decision::Refused);
                        view.refused_policy = decision.refused_policy.clone();
                        view.reason = decision.reason.clone();
                    }
                }
            }
            (LoanStatus::Failed, _, Some(failure)) => {
                view.reason = Some(failure.reason.clone());
                view.policy = failure.policy.as_ref().map(PolicyView::from);
            }
            _ => {}
        }
        view
    }
}

/// `money` as a JSON number written exactly, e.g. `2500.00`, never through
/// a float.
fn json_money(money: Money) -> Box<RawValue> {
    // Cannot fail: `Money`'s Display is an optional minus, digits, a point
    // and two digits, which is always a JSON number.
    RawValue::from_string(money.to_string()).expect("Money displays as a JSON number")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use loan_core::{Application, BureauAnswers, DecisionRecord, FailureRecord, Outcome};

    fn loan() -> LoanRecord {
        let body = br#"{"name":"Maria Silva","cpf":"123.456.789-09","birthdate":"1990-01-01",
            "amount":2500,"terms":6,"income":1500}"#;
        LoanRecord::new(Application::from_json(body, date(2024, 6, 15)).unwrap())
    }

    fn policy() -> PolicyRef {
        PolicyRef {
            digest: "sha256:ab".into(),
            name: "reference".into(),
            version: "1.0.0".into(),
        }
    }

    fn decision(verdict: Verdict) -> DecisionRecord {
        let approved = verdict == Verdict::Approved;
        DecisionRecord {
            verdict,
            refused_policy: (!approved).then(|| "score".into()),
            reason: (!approved).then(|| "score below 600".into()),
            amount: approved.then(|| Money::from_cents(250_000)),
            terms: approved.then_some(12),
            installment: approved.then(|| Money::from_cents(27_417)),
            policy: policy(),
            bureau: BureauAnswers::default(),
            evaluated_on: date(2024, 6, 15),
            attempts: 1,
            decided_at: Timestamp::now(),
        }
    }

    fn json(loan: &LoanRecord) -> serde_json::Value {
        serde_json::to_value(LoanView::from(loan)).unwrap()
    }

    #[test]
    fn an_approved_loan_shows_the_offer_with_exact_money() {
        let loan = loan().finished(Outcome::Completed(decision(Verdict::Approved)));
        let text = serde_json::to_string(&LoanView::from(&loan)).unwrap();
        assert!(text.contains(r#""amount":2500.00,"#), "{text}");
        assert!(text.contains(r#""installment":274.17,"#), "{text}");

        let view = json(&loan);
        assert_eq!(view["status"], "completed");
        assert_eq!(view["result"], "approved");
        assert_eq!(view["refused_policy"], serde_json::Value::Null);
        assert_eq!(view["terms"], 12);
        assert_eq!(view["reason"], serde_json::Value::Null);
        assert_eq!(view["policy"]["name"], "reference");
    }

    #[test]
    fn a_refused_loan_names_the_policy_and_offers_nothing() {
        let loan = loan().finished(Outcome::Completed(decision(Verdict::Refused)));
        let view = json(&loan);
        assert_eq!(view["result"], "refused");
        assert_eq!(view["refused_policy"], "score");
        assert_eq!(view["reason"], "score below 600");
        for field in ["amount", "terms", "installment"] {
            assert_eq!(view[field], serde_json::Value::Null, "{field}");
        }
    }

    #[test]
    fn a_failed_loan_gives_its_reason() {
        let loan = loan().finished(Outcome::Failed(FailureRecord {
            reason: "the bureau stayed unavailable".into(),
            policy: None,
            attempts: 5,
            failed_at: Timestamp::now(),
        }));
        let view = json(&loan);
        assert_eq!(view["status"], "failed");
        assert_eq!(view["result"], serde_json::Value::Null);
        assert_eq!(view["reason"], "the bureau stayed unavailable");
        assert_eq!(view["policy"], serde_json::Value::Null);
    }

    #[test]
    fn the_view_has_exactly_the_documented_fields_in_contract_order() {
        let text = serde_json::to_string(&LoanView::from(&loan())).unwrap();
        let view: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = view.keys().map(String::as_str).collect();
        let mut expected = [
            "id",
            "status",
            "result",
            "refused_policy",
            "amount",
            "terms",
            "installment",
            "reason",
            "policy",
            "created_at",
            "updated_at",
        ];
        let order: Vec<usize> = expected
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(order.is_sorted(), "{text}");
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        for personal in ["Maria", "12345678909", "1990-01-01"] {
            assert!(!text.contains(personal), "{personal} in {text}");
        }
    }
}
