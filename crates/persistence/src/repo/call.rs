use consultd_domain::{
    AppointmentId, Call, CallId, CallKind, CallOrigin, CallStatus, EntryId, Party, ScheduleId,
    Side, SkillName, Status, Timestamp, Transition,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::{by_id, expect_one, oldest_page, parse_status, user};
use crate::RepoError;
use crate::entity::call_session::{self, Column, Entity};

/// A call and what it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub call: Call,
    /// The front door it came through and what it is tied to.
    pub origin: CallOrigin,
    /// The signaling room (§3); unique across calls.
    pub room_id: String,
    /// `video` or `voice`.
    pub call_type: String,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CallRepo;

fn side_str(side: Side) -> &'static str {
    match side {
        Side::Host => "host",
        Side::Guest => "guest",
    }
}

impl TryFrom<call_session::Model> for CallRecord {
    type Error = RepoError;

    fn try_from(m: call_session::Model) -> Result<Self, RepoError> {
        let inviter = match m.inviter.as_str() {
            "host" => Side::Host,
            "guest" => Side::Guest,
            other => return Err(RepoError::Corrupt(format!("unknown inviter `{other}`"))),
        };
        let corrupt =
            |what: &str| RepoError::Corrupt(format!("call {} has no usable {what}", m.id));
        let origin = match CallKind::parse(&m.kind) {
            Some(CallKind::Queue) => CallOrigin::Queue {
                schedule_id: ScheduleId::new(
                    m.schedule_id.clone().ok_or_else(|| corrupt("schedule"))?,
                ),
                entry_id: EntryId::new(
                    m.queue_entry_id
                        .clone()
                        .ok_or_else(|| corrupt("queue entry"))?,
                ),
            },
            Some(CallKind::Direct) => CallOrigin::Direct {
                appointment_id: m
                    .appointment_id
                    .clone()
                    .and_then(AppointmentId::parse)
                    .ok_or_else(|| corrupt("appointment id"))?,
            },
            Some(CallKind::Tutoring) => CallOrigin::Tutoring {
                skill_name: m
                    .skill_name
                    .as_deref()
                    .and_then(SkillName::parse)
                    .ok_or_else(|| corrupt("skill name"))?,
            },
            None => {
                return Err(RepoError::Corrupt(format!(
                    "unknown call kind `{}`",
                    m.kind
                )));
            }
        };
        Ok(CallRecord {
            origin,
            call: Call {
                id: CallId::new(m.id),
                host: Party {
                    user_id: user(m.host_id)?,
                    name: m.host_name,
                    peer_id: m.host_peer_id,
                },
                guest: Party {
                    user_id: user(m.guest_id)?,
                    name: m.guest_name,
                    peer_id: m.guest_peer_id,
                },
                inviter,
                status: parse_status(&m.status)?,
                created_at: m.created_at,
                expires_at: m.expires_at,
                confirmed_at: m.confirmed_at,
                ended_at: m.ended_at,
                abandoned: m.end_reason.as_deref() == Some(ABANDONED),
            },
            room_id: m.room_id,
            call_type: m.call_type,
        })
    }
}

/// `end_reason` as stored: only what the status cannot say.
const ABANDONED: &str = "abandoned";

fn end_reason(c: &Call) -> Option<String> {
    c.abandoned.then(|| ABANDONED.to_owned())
}

/// The column holding the user id of `side`.
fn user_column(side: Side) -> Column {
    match side {
        Side::Host => Column::HostId,
        Side::Guest => Column::GuestId,
    }
}

fn live() -> Vec<&'static str> {
    statuses(CallStatus::LIVE)
}

fn statuses(list: &[CallStatus]) -> Vec<&'static str> {
    list.iter().map(|s| s.as_str()).collect()
}

/// Queue and direct calls: what §4's polls and "one call at a time" see.
fn calls_only() -> Condition {
    Condition::all().add(Column::Kind.is_in(CallKind::CALLS.iter().map(|k| k.as_str())))
}

