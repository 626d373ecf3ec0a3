//! One audit record: one JSON line per call, and one per refused TLS handshake.
//!
//! A record names who (peer address, certificate CN and serial, role), what (service and
//! method, job id), the decision and the result code. It never holds request contents: no
//! command, no environment, no secret.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::Code;

use crate::identity::PeerIdentity;
use crate::rbac::Rpc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An RPC (allowed or denied).
    Call,
    /// A TLS handshake that failed: no certificate, wrong CA, old TLS version, garbage.
    AuthFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allowed,
    Denied,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub time: String,
    pub event: EventKind,
    pub peer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    pub decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// Why a call or handshake was refused, in words (never request contents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Longest method path kept from an unknown request path.
const MAX_PATH_LEN: usize = 200;

impl AuditEvent {
    /// A call by a verified peer to a known RPC.
    pub fn call(peer: &PeerIdentity, rpc: Rpc, decision: Decision, code: Code) -> AuditEvent {
        AuditEvent {
            service: Some(rpc.service().as_str().to_owned()),
            method: Some(rpc.method().to_owned()),
            decision,
            code: Some(code_name(code)),
            ..AuditEvent::from_peer(peer)
        }
    }

    /// A request for a path no service serves (probes, removed RPCs of old clients).
    pub fn unknown_path(peer: Option<&PeerIdentity>, path: &str) -> AuditEvent {
        let base = match peer {
            Some(p) => AuditEvent::from_peer(p),
            None => AuditEvent::bare(EventKind::Call, "unknown".into()),
        };
        let mut end = path.len().min(MAX_PATH_LEN);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        AuditEvent {
            method: Some(path[..end].to_owned()),
            decision: Decision::Denied,
            code: Some(code_name(Code::Unimplemented)),
            reason: Some("no such method".into()),
            ..base
        }
    }

    /// A refused TLS handshake.
    pub fn auth_failed(peer_addr: &str, reason: String) -> AuditEvent {
        AuditEvent {
            decision: Decision::Denied,
            reason: Some(reason),
            ..AuditEvent::bare(EventKind::AuthFailed, peer_addr.to_owned())
        }
    }

    pub fn with_job(mut self, job: Option<String>) -> AuditEvent {
        self.job = job;
        self
    }

    pub fn with_reason(mut self, reason: Option<String>) -> AuditEvent {
        self.reason = reason;
        self
    }

    fn from_peer(peer: &PeerIdentity) -> AuditEvent {
        AuditEvent {
            cn: Some(peer.cn.clone()),
            serial: Some(peer.serial.clone()),
            role: Some(peer.role.map_or("none", |r| r.as_str())),
            ..AuditEvent::bare(EventKind::Call, peer.addr.to_string())
        }
    }

    fn bare(event: EventKind, peer: String) -> AuditEvent {
        AuditEvent {
            time: now_rfc3339(),
            event,
            peer,
            cn: None,
            serial: None,
            role: None,
            service: None,
            method: None,
            job: None,
            decision: Decision::Denied,
            code: None,
            reason: None,
        }
    }

    /// The record as one line of JSON, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        // Serialising plain strings and enums cannot fail; an empty object keeps the line
        // well-formed should it ever.
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        line
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

/// The canonical gRPC name of a status code, as grpc-go and the Python SDK print it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::Role;

    fn peer() -> PeerIdentity {
        PeerIdentity {
            addr: "10.0.0.7:51000".parse().unwrap(),
            cn: "admin-client".into(),
            serial: "01:02".into(),
            ous: vec!["admin".into()],
            role: Some(Role::Admin),
        }
    }

    #[test]
    fn call_line_has_every_field() {
        let ev = AuditEvent::call(&peer(), Rpc::RunJob, Decision::Allowed, Code::Ok)
            .with_job(Some("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c".into()));
        let line = ev.to_line();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["event"], "call");
        assert_eq!(v["peer"], "10.0.0.7:51000");
        assert_eq!(v["cn"], "admin-client");
        assert_eq!(v["serial"], "01:02");
        assert_eq!(v["role"], "admin");
        assert_eq!(v["service"], "JobService");
        assert_eq!(v["method"], "RunJob");
        assert_eq!(v["job"], "0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c");
        assert_eq!(v["decision"], "allowed");
        assert_eq!(v["code"], "OK");
        let t = v["time"].as_str().unwrap();
        assert!(OffsetDateTime::parse(t, &Rfc3339).is_ok(), "{t}");
    }

    #[test]
    fn denial_for_a_peer_without_role() {
        let mut p = peer();
        p.role = None;
        p.ous = vec!["intern".into()];
        let ev = AuditEvent::call(&p, Rpc::ListJobs, Decision::Denied, Code::PermissionDenied)
            .with_reason(Some("no role".into()));
        let v: serde_json::Value = serde_json::from_slice(&ev.to_line()).unwrap();
        assert_eq!(v["role"], "none");
        assert_eq!(v["decision"], "denied");
        assert_eq!(v["code"], "PERMISSION_DENIED");
        assert!(v.get("job").is_none());
    }

    #[test]
    fn hostile_text_cannot_forge_a_second_line() {
        let mut p = peer();
        p.cn = "evil\n{\"event\":\"call\",\"decision\":\"allowed\"}".into();
        let line =
            AuditEvent::call(&p, Rpc::RunJob, Decision::Denied, Code::PermissionDenied).to_line();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let long = format!("/x/{}", "é".repeat(500));
        let v: serde_json::Value =
            serde_json::from_slice(&AuditEvent::unknown_path(Some(&p), &long).to_line()).unwrap();
        assert!(v["method"].as_str().unwrap().len() <= MAX_PATH_LEN);
        assert_eq!(v["code"], "UNIMPLEMENTED");
    }

    #[test]
    fn auth_failure_line() {
        let ev = AuditEvent::auth_failed("192.0.2.1:4444", "peer sent no certificates".into());
        let v: serde_json::Value = serde_json::from_slice(&ev.to_line()).unwrap();
        assert_eq!(v["event"], "auth_failed");
        assert_eq!(v["peer"], "192.0.2.1:4444");
        assert_eq!(v["decision"], "denied");
        assert_eq!(v["reason"], "peer sent no certificates");
        assert!(v.get("cn").is_none());
    }
}
