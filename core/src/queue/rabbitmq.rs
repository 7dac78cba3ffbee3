//! RabbitMQ, the production queue: a durable evaluation queue fed with
//! confirmed, persistent messages; delayed retries through retry queues whose
//! messages expire back into it; and a dead-letter queue for jobs that can
//! never succeed.
//!
//! Queues, for an evaluation queue named `{queue}`:
//!
//! - `{queue}`: durable; the jobs.
//! - `{queue}.dead`: durable; jobs given up on, each with an
//!   [`DEATH_REASON_HEADER`] header.
//! - `{queue}.retry.{delay_ms}`: durable, declared on first use, with a
//!   message TTL of `delay_ms` and the default exchange and `{queue}` as its
//!   dead-letter route, so an expired job flows back to the workers. This
//!   needs no broker plugin.
//!
//! One [`RabbitQueue`] holds one connection, shared by the publishers and
//! consumers made from it, each on its own channel. When the connection
//! dies, the next publish opens a new one, and a consumer reconnects with
//! backoff; both log `connection lost` and `connection regained` at info.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::{Consumer, Delivery, Job, Publisher, QueueError, Settle};

/// Header of a dead-lettered message that says why it was given up on.
pub const DEATH_REASON_HEADER: &str = "x-death-reason";

/// How long to wait for the broker to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the broker to confirm a message. The API holds its
/// client's request this long at most when the broker is stuck (for
/// example blocked on a disk or memory alarm).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait of a consumer between reconnection attempts; it doubles up to
/// [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait of a consumer between reconnection attempts: how late, at
/// most, a worker notices that the broker is back.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A connection to RabbitMQ and the evaluation queue's topology, declared.
/// Make publishers and consumers from it.
///
/// Its publishers and consumers share its connection. Under a memory or
/// disk alarm the broker blocks publishing connections, which would also
/// stall consumers on the same one: a process that publishes and consumes
/// heavily should make one `RabbitQueue` for each.
pub struct RabbitQueue {
    shared: Arc<Shared>,
}

impl fmt::Debug for RabbitQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl RabbitQueue {
    /// Connects to the broker at `url` (`amqp://user:password@host:port/vhost`)
    /// and declares the durable queue `queue` and its dead-letter queue.
    /// Fails if the broker does not answer within 10 seconds. The URL holds
    /// a password: it appears in no error and no log line.
    pub async fn connect(url: &str, queue: &str) -> Result<RabbitQueue, QueueError> {
        let uri: AMQPUri = url.parse().map_err(|_| {
            QueueError::Unavailable(
                "the AMQP URL is not valid; expected amqp://user:password@host:port/vhost".into(),
            )
        })?;
        let shared = Arc::new(Shared {
            uri,
            names: Names::new(queue),
            state: tokio::sync::Mutex::new(State::default()),
            retry_queues: Mutex::new(HashSet::new()),
        });

        shared.connection().await?;
        info!(broker = %shared.address(), queue, "connected to RabbitMQ");
        Ok(RabbitQueue { shared })
    }

    /// The evaluation queue's name.
    pub fn queue(&self) -> &str {
        &self.shared.names.main
    }

    /// The dead-letter queue's name.
    pub fn dead_letter_queue(&self) -> &str {
        &self.shared.names.dead
    }

    /// The name of the retry queue for `delay`.
    pub fn retry_queue(&self, delay: Duration) -> String {
        self.shared.names.retry(delay)
    }

    /// A publisher on its own channel, in confirm mode. Cheap to clone; one
    /// publisher serves many concurrent publishes.
    pub async fn publisher(&self) -> Result<RabbitPublisher, QueueError> {
        let link = Arc::new(Link::new(Arc::clone(&self.shared)));
        link.channel().await?;
        Ok(RabbitPublisher { link })
    }

    /// A consumer of the evaluation queue that holds at most `prefetch`
    /// deliveries unsettled at once (0 lets the broker send without limit).
    pub async fn consumer(&self, prefetch: u16) -> Result<RabbitConsumer, QueueError> {
        let session = Session::open(&self.shared, prefetch).await?;
        Ok(RabbitConsumer {
            shared: Arc::clone(&self.shared),
            prefetch,
            link: Arc::new(Link::new(Arc::clone(&self.shared))),
            session: Some(session),
        })
    }
}

/// The names of the queues around one evaluation queue.
#[derive(Debug)]
struct Names {
    main: String,
    dead: String,
}

