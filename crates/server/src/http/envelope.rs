//! The REST envelopes as the API documents show them (`ApiError`, `Ok200`
//! and `Created` in `crate::error` produce them): schema types only, named
//! by the handlers' `#[utoipa::path]` attributes.

use utoipa::ToSchema;

/// Every success: `{ success: true, data }` (CONTRACT §2).
#[derive(ToSchema)]
pub struct Envelope<T> {
    /// Always `true`.
    pub success: bool,
    pub data: T,
}

/// Every refusal: `{ success: false, error: { code, message } }`.
#[derive(ToSchema)]
pub struct ErrorEnvelope {
    /// Always `false`.
    pub success: bool,
    pub error: ErrorBody,
}

#[derive(ToSchema)]
pub struct ErrorBody {
    /// One of the contract's words: `bad_request`, `unauthorized`,
    /// `token_expired`, `forbidden`, `not_found`, `conflict`, `expired`,
    /// `rate_limited`, `too_large`, `internal`, `unavailable`.
    pub code: String,
    pub message: String,
}
