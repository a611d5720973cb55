use consultd_domain::Timestamp;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::RepoError;
use crate::entity::audit_log;

/// A transition about to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// `None` when the server acted on its own (a timer).
    pub actor_id: Option<String>,
    pub actor_role: Option<String>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub at: Timestamp,
}

/// A recorded transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: String,
    pub actor_id: Option<String>,
    pub actor_role: Option<String>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub at: Timestamp,
}

impl From<audit_log::Model> for AuditEntry {
    fn from(m: audit_log::Model) -> Self {
        Self {
            id: m.id,
            actor_id: m.actor_id,
            actor_role: m.actor_role,
            action: m.action,
            entity_type: m.entity_type,
            entity_id: m.entity_id,
            from_state: m.from_state,
            to_state: m.to_state,
            at: m.at,
        }
    }
}

/// The audit trail. Stateless: every call takes the connection (or the open
/// transaction) to write through, so an audit row commits with its transition.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditRepo;

impl AuditRepo {
    /// Appends one entry; ids are time-ordered (UUIDv7) so ties on `at` keep
    /// insertion order.
    pub async fn record<C: ConnectionTrait>(
        &self,
        db: &C,
        entry: NewAuditEntry,
    ) -> Result<AuditEntry, RepoError> {
        let model = audit_log::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            actor_id: Set(entry.actor_id),
            actor_role: Set(entry.actor_role),
            action: Set(entry.action),
            entity_type: Set(entry.entity_type),
            entity_id: Set(entry.entity_id),
            from_state: Set(entry.from_state),
            to_state: Set(entry.to_state),
            at: Set(entry.at),
        };
        let inserted = audit_log::Entity::insert(model)
            .exec_with_returning(db)
            .await?;
        Ok(inserted.into())
    }

    /// The transitions of one entity, oldest first, at most `limit`.
    pub async fn for_entity<C: ConnectionTrait>(
        &self,
        db: &C,
        entity_id: &str,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, RepoError> {
        let rows = audit_log::Entity::find()
            .filter(audit_log::Column::EntityId.eq(entity_id))
            .order_by_asc(audit_log::Column::At)
            .order_by_asc(audit_log::Column::Id)
            .limit(limit)
            .all(db)
            .await?;
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }

    /// The latest transitions across all entities, newest first, at most `limit`.
    pub async fn latest<C: ConnectionTrait>(
        &self,
        db: &C,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, RepoError> {
        let rows = audit_log::Entity::find()
            .order_by_desc(audit_log::Column::At)
            .order_by_desc(audit_log::Column::Id)
            .limit(limit)
            .all(db)
            .await?;
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }
}
