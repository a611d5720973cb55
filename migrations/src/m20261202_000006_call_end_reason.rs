//! Why a call ended, when the status alone does not say it: `abandoned`
//! for a call in progress that the server ended because neither
//! participant stayed connected. NULL for every other call (its status
//! gives the reason). The abandon sweep's "calls in progress" query uses
//! the existing `(status, expires_at)` index.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::string_len_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CallSessions {
    Table,
    EndReason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CallSessions::Table)
                    .add_column(string_len_null(CallSessions::EndReason, 16))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CallSessions::Table)
                    .drop_column(CallSessions::EndReason)
                    .to_owned(),
            )
            .await
    }
}
