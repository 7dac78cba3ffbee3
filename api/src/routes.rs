//! The handlers: request a loan, read a loan, and the health check.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use loan_core::queue::Job;
use loan_core::store::Created;
use loan_core::{Application, FieldError, LoanRecord};
use tracing::{debug, error, warn};
use uuid::Uuid;

use crate::problem::ApiError;
use crate::view::{Accepted, Health, LoanView};
use crate::{ApiState, BODY_LIMIT, idempotency};

const STORE_DOWN: &str = "the loan store is unavailable";
const QUEUE_DOWN: &str = "the evaluation queue is unavailable and the request was not kept";

/// Accepts a loan request: validates it, stores it, queues its evaluation,
/// and answers `202` only once the queue has confirmed the job.
///
/// A retry carrying the `Idempotency-Key` of a loan still `processing`
/// queues it again (see [`requeue_if_processing`]). One window stays open:
/// a retry that comes while the first request's publish is in flight, when
/// that publish then fails, finds its loan discarded; the window is one
/// publish confirmation wide, and closing it would take a "queued" mark in
/// the store that the retry waits for.
#[utoipa::path(
    post,
    path = "/loan",
    tag = "loan",
    operation_id = "create_loan",
    summary = "Request a loan",
    description = "Validates the request, stores it and queues its evaluation. A `202` is \
                   sent only once the evaluation is queued, and promises that the loan will \
                   reach a final state: poll the `Location` to read it.",
    request_body(
        content = crate::openapi::LoanRequest,
        content_type = "application/json",
        description = "The loan request. The Content-Type header is not checked; \
                       the body must be a JSON object of at most 64 KiB.",
    ),
    params(crate::openapi::IdempotencyKey),
    responses(
        (status = 202, description = "Accepted: stored and queued for evaluation, which \
                                      will bring it to a final state.",
         body = Accepted,
         headers(("Location" = String, description = "`/loan/{id}`, where the loan is read"))),
        (status = 400, description = "The body is not a JSON object, a field is missing, \
                                      of the wrong type or out of range, or the \
                                      Idempotency-Key is malformed. Nothing was stored.",
         body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 64 KiB.",
         body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used before with a \
                                      different body.",
         body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store or the queue is unavailable. Nothing was \
                                      kept; try again later.",
         body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_loan(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(unread_body)?;
    let today = Timestamp::now().to_zoned(state.time_zone.clone()).date();
    let (key, application) = validate(&headers, &body, today)?;

    let loan = LoanRecord::new(application);
    let idempotency = idempotency::idempotency(key, &loan.application);
    match state.store.create(&loan, idempotency.as_ref()).await {
        Ok(Created::New) => {}
        Ok(Created::Existing {
            id,
            same_request: true,
        }) => {
            debug!(loan_id = %id, "retry answered with the first request's loan");
            requeue_if_processing(&state, id).await?;
            return Ok(accepted(id));
        }
        Ok(Created::Existing {
            id,
            same_request: false,
        }) => {
            debug!(loan_id = %id, "idempotency key reused for another request");
            return Err(ApiError::IdempotencyKeyReused);
        }
        Err(err) => {
            warn!(loan_id = %loan.id, cause = %err, "could not store a loan");
            return Err(ApiError::Unavailable(STORE_DOWN));
        }
    }

    if let Err(err) = state.publisher.publish(&Job::first(loan.id)).await {
        warn!(loan_id = %loan.id, cause = %err, "could not queue a loan; discarding it");
        let key = idempotency.as_ref().map(|i| i.key.as_str());
        if let Err(err) = state.store.discard(loan.id, key).await {
            error!(
                loan_id = %loan.id,
                cause = %err,
                "could not discard a loan that was not queued; it stays processing"
            );
        }
        return Err(ApiError::Unavailable(QUEUE_DOWN));
    }

    debug!(loan_id = %loan.id, "loan accepted");
    Ok(accepted(loan.id))
}

/// Queues loan `id` again when it is still `processing`. A retry may come
/// while the first request's publish is in flight or after it failed and
/// its discard failed too; queueing again makes the retry's `202` a promise
/// that holds. A duplicate job is harmless: the worker acks jobs for final
/// loans and a final state is never overwritten.
async fn requeue_if_processing(state: &ApiState, id: Uuid) -> Result<(), ApiError> {
    let loan = state.store.get(id).await.map_err(|err| {
        warn!(loan_id = %id, cause = %err, "could not read a loan for a retry");
        ApiError::Unavailable(STORE_DOWN)
    })?;
    if loan.is_some_and(|loan| !loan.status.is_final()) {
        state
            .publisher
            .publish(&Job::first(id))
            .await
            .map_err(|err| {
                warn!(loan_id = %id, cause = %err, "could not queue a retried loan");
                ApiError::Unavailable(QUEUE_DOWN)
            })?;
    }
    Ok(())
}

/// The idempotency key and the application, or every problem with either.
fn validate(
    headers: &HeaderMap,
    body: &[u8],
    today: jiff::civil::Date,
) -> Result<(Option<String>, Application), ApiError> {
    match (
        idempotency::key(headers),
        Application::from_json(body, today),
    ) {
        (Ok(key), Ok(application)) => Ok((key, application)),
        (key, application) => {
            let mut errors: Vec<FieldError> = key.err().into_iter().collect();
            if let Err(invalid) = application {
                errors.extend(invalid.0);
            }
            Err(ApiError::Invalid(errors))
        }
    }
}

/// The `202` for loan `id`, the same for a first request and its retries.
fn accepted(id: Uuid) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/loan/{id}"))],
        Json(Accepted { id }),
    )
        .into_response()
}

