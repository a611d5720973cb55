//! The admin view's board (issue 20): what is live now across every node,
//! read from the database. It lists ids, roles, statuses and times only:
//! never a chat message, a chat concern, a name, SDP or an ICE candidate.

use std::collections::BTreeMap;
use std::sync::Arc;

use consultd_domain::time::serde_millis;
use consultd_domain::{ChatSession, EntryStatus, Principal, Status, Timestamp};
use consultd_persistence::{AuditRepo, CallRecord, CallRepo, ChatRepo, QueueRepo, ScheduleRepo};
use serde::Serialize;

use super::context::Context;
use super::views::{AuditView, opt_millis};
use crate::error::ApiError;

/// At most this many rows per list; `total` says how many there are.
pub const BOARD_LIMIT: u64 = 100;
/// The latest transitions shown.
pub const BOARD_TRANSITIONS: u64 = 20;

/// What is live now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Board {
    /// When it was read.
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Queue and direct calls not yet over (INVITED, CONFIRMED, ACTIVE).
    pub calls: LiveCalls,
    /// Tutoring sessions not yet over (INVITED, CONFIRMED, ACTIVE).
    pub tutoring: LiveCalls,
    /// Schedules online now or with someone in their queue.
    pub schedules: Vec<ScheduleLoad>,
    /// Chat sessions not yet ended (pending, waiting, live).
    pub chats: LiveChats,
    /// The latest transitions of the audit log, newest first.
    pub transitions: Vec<AuditView>,
}

/// The oldest [`BOARD_LIMIT`] of a list, and how many there are in all.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LiveCalls {
    pub total: u64,
    pub items: Vec<LiveCall>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LiveChats {
    pub total: u64,
    pub items: Vec<LiveChat>,
}

/// A call or tutoring session in progress.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveCall {
    pub id: String,
    /// `queue`, `direct` or `tutoring`.
    pub kind: &'static str,
    /// INVITED, CONFIRMED or ACTIVE.
    pub status: &'static str,
    /// `video` or `voice`.
    pub call_type: String,
    pub host_id: String,
    pub guest_id: String,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Seconds since it was created, at the board's `at`.
    pub age_secs: i64,
}

/// A schedule and its queue's length by entry status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleLoad {
    pub id: String,
    pub host_id: String,
    pub date: String,
    pub start_time: String,
    pub end_time: String,
    /// UPCOMING, ONLINE or COMPLETED.
    pub status: &'static str,
    pub waiting: u64,
    pub ready: u64,
    pub in_call: u64,
}

/// A chat session not yet ended: who and when, never what was said.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveChat {
    pub id: String,
    /// `pending` (no mechanic yet), `waiting` or `live`.
    pub status: &'static str,
    pub customer_id: String,
    pub mechanic_id: Option<String>,
    #[serde(with = "serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub age_secs: i64,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "opt_millis")]
    pub ends_at: Option<Timestamp>,
}

fn age(now: Timestamp, since: Timestamp) -> i64 {
    (now - since).num_seconds().max(0)
}

impl LiveCall {
    fn new(r: &CallRecord, now: Timestamp) -> Self {
        let c = &r.call;
        Self {
            id: c.id.to_string(),
            kind: r.origin.kind().as_str(),
            status: c.status.as_str(),
            call_type: r.call_type.clone(),
            host_id: c.host.user_id.to_string(),
            guest_id: c.guest.user_id.to_string(),
            created_at: c.created_at,
            age_secs: age(now, c.created_at),
        }
    }
}

impl LiveChat {
    fn new(c: &ChatSession, now: Timestamp) -> Self {
        Self {
            id: c.id.to_string(),
            status: c.status.as_str(),
            customer_id: c.customer.to_string(),
            mechanic_id: c.mechanic.as_ref().map(ToString::to_string),
            created_at: c.created_at,
            age_secs: age(now, c.created_at),
            ends_at: c.ends_at,
        }
    }
}

/// Reads the board, for admins only.
#[derive(Clone)]
pub struct AdminService {
    ctx: Arc<Context>,
}

impl AdminService {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// The board, or `forbidden` for anyone but an admin.
    pub async fn board(&self, p: &Principal) -> Result<Board, ApiError> {
        if !p.is_admin() {
            return Err(ApiError::forbidden("only an admin may watch the board"));
        }
        self.read_board().await
    }

    /// The board without the check: for the periodic push to sockets that
    /// [`AdminService::board`] admitted.
    pub async fn read_board(&self) -> Result<Board, ApiError> {
        let conn = self.ctx.db.conn();
        let now = self.ctx.now();
        let (calls, calls_total) = CallRepo.live_page(conn, false, BOARD_LIMIT).await?;
        let (tutoring, tutoring_total) = CallRepo.live_page(conn, true, BOARD_LIMIT).await?;
        let (chats, chats_total) = ChatRepo.open_page(conn, BOARD_LIMIT).await?;
        let mut lengths: BTreeMap<String, [u64; 3]> = BTreeMap::new();
        for (schedule, status, n) in QueueRepo.lengths(conn).await? {
            let slot = match status {
                EntryStatus::Waiting => 0,
                EntryStatus::Ready => 1,
                EntryStatus::InCall => 2,
                EntryStatus::Done => continue,
            };
            lengths.entry(schedule.to_string()).or_default()[slot] += n;
        }
        let queued: Vec<&str> = lengths.keys().map(String::as_str).collect();
        let schedules = ScheduleRepo
            .online_or(conn, &queued, BOARD_LIMIT)
            .await?
            .into_iter()
            .map(|s| {
                let [waiting, ready, in_call] =
                    lengths.get(s.id.as_str()).copied().unwrap_or_default();
                ScheduleLoad {
                    id: s.id.to_string(),
                    host_id: s.host_id.to_string(),
                    date: s.slot.date,
                    start_time: s.slot.start_time,
                    end_time: s.slot.end_time,
                    status: s.status.as_str(),
                    waiting,
                    ready,
                    in_call,
                }
            })
            .collect();
        let transitions = AuditRepo
            .latest(conn, BOARD_TRANSITIONS)
            .await?
            .into_iter()
            .map(AuditView::from)
            .collect();
        Ok(Board {
            at: now,
            calls: LiveCalls {
                total: calls_total,
                items: calls.iter().map(|r| LiveCall::new(r, now)).collect(),
            },
            tutoring: LiveCalls {
                total: tutoring_total,
                items: tutoring.iter().map(|r| LiveCall::new(r, now)).collect(),
            },
            schedules,
            chats: LiveChats {
                total: chats_total,
                items: chats.iter().map(|c| LiveChat::new(c, now)).collect(),
            },
            transitions,
        })
    }
}
