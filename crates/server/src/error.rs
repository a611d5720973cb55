//! One error type for the whole server, mapped both to HTTP responses (the
//! `{success:false,error}` envelope) and to Socket.IO acks (`{ok:false,error}`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use consultd_domain::{CallError, ChatError, DirectError, QueueError, Status, TutoringStatus};
use consultd_persistence::RepoError;
use serde_json::{Value, json};

use crate::auth::AuthError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid token is required")]
    Unauthorized,
    #[error("the token has expired")]
    TokenExpired,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Expired(String),
    #[error("too many requests; slow down")]
    RateLimited,
    #[error("{0}")]
    TooLarge(String),
    /// The cause was logged where it happened; clients only learn that it failed.
    #[error("internal error")]
    Internal,
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::Forbidden(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }

    /// Logs the cause once, here, and hides it from the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::Internal
    }

    /// The stable, snake_case code clients switch on (CONTRACT §2).
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::TokenExpired => "token_expired",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Expired(_) => "expired",
            Self::RateLimited => "rate_limited",
            Self::TooLarge(_) => "too_large",
            Self::Internal => "internal",
            Self::Unavailable(_) => "unavailable",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::TokenExpired => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Expired(_) => StatusCode::GONE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `{ code, message }`, the part both envelopes share.
    pub fn body(&self) -> Value {
        json!({ "code": self.code(), "message": self.to_string() })
    }

    /// The Socket.IO form: `{ ok: false, error: { code, message } }`.
    pub fn to_ack(&self) -> Value {
        json!({ "ok": false, "error": self.body() })
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized => Self::Unauthorized,
            AuthError::Expired => Self::TokenExpired,
        }
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Conflict => Self::Conflict("the resource changed; reload and retry".into()),
            RepoError::NotFound => Self::not_found("not found"),
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut res = (
            status,
            Json(json!({ "success": false, "error": self.body() })),
        )
            .into_response();
        if matches!(self, Self::Unauthorized | Self::TokenExpired) {
            res.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

/// A successful REST response: `{ success: true, data }`, 200.
pub struct Ok200<T>(pub T);

/// A creation: `{ success: true, data }`, 201.
pub struct Created<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Ok200<T> {
    fn into_response(self) -> Response {
        Json(json!({ "success": true, "data": self.0 })).into_response()
    }
}

impl<T: serde::Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (
            StatusCode::CREATED,
            Json(json!({ "success": true, "data": self.0 })),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<Ok200<T>, ApiError>;

// ---- the domain's refusals, in the contract's words (CONTRACT §2) ----------

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::NotYours => ApiError::not_found("not found"),
            QueueError::BadInput(m) => ApiError::bad_request(m),
            QueueError::Illegal(m) => ApiError::Conflict(m.to_owned()),
        }
    }
}

/// A call's refusal in §4/§5's words (queue and direct calls).
impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::NotParticipant => ApiError::not_found("no such call session"),
            CallError::WrongParty(_) => ApiError::forbidden(e.to_string()),
            CallError::Illegal { from, .. } => {
                ApiError::Conflict(format!("the call is {}", from.as_str()))
            }
            CallError::Expired => ApiError::Expired("the invitation has expired".into()),
            CallError::SelfCall | CallError::BadPeerId => ApiError::bad_request(e.to_string()),
        }
    }
}

/// A call's refusal in §6's words (a tutoring session is a call).
pub fn session_refusal(e: CallError) -> ApiError {
    match e {
        CallError::NotParticipant => ApiError::not_found("no such session"),
        CallError::WrongParty("invitee") => ApiError::forbidden("only the teacher may do this"),
        CallError::WrongParty(_) => ApiError::forbidden("only the learner may do this"),
        CallError::Illegal { from, .. } => ApiError::Conflict(format!(
            "the session is {}",
            TutoringStatus::of(from).as_str()
        )),
        CallError::Expired => ApiError::Expired("the session request has expired".into()),
        CallError::SelfCall => ApiError::bad_request("you cannot book a session with yourself"),
        CallError::BadPeerId => ApiError::bad_request(e.to_string()),
    }
}

impl From<DirectError> for ApiError {
    fn from(e: DirectError) -> Self {
        match e {
            DirectError::SelfCall => ApiError::bad_request(e.to_string()),
            DirectError::AppointmentTaken | DirectError::HostBusy | DirectError::CallerBusy => {
                ApiError::Conflict(e.to_string())
            }
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::NotParticipant => ApiError::not_found("no such chat session"),
            ChatError::WrongRole(m) => ApiError::forbidden(m),
            ChatError::Taken | ChatError::Illegal { .. } => ApiError::Conflict(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_code_a_status_and_an_ack() {
        let all = [
            (ApiError::bad_request("x"), "bad_request", 400),
            (ApiError::Unauthorized, "unauthorized", 401),
            (ApiError::TokenExpired, "token_expired", 401),
            (ApiError::forbidden("x"), "forbidden", 403),
            (ApiError::not_found("x"), "not_found", 404),
            (ApiError::Conflict("x".into()), "conflict", 409),
            (ApiError::Expired("x".into()), "expired", 410),
            (ApiError::TooLarge("x".into()), "too_large", 413),
            (ApiError::RateLimited, "rate_limited", 429),
            (ApiError::Internal, "internal", 500),
            (ApiError::Unavailable("x".into()), "unavailable", 503),
        ];
        for (err, code, status) in all {
            assert_eq!(err.code(), code);
            assert_eq!(err.status().as_u16(), status, "{code}");
            let ack = err.to_ack();
            assert_eq!(ack["ok"], false);
            assert_eq!(ack["error"]["code"], code);
            assert!(
                ack["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }

    #[test]
    fn repository_errors_map_without_leaking_causes() {
        assert_eq!(ApiError::from(RepoError::Conflict).code(), "conflict");
        assert_eq!(ApiError::from(RepoError::NotFound).code(), "not_found");
        let internal = ApiError::from(RepoError::BadUrl("secret detail".into()));
        assert_eq!(internal, ApiError::Internal);
        assert!(!internal.to_ack().to_string().contains("secret detail"));
    }
}