fn unread_body(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BodyTooLarge { limit: BODY_LIMIT }
    } else {
        ApiError::Invalid(vec![FieldError {
            field: "body".to_owned(),
            message: "could not be read off the connection; send it again".to_owned(),
        }])
    }
}

/// Reads a loan: its state and, once decided, the decision. Never the
/// applicant's personal data.
#[utoipa::path(
    get,
    path = "/loan/{id}",
    tag = "loan",
    operation_id = "get_loan",
    params(("id" = Uuid, Path, description = "The loan's id, as returned by `POST /loan`")),
    responses(
        (status = 200, description = "The loan", body = LoanView),
        (status = 400, description = "The id is not a UUID.",
         body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No loan has this id.",
         body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable; try again later.",
         body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_loan(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<LoanView>, ApiError> {
    let id = loan_id(id)?;
    match state.store.get(id).await {
        Ok(Some(loan)) => Ok(Json(LoanView::from(&loan))),
        Ok(None) => Err(ApiError::LoanNotFound(id)),
        Err(err) => {
            warn!(loan_id = %id, cause = %err, "could not read a loan");
            Err(ApiError::Unavailable(STORE_DOWN))
        }
    }
}

/// The loan id in the path, or a problem naming the `id` parameter.
fn loan_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    path.ok()
        .and_then(|Path(text)| Uuid::try_parse(&text).ok())
        .ok_or_else(|| {
            ApiError::Invalid(vec![FieldError {
                field: "id".to_owned(),
                message: "must be a UUID such as 6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b".to_owned(),
            }])
        })
}

/// Says the API is up. It checks neither the store nor the queue.
#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    operation_id = "health",
    responses((status = 200, description = "The API answers", body = Health)),
)]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use loan_core::store::Store;
    use loan_core::{BureauAnswers, DecisionRecord, Money, Outcome, PolicyRef, Verdict};
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::{Answer, DownStore, GOOD_BODY, Harness, get, post_loan};

    fn good() -> Value {
        serde_json::from_str(GOOD_BODY).unwrap()
    }

    /// The good body with `field` set to `value`, or removed when `None`.
    fn with(field: &str, value: Option<Value>) -> String {
        let mut body = good();
        let object = body.as_object_mut().unwrap();
        match value {
            Some(value) => object.insert(field.to_owned(), value),
            None => object.remove(field),
        };
        body.to_string()
    }

    /// The id of an accepted request, after checking the `202` reply.
    fn accepted_id(answer: &Answer) -> Uuid {
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
        let body = answer.json();
        let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(body, json!({ "id": id }));
        assert_eq!(answer.header("location"), format!("/loan/{id}"));
        assert_eq!(answer.header("content-type"), "application/json");
        id
    }

    async fn assert_nothing_kept(harness: &Harness) {
        assert_eq!(harness.stored().await, Vec::<Uuid>::new());
        assert_eq!(harness.queued().await, Vec::<Job>::new());
    }

    #[tokio::test]
    async fn an_accepted_request_is_stored_then_queued_and_located() {
        let harness = Harness::new();

        let answer = harness.send(post_loan(GOOD_BODY, None)).await;

        let id = accepted_id(&answer);
        assert_eq!(id.get_version_num(), 4);
        let stored = harness.store.get(id).await.unwrap().unwrap();
        assert_eq!(stored.status, loan_core::LoanStatus::Processing);
        assert_eq!(stored.application.amount, Money::from_cents(250_000));
        assert_eq!(harness.queued().await, [Job::first(id)]);
    }

    #[tokio::test]
    async fn each_bad_field_gets_one_error_naming_it_and_nothing_is_kept() {
        let cases = [
            ("name", Some(json!("   "))),
            ("name", None),
            ("cpf", Some(json!("111.111.111-11"))),
            ("cpf", Some(json!("123.456.789-00"))),
            ("birthdate", Some(json!("2999-01-01"))),
            ("birthdate", Some(json!("01/01/1990"))),
            ("amount", Some(json!(999.99))),
            ("amount", Some(json!("1000.001"))),
            ("amount", Some(json!(true))),
            ("terms", Some(json!(7))),
            ("terms", None),
            ("income", Some(json!(-1))),
        ];
        for (field, value) in cases {
            let harness = Harness::new();
            let body = with(field, value.clone());

            let answer = harness.send(post_loan(body, None)).await;

            assert_eq!(answer.problem_fields(400), [field], "{field} = {value:?}");
            assert_eq!(answer.json()["type"], crate::problem::INVALID_REQUEST);
            assert_nothing_kept(&harness).await;
        }
    }

    #[tokio::test]
    async fn every_bad_field_is_reported_at_once() {
        let harness = Harness::new();
        let body = json!({"name": "Ana", "cpf": "123", "amount": 1, "terms": 12}).to_string();

        let answer = harness.send(post_loan(body, Some("has space"))).await;

        let mut fields = answer.problem_fields(400);
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["Idempotency-Key", "amount", "birthdate", "cpf", "income"]
        );
        assert_nothing_kept(&harness).await;
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_json_object_is_one_body_error() {
        for body in ["", "not json", "[1, 2]", "{\"name\":"] {
            let harness = Harness::new();

            let answer = harness.send(post_loan(body, None)).await;

            assert_eq!(answer.problem_fields(400), ["body"], "{body:?}");
            assert_nothing_kept(&harness).await;
        }
    }

    #[tokio::test]
    async fn a_malformed_idempotency_key_is_refused() {
        let harness = Harness::new();
        let too_long = "k".repeat(256);

        for key in ["", "with space", too_long.as_str()] {
            let answer = harness.send(post_loan(GOOD_BODY, Some(key))).await;
            assert_eq!(answer.problem_fields(400), ["Idempotency-Key"], "{key:?}");
        }
        assert_nothing_kept(&harness).await;
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413() {
        let harness = Harness::new();
        let padding = "x".repeat(crate::BODY_LIMIT);
        let body = with("padding", Some(json!(padding)));

        let answer = harness.send(post_loan(body, None)).await;

        assert_eq!(answer.problem_fields(413), Vec::<String>::new());
        assert_nothing_kept(&harness).await;
    }

    #[tokio::test]
    async fn any_content_type_is_read_as_json() {
        let harness = Harness::new();
        let request = axum::http::Request::post("/loan")
            .header("content-type", "text/plain")
            .body(axum::body::Body::from(GOOD_BODY))
            .unwrap();

        let answer = harness.send(request).await;

        accepted_id(&answer);
    }

    #[tokio::test]
    async fn a_retry_with_the_same_key_gets_the_first_reply_and_creates_nothing() {
        let harness = Harness::new();
        let first = harness.send(post_loan(GOOD_BODY, Some("order-42"))).await;
        let id = accepted_id(&first);

        // The same application written differently is the same request.
        let same = with("amount", Some(json!("2500.00")));
        let retry = harness.send(post_loan(same, Some("order-42"))).await;

        assert_eq!(accepted_id(&retry), id);
        assert_eq!(harness.stored().await, [id]);
        // Still processing, so the retry queues the same job again: its 202
        // must hold even if the first request's job was lost.
        assert_eq!(harness.queued().await, [Job::first(id), Job::first(id)]);
    }

    #[tokio::test]
    async fn the_same_key_with_another_body_is_422() {
        let harness = Harness::new();
        let first = harness.send(post_loan(GOOD_BODY, Some("order-42"))).await;
        let id = accepted_id(&first);

        let other = with("terms", Some(json!(6)));
        let answer = harness.send(post_loan(other, Some("order-42"))).await;

        assert_eq!(answer.problem_fields(422), Vec::<String>::new());
        assert_eq!(
            answer.json()["type"],
            crate::problem::IDEMPOTENCY_KEY_REUSED
        );
        assert_eq!(harness.stored().await, [id]);
        assert_eq!(harness.queued().await, [Job::first(id)]);
    }

    #[tokio::test]
    async fn different_keys_make_different_loans() {
        let harness = Harness::new();
        let a = accepted_id(&harness.send(post_loan(GOOD_BODY, Some("a"))).await);
        let b = accepted_id(&harness.send(post_loan(GOOD_BODY, Some("b"))).await);
        assert_ne!(a, b);
        assert_eq!(harness.queued().await, [Job::first(a), Job::first(b)]);
    }

    #[tokio::test]
    async fn a_failed_publish_is_503_and_leaves_nothing_behind() {
        let harness = Harness::new();
        // An in-process queue whose consumer is gone refuses every job.
        let (closed, consumer) = loan_core::queue::memory::channel();
        drop(consumer);
        let down = harness.router_over(harness.store.clone(), Arc::new(closed));

        let answer = harness.send_to(down, post_loan(GOOD_BODY, Some("k"))).await;

        assert_eq!(answer.problem_fields(503), Vec::<String>::new());
        assert_nothing_kept(&harness).await;

        // The key was released with the loan: a retry once the queue is
        // back creates the loan.
        let retry = harness.send(post_loan(GOOD_BODY, Some("k"))).await;
        let id = accepted_id(&retry);
        assert_eq!(harness.stored().await, [id]);
        assert_eq!(harness.queued().await, [Job::first(id)]);
    }

    #[tokio::test]
    async fn a_store_failure_is_503_and_queues_nothing() {
        let harness = Harness::new();
        let down = || harness.router_over(Arc::new(DownStore), harness.publisher.clone());

        let answer = harness.send_to(down(), post_loan(GOOD_BODY, None)).await;
        assert_eq!(answer.problem_fields(503), Vec::<String>::new());
        assert_eq!(harness.queued().await, Vec::<Job>::new());

        let path = format!("/loan/{}", Uuid::new_v4());
        let answer = harness.send_to(down(), get(&path)).await;
        assert_eq!(answer.problem_fields(503), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_processing_loan_shows_its_state_and_no_personal_data() {
        let harness = Harness::new();
        let id = accepted_id(&harness.send(post_loan(GOOD_BODY, None)).await);

        let answer = harness.send(get(&format!("/loan/{id}"))).await;

        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(answer.header("content-type"), "application/json");
        let view = answer.json();
        assert_eq!(view["id"], id.to_string());
        assert_eq!(view["status"], "processing");
        for field in [
            "result",
            "refused_policy",
            "amount",
            "terms",
            "installment",
            "reason",
            "policy",
        ] {
            assert_eq!(view[field], Value::Null, "{field}");
        }
        assert!(view["created_at"].is_string() && view["updated_at"].is_string());
        let text = answer.text();
        for personal in [
            "name",
            "Maria",
            "cpf",
            "12345678909",
            "123.456.789-09",
            "birthdate",
            "1990-01-01",
            "income",
            "1500.5",
        ] {
            assert!(!text.contains(personal), "{personal} in {text}");
        }
    }

    #[tokio::test]
    async fn an_approved_loan_shows_money_with_two_decimals() {
        let harness = Harness::new();
        let id = accepted_id(&harness.send(post_loan(GOOD_BODY, None)).await);
        let decision = DecisionRecord {
            verdict: Verdict::Approved,
            refused_policy: None,
            reason: None,
            amount: Some(Money::from_cents(250_000)),
            terms: Some(12),
            installment: Some(Money::from_cents(27_410)),
            policy: PolicyRef {
                digest: "sha256:00".into(),
                name: "reference".into(),
                version: "1.0.0".into(),
            },
            bureau: BureauAnswers::default(),
            evaluated_on: jiff::civil::date(2024, 6, 15),
            attempts: 1,
            decided_at: Timestamp::now(),
        };
        harness
            .store
            .finish(id, Outcome::Completed(decision))
            .await
            .unwrap();

        let answer = harness.send(get(&format!("/loan/{id}"))).await;

        let text = answer.text();
        assert!(text.contains(r#""amount":2500.00"#), "{text}");
        assert!(text.contains(r#""installment":274.10"#), "{text}");
        let view = answer.json();
        assert_eq!(view["status"], "completed");
        assert_eq!(view["result"], "approved");
        assert_eq!(view["terms"], 12);
    }

    #[tokio::test]
    async fn an_id_that_is_not_a_uuid_is_400() {
        let harness = Harness::new();
        for path in ["/loan/42", "/loan/not-a-uuid", "/loan/%FF"] {
            let answer = harness.send(get(path)).await;
            assert_eq!(answer.problem_fields(400), ["id"], "{path}");
        }
    }

    #[tokio::test]
    async fn an_unknown_loan_is_404() {
        let harness = Harness::new();
        let id = Uuid::new_v4();

        let answer = harness.send(get(&format!("/loan/{id}"))).await;

        assert_eq!(answer.problem_fields(404), Vec::<String>::new());
        assert!(
            answer.json()["detail"]
                .as_str()
                .unwrap()
                .contains(&id.to_string())
        );
    }
}
