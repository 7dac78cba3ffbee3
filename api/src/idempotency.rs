//! The `Idempotency-Key` header, and the fingerprint that tells a client's
//! retry from a reuse of its key for another request.

use axum::http::HeaderMap;
use loan_core::store::Idempotency;
use loan_core::{Application, FieldError};
use sha2::{Digest, Sha256};

/// The header's name, as clients write it.
pub const HEADER: &str = "Idempotency-Key";

/// Longest accepted key, in characters.
pub const KEY_MAX_LEN: usize = 255;

const KEY_RULE: &str = "must be 1 to 255 visible ASCII characters, sent at most once";

/// The request's idempotency key: `None` when the header is absent, an error
/// naming the header when it is present but not 1 to 255 visible ASCII
/// characters, or repeated.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, FieldError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let visible = bytes.iter().all(|b| b.is_ascii_graphic());
    if values.next().is_some() || bytes.is_empty() || bytes.len() > KEY_MAX_LEN || !visible {
        return Err(FieldError {
            field: HEADER.to_owned(),
            message: KEY_RULE.to_owned(),
        });
    }
    // Every byte was checked to be visible ASCII just above.
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The key and the fingerprint of `application`, ready for the store.
pub fn idempotency(key: Option<String>, application: &Application) -> Option<Idempotency> {
    key.map(|key| Idempotency {
        key,
        fingerprint: fingerprint(application),
    })
}

/// Hex SHA-256 of the validated application serialized as JSON. Two bodies
/// that validate to the same application (`2500` and `"2500.00"`, a masked
/// and a bare CPF) count as the same request.
pub fn fingerprint(application: &Application) -> String {
    // Cannot fail: the application is strings and integers, no maps and no
    // custom serializer that can refuse.
    let json = serde_json::to_vec(application).expect("an application serializes to JSON");
    hex::encode(Sha256::digest(&json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use jiff::civil::date;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(HEADER, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn an_absent_header_is_no_key() {
        assert_eq!(key(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn visible_ascii_up_to_255_is_a_key() {
        assert_eq!(key(&headers(&[b"a"])), Ok(Some("a".to_owned())));
        let longest = "k".repeat(KEY_MAX_LEN);
        assert_eq!(
            key(&headers(&[longest.as_bytes()])),
            Ok(Some(longest.clone()))
        );
        assert_eq!(
            key(&headers(&[b"retry-7/~!{}"])),
            Ok(Some("retry-7/~!{}".to_owned()))
        );
    }

    #[test]
    fn anything_else_names_the_header() {
        let too_long = "k".repeat(KEY_MAX_LEN + 1);
        let bad: [&[&[u8]]; 5] = [
            &[b""],
            &[too_long.as_bytes()],
            &[b"with space"],
            &[b"caf\xc3\xa9"],
            &[b"one", b"two"],
        ];
        for values in bad {
            let error = key(&headers(values)).unwrap_err();
            assert_eq!(error.field, HEADER, "{values:?}");
        }
    }

    #[test]
    fn the_fingerprint_follows_the_validated_application() {
        let today = date(2024, 6, 15);
        let parse = |body: &str| Application::from_json(body.as_bytes(), today).unwrap();
        let a = parse(
            r#"{"name":"Ana","cpf":"12345678909","birthdate":"1990-01-01",
                "amount":2500,"terms":12,"income":1500}"#,
        );
        let same = parse(
            r#"{"name":" Ana ","cpf":"123.456.789-09","birthdate":"1990-01-01",
                "amount":"2500.00","terms":"12","income":1.5e3}"#,
        );
        let other = parse(
            r#"{"name":"Ana","cpf":"12345678909","birthdate":"1990-01-01",
                "amount":2500,"terms":9,"income":1500}"#,
        );
        assert_eq!(fingerprint(&a), fingerprint(&same));
        assert_ne!(fingerprint(&a), fingerprint(&other));
        assert_eq!(fingerprint(&a).len(), 64);
    }
}
