use consultd_domain::{Schedule, ScheduleId, ScheduleStatus, Slot, Status, Timestamp, Transition};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::{by_id, expect_one, parse_status, user};
use crate::RepoError;
use crate::entity::schedule::{self, Column, Entity};

#[derive(Debug, Clone, Copy, Default)]
pub struct ScheduleRepo;

impl TryFrom<schedule::Model> for Schedule {
    type Error = RepoError;

    fn try_from(m: schedule::Model) -> Result<Self, RepoError> {
        Ok(Schedule {
            id: ScheduleId::new(m.id),
            host_id: user(m.host_id)?,
            slot: Slot {
                date: m.date,
                start_time: m.start_time,
                end_time: m.end_time,
            },
            status: parse_status(&m.status)?,
            created_at: m.created_at,
        })
    }
}

impl ScheduleRepo {
    pub async fn insert<C: ConnectionTrait>(&self, db: &C, s: &Schedule) -> Result<(), RepoError> {
        let model = schedule::ActiveModel {
            id: Set(s.id.to_string()),
            host_id: Set(s.host_id.to_string()),
            date: Set(s.slot.date.clone()),
            start_time: Set(s.slot.start_time.clone()),
            end_time: Set(s.slot.end_time.clone()),
            status: Set(s.status.as_str().to_owned()),
            created_at: Set(s.created_at),
            updated_at: Set(s.created_at),
        };
        Entity::insert(model).exec_without_returning(db).await?;
        Ok(())
    }

    pub async fn find<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> Result<Option<Schedule>, RepoError> {
        by_id::<Entity, _, _>(db, id, false).await
    }

    /// Reads and row-locks (PostgreSQL) the schedule, inside a write
    /// transaction, so queue changes and the schedule's end serialise.
    pub async fn lock<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> Result<Option<Schedule>, RepoError> {
        by_id::<Entity, _, _>(db, id, true).await
    }

    /// A host's schedules, newest first.
    pub async fn for_host<C: ConnectionTrait>(
        &self,
        db: &C,
        host_id: &str,
        limit: u64,
    ) -> Result<Vec<Schedule>, RepoError> {
        Entity::find()
            .filter(Column::HostId.eq(host_id))
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(db)
            .await?
            .into_iter()
            .map(Schedule::try_from)
            .collect()
    }

    /// The schedules online now and those named in `also` (schedules with
    /// someone in their queue), earliest slot first, at most `limit`.
    pub async fn online_or<C: ConnectionTrait>(
        &self,
        db: &C,
        also: &[&str],
        limit: u64,
    ) -> Result<Vec<Schedule>, RepoError> {
        Entity::find()
            .filter(
                Condition::any()
                    .add(Column::Status.eq(ScheduleStatus::Online.as_str()))
                    .add(Column::Id.is_in(also.iter().copied())),
            )
            .order_by_asc(Column::Date)
            .order_by_asc(Column::StartTime)
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(db)
            .await?
            .into_iter()
            .map(Schedule::try_from)
            .collect()
    }

    /// Compare-and-set of the status.
    pub async fn apply<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &ScheduleId,
        t: Transition<ScheduleStatus>,
        now: Timestamp,
    ) -> Result<(), RepoError> {
        let res = Entity::update_many()
            .col_expr(Column::Status, Expr::value(t.to.as_str()))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(id.as_str()))
            .filter(Column::Status.eq(t.from.as_str()))
            .exec(db)
            .await?;
        expect_one(res.rows_affected)
    }
}
