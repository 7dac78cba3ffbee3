//! Fixtures shared by the integration tests: loans, outcomes, the addresses
//! of the real services, and deadlines for asynchronous work.

#![allow(dead_code, missing_docs)]

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::date;
use loan_core::{
    Application, BureauAnswers, DecisionRecord, FailureRecord, LoanRecord, Money, Outcome,
    PolicyRef, Verdict,
};

/// etcd for the tests: `LOAN_TEST_ETCD`, or the local one.
pub fn etcd_endpoint() -> String {
    std::env::var("LOAN_TEST_ETCD").unwrap_or_else(|_| "http://127.0.0.1:2379".into())
}

/// RabbitMQ for the tests: `LOAN_TEST_AMQP`, or the local one.
pub fn amqp_url() -> String {
    std::env::var("LOAN_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A name no other test run uses.
pub fn unique(kind: &str) -> String {
    format!("loan-test-{kind}-{}", uuid::Uuid::new_v4())
}

/// How long any asynchronous step of a test may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Awaits `future`, failing the test if it takes longer than [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {DEADLINE:?}"))
}

/// Polls `probe` until it yields a value, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A valid application.
pub fn application() -> Application {
    let body = br#"{"name": "Maria Souza", "cpf": "123.456.789-09",
        "birthdate": "1990-05-17", "amount": 2500, "terms": 12, "income": 1500}"#;
    Application::from_json(body, date(2025, 1, 1)).expect("the fixture is a valid application")
}

/// A new loan, processing.
pub fn loan() -> LoanRecord {
    LoanRecord::new(application())
}

/// An approval, told apart from others by `attempts`.
pub fn approved(attempts: u32) -> Outcome {
    Outcome::Completed(DecisionRecord {
        verdict: Verdict::Approved,
        refused_policy: None,
        reason: None,
        amount: Some(Money::from_cents(250_000)),
        terms: Some(12),
        installment: Some(Money::from_cents(27_417)),
        policy: PolicyRef {
            digest: "sha256:00".into(),
            name: "reference".into(),
            version: "1.0.0".into(),
        },
        bureau: BureauAnswers {
            score: Some(950),
            commitment: Some("0.8".into()),
        },
        evaluated_on: date(2025, 1, 1),
        attempts,
        decided_at: Timestamp::now(),
    })
}

/// A failure.
pub fn failed(reason: &str) -> Outcome {
    Outcome::Failed(FailureRecord {
        reason: reason.into(),
        policy: None,
        attempts: 5,
        failed_at: Timestamp::now(),
    })
}
