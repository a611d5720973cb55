//! Request bodies and query strings, parsed so that every failure is the
//! contract's `bad_request` envelope (axum's own rejections are plain text).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use consultd_domain::UserId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body. The content type is not required (some clients omit it);
/// an empty body reads as `{}`, so routes whose fields are all optional
/// accept a bare POST.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.max_body_bytes;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::TooLarge(format!("the body is larger than {limit} bytes")))?;
        let raw: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let value: serde_json::Value = serde_json::from_slice(raw)
            .map_err(|_| ApiError::bad_request("the body is not valid JSON"))?;
        if !value.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }
}

/// An id given as a JSON string or integer (the direct call app sends `doctor_id: 123`);
/// normalised to a string, like the token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdInput(pub String);

impl<'de> Deserialize<'de> for IdInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) if !s.trim().is_empty() => s,
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => {
                return Err(serde::de::Error::custom(
                    "an id must be a non-empty string or an integer",
                ));
            }
        };
        if usable_id(&raw) {
            Ok(Self(raw))
        } else {
            Err(serde::de::Error::custom(
                "an id must be at most 256 characters, without control characters",
            ))
        }
    }
}

/// What any id (a user's, a schedule's, a call's) can look like at all.
fn usable_id(raw: &str) -> bool {
    !raw.is_empty() && raw.len() <= UserId::MAX_LEN && !raw.chars().any(char::is_control)
}

/// A resource id from the path. One no id could look like (over-long,
/// control characters) is simply not found, without touching the database.
pub(crate) struct PathId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("not found"))?;
        if usable_id(&id) {
            Ok(Self(id))
        } else {
            Err(ApiError::not_found("not found"))
        }
    }
}

/// The query string as key/value pairs.
pub(crate) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The first value of any of `names`.
pub(crate) fn query_value<'a>(pairs: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| names.contains(&k.as_str()))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strings_or_integers() {
        let ok: IdInput = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(ok.0, "abc");
        let ok: IdInput = serde_json::from_str("123").unwrap();
        assert_eq!(ok.0, "123");
        let long = format!("\"{}\"", "x".repeat(257));
        for bad in [
            "1.5",
            "true",
            "null",
            "\"\"",
            "\"  \"",
            "[1]",
            "{}",
            "\"a\\u0000b\"",
            &long,
        ] {
            assert!(serde_json::from_str::<IdInput>(bad).is_err(), "{bad}");
        }
    }
}
