//! What clients see: the contract's camelCase objects (CONTRACT §4), with
//! every timestamp as ISO-8601 UTC milliseconds.

use consultd_domain::time::serde_millis;
use consultd_domain::{
    ChatSession, EndReason, QueueEntry, Schedule, Status, Timestamp, TutoringStatus,
};
use consultd_persistence::{AuditEntry, CallRecord, ChatMessage};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    pub id: String,
    pub doctor_id: String,
    pub date: String,
    pub start_time: String,
    pub end_time: String,
    pub status: &'static str,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<&Schedule> for ScheduleView {
    fn from(s: &Schedule) -> Self {
        Self {
            id: s.id.to_string(),
            doctor_id: s.host_id.to_string(),
            date: s.slot.date.clone(),
            start_time: s.slot.start_time.clone(),
            end_time: s.slot.end_time.clone(),
            status: s.status.as_str(),
            created_at: s.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryView {
    pub id: String,
    pub schedule_id: String,
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub status: &'static str,
    /// 1-based place in the schedule's join order.
    pub position: u64,
    /// the queue consultation app's flag, kept for clients that read it.
    pub is_ready: bool,
    /// The live call this entry is invited to or in.
    pub call_session_id: Option<String>,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: Timestamp,
}

impl EntryView {
    pub fn new(e: &QueueEntry, position: u64) -> Self {
        Self {
            id: e.id.to_string(),
            schedule_id: e.schedule_id.to_string(),
            patient_id: e.patient_id.to_string(),
            patient_name: e.patient_name.clone(),
            status: e.status.as_str(),
            position,
            is_ready: e.status == consultd_domain::EntryStatus::Ready,
            call_session_id: e.call_id.as_ref().map(ToString::to_string),
            joined_at: e.joined_at,
        }
    }

    /// A whole queue, positions from its order.
    pub fn queue(entries: &[QueueEntry]) -> Vec<Self> {
        entries
            .iter()
            .zip(1u64..)
            .map(|(e, pos)| Self::new(e, pos))
            .collect()
    }
}

/// `queue_updated`'s payload.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueUpdated {
    pub schedule_id: String,
    pub queue: Vec<EntryView>,
}

/// The call object of CONTRACT §4: the host is the doctor, the guest the
/// patient, whoever invited whom. A direct call (§5) carries the direct call app's
/// snake_case fields as well, so the doctor app of the queue consultation app and the patient
/// app of the direct call app both read it unchanged.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    pub id: String,
    pub call_session_id: String,
    pub schedule_id: Option<String>,
    pub queue_entry_id: Option<String>,
    pub appointment_id: Option<String>,
    pub call_type: String,
    pub doctor_id: String,
    pub doctor_name: Option<String>,
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub status: &'static str,
    pub doctor_peer_id: Option<String>,
    pub patient_peer_id: Option<String>,
    pub room_id: String,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub confirmed_at: Option<Timestamp>,
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    /// `abandoned` when the server ended the call because neither
    /// participant stayed connected; otherwise the status says it all.
    pub end_reason: Option<&'static str>,
    /// A direct call's snake_case fields (`appointment_id`,
    /// `call_session_id`), flattened in; left out of the schema, which
    /// cannot say "all of these or none" through an optional flatten.
    #[serde(flatten)]
    #[schema(ignore)]
    pub direct: Option<DirectCallFields>,
}

/// CONTRACT §5's envelope fields, `appointment_id` always present. `id` and
/// `status` are spelled the same in both conventions and appear once.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DirectCallFields {
    pub appointment_id: String,
    pub call_session_id: String,
    pub call_type: String,
    pub doctor_id: String,
    pub doctor_name: Option<String>,
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub room_id: String,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub confirmed_at: Option<Timestamp>,
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
}

impl From<&CallRecord> for CallView {
    fn from(r: &CallRecord) -> Self {
        let c = &r.call;
        let direct = r
            .origin
            .appointment_id()
            .map(|appointment| DirectCallFields {
                appointment_id: appointment.to_string(),
                call_session_id: c.id.to_string(),
                call_type: r.call_type.clone(),
                doctor_id: c.host.user_id.to_string(),
                doctor_name: c.host.name.clone(),
                patient_id: c.guest.user_id.to_string(),
                patient_name: c.guest.name.clone(),
                room_id: r.room_id.clone(),
                expires_at: c.expires_at,
                created_at: c.created_at,
                confirmed_at: c.confirmed_at,
                ended_at: c.ended_at,
            });
        Self {
            id: c.id.to_string(),
            call_session_id: c.id.to_string(),
            schedule_id: r.origin.schedule_id().map(ToString::to_string),
            queue_entry_id: r.origin.entry_id().map(ToString::to_string),
            appointment_id: r.origin.appointment_id().map(ToString::to_string),
            call_type: r.call_type.clone(),
            doctor_id: c.host.user_id.to_string(),
            doctor_name: c.host.name.clone(),
            patient_id: c.guest.user_id.to_string(),
            patient_name: c.guest.name.clone(),
            status: c.status.as_str(),
            doctor_peer_id: c.host.peer_id.clone(),
            patient_peer_id: c.guest.peer_id.clone(),
            room_id: r.room_id.clone(),
            expires_at: c.expires_at,
            created_at: c.created_at,
            confirmed_at: c.confirmed_at,
            ended_at: c.ended_at,
            end_reason: c.abandoned.then_some(EndReason::Abandoned.as_str()),
            direct,
        }
    }
}

