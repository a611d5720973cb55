//! consultd's persistence: a [`Db`] handle (SQLite or PostgreSQL, chosen by
//! URL), the sea-orm entities, and one repository per aggregate.
//!
//! Repositories take any [`sea_orm::ConnectionTrait`], so a service can run a
//! state transition and its audit row in one transaction.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod bus;
mod db;
pub mod entity;
mod error;
pub mod repo;
#[cfg(feature = "testing")]
pub mod testing;

pub use db::{Backend, Db, MigrationState, WriteTxn};
pub use error::RepoError;
pub use repo::audit::{AuditEntry, AuditRepo, NewAuditEntry};
pub use repo::call::{CallRecord, CallRepo, SessionFilter};
pub use repo::chat::{ChatMessage, ChatRepo, ChatScope};
pub use repo::queue::QueueRepo;
pub use repo::schedule::ScheduleRepo;
pub use repo::secret::SecretRepo;
pub use repo::webhook::{Delivery, NewDelivery, OutboxDepth, WebhookRepo};
/// Anything a repository runs on: the pool, or a transaction. The server
/// names this trait, never sea-orm's.
pub trait Conn: sea_orm::ConnectionTrait {}

impl<T: sea_orm::ConnectionTrait> Conn for T {}
