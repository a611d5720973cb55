//! What the audit log records: one name per kind of transition, written
//! once here (CONTRACT §8: `action` of an audit row).

use std::fmt;

macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The action of an audit row.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)*
        }

        impl AuditAction {
            /// Every action, for documentation and tests.
            pub const ALL: &'static [AuditAction] = &[$(Self::$variant,)*];

            /// The stored name: `<entity>.<verb>`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

actions! {
    ScheduleCreate => "schedule.create",
    ScheduleStart => "schedule.start",
    ScheduleEnd => "schedule.end",
    QueueJoin => "queue.join",
    QueueReady => "queue.ready",
    QueueUnready => "queue.unready",
    QueueReset => "queue.reset",
    QueueClose => "queue.close",
    QueueInvite => "queue.invite",
    QueueInCall => "queue.in_call",
    QueueRequeue => "queue.requeue",
    QueueDone => "queue.done",
    /// A host invited a guest from the queue.
    CallInvite => "call.invite",
    /// A guest started a direct call.
    CallStart => "call.start",
    CallConfirm => "call.confirm",
    CallDecline => "call.decline",
    CallCancel => "call.cancel",
    CallActivate => "call.activate",
    CallEnd => "call.end",
    CallExpire => "call.expire",
    CallAbandon => "call.abandon",
    SessionCreate => "session.create",
    SessionAccept => "session.accept",
    SessionReject => "session.reject",
    SessionCancel => "session.cancel",
    SessionActivate => "session.activate",
    SessionEnd => "session.end",
    SessionExpire => "session.expire",
    SessionAbandon => "session.abandon",
    ChatCreate => "chat.create",
    ChatAccept => "chat.accept",
    /// Both participants were present: the session went live.
    ChatStart => "chat.start",
    ChatEnd => "chat.end",
    ChatExpire => "chat.expire",
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::AuditAction;

    #[test]
    fn names_are_distinct_and_entity_dot_verb() {
        let mut seen = std::collections::HashSet::new();
        for a in AuditAction::ALL {
            assert!(seen.insert(a.as_str()), "{a} twice");
            let (entity, verb) = a.as_str().split_once('.').expect("entity.verb");
            assert!(!entity.is_empty() && !verb.is_empty(), "{a}");
        }
    }
}
