//! The sandbox: what a policy can reach (nothing but its imports), the
//! deadline, the memory limit, and how misbehaviour is classified. Driven by
//! the probe policy of `tests/fixtures/probe-policy`.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use loan_core::{Application, Cpf};
use loan_host::{
    Bureau, BureauError, Decision, Evaluation, EvaluationError, EvaluationRequest, Evaluator,
    FixedBureau,
};
use rust_decimal::Decimal;

/// Probe modes: the application's income in cents.
const SANDBOX: i64 = 1;
const SPIN: i64 = 2;
const HOG: i64 = 3;
const ASK_TWICE: i64 = 4;
const SLEEP: i64 = 5;
const PANIC: i64 = 6;
const BAD_TERMS: i64 = 7;
const CONTEXT: i64 = 8;

fn bureau() -> Arc<FixedBureau> {
    Arc::new(FixedBureau::new(950, Decimal::new(8, 1)))
}

async fn evaluate(
    evaluator: &Evaluator,
    application: &Application,
    bureau: Arc<dyn Bureau>,
) -> Result<Evaluation, EvaluationError> {
    let request = EvaluationRequest {
        loan_id: None,
        application,
        bureau,
        today: support::today(),
    };
    evaluator.evaluate(request).await
}

/// Runs a probe mode and returns the probe's report (its refusal reason).
async fn probe(evaluator: &Evaluator, amount: i64, mode: i64) -> String {
    let application = support::application(amount, 6, mode);
    match evaluate(evaluator, &application, bureau())
        .await
        .unwrap()
        .decision
    {
        Decision::Refused { policy, reason } if policy == "probe" => reason,
        other => panic!("unexpected decision {other:?}"),
    }
}

async fn probe_evaluator(deadline_ms: u64) -> Evaluator {
    let settings = loan_core::settings::PolicySettings {
        deadline_ms,
        ..support::settings()
    };
    support::evaluator(&settings, support::probe_policy())
        .await
        .0
}

#[tokio::test]
async fn a_policy_reaches_no_file_clock_network_environment_or_randomness() {
    let evaluator = probe_evaluator(5000).await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = i64::from(listener.local_addr().unwrap().port());

    let report = probe(&evaluator, port, SANDBOX).await;

    let seen: HashMap<&str, &str> = report
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    for (key, expected) in [
        ("file", "denied"),
        ("dir", "denied"),
        ("tcp", "denied"),
        ("dns", "denied"),
        ("env", "0"),
        ("args", "0"),
        // wasi-libc's default when the host gives no working directory.
        ("cwd", "\"/\""),
        ("wall", "0"),
        ("mono", "0"),
    ] {
        assert_eq!(seen.get(key), Some(&expected), "{key} in {report}");
    }
    listener.set_nonblocking(true).unwrap();
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the policy connected to the host"
    );

    // Randomness is the same in every evaluation, on every engine.
    let again = probe(&probe_evaluator(5000).await, port, SANDBOX).await;
    assert_eq!(again, report);
    assert!(seen.contains_key("random"));
}

#[tokio::test]
async fn the_context_gives_the_evaluation_date_and_zone() {
    let evaluator = probe_evaluator(1000).await;
    assert_eq!(
        probe(&evaluator, 100_000, CONTEXT).await,
        "2024-06-15 America/Sao_Paulo"
    );
}

