//! The repositories against real databases: SQLite always, PostgreSQL too
//! when TEST_DATABASE_URL is set. One test binary, a module per aggregate.

mod bus;
mod chat_repo;
mod consultation_repo;
mod repo;
mod webhook;
