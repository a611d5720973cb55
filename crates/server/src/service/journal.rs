//! What every transition leaves behind in its own transaction: its audit row
//! (CONTRACT §8) and, when webhooks are configured, one outbox row per
//! receiver URL (CONTRACT §10). Both commit with the transition or not at
//! all, so a receiver hears of every committed change and of nothing else.

use std::sync::Arc;

use consultd_domain::time::format_timestamp;
use consultd_domain::{
    AuditAction, CallKind, ChatSession, Principal, QueueEntry, Schedule, Status, Timestamp,
    Transition,
};
use consultd_persistence::{
    AuditRepo, CallRecord, Conn, NewAuditEntry, NewDelivery, QueueRepo, WebhookRepo,
};
use serde::Serialize;
use tokio::sync::Notify;

use super::views::{CallView, ChatSessionView, EntryView, ScheduleView, SessionView};
use crate::activity::Activity;
use crate::error::ApiError;

/// The entity a transition moved, in the state it moved to.
#[derive(Clone, Copy)]
pub(crate) enum Subject<'a> {
    Call(&'a CallRecord),
    Schedule(&'a Schedule),
    Entry(&'a QueueEntry),
    Chat(&'a ChatSession),
}

impl<'a> Subject<'a> {
    /// The audit log's entity name.
    fn audit_entity(self) -> &'static str {
        match self {
            Self::Call(r) if r.origin.kind() == CallKind::Tutoring => "session",
            Self::Call(_) => "call_session",
            Self::Schedule(_) => "schedule",
            Self::Entry(_) => "queue_entry",
            Self::Chat(_) => "chat_session",
        }
    }

    /// The first half of a webhook event's type, named after the REST
    /// resource that shows the entity.
    fn event_prefix(self) -> &'static str {
        match self {
            Self::Call(r) if r.origin.kind() == CallKind::Tutoring => "tutoring_session",
            Self::Call(_) => "call",
            Self::Schedule(_) => "schedule",
            Self::Entry(_) => "queue_entry",
            Self::Chat(_) => "chat_session",
        }
    }

    fn id(self) -> &'a str {
        match self {
            Self::Call(r) => r.call.id.as_str(),
            Self::Schedule(s) => s.id.as_str(),
            Self::Entry(e) => e.id.as_str(),
            Self::Chat(c) => c.id.as_str(),
        }
    }

    /// The entity as the REST API shows it, and the status it shows.
    async fn view(self, txn: &impl Conn) -> Result<(String, serde_json::Value), ApiError> {
        fn shown<T: Serialize>(
            status: &str,
            view: &T,
        ) -> Result<(String, serde_json::Value), ApiError> {
            let value = serde_json::to_value(view).map_err(|e| {
                tracing::error!(error = %e, "a view is not serialisable");
                ApiError::Internal
            })?;
            Ok((status.to_ascii_lowercase(), value))
        }
        match self {
            Self::Call(r) if r.origin.kind() == CallKind::Tutoring => {
                let v = SessionView::from(r);
                shown(v.status, &v)
            }
            Self::Call(r) => {
                let v = CallView::from(r);
                shown(v.status, &v)
            }
            Self::Schedule(s) => {
                let v = ScheduleView::from(s);
                shown(v.status, &v)
            }
            Self::Entry(e) => {
                let position = QueueRepo.position(txn, e).await?;
                let v = EntryView::new(e, position);
                shown(v.status, &v)
            }
            Self::Chat(c) => {
                let v = ChatSessionView::from(c);
                shown(v.status, &v)
            }
        }
    }
}

/// A webhook event as POSTed: the contract's `{id, type, at, data}`, and
/// who or what caused it.
#[derive(Serialize)]
struct Event<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    at: String,
    data: serde_json::Value,
    /// The audit action (e.g. `chat.expire` against `chat.end`): why.
    action: &'a str,
    /// `null` when the server acted by itself (a timer).
    actor: Option<Actor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Actor<'a> {
    user_id: &'a str,
    role: &'a str,
}

/// Writes the audit row and the webhook rows of every transition.
#[derive(Clone, Default)]
pub struct Journal {
    /// Webhook receiver URLs; empty when webhooks are off.
    targets: Arc<[String]>,
    /// Tells the delivery worker that rows may have committed.
    wake: Arc<Notify>,
    /// This node's counters (the admin view's transitions per interval).
    activity: Arc<Activity>,
}

impl Journal {
    pub fn new(targets: Vec<String>, activity: Arc<Activity>) -> Self {
        Self {
            targets: targets.into(),
            wake: Arc::new(Notify::new()),
            activity,
        }
    }

    /// What the delivery worker waits on.
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// After a commit: deliveries may be waiting.
    pub(crate) fn committed(&self) {
        if !self.targets.is_empty() {
            self.wake.notify_one();
        }
    }

    /// A new entity (no `from` state).
    pub(crate) async fn created(
        &self,
        txn: &impl Conn,
        actor: Option<&Principal>,
        action: AuditAction,
        subject: Subject<'_>,
        to: &str,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        self.record(txn, actor, action, subject, None, to, now)
            .await
    }

    /// A transition of an existing entity.
    pub(crate) async fn moved<S: Status>(
        &self,
        txn: &impl Conn,
        actor: Option<&Principal>,
        action: AuditAction,
        subject: Subject<'_>,
        t: Transition<S>,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let from = Some(t.from.as_str());
        self.record(txn, actor, action, subject, from, t.to.as_str(), now)
            .await
    }

    #[allow(clippy::too_many_arguments)] // one transition's worth of facts
    async fn record(
        &self,
        txn: &impl Conn,
        actor: Option<&Principal>,
        action: AuditAction,
        subject: Subject<'_>,
        from: Option<&str>,
        to: &str,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let entry = NewAuditEntry {
            actor_id: actor.map(|p| p.user_id.to_string()),
            actor_role: actor.map(|p| p.role.to_string()),
            action: action.as_str().to_owned(),
            entity_type: subject.audit_entity().to_owned(),
            entity_id: subject.id().to_owned(),
            from_state: from.map(str::to_owned),
            to_state: to.to_owned(),
            at: now,
        };
        AuditRepo.record(txn, entry).await?;
        // Counted as written: a transaction that then fails to commit is
        // rare (the compare-and-set has already passed), and this is a rate.
        self.activity.transition_recorded();
        if self.targets.is_empty() {
            return Ok(());
        }
        let (status, data) = subject.view(txn).await?;
        let prefix = subject.event_prefix();
        let kind = format!("{prefix}.{status}");
        let id = uuid::Uuid::now_v7().to_string();
        let role = actor.map(|p| p.role.to_string());
        let event = Event {
            id: &id,
            kind: &kind,
            at: format_timestamp(now),
            data,
            action: action.as_str(),
            actor: actor.zip(role.as_deref()).map(|(p, role)| Actor {
                user_id: p.user_id.as_str(),
                role,
            }),
        };
        let body = serde_json::to_string(&event).map_err(|e| {
            tracing::error!(error = %e, "a webhook event is not serialisable");
            ApiError::Internal
        })?;
        let entity_key = format!("{prefix}:{}", subject.id());
        let rows = self
            .targets
            .iter()
            .map(|target| NewDelivery {
                event_id: id.clone(),
                target: target.clone(),
                entity_key: entity_key.clone(),
                body: body.clone(),
            })
            .collect();
        WebhookRepo.enqueue(txn, rows, now).await?;
        Ok(())
    }
}
