//! The port through which the call service asks the media broker (the
//! PeerJS server) who holds a peer id, so that a participant cannot
//! publish another user's id as theirs (`set-peer-id`).

use async_trait::async_trait;
use consultd_domain::UserId;

#[async_trait]
pub trait PeerDirectory: Send + Sync + 'static {
    /// The user connected with `peer_id` now; `None` when nobody is.
    async fn holder(&self, peer_id: &str) -> Option<UserId>;
}

/// No broker (PeerJS switched off): no id is held by anyone.
pub struct NoBroker;

#[async_trait]
impl PeerDirectory for NoBroker {
    async fn holder(&self, _peer_id: &str) -> Option<UserId> {
        None
    }
}
