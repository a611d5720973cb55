//! Ids of the aggregates. The domain never makes one: the caller passes new
//! ids in (the server uses UUIDv7, so ids sort by creation time).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest id of any kind consultd accepts (a user's, a call's, an
/// appointment key); longer ones are not ids anyone issues.
pub const MAX_ID_LEN: usize = 256;

/// What any id can look like at all: not blank, at most [`MAX_ID_LEN`]
/// bytes, no control characters (they could never be addressed, and a NUL
/// cannot even be stored). The one rule, for ids from tokens, bodies,
/// paths and socket payloads alike.
pub fn usable_id(raw: &str) -> bool {
    !raw.trim().is_empty() && raw.len() <= MAX_ID_LEN && !raw.chars().any(char::is_control)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(raw: impl Into<String>) -> Self {
                Self(raw.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A host's practice session (the queue consultation app's "schedule").
    ScheduleId
);
id_type!(
    /// A guest's place in a schedule's queue.
    EntryId
);
id_type!(
    /// A call session: an invitation and, once confirmed, the call itself.
    CallId
);
id_type!(
    /// A chat session (CONTRACT §7); its chat room has the same id.
    ChatId
);
id_type!(
    /// A stored chat message.
    MessageId
);
id_type!(
    /// A room id as a client spelled it: a call's id, its `room_id`, an
    /// appointment id, or a chat session's id.
    RoomId
);