impl Names {
    fn new(queue: &str) -> Self {
        Names {
            main: queue.to_owned(),
            dead: format!("{queue}.dead"),
        }
    }

    fn retry(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.main, delay.as_millis())
    }
}

/// What the publishers and consumers of one [`RabbitQueue`] share.
struct Shared {
    /// Holds the password: never logged, never in an error.
    uri: AMQPUri,
    names: Names,
    /// The current connection. Held across reconnecting, so that one task
    /// reconnects while the others wait for its result.
    state: tokio::sync::Mutex<State>,
    /// Delays whose retry queue was declared on the current connection.
    retry_queues: Mutex<HashSet<u128>>,
}

#[derive(Default)]
struct State {
    connection: Option<Arc<Connection>>,
    /// Set when a connection was lost, until a new one is open.
    lost: bool,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitQueue")
            .field("broker", &self.address())
            .field("queue", &self.names.main)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The broker's host, port and vhost: the URL without its credentials.
    fn address(&self) -> String {
        let authority = &self.uri.authority;
        format!(
            "{}:{} (vhost {})",
            authority.host, authority.port, self.uri.vhost
        )
    }

    /// The live connection, opening a new one (and declaring the queues on
    /// it) when there is none or the last one died.
    async fn connection(&self) -> Result<Arc<Connection>, QueueError> {
        let mut state = self.state.lock().await;
        if let Some(connection) = &state.connection {
            if connection.status().connected() {
                return Ok(Arc::clone(connection));
            }
            let connection = Arc::clone(connection);
            self.mark_lost(&mut state, &connection, "the connection closed");
        }

        let connection = Arc::new(self.open().await?);
        self.retry_queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        if state.lost {
            info!(queue = %self.names.main, broker = %self.address(), "connection regained");
        }
        *state = State {
            connection: Some(Arc::clone(&connection)),
            lost: false,
        };
        Ok(connection)
    }

    /// Records that `connection` died, if it is still the current one.
    async fn lost(&self, connection: &Arc<Connection>, cause: &str) {
        let mut state = self.state.lock().await;
        self.mark_lost(&mut state, connection, cause);
    }

    fn mark_lost(&self, state: &mut State, connection: &Arc<Connection>, cause: &str) {
        let current = state
            .connection
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, connection));
        if current {
            state.connection = None;
            if !state.lost {
                state.lost = true;
                info!(queue = %self.names.main, broker = %self.address(), cause, "connection lost");
            }
        }
    }

    async fn open(&self) -> Result<Connection, QueueError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("loan ({})", self.names.main).into());
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect_uri(self.uri.clone(), properties),
        )
        .await
        .map_err(|_| {
            QueueError::Unavailable(format!(
                "RabbitMQ at {} did not answer within {} s",
                self.address(),
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|err| {
            QueueError::Unavailable(format!(
                "could not connect to RabbitMQ at {}: {err}",
                self.address()
            ))
        })?;

        let channel = connection
            .create_channel()
            .await
            .map_err(|err| failed("open a channel", &self.names.main, err))?;
        for queue in [&self.names.main, &self.names.dead] {
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions::durable(),
                    FieldTable::default(),
                )
                .await
                .map_err(|err| failed("declare the queue", queue, err))?;
        }
        // Dropping the last handle of a channel closes it.
        drop(channel);
        Ok(connection)
    }
}

/// A channel in confirm mode that reopens itself, over a new connection if
/// need be, when it is found dead.
struct Link {
    shared: Arc<Shared>,
    channel: RwLock<Option<Channel>>,
    /// Held while reopening, so that concurrent publishes open one channel.
    reopening: tokio::sync::Mutex<()>,
}

impl Link {
    fn new(shared: Arc<Shared>) -> Self {
        Link {
            shared,
            channel: RwLock::new(None),
            reopening: tokio::sync::Mutex::new(()),
        }
    }

