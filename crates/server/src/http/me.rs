use serde::Serialize;

use super::AuthUser;
use crate::error::Ok200;

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Me {
    user_id: String,
    role: String,
    role_class: &'static str,
    name: Option<String>,
}

/// Who the token says the caller is; a quick way to check a token.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "operations",
    summary = "Who the token says the caller is",
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = crate::http::envelope::Envelope<Me>), (status = "4XX", description = "refused (CONTRACT §2): bad_request, unauthorized, token_expired, forbidden, not_found, conflict, expired, rate_limited, too_large", body = crate::http::envelope::ErrorEnvelope))
)]
pub(super) async fn me(AuthUser(p): AuthUser) -> Ok200<Me> {
    Ok200(Me {
        user_id: p.user_id.to_string(),
        role: p.role.to_string(),
        role_class: p.class.as_str(),
        name: p.name,
    })
}
