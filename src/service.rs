//! Start-up of each role: which backends the settings ask for, the bureau
//! (real or simulated), the policy engine, the worker and the API.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use loan_api::ApiState;
use loan_core::queue::memory::{self, MemoryPublisher};
use loan_core::queue::rabbitmq::RabbitQueue;
use loan_core::queue::{Consumer, Job, Publisher};
use loan_core::store::Store;
use loan_core::store::embedded::EmbeddedStore;
use loan_core::store::etcd::EtcdStore;
use loan_host::{Bureau, Evaluator, Fixtures, HttpBureau, PolicyEngine, Worker};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::info;

use crate::Settings;

/// The store the settings name: etcd when endpoints are set, else the
/// embedded database in the data folder.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let endpoints = settings.store.endpoints();
    if endpoints.is_empty() {
        let store = EmbeddedStore::open(&settings.store.data_dir)?;
        info!(path = %store.path().display(), "using the embedded store");
        Ok(Arc::new(store))
    } else {
        let store = EtcdStore::connect(&endpoints, &settings.store.etcd_prefix).await?;
        info!(?endpoints, prefix = %settings.store.etcd_prefix, "using etcd");
        Ok(Arc::new(store))
    }
}

/// The queue: RabbitMQ, or an in-process channel.
pub enum Queue {
    /// RabbitMQ: any number of publishers and consumers, across processes.
    Rabbit(RabbitQueue),
    /// In process: one consumer, in this process.
    Memory(MemoryPublisher, Option<memory::MemoryConsumer>),
}

impl Queue {
    /// The queue the settings name: RabbitMQ when `queue.amqp_url` is set.
    pub async fn open(settings: &Settings) -> anyhow::Result<Queue> {
        let url = settings.queue.amqp_url.expose();
        if url.trim().is_empty() {
            info!("using the in-process queue");
            let (publisher, consumer) = memory::channel();
            Ok(Queue::Memory(publisher, Some(consumer)))
        } else {
            let queue = RabbitQueue::connect(url, &settings.queue.name).await?;
            info!(queue = %settings.queue.name, "using RabbitMQ");
            Ok(Queue::Rabbit(queue))
        }
    }

    /// Whether jobs live only in this process.
    pub fn is_in_process(&self) -> bool {
        matches!(self, Queue::Memory(..))
    }

    /// A publisher.
    pub async fn publisher(&self) -> anyhow::Result<Arc<dyn Publisher>> {
        Ok(match self {
            Queue::Rabbit(queue) => Arc::new(queue.publisher().await?),
            Queue::Memory(publisher, _) => Arc::new(publisher.clone()),
        })
    }

    /// A consumer holding at most `prefetch` unsettled deliveries.
    pub async fn consumer(&mut self, prefetch: u16) -> anyhow::Result<Box<dyn Consumer>> {
        Ok(match self {
            Queue::Rabbit(queue) => Box::new(queue.consumer(prefetch).await?),
            Queue::Memory(_, consumer) => Box::new(
                consumer
                    .take()
                    .context("the in-process queue has a single consumer")?,
            ),
        })
    }
}

/// Queues every loan still `processing` again. Used with the in-process
/// queue, which loses its contents when the process stops; the worker acks
/// a redelivered job for a loan that is already final, so a duplicate is
/// harmless.
pub async fn requeue_processing(
    store: &dyn Store,
    publisher: &dyn Publisher,
) -> anyhow::Result<usize> {
    let ids = store.processing().await?;
    for id in &ids {
        publisher.publish(&Job::first(*id)).await?;
    }
    if !ids.is_empty() {
        info!(count = ids.len(), "queued loans left processing again");
    }
    Ok(ids.len())
}

/// The bureau: the one at `bureau.url`, or, when that is empty, the
/// simulator started in this process on a loopback port and reached over
/// HTTP like the real one.
pub async fn bureau(settings: &Settings) -> anyhow::Result<Arc<dyn Bureau>> {
    let bureau = &settings.bureau;
    if !bureau.url.trim().is_empty() {
        return Ok(Arc::new(HttpBureau::new(bureau)?));
    }
    let (address, _task) = serve_simulator(settings, "127.0.0.1:0").await?;
    info!(%address, "bureau simulator started in process");
    let url = format!("http://{address}");
    Ok(Arc::new(HttpBureau::with_url(
        &url,
        &bureau.api_key,
        bureau.timeout(),
        bureau.retries,
    )?))
}

/// Serves the bureau simulator on `address` with the fixtures the settings
/// name; returns the bound address.
pub async fn serve_simulator(
    settings: &Settings,
    address: &str,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let fixtures = match settings.bureau.fixtures_path() {
        Some(path) => Fixtures::load(&path)?,
        None => Fixtures::default(),
    };
    let router = loan_host::simulator_router(settings.bureau.api_key.clone(), fixtures);
    serve(router, address, std::future::pending()).await
}

/// The evaluator with the policy component the settings name.
pub async fn evaluator(settings: &Settings) -> anyhow::Result<Evaluator> {
    let engine = PolicyEngine::new(&settings.policy)?;
    let path = &settings.policy.path;
    if !path.exists() {
        bail!(
            "no policy component at {}: build the reference policy with \
             `cargo build --release --target wasm32-wasip2 --manifest-path plugins/reference/Cargo.toml` \
             or set policy.path (LOAN_POLICY__PATH)",
            path.display()
        );
    }
    let policy = engine
        .load(path)
        .await
        .with_context(|| format!("loading the policy {}", path.display()))?;
    info!(
        digest = policy.digest(),
        name = policy.name(),
        version = policy.version(),
        "policy activated"
    );
    Ok(Evaluator::new(engine, policy))
}

/// The API's state from the settings.
pub fn api_state(
    settings: &Settings,
    store: Arc<dyn Store>,
    publisher: Arc<dyn Publisher>,
) -> anyhow::Result<ApiState> {
    let time_zone = jiff::tz::TimeZone::get(&settings.policy.time_zone)
        .with_context(|| format!("unknown time zone {:?}", settings.policy.time_zone))?;
    Ok(ApiState {
        store,
        publisher,
        time_zone,
    })
}

/// Serves `router` on `address` until `shutdown` completes; returns the
/// bound address (useful with port 0) and the serving task.
pub async fn serve(
    router: axum::Router,
    address: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(cause = %err, "HTTP server stopped");
        }
    });
    Ok((bound, task))
}

/// A worker from the settings: the store, the bureau and the policy.
pub async fn worker(settings: &Settings, store: Arc<dyn Store>) -> anyhow::Result<Worker> {
    let bureau = bureau(settings).await?;
    let evaluator = evaluator(settings).await?;
    Ok(Worker::new(
        store,
        evaluator,
        bureau,
        settings.queue.clone(),
    ))
}
