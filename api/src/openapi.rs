//! The OpenAPI document of the API, and the schema of the loan request,
//! which is validated by hand and so has no type to derive it from.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::problem::{FieldProblem, Problem};
use crate::routes;
use crate::view::{Accepted, Decision, Health, LoanView, PolicyView, Status};

/// The OpenAPI document: every route, its request and its answers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "loan",
        description = "Loan requests are accepted here and decided in the background by \
                       credit policies. Send a request with `POST /loan`, then read its \
                       decision with `GET /loan/{id}`. Errors are `application/problem+json` \
                       (RFC 9457).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(routes::create_loan, routes::get_loan, routes::health),
    components(schemas(
        LoanRequest,
        Accepted,
        LoanView,
        Status,
        Decision,
        PolicyView,
        Problem,
        FieldProblem,
        Health
    )),
    tags(
        (name = "loan", description = "Requesting a loan and reading its decision"),
        (name = "service", description = "The service itself"),
    )
)]
pub struct ApiDoc;

/// The body of `POST /loan`. Every field is required; unknown fields are
/// ignored. Numbers count by their exact value in any JSON form (`1.5e3` is
/// 1500) and may also be sent as numeric strings. Each bad field gets one
/// entry in the `400` answer's `errors`.
//
// Documentation only: the body is read by `Application::from_json`, which
// reports every bad field instead of stopping at the first as a derived
// deserializer would.
#[derive(ToSchema)]
#[schema(example = json!({
    "name": "Maria Silva",
    "cpf": "123.456.789-09",
    "birthdate": "1990-01-01",
    "amount": 2500.00,
    "terms": 12,
    "income": 1500.00
}))]
#[allow(dead_code)]
pub(crate) struct LoanRequest {
    /// The applicant's name, 1 to 200 characters after trimming.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// A Brazilian CPF, 11 digits bare or masked as `000.000.000-00`, with
    /// right check digits and not one digit repeated eleven times.
    #[schema(
        pattern = r"^(\d{11}|\d{3}\.\d{3}\.\d{3}-\d{2})$",
        example = "123.456.789-09"
    )]
    cpf: String,
    /// The applicant's date of birth, `YYYY-MM-DD`, not in the future.
    #[schema(value_type = String, format = Date, example = "1990-01-01")]
    birthdate: String,
    #[schema(schema_with = amount_schema)]
    amount: f64,
    #[schema(schema_with = terms_schema)]
    terms: u8,
    #[schema(schema_with = income_schema)]
    income: f64,
}

/// The `Idempotency-Key` header of `POST /loan`.
//
// Documentation only, like `LoanRequest`: `idempotency::key` reads it.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct IdempotencyKey {
    /// Makes retries safe: a retry with the same key and the same body gets
    /// the first reply and creates nothing; the same key with a different
    /// body gets `422`. 1 to 255 visible ASCII characters.
    #[param(
        rename = "Idempotency-Key",
        required = false,
        min_length = 1,
        max_length = 255,
        pattern = r"^[\x21-\x7E]{1,255}$"
    )]
    key: String,
}

fn amount_schema() -> RefOr<Schema> {
    number_or_string(
        "The amount requested, 1000.00 to 4000.00 inclusive, at most 2 decimal places.",
        Some(1000),
        Some(4000),
    )
}

fn terms_schema() -> RefOr<Schema> {
    let integer = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some([6, 9, 12]));
    let string = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["6", "9", "12"]));
    OneOfBuilder::new()
        .item(integer)
        .item(string)
        .description(Some(
            "The number of monthly instalments requested: 6, 9 or 12 (`12.0` counts as 12).",
        ))
        .into()
}

fn income_schema() -> RefOr<Schema> {
    number_or_string(
        "The applicant's monthly income, 0 or more, at most 2 decimal places.",
        Some(0),
        None,
    )
}

/// A decimal sent as a JSON number or as a string holding one.
fn number_or_string(
    description: &str,
    minimum: Option<i32>,
    maximum: Option<i32>,
) -> RefOr<Schema> {
    let number = ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(minimum)
        .maximum(maximum)
        .multiple_of(Some(0.01));
    let string = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$"));
    OneOfBuilder::new()
        .item(number)
        .item(string)
        .description(Some(description))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> serde_json::Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    #[test]
    fn every_route_is_documented() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths["/loan"].get("post").is_some());
        assert!(paths["/loan/{id}"].get("get").is_some());
        assert!(paths["/health"].get("get").is_some());
    }

    #[test]
    fn every_error_answer_is_problem_json() {
        let doc = document();
        let answers = [
            ("/loan", "post", ["400", "413", "422", "503"].as_slice()),
            ("/loan/{id}", "get", ["400", "404", "503"].as_slice()),
        ];
        for (path, method, statuses) in answers {
            let responses = &doc["paths"][path][method]["responses"];
            for status in statuses {
                let schema =
                    &responses[status]["content"]["application/problem+json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        }
        let accepted = &doc["paths"]["/loan"]["post"]["responses"]["202"];
        assert!(accepted["headers"].get("Location").is_some());
    }

    #[test]
    fn the_loan_request_documents_every_field_as_required() {
        let doc = document();
        let request = &doc["components"]["schemas"]["LoanRequest"];
        let mut required: Vec<&str> = request["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        required.sort_unstable();
        assert_eq!(
            required,
            ["amount", "birthdate", "cpf", "income", "name", "terms"]
        );
        assert!(request["properties"]["amount"].get("oneOf").is_some());
    }

    #[test]
    fn the_loan_view_documents_no_personal_field() {
        let doc = document();
        let properties = doc["components"]["schemas"]["LoanView"]["properties"]
            .as_object()
            .unwrap();
        for personal in ["name", "cpf", "birthdate", "income"] {
            assert!(!properties.contains_key(personal), "{personal}");
        }
        assert!(properties.contains_key("refused_policy"));
    }
}
