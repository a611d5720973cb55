//! Throwaway databases for tests: a SQLite file in a fresh directory, or a
//! fresh PostgreSQL schema when `TEST_DATABASE_URL` is set. Each test gets its
//! own, so tests run in parallel without seeing each other's rows.

use std::path::PathBuf;

use sea_orm::{ConnectionTrait, Database};

use crate::RepoError;

/// The environment variable that points the test suites at PostgreSQL.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL to give consultd or [`crate::Db::connect`].
    pub url: String,
    dir: Option<PathBuf>,
    pg: Option<(String, String)>,
}

impl TestDatabase {
    /// PostgreSQL when `TEST_DATABASE_URL` is set, SQLite otherwise.
    pub async fn from_env() -> Result<Self, RepoError> {
        match std::env::var(TEST_DATABASE_URL) {
            Ok(url) if !url.is_empty() => Self::postgres(&url).await,
            _ => Ok(Self::sqlite()),
        }
    }

    /// SQLite always, and PostgreSQL too when `TEST_DATABASE_URL` is set: for
    /// repository tests that must hold on both.
    pub async fn each_backend() -> Result<Vec<Self>, RepoError> {
        let mut all = vec![Self::sqlite()];
        if let Ok(url) = std::env::var(TEST_DATABASE_URL)
            && !url.is_empty()
        {
            all.push(Self::postgres(&url).await?);
        }
        Ok(all)
    }

    /// A SQLite file in a new directory under the system temp dir.
    pub fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("consultd-test-{}", uuid::Uuid::new_v4()));
        let file = dir.join("consultd.sqlite3");
        // A failure here surfaces as a connect error with the path in it.
        let _ = std::fs::create_dir_all(&dir);
        Self {
            url: format!("sqlite://{}?mode=rwc", file.display()),
            dir: Some(dir),
            pg: None,
        }
    }

    /// A new schema in the PostgreSQL database at `base_url`, made the
    /// connection's `search_path`.
    pub async fn postgres(base_url: &str) -> Result<Self, RepoError> {
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(base_url).await?;
        admin
            .execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
            .await?;
        admin.close().await?;
        let sep = if base_url.contains('?') { '&' } else { '?' };
        Ok(Self {
            url: format!("{base_url}{sep}options=-c%20search_path%3D{schema}"),
            dir: None,
            pg: Some((base_url.to_owned(), schema)),
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// Drops the PostgreSQL schema (the SQLite directory goes on drop).
    pub async fn cleanup(mut self) {
        if let Some((base, schema)) = self.pg.take()
            && let Ok(admin) = Database::connect(base.as_str()).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await;
            let _ = admin.close().await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
