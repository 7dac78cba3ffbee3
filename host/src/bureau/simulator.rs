//! A simulator of the credit bureau, serving section 4 of the loan contract
//! for the default mode, local runs and tests.
//!
//! Answers are a deterministic function of the CPF, spread over the whole
//! range, unless a fixture file gives them. A fixture file maps CPFs to
//! answers; each answer is a JSON value sent back verbatim (so it may be out
//! of range or of the wrong type) or `{"status": N}` to fail with that HTTP
//! status:
//!
//! ```json
//! {"12345678909": {"score": 800, "commitment": 0.47},
//!  "52998224725": {"score": {"status": 503}, "commitment": 1.5}}
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use loan_core::settings::Secret;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// What the simulator answers to one question for one CPF.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// This JSON text, verbatim, as the value of the answer's field.
    Value(String),
    /// Fail with this HTTP status.
    Status(StatusCode),
}

/// The fixture answers for one CPF; a missing one is derived from the CPF.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Entry {
    score: Option<Answer>,
    commitment: Option<Answer>,
}

/// Explicit simulator answers by CPF (11 bare digits).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fixtures {
    entries: HashMap<String, Entry>,
}

/// Why a fixture file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FixturesError {
    /// The file could not be read.
    #[error("cannot read bureau fixtures {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not in the fixture format.
    #[error("bureau fixtures {origin} are malformed: {reason}")]
    Malformed {
        /// The file, or `inline`.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
struct RawEntry {
    score: Option<Box<RawValue>>,
    commitment: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct RawStatus {
    status: u16,
}

impl Fixtures {
    /// Reads a fixture file.
    pub fn load(path: &Path) -> Result<Self, FixturesError> {
        let text = std::fs::read_to_string(path).map_err(|source| FixturesError::Read {
            path: path.to_owned(),
            source,
        })?;
        Fixtures::parse(&text, &path.display().to_string())
    }

    /// Parses fixtures from JSON text.
    pub fn from_json(text: &str) -> Result<Self, FixturesError> {
        Fixtures::parse(text, "inline")
    }

    fn parse(text: &str, origin: &str) -> Result<Self, FixturesError> {
        let malformed = |reason: String| FixturesError::Malformed {
            origin: origin.to_owned(),
            reason,
        };
        let raw: HashMap<String, RawEntry> =
            serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
        let mut entries = HashMap::with_capacity(raw.len());
        for (cpf, entry) in raw {
            let digits: String = cpf.chars().filter(char::is_ascii_digit).collect();
            if digits.len() != 11 {
                return Err(malformed(format!("key {cpf:?} is not an 11-digit CPF")));
            }
            let answer = |raw: Option<Box<RawValue>>| -> Result<Option<Answer>, FixturesError> {
                let Some(raw) = raw else { return Ok(None) };
                let Ok(RawStatus { status }) = serde_json::from_str(raw.get()) else {
                    return Ok(Some(Answer::Value(raw.get().to_owned())));
                };
                StatusCode::from_u16(status)
                    .map(|status| Some(Answer::Status(status)))
                    .map_err(|_| malformed(format!("{status} is not an HTTP status")))
            };
            let entry = Entry {
                score: answer(entry.score)?,
                commitment: answer(entry.commitment)?,
            };
            entries.insert(digits, entry);
        }
        Ok(Fixtures { entries })
    }

    fn answer(&self, cpf: &str, question: Question) -> Answer {
        let fixed = self.entries.get(cpf).and_then(|entry| match question {
            Question::Score => entry.score.clone(),
            Question::Commitment => entry.commitment.clone(),
        });
        fixed.unwrap_or_else(|| Answer::Value(derived(cpf, question)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Question {
    Score,
    Commitment,
}

impl Question {
    fn field(self) -> &'static str {
        match self {
            Question::Score => "score",
            Question::Commitment => "commitment",
        }
    }
}

/// The simulated answer for a CPF without a fixture: a score from 0 to 1000
/// or a commitment from 0.00 to 1.00, from a hash of the digits.
fn derived(cpf: &str, question: Question) -> String {
    let hash = Sha256::new()
        .chain_update(question.field())
        .chain_update(b":")
        .chain_update(cpf)
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    let n = u64::from_be_bytes(first);
    match question {
        Question::Score => (n % 1001).to_string(),
        Question::Commitment => {
            let hundredths = n % 101;
            format!("{}.{:02}", hundredths / 100, hundredths % 100)
        }
    }
}

struct Simulator {
    api_key: Secret,
    fixtures: Fixtures,
}

/// The bureau simulator: `POST /score` and `POST /commitment`, each taking
/// `{"cpf": "<11 digits>"}` and the `x-api-key` header. A missing or wrong
/// key gets 401, a malformed body 400.
pub fn simulator_router(api_key: Secret, fixtures: Fixtures) -> Router {
    let state = Arc::new(Simulator { api_key, fixtures });
    Router::new()
        .route("/score", post(score))
        .route("/commitment", post(commitment))
        .with_state(state)
}

async fn score(State(sim): State<Arc<Simulator>>, headers: HeaderMap, body: Bytes) -> Response {
    sim.reply(&headers, &body, Question::Score)
}

async fn commitment(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.reply(&headers, &body, Question::Commitment)
}

#[derive(Deserialize)]
struct Request {
    cpf: String,
}

impl Simulator {
    fn reply(&self, headers: &HeaderMap, body: &[u8], question: Question) -> Response {
        let key = headers.get("x-api-key").map(|v| v.as_bytes());
        if !key.is_some_and(|key| same_secret(key, self.api_key.expose().as_bytes())) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong x-api-key");
        }
        let cpf = match serde_json::from_slice::<Request>(body) {
            Ok(Request { cpf }) if cpf.len() == 11 && cpf.bytes().all(|b| b.is_ascii_digit()) => {
                cpf
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "expected {\"cpf\": \"<11 digits>\"}",
                );
            }
        };
        match self.fixtures.answer(&cpf, question) {
            Answer::Status(status) => error(status, "failing as the fixtures say"),
            Answer::Value(raw) => json(
                StatusCode::OK,
                format!("{{\"{}\": {raw}}}", question.field()),
            ),
        }
    }
}

/// Compares secrets in time independent of where they first differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, serde_json::json!({ "error": message }).to_string())
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bureau::{parse_commitment, parse_score};

    #[test]
    fn derived_answers_are_in_range_and_stable() {
        let mut scores = Vec::new();
        for i in 0..200u64 {
            let cpf = format!("{:011}", 10_000_000_000 + i * 7919);
            let score = derived(&cpf, Question::Score);
            assert_eq!(score, derived(&cpf, Question::Score));
            scores.push(parse_score(&score).unwrap());
            parse_commitment(&derived(&cpf, Question::Commitment)).unwrap();
        }
        // Spread over the range, not bunched at one end.
        assert!(scores.iter().any(|s| *s < 300));
        assert!(scores.iter().any(|s| *s > 700));
    }

    #[test]
    fn fixtures_hold_values_verbatim_and_statuses() {
        let fixtures = Fixtures::from_json(
            r#"{"123.456.789-09": {"score": 1001, "commitment": {"status": 503}},
                "52998224725": {"commitment": 0.470}}"#,
        )
        .unwrap();
        assert_eq!(
            fixtures.answer("12345678909", Question::Score),
            Answer::Value("1001".into())
        );
        assert_eq!(
            fixtures.answer("12345678909", Question::Commitment),
            Answer::Status(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            fixtures.answer("52998224725", Question::Commitment),
            Answer::Value("0.470".into())
        );
        assert_eq!(
            fixtures.answer("52998224725", Question::Score),
            Answer::Value(derived("52998224725", Question::Score))
        );
    }

    #[test]
    fn malformed_fixtures_are_refused() {
        assert!(Fixtures::from_json("[]").is_err());
        assert!(Fixtures::from_json(r#"{"123": {"score": 1}}"#).is_err());
        assert!(Fixtures::from_json(r#"{"12345678909": {"score": {"status": 42}}}"#).is_err());
        assert_eq!(Fixtures::from_json("{}").unwrap(), Fixtures::default());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
