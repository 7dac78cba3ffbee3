//! A loan application and the validation of a request body into one.
//!
//! The API maps [`ValidationErrors`] to problem+json; the case runner uses the
//! same rules so that `invalid` cases are judged exactly as the API would.

use std::collections::BTreeMap;
use std::str::FromStr;

use jiff::civil::Date;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::cpf::Cpf;
use crate::money::Money;
use crate::number::exact_decimal;

/// Longest accepted name, in characters after trimming.
pub const NAME_MAX_CHARS: usize = 200;
/// Smallest amount a loan may ask for.
pub const AMOUNT_MIN: Money = Money::from_cents(100_000);
/// Largest amount a loan may ask for.
pub const AMOUNT_MAX: Money = Money::from_cents(400_000);

/// A number of monthly instalments the service offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Terms(u8);

impl Terms {
    /// Every number of instalments offered, in increasing order.
    pub const ALL: [u8; 3] = [6, 9, 12];

    /// The number of instalments.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Terms {
    type Error = String;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        if Self::ALL.contains(&value) {
            Ok(Terms(value))
        } else {
            Err(format!("{value} is not one of 6, 9 or 12"))
        }
    }
}

impl From<Terms> for u8 {
    fn from(value: Terms) -> Self {
        value.0
    }
}

/// A validated loan application. Holds personal data: it is stored, handed
/// to the evaluation, and never returned by the API or logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// Applicant's name, trimmed.
    pub name: String,
    /// Applicant's CPF.
    pub cpf: Cpf,
    /// Applicant's date of birth.
    pub birthdate: Date,
    /// Requested amount.
    pub amount: Money,
    /// Requested number of instalments.
    pub terms: Terms,
    /// Monthly income.
    pub income: Money,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("amount", &self.amount)
            .field("terms", &self.terms)
            .finish_non_exhaustive()
    }
}

/// One rejected field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The field's name in the request body, or `body` for the body itself.
    pub field: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

/// Every problem found in a request, one entry per bad field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the loan request is invalid: {}", summary(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{} {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

const NAME_RULE: &str = "must be a string of 1 to 200 characters after trimming";
const BIRTHDATE_RULE: &str = "must be a date written YYYY-MM-DD, not in the future";
const AMOUNT_RULE: &str = "must be a number from 1000.00 to 4000.00 with at most 2 decimal places";
const TERMS_RULE: &str = "must be the integer 6, 9 or 12";
const INCOME_RULE: &str = "must be a number of 0 or more with at most 2 decimal places";

impl Application {
    /// Validates a request body. `today` is the current date in the
    /// configured time zone, against which the birthdate is checked.
    /// Unknown fields are ignored; each bad field gets one error.
    pub fn from_json(body: &[u8], today: Date) -> Result<Self, ValidationErrors> {
        let fields: BTreeMap<String, &RawValue> = match serde_json::from_slice(body) {
            Ok(fields) => fields,
            Err(err) => {
                let message = if serde_json::from_slice::<&RawValue>(body).is_ok() {
                    "must be a JSON object".to_owned()
                } else {
                    format!("must be valid JSON ({err})")
                };
                return Err(ValidationErrors(vec![FieldError {
                    field: "body".into(),
                    message,
                }]));
            }
        };

        let mut errors = Vec::new();
        let mut check = |field: &str, result: Result<(), String>| {
            if let Err(message) = result {
                errors.push(FieldError {
                    field: field.into(),
                    message,
                });
            }
        };
        let get = |field: &str| fields.get(field).map(|raw| raw.get());

        let (mut name, mut cpf, mut birthdate, mut amount, mut terms, mut income) =
            (None, None, None, None, None, None);
        check(
            "name",
            field(get("name"), NAME_RULE, |raw| {
                name = Some(parse_name(raw)?);
                Ok(())
            }),
        );
        check(
            "cpf",
            field(get("cpf"), "must be a valid CPF", |raw| {
                let text: String =
                    string(raw).ok_or("must be a string: 11 digits, bare or as 000.000.000-00")?;
                cpf = Some(Cpf::parse(&text).map_err(|e| e.to_string())?);
                Ok(())
            }),
        );
        check(
            "birthdate",
            field(get("birthdate"), BIRTHDATE_RULE, |raw| {
                birthdate = Some(parse_birthdate(raw, today)?);
                Ok(())
            }),
        );
        check(
            "amount",
            field(get("amount"), AMOUNT_RULE, |raw| {
                let value = money(raw, AMOUNT_RULE)?;
                if value < AMOUNT_MIN || value > AMOUNT_MAX {
                    return Err(AMOUNT_RULE.into());
                }
                amount = Some(value);
                Ok(())
            }),
        );
        check(
            "terms",
            field(get("terms"), TERMS_RULE, |raw| {
                let value = number(raw).ok_or(TERMS_RULE)?.normalize();
                if value.scale() != 0 {
                    return Err(TERMS_RULE.into());
                }
                let value = u8::try_from(value).map_err(|_| TERMS_RULE.to_owned())?;
                terms = Some(Terms::try_from(value).map_err(|_| TERMS_RULE.to_owned())?);
                Ok(())
            }),
        );
        check(
            "income",
            field(get("income"), INCOME_RULE, |raw| {
                let value = money(raw, INCOME_RULE)?;
                if value.cents() < 0 {
                    return Err(INCOME_RULE.into());
                }
                income = Some(value);
                Ok(())
            }),
        );

        match (name, cpf, birthdate, amount, terms, income) {
            (Some(name), Some(cpf), Some(birthdate), Some(amount), Some(terms), Some(income))
                if errors.is_empty() =>
            {
                Ok(Application {
                    name,
                    cpf,
                    birthdate,
                    amount,
                    terms,
                    income,
                })
            }
            _ => Err(ValidationErrors(errors)),
        }
    }
}

