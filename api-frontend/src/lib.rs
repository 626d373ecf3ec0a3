//! `joblet-api`, Joblet's network frontend: gRPC over mutual TLS 1.3, roles from the client
//! certificate's OU, an audit line per call, request validation, and the job service, which
//! records jobs in stated, has the spawner start and stop them, and streams their output
//! from persistd. It runs as its own user with no capabilities.

#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod errors;
pub mod gate;
pub mod harden;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod links;
pub mod monitoring;
pub mod rbac;
pub mod scheduler;
pub mod sealing;
pub mod server;
pub mod services;
pub mod tls;
pub mod uploads;
