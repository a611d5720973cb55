//! What consultd's load generator and chaos tool share: a bare Engine.IO v4
//! / Socket.IO v5 client over a websocket.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod eio;
