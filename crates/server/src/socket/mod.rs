//! Socket.IO on the root namespace.
//!
//! Two choices here carry the contract's guarantees:
//! - Everything a socket needs — identity, its `user:<id>` room, its event
//!   handler — is set up in the connect *middleware*, which socketioxide runs
//!   before it sends CONNECT. An event emitted inside the client's `connect`
//!   callback therefore always finds its handler (socketioxide spawns the
//!   connect *handler* only after CONNECT is out).
//! - Events go through one synchronous [`dispatch::Dispatcher`] instead of
//!   socketioxide's per-event spawned tasks, so one socket's events are
//!   handled in the order they arrived.

pub mod admin;
mod chat;
mod connect;
mod ctx;
mod dispatch;
mod head;
mod hub;
mod local;
mod node;
mod outbox;
mod owed;
mod payload;
mod reply;
pub(crate) mod rooms;
mod send;
mod shared_rooms;
mod signal;
mod told;

use socketioxide::SocketIo;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;

use std::sync::Arc;

use node::SocketState;

use crate::config::Config;
use crate::state::AppState;

pub use connect::resync_everyone;
pub use dispatch::EVENTS;
pub use head::detach_engine_head;
pub(crate) use hub::RoomHub;
pub use local::LocalRooms;
pub use outbox::{GUESTS_ROOM, LocalOutbox};
pub use owed::{Cooling, OwedIndex};
pub use rooms::Rooms;
pub use shared_rooms::{STALE_MS, SharedRooms};

/// Builds the Socket.IO layer for axum and the handle used to emit and to close.
pub fn layer(config: &Config) -> (SocketIoLayer, SocketIo) {
    SocketIo::builder()
        .max_payload(config.engine_max_payload())
        .max_buffer_size(config.socket_buffer)
        .ws_read_buffer_size(config.ws_read_buffer)
        .ping_interval(std::time::Duration::from_secs(config.ping_interval_secs))
        .ping_timeout(std::time::Duration::from_secs(config.ping_timeout_secs))
        .build_layer()
}

/// Installs the root namespace: authentication and wiring before CONNECT.
pub(crate) fn register(io: &SocketIo, app: AppState, hub: Arc<dyn RoomHub>, owed: Arc<OwedIndex>) {
    let state = SocketState::new(app, hub, owed);
    let on_connect = {
        let state = state.clone();
        move |socket: SocketRef| connect::on_connect(state.clone(), socket)
    };
    let authenticate = move |socket: SocketRef, TryData(auth): TryData<serde_json::Value>| {
        let state = state.clone();
        async move { connect::authenticate(state, socket, auth.ok()).await }
    };
    io.ns("/", on_connect.with(authenticate));
}
