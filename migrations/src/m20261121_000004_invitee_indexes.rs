//! What every socket connect asks: "is there a live invitation for me?"
//! (and, for a host, "which tutoring requests wait for me?"). Without these
//! indexes SQLite's planner, having no statistics, answered it by walking
//! every INVITED call (`status, expires_at`): at 1,000 open invitations the
//! connect-time resync was a table scan per connect (seen in `perf` under
//! `scripts/bench`). With a user column, the status and the deadline in
//! one index, each side of the question is one index seek.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CallSessions {
    Table,
    HostId,
    GuestId,
    Status,
    ExpiresAt,
}

const INDEXES: [(&str, CallSessions); 2] = [
    (
        "idx_call_sessions_host_status_expires",
        CallSessions::HostId,
    ),
    (
        "idx_call_sessions_guest_status_expires",
        CallSessions::GuestId,
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, user) in INDEXES {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(CallSessions::Table)
                        .col(user)
                        .col(CallSessions::Status)
                        .col(CallSessions::ExpiresAt)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in INDEXES {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(CallSessions::Table)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
