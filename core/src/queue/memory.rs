//! The in-process queue of the single-process default mode: an unbounded
//! channel from the API to the worker in the same process.
//!
//! It keeps nothing across restarts: a job queued, retrying or being
//! evaluated when the process stops is gone. That is why the default mode
//! queues every `processing` loan from the store again at start-up; the
//! store, not the queue, is what makes a `202` a promise.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender, WeakUnboundedSender};
use tracing::{debug, warn};

use super::{Consumer, Delivery, Job, Publisher, QueueError, Settle};

/// A job in the channel, and whether it was handed out before.
#[derive(Debug, Clone, Copy)]
struct Envelope {
    job: Job,
    redelivered: bool,
}

/// A new in-process queue: its publisher (clone it for every sender) and
/// its one consumer. The consumer sees the end of the queue once every
/// publisher is dropped. Nothing queued survives the process.
pub fn channel() -> (MemoryPublisher, MemoryConsumer) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let weak = sender.downgrade();
    (
        MemoryPublisher { sender },
        MemoryConsumer { receiver, weak },
    )
}

/// The sending side of [`channel`].
#[derive(Debug, Clone)]
pub struct MemoryPublisher {
    sender: UnboundedSender<Envelope>,
}

#[async_trait]
impl Publisher for MemoryPublisher {
    /// Queues `job` at once; it fails only when the consumer is gone.
    async fn publish(&self, job: &Job) -> Result<(), QueueError> {
        self.sender
            .send(Envelope {
                job: *job,
                redelivered: false,
            })
            .map_err(|_| closed(job))
    }
}

/// The receiving side of [`channel`].
#[derive(Debug)]
pub struct MemoryConsumer {
    receiver: UnboundedReceiver<Envelope>,
    /// For retries and releases. Weak, so that the queue closes once every
    /// publisher is gone.
    weak: WeakUnboundedSender<Envelope>,
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        let envelope = self.receiver.recv().await?;
        let settle = MemorySettle {
            envelope: Some(envelope),
            sender: self.weak.clone(),
        };
        Some(Ok(Delivery::new(
            Ok(envelope.job),
            envelope.redelivered,
            Box::new(settle),
        )))
    }
}

/// Settles one in-process delivery. Dropped unsettled (a worker task that
/// panicked, or was cancelled), it puts the job back as a redelivery.
struct MemorySettle {
    /// `None` once settled.
    envelope: Option<Envelope>,
    /// Weak, so that pending retries do not keep the queue open after every
    /// publisher is gone.
    sender: WeakUnboundedSender<Envelope>,
}

impl MemorySettle {
    fn send(&self, envelope: Envelope) -> Result<(), QueueError> {
        self.sender
            .upgrade()
            .ok_or_else(|| closed(&envelope.job))?
            .send(envelope)
            .map_err(|_| closed(&envelope.job))
    }
}

#[async_trait]
impl Settle for MemorySettle {
    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        self.envelope = None;
        Ok(())
    }

    async fn retry(mut self: Box<Self>, job: Job, delay: Duration) -> Result<(), QueueError> {
        self.envelope = None;
        let sender = self.sender.clone();
        debug!(loan_id = %job.loan_id, attempt = job.attempt, delay_ms = delay.as_millis(), "retrying later");
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let envelope = Envelope {
                job,
                redelivered: false,
            };
            let sent = sender
                .upgrade()
                .is_some_and(|sender| sender.send(envelope).is_ok());
            if !sent {
                debug!(loan_id = %job.loan_id, "queue closed before a retry was due; the retry is dropped");
            }
        });
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        if let Some(envelope) = self.envelope.take() {
            warn!(loan_id = %envelope.job.loan_id, attempt = envelope.job.attempt, reason, "job dead-lettered and dropped");
        }
        Ok(())
    }

    async fn release(mut self: Box<Self>) -> Result<(), QueueError> {
        match self.envelope.take() {
            Some(envelope) => self.send(Envelope {
                redelivered: true,
                ..envelope
            }),
            None => Ok(()),
        }
    }
}

impl Drop for MemorySettle {
    fn drop(&mut self) {
        if let Some(envelope) = self.envelope.take() {
            debug!(loan_id = %envelope.job.loan_id, "delivery dropped unsettled; queuing it again");
            let _ = self.send(Envelope {
                redelivered: true,
                ..envelope
            });
        }
    }
}

fn closed(job: &Job) -> QueueError {
    QueueError::Unavailable(format!(
        "the in-process queue is closed; job for loan {} was not queued",
        job.loan_id
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use uuid::Uuid;

    use super::*;

    async fn next(consumer: &mut MemoryConsumer) -> Delivery {
        tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("a delivery within 5 s")
            .expect("the queue is open")
            .expect("in-process deliveries never fail")
    }

    #[tokio::test]
    async fn published_jobs_arrive_in_order() {
        let (publisher, mut consumer) = channel();
        let (a, b) = (Job::first(Uuid::new_v4()), Job::first(Uuid::new_v4()));
        publisher.publish(&a).await.unwrap();
        publisher.clone().publish(&b).await.unwrap();

        let first = next(&mut consumer).await;
        assert_eq!(first.job, Ok(a));
        assert!(!first.redelivered);
        first.ack().await.unwrap();
        assert_eq!(next(&mut consumer).await.job, Ok(b));
    }

    #[tokio::test]
    async fn retry_comes_back_after_the_delay() {
        let (publisher, mut consumer) = channel();
        let job = Job::first(Uuid::new_v4());
        publisher.publish(&job).await.unwrap();

        let started = Instant::now();
        let delay = Duration::from_millis(200);
        let retry = Job { attempt: 2, ..job };
        next(&mut consumer).await.retry(retry, delay).await.unwrap();

        let again = next(&mut consumer).await;
        assert!(
            started.elapsed() >= delay,
            "came back after {:?}",
            started.elapsed()
        );
        assert_eq!(again.job, Ok(retry));
        assert!(!again.redelivered);
    }

    #[tokio::test]
    async fn release_and_drop_put_the_job_back_as_redelivered() {
        let (publisher, mut consumer) = channel();
        let job = Job::first(Uuid::new_v4());
        publisher.publish(&job).await.unwrap();

        next(&mut consumer).await.release().await.unwrap();
        let released = next(&mut consumer).await;
        assert_eq!(released.job, Ok(job));
        assert!(released.redelivered);

        drop(released);
        let dropped = next(&mut consumer).await;
        assert_eq!(dropped.job, Ok(job));
        assert!(dropped.redelivered);
        dropped.dead_letter("never succeeds").await.unwrap();
    }

    #[tokio::test]
    async fn the_queue_ends_when_every_publisher_is_gone() {
        let (publisher, mut consumer) = channel();
        let job = Job::first(Uuid::new_v4());
        publisher.publish(&job).await.unwrap();
        drop(publisher);

        let last = next(&mut consumer).await;
        assert_eq!(last.job, Ok(job));
        last.ack().await.unwrap();
        assert!(consumer.next().await.is_none());
    }

    #[tokio::test]
    async fn publishing_to_a_dropped_consumer_fails() {
        let (publisher, consumer) = channel();
        drop(consumer);
        let err = publisher
            .publish(&Job::first(Uuid::new_v4()))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("in-process queue is closed"),
            "{err}"
        );
    }
}
