//! What the socket handlers share: the application's state and the room
//! port (which only the socket layer knows).

use std::ops::Deref;
use std::sync::Arc;

use super::hub::RoomHub;
use super::owed::OwedIndex;
use crate::state::AppState;

/// A handle to the node's socket state. Every socket's handlers hold one
/// for as long as the socket lives, so it is a pointer, not a copy of
/// `AppState` (400-odd bytes and a dozen reference counts per socket).
#[derive(Clone)]
pub(crate) struct SocketState(Arc<NodeState>);

pub(crate) struct NodeState {
    pub(crate) app: AppState,
    /// The signaling and chat rooms (CONTRACT §3, §7).
    pub(crate) hub: Arc<dyn RoomHub>,
    /// Who this node's connect resync must read the database for.
    pub(crate) owed: Arc<OwedIndex>,
}

impl SocketState {
    pub(crate) fn new(app: AppState, hub: Arc<dyn RoomHub>, owed: Arc<OwedIndex>) -> Self {
        Self(Arc::new(NodeState { app, hub, owed }))
    }
}

impl Deref for SocketState {
    type Target = NodeState;

    fn deref(&self) -> &NodeState {
        &self.0
    }
}

impl Deref for NodeState {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.app
    }
}