/// Runs `parse` on a present field; a missing one is reported with its rule.
fn field(
    raw: Option<&str>,
    rule: &str,
    parse: impl FnOnce(&str) -> Result<(), String>,
) -> Result<(), String> {
    match raw {
        None => Err(format!("is required and {rule}")),
        Some(raw) => parse(raw),
    }
}

/// The JSON string in `raw`, or `None` when it is another type.
fn string(raw: &str) -> Option<String> {
    if raw.starts_with('"') {
        serde_json::from_str(raw).ok()
    } else {
        None
    }
}

fn parse_name(raw: &str) -> Result<String, String> {
    let text = string(raw).ok_or(NAME_RULE)?;
    let trimmed = text.trim();
    let count = trimmed.chars().count();
    if count == 0 || count > NAME_MAX_CHARS {
        return Err(NAME_RULE.into());
    }
    Ok(trimmed.to_owned())
}

fn parse_birthdate(raw: &str, today: Date) -> Result<Date, String> {
    let text = string(raw).ok_or(BIRTHDATE_RULE)?;
    let b = text.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return Err(BIRTHDATE_RULE.into());
    }
    let part = |range: std::ops::Range<usize>| text[range].parse::<i16>().ok();
    let date = match (part(0..4), part(5..7), part(8..10)) {
        (Some(y), Some(m), Some(d)) => Date::new(y, m as i8, d as i8).ok(),
        _ => None,
    }
    .ok_or_else(|| format!("{BIRTHDATE_RULE}; the date given does not exist"))?;
    if date > today {
        return Err(format!("{BIRTHDATE_RULE}; the date given is after today"));
    }
    Ok(date)
}

/// An exact amount of money from a JSON number or numeric string.
fn money(raw: &str, rule: &str) -> Result<Money, String> {
    let value = number(raw).ok_or(rule)?;
    Money::from_decimal(value).ok_or_else(|| rule.to_owned())
}

/// The exact value of a JSON number, or of a string holding one, or `None`
/// when it is another type, malformed or not exactly representable.
fn number(raw: &str) -> Option<Decimal> {
    if raw.starts_with('"') {
        exact_decimal(&string(raw)?)
    } else {
        exact_decimal(raw)
    }
}

