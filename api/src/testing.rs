//! Test fixtures: the router over the embedded store and the in-process
//! queue, requests, and answers read back as JSON.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use futures::FutureExt;
use http_body_util::BodyExt;
use loan_core::LoanRecord;
use loan_core::Outcome;
use loan_core::queue::memory::{self, MemoryConsumer, MemoryPublisher};
use loan_core::queue::{Consumer, Job};
use loan_core::store::embedded::EmbeddedStore;
use loan_core::store::{Created, Finished, Idempotency, Store, StoreError};
use tempfile::TempDir;
use tokio::sync::Mutex;
use tower::ServiceExt;
use uuid::Uuid;

use crate::{ApiState, router};

/// A valid request body.
pub const GOOD_BODY: &str = r#"{"name":"Maria Silva","cpf":"123.456.789-09",
    "birthdate":"1990-01-01","amount":2500,"terms":12,"income":1500.50}"#;

/// The router over a real embedded store in a temporary folder and a real
/// in-process queue, both of which the test can look into.
pub struct Harness {
    pub store: Arc<EmbeddedStore>,
    pub publisher: Arc<MemoryPublisher>,
    consumer: Mutex<MemoryConsumer>,
    /// Every job taken off the queue so far.
    taken: Mutex<Vec<Job>>,
    _data: TempDir,
}

impl Harness {
    pub fn new() -> Self {
        let data = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(data.path()).unwrap();
        let (publisher, consumer) = memory::channel();
        Harness {
            store: Arc::new(store),
            publisher: Arc::new(publisher),
            consumer: Mutex::new(consumer),
            taken: Mutex::new(Vec::new()),
            _data: data,
        }
    }

    pub fn router(&self) -> Router {
        self.router_over(self.store.clone(), self.publisher.clone())
    }

    /// The router over the given backends, for failure cases.
    pub fn router_over(
        &self,
        store: Arc<dyn Store>,
        publisher: Arc<dyn loan_core::queue::Publisher>,
    ) -> Router {
        router(ApiState {
            store,
            publisher,
            time_zone: jiff::tz::TimeZone::UTC,
        })
    }

    /// Sends one request through a fresh router.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        self.send_to(self.router(), request).await
    }

    /// Sends one request through `router`.
    pub async fn send_to(&self, router: Router, request: Request<Body>) -> Answer {
        Answer::read(router.oneshot(request).await.unwrap()).await
    }

    /// Every job queued so far. A publish is complete before the API
    /// answers, so whatever was queued is ready without waiting.
    pub async fn queued(&self) -> Vec<Job> {
        let mut consumer = self.consumer.lock().await;
        let mut taken = self.taken.lock().await;
        while let Some(Some(delivery)) = consumer.next().now_or_never() {
            let delivery = delivery.unwrap();
            taken.push(delivery.job.clone().unwrap());
            delivery.ack().await.unwrap();
        }
        taken.clone()
    }

    /// Ids of every stored loan still processing.
    pub async fn stored(&self) -> Vec<Uuid> {
        let mut ids = self.store.processing().await.unwrap();
        ids.sort_unstable();
        ids
    }
}

/// A status, headers and body, read to the end.
pub struct Answer {
    pub status: axum::http::StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub async fn read(response: Response<Body>) -> Self {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// The problem's fields named in `errors`, after checking that the
    /// answer is a problem+json with `status`.
    pub fn problem_fields(&self, status: u16) -> Vec<String> {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(self.header("content-type"), crate::problem::PROBLEM_JSON);
        let problem = self.json();
        assert_eq!(problem["status"], status);
        for member in ["type", "title", "detail"] {
            assert!(problem[member].is_string(), "{member} in {problem}");
        }
        problem["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        assert!(e["message"].is_string(), "{e}");
                        e["field"].as_str().unwrap().to_owned()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `POST /loan` with `body` and, if given, an idempotency key.
pub fn post_loan(body: impl Into<Body>, key: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/loan");
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.body(body.into()).unwrap()
}

/// `GET path`.
pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// A store that cannot be reached: the embedded store cannot be made to
/// fail on demand.
pub struct DownStore;

#[async_trait]
impl Store for DownStore {
    async fn create(&self, _: &LoanRecord, _: Option<&Idempotency>) -> Result<Created, StoreError> {
        Err(down())
    }
    async fn get(&self, _: Uuid) -> Result<Option<LoanRecord>, StoreError> {
        Err(down())
    }
    async fn finish(&self, _: Uuid, _: Outcome) -> Result<Finished, StoreError> {
        Err(down())
    }
    async fn discard(&self, _: Uuid, _: Option<&str>) -> Result<(), StoreError> {
        Err(down())
    }
    async fn processing(&self) -> Result<Vec<Uuid>, StoreError> {
        Err(down())
    }
}

fn down() -> StoreError {
    StoreError::Unavailable("no store in this test".into())
}
