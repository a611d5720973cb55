//! Chat sessions, their messages and read markers (CONTRACT §7, seed 004).
//!
//! The unique index on (room, sender, client message id) is what makes a
//! resend after a lost ack store nothing new, even when two tabs resend at
//! once or on two nodes. Rows without a client message id never collide
//! (NULLs are distinct in unique indexes on both backends).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChatSessions {
    Table,
    Id,
    CustomerUserId,
    MechanicId,
    Status,
    Concern,
    DurationMs,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    EndsAt,
    EndedAt,
}

#[derive(DeriveIden)]
enum ChatMessages {
    Table,
    Id,
    RoomId,
    SenderId,
    SenderRole,
    Content,
    ClientMessageId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChatReadMarkers {
    Table,
    RoomId,
    UserId,
    MessageId,
    ReadAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChatSessions::Table)
                    .if_not_exists()
                    .col(string_len(ChatSessions::Id, 36).primary_key())
                    .col(string(ChatSessions::CustomerUserId))
                    .col(string_null(ChatSessions::MechanicId))
                    .col(string_len(ChatSessions::Status, 16))
                    .col(text_null(ChatSessions::Concern))
                    .col(big_integer(ChatSessions::DurationMs))
                    .col(timestamp_with_time_zone(ChatSessions::CreatedAt))
                    .col(timestamp_with_time_zone(ChatSessions::UpdatedAt))
                    .col(timestamp_with_time_zone_null(ChatSessions::StartedAt))
                    .col(timestamp_with_time_zone_null(ChatSessions::EndsAt))
                    .col(timestamp_with_time_zone_null(ChatSessions::EndedAt))
                    .to_owned(),
            )
            .await?;
        // "My sessions" for either side, and the open requests hosts list;
        // (status, ends_at) is the timer's reload at start.
        let session_indexes = [
            (
                "idx_chat_sessions_customer",
                vec![ChatSessions::CustomerUserId, ChatSessions::CreatedAt],
            ),
            (
                "idx_chat_sessions_mechanic",
                vec![ChatSessions::MechanicId, ChatSessions::CreatedAt],
            ),
            (
                "idx_chat_sessions_status",
                vec![ChatSessions::Status, ChatSessions::CreatedAt],
            ),
            (
                "idx_chat_sessions_status_ends",
                vec![ChatSessions::Status, ChatSessions::EndsAt],
            ),
        ];
        for (name, cols) in session_indexes {
            let mut index = Index::create();
            index.name(name).table(ChatSessions::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ChatMessages::Table)
                    .if_not_exists()
                    .col(string_len(ChatMessages::Id, 36).primary_key())
                    .col(string_len(ChatMessages::RoomId, 36))
                    .col(string(ChatMessages::SenderId))
                    .col(string_len(ChatMessages::SenderRole, 64))
                    .col(text(ChatMessages::Content))
                    .col(string_len_null(ChatMessages::ClientMessageId, 200))
                    .col(timestamp_with_time_zone(ChatMessages::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chat_messages_session")
                            .from(ChatMessages::Table, ChatMessages::RoomId)
                            .to(ChatSessions::Table, ChatSessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // History pages walk (created_at, id) backwards within a room.
        manager
            .create_index(
                Index::create()
                    .name("idx_chat_messages_room_created")
                    .table(ChatMessages::Table)
                    .col(ChatMessages::RoomId)
                    .col(ChatMessages::CreatedAt)
                    .col(ChatMessages::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_chat_messages_client_id")
                    .table(ChatMessages::Table)
                    .col(ChatMessages::RoomId)
                    .col(ChatMessages::SenderId)
                    .col(ChatMessages::ClientMessageId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChatReadMarkers::Table)
                    .if_not_exists()
                    .col(string_len(ChatReadMarkers::RoomId, 36))
                    .col(string(ChatReadMarkers::UserId))
                    .col(string_len(ChatReadMarkers::MessageId, 36))
                    .col(timestamp_with_time_zone(ChatReadMarkers::ReadAt))
                    .primary_key(
                        Index::create()
                            .col(ChatReadMarkers::RoomId)
                            .col(ChatReadMarkers::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chat_read_markers_session")
                            .from(ChatReadMarkers::Table, ChatReadMarkers::RoomId)
                            .to(ChatSessions::Table, ChatSessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ChatReadMarkers::Table.into_iden(),
            ChatMessages::Table.into_iden(),
            ChatSessions::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
