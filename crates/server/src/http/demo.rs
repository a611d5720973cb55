//! The browser demo (`--demo`): the page in `examples/web`, the
//! socket.io-client bundle its `npm ci` installed, and a token counter so a
//! visitor can be a doctor or a patient without another backend. Mounted
//! only when asked for: anyone may mint a host or guest token here.

use std::path::Path;

use axum::Router;
use axum::extract::State;
use axum::response::Redirect;
use axum::routing::{get, post};
use consultd_domain::RoleClass;
use serde::{Deserialize, Serialize};
use tower_http::services::{ServeDir, ServeFile};

use super::body::JsonBody;
use crate::error::{ApiError, Created};
use crate::state::AppState;

/// Where `npm ci` in the demo directory puts the browser bundle.
pub(crate) const CLIENT_BUNDLE: &str = "node_modules/socket.io-client/dist/socket.io.min.js";
/// The PeerJS client's browser bundle, for the `?media=peerjs` variant.
pub(crate) const PEERJS_BUNDLE: &str = "node_modules/peerjs/dist/peerjs.min.js";

/// Long enough for a demo call, short enough that a leaked one is soon useless.
const DEMO_TOKEN_TTL_SECS: u64 = 2 * 60 * 60;
const MAX_NAME_CHARS: usize = 80;

pub(super) fn routes(dir: &Path) -> Router<AppState> {
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/token", post(token))
        .route_service(
            "/demo/socket.io.min.js",
            ServeFile::new(dir.join(CLIENT_BUNDLE)),
        )
        .route_service(
            "/demo/peerjs.min.js",
            ServeFile::new(dir.join(PEERJS_BUNDLE)),
        )
        .nest_service("/demo/", ServeDir::new(dir))
}

#[derive(Deserialize)]
struct TokenRequest {
    role: String,
    name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DemoToken {
    token: String,
    user_id: String,
    role: String,
    name: Option<String>,
}

/// `POST /demo/token {role, name?}`: a fresh user of a host or guest role.
async fn token(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<Created<DemoToken>, ApiError> {
    match state.auth.role_class(&req.role) {
        Some(RoleClass::Host | RoleClass::Guest) => {}
        Some(RoleClass::Admin) => {
            return Err(ApiError::forbidden("the demo mints no admin tokens"));
        }
        None => {
            return Err(ApiError::bad_request(format!(
                "unknown role `{}`",
                req.role
            )));
        }
    }
    let name = req
        .name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
    {
        return Err(ApiError::bad_request(format!(
            "a name has at most {MAX_NAME_CHARS} characters"
        )));
    }
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let user_id = format!("demo-{}-{}", req.role, &suffix[..8]);
    let token = state
        .auth
        .mint(&user_id, &req.role, name.as_deref(), DEMO_TOKEN_TTL_SECS)
        .map_err(ApiError::internal)?;
    Ok(Created(DemoToken {
        token,
        user_id,
        role: req.role,
        name,
    }))
}

/// Says where the demo is, that it is not for production, and what is
/// missing when the page's `npm ci` has not been run.
/// The address a browser on this machine opens: a wildcard bind
/// (`0.0.0.0`, `::`) is not an address to browse to, and the camera needs
/// a secure context, which `localhost` is and a LAN address over http is not.
fn browsable(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

pub(crate) fn announce(dir: &Path, addr: std::net::SocketAddr) {
    tracing::warn!(
        url = %format!("http://{}/demo/", browsable(addr)),
        dir = %dir.display(),
        "demo mode: anyone can mint doctor/patient tokens at /demo/token; never enable it in production"
    );
    if !dir.join("index.html").is_file() {
        tracing::error!(dir = %dir.display(), "no demo page here: set DEMO_DIR to examples/web");
    } else if !dir.join(CLIENT_BUNDLE).is_file() {
        tracing::error!(
            dir = %dir.display(),
            "the demo needs socket.io-client: run `npm ci` in this directory"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::browsable;

    #[test]
    fn a_wildcard_or_loopback_bind_is_announced_as_localhost() {
        for bound in ["0.0.0.0:4000", "[::]:4000", "127.0.0.1:4000"] {
            assert_eq!(browsable(bound.parse().unwrap()), "localhost:4000");
        }
        assert_eq!(
            browsable("192.168.1.5:4000".parse().unwrap()),
            "192.168.1.5:4000"
        );
    }
}
