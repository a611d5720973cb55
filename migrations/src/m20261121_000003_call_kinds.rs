//! Direct calls (CONTRACT §5) and tutoring sessions (§6) are calls too: one
//! table, one machine, one timer. `kind` says which front door a call came
//! through (`queue`, `direct`, `tutoring`).
//!
//! - The "one live call per host / per guest" indexes now cover queue and
//!   direct calls only: a teacher may see several tutoring requests at once
//!   (seed 003), which are not calls in §4's sense.
//! - One live direct call per `appointment_id`, so two callers racing for
//!   the same appointment cannot both win.
//! - `room_id` is unique: a signaling room names exactly one call.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CallSessions {
    Table,
    HostId,
    GuestId,
    Status,
    AppointmentId,
    RoomId,
    Kind,
    SkillName,
}

const LIVE_CALL: [&str; 3] = ["INVITED", "CONFIRMED", "ACTIVE"];
const CALL_KINDS: [&str; 2] = ["queue", "direct"];

fn live_call_index(name: &str, col: CallSessions) -> IndexCreateStatement {
    Index::create()
        .name(name)
        .table(CallSessions::Table)
        .col(col)
        .unique()
        .and_where(Expr::col(CallSessions::Status).is_in(LIVE_CALL))
        .and_where(Expr::col(CallSessions::Kind).is_in(CALL_KINDS))
        .to_owned()
}

fn drop_index(name: &str) -> IndexDropStatement {
    Index::drop()
        .name(name)
        .table(CallSessions::Table)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Every call before this migration came from a queue.
        manager
            .alter_table(
                Table::alter()
                    .table(CallSessions::Table)
                    .add_column(string_len(CallSessions::Kind, 16).default("queue"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(CallSessions::Table)
                    .add_column(string_null(CallSessions::SkillName))
                    .to_owned(),
            )
            .await?;
        for name in [
            "uq_call_sessions_live_host",
            "uq_call_sessions_live_guest",
            "idx_call_sessions_room",
        ] {
            manager.drop_index(drop_index(name)).await?;
        }
        manager
            .create_index(live_call_index(
                "uq_call_sessions_live_host",
                CallSessions::HostId,
            ))
            .await?;
        manager
            .create_index(live_call_index(
                "uq_call_sessions_live_guest",
                CallSessions::GuestId,
            ))
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_call_sessions_live_appointment")
                    .table(CallSessions::Table)
                    .col(CallSessions::AppointmentId)
                    .unique()
                    .and_where(Expr::col(CallSessions::Status).is_in(LIVE_CALL))
                    .and_where(Expr::col(CallSessions::Kind).eq("direct"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_call_sessions_room")
                    .table(CallSessions::Table)
                    .col(CallSessions::RoomId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [
            "uq_call_sessions_room",
            "uq_call_sessions_live_appointment",
            "uq_call_sessions_live_host",
            "uq_call_sessions_live_guest",
        ] {
            manager.drop_index(drop_index(name)).await?;
        }
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
        manager
            .create_index(
                Index::create()
                    .name("idx_call_sessions_room")
                    .table(CallSessions::Table)
                    .col(CallSessions::RoomId)
                    .to_owned(),
            )
            .await?;
        for col in [CallSessions::SkillName, CallSessions::Kind] {
            manager
                .alter_table(
                    Table::alter()
                        .table(CallSessions::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
