//! Services: the one place where a request becomes a state change. Each
//! public function authorises, runs the domain step inside one write
//! transaction (compare-and-set + audit rows), commits, and only then tells
//! the sockets. Handlers (REST or socket) call exactly one of them.

pub mod chat;
pub mod consult;
mod direct;
pub mod notify;
mod order;
pub mod signaling;
pub mod tutoring;
pub mod views;

use chrono::SubsecRound;
use consultd_domain::Principal;
use consultd_domain::Timestamp;
use consultd_persistence::NewAuditEntry;

pub use consult::ConsultService;
pub use notify::Notifier;

/// Now, at the millisecond precision the contract shows and the database
/// keeps, so what is stored and what is sent are the same instant.
pub fn now() -> Timestamp {
    chrono::Utc::now().trunc_subsecs(3)
}

/// A fresh, time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// An audit row; `actor` is `None` when the server acted by itself.
pub(crate) fn audit(
    actor: Option<&Principal>,
    action: &str,
    entity_type: &str,
    entity_id: &str,
    from: Option<&str>,
    to: &str,
    at: Timestamp,
) -> NewAuditEntry {
    NewAuditEntry {
        actor_id: actor.map(|p| p.user_id.to_string()),
        actor_role: actor.map(|p| p.role.to_string()),
        action: action.to_owned(),
        entity_type: entity_type.to_owned(),
        entity_id: entity_id.to_owned(),
        from_state: from.map(str::to_owned),
        to_state: to.to_owned(),
        at,
    }
}
