//! The webhook outbox (`webhook_outbox`): deliveries written with the
//! transition they report, claimed by delivery workers under a lease, and
//! deleted once delivered.
//!
//! A row is claimable when it is pending, due, not leased, and no earlier
//! pending row of the same entity waits for the same URL: one entity's
//! events reach a receiver one at a time, in the order they were written.
//! On PostgreSQL the claim locks with `FOR UPDATE SKIP LOCKED`, so workers on
//! several nodes never claim one row twice; on SQLite the write transaction
//! already excludes every other writer.

use consultd_domain::Timestamp;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::entity::webhook_outbox::{self, Column, Entity};
use crate::{Db, RepoError};

const PENDING: &str = "pending";
const DEAD: &str = "dead";

/// A delivery about to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The event's id: the same for every URL and every retry.
    pub event_id: String,
    pub target: String,
    /// What orders deliveries: `<entity type>:<id>`.
    pub entity_key: String,
    /// The exact bytes to POST (and sign).
    pub body: String,
}

/// A claimed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    pub event_id: String,
    pub target: String,
    pub entity_key: String,
    pub body: String,
    /// Failed attempts so far.
    pub attempts: i32,
    pub created_at: Timestamp,
}

impl From<webhook_outbox::Model> for Delivery {
    fn from(m: webhook_outbox::Model) -> Self {
        Self {
            seq: m.seq,
            event_id: m.event_id,
            target: m.target,
            entity_key: m.entity_key,
            body: m.body,
            attempts: m.attempts,
            created_at: m.created_at,
        }
    }
}

/// How many rows wait, and how many were given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxDepth {
    pub pending: u64,
    pub dead: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookRepo;

impl WebhookRepo {
    /// Writes deliveries inside the caller's transaction, due at once.
    pub async fn enqueue<C: ConnectionTrait>(
        &self,
        db: &C,
        rows: Vec<NewDelivery>,
        now: Timestamp,
    ) -> Result<(), RepoError> {
        if rows.is_empty() {
            return Ok(());
        }
        let models = rows.into_iter().map(|r| webhook_outbox::ActiveModel {
            event_id: Set(r.event_id),
            target: Set(r.target),
            entity_key: Set(r.entity_key),
            body: Set(r.body),
            status: Set(PENDING.to_owned()),
            attempts: Set(0),
            next_attempt_ms: Set(0),
            lease_until_ms: Set(0),
            last_error: Set(None),
            created_at: Set(now),
            ..Default::default()
        });
        Entity::insert_many(models)
            .exec_without_returning(db)
            .await?;
        Ok(())
    }

    /// Claims up to `limit` deliverable rows, oldest first, leasing them
    /// until `now_ms + lease_ms`. A lease that runs out (its node died
    /// mid-delivery) makes the row claimable again: delivery is at least
    /// once.
    pub async fn claim(
        &self,
        db: &Db,
        now_ms: i64,
        lease_ms: i64,
        limit: u64,
    ) -> Result<Vec<Delivery>, RepoError> {
        let txn = db.begin_write().await?;
        let earlier = Alias::new("earlier");
        let earlier_pending = Query::select()
            .expr(Expr::val(1))
            .from_as(Entity, earlier.clone())
            .and_where(
                Expr::col((earlier.clone(), Column::Target)).equals((Entity, Column::Target)),
            )
            .and_where(
                Expr::col((earlier.clone(), Column::EntityKey)).equals((Entity, Column::EntityKey)),
            )
            .and_where(
                Expr::col((earlier.clone(), Column::Seq)).lt(Expr::col((Entity, Column::Seq))),
            )
            .and_where(Expr::col((earlier, Column::Status)).eq(PENDING))
            .to_owned();
        let rows = Entity::find()
            .filter(Column::Status.eq(PENDING))
            .filter(Column::NextAttemptMs.lte(now_ms))
            .filter(Column::LeaseUntilMs.lte(now_ms))
            .filter(Expr::exists(earlier_pending).not())
            .order_by_asc(Column::Seq)
            .limit(limit)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(&*txn)
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        Entity::update_many()
            .col_expr(Column::LeaseUntilMs, Expr::value(now_ms + lease_ms))
            .filter(Column::Seq.is_in(rows.iter().map(|r| r.seq)))
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        Ok(rows.into_iter().map(Delivery::from).collect())
    }

    /// The receiver took it: the row goes.
    pub async fn delivered<C: ConnectionTrait>(&self, db: &C, seq: i64) -> Result<(), RepoError> {
        Entity::delete_by_id(seq).exec(db).await?;
        Ok(())
    }

    /// An attempt failed: try again at `next_attempt_ms`.
    pub async fn retry_later<C: ConnectionTrait>(
        &self,
        db: &C,
        seq: i64,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), RepoError> {
        let next = (Column::NextAttemptMs, Expr::value(next_attempt_ms));
        failed(db, seq, error, next).await
    }

    /// Past its give-up time: kept as `dead`, for an operator to read, and
    /// no longer holding back the entity's later events.
    pub async fn give_up<C: ConnectionTrait>(
        &self,
        db: &C,
        seq: i64,
        error: &str,
    ) -> Result<(), RepoError> {
        failed(db, seq, error, (Column::Status, Expr::value(DEAD))).await
    }

    pub async fn depth<C: ConnectionTrait>(&self, db: &C) -> Result<OutboxDepth, RepoError> {
        let pending = Entity::find()
            .filter(Column::Status.eq(PENDING))
            .count(db)
            .await?;
        let dead = Entity::find()
            .filter(Column::Status.eq(DEAD))
            .count(db)
            .await?;
        Ok(OutboxDepth { pending, dead })
    }

    /// The rows given up on, oldest first (for operators and tests).
    pub async fn dead<C: ConnectionTrait>(
        &self,
        db: &C,
        limit: u64,
    ) -> Result<Vec<(Delivery, Option<String>)>, RepoError> {
        let rows = Entity::find()
            .filter(Column::Status.eq(DEAD))
            .order_by_asc(Column::Seq)
            .limit(limit)
            .all(db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|m| {
                let error = m.last_error.clone();
                (Delivery::from(m), error)
            })
            .collect())
    }
}

/// Records a failed attempt, releases the lease, and sets `then`.
async fn failed<C: ConnectionTrait>(
    db: &C,
    seq: i64,
    error: &str,
    then: (Column, Expr),
) -> Result<(), RepoError> {
    Entity::update_many()
        .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .col_expr(then.0, then.1)
        .col_expr(Column::LeaseUntilMs, Expr::value(0_i64))
        .col_expr(Column::LastError, Expr::value(error))
        .filter(Column::Seq.eq(seq))
        .exec(db)
        .await?;
    Ok(())
}