/// Which of a user's tutoring sessions to list.
#[derive(Debug, Clone, Copy)]
pub struct SessionFilter<'a> {
    pub user_id: &'a str,
    /// The side the user is on; `None` lists every session (admins).
    pub side: Option<Side>,
    /// Only these statuses (all when empty).
    pub statuses: &'a [CallStatus],
    /// Only requests still answerable at this instant (`expires_at > now`).
    pub unexpired_at: Option<Timestamp>,
    pub limit: u64,
}

impl CallRepo {
    /// Stores a new call; [`RepoError::Conflict`] when the host or the guest
    /// already has a live call (unique indexes, race-free across nodes).
    pub async fn insert<C: ConnectionTrait>(
        &self,
        db: &C,
        r: &CallRecord,
    ) -> Result<(), RepoError> {
        let c = &r.call;
        let model = call_session::ActiveModel {
            id: Set(c.id.to_string()),
            host_id: Set(c.host.user_id.to_string()),
            host_name: Set(c.host.name.clone()),
            guest_id: Set(c.guest.user_id.to_string()),
            guest_name: Set(c.guest.name.clone()),
            inviter: Set(side_str(c.inviter).to_owned()),
            status: Set(c.status.as_str().to_owned()),
            schedule_id: Set(r.origin.schedule_id().map(ToString::to_string)),
            queue_entry_id: Set(r.origin.entry_id().map(ToString::to_string)),
            appointment_id: Set(r.origin.appointment_id().map(ToString::to_string)),
            kind: Set(r.origin.kind().as_str().to_owned()),
            skill_name: Set(r.origin.skill_name().map(|s| s.as_str().to_owned())),
            room_id: Set(r.room_id.clone()),
            call_type: Set(r.call_type.clone()),
            host_peer_id: Set(c.host.peer_id.clone()),
            guest_peer_id: Set(c.guest.peer_id.clone()),
            created_at: Set(c.created_at),
            expires_at: Set(c.expires_at),
            confirmed_at: Set(c.confirmed_at),
            ended_at: Set(c.ended_at),
            end_reason: Set(end_reason(c)),
        };
        Entity::insert(model).exec_without_returning(db).await?;
        Ok(())
    }

    pub async fn find<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> Result<Option<CallRecord>, RepoError> {
        by_id::<Entity, _, _>(db, id, false).await
    }

    /// Reads and row-locks (PostgreSQL) a call inside a write transaction.
    pub async fn lock<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> Result<Option<CallRecord>, RepoError> {
        by_id::<Entity, _, _>(db, id, true).await
    }

    /// Compare-and-set of the status, with the timestamps the move set and
    /// the participants' names as the call now knows them.
    pub async fn apply<C: ConnectionTrait>(
        &self,
        db: &C,
        call: &Call,
        t: Transition<CallStatus>,
    ) -> Result<(), RepoError> {
        let res = Entity::update_many()
            .col_expr(Column::Status, Expr::value(t.to.as_str()))
            .col_expr(Column::ConfirmedAt, Expr::value(call.confirmed_at))
            .col_expr(Column::EndedAt, Expr::value(call.ended_at))
            .col_expr(Column::HostName, Expr::value(call.host.name.clone()))
            .col_expr(Column::GuestName, Expr::value(call.guest.name.clone()))
            .col_expr(Column::EndReason, Expr::value(end_reason(call)))
            .filter(Column::Id.eq(call.id.as_str()))
            .filter(Column::Status.eq(t.from.as_str()))
            .exec(db)
            .await?;
        expect_one(res.rows_affected)
    }