/// A tutoring session (CONTRACT §6), the tutoring request app's `sessions` row. `room_id`
/// appears once the teacher has accepted.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    pub host_id: String,
    pub host_name: Option<String>,
    pub learner_id: String,
    pub learner_name: Option<String>,
    pub skill_name: String,
    pub status: &'static str,
    pub room_id: Option<String>,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    pub end_reason: Option<&'static str>,
}

impl From<&CallRecord> for SessionView {
    fn from(r: &CallRecord) -> Self {
        let c = &r.call;
        Self {
            id: c.id.to_string(),
            host_id: c.host.user_id.to_string(),
            host_name: c.host.name.clone(),
            learner_id: c.guest.user_id.to_string(),
            learner_name: c.guest.name.clone(),
            // Only tutoring calls are shown as sessions; the view stays total.
            skill_name: r
                .origin
                .skill_name()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            status: TutoringStatus::of(c.status).as_str(),
            room_id: c.confirmed_at.map(|_| r.room_id.clone()),
            created_at: c.created_at,
            started_at: c.confirmed_at,
            ended_at: c.ended_at,
            expires_at: c.expires_at,
            end_reason: EndReason::of_call(c).map(EndReason::as_str),
        }
    }
}

/// `peer_id_updated`'s payload.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerIdUpdated {
    pub call_session_id: String,
    /// The sender's token role (`doctor`, `patient`, …).
    pub role: String,
    pub peer_id: String,
}

/// `doctor_online` / `doctor_offline`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DoctorPresence {
    pub doctor_id: String,
    pub schedule_id: String,
}

/// One audit row: who (`actor`, `actorRole`; null for the server's own
/// timers) did what (`action`) to which entity, from which state to which,
/// when.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub id: String,
    pub actor: Option<String>,
    pub actor_role: Option<String>,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    pub from: Option<String>,
    pub to: String,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

impl From<AuditEntry> for AuditView {
    fn from(a: AuditEntry) -> Self {
        Self {
            id: a.id,
            actor: a.actor_id,
            actor_role: a.actor_role,
            action: a.action,
            entity: a.entity_type,
            entity_id: a.entity_id,
            from: a.from_state,
            to: a.to_state,
            at: a.at,
        }
    }
}

pub(crate) mod opt_millis {
    use consultd_domain::{Timestamp, format_timestamp};
    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(
        at: &Option<Timestamp>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_str(&format_timestamp(*at)),
            None => s.serialize_none(),
        }
    }
}

/// A chat session (CONTRACT §7): the support chat app's row. The chat room id is the
/// session id (`room_id` repeats it for clients that look for one).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ChatSessionView {
    pub id: String,
    pub room_id: String,
    pub customer_user_id: String,
    pub mechanic_id: Option<String>,
    pub status: &'static str,
    pub concern: Option<String>,
    /// How long it runs once live.
    pub duration_minutes: f64,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<Timestamp>,
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
}

/// Minutes as a number, exact to the millisecond.
fn minutes(d: chrono::Duration) -> f64 {
    // A day at most, so exact in an f64.
    #[allow(clippy::cast_precision_loss)]
    let ms = d.num_milliseconds() as f64;
    ms / 60_000.0
}

impl From<&ChatSession> for ChatSessionView {
    fn from(s: &ChatSession) -> Self {
        Self {
            id: s.id.as_str().to_owned(),
            room_id: s.id.as_str().to_owned(),
            customer_user_id: s.customer.to_string(),
            mechanic_id: s.mechanic.as_ref().map(ToString::to_string),
            status: s.status.as_str(),
            concern: s.concern.as_ref().map(|c| c.as_str().to_owned()),
            duration_minutes: minutes(s.duration.get()),
            created_at: s.created_at,
            started_at: s.started_at,
            ends_at: s.ends_at,
            ended_at: s.ended_at,
        }
    }
}

/// `session:status`: the contract's four fields, plus who took it and when
/// it ended.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ChatStatusView {
    pub id: String,
    pub status: &'static str,
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<Timestamp>,
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    pub mechanic_id: Option<String>,
}

impl From<&ChatSession> for ChatStatusView {
    fn from(s: &ChatSession) -> Self {
        Self {
            id: s.id.as_str().to_owned(),
            status: s.status.as_str(),
            started_at: s.started_at,
            ends_at: s.ends_at,
            ended_at: s.ended_at,
            mechanic_id: s.mechanic.as_ref().map(ToString::to_string),
        }
    }
}

/// A chat message as `chat:new_message`, acks and history show it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessageView {
    pub id: String,
    pub room_id: String,
    pub sender_id: String,
    pub sender_role: String,
    pub content: String,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub client_message_id: Option<String>,
}

impl From<&ChatMessage> for ChatMessageView {
    fn from(m: &ChatMessage) -> Self {
        Self {
            id: m.id.clone(),
            room_id: m.room_id.clone(),
            sender_id: m.sender_id.clone(),
            sender_role: m.sender_role.clone(),
            content: m.content.clone(),
            created_at: m.created_at,
            client_message_id: m.client_message_id.clone(),
        }
    }
}
