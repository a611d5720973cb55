//! The ports between the services and whatever carries events to clients.
//!
//! A service writes a transition, gathers what it means for clients as
//! [`Notices`], and commits with them (`Context::commit_with`). Each
//! server → client event goes to an [`Outbox`] (who hears it, and what),
//! each room consequence to [`RoomControl`] (a call's room closes, a chat
//! room stops taking typing). The socket layer implements both for one
//! node; a cluster implements them again. Both are called in commit order,
//! under the service's order lock, so an implementation that delivers in
//! call order keeps that order; and because one commit's notices travel
//! together, a cluster can hand them over inside the transaction instead.
//! The services' own tests use a recording fake of both (`service::tests`).

use std::sync::Arc;

use async_trait::async_trait;
use consultd_domain::{CallId, CallStatus, ChatId, ChatStatus, Status, Timestamp, UserId};
use serde::{Deserialize, Serialize};

use crate::timers::Deadline;

use super::views::{
    CallView, ChatMessageView, ChatStatusView, DoctorPresence, PeerIdUpdated, QueueUpdated,
    SessionView,
};

/// Who hears a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Audience {
    /// Every connection of these users (each connection once, even if a
    /// user is listed twice).
    Users(Vec<UserId>),
    /// Every connected guest (`doctor_online` / `doctor_offline`).
    Guests,
    /// Everyone in a chat session's room now.
    ChatRoom(ChatId),
}

impl Audience {
    pub fn user(user: &UserId) -> Self {
        Self::Users(vec![user.clone()])
    }
}

/// Every event the server pushes on its own, each named once (see
/// [`Push::event`]); the payload is the variant's value.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Push {
    CallInvitation(CallView),
    CallConfirmed(CallView),
    CallActivated(CallView),
    CallEnded(CallView),
    CallDeclined(CallView),
    CallCancelled(CallView),
    CallExpired(CallView),
    PeerIdUpdated(PeerIdUpdated),
    QueueUpdated(QueueUpdated),
    DoctorOnline(DoctorPresence),
    DoctorOffline(DoctorPresence),
    SessionIncoming(SessionView),
    SessionAccepted(SessionView),
    SessionUpdated(SessionView),
    ChatStatus(ChatStatusView),
    ChatMessage(ChatMessageView),
}

impl Push {
    /// The Socket.IO event name (CONTRACT §4–§7).
    pub fn event(&self) -> &'static str {
        match self {
            Self::CallInvitation(_) => "call_invitation",
            Self::CallConfirmed(_) => "call_confirmed",
            Self::CallActivated(_) => "call_activated",
            Self::CallEnded(_) => "call_ended",
            Self::CallDeclined(_) => "call_declined",
            Self::CallCancelled(_) => "call_cancelled",
            Self::CallExpired(_) => "call_expired",
            Self::PeerIdUpdated(_) => "peer_id_updated",
            Self::QueueUpdated(_) => "queue_updated",
            Self::DoctorOnline(_) => "doctor_online",
            Self::DoctorOffline(_) => "doctor_offline",
            Self::SessionIncoming(_) => "session:incoming",
            Self::SessionAccepted(_) => "session:accepted",
            Self::SessionUpdated(_) => "session:updated",
            Self::ChatStatus(_) => "session:status",
            Self::ChatMessage(_) => "chat:new_message",
        }
    }

    /// The event a call's move to `to` is announced with.
    pub fn call(to: CallStatus, view: CallView) -> Self {
        use CallStatus as S;
        match to {
            S::Invited => Self::CallInvitation(view),
            S::Confirmed => Self::CallConfirmed(view),
            S::Active => Self::CallActivated(view),
            S::Ended => Self::CallEnded(view),
            S::Declined => Self::CallDeclined(view),
            S::Cancelled => Self::CallCancelled(view),
            S::Expired => Self::CallExpired(view),
        }
    }
}

/// What a (re)connect resync re-sends to a user, by kind: the socket
/// layer keeps an index of who may be owed which, so that a connect with
/// nothing owed reads nothing from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    /// An unanswered queue or direct call's `call_invitation`, to its invitee.
    Invitation,
    /// An unanswered tutoring request's `session:incoming`, to its teacher.
    TutoringRequest,
    /// A chat session in progress (`session:status`), to its customer.
    ChatAsCustomer,
    /// A chat session in progress, to the host who took it.
    ChatAsHost,
}

impl Owed {
    /// What `user` is owed once the push `event` with `body` is out; `None`
    /// for a push that leaves nothing to resync (any other event, a chat
    /// not in progress).
    pub fn by_push(event: &str, body: &serde_json::Value, user: &UserId) -> Option<Self> {
        match event {
            "call_invitation" => Some(Self::Invitation),
            "session:incoming" => Some(Self::TutoringRequest),
            "session:status" => {
                let status = body.get("status")?.as_str()?;
                if status != ChatStatus::Waiting.as_str() && status != ChatStatus::Live.as_str() {
                    return None;
                }
                let mechanic = body.get("mechanic_id").and_then(|m| m.as_str());
                Some(if mechanic == Some(user.as_str()) {
                    Self::ChatAsHost
                } else {
                    Self::ChatAsCustomer
                })
            }
            _ => None,
        }
    }
}