    /// The current channel, if it is still open.
    fn current(&self) -> Option<Channel> {
        self.channel
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|channel| channel.status().connected())
            .cloned()
    }

    async fn channel(&self) -> Result<Channel, QueueError> {
        if let Some(channel) = self.current() {
            return Ok(channel);
        }
        let _reopening = self.reopening.lock().await;
        if let Some(channel) = self.current() {
            return Ok(channel);
        }

        let connection = self.shared.connection().await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|err| failed("open a channel", &self.shared.names.main, err))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|err| failed("enable confirms", &self.shared.names.main, err))?;
        *self.channel.write().unwrap_or_else(PoisonError::into_inner) = Some(channel.clone());
        Ok(channel)
    }

    /// Publishes `body` to `queue` through the default exchange and waits
    /// for the broker's confirmation. Tries twice when the channel turns out
    /// to be dead, so that the first publish after a broker restart goes
    /// through; the message may then reach the queue twice, which the
    /// worker tolerates (a final loan is never written again).
    async fn publish(
        &self,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
        what: &(dyn fmt::Display + Sync),
    ) -> Result<(), QueueError> {
        let channel = self.channel().await?;
        match publish_on(&channel, queue, body, properties.clone(), what).await {
            Err(err) if !channel.status().connected() => {
                debug!(queue, cause = %err, "publish failed on a closed channel; trying again");
                let channel = self.channel().await?;
                publish_on(&channel, queue, body, properties, what).await
            }
            result => result,
        }
    }

    /// The retry queue for `delay`, declared if this connection has not
    /// declared it yet.
    async fn retry_queue(&self, delay: Duration) -> Result<String, QueueError> {
        let names = &self.shared.names;
        let name = names.retry(delay);
        let millis = delay.as_millis();
        let declared = self
            .shared
            .retry_queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&millis);
        if declared {
            return Ok(name);
        }

        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::try_from(millis).unwrap_or(i64::MAX)),
        );
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(names.main.as_str().into()),
        );
        self.channel()
            .await?
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await
            .map_err(|err| failed("declare the retry queue", &name, err))?;
        self.shared
            .retry_queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(millis);
        debug!(queue = %name, delay_ms = millis, "declared retry queue");
        Ok(name)
    }
}

async fn publish_on(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
    what: &(dyn fmt::Display + Sync),
) -> Result<(), QueueError> {
    // Mandatory: a message for a queue that does not exist comes back
    // instead of being dropped in silence.
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let confirm = channel
        .basic_publish("".into(), queue.into(), options, body, properties)
        .await
        .map_err(|err| {
            QueueError::Unavailable(format!("could not publish {what} to {queue}: {err}"))
        })?;
    let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
        .await
        .map_err(|_| {
            QueueError::Unavailable(format!(
                "the broker did not confirm {what} on {queue} within {} s",
                CONFIRM_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|err| {
            QueueError::Unavailable(format!(
                "the broker did not confirm {what} on {queue}: {err}"
            ))
        })?;

    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(QueueError::Unavailable(format!(
            "the queue {queue} does not exist; the broker returned {what}"
        ))),
        Confirmation::Nack(_) => Err(QueueError::Unavailable(format!(
            "the broker refused {what} on {queue}"
        ))),
        Confirmation::NotRequested => Err(QueueError::Unavailable(format!(
            "{what} went to {queue} on a channel without confirms, so it may be lost"
        ))),
    }
}

/// Persistent, JSON.
fn job_properties() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
}

fn encode(job: &Job) -> Result<Vec<u8>, QueueError> {
    serde_json::to_vec(job).map_err(|err| {
        QueueError::Unavailable(format!(
            "could not encode the job for loan {}: {err}",
            job.loan_id
        ))
    })
}

/// Sends jobs to the evaluation queue. Clones share one channel.
#[derive(Clone)]
pub struct RabbitPublisher {
    link: Arc<Link>,
}

impl fmt::Debug for RabbitPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitPublisher")
            .field("queue", &self.link.shared.names.main)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Publisher for RabbitPublisher {
    async fn publish(&self, job: &Job) -> Result<(), QueueError> {
        let body = encode(job)?;
        let what = JobName(job);
        self.link
            .publish(&self.link.shared.names.main, &body, job_properties(), &what)
            .await
    }
}

/// How a job is named in errors.
struct JobName<'a>(&'a Job);

impl fmt::Display for JobName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the job for loan {} (attempt {})",
            self.0.loan_id, self.0.attempt
        )
    }
}

/// Receives jobs from the evaluation queue, reconnecting with backoff when
/// the connection drops.
pub struct RabbitConsumer {
    shared: Arc<Shared>,
    prefetch: u16,
    /// Publishes the retries and dead letters of this consumer's deliveries.
    link: Arc<Link>,
    /// `None` while reconnecting.
    session: Option<Session>,
}

impl fmt::Debug for RabbitConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitConsumer")
            .field("queue", &self.shared.names.main)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