impl FromStr for Terms {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n: u8 = s
            .parse()
            .map_err(|_| format!("{s} is not one of 6, 9 or 12"))?;
        Terms::try_from(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Date {
        Date::new(2024, 6, 15).unwrap()
    }

    fn body(overrides: &[(&str, &str)]) -> Vec<u8> {
        let mut fields = vec![
            ("name", r#""Maria Silva""#),
            ("cpf", r#""123.456.789-09""#),
            ("birthdate", r#""1990-01-01""#),
            ("amount", "2500"),
            ("terms", "12"),
            ("income", "1500.50"),
        ];
        for (k, v) in overrides {
            fields.retain(|(f, _)| f != k);
            if !v.is_empty() {
                fields.push((k, v));
            }
        }
        let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", inner.join(",")).into_bytes()
    }

    fn bad_fields(overrides: &[(&str, &str)]) -> Vec<String> {
        match Application::from_json(&body(overrides), today()) {
            Ok(_) => vec![],
            Err(ValidationErrors(errors)) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn a_good_request_is_accepted_and_normalised() {
        let app = Application::from_json(&body(&[("name", r#""  Maria  ""#)]), today()).unwrap();
        assert_eq!(app.name, "Maria");
        assert_eq!(app.cpf.digits(), "12345678909");
        assert_eq!(app.amount, Money::from_cents(250_000));
        assert_eq!(app.terms.get(), 12);
        assert_eq!(app.income, Money::from_cents(150_050));
    }

    #[test]
    fn numbers_count_by_exact_value_in_any_json_form() {
        let ok = |k, v| bad_fields(&[(k, v)]).is_empty();
        assert!(ok("amount", "1.5e3"));
        assert!(ok("amount", r#""1500.00""#));
        assert!(ok("amount", "1000"));
        assert!(ok("amount", "4000.00"));
        assert!(ok("terms", "12.0"));
        assert!(ok("terms", r#""9""#));
        assert!(ok("terms", "0.6e1"));
        assert!(ok("income", "0"));
        assert!(ok("income", "1234.10"));
    }

    #[test]
    fn each_bad_field_is_named_once() {
        assert_eq!(bad_fields(&[("amount", "1000.001")]), ["amount"]);
        assert_eq!(bad_fields(&[("amount", "1e400")]), ["amount"]);
        assert_eq!(bad_fields(&[("amount", "999.99")]), ["amount"]);
        assert_eq!(bad_fields(&[("amount", "4000.01")]), ["amount"]);
        assert_eq!(bad_fields(&[("amount", "true")]), ["amount"]);
        assert_eq!(bad_fields(&[("amount", r#""1_500""#)]), ["amount"]);
        assert_eq!(bad_fields(&[("amount", r#""""#)]), ["amount"]);
        assert_eq!(bad_fields(&[("terms", "3")]), ["terms"]);
        assert_eq!(bad_fields(&[("terms", "12.5")]), ["terms"]);
        assert_eq!(bad_fields(&[("terms", "-6")]), ["terms"]);
        assert_eq!(bad_fields(&[("income", "-1")]), ["income"]);
        assert_eq!(bad_fields(&[("income", "0.001")]), ["income"]);
        assert_eq!(bad_fields(&[("name", r#""   ""#)]), ["name"]);
        assert_eq!(bad_fields(&[("name", "42")]), ["name"]);
        assert_eq!(bad_fields(&[("cpf", r#""111.111.111-11""#)]), ["cpf"]);
        assert_eq!(bad_fields(&[("cpf", "12345678909")]), ["cpf"]);
        assert_eq!(
            bad_fields(&[("birthdate", r#""2024-06-16""#)]),
            ["birthdate"]
        );
        assert_eq!(
            bad_fields(&[("birthdate", r#""2023-02-29""#)]),
            ["birthdate"]
        );
        assert_eq!(bad_fields(&[("birthdate", r#""1990-1-1""#)]), ["birthdate"]);
        assert_eq!(bad_fields(&[("birthdate", "")]), ["birthdate"]);
        assert_eq!(
            bad_fields(&[("amount", "null"), ("terms", "")]),
            ["amount", "terms"]
        );
    }

    #[test]
    fn name_limit_counts_characters_not_bytes() {
        let long = format!("\"{}\"", "é".repeat(200));
        assert!(bad_fields(&[("name", &long)]).is_empty());
        let too_long = format!("\"{}\"", "é".repeat(201));
        assert_eq!(bad_fields(&[("name", &too_long)]), ["name"]);
    }

    #[test]
    fn a_body_that_is_not_an_object_is_one_error() {
        for body in [&b"not json"[..], b"[1,2]", b"", b"{\"amount\":"] {
            let errors = Application::from_json(body, today()).unwrap_err().0;
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].field, "body");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert!(bad_fields(&[("extra", "[1,2,3]")]).is_empty());
    }
}
