//! Commit-ordered messages between nodes, on PostgreSQL's LISTEN/NOTIFY.
//!
//! A message [`Bus::publish`]ed inside a transaction reaches every
//! [`Listener`] if and only if that transaction commits, and the messages of
//! different transactions arrive in the order the transactions committed:
//! PostgreSQL guarantees both. Nodes that deliver what they hear in the
//! order they hear it therefore all deliver in commit order.
//!
//! A payload above the notification limit (8000 bytes) is written to
//! `bus_messages` in the same transaction, and the notification carries
//! only its row id.
//!
//! The channel is named after the database schema, so deployments (and
//! tests) that share a database in different schemas never hear each other.

use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TryGetable};

use crate::{Backend, Conn, Db, RepoError};

/// Notifications up to this many bytes travel inline; PostgreSQL refuses
/// payloads of 8000 bytes or more.
pub const INLINE_LIMIT: usize = 7_900;

/// How long an oversized message's row is kept for listeners to read.
const ROW_KEEP: &str = "5 minutes";

/// Marks a notification that names a `bus_messages` row instead of
/// carrying the message (a message itself never starts with it).
const ROW_MARK: char = '#';

/// Where a deployment's nodes publish and listen.
#[derive(Debug, Clone)]
pub struct Bus {
    channel: String,
}

/// What a listener heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// One message, in commit order.
    Message(String),
    /// The listening connection was lost and is back: messages committed
    /// meanwhile were missed, so whatever they would have told must be
    /// read again from the database.
    Gap,
}

impl Bus {
    /// The bus of `db`'s schema. PostgreSQL only: one SQLite node has no
    /// one to talk to.
    pub async fn of(db: &Db) -> Result<Self, RepoError> {
        if db.backend() != Backend::Postgres {
            return Err(RepoError::BadUrl(
                "the bus between nodes needs PostgreSQL".to_owned(),
            ));
        }
        let schema: String = scalar(db.conn(), "SELECT current_schema()::text", vec![]).await?;
        Ok(Self {
            channel: format!("consultd_{schema}"),
        })
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Sends `message` to every listener when `txn` commits (and never if
    /// it rolls back). `message` must not start with `#` (JSON never does).
    pub async fn publish(&self, txn: &impl Conn, message: &str) -> Result<(), RepoError> {
        debug_assert!(!message.starts_with(ROW_MARK));
        let payload = if message.len() <= INLINE_LIMIT {
            message.to_owned()
        } else {
            // Rows older than any listener still needs go first: the table
            // stays as small as the last few minutes' large messages.
            txn.execute_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "DELETE FROM bus_messages WHERE created_at < now() - interval '{ROW_KEEP}'"
                ),
            ))
            .await?;
            let id: i64 = scalar(
                txn,
                "INSERT INTO bus_messages (payload, created_at) VALUES ($1, now()) RETURNING id",
                vec![message.into()],
            )
            .await?;
            format!("{ROW_MARK}{id}")
        };
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [self.channel.as_str().into(), payload.into()],
        ))
        .await?;
        Ok(())
    }

    /// A listener on its own connection (not the pool's: a `LISTEN` belongs
    /// to one session). It hears everything committed after this returns.
    pub async fn listen(&self, db: &Db) -> Result<Listener, RepoError> {
        let mut inner = PgListener::connect(db.url()).await.map_err(listen_error)?;
        inner.listen(&self.channel).await.map_err(listen_error)?;
        Ok(Listener {
            inner,
            db: db.clone(),
        })
    }
}

/// One node's ear on the bus.
pub struct Listener {
    inner: PgListener,
    db: Db,
}

impl Listener {
    /// The next message, or [`Heard::Gap`] once after the connection was
    /// lost and came back. An error means it could not come back (yet):
    /// call again, after a pause, to keep trying.
    pub async fn next(&mut self) -> Result<Heard, RepoError> {
        let Some(n) = self.inner.try_recv().await.map_err(listen_error)? else {
            return Ok(Heard::Gap);
        };
        let payload = n.payload();
        let Some(id) = payload.strip_prefix(ROW_MARK) else {
            return Ok(Heard::Message(payload.to_owned()));
        };
        let id: i64 = id
            .parse()
            .map_err(|_| RepoError::Corrupt(format!("bus notification {payload:?}")))?;
        let found = self
            .db
            .conn()
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT payload FROM bus_messages WHERE id = $1",
                [id.into()],
            ))
            .await?
            .map(|row| row.try_get_by_index::<String>(0))
            .transpose()?;
        // Gone only if this listener fell minutes behind: what it missed
        // must be read again, as after a lost connection.
        Ok(found.map_or(Heard::Gap, Heard::Message))
    }
}

/// How long to wait before listening again after a failure.
pub const RETRY: Duration = Duration::from_millis(500);

fn listen_error(e: sea_orm::sqlx::Error) -> RepoError {
    RepoError::Db(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(
        std::sync::Arc::new(e),
    )))
}

async fn scalar<T: TryGetable>(
    conn: &impl ConnectionTrait,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> Result<T, RepoError> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?
        .ok_or(RepoError::NotFound)?;
    Ok(row.try_get_by_index(0)?)
}
