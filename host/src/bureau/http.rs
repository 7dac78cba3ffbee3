//! The credit bureau over HTTP, as section 4 of the loan contract defines
//! it: `POST {base}/score` and `POST {base}/commitment` with the CPF in a
//! JSON body and the secret key in `x-api-key`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use loan_core::Cpf;
use loan_core::settings::{BureauSettings, Secret};
use reqwest::StatusCode;
use reqwest::header::{HeaderName, HeaderValue};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::{Bureau, BureauError, parse_commitment, parse_score};

/// Header carrying the bureau's secret key.
const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// Wait before the first extra try of a failed call; it doubles with each
/// further try. Short, because the whole evaluation is retried later anyway.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Why an [`HttpBureau`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpBureauError {
    /// The base URL is empty or not an absolute http(s) URL.
    #[error("the bureau URL {url:?} is not an absolute http or https URL")]
    Url {
        /// The URL as configured.
        url: String,
    },
    /// The key cannot be sent as a header value.
    #[error("the bureau API key must be visible ASCII without line breaks")]
    Key,
    /// The HTTP client could not be built.
    #[error("cannot build the bureau's HTTP client: {0}")]
    Client(String),
}

/// The credit bureau reached over HTTP.
///
/// A call that times out, cannot connect, or gets a 5xx or 429 answer is
/// tried again `retries` more times with exponential backoff; any other
/// non-2xx answer, a malformed body or a value out of range fails at once,
/// since asking again would get the same. The key is marked sensitive and
/// appears in no error message.
#[derive(Clone)]
pub struct HttpBureau {
    client: reqwest::Client,
    score_url: String,
    commitment_url: String,
    key: HeaderValue,
    retries: u32,
}

impl std::fmt::Debug for HttpBureau {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBureau")
            .field("score_url", &self.score_url)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl HttpBureau {
    /// The bureau at `settings.url`, with its key, timeout and retries.
    pub fn new(settings: &BureauSettings) -> Result<Self, HttpBureauError> {
        let BureauSettings {
            url,
            api_key,
            timeout_ms: _,
            retries,
            fixtures: _,
            simulator_address: _,
        } = settings;
        HttpBureau::with_url(url, api_key, settings.timeout(), *retries)
    }

    /// The bureau at `base_url` (for example the simulator's address).
    pub fn with_url(
        base_url: &str,
        api_key: &Secret,
        timeout: Duration,
        retries: u32,
    ) -> Result<Self, HttpBureauError> {
        let base = base_url.trim().trim_end_matches('/');
        let absolute = base.starts_with("http://") || base.starts_with("https://");
        if !absolute || base.len() <= "https://".len() {
            return Err(HttpBureauError::Url {
                url: base_url.to_owned(),
            });
        }
        let mut key = HeaderValue::from_str(api_key.expose()).map_err(|_| HttpBureauError::Key)?;
        key.set_sensitive(true);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| HttpBureauError::Client(e.to_string()))?;
        Ok(HttpBureau {
            client,
            score_url: format!("{base}/score"),
            commitment_url: format!("{base}/commitment"),
            key,
            retries,
        })
    }

    /// Posts the CPF to `url` until it gets an answer or runs out of tries,
    /// and returns the raw JSON text of the field `field` of the answer.
    async fn ask(&self, url: &str, field: &'static str, cpf: &Cpf) -> Result<String, BureauError> {
        let mut backoff = FIRST_BACKOFF;
        let mut tries_left = self.retries;
        loop {
            match self.ask_once(url, field, cpf).await {
                Err(Failure::Transient(reason)) if tries_left > 0 => {
                    tracing::debug!(question = field, %reason, "bureau call failed; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    tries_left -= 1;
                }
                Err(Failure::Transient(reason)) => {
                    let tries = self.retries + 1;
                    return Err(BureauError::Unavailable(format!(
                        "{field}: {reason} (after {tries} tries)"
                    )));
                }
                Err(Failure::Final(error)) => return Err(error),
                Ok(raw) => return Ok(raw),
            }
        }
    }

    async fn ask_once(&self, url: &str, field: &'static str, cpf: &Cpf) -> Result<String, Failure> {
        let response = self
            .client
            .post(url)
            .header(API_KEY_HEADER, self.key.clone())
            .json(&serde_json::json!({ "cpf": cpf.digits() }))
            .send()
            .await
            .map_err(|e| Failure::Transient(describe(&e)))?;

        let status = response.status();
        if !status.is_success() {
            let reason = format!("answered {status}");
            return Err(
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    Failure::Transient(reason)
                } else {
                    Failure::Final(BureauError::Unavailable(format!("{field}: {reason}")))
                },
            );
        }

        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::Transient(describe(&e)))?;
        // Fields are kept as raw JSON text so that numbers keep their exact
        // value: `{"score": 800}`, `{"commitment": 0.8}`.
        let answer: HashMap<String, Box<RawValue>> =
            serde_json::from_slice(&body).map_err(|_| {
                Failure::Final(BureauError::InvalidAnswer(format!(
                    "{field}: the answer is not a JSON object"
                )))
            })?;
        let raw = answer.get(field).ok_or_else(|| {
            Failure::Final(BureauError::InvalidAnswer(format!(
                "{field}: the answer has no field {field:?}"
            )))
        })?;
        Ok(raw.get().to_owned())
    }
}

/// How one try went wrong.
enum Failure {
    /// Worth another try: a timeout, a connection failure, a 5xx or 429.
    Transient(String),
    /// Asking again would get the same.
    Final(BureauError),
}

/// A transport error in words, without the URL (which could carry
/// credentials in its user-info part).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the answer was cut short".to_owned()
    } else {
        "the request failed".to_owned()
    }
}

#[async_trait]
impl Bureau for HttpBureau {
    async fn score(&self, cpf: &Cpf) -> Result<u16, BureauError> {
        let raw = self.ask(&self.score_url, "score", cpf).await?;
        parse_score(&raw)
    }

    async fn commitment(&self, cpf: &Cpf) -> Result<Decimal, BureauError> {
        let raw = self.ask(&self.commitment_url, "commitment", cpf).await?;
        parse_commitment(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_http_urls_are_accepted() {
        let key = Secret::new("k");
        let timeout = Duration::from_secs(1);
        assert!(HttpBureau::with_url("http://127.0.0.1:1", &key, timeout, 0).is_ok());
        assert!(HttpBureau::with_url("https://bureau.example/", &key, timeout, 0).is_ok());
        for bad in ["", "127.0.0.1:8090", "ftp://x", "http://"] {
            assert!(
                HttpBureau::with_url(bad, &key, timeout, 0).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let bureau = HttpBureau::with_url(
            "http://127.0.0.1:1",
            &Secret::new("s3cr3t"),
            Duration::ZERO,
            0,
        )
        .unwrap();
        assert!(!format!("{bureau:?}").contains("s3cr3t"));
        assert!(
            HttpBureau::with_url("http://bureau", &Secret::new("bad\nkey"), Duration::ZERO, 0)
                .unwrap_err()
                .to_string()
                .contains("API key")
        );
    }
}
