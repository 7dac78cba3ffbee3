//! The worker loop: take a job off the queue, evaluate its loan, store the
//! decision or failure, and only then settle the job.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use loan_core::queue::{Consumer, Delivery, Job, QueueError};
use loan_core::settings::QueueSettings;
use loan_core::store::{Finished, Store};
use loan_core::{FailureRecord, Outcome};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::bureau::Bureau;
use crate::evaluation::{EvaluationRequest, Evaluator};
use crate::policy::Policy;

/// First wait after the queue fails to deliver; doubles up to the maximum.
const QUEUE_BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between tries to receive from a failing queue.
const QUEUE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Evaluates the loans of the jobs it receives, `prefetch` at a time.
///
/// Each job ends one of these ways:
///
/// - the loan is decided, or fails for good: the outcome is stored, then the
///   job acked;
/// - the evaluation failed in a way worth retrying and attempts remain: the
///   job is queued again with the next attempt number after a delay that
///   doubles with each attempt;
/// - the loan is already final (a redelivery): acked;
/// - the loan does not exist, or the job cannot be read: dead-lettered;
/// - the store cannot be reached: released, to be delivered again.
pub struct Worker {
    store: Arc<dyn Store>,
    evaluator: Evaluator,
    bureau: Arc<dyn Bureau>,
    queue: QueueSettings,
}

impl Worker {
    /// A worker reading and writing loans in `store`, deciding them with
    /// `evaluator` and asking `bureau`, retrying as `queue` says.
    pub fn new(
        store: Arc<dyn Store>,
        evaluator: Evaluator,
        bureau: Arc<dyn Bureau>,
        queue: QueueSettings,
    ) -> Self {
        Worker {
            store,
            evaluator,
            bureau,
            queue,
        }
    }

    /// Handles deliveries from `consumer` until it closes or `shutdown`
    /// completes, then waits for the evaluations in progress to finish and
    /// settle their jobs.
    pub async fn run(self, mut consumer: Box<dyn Consumer>, shutdown: impl Future<Output = ()>) {
        let prefetch = usize::from(self.queue.prefetch.max(1));
        let worker = Arc::new(self);
        let slots = Arc::new(Semaphore::new(prefetch));
        let mut tasks = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = QUEUE_BACKOFF_FIRST;
        tracing::info!(prefetch, "worker started");

        loop {
            let slot = tokio::select! {
                () = &mut shutdown => break,
                slot = slots.clone().acquire_owned() => slot,
            };
            // The semaphore is never closed.
            let Ok(slot) = slot else { break };
            let next = tokio::select! {
                () = &mut shutdown => break,
                next = consumer.next() => next,
            };
            match next {
                None => {
                    tracing::info!("the evaluation queue closed");
                    break;
                }
                Some(Err(error)) => {
                    tracing::warn!(cause = %error, retry_in_ms = backoff.as_millis(), "cannot receive from the evaluation queue");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(QUEUE_BACKOFF_MAX);
                }
                Some(Ok(delivery)) => {
                    backoff = QUEUE_BACKOFF_FIRST;
                    let worker = worker.clone();
                    tasks.spawn(async move {
                        worker.handle(delivery).await;
                        drop(slot);
                    });
                }
            }
            while let Some(finished) = tasks.try_join_next() {
                report_panic(finished);
            }
        }

        tracing::info!(in_progress = tasks.len(), "worker stopping");
        while let Some(finished) = tasks.join_next().await {
            report_panic(finished);
        }
        tracing::info!("worker stopped");
    }

    async fn handle(&self, delivery: Delivery) {
        let job = match &delivery.job {
            Ok(job) => *job,
            Err(reason) => {
                tracing::warn!(%reason, "unreadable job; moving it to the dead-letter queue");
                let reason = format!("the job cannot be read: {reason}");
                settle("dead-letter", delivery.dead_letter(&reason).await);
                return;
            }
        };
        let policy = self.evaluator.active().snapshot();
        let span = tracing::info_span!(
            "evaluation",
            loan_id = %job.loan_id,
            attempt = job.attempt,
            policy = %policy.digest(),
        );
        self.evaluate(delivery, job, &policy).instrument(span).await;
    }