#[tokio::test]
async fn a_policy_that_computes_forever_is_stopped_at_its_deadline() {
    let evaluator = probe_evaluator(200).await;
    let started = Instant::now();

    let error = evaluate(
        &evaluator,
        &support::application(100_000, 6, SPIN),
        bureau(),
    )
    .await
    .unwrap_err();

    assert_eq!(
        error,
        EvaluationError::DeadlineExceeded(Duration::from_millis(200))
    );
    assert!(error.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_policy_that_sleeps_is_stopped_at_its_deadline() {
    let evaluator = probe_evaluator(200).await;
    let started = Instant::now();

    let error = evaluate(
        &evaluator,
        &support::application(100_000, 6, SLEEP),
        bureau(),
    )
    .await
    .unwrap_err();

    assert_eq!(
        error,
        EvaluationError::DeadlineExceeded(Duration::from_millis(200))
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_policy_over_its_memory_limit_fails_for_good() {
    let evaluator = probe_evaluator(5000).await;

    let error = evaluate(&evaluator, &support::application(100_000, 6, HOG), bureau())
        .await
        .unwrap_err();

    assert_eq!(error, EvaluationError::MemoryLimit(64 << 20));
    assert!(!error.is_retryable());
    // The slot is back in the pool and the engine still evaluates.
    assert_eq!(
        probe(&evaluator, 100_000, CONTEXT).await,
        "2024-06-15 America/Sao_Paulo"
    );
}

#[tokio::test]
async fn traps_and_malformed_decisions_fail_for_good() {
    let evaluator = probe_evaluator(1000).await;

    let trap = evaluate(
        &evaluator,
        &support::application(100_000, 6, PANIC),
        bureau(),
    )
    .await
    .unwrap_err();
    assert!(matches!(trap, EvaluationError::Trap(_)), "{trap:?}");
    assert!(!trap.is_retryable());

    let bad = evaluate(
        &evaluator,
        &support::application(100_000, 6, BAD_TERMS),
        bureau(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&bad, EvaluationError::BadOutput(m) if m.contains("7 terms")),
        "{bad:?}"
    );
    assert!(!bad.is_retryable());

    let unknown = evaluate(&evaluator, &support::application(100_000, 6, 99), bureau())
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, EvaluationError::InvalidApplication(_)),
        "{unknown:?}"
    );
}

/// Counts the questions it is asked.
#[derive(Default)]
struct CountingBureau {
    scores: AtomicUsize,
    commitments: AtomicUsize,
}

#[async_trait]
impl Bureau for CountingBureau {
    async fn score(&self, _cpf: &Cpf) -> Result<u16, BureauError> {
        self.scores.fetch_add(1, Ordering::SeqCst);
        Ok(720)
    }

    async fn commitment(&self, _cpf: &Cpf) -> Result<Decimal, BureauError> {
        self.commitments.fetch_add(1, Ordering::SeqCst);
        Ok(Decimal::new(470, 3))
    }
}

#[tokio::test]
async fn each_bureau_question_is_asked_once_per_evaluation() {
    let evaluator = probe_evaluator(1000).await;
    let counting = Arc::new(CountingBureau::default());

    let application = support::application(100_000, 6, ASK_TWICE);
    let evaluation = evaluate(&evaluator, &application, counting.clone())
        .await
        .unwrap();

    let Decision::Refused { reason, .. } = evaluation.decision else {
        panic!("the probe refuses");
    };
    assert_eq!(
        reason,
        r#"score=Ok(720);score=Ok(720);commitment=Ok("0.47");commitment=Ok("0.47")"#
    );
    assert_eq!(counting.scores.load(Ordering::SeqCst), 1);
    assert_eq!(counting.commitments.load(Ordering::SeqCst), 1);
    assert_eq!(evaluation.bureau.score, Some(720));
    assert_eq!(evaluation.bureau.commitment.as_deref(), Some("0.47"));

    // A new evaluation asks again: nothing is shared between applicants.
    evaluate(&evaluator, &application, counting.clone())
        .await
        .unwrap();
    assert_eq!(counting.scores.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_swapped_policy_serves_new_evaluations_only() {
    let (evaluator, reference) =
        support::evaluator(&support::settings(), support::reference_policy()).await;
    let prober = evaluator
        .engine()
        .load(support::probe_policy())
        .await
        .unwrap();
    let before = evaluator.active().snapshot();

    let replaced = evaluator.active().activate(prober);

    assert!(Arc::ptr_eq(&replaced, &reference));
    assert!(Arc::ptr_eq(&before, &reference));
    assert_eq!(
        probe(&evaluator, 100_000, CONTEXT).await,
        "2024-06-15 America/Sao_Paulo"
    );
    let with_before = evaluator
        .evaluate_with(
            &before,
            EvaluationRequest {
                loan_id: None,
                application: &support::application(250_000, 6, 150_000),
                bureau: bureau(),
                today: support::today(),
            },
        )
        .await
        .unwrap();
    assert_eq!(with_before.policy.name, "reference");
}

#[tokio::test]
async fn policies_are_cached_by_digest_and_name_themselves() {
    let (evaluator, reference) =
        support::evaluator(&support::settings(), support::reference_policy()).await;
    let bytes = std::fs::read(support::reference_policy()).unwrap();

    let again = evaluator.engine().load_bytes(bytes.clone()).await.unwrap();

    assert!(Arc::ptr_eq(&again, &reference));
    assert_eq!(reference.digest(), loan_host::policy::digest(&bytes));
    assert!(reference.digest().starts_with("sha256:"));
    assert_eq!(reference.digest().len(), "sha256:".len() + 64);
    assert_eq!(reference.name(), "reference");
    assert_eq!(reference.version(), "0.1.0");

    let garbage = evaluator
        .engine()
        .load_bytes(b"not wasm".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(garbage, loan_host::PolicyError::Compile { .. }),
        "{garbage}"
    );
    let missing = evaluator
        .engine()
        .load(std::path::Path::new("/nonexistent/policy.wasm"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, loan_host::PolicyError::Read { .. }),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_evaluations_than_slots_wait_for_one() {
    let settings = loan_core::settings::PolicySettings {
        max_instances: 2,
        ..support::settings()
    };
    let (evaluator, _) = support::evaluator(&settings, support::reference_policy()).await;
    let application = Arc::new(support::application(250_000, 6, 150_000));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (evaluator, application) = (evaluator.clone(), application.clone());
        tasks.spawn(async move { evaluate(&evaluator, &application, bureau()).await });
    }

    while let Some(done) = tasks.join_next().await {
        let evaluation = done.unwrap().unwrap();
        assert!(matches!(evaluation.decision, Decision::Approved { .. }));
    }
}
