use std::sync::Arc;
use std::time::Duration;

use consultd_migrations::Migrator;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::{MigrationStatus, MigratorTrait};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::RepoError;

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One migration and whether it has been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied: bool,
}

/// A pooled connection to consultd's database.
#[derive(Debug, Clone)]
pub struct Db {
    conn: DatabaseConnection,
    /// As given: the bus's listener opens its own connection with it.
    url: Arc<str>,
    backend: Backend,
    /// SQLite has one writer at a time. Queueing writers here, in order,
    /// instead of in SQLite's busy handler (which sleeps and retries with
    /// growing pauses) keeps tail latency low under concurrent writes.
    write_gate: Arc<Mutex<()>>,
}

/// A write transaction (see [`Db::begin_write`]). Dereferences to the
/// transaction; [`WriteTxn::commit`] ends it. Dropping it rolls back.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    // Released after the transaction ends (fields drop in order).
    _gate: Option<OwnedMutexGuard<()>>,
}

impl WriteTxn {
    pub async fn commit(self) -> Result<(), RepoError> {
        self.txn.commit().await?;
        Ok(())
    }
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl Db {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`).
    /// Migrations are not run here: see [`Db::migrate_up`].
    pub async fn connect(url: &str) -> Result<Self, RepoError> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(RepoError::BadUrl(
                "expected a sqlite: or postgres:// URL".to_owned(),
            ));
        };
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        if backend == Backend::Sqlite {
            // SQLite serialises writers; a small pool avoids piling up
            // connections that would only wait on the write lock.
            opts.max_connections(4).min_connections(1);
        } else {
            opts.max_connections(16).min_connections(1);
        }
        let conn = Database::connect(opts).await?;
        if backend == Backend::Sqlite {
            // WAL lets readers proceed while a writer commits; it is a
            // property of the file, so setting it once per start is enough.
            conn.execute_unprepared("PRAGMA journal_mode=WAL").await?;
        }
        Ok(Self {
            conn,
            url: url.into(),
            backend,
            write_gate: Arc::new(Mutex::new(())),
        })
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction for a state change. On SQLite it takes the write lock at
    /// `BEGIN` (`IMMEDIATE`), so reads inside it are current and it never
    /// fails half-way on a lock upgrade; on PostgreSQL rows are locked with
    /// `SELECT … FOR UPDATE` by the repositories' `lock` methods.
    pub async fn begin_write(&self) -> Result<WriteTxn, RepoError> {
        let sqlite = self.backend == Backend::Sqlite;
        let gate = if sqlite {
            Some(self.write_gate.clone().lock_owned().await)
        } else {
            None
        };
        let options = TransactionOptions {
            sqlite_transaction_mode: sqlite.then_some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        Ok(WriteTxn {
            txn: self.conn.begin_with_options(options).await?,
            _gate: gate,
        })
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), RepoError> {
        self.conn.ping().await.map_err(RepoError::from)
    }

    /// Applies every pending migration.
    ///
    /// Migrations run in one write transaction: all or nothing on both
    /// backends, and on one connection — with a pool, a SQLite connection
    /// that did not see another's `DROP INDEX` refuses to re-create it.
    pub async fn migrate_up(&self) -> Result<(), RepoError> {
        let txn = self.begin_write().await?;
        Migrator::up(&*txn, None).await?;
        txn.commit().await
    }

    /// Rolls back the latest `steps` migrations.
    pub async fn migrate_down(&self, steps: u32) -> Result<(), RepoError> {
        let txn = self.begin_write().await?;
        Migrator::down(&*txn, Some(steps)).await?;
        txn.commit().await
    }

    /// Every known migration and whether it is applied.
    pub async fn migration_status(&self) -> Result<Vec<MigrationState>, RepoError> {
        let all = Migrator::get_migration_with_status(&self.conn).await?;
        Ok(all
            .iter()
            .map(|m| MigrationState {
                name: m.name().to_owned(),
                applied: m.status() == MigrationStatus::Applied,
            })
            .collect())
    }
}
