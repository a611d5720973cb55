//! sea-orm entities, one module per table.

pub mod audit_log;
pub mod call_session;
pub mod chat_message;
pub mod chat_read_marker;
pub mod chat_session;
pub mod queue_entry;
pub mod schedule;
pub mod server_secret;
pub mod webhook_outbox;
