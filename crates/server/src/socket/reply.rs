//! Answers to a client's event.

use serde_json::Value as Json;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::AckSender;

use super::rooms::Sock;
use crate::error::ApiError;

/// Answers an event: through its ack when the client asked for one;
/// otherwise a failure becomes an `error` event carrying the same object.
pub(crate) struct Reply {
    pub(crate) socket: Sock,
    pub(crate) ack: AckSender<LocalAdapter>,
    pub(crate) wants_ack: bool,
}

impl Reply {
    pub(crate) fn ok(self, body: Json) {
        if !self.wants_ack {
            return;
        }
        if let Err(e) = self.ack.send(&body) {
            tracing::debug!(error = %e, "ack not sent");
        }
    }

    pub(crate) fn err(self, e: &ApiError) {
        let body = e.to_ack();
        let sent = if self.wants_ack {
            self.ack.send(&body).map_err(|e| e.to_string())
        } else {
            self.socket.emit("error", &body).map_err(|e| e.to_string())
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "error reply not sent");
        }
    }
}
