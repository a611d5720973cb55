//! What the socket handlers share: the application's state and this
//! node's rooms (which only the socket layer knows).

use std::ops::Deref;
use std::sync::Arc;

use super::rooms::Rooms;
use crate::state::AppState;

#[derive(Clone)]
pub(crate) struct SocketState {
    pub(crate) app: AppState,
    /// The signaling and chat rooms of this node (CONTRACT §3, §7).
    pub(crate) rooms: Arc<Rooms>,
}

impl Deref for SocketState {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.app
    }
}
