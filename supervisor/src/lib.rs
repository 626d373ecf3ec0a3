//! The supervisor `joblet`: writes a development configuration (`joblet init`), checks a
//! configuration (`joblet check`), and runs Joblet: creates the directories and listening
//! sockets, starts each helper under its own user with the settings it needs, restarts helpers
//! that die, and stops everything cleanly.

pub mod config;
pub mod host;
pub mod identity;
pub mod init;
pub mod job_ids;
pub mod logging;
pub mod supervise;
