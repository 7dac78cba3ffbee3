//! The RabbitMQ queue against the broker at `LOAN_TEST_AMQP`. Every test
//! uses queues of its own and deletes them when it ends.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use loan_core::queue::rabbitmq::{DEATH_REASON_HEADER, RabbitConsumer, RabbitQueue};
use loan_core::queue::{Consumer, Delivery, Job, Publisher};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

use common::{amqp_url, eventually, unique, within};

/// A queue of the test's own, with a side channel to look into it. Its
/// queues are deleted when it is dropped.
struct Fixture {
    queue: RabbitQueue,
    name: String,
    side: Channel,
    _side_connection: Connection,
    /// Every queue to delete at the end.
    cleanup: Vec<String>,
}

impl Fixture {
    async fn new() -> Self {
        Self::through(&amqp_url()).await
    }

    async fn through(url: &str) -> Self {
        let name = unique("queue");
        let queue = within("connecting to RabbitMQ", RabbitQueue::connect(url, &name))
            .await
            .expect("RabbitMQ is running at LOAN_TEST_AMQP");
        let side_connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("a side connection");
        let side = side_connection.create_channel().await.unwrap();
        let cleanup = vec![name.clone(), format!("{name}.dead")];
        Fixture {
            queue,
            name,
            side,
            _side_connection: side_connection,
            cleanup,
        }
    }

    async fn consumer(&self) -> RabbitConsumer {
        within("subscribing", self.queue.consumer(10))
            .await
            .unwrap()
    }

    /// Ready messages and consumers of `queue`.
    async fn counts(&self, queue: &str) -> (u32, u32) {
        let declared = self
            .side
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        (declared.message_count(), declared.consumer_count())
    }

    async fn publish_raw(&self, body: &[u8]) {
        self.side
            .basic_publish(
                "".into(),
                self.name.as_str().into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.cleanup);
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime for the clean-up");
            runtime.block_on(async {
                let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
                    .await
                    .expect("RabbitMQ for the clean-up");
                let channel = connection.create_channel().await.unwrap();
                for queue in queues {
                    let _ = channel
                        .queue_delete(queue.into(), QueueDeleteOptions::default())
                        .await;
                }
                let _ = connection.close(200, "OK".into()).await;
            });
        });
        let _ = cleanup.join();
    }
}

async fn next(consumer: &mut RabbitConsumer) -> Delivery {
    within("a delivery", consumer.next())
        .await
        .expect("the queue is open")
        .expect("a delivery")
}

#[tokio::test]
async fn publish_consume_ack() {
    let fixture = Fixture::new().await;
    let publisher = fixture.queue.publisher().await.unwrap();
    let mut consumer = fixture.consumer().await;

    let job = Job::first(Uuid::new_v4());
    publisher.publish(&job).await.unwrap();
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.job, Ok(job));
    assert!(!delivery.redelivered);
    delivery.ack().await.unwrap();

    // Once the consumer is gone, nothing was left unacked to requeue.
    drop(consumer);
    let counts = eventually("the consumer leaving", || async {
        let counts = fixture.counts(&fixture.name).await;
        (counts.1 == 0).then_some(counts)
    })
    .await;
    assert_eq!(counts, (0, 0));
}

