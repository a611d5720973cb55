//! What the socket handlers share: the application's state and the room
//! port (which only the socket layer knows).

use std::ops::Deref;
use std::sync::Arc;

use super::hub::RoomHub;
use super::owed::OwedIndex;
use crate::state::AppState;

#[derive(Clone)]
pub(crate) struct SocketState {
    pub(crate) app: AppState,
    /// The signaling and chat rooms (CONTRACT §3, §7).
    pub(crate) hub: Arc<dyn RoomHub>,
    /// Who this node's connect resync must read the database for.
    pub(crate) owed: Arc<OwedIndex>,
}

impl Deref for SocketState {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.app
    }
}
