use consultd_domain::{
    CallId, EntryChange, EntryId, EntryState, EntryStatus, QueueEntry, ScheduleId, Status,
    Timestamp,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::{by_id, expect_one, parse_status, user};
use crate::RepoError;
use crate::entity::queue_entry::{self, Column, Entity};

#[derive(Debug, Clone, Copy, Default)]
pub struct QueueRepo;

impl TryFrom<queue_entry::Model> for QueueEntry {
    type Error = RepoError;

    fn try_from(m: queue_entry::Model) -> Result<Self, RepoError> {
        Ok(QueueEntry {
            id: EntryId::new(m.id),
            schedule_id: ScheduleId::new(m.schedule_id),
            patient_id: user(m.patient_id)?,
            patient_name: m.patient_name,
            status: parse_status(&m.status)?,
            call_id: m.call_id.map(CallId::new),
            joined_at: m.joined_at,
        })
    }
}

fn state_filter(state: &EntryState) -> Condition {
    let call = match &state.call_id {
        Some(id) => Column::CallId.eq(id.as_str()),
        None => Column::CallId.is_null(),
    };
    Condition::all()
        .add(Column::Status.eq(state.status.as_str()))
        .add(call)
}

impl QueueRepo {
    /// Adds an entry; [`RepoError::Conflict`] when the guest already has a
    /// live entry in this schedule (the unique index decides, race-free).
    pub async fn insert<C: ConnectionTrait>(
        &self,
        db: &C,
        e: &QueueEntry,
    ) -> Result<(), RepoError> {
        let model = queue_entry::ActiveModel {
            id: Set(e.id.to_string()),
            schedule_id: Set(e.schedule_id.to_string()),
            patient_id: Set(e.patient_id.to_string()),
            patient_name: Set(e.patient_name.clone()),
            status: Set(e.status.as_str().to_owned()),
            call_id: Set(e.call_id.as_ref().map(ToString::to_string)),
            joined_at: Set(e.joined_at),
            updated_at: Set(e.joined_at),
        };
        Entity::insert(model).exec_without_returning(db).await?;
        Ok(())
    }

    pub async fn find<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> Result<Option<QueueEntry>, RepoError> {
        by_id::<Entity, _, _>(db, id, false).await
    }

    /// Reads and row-locks (PostgreSQL) an entry inside a write transaction.
    pub async fn lock<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> Result<Option<QueueEntry>, RepoError> {
        by_id::<Entity, _, _>(db, id, true).await
    }

    /// The guest's live (not `DONE`) entry in a schedule.
    pub async fn live_for<C: ConnectionTrait>(
        &self,
        db: &C,
        schedule_id: &str,
        patient_id: &str,
    ) -> Result<Option<QueueEntry>, RepoError> {
        Entity::find()
            .filter(Column::ScheduleId.eq(schedule_id))
            .filter(Column::PatientId.eq(patient_id))
            .filter(Column::Status.ne("DONE"))
            .one(db)
            .await?
            .map(QueueEntry::try_from)
            .transpose()
    }

    /// Every entry of a schedule in join order (ids are time-ordered, so
    /// they break ties between equal join times).
    pub async fn list<C: ConnectionTrait>(
        &self,
        db: &C,
        schedule_id: &str,
    ) -> Result<Vec<QueueEntry>, RepoError> {
        Entity::find()
            .filter(Column::ScheduleId.eq(schedule_id))
            .order_by_asc(Column::JoinedAt)
            .order_by_asc(Column::Id)
            .all(db)
            .await?
            .into_iter()
            .map(QueueEntry::try_from)
            .collect()
    }

    /// How many entries each schedule holds in each status but `DONE`:
    /// the queue lengths the admin view shows.
    pub async fn lengths<C: ConnectionTrait>(
        &self,
        db: &C,
    ) -> Result<Vec<(ScheduleId, EntryStatus, u64)>, RepoError> {
        let rows: Vec<(String, String, i64)> = Entity::find()
            .select_only()
            .column(Column::ScheduleId)
            .column(Column::Status)
            .column_as(Column::Id.count(), "n")
            .filter(Column::Status.ne(EntryStatus::Done.as_str()))
            .group_by(Column::ScheduleId)
            .group_by(Column::Status)
            .into_tuple()
            .all(db)
            .await?;
        rows.into_iter()
            .map(|(schedule, status, n)| {
                Ok((
                    ScheduleId::new(schedule),
                    parse_status(&status)?,
                    u64::try_from(n).unwrap_or(0),
                ))
            })
            .collect()
    }

    /// The entry's 1-based place in its schedule's join order.
    pub async fn position<C: ConnectionTrait>(
        &self,
        db: &C,
        e: &QueueEntry,
    ) -> Result<u64, RepoError> {
        let earlier = Entity::find()
            .filter(Column::ScheduleId.eq(e.schedule_id.as_str()))
            .filter(
                Condition::any().add(Column::JoinedAt.lt(e.joined_at)).add(
                    Condition::all()
                        .add(Column::JoinedAt.eq(e.joined_at))
                        .add(Column::Id.lt(e.id.as_str())),
                ),
            )
            .count(db)
            .await?;
        Ok(earlier + 1)
    }

    /// Compare-and-set of (status, live call).
    pub async fn apply<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &EntryId,
        change: &EntryChange,
        now: Timestamp,
    ) -> Result<(), RepoError> {
        let res = Entity::update_many()
            .col_expr(Column::Status, Expr::value(change.to.status.as_str()))
            .col_expr(
                Column::CallId,
                Expr::value(change.to.call_id.as_ref().map(ToString::to_string)),
            )
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(id.as_str()))
            .filter(state_filter(&change.from))
            .exec(db)
            .await?;
        expect_one(res.rows_affected)
    }
}
