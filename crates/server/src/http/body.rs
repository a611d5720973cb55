//! Request bodies and query strings, parsed so that every failure is the
//! contract's `bad_request` envelope (axum's own rejections are plain text).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

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

pub(crate) use crate::input::IdInput;

/// A resource id from the path. One no id could look like (over-long,
/// control characters) is simply not found, without touching the database.
pub(crate) struct PathId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("not found"))?;
        if consultd_domain::usable_id(&id) {
            Ok(Self(id))
        } else {
            Err(ApiError::not_found("not found"))
        }
    }
}

/// The query string, decoded once; axum's own `Query` rejects with plain
/// text, and several routes accept two spellings of a name.
pub(crate) struct QueryParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or_default();
        Ok(Self(
            form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}

impl QueryParams {
    /// The first value of any of `names`, as sent (possibly empty).
    pub(crate) fn get(&self, names: &[&str]) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
    }

    /// [`QueryParams::get`], with an empty value read as absent.
    pub(crate) fn text(&self, names: &[&str]) -> Option<&str> {
        self.get(names).filter(|v| !v.is_empty())
    }
}