    /// Stores one side's peer id while the call is live.
    pub async fn set_peer_id<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &CallId,
        side: Side,
        peer_id: &str,
    ) -> Result<(), RepoError> {
        let col = match side {
            Side::Host => Column::HostPeerId,
            Side::Guest => Column::GuestPeerId,
        };
        let res = Entity::update_many()
            .col_expr(col, Expr::value(peer_id))
            .filter(Column::Id.eq(id.as_str()))
            .filter(Column::Status.is_in(live()))
            .exec(db)
            .await?;
        expect_one(res.rows_affected)
    }

    /// The host's most recent call, any status.
    pub async fn latest_for_host<C: ConnectionTrait>(
        &self,
        db: &C,
        host_id: &str,
    ) -> Result<Option<CallRecord>, RepoError> {
        Entity::find()
            .filter(Column::HostId.eq(host_id))
            .filter(calls_only())
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .one(db)
            .await?
            .map(CallRecord::try_from)
            .transpose()
    }

    /// The live direct call holding `appointment_id`, if any (at most one:
    /// a unique index).
    pub async fn live_for_appointment<C: ConnectionTrait>(
        &self,
        db: &C,
        appointment_id: &str,
    ) -> Result<Option<CallRecord>, RepoError> {
        Entity::find()
            .filter(Column::Kind.eq(CallKind::Direct.as_str()))
            .filter(Column::AppointmentId.eq(appointment_id))
            .filter(Column::Status.is_in(live()))
            .one(db)
            .await?
            .map(CallRecord::try_from)
            .transpose()
    }

    /// Every call a signaling room key could name, in one round trip: by
    /// id, by `room_id`, or the live direct call holding it as its
    /// `appointment_id` (at most one of each: all three are unique).
    pub async fn room_candidates<C: ConnectionTrait>(
        &self,
        db: &C,
        key: &str,
    ) -> Result<Vec<CallRecord>, RepoError> {
        Entity::find()
            .filter(
                Condition::any()
                    .add(Column::Id.eq(key))
                    .add(Column::RoomId.eq(key))
                    .add(
                        Condition::all()
                            .add(Column::Kind.eq(CallKind::Direct.as_str()))
                            .add(Column::AppointmentId.eq(key))
                            .add(Column::Status.is_in(live())),
                    ),
            )
            .limit(3)
            .all(db)
            .await?
            .into_iter()
            .map(CallRecord::try_from)
            .collect()
    }

    /// The call a signaling room names (room ids are unique), any status.
    pub async fn find_by_room<C: ConnectionTrait>(
        &self,
        db: &C,
        room_id: &str,
    ) -> Result<Option<CallRecord>, RepoError> {
        Entity::find()
            .filter(Column::RoomId.eq(room_id))
            .one(db)
            .await?
            .map(CallRecord::try_from)
            .transpose()
    }

    /// Tutoring sessions, newest first.
    pub async fn sessions<C: ConnectionTrait>(
        &self,
        db: &C,
        f: SessionFilter<'_>,
    ) -> Result<Vec<CallRecord>, RepoError> {
        let mut q = Entity::find().filter(Column::Kind.eq(CallKind::Tutoring.as_str()));
        if let Some(side) = f.side {
            q = q.filter(user_column(side).eq(f.user_id));
        }
        if !f.statuses.is_empty() {
            q = q.filter(Column::Status.is_in(statuses(f.statuses)));
        }
        if let Some(now) = f.unexpired_at {
            q = q.filter(Column::ExpiresAt.gt(now));
        }
        q.order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .limit(f.limit)
            .all(db)
            .await?
            .into_iter()
            .map(CallRecord::try_from)
            .collect()
    }

    /// The user's unanswered, unexpired invitation as invitee.
    pub async fn pending_for_invitee<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Option<CallRecord>, RepoError> {
        // One seek per side (the invitee is the guest of a host's call or
        // the host of a guest's call); an OR of both is not planned as two
        // seeks by SQLite without statistics.
        let mut newest: Option<call_session::Model> = None;
        for (inviter, invitee) in [(Side::Host, Column::GuestId), (Side::Guest, Column::HostId)] {
            let found = Entity::find()
                .filter(invitee.eq(user_id))
                .filter(Column::Status.eq(CallStatus::Invited.as_str()))
                .filter(Column::ExpiresAt.gt(now))
                .filter(Column::Inviter.eq(side_str(inviter)))
                .filter(calls_only())
                .order_by_desc(Column::CreatedAt)
                .order_by_desc(Column::Id)
                .one(db)
                .await?;
            if let Some(m) = found
                && newest
                    .as_ref()
                    .is_none_or(|n| (&m.created_at, &m.id) > (&n.created_at, &n.id))
            {
                newest = Some(m);
            }
        }
        newest.map(CallRecord::try_from).transpose()
    }

    /// The user's live call (queue or direct) on the given side, if any.
    pub async fn live_call<C: ConnectionTrait>(
        &self,
        db: &C,
        side: Side,
        user_id: &str,
    ) -> Result<Option<CallRecord>, RepoError> {
        Entity::find()
            .filter(user_column(side).eq(user_id))
            .filter(Column::Status.is_in(live()))
            .filter(calls_only())
            .one(db)
            .await?
            .map(CallRecord::try_from)
            .transpose()
    }

    /// Whether the user has a live call (queue or direct) on the given side.
    pub async fn has_live<C: ConnectionTrait>(
        &self,
        db: &C,
        side: Side,
        user_id: &str,
    ) -> Result<bool, RepoError> {
        Ok(self.live_call(db, side, user_id).await?.is_some())
    }

    /// The calls and tutoring sessions of any kind, not yet over, that
    /// `a` and `b` take part in together (either on either side).
    pub async fn live_between<C: ConnectionTrait>(
        &self,
        db: &C,
        a: &str,
        b: &str,
    ) -> Result<Vec<CallRecord>, RepoError> {
        let pair = |host: &str, guest: &str| {
            Condition::all()
                .add(Column::HostId.eq(host))
                .add(Column::GuestId.eq(guest))
        };
        Entity::find()
            .filter(Condition::any().add(pair(a, b)).add(pair(b, a)))
            .filter(Column::Status.is_in(live()))
            .all(db)
            .await?
            .into_iter()
            .map(CallRecord::try_from)
            .collect()
    }

    /// The calls (queue and direct) or the tutoring sessions not yet over,
    /// oldest first, at most `limit`, and how many there are in all: what
    /// the admin view lists.
    pub async fn live_page<C: ConnectionTrait>(
        &self,
        db: &C,
        tutoring: bool,
        limit: u64,
    ) -> Result<(Vec<CallRecord>, u64), RepoError> {
        let kind = if tutoring {
            Condition::all().add(Column::Kind.eq(CallKind::Tutoring.as_str()))
        } else {
            calls_only()
        };
        let q = Entity::find()
            .filter(Column::Status.is_in(live()))
            .filter(kind);
        oldest_page(db, q, (Column::CreatedAt, Column::Id), limit).await
    }

    /// Every call in progress (`CONFIRMED` or `ACTIVE`, any kind), for the
    /// abandon sweep.
    pub async fn in_progress<C: ConnectionTrait>(
        &self,
        db: &C,
    ) -> Result<Vec<CallRecord>, RepoError> {
        Entity::find()
            .filter(Column::Status.is_in(statuses(&[CallStatus::Confirmed, CallStatus::Active])))
            .all(db)
            .await?
            .into_iter()
            .map(CallRecord::try_from)
            .collect()
    }

    /// Every invitation still answerable at `now`, of every kind (queue,
    /// direct and tutoring), for the connect resync's index at start.
    pub async fn unanswered<C: ConnectionTrait>(
        &self,
        db: &C,
        now: Timestamp,
    ) -> Result<Vec<CallRecord>, RepoError> {
        Entity::find()
            .filter(Column::Status.eq(CallStatus::Invited.as_str()))
            .filter(Column::ExpiresAt.gt(now))
            .all(db)
            .await?
            .into_iter()
            .map(CallRecord::try_from)
            .collect()
    }

    /// Every unanswered invitation with its deadline, for the expiry timer.
    pub async fn deadlines<C: ConnectionTrait>(
        &self,
        db: &C,
    ) -> Result<Vec<(CallId, Timestamp)>, RepoError> {
        let rows: Vec<(String, Timestamp)> = Entity::find()
            .select_only()
            .column(Column::Id)
            .column(Column::ExpiresAt)
            .filter(Column::Status.eq(CallStatus::Invited.as_str()))
            .order_by_asc(Column::ExpiresAt)
            .into_tuple()
            .all(db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, at)| (CallId::new(id), at))
            .collect())
    }
}
