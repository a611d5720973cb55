//! Bus messages too large for a PostgreSQL notification (its payload limit
//! is 8000 bytes): written in the transaction that publishes them, and the
//! notification names the row. Rows are kept for a few minutes, long enough
//! for every node's listener to read them, then deleted by later
//! publishers. SQLite never uses the table (one node has no bus).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_pk_auto, text, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BusMessages {
    Table,
    Id,
    Payload,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BusMessages::Table)
                    .col(big_pk_auto(BusMessages::Id))
                    .col(text(BusMessages::Payload))
                    .col(timestamp_with_time_zone(BusMessages::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("bus_messages_created_at")
                    .table(BusMessages::Table)
                    .col(BusMessages::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BusMessages::Table).to_owned())
            .await
    }
}
