//! The audit trail, for admins (CONTRACT §8).

use consultd_domain::Principal;
use consultd_persistence::{AuditRepo, Db};

use super::views::AuditView;
use crate::error::ApiError;

#[derive(Clone)]
pub struct AuditLog {
    db: Db,
}

impl AuditLog {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// One entity's transitions oldest first, or the latest across
    /// everything.
    pub async fn audit_logs(
        &self,
        p: &Principal,
        entity_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<AuditView>, ApiError> {
        if !p.is_admin() {
            return Err(ApiError::forbidden("only an admin may read the audit log"));
        }
        let conn = self.db.conn();
        let rows = match entity_id {
            Some(id) => AuditRepo.for_entity(conn, id, limit).await?,
            None => AuditRepo.latest(conn, limit).await?,
        };
        Ok(rows.into_iter().map(AuditView::from).collect())
    }
}