/// Delivers pushes. Best effort by design: a push is news of a committed
/// change, and every (re)connect resyncs what a user must know, so a
/// failure is logged by the implementation and never undoes the change.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    async fn push(&self, to: Audience, push: Push);

    /// A push that another node committed, as it went over the bus: its
    /// event name and its payload as JSON.
    async fn push_json(&self, to: Audience, event: &str, body: serde_json::Value);
}

/// What a committed change means for the rooms clients are in.
pub trait RoomControl: Send + Sync + 'static {
    /// The call is over: its signaling room closes (its sockets leave; no
    /// one joins or relays any more).
    fn close_call(&self, call: &CallId);

    /// The chat session ended: its room keeps its history but refuses
    /// typing.
    fn chat_ended(&self, chat: &ChatId);
}

/// Several room ports told the same things in turn (the socket rooms,
/// then the media broker).
pub struct RoomControls(pub Vec<Arc<dyn RoomControl>>);

impl RoomControl for RoomControls {
    fn close_call(&self, call: &CallId) {
        for control in &self.0 {
            control.close_call(call);
        }
    }

    fn chat_ended(&self, chat: &ChatId) {
        for control in &self.0 {
            control.chat_ended(chat);
        }
    }
}

/// One consequence of a committed change.
#[derive(Debug, Clone)]
pub enum Notice {
    /// Boxed: a push is most of a notice's size.
    Push(Audience, Box<Push>),
    CloseCall(CallId),
    ChatEnded(ChatId),
    /// A deadline the timers must now keep.
    Deadline(Timestamp, Deadline),
}

/// What one commit tells the transport and the timers, in the order it
/// must be told.
#[derive(Debug, Clone, Default)]
#[must_use = "notices are delivered only through `Context::commit_with`"]
pub struct Notices(Vec<Notice>);

impl Notices {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(mut self, to: Audience, push: Push) -> Self {
        self.0.push(Notice::Push(to, Box::new(push)));
        self
    }

    pub fn close_call(mut self, call: CallId) -> Self {
        self.0.push(Notice::CloseCall(call));
        self
    }

    pub fn chat_ended(mut self, chat: ChatId) -> Self {
        self.0.push(Notice::ChatEnded(chat));
        self
    }

    pub fn deadline(mut self, at: Timestamp, what: Deadline) -> Self {
        self.0.push(Notice::Deadline(at, what));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Notice> {
        self.0
    }

    /// The notices as they travel between nodes (see [`Envelope`]), sent at
    /// `sent_at_ms` (Unix milliseconds, wall clock: for the bus's lag).
    pub fn to_wire(&self, sent_at_ms: u64) -> Result<String, serde_json::Error> {
        let wire: Vec<Wire> = self
            .0
            .iter()
            .map(|n| {
                Ok(match n {
                    Notice::Push(to, push) => Wire::Push {
                        to: to.clone(),
                        event: push.event().to_owned(),
                        body: serde_json::to_value(push)?,
                    },
                    Notice::CloseCall(call) => Wire::CloseCall(call.clone()),
                    Notice::ChatEnded(chat) => Wire::ChatEnded(chat.clone()),
                    Notice::Deadline(at, what) => Wire::Deadline(*at, what.clone()),
                })
            })
            .collect::<Result<_, serde_json::Error>>()?;
        serde_json::to_string(&Envelope {
            sent_at_ms,
            notices: wire,
        })
    }
}

/// One commit's notices on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub sent_at_ms: u64,
    pub notices: Vec<Wire>,
}

/// A notice between nodes: a push travels as its event name and payload,
/// which is all a node needs to deliver it to its own sockets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Wire {
    Push {
        to: Audience,
        event: String,
        body: serde_json::Value,
    },
    CloseCall(CallId),
    ChatEnded(ChatId),
    Deadline(Timestamp, Deadline),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: &'static str, mechanic: Option<&str>) -> serde_json::Value {
        let view = ChatStatusView {
            id: "s1".into(),
            status,
            started_at: None,
            ends_at: None,
            ended_at: None,
            mechanic_id: mechanic.map(str::to_owned),
        };
        serde_json::to_value(Push::ChatStatus(view)).unwrap()
    }

    #[test]
    fn a_push_owes_what_the_resync_would_resend() {
        let (customer, mechanic) = (UserId::new("c1").unwrap(), UserId::new("m1").unwrap());
        let waiting = status("waiting", Some("m1"));
        assert_eq!(
            Owed::by_push("session:status", &waiting, &customer),
            Some(Owed::ChatAsCustomer)
        );
        assert_eq!(
            Owed::by_push("session:status", &waiting, &mechanic),
            Some(Owed::ChatAsHost)
        );
        let live = status("live", None);
        assert_eq!(
            Owed::by_push("session:status", &live, &customer),
            Some(Owed::ChatAsCustomer)
        );
        for over in ["ended", "pending"] {
            let body = status(over, Some("m1"));
            assert_eq!(Owed::by_push("session:status", &body, &mechanic), None);
        }
        let any = serde_json::json!({ "id": "c" });
        assert_eq!(
            Owed::by_push("call_invitation", &any, &customer),
            Some(Owed::Invitation)
        );
        assert_eq!(
            Owed::by_push("session:incoming", &any, &mechanic),
            Some(Owed::TutoringRequest)
        );
        assert_eq!(Owed::by_push("call_confirmed", &any, &customer), None);
        assert_eq!(Owed::by_push("chat:new_message", &any, &customer), None);
    }
}