    async fn evaluate(&self, delivery: Delivery, job: Job, policy: &Policy) {
        let loan = match self.store.get(job.loan_id).await {
            Ok(Some(loan)) if loan.status.is_final() => {
                tracing::debug!(status = ?loan.status, "the loan is already final");
                settle("ack", delivery.ack().await);
                return;
            }
            Ok(Some(loan)) => loan,
            Ok(None) => {
                tracing::warn!("the loan does not exist; moving the job to the dead-letter queue");
                let reason = format!("loan {} does not exist", job.loan_id);
                settle("dead-letter", delivery.dead_letter(&reason).await);
                return;
            }
            Err(error) => {
                tracing::warn!(cause = %error, "cannot read the loan; releasing the job");
                release_after_pause(delivery).await;
                return;
            }
        };

        let request = EvaluationRequest {
            loan_id: Some(job.loan_id),
            application: &loan.application,
            bureau: self.bureau.clone(),
            today: self.evaluator.today(),
        };
        let outcome = match self.evaluator.evaluate_with(policy, request).await {
            Ok(evaluation) => {
                tracing::debug!(decision = ?evaluation.decision, "decided");
                Outcome::Completed(evaluation.into_record(job.attempt))
            }
            Err(error) if error.is_retryable() && job.attempt < self.queue.max_attempts => {
                let delay = self.queue.retry_delay(job.attempt);
                tracing::info!(cause = %error, retry_in_ms = delay.as_millis(), "evaluation failed; retrying later");
                let next = Job {
                    loan_id: job.loan_id,
                    attempt: job.attempt + 1,
                };
                settle("retry", delivery.retry(next, delay).await);
                return;
            }
            Err(error) => {
                let reason = if error.is_retryable() {
                    format!("{error} (gave up after {} attempts)", job.attempt)
                } else {
                    error.to_string()
                };
                tracing::warn!(%reason, "the loan failed");
                Outcome::Failed(FailureRecord {
                    reason,
                    policy: Some(policy.reference().clone()),
                    attempts: job.attempt,
                    failed_at: Timestamp::now(),
                })
            }
        };

        match self.store.finish(job.loan_id, outcome).await {
            Ok(Finished::Written(_)) => settle("ack", delivery.ack().await),
            Ok(Finished::AlreadyFinal(_)) => {
                tracing::debug!("another worker finished the loan first");
                settle("ack", delivery.ack().await);
            }
            Ok(Finished::NotFound) => {
                tracing::warn!("the loan vanished before its outcome was stored");
                let reason = format!("loan {} vanished during its evaluation", job.loan_id);
                settle("dead-letter", delivery.dead_letter(&reason).await);
            }
            Err(error) => {
                tracing::warn!(cause = %error, "cannot store the outcome; releasing the job");
                release_after_pause(delivery).await;
            }
        }
    }
}

/// Logs a failure to settle a job: the broker delivers it again, and the
/// worker then finds the loan final or evaluates it again.
fn settle(how: &'static str, result: Result<(), QueueError>) {
    if let Err(error) = result {
        tracing::warn!(settle = how, cause = %error, "cannot settle the job; it will be delivered again");
    }
}

fn report_panic(finished: Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished {
        tracing::error!(cause = %error, "an evaluation task panicked; its job will be delivered again");
    }
}

/// How long a job waits before it is given back when the store cannot be
/// reached. Without the pause the broker redelivers it at once and an
/// outage turns into a hot loop of deliveries and log lines; holding the
/// delivery also holds its prefetch slot, which slows consumption while the
/// store is down.
const STORE_OUTAGE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Gives `delivery` back to the queue after [`STORE_OUTAGE_PAUSE`].
async fn release_after_pause(delivery: Delivery) {
    tokio::time::sleep(STORE_OUTAGE_PAUSE).await;
    settle("release", delivery.release().await);
}
