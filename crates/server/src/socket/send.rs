//! Sending to one socket of this node, and what happens when it cannot
//! keep up.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::{SendError, SocketError};

use super::ctx::SocketCtx;
use super::rooms::Sock;
use crate::telemetry::{RELAY_DROPPED, RELAYED, SOCKETS_OVERFLOWED};

/// A relayed signal, sent as the sender wrote it.
pub(crate) fn send_raw(socket: &Sock, event: &'static str, body: &RawValue) {
    match socket.emit(event, body) {
        Ok(()) => metrics::counter!(RELAYED).increment(1),
        Err(e) => {
            metrics::counter!(RELAY_DROPPED).increment(1);
            tracing::debug!(sid = %socket.id, error = %e, "relay not delivered");
            if is_full(&e) {
                cut_off(socket);
            }
        }
    }
}

pub(crate) fn send<T: Serialize + ?Sized>(socket: &Sock, event: &str, body: &T) {
    if let Err(e) = socket.emit(event, body) {
        tracing::debug!(sid = %socket.id, event, error = %e, "room event not delivered");
        if is_full(&e) {
            cut_off(socket);
        }
    }
}

fn is_full(e: &SendError) -> bool {
    matches!(e, SendError::Socket(SocketError::InternalChannelFull))
}

/// A receiver whose send queue is full has stopped reading (or cannot keep
/// up): what it misses from now on is lost, and a lost ICE candidate breaks
/// a call silently. Its connection is closed instead, once, so its client
/// reconnects and resyncs (rejoining replays the call's signaling).
fn cut_off(socket: &Sock) {
    let Some(ctx) = socket.extensions.get::<Arc<SocketCtx>>() else {
        return;
    };
    if ctx.overflowed.swap(true, Ordering::SeqCst) {
        return;
    }
    metrics::counter!(SOCKETS_OVERFLOWED).increment(1);
    tracing::info!(sid = %socket.id, user = %ctx.principal.user_id, "send queue full: closing the socket so that its client resyncs");
    socket.close_transport();
}
