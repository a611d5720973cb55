//! consultd's integration tests: the real server on an ephemeral port, real
//! sockets, a real database (SQLite, or PostgreSQL with TEST_DATABASE_URL).
//! One test binary with a module per area, so the suite links once.

mod common;

mod abandon;
mod admin;
mod api_docs;
mod asymmetric_keys;
mod binary;
mod chat;
mod consultation;
mod demo;
mod direct_calls;
mod input_order;
mod limits;
mod media;
mod nodes;
mod nodes_rooms;
mod rest;
mod signaling;
mod socket_auth;
mod socket_events;
mod tutoring;
mod webhooks;
