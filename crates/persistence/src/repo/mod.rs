//! One repository per aggregate. Repositories are stateless and take any
//! connection, so a service writes a transition, its follow-ups and their
//! audit rows in one transaction.
//!
//! Every state change is a compare-and-set: `UPDATE … WHERE id = ? AND
//! status = ?` (plus the entry's live call); zero rows is
//! [`RepoError::Conflict`](crate::RepoError::Conflict).

pub mod audit;
pub mod call;
pub mod chat;
pub mod queue;
pub mod schedule;
pub mod secret;
pub mod webhook;

use consultd_domain::Status;
use sea_orm::{
    ConnectionTrait, EntityTrait, PaginatorTrait, PrimaryKeyTrait, QueryOrder, QuerySelect, Select,
};

use crate::RepoError;

/// Reads one row by id into its domain type; with `lock`, also row-locks it
/// (`SELECT … FOR UPDATE` on PostgreSQL; SQLite's write transaction already
/// excludes other writers).
async fn by_id<E, T, C>(db: &C, id: &str, lock: bool) -> Result<Option<T>, RepoError>
where
    E: EntityTrait,
    <E::PrimaryKey as PrimaryKeyTrait>::ValueType: From<String>,
    T: TryFrom<E::Model, Error = RepoError>,
    C: ConnectionTrait,
{
    let mut query = E::find_by_id(id.to_owned());
    if lock {
        query = query.lock_exclusive();
    }
    query.one(db).await?.map(T::try_from).transpose()
}

/// The oldest `limit` rows `q` selects (by creation, then id), and how
/// many it selects in all: a list that says when it was cut.
async fn oldest_page<E, T, C>(
    db: &C,
    q: Select<E>,
    (created, id): (E::Column, E::Column),
    limit: u64,
) -> Result<(Vec<T>, u64), RepoError>
where
    E: EntityTrait,
    E::Model: Sync,
    T: TryFrom<E::Model, Error = RepoError>,
    C: ConnectionTrait,
{
    let total = q.clone().count(db).await?;
    let rows = q
        .order_by_asc(created)
        .order_by_asc(id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(T::try_from)
        .collect::<Result<_, _>>()?;
    Ok((rows, total))
}

fn parse_status<S: Status>(raw: &str) -> Result<S, RepoError> {
    S::parse(raw).ok_or_else(|| RepoError::Corrupt(format!("unknown status `{raw}`")))
}

fn user(raw: String) -> Result<consultd_domain::UserId, RepoError> {
    consultd_domain::UserId::new(raw).ok_or_else(|| RepoError::Corrupt("empty user id".into()))
}

/// Zero rows from a compare-and-set means someone else moved first.
fn expect_one(rows: u64) -> Result<(), RepoError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(RepoError::Conflict)
    }
}
