use sea_orm::DbErr;

/// Why a repository call failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The row's state changed under the caller (a lost compare-and-set).
    #[error("the row changed concurrently")]
    Conflict,
    #[error("no such row")]
    NotFound,
    #[error("the database URL is not usable: {0}")]
    BadUrl(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}
