//! Webhook deliveries waiting to be made: one row per event and receiver URL,
//! written in the transaction of the transition it reports, so a committed
//! transition always has its deliveries and a rolled-back one never does.
//! Delivery workers claim rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL),
//! delete them once delivered, and keep the ones given up on as `dead`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_pk_auto, integer, string, text, text_null, timestamp_with_time_zone,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookOutbox {
    Table,
    Seq,
    EventId,
    Target,
    EntityKey,
    Body,
    Status,
    Attempts,
    NextAttemptMs,
    LeaseUntilMs,
    LastError,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookOutbox::Table)
                    // Allocated after the transition's row lock, so one
                    // entity's events are numbered in the order they
                    // happened: delivery order per entity follows it.
                    .col(big_pk_auto(WebhookOutbox::Seq))
                    .col(string(WebhookOutbox::EventId))
                    .col(text(WebhookOutbox::Target))
                    .col(string(WebhookOutbox::EntityKey))
                    .col(text(WebhookOutbox::Body))
                    .col(string(WebhookOutbox::Status))
                    .col(integer(WebhookOutbox::Attempts))
                    .col(big_integer(WebhookOutbox::NextAttemptMs))
                    .col(big_integer(WebhookOutbox::LeaseUntilMs))
                    .col(text_null(WebhookOutbox::LastError))
                    .col(timestamp_with_time_zone(WebhookOutbox::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // The claim's "no earlier pending row of this entity" test.
        manager
            .create_index(
                Index::create()
                    .name("webhook_outbox_chain")
                    .table(WebhookOutbox::Table)
                    .col(WebhookOutbox::Target)
                    .col(WebhookOutbox::EntityKey)
                    .col(WebhookOutbox::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_outbox_due")
                    .table(WebhookOutbox::Table)
                    .col(WebhookOutbox::Status)
                    .col(WebhookOutbox::NextAttemptMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookOutbox::Table).to_owned())
            .await
    }
}
