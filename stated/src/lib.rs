//! joblet-stated: the job state store.
//!
//! Keeps every job record in an embedded redb database and enforces the job state machine
//! for the frontend, over the state channel of `ipc-proto`. It runs as its own unprivileged
//! user, refuses any privilege, and answers only the frontend's uid.
//!
//! - [`machine`]: what a transition does to a record (pure).
//! - [`store`]: the database, its reads, and the group-committing writer.
//! - [`server`]: the channel: connections, requests, replies.
//! - [`settings`], [`logging`], [`harden`], [`daemon`]: start-up and the daemon's life.

#![forbid(unsafe_code)]

pub mod daemon;
pub mod harden;
pub mod logging;
pub mod machine;
pub mod server;
pub mod settings;
pub mod store;
