//! The HTTP bureau client against the simulator on a real listener, and the
//! reference policy deciding through them.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use loan_core::Cpf;
use loan_core::settings::Secret;
use loan_host::{
    Bureau, BureauError, Decision, EvaluationError, EvaluationRequest, Fixtures, HttpBureau,
    simulator_router,
};
use rust_decimal::Decimal;

const KEY: &str = "test-bureau-key-0001";
const CPF: &str = "12345678909";
const OTHER_CPF: &str = "52998224725";

/// Serves `router` on 127.0.0.1 at a free port, counting the requests.
async fn serve(router: Router) -> (SocketAddr, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let router = router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            counter.fetch_add(1, Ordering::SeqCst);
            next.run(request)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (address, requests)
}

async fn simulator(fixtures: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let fixtures = Fixtures::from_json(fixtures).unwrap();
    serve(simulator_router(Secret::new(KEY), fixtures)).await
}

fn client(address: SocketAddr, key: &str, retries: u32) -> HttpBureau {
    let url = format!("http://{address}");
    HttpBureau::with_url(&url, &Secret::new(key), Duration::from_secs(5), retries).unwrap()
}

fn cpf(digits: &str) -> Cpf {
    Cpf::parse(digits).unwrap()
}

/// Neither the key nor the CPF may leak into an error.
fn assert_clean(error: &BureauError) {
    let text = error.to_string();
    assert!(!text.contains(KEY), "{text}");
    assert!(!text.contains("wrong-key"), "{text}");
    assert!(!text.contains(CPF), "{text}");
}

#[tokio::test]
async fn answers_are_read_exactly_with_the_key_sent() {
    let (address, _) = simulator(&format!(
        r#"{{"{CPF}": {{"score": 800, "commitment": 0.47}}}}"#
    ))
    .await;
    let bureau = client(address, KEY, 0);

    assert_eq!(bureau.score(&cpf(CPF)).await, Ok(800));
    assert_eq!(bureau.commitment(&cpf(CPF)).await, Ok(Decimal::new(47, 2)));

    // Without a fixture the answers are derived from the CPF, in range.
    let score = bureau.score(&cpf(OTHER_CPF)).await.unwrap();
    assert!(score <= 1000);
    assert_eq!(bureau.score(&cpf(OTHER_CPF)).await, Ok(score));
    let commitment = bureau.commitment(&cpf(OTHER_CPF)).await.unwrap();
    assert!(commitment >= Decimal::ZERO && commitment <= Decimal::ONE);
}

#[tokio::test]
async fn a_wrong_key_fails_at_once() {
    let (address, requests) = simulator("{}").await;
    let bureau = client(address, "wrong-key", 2);

    let error = bureau.score(&cpf(CPF)).await.unwrap_err();

    assert!(
        matches!(&error, BureauError::Unavailable(m) if m.contains("401")),
        "{error}"
    );
    assert_clean(&error);
    assert_eq!(requests.load(Ordering::SeqCst), 1, "a 401 is not retried");
}

#[tokio::test]
async fn the_simulator_refuses_requests_without_a_key_or_a_cpf() {
    let (address, _) = simulator("{}").await;
    let http = reqwest::Client::new();
    let url = format!("http://{address}/score");

    let no_key = http
        .post(&url)
        .json(&serde_json::json!({"cpf": CPF}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);

    let no_cpf = http
        .post(&url)
        .header("x-api-key", KEY)
        .json(&serde_json::json!({"cpf": "123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_cpf.status(), 400);
}

#[tokio::test]
async fn answers_out_of_range_or_malformed_are_invalid() {
    let (address, requests) = simulator(&format!(
        r#"{{"{CPF}": {{"score": 1001, "commitment": 1.5}},
            "{OTHER_CPF}": {{"score": "800", "commitment": -0.1}},
            "39053344705": {{"score": 800.5, "commitment": "0.5"}}}}"#
    ))
    .await;
    let bureau = client(address, KEY, 2);

    for error in [
        bureau.score(&cpf(CPF)).await.unwrap_err(),
        bureau.commitment(&cpf(CPF)).await.unwrap_err(),
        bureau.score(&cpf(OTHER_CPF)).await.unwrap_err(),
        bureau.commitment(&cpf(OTHER_CPF)).await.unwrap_err(),
        bureau.score(&cpf("39053344705")).await.unwrap_err(),
        bureau.commitment(&cpf("39053344705")).await.unwrap_err(),
    ] {
        assert!(matches!(error, BureauError::InvalidAnswer(_)), "{error}");
        assert_clean(&error);
    }
    assert_eq!(
        requests.load(Ordering::SeqCst),
        6,
        "invalid answers are not retried"
    );
}

#[tokio::test]
async fn a_503_fails_after_the_retries() {
    let (address, requests) =
        simulator(&format!(r#"{{"{CPF}": {{"score": {{"status": 503}}}}}}"#)).await;
    let bureau = client(address, KEY, 2);

    let error = bureau.score(&cpf(CPF)).await.unwrap_err();

    assert!(
        matches!(&error, BureauError::Unavailable(m) if m.contains("503")),
        "{error}"
    );
    assert!(error.to_string().contains("after 3 tries"), "{error}");
    assert_clean(&error);
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_bureau_that_does_not_answer_times_out() {
    let silent = Router::new().route("/score", post(std::future::pending::<String>));
    let (address, requests) = serve(silent).await;
    let url = format!("http://{address}");
    let bureau =
        HttpBureau::with_url(&url, &Secret::new(KEY), Duration::from_millis(200), 1).unwrap();
    let started = Instant::now();

    let error = bureau.score(&cpf(CPF)).await.unwrap_err();

    assert!(
        matches!(&error, BureauError::Unavailable(m) if m.contains("timed out")),
        "{error}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn an_unreachable_bureau_is_unavailable() {
    // Bind then drop: nothing listens on the port any more.
    let address = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let error = client(address, KEY, 0).score(&cpf(CPF)).await.unwrap_err();
    assert!(
        matches!(&error, BureauError::Unavailable(m) if m.contains("connect")),
        "{error}"
    );
}

#[tokio::test]
async fn the_reference_policy_decides_through_the_simulator() {
    let (address, _) = simulator(&format!(
        r#"{{"{CPF}": {{"score": 950, "commitment": 0.8}},
            "{OTHER_CPF}": {{"score": 950, "commitment": {{"status": 503}}}}}}"#
    ))
    .await;
    let bureau: Arc<dyn Bureau> = Arc::new(client(address, KEY, 1));
    let (evaluator, _) =
        support::evaluator(&support::settings(), support::reference_policy()).await;

    let mut application = support::application(250_000, 6, 150_000);
    let evaluation = evaluator
        .evaluate(EvaluationRequest {
            loan_id: None,
            application: &application,
            bureau: bureau.clone(),
            today: support::today(),
        })
        .await
        .unwrap();
    assert!(
        matches!(&evaluation.decision, Decision::Approved { terms, installment, .. }
            if terms.get() == 12 && installment.cents() == 27_417),
        "{:?}",
        evaluation.decision
    );
    assert_eq!(evaluation.bureau.score, Some(950));
    assert_eq!(evaluation.bureau.commitment.as_deref(), Some("0.8"));

    application.cpf = cpf(OTHER_CPF);
    let error = evaluator
        .evaluate(EvaluationRequest {
            loan_id: None,
            application: &application,
            bureau,
            today: support::today(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, EvaluationError::Bureau(BureauError::Unavailable(_))),
        "{error}"
    );
    assert!(error.is_retryable());
}
