//! consultd's domain: the vocabulary and the state machines of consultation
//! apps, with no I/O at all.
//!
//! Everything here is deterministic: time and fresh ids are inputs, never read
//! from a clock or a random source, so every transition can be tested with a
//! virtual clock. The server crate owns I/O and calls into this crate.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod audit;
pub mod call;
pub mod chat;
pub mod direct;
pub mod identity;
pub mod ids;
pub mod origin;
pub mod queue;
pub mod rate;
pub mod room;
pub mod schedule;
pub mod time;
pub mod transition;
pub mod tutoring;

pub use audit::AuditAction;
pub use call::{Busy, Call, CallCommand, CallError, CallStatus, Party, Side};
pub use chat::{
    ChatDuration, ChatError, ChatSession, ChatSide, ChatStatus, Concern, ContentError,
    MessageContent,
};
pub use direct::{AppointmentId, DirectError, DirectStart, start_direct_call};
pub use identity::{Principal, Role, RoleClass, RoleMap, RoleMapError, UserId};
pub use ids::{CallId, ChatId, EntryId, MessageId, RoomId, ScheduleId, usable_id};
pub use origin::{CallKind, CallOrigin};
pub use queue::{EntryChange, EntryState, EntryStatus, QueueEntry, QueueError, start_queue_call};
pub use rate::TokenBucket;
pub use room::{Endpoint, Joined, Kept, Left, Member, Recorded, ReplayLimits, Room, SignalKind};
pub use schedule::{Schedule, ScheduleCommand, ScheduleStatus, Slot};
pub use time::{Timestamp, format_timestamp};
pub use transition::{Status, Transition};
pub use tutoring::{EndReason, SkillName, TutoringCommand, TutoringStatus};

/// Fixtures shared by the machines' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use chrono::TimeZone;

    use crate::{Timestamp, UserId};

    pub(crate) fn t0() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 10, 0, 0)
            .unwrap()
    }

    pub(crate) fn user(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }
}
