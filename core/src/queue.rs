//! How loans reach the worker: the [`Publisher`] and [`Consumer`]
//! interfaces and their backends, RabbitMQ for production and an in-process
//! queue for the default mode.

pub mod memory;
pub mod rabbitmq;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A failure of the queue itself.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker could not be reached, or did not confirm a message.
    #[error("the evaluation queue is unavailable: {0}")]
    Unavailable(String),
}

/// One evaluation to run: which loan, and which attempt this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The loan to evaluate.
    pub loan_id: Uuid,
    /// 1 for the first evaluation, incremented on every retry.
    pub attempt: u32,
}

impl Job {
    /// The first evaluation of a loan.
    pub fn first(loan_id: Uuid) -> Self {
        Job {
            loan_id,
            attempt: 1,
        }
    }
}

/// Sends jobs to the workers.
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Queues a job durably; returns once the broker has confirmed it.
    async fn publish(&self, job: &Job) -> Result<(), QueueError>;
}

/// Receives jobs. Each delivery must be settled exactly once through its
/// [`Delivery`] methods; an unsettled delivery is redelivered when the
/// consumer goes away.
#[async_trait]
pub trait Consumer: Send + 'static {
    /// The next delivery, or `None` once the queue is closed.
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>>;
}

/// How a backend settles one delivery.
#[async_trait]
pub trait Settle: Send + Sync + 'static {
    /// Done with it: remove it from the queue.
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    /// Queue `job` again after `delay`, then remove this delivery.
    async fn retry(self: Box<Self>, job: Job, delay: Duration) -> Result<(), QueueError>;
    /// Move it to the dead-letter queue with `reason`; it can never succeed.
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError>;
    /// Give it back to the queue untouched, for another worker or later.
    async fn release(self: Box<Self>) -> Result<(), QueueError>;
}

/// A received job and the means to settle it.
pub struct Delivery {
    /// The job, or why the message could not be read as one.
    pub job: Result<Job, String>,
    /// Whether the broker delivered it before (a worker died holding it).
    pub redelivered: bool,
    settle: Box<dyn Settle>,
}

impl Delivery {
    /// A delivery from a backend.
    pub fn new(job: Result<Job, String>, redelivered: bool, settle: Box<dyn Settle>) -> Self {
        Delivery {
            job,
            redelivered,
            settle,
        }
    }

    /// See [`Settle::ack`].
    pub async fn ack(self) -> Result<(), QueueError> {
        self.settle.ack().await
    }

    /// See [`Settle::retry`].
    pub async fn retry(self, job: Job, delay: Duration) -> Result<(), QueueError> {
        self.settle.retry(job, delay).await
    }

    /// See [`Settle::dead_letter`].
    pub async fn dead_letter(self, reason: &str) -> Result<(), QueueError> {
        self.settle.dead_letter(reason).await
    }

    /// See [`Settle::release`].
    pub async fn release(self) -> Result<(), QueueError> {
        self.settle.release().await
    }
}
