//! The audit trail: one row per state transition, written in the same
//! transaction as the transition itself (CONTRACT §4).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditLogs {
    Table,
    Id,
    ActorId,
    ActorRole,
    Action,
    EntityType,
    EntityId,
    FromState,
    ToState,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLogs::Table)
                    .if_not_exists()
                    .col(string_len(AuditLogs::Id, 36).primary_key())
                    // Null for transitions the server makes itself (timers).
                    .col(string_null(AuditLogs::ActorId))
                    .col(string_null(AuditLogs::ActorRole))
                    .col(string(AuditLogs::Action))
                    .col(string(AuditLogs::EntityType))
                    .col(string(AuditLogs::EntityId))
                    .col(string_null(AuditLogs::FromState))
                    .col(string(AuditLogs::ToState))
                    .col(timestamp_with_time_zone(AuditLogs::At))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_logs_entity_at")
                    .table(AuditLogs::Table)
                    .col(AuditLogs::EntityId)
                    .col(AuditLogs::At)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditLogs::Table).to_owned())
            .await
    }
}
