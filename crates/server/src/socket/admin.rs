//! The admin view's live feed. `admin:subscribe` puts an admin's socket
//! among this node's watchers and answers with a snapshot; then, while this
//! node has a watcher, a fresh snapshot is pushed to them all as
//! `admin:snapshot` every [`PUSH_EVERY`]. Anyone else gets `forbidden` and
//! is never a watcher.
//!
//! A snapshot is the service's [`Board`] (ids, statuses, times: no SDP,
//! candidate or chat text) and this node's counters. With several nodes,
//! the board is the same everywhere and the counters are the node's own.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value as Json, json};
use socketioxide::SocketIo;

use super::ctx::SocketCtx;
use super::node::SocketState;
use super::rooms::Sock;
use crate::activity::{Activity, OutboxView, SAMPLE_EVERY, Sample};
use crate::error::ApiError;
use crate::service::Board;
use crate::state::AppState;

/// When an admin socket's token expires (Unix seconds). A watcher is
/// disconnected once it has: its client must come back with a fresh token,
/// so a revoked admin stops seeing the board when their token runs out.
#[derive(Debug, Clone, Copy)]
pub(super) struct TokenExpiry(pub(super) i64);

impl TokenExpiry {
    /// At `now` (Unix seconds), on the server's clock.
    fn has_passed(self, now: i64) -> bool {
        self.0 <= now
    }
}

/// The room of this node's watchers (user rooms are `user:<id>`).
const WATCHERS: &str = "admin:watchers";
/// How often watchers get a fresh snapshot.
pub const PUSH_EVERY: Duration = Duration::from_secs(2);
pub const SNAPSHOT_EVENT: &str = "admin:snapshot";

/// What a watcher sees.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminSnapshot {
    pub board: Board,
    pub node: NodeView,
}

/// This node's own counters.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// Sockets connected to this node now.
    pub sockets: u64,
    /// The same, by the token's role (roles with none left out).
    pub sockets_by_role: BTreeMap<String, u64>,
    pub sample_every_secs: u64,
    /// Up to five minutes of samples, oldest first.
    pub samples: Vec<Sample>,
    /// The webhook outbox as this node's delivery worker last read it;
    /// null when webhooks are off.
    pub outbox: Option<OutboxView>,
}

fn snapshot(activity: &Activity, board: Board) -> AdminSnapshot {
    let sockets_by_role = activity.sockets_by_role();
    AdminSnapshot {
        board,
        node: NodeView {
            sockets: sockets_by_role.values().sum(),
            sockets_by_role,
            sample_every_secs: SAMPLE_EVERY.as_secs(),
            samples: activity.samples(),
            outbox: activity.outbox(),
        },
    }
}

/// `admin:subscribe`: the payload is ignored.
pub(super) async fn subscribe(
    state: &SocketState,
    ctx: &SocketCtx,
    s: &Sock,
) -> Result<Json, ApiError> {
    // Only admins carry an expiry; everyone else hears `forbidden` below.
    if s.extensions
        .get::<TokenExpiry>()
        .is_some_and(|exp| exp.has_passed(state.clock.now().timestamp()))
    {
        return Err(ApiError::TokenExpired);
    }
    let board = state.services.admin.board(&ctx.principal).await?;
    s.join(WATCHERS);
    tracing::info!("admin watching");
    Ok(json!({ "ok": true, "snapshot": snapshot(&state.activity, board) }))
}

/// `admin:unsubscribe`: no more snapshots (harmless for anyone).
pub(super) fn unsubscribe(s: &Sock) -> Json {
    s.leave(WATCHERS);
    json!({ "ok": true })
}

/// Pushes snapshots to this node's watchers until the task is dropped.
pub async fn feed(io: SocketIo, app: AppState) {
    let mut every = tokio::time::interval(PUSH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // `None` once the Socket.IO layer has closed (shutting down).
        let Some(root) = io.of("/") else {
            continue;
        };
        let now = app.clock.now().timestamp();
        let mut watched = false;
        // `to` takes the operators: the emit below asks for them again.
        for socket in root.to(WATCHERS).sockets() {
            let expired = socket
                .extensions
                .get::<TokenExpiry>()
                .is_none_or(|exp| exp.has_passed(now));
            if expired {
                tracing::info!(sid = %socket.id, "admin watcher's token expired: disconnected");
                if let Err(e) = socket.disconnect() {
                    tracing::debug!(error = %e, "expired watcher already gone");
                }
            } else {
                watched = true;
            }
        }
        if !watched {
            continue;
        }
        match app.services.admin.read_board().await {
            Ok(board) => {
                let snap = snapshot(&app.activity, board);
                let Some(root) = io.of("/") else {
                    continue;
                };
                if let Err(e) = root.to(WATCHERS).emit(SNAPSHOT_EVENT, &snap).await {
                    tracing::debug!(error = %e, "admin snapshot not sent");
                }
            }
            Err(e) => tracing::warn!(error = %e, "admin board unreadable"),
        }
    }
}
