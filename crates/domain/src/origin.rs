//! Which front door a call came through. Every call runs the one machine of
//! [`crate::call`]; its origin decides what else it is tied to and how it is
//! shown (CONTRACT §4 call object, §5 snake_case envelope, §6 session row).

use crate::direct::AppointmentId;
use crate::ids::{EntryId, ScheduleId};
use crate::tutoring::SkillName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOrigin {
    /// §4: a host invited a ready guest from a schedule's queue.
    Queue {
        schedule_id: ScheduleId,
        entry_id: EntryId,
    },
    /// §5: a guest called a host directly, under the caller's routing key.
    Direct { appointment_id: AppointmentId },
    /// §6: a learner asked a teacher for a session.
    Tutoring { skill_name: SkillName },
}

/// The origin without its data: what is stored in `call_sessions.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    Queue,
    Direct,
    Tutoring,
}

impl CallKind {
    pub const ALL: &'static [Self] = &[Self::Queue, Self::Direct, Self::Tutoring];

    /// The kinds that are "calls" in the sense of §4: a host and a guest each
    /// take at most one of them at a time. A tutoring request is not one
    /// (the tutoring request app lets a teacher see several incoming requests).
    pub const CALLS: &'static [Self] = &[Self::Queue, Self::Direct];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Direct => "direct",
            Self::Tutoring => "tutoring",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == raw)
    }

    pub fn is_call(self) -> bool {
        Self::CALLS.contains(&self)
    }
}

impl CallOrigin {
    pub fn kind(&self) -> CallKind {
        match self {
            Self::Queue { .. } => CallKind::Queue,
            Self::Direct { .. } => CallKind::Direct,
            Self::Tutoring { .. } => CallKind::Tutoring,
        }
    }

    pub fn schedule_id(&self) -> Option<&ScheduleId> {
        match self {
            Self::Queue { schedule_id, .. } => Some(schedule_id),
            _ => None,
        }
    }

    pub fn entry_id(&self) -> Option<&EntryId> {
        match self {
            Self::Queue { entry_id, .. } => Some(entry_id),
            _ => None,
        }
    }

    pub fn appointment_id(&self) -> Option<&AppointmentId> {
        match self {
            Self::Direct { appointment_id } => Some(appointment_id),
            _ => None,
        }
    }

    pub fn skill_name(&self) -> Option<&SkillName> {
        match self {
            Self::Tutoring { skill_name } => Some(skill_name),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_only_tutoring_is_not_a_call() {
        for &k in CallKind::ALL {
            assert_eq!(CallKind::parse(k.as_str()), Some(k));
            assert_eq!(k.is_call(), k != CallKind::Tutoring);
        }
        assert_eq!(CallKind::parse("session"), None);
    }
}
