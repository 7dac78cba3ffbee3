//! The HTTP API of the loan service: takes loan requests, stores and queues
//! them, and shows loans and their decisions. It knows the store and the
//! queue only through their traits, and nothing of how policies run.
//!
//! [`router`] builds everything ready to serve: the loan routes, the health
//! check, the OpenAPI document at `/openapi.json`, Swagger UI at `/docs` and
//! Redoc at `/redoc`. Every error answer is `application/problem+json`.

// Tests may unwrap: a panic there is a failed test, which is what it should be.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod idempotency;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use loan_core::queue::Publisher;
use loan_core::store::Store;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_redoc::{Redoc, Servable};
use utoipa_swagger_ui::SwaggerUi;

/// Largest request body read, in bytes; a larger one gets `413`. A loan
/// request is well under 1 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Where loans are stored.
    pub store: Arc<dyn Store>,
    /// Where evaluations are queued.
    pub publisher: Arc<dyn Publisher>,
    /// The zone whose current date a birthdate must not be after.
    pub time_zone: jiff::tz::TimeZone,
}

/// Every route of the API, ready to serve.
///
/// Requests are traced at `debug`: one span and one line per request with
/// the method, the path (which holds at most a loan id), the status and the
/// latency; never headers or bodies.
pub fn router(state: ApiState) -> Router {
    let doc = openapi::ApiDoc::openapi();
    Router::new()
        .route(
            "/loan",
            post(routes::create_loan).layer(DefaultBodyLimit::max(BODY_LIMIT)),
        )
        .route("/loan/{id}", get(routes::get_loan))
        .route("/health", get(routes::health))
        .with_state(state)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc.clone()))
        .merge(Redoc::with_url("/redoc", doc))
        .fallback(problem::route_not_found)
        // Applies to the routes above only, so it comes after all of them.
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                // Handlers log the cause of their own 5xx answers.
                .on_failure(()),
        )
}

#[cfg(test)]
mod testing;

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use crate::testing::{Harness, get, post_loan};

    #[tokio::test]
    async fn health_answers_ok() {
        let answer = Harness::new().send(get("/health")).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json(), serde_json::json!({"status": "ok"}));
    }

    #[tokio::test]
    async fn the_openapi_document_lists_the_loan_routes() {
        let answer = Harness::new().send(get("/openapi.json")).await;

        assert_eq!(answer.status, StatusCode::OK);
        let doc = answer.json();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/loan"), "{paths:?}");
        assert!(paths.contains_key("/loan/{id}"), "{paths:?}");
        assert!(doc["components"]["schemas"].get("Problem").is_some());
    }

    #[tokio::test]
    async fn swagger_ui_and_redoc_serve_html() {
        let harness = Harness::new();

        let redirect = harness.send(get("/docs")).await;
        assert!(redirect.status.is_redirection(), "{}", redirect.status);
        assert_eq!(redirect.header("location"), "/docs/");

        for path in ["/docs/", "/redoc"] {
            let answer = harness.send(get(path)).await;
            assert_eq!(answer.status, StatusCode::OK, "{path}");
            assert!(
                answer.header("content-type").starts_with("text/html"),
                "{path}"
            );
            assert!(answer.text().contains("<html"), "{path}");
        }

        let redoc = harness.send(get("/redoc")).await.text();
        assert!(redoc.contains("/loan/{id}"), "the document is embedded");
    }

    #[tokio::test]
    async fn an_unknown_route_is_a_404_problem() {
        let answer = Harness::new().send(get("/loans")).await;
        assert!(answer.problem_fields(404).is_empty());
        assert_eq!(answer.json()["type"], crate::problem::ABOUT_BLANK);
    }

    #[tokio::test]
    async fn a_wrong_method_is_a_405_problem_with_allow() {
        let harness = Harness::new();

        let answer = harness.send(get("/loan")).await;
        assert!(answer.problem_fields(405).is_empty());
        assert_eq!(answer.header("allow"), "POST");

        let request = post_loan("{}", None);
        let (mut parts, body) = request.into_parts();
        parts.uri = "/health".parse().unwrap();
        let answer = harness
            .send(axum::http::Request::from_parts(parts, body))
            .await;
        assert!(answer.problem_fields(405).is_empty());
    }
}
