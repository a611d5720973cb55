//! consultd's domain: the vocabulary and the state machines of consultation
//! apps, with no I/O at all.
//!
//! Everything here is deterministic: time and fresh ids are inputs, never read
//! from a clock or a random source, so every transition can be tested with a
//! virtual clock. The server crate owns I/O and calls into this crate.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod identity;
pub mod rate;
pub mod time;

pub use identity::{Principal, Role, RoleClass, RoleMap, RoleMapError, UserId};
pub use rate::TokenBucket;
pub use time::{Timestamp, format_timestamp};
