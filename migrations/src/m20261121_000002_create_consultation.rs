//! Schedules, queue entries and call sessions (CONTRACT §4, §5).
//!
//! The partial unique indexes are the last line of defence for the
//! contract's "at most one" rules, so two requests (or two nodes) racing can
//! never both win: one live queue entry per guest and schedule, one live call
//! per host and per guest.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Id,
    HostId,
    Date,
    StartTime,
    EndTime,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum QueueEntries {
    Table,
    Id,
    ScheduleId,
    PatientId,
    PatientName,
    Status,
    CallId,
    JoinedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CallSessions {
    Table,
    Id,
    HostId,
    HostName,
    GuestId,
    GuestName,
    Inviter,
    Status,
    ScheduleId,
    QueueEntryId,
    AppointmentId,
    RoomId,
    CallType,
    HostPeerId,
    GuestPeerId,
    CreatedAt,
    ExpiresAt,
    ConfirmedAt,
    EndedAt,
}

const LIVE_CALL: [&str; 3] = ["INVITED", "CONFIRMED", "ACTIVE"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .if_not_exists()
                    .col(string_len(Schedules::Id, 36).primary_key())
                    .col(string(Schedules::HostId))
                    .col(string_len(Schedules::Date, 10))
                    .col(string_len(Schedules::StartTime, 8))
                    .col(string_len(Schedules::EndTime, 8))
                    .col(string_len(Schedules::Status, 16))
                    .col(timestamp_with_time_zone(Schedules::CreatedAt))
                    .col(timestamp_with_time_zone(Schedules::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_schedules_host")
                    .table(Schedules::Table)
                    .col(Schedules::HostId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(QueueEntries::Table)
                    .if_not_exists()
                    .col(string_len(QueueEntries::Id, 36).primary_key())
                    .col(string_len(QueueEntries::ScheduleId, 36))
                    .col(string(QueueEntries::PatientId))
                    .col(string_null(QueueEntries::PatientName))
                    .col(string_len(QueueEntries::Status, 16))
                    .col(string_len_null(QueueEntries::CallId, 36))
                    .col(timestamp_with_time_zone(QueueEntries::JoinedAt))
                    .col(timestamp_with_time_zone(QueueEntries::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_queue_entries_schedule")
                            .from(QueueEntries::Table, QueueEntries::ScheduleId)
                            .to(Schedules::Table, Schedules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_queue_entries_schedule_joined")
                    .table(QueueEntries::Table)
                    .col(QueueEntries::ScheduleId)
                    .col(QueueEntries::JoinedAt)
                    .col(QueueEntries::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_queue_entries_live_patient")
                    .table(QueueEntries::Table)
                    .col(QueueEntries::ScheduleId)
                    .col(QueueEntries::PatientId)
                    .unique()
                    .and_where(Expr::col(QueueEntries::Status).ne("DONE"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CallSessions::Table)
                    .if_not_exists()
                    .col(string_len(CallSessions::Id, 36).primary_key())
                    .col(string(CallSessions::HostId))
                    .col(string_null(CallSessions::HostName))
                    .col(string(CallSessions::GuestId))
                    .col(string_null(CallSessions::GuestName))
                    // "host" or "guest": who sent the invitation.
                    .col(string_len(CallSessions::Inviter, 8))
                    .col(string_len(CallSessions::Status, 16))
                    .col(string_len_null(CallSessions::ScheduleId, 36))
                    .col(string_len_null(CallSessions::QueueEntryId, 36))
                    .col(string_null(CallSessions::AppointmentId))
                    .col(string(CallSessions::RoomId))
                    .col(string_len(CallSessions::CallType, 16))
                    .col(string_null(CallSessions::HostPeerId))
                    .col(string_null(CallSessions::GuestPeerId))
                    .col(timestamp_with_time_zone(CallSessions::CreatedAt))
                    .col(timestamp_with_time_zone(CallSessions::ExpiresAt))
                    .col(timestamp_with_time_zone_null(CallSessions::ConfirmedAt))
                    .col(timestamp_with_time_zone_null(CallSessions::EndedAt))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("uq_call_sessions_live_host", CallSessions::HostId),
            ("uq_call_sessions_live_guest", CallSessions::GuestId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(CallSessions::Table)
                        .col(col)
                        .unique()
                        .and_where(Expr::col(CallSessions::Status).is_in(LIVE_CALL))
                        .to_owned(),
                )
                .await?;
        }
        for (name, cols) in [
            // The expiry timer's reload at start.
            (
                "idx_call_sessions_status_expires",
                vec![CallSessions::Status, CallSessions::ExpiresAt],
            ),
            (
                "idx_call_sessions_host_created",
                vec![CallSessions::HostId, CallSessions::CreatedAt],
            ),
            (
                "idx_call_sessions_guest_created",
                vec![CallSessions::GuestId, CallSessions::CreatedAt],
            ),
            (
                "idx_call_sessions_appointment",
                vec![CallSessions::AppointmentId],
            ),
            ("idx_call_sessions_room", vec![CallSessions::RoomId]),
        ] {
            let mut index = Index::create();
            index.name(name).table(CallSessions::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CallSessions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(QueueEntries::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Schedules::Table).to_owned())
            .await
    }
}
