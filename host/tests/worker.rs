//! The worker loop against an in-memory store and queue: what is stored and
//! how each job is settled.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use loan_core::queue::{Consumer, Delivery, Job, QueueError, Settle};
use loan_core::settings::QueueSettings;
use loan_core::store::{Created, Finished, Idempotency, Store, StoreError};
use loan_core::{LoanRecord, LoanStatus, Outcome, Verdict};
use loan_host::{Bureau, BureauError, Evaluator, FixedBureau, Worker};
use rust_decimal::Decimal;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// How a job was settled.
#[derive(Debug, Clone, PartialEq)]
enum Settled {
    Ack,
    Retry(Job, Duration),
    DeadLetter(String),
    Release,
}

struct Recorder(mpsc::UnboundedSender<Settled>);

#[async_trait]
impl Settle for Recorder {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.0.send(Settled::Ack).unwrap();
        Ok(())
    }
    async fn retry(self: Box<Self>, job: Job, delay: Duration) -> Result<(), QueueError> {
        self.0.send(Settled::Retry(job, delay)).unwrap();
        Ok(())
    }
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        self.0.send(Settled::DeadLetter(reason.to_owned())).unwrap();
        Ok(())
    }
    async fn release(self: Box<Self>) -> Result<(), QueueError> {
        self.0.send(Settled::Release).unwrap();
        Ok(())
    }
}

struct ChannelConsumer(mpsc::UnboundedReceiver<Delivery>);

#[async_trait]
impl Consumer for ChannelConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        self.0.recv().await.map(Ok)
    }
}

#[derive(Default)]
struct MemoryStore {
    loans: Mutex<HashMap<Uuid, LoanRecord>>,
    down: AtomicBool,
}

impl MemoryStore {
    fn insert(&self, loan: LoanRecord) -> Uuid {
        let id = loan.id;
        self.loans.lock().unwrap().insert(id, loan);
        id
    }

