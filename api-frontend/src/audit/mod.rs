//! The audit trail: what is recorded ([`event`]), how it reaches the disk ([`log`]), and
//! the layer that records calls to methods no service knows ([`layer`]).

pub mod event;
pub mod layer;
pub mod log;

pub use event::{AuditEvent, Decision, EventKind, code_name};
pub use log::{AuditError, AuditLog, AuditSink};
