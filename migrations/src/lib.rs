//! consultd's schema, one migration per file; the migration's name is its
//! file name. They run at server start and with `consultd migrate`.

use sea_orm_migration::prelude::*;

pub mod m20261121_000001_create_audit_logs;
pub mod m20261121_000002_create_consultation;
pub mod m20261121_000003_call_kinds;
pub mod m20261121_000004_invitee_indexes;
pub mod m20261121_000005_chat;
pub mod m20261202_000006_call_end_reason;
pub mod m20261203_000007_bus_messages;
pub mod m20261207_000008_server_secrets;
pub mod m20261207_000009_webhook_outbox;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_audit_logs::Migration),
            Box::new(m20261121_000002_create_consultation::Migration),
            Box::new(m20261121_000003_call_kinds::Migration),
            Box::new(m20261121_000004_invitee_indexes::Migration),
            Box::new(m20261121_000005_chat::Migration),
            Box::new(m20261202_000006_call_end_reason::Migration),
            Box::new(m20261203_000007_bus_messages::Migration),
            Box::new(m20261207_000008_server_secrets::Migration),
            Box::new(m20261207_000009_webhook_outbox::Migration),
        ]
    }
}