#[tokio::test]
async fn messages_are_persistent_json() {
    let fixture = Fixture::new().await;
    let job = Job::first(Uuid::new_v4());
    fixture
        .queue
        .publisher()
        .await
        .unwrap()
        .publish(&job)
        .await
        .unwrap();

    let message = fixture
        .side
        .basic_get(
            fixture.name.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the published job");
    let properties = &message.delivery.properties;
    assert_eq!(*properties.delivery_mode(), Some(2));
    assert_eq!(
        properties.content_type().as_ref().map(|t| t.as_str()),
        Some("application/json")
    );
    let body: Job = serde_json::from_slice(&message.delivery.data).unwrap();
    assert_eq!(body, job);
}

#[tokio::test]
async fn retry_comes_back_after_the_delay_with_the_new_attempt() {
    let mut fixture = Fixture::new().await;
    let delay = Duration::from_millis(400);
    fixture.cleanup.push(fixture.queue.retry_queue(delay));
    let publisher = fixture.queue.publisher().await.unwrap();
    let mut consumer = fixture.consumer().await;

    let job = Job::first(Uuid::new_v4());
    publisher.publish(&job).await.unwrap();
    let retry = Job { attempt: 2, ..job };
    let started = Instant::now();
    next(&mut consumer).await.retry(retry, delay).await.unwrap();

    let again = next(&mut consumer).await;
    assert!(
        started.elapsed() >= delay - Duration::from_millis(50),
        "came back after {:?}",
        started.elapsed()
    );
    assert_eq!(again.job, Ok(retry));
    assert!(!again.redelivered);
    again.ack().await.unwrap();

    // The retry queue is reused, not declared again with other arguments.
    publisher.publish(&job).await.unwrap();
    let third = Job { attempt: 3, ..job };
    next(&mut consumer).await.retry(third, delay).await.unwrap();
    assert_eq!(next(&mut consumer).await.job, Ok(third));
}

#[tokio::test]
async fn dead_letter_lands_in_the_dead_queue_with_its_reason() {
    let fixture = Fixture::new().await;
    let publisher = fixture.queue.publisher().await.unwrap();
    let mut consumer = fixture.consumer().await;

    let job = Job::first(Uuid::new_v4());
    publisher.publish(&job).await.unwrap();
    next(&mut consumer)
        .await
        .dead_letter("the policy cannot read this loan")
        .await
        .unwrap();

    let dead = fixture.queue.dead_letter_queue().to_owned();
    let message = eventually("the dead letter", || async {
        fixture
            .side
            .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
    })
    .await;
    let body: Job = serde_json::from_slice(&message.delivery.data).unwrap();
    assert_eq!(body, job);
    let headers = message.delivery.properties.headers().clone().unwrap();
    assert_eq!(
        headers.inner().get(DEATH_REASON_HEADER),
        Some(&AMQPValue::LongString(
            "the policy cannot read this loan".into()
        ))
    );
    assert_eq!(*message.delivery.properties.delivery_mode(), Some(2));
    assert_eq!(fixture.counts(&fixture.name).await.0, 0);
}

#[tokio::test]
async fn a_body_that_is_not_a_job_is_delivered_as_an_error() {
    let fixture = Fixture::new().await;
    let mut consumer = fixture.consumer().await;

    fixture.publish_raw(b"not a job").await;
    let delivery = next(&mut consumer).await;
    let reason = delivery.job.clone().unwrap_err();
    assert!(reason.contains("not a job"), "{reason}");
    delivery.dead_letter(&reason).await.unwrap();

    let dead = fixture.queue.dead_letter_queue().to_owned();
    let message = eventually("the dead letter", || async {
        fixture
            .side
            .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
    })
    .await;
    assert_eq!(message.delivery.data, b"not a job");
}

#[tokio::test]
async fn an_unacked_delivery_is_redelivered_when_the_consumer_is_dropped() {
    let fixture = Fixture::new().await;
    let publisher = fixture.queue.publisher().await.unwrap();
    let mut first = fixture.consumer().await;

    let job = Job::first(Uuid::new_v4());
    publisher.publish(&job).await.unwrap();
    let held = next(&mut first).await;
    assert_eq!(held.job, Ok(job));
    drop(first);

    let mut second = fixture.consumer().await;
    let again = next(&mut second).await;
    assert_eq!(again.job, Ok(job));
    assert!(again.redelivered);
    again.ack().await.unwrap();

    // Its channel is gone: settling the first delivery now fails, and says so.
    let err = held.ack().await.unwrap_err();
    assert!(err.to_string().contains("acknowledge"), "{err}");
}

#[tokio::test]
async fn release_and_drop_give_the_job_back() {
    let fixture = Fixture::new().await;
    let publisher = fixture.queue.publisher().await.unwrap();
    let mut consumer = fixture.consumer().await;

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
    dropped.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_publishes_are_confirmed_quickly() {
    const JOBS: usize = 3000;
    let fixture = Fixture::new().await;
    let publisher = fixture.queue.publisher().await.unwrap();

    let started = Instant::now();
    within(
        "publishing",
        futures::stream::iter(0..JOBS)
            .map(|_| {
                let publisher = publisher.clone();
                async move { publisher.publish(&Job::first(Uuid::new_v4())).await }
            })
            .buffer_unordered(256)
            .for_each(|published| async move { published.unwrap() }),
    )
    .await;
    let rate = JOBS as f64 / started.elapsed().as_secs_f64();
    eprintln!("{JOBS} confirmed publishes at {rate:.0}/s");
    assert!(rate > 1000.0, "only {rate:.0} publishes/s");

    let ready = eventually("every job queued", || async {
        let (ready, _) = fixture.counts(&fixture.name).await;
        (ready as usize == JOBS).then_some(ready)
    })
    .await;
    assert_eq!(ready as usize, JOBS);
}

#[tokio::test]
async fn publishing_to_a_deleted_queue_is_an_error() {
    let fixture = Fixture::new().await;
    let publisher = fixture.queue.publisher().await.unwrap();
    fixture
        .side
        .queue_delete(fixture.name.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();

    let err = publisher
        .publish(&Job::first(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

/// A TCP relay to the broker whose connections the test can cut, as a
/// broker restart or a network failure would.
struct Relay {
    port: u16,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let links = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let links = Arc::clone(&links);
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let link = tokio::spawn(async move {
                        if let Ok(mut broker) = TcpStream::connect("127.0.0.1:5672").await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Relay {
            port,
            links,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Closes every connection through the relay; new ones still get through.
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Log lines written while it is alive, on this thread.
struct Logs {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Logs {
    fn capture() -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let lines = Arc::clone(&lines);
            move || LogWriter(Arc::clone(&lines))
        };
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(writer)
            .finish();
        Logs {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap()).into_owned()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// On the test's thread, so that the log capture sees every task.
#[tokio::test(flavor = "current_thread")]
async fn publisher_and_consumer_survive_a_dropped_connection() {
    let logs = Logs::capture();
    let relay = Relay::start().await;
    let fixture = Fixture::through(&relay.url()).await;
    let publisher = fixture.queue.publisher().await.unwrap();
    let mut consumer = fixture.consumer().await;

    let before = Job::first(Uuid::new_v4());
    publisher.publish(&before).await.unwrap();
    next(&mut consumer).await.ack().await.unwrap();

    relay.cut();

    // The consumer reconnects by itself while waiting for the next job. The
    // cut may have beaten the first ack to the broker, which then delivers
    // that job again.
    let waiting = tokio::spawn(async move {
        loop {
            let delivery = next(&mut consumer).await;
            let job = delivery.job.clone();
            let _ = delivery.ack().await;
            if job != Ok(before) {
                return job;
            }
        }
    });

    // The publisher reconnects on a publish; one made while the connection
    // is still closing may fail.
    let after = Job::first(Uuid::new_v4());
    eventually("a publish after the cut", || async {
        publisher.publish(&after).await.ok()
    })
    .await;

    assert_eq!(within("the consumer", waiting).await.unwrap(), Ok(after));

    let logs = logs.text();
    let lost = logs
        .find("connection lost")
        .unwrap_or_else(|| panic!("{logs}"));
    let regained = logs
        .find("connection regained")
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(lost < regained, "{logs}");
    assert!(logs.contains(&fixture.name), "the queue is named: {logs}");
    assert!(!logs.contains("guest:guest"), "no credentials: {logs}");
}
