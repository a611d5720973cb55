use sea_orm::{DbErr, SqlErr};

/// Why a repository call failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The row's state changed under the caller (a lost compare-and-set), or
    /// a uniqueness rule refused the write (a lost race to create).
    #[error("the row changed concurrently")]
    Conflict,
    #[error("no such row")]
    NotFound,
    #[error("the database URL is not usable: {0}")]
    BadUrl(String),
    /// A stored value this version cannot read (a status it does not know).
    #[error("unreadable row: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Db(DbErr),
}

impl From<DbErr> for RepoError {
    fn from(e: DbErr) -> Self {
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Self::Conflict,
            _ => Self::Db(e),
        }
    }
}
