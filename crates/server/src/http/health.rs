use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Ok200};
use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<serde_json::Value>))
)]
pub(super) async fn healthz() -> Ok200<Value> {
    Ok200(json!({ "status": "ok" }))
}

/// Readiness: the database answers within two seconds and, with several
/// nodes, the bus listener is connected and not far behind, and Redis
/// answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness: the database (and the bus, Redis with several nodes) answer",
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<serde_json::Value>), (status = 503, description = "a dependency does not answer", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn readyz(State(state): State<AppState>) -> ApiResult<Value> {
    match tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => {
            let bus = state.bus.as_ref().map(|b| b.ready());
            let redis = state.redis.as_ref().map(|r| r.ready());
            if let Some(Err(why)) = bus.filter(Result::is_err).or(redis) {
                tracing::warn!(why, "not ready");
                return Err(ApiError::Unavailable(why));
            }
            Ok(Ok200(json!({ "status": "ready" })))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable("the database is unreachable".into()))
        }
        Err(_) => Err(ApiError::Unavailable(
            "the database did not answer in time".into(),
        )),
    }
}

/// Prometheus text exposition; not enveloped, scrapers expect the raw format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics (text exposition format)",
    responses((status = 200, description = "the metrics", content_type = "text/plain", body = String))
)]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.run_upkeep();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
