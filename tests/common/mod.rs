//! The end-to-end harness: the real API, worker, bureau simulator, etcd and
//! RabbitMQ, each test under its own etcd prefix and queue names.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use loan::Settings;
use loan::service::{self, Queue};
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

/// The etcd the test script started.
pub fn etcd_endpoint() -> String {
    std::env::var("LOAN_TEST_ETCD").unwrap_or_else(|_| "http://127.0.0.1:2379".into())
}

/// The RabbitMQ the machine runs.
pub fn amqp_url() -> String {
    std::env::var("LOAN_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared case file.
pub fn cases_file() -> PathBuf {
    std::env::var_os("LOAN_CASES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/cases/policy-cases.json"))
}

/// The reference policy component, built once if it is missing.
pub fn reference_policy() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let path =
                root().join("plugins/reference/target/wasm32-wasip2/release/reference_policy.wasm");
            if !path.exists() {
                let status = Command::new(env!("CARGO"))
                    .args([
                        "build",
                        "--release",
                        "--target",
                        "wasm32-wasip2",
                        "--manifest-path",
                    ])
                    .arg(root().join("plugins/reference/Cargo.toml"))
                    .status()
                    .unwrap();
                assert!(status.success(), "building the reference policy failed");
            }
            path
        })
        .clone()
}

/// Settings for one test: etcd under a fresh prefix, RabbitMQ under fresh
/// queue names, the simulator in process with `fixtures`, quick retries.
pub fn settings(fixtures: &Path) -> Settings {
    let mut settings = Settings::load(Some(&root().join("settings.ini"))).unwrap();
    let tag = Uuid::new_v4().simple().to_string();
    settings.http.address = "127.0.0.1:0".into();
    settings.store.etcd_endpoints = etcd_endpoint();
    settings.store.etcd_prefix = format!("/loan-test/{tag}/");
    settings.queue.amqp_url = loan_core::settings::Secret::new(amqp_url());
    settings.queue.name = format!("loan.test.{tag}");
    settings.queue.max_attempts = 3;
    settings.queue.retry_delay_ms = 100;
    settings.bureau.url = String::new();
    settings.bureau.fixtures = fixtures.display().to_string();
    settings.bureau.retries = 0;
    settings.bureau.timeout_ms = 1000;
    settings.policy.path = reference_policy();
    settings.policy.max_instances = 64;
    settings
}

/// A running API and, optionally, worker.
pub struct Service {
    pub base: String,
    pub settings: Settings,
    pub client: reqwest::Client,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Starts the API and, with `with_worker`, a worker.
    pub async fn start(settings: Settings, with_worker: bool) -> Service {
        let store = service::open_store(&settings).await.unwrap();
        let mut queue = Queue::open(&settings).await.unwrap();
        let publisher = queue.publisher().await.unwrap();
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        if with_worker {
            let consumer = queue.consumer(settings.queue.prefetch).await.unwrap();
            let worker = service::worker(&settings, store.clone()).await.unwrap();
            tasks.push(tokio::spawn(worker.run(consumer, wait(stopped.clone()))));
        }
        let state = service::api_state(&settings, store, publisher).unwrap();
        let (address, task) = service::serve(loan_api::router(state), "127.0.0.1:0", wait(stopped))
            .await
            .unwrap();
        tasks.push(task);
        Service {
            base: format!("http://{address}"),
            settings,
            client: reqwest::Client::new(),
            stop,
            tasks,
        }
    }

    /// Posts a raw body; returns the status and the JSON answer.
    pub async fn post(&self, body: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        let reply = self
            .client
            .post(format!("{}/loan", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        let headers = reply.headers().clone();
        let json = reply.json().await.unwrap_or(Value::Null);
        (status, json, headers)
    }

    /// Gets a loan's view.
    pub async fn get(&self, id: &str) -> (u16, Value) {
        let reply = self
            .client
            .get(format!("{}/loan/{id}", self.base))
            .send()
            .await
            .unwrap();
        (
            reply.status().as_u16(),
            reply.json().await.unwrap_or(Value::Null),
        )
    }

    /// Polls a loan until it leaves `processing`, for at most `limit`.
    pub async fn wait_final(&self, id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (status, view) = self.get(id).await;
            assert_eq!(status, 200, "GET /loan/{id}: {view}");
            if view["status"] != "processing" {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "loan {id} still processing after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops the API and worker, letting evaluations in progress finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn wait(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// How many keys live under the settings' etcd prefix.
pub async fn etcd_keys(settings: &Settings) -> i64 {
    let mut client = etcd_client::Client::connect([etcd_endpoint()], None)
        .await
        .unwrap();
    let reply = client
        .get(
            settings.store.etcd_prefix.as_str(),
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .unwrap();
    reply.count()
}

/// Deletes the test's queues.
pub async fn delete_queues(settings: &Settings) {
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let name = &settings.queue.name;
    let mut names = vec![name.clone(), format!("{name}.dead")];
    for ms in [100u64, 200, 400, 800] {
        names.push(format!("{name}.retry.{ms}"));
    }
    for queue in names {
        let _ = channel
            .queue_delete(
                queue.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
}

/// A fixture file in a temporary folder that lives as long as the value.
pub struct FixtureFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// Writes `fixtures` (CPF → answers) to a temporary file.
pub fn fixture_file(fixtures: &Value) -> FixtureFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixtures.json");
    std::fs::write(&path, fixtures.to_string()).unwrap();
    FixtureFile { _dir: dir, path }
}

/// Shared handle for tests that need one.
pub type Shared<T> = Arc<T>;