/// One subscription: a channel and its stream of deliveries. Dropping it
/// closes the channel, and the broker requeues what it held unacked.
struct Session {
    connection: Arc<Connection>,
    channel: Channel,
    deliveries: lapin::Consumer,
}

impl Session {
    async fn open(shared: &Shared, prefetch: u16) -> Result<Session, QueueError> {
        let queue = &shared.names.main;
        let connection = shared.connection().await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|err| failed("open a channel", queue, err))?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|err| failed("set the prefetch of", queue, err))?;
        let tag = format!("loan-{}", Uuid::new_v4());
        let deliveries = channel
            .basic_consume(
                queue.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|err| failed("consume", queue, err))?;
        Ok(Session {
            connection,
            channel,
            deliveries,
        })
    }
}

impl RabbitConsumer {
    /// Opens a new session, waiting longer after each failure.
    /// Warns once when the backoff reaches its longest wait: by then the
    /// broker has been out of reach long enough for someone to look.
    async fn reconnect(&self) -> Session {
        let queue = &self.shared.names.main;
        let mut wait = BACKOFF_START;
        let mut warned = false;
        loop {
            match Session::open(&self.shared, self.prefetch).await {
                Ok(session) => return session,
                Err(err) if wait == BACKOFF_MAX && !warned => {
                    warn!(%queue, cause = %err, "still cannot consume; retrying every {} s", BACKOFF_MAX.as_secs());
                    warned = true;
                }
                Err(err) => {
                    debug!(%queue, cause = %err, retry_in_ms = wait.as_millis(), "cannot consume yet");
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(BACKOFF_MAX);
        }
    }

    /// Drops the session after its stream failed.
    async fn session_ended(&mut self, connection: &Arc<Connection>, cause: &str) {
        self.session = None;
        if connection.status().connected() {
            info!(queue = %self.shared.names.main, cause, "consumer channel closed; opening another");
        } else {
            self.shared.lost(connection, cause).await;
        }
    }

    fn delivery(&self, delivery: lapin::message::Delivery) -> Delivery {
        let lapin::message::Delivery {
            data,
            acker,
            redelivered,
            properties,
            ..
        } = delivery;
        let job = decode(&data);
        let settle = RabbitSettle {
            acker: Some(acker),
            loan_id: job.as_ref().ok().map(|job| job.loan_id),
            body: data,
            content_type: properties.content_type().clone(),
            link: Arc::clone(&self.link),
        };
        Delivery::new(job, redelivered, Box::new(settle))
    }
}

#[async_trait]
impl Consumer for RabbitConsumer {
    /// The next delivery. While the broker is unreachable this waits,
    /// reconnecting with backoff; it returns `None` only when the broker
    /// cancels the subscription (the queue was deleted). Cancel-safe.
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        loop {
            if self.session.is_none() {
                self.session = Some(self.reconnect().await);
            }
            let Some(session) = self.session.as_mut() else {
                continue;
            };

            let next = session.deliveries.next().await;
            let connection = Arc::clone(&session.connection);
            let channel_open = session.channel.status().connected();
            match next {
                Some(Ok(delivery)) => return Some(Ok(self.delivery(delivery))),
                Some(Err(err)) => self.session_ended(&connection, &err.to_string()).await,
                None if channel_open => {
                    info!(queue = %self.shared.names.main, "the broker cancelled the consumer");
                    self.session = None;
                    return None;
                }
                None => {
                    self.session_ended(&connection, "the consumer's channel closed")
                        .await;
                }
            }
        }
    }
}

/// Reads a message body as a job. The reason names the error's kind and
/// place, never the body's content.
fn decode(body: &[u8]) -> Result<Job, String> {
    serde_json::from_slice(body).map_err(|err| {
        format!(
            "the message is not a job ({:?} error at line {}, column {})",
            err.classify(),
            err.line(),
            err.column()
        )
    })
}

/// Settles one RabbitMQ delivery. Dropped unsettled, it gives the message
/// back to the queue.
struct RabbitSettle {
    /// `None` once settled.
    acker: Option<Acker>,
    loan_id: Option<Uuid>,
    body: Vec<u8>,
    content_type: Option<ShortString>,
    link: Arc<Link>,
}

impl RabbitSettle {
    fn take(&mut self) -> Result<Acker, QueueError> {
        self.acker
            .take()
            .ok_or_else(|| QueueError::Unavailable("the delivery was settled already".into()))
    }

