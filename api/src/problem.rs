//! Errors as the client sees them: [`ApiError`] and its `application/problem+json`
//! body (RFC 9457).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loan_core::FieldError;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Problem type of a request the API refuses to read: bad body fields, a bad
/// header or a bad path segment. The `errors` member names each one.
pub const INVALID_REQUEST: &str = "urn:loan:problem:invalid-request";

/// Problem type of an `Idempotency-Key` reused with a different body.
pub const IDEMPOTENCY_KEY_REUSED: &str = "urn:loan:problem:idempotency-key-reused";

/// Problem type of an error that means no more than its HTTP status (RFC 9457
/// section 4.2.1).
pub const ABOUT_BLANK: &str = "about:blank";

/// Everything the API answers with an error status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request has bad fields, one entry each.
    #[error("the request is invalid in {} field(s); see `errors` for each one", .0.len())]
    Invalid(Vec<FieldError>),
    /// The `Idempotency-Key` was first used with a different body.
    #[error(
        "this Idempotency-Key was already used with a different request body; \
         send a new key for a new request"
    )]
    IdempotencyKeyReused,
    /// No loan has this id.
    #[error("no loan has id {0}")]
    LoanNotFound(Uuid),
    /// No route matches the path.
    #[error("no resource at this path; see /docs for the API")]
    RouteNotFound,
    /// The route exists but not for this method.
    #[error("this method is not allowed here; the Allow header lists those that are")]
    MethodNotAllowed,
    /// The body is larger than the API reads.
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The largest body accepted, in bytes.
        limit: usize,
    },
    /// The store or the queue failed; nothing was left behind.
    #[error("the loan service is unavailable right now: {0}; try again later")]
    Unavailable(&'static str),
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::LoanNotFound(_) | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The problem+json body for this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let (kind, title) = match self {
            ApiError::Invalid(_) => (INVALID_REQUEST, "The request is invalid"),
            ApiError::IdempotencyKeyReused => (
                IDEMPOTENCY_KEY_REUSED,
                "The Idempotency-Key belongs to another request",
            ),
            _ => (ABOUT_BLANK, status.canonical_reason().unwrap_or("Error")),
        };
        let errors = match self {
            ApiError::Invalid(errors) => errors.iter().map(FieldProblem::from).collect(),
            _ => Vec::new(),
        };
        Problem {
            kind: kind.to_owned(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.problem())).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// A problem details object (RFC 9457), the body of every error response.
///
/// `type` is `urn:loan:problem:invalid-request` for a request with bad
/// fields, headers or path segments (listed in `errors`),
/// `urn:loan:problem:idempotency-key-reused` for a key reused with another
/// body, and `about:blank` when the status says it all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({
    "type": INVALID_REQUEST,
    "title": "The request is invalid",
    "status": 400,
    "detail": "the request is invalid in 1 field(s); see `errors` for each one",
    "errors": [{"field": "terms", "message": "must be the integer 6, 9 or 12"}]
}))]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request and what the client can do.
    pub detail: String,
    /// One entry per bad field, header or path segment; absent when there
    /// are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

/// One rejected part of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldProblem {
    /// The body field (`name`, `amount`, …), `body` for the body as a whole,
    /// or the header or path parameter (`Idempotency-Key`, `id`).
    pub field: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl From<&FieldError> for FieldProblem {
    fn from(error: &FieldError) -> Self {
        FieldProblem {
            field: error.field.clone(),
            message: error.message.clone(),
        }
    }
}

/// The answer for a path no route matches.
pub async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

/// The answer for a method a route does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_repeats_its_status_and_has_a_type_and_title() {
        let all = [
            ApiError::Invalid(vec![FieldError {
                field: "terms".into(),
                message: "must be 6, 9 or 12".into(),
            }]),
            ApiError::IdempotencyKeyReused,
            ApiError::LoanNotFound(Uuid::nil()),
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed,
            ApiError::BodyTooLarge { limit: 10 },
            ApiError::Unavailable("the loan store is unavailable"),
        ];
        for error in all {
            let problem = error.problem();
            assert_eq!(problem.status, error.status().as_u16(), "{error:?}");
            assert!(!problem.kind.is_empty() && !problem.title.is_empty());
            assert_eq!(problem.detail, error.to_string());
        }
    }

    #[test]
    fn errors_member_is_present_only_for_invalid_requests() {
        let invalid = serde_json::to_value(
            ApiError::Invalid(vec![FieldError {
                field: "amount".into(),
                message: "must be a number".into(),
            }])
            .problem(),
        )
        .unwrap();
        assert_eq!(invalid["type"], INVALID_REQUEST);
        assert_eq!(invalid["errors"][0]["field"], "amount");

        let not_found = serde_json::to_value(ApiError::RouteNotFound.problem()).unwrap();
        assert_eq!(not_found["type"], ABOUT_BLANK);
        assert_eq!(not_found["title"], "Not Found");
        assert!(not_found.get("errors").is_none());
    }

    #[test]
    fn the_response_is_problem_json() {
        let response = ApiError::IdempotencyKeyReused.into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