    fn loan(&self, id: Uuid) -> LoanRecord {
        self.loans.lock().unwrap()[&id].clone()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("the test store is down".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(
        &self,
        loan: &LoanRecord,
        _idempotency: Option<&Idempotency>,
    ) -> Result<Created, StoreError> {
        self.check()?;
        self.insert(loan.clone());
        Ok(Created::New)
    }

    async fn get(&self, id: Uuid) -> Result<Option<LoanRecord>, StoreError> {
        self.check()?;
        Ok(self.loans.lock().unwrap().get(&id).cloned())
    }

    async fn finish(&self, id: Uuid, outcome: Outcome) -> Result<Finished, StoreError> {
        self.check()?;
        let mut loans = self.loans.lock().unwrap();
        let Some(loan) = loans.get(&id).cloned() else {
            return Ok(Finished::NotFound);
        };
        if loan.status.is_final() {
            return Ok(Finished::AlreadyFinal(loan));
        }
        let finished = loan.finished(outcome);
        loans.insert(id, finished.clone());
        Ok(Finished::Written(finished))
    }

    async fn discard(&self, id: Uuid, _key: Option<&str>) -> Result<(), StoreError> {
        self.loans.lock().unwrap().remove(&id);
        Ok(())
    }

    async fn processing(&self) -> Result<Vec<Uuid>, StoreError> {
        let loans = self.loans.lock().unwrap();
        Ok(loans
            .values()
            .filter(|l| !l.status.is_final())
            .map(|l| l.id)
            .collect())
    }
}

fn queue_settings() -> QueueSettings {
    QueueSettings {
        amqp_url: Default::default(),
        name: "test".into(),
        prefetch: 4,
        max_attempts: 3,
        retry_delay_ms: 1000,
    }
}

/// A running worker and the ends of its queue.
struct Harness {
    store: Arc<MemoryStore>,
    deliveries: mpsc::UnboundedSender<Delivery>,
    stop: Option<oneshot::Sender<()>>,
    running: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(policy: &std::path::Path, bureau: Arc<dyn Bureau>) -> Self {
        let (evaluator, _): (Evaluator, _) = support::evaluator(&support::settings(), policy).await;
        let store = Arc::new(MemoryStore::default());
        let (deliveries, receiver) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let worker = Worker::new(store.clone(), evaluator, bureau, queue_settings());
        let running = tokio::spawn(worker.run(Box::new(ChannelConsumer(receiver)), async {
            let _ = stopped.await;
        }));
        Harness {
            store,
            deliveries,
            stop: Some(stop),
            running,
        }
    }

    /// Delivers `job` and waits (up to a deadline) for how it is settled.
    async fn deliver(&self, job: Result<Job, String>) -> Settled {
        let (settled, mut receiver) = mpsc::unbounded_channel();
        let delivery = Delivery::new(job, false, Box::new(Recorder(settled)));
        self.deliveries.send(delivery).unwrap();
        tokio::time::timeout(Duration::from_secs(30), receiver.recv())
            .await
            .expect("the job was not settled in time")
            .unwrap()
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.running)
            .await
            .expect("the worker did not stop in time")
            .unwrap();
    }
}

fn approving() -> Arc<dyn Bureau> {
    Arc::new(FixedBureau::new(950, Decimal::new(8, 1)))
}

fn failing() -> Arc<dyn Bureau> {
    let down = || BureauError::Unavailable("score: answered 503 (after 3 tries)".into());
    Arc::new(FixedBureau::answering(Err(down()), Err(down())))
}

fn new_loan() -> LoanRecord {
    LoanRecord::new(support::application(250_000, 6, 150_000))
}

#[tokio::test]
async fn a_decision_is_stored_then_the_job_acked() {
    let harness = Harness::start(support::reference_policy(), approving()).await;
    let id = harness.store.insert(new_loan());

    let settled = harness
        .deliver(Ok(Job {
            loan_id: id,
            attempt: 2,
        }))
        .await;

    assert_eq!(settled, Settled::Ack);
    let loan = harness.store.loan(id);
    assert_eq!(loan.status, LoanStatus::Completed);
    let decision = loan.decision.unwrap();
    assert_eq!(decision.verdict, Verdict::Approved);
    assert_eq!(decision.terms, Some(12));
    assert_eq!(decision.installment.unwrap().cents(), 27_417);
    assert_eq!(decision.attempts, 2);
    assert_eq!(decision.policy.name, "reference");
    assert!(decision.policy.digest.starts_with("sha256:"));
    assert_eq!(decision.bureau.score, Some(950));
    harness.stop().await;
}

#[tokio::test]
async fn a_bureau_failure_is_retried_then_fails_the_loan() {
    let harness = Harness::start(support::reference_policy(), failing()).await;
    let id = harness.store.insert(new_loan());

    let first = harness.deliver(Ok(Job::first(id))).await;
    assert_eq!(
        first,
        Settled::Retry(
            Job {
                loan_id: id,
                attempt: 2
            },
            Duration::from_millis(1000)
        )
    );
    let second = harness
        .deliver(Ok(Job {
            loan_id: id,
            attempt: 2,
        }))
        .await;
    assert_eq!(
        second,
        Settled::Retry(
            Job {
                loan_id: id,
                attempt: 3
            },
            Duration::from_millis(2000)
        )
    );
    assert_eq!(harness.store.loan(id).status, LoanStatus::Processing);

    let last = harness
        .deliver(Ok(Job {
            loan_id: id,
            attempt: 3,
        }))
        .await;

    assert_eq!(last, Settled::Ack);
    let loan = harness.store.loan(id);
    assert_eq!(loan.status, LoanStatus::Failed);
    let failure = loan.failure.unwrap();
    assert_eq!(failure.attempts, 3);
    assert!(failure.reason.contains("503"), "{}", failure.reason);
    assert!(
        failure.reason.contains("gave up after 3 attempts"),
        "{}",
        failure.reason
    );
    assert_eq!(failure.policy.unwrap().name, "reference");
    harness.stop().await;
}

#[tokio::test]
async fn a_permanent_failure_fails_the_loan_at_once() {
    let harness = Harness::start(support::probe_policy(), approving()).await;
    // Income 6 cents makes the probe panic.
    let id = harness
        .store
        .insert(LoanRecord::new(support::application(250_000, 6, 6)));

    let settled = harness.deliver(Ok(Job::first(id))).await;

    assert_eq!(settled, Settled::Ack);
    let loan = harness.store.loan(id);
    assert_eq!(loan.status, LoanStatus::Failed);
    let failure = loan.failure.unwrap();
    assert_eq!(failure.attempts, 1);
    assert!(
        failure.reason.starts_with("the policy crashed"),
        "{}",
        failure.reason
    );
    harness.stop().await;
}

#[tokio::test]
async fn final_missing_and_unreadable_jobs_are_settled_without_evaluating() {
    let harness = Harness::start(support::reference_policy(), failing()).await;

    // A final loan: a redelivery is acked, and the loan stays as it was
    // (evaluating it would have asked the failing bureau and retried).
    let done = harness.store.insert(new_loan());
    let failure = loan_core::FailureRecord {
        reason: "set by the test".into(),
        policy: None,
        attempts: 1,
        failed_at: jiff::Timestamp::now(),
    };
    harness
        .store
        .finish(done, Outcome::Failed(failure))
        .await
        .unwrap();
    assert_eq!(harness.deliver(Ok(Job::first(done))).await, Settled::Ack);
    assert_eq!(
        harness.store.loan(done).failure.unwrap().reason,
        "set by the test"
    );

    let missing = Uuid::new_v4();
    let settled = harness.deliver(Ok(Job::first(missing))).await;
    assert!(
        matches!(&settled, Settled::DeadLetter(r) if r.contains("does not exist")),
        "{settled:?}"
    );

    let settled = harness.deliver(Err("not json".into())).await;
    assert!(
        matches!(&settled, Settled::DeadLetter(r) if r.contains("not json")),
        "{settled:?}"
    );
    harness.stop().await;
}

#[tokio::test]
async fn a_store_failure_releases_the_job() {
    let harness = Harness::start(support::reference_policy(), approving()).await;
    let id = harness.store.insert(new_loan());
    harness.store.down.store(true, Ordering::SeqCst);

    assert_eq!(harness.deliver(Ok(Job::first(id))).await, Settled::Release);

    harness.store.down.store(false, Ordering::SeqCst);
    assert_eq!(harness.deliver(Ok(Job::first(id))).await, Settled::Ack);
    assert_eq!(harness.store.loan(id).status, LoanStatus::Completed);
    harness.stop().await;
}

#[tokio::test]
async fn the_worker_stops_when_the_queue_closes() {
    let harness = Harness::start(support::reference_policy(), approving()).await;
    let Harness {
        deliveries,
        running,
        stop,
        ..
    } = harness;

    drop(deliveries);

    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the worker did not stop in time")
        .unwrap();
    drop(stop);
}