    /// Gives the message back after a failed retry or dead letter, so that
    /// it is not lost; the original error is what the caller hears about.
    async fn give_back(&self, acker: Acker) {
        if let Err(err) = acknowledged(
            acker.nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            }),
            "release",
        )
        .await
        {
            debug!(loan_id = ?self.loan_id, cause = %err, "could not release the delivery");
        }
    }
}

#[async_trait]
impl Settle for RabbitSettle {
    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        let acker = self.take()?;
        acknowledged(acker.ack(BasicAckOptions::default()), "acknowledge").await
    }

    async fn retry(mut self: Box<Self>, job: Job, delay: Duration) -> Result<(), QueueError> {
        let acker = self.take()?;
        let published = async {
            let queue = self.link.retry_queue(delay).await?;
            self.link
                .publish(&queue, &encode(&job)?, job_properties(), &JobName(&job))
                .await
        };
        if let Err(err) = published.await {
            self.give_back(acker).await;
            return Err(err);
        }
        debug!(loan_id = %job.loan_id, attempt = job.attempt, delay_ms = delay.as_millis(), "retrying later");
        acknowledged(acker.ack(BasicAckOptions::default()), "acknowledge").await
    }

    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        let acker = self.take()?;
        let mut headers = FieldTable::default();
        headers.insert(
            DEATH_REASON_HEADER.into(),
            AMQPValue::LongString(reason.into()),
        );
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        if let Some(content_type) = self.content_type.clone() {
            properties = properties.with_content_type(content_type);
        }

        let what = match self.loan_id {
            Some(id) => format!("the dead letter for loan {id}"),
            None => "a dead letter".to_owned(),
        };
        let dead = &self.link.shared.names.dead;
        if let Err(err) = self.link.publish(dead, &self.body, properties, &what).await {
            self.give_back(acker).await;
            return Err(err);
        }
        warn!(loan_id = ?self.loan_id, reason, queue = %dead, "job dead-lettered");
        acknowledged(acker.ack(BasicAckOptions::default()), "acknowledge").await
    }

    async fn release(mut self: Box<Self>) -> Result<(), QueueError> {
        let acker = self.take()?;
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        acknowledged(acker.nack(options), "release").await
    }
}

impl Drop for RabbitSettle {
    fn drop(&mut self) {
        let Some(acker) = self.acker.take() else {
            return;
        };
        debug!(loan_id = ?self.loan_id, "delivery dropped unsettled; releasing it");
        // Without a runtime the channel is going away too, and the broker
        // requeues the message when it closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let options = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                let _ = acker.nack(options).await;
            });
        }
    }
}

/// Maps the answer of an ack or a nack.
async fn acknowledged(
    answer: impl std::future::Future<Output = lapin::Result<bool>>,
    what: &str,
) -> Result<(), QueueError> {
    match answer.await {
        Ok(true) => Ok(()),
        Ok(false) => Err(QueueError::Unavailable(format!(
            "could not {what} the delivery: its channel closed, so the broker will deliver it again"
        ))),
        Err(err) => Err(QueueError::Unavailable(format!(
            "could not {what} the delivery: {err}"
        ))),
    }
}

fn failed(operation: &str, queue: &str, err: lapin::Error) -> QueueError {
    QueueError::Unavailable(format!("could not {operation} {queue}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_derive_from_the_evaluation_queue() {
        let names = Names::new("loans");
        assert_eq!(names.dead, "loans.dead");
        assert_eq!(names.retry(Duration::from_millis(1500)), "loans.retry.1500");
    }

    #[test]
    fn a_body_that_is_not_a_job_is_refused_without_echoing_it() {
        let reason = decode(br#"{"loan_id": "secret-12345678909"}"#).unwrap_err();
        assert!(reason.starts_with("the message is not a job"), "{reason}");
        assert!(!reason.contains("12345678909"), "{reason}");

        let id = Uuid::new_v4();
        let job = decode(format!(r#"{{"loan_id":"{id}","attempt":3}}"#).as_bytes()).unwrap();
        assert_eq!(
            job,
            Job {
                loan_id: id,
                attempt: 3
            }
        );
    }

    #[tokio::test]
    async fn a_url_that_does_not_parse_is_refused_without_echoing_it() {
        let err = RabbitQueue::connect("amqp://user:hunter2@[::1", "q")
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_broker_fails_without_the_password() {
        let err = RabbitQueue::connect("amqp://user:hunter2@127.0.0.1:1/%2f", "q")
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}
