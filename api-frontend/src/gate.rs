//! The gate every RPC passes first: who is calling (the verified certificate), may they
//! call this method (the role table), and is the audit log writable. It hands back a
//! [`Call`] that writes the call's audit line when it ends, however it ends.

use tonic::{Code, Request, Status};

use crate::audit::{AuditEvent, AuditLog, Decision};
use crate::identity::Peer;
use crate::rbac::{Role, Rpc};

#[derive(Clone)]
pub struct Gate {
    audit: AuditLog,
}

impl Gate {
    pub fn new(audit: AuditLog) -> Gate {
        Gate { audit }
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Authorises a request for `rpc`; a refusal is audited here.
    #[allow(clippy::result_large_err)]
    pub fn enter<T>(&self, req: &Request<T>, rpc: Rpc) -> Result<Call, Status> {
        let Some(peer) = req.extensions().get::<Peer>().cloned() else {
            // Only reachable if the server were wired without our TLS acceptor.
            self.audit.record(
                AuditEvent::unknown_path(None, &rpc.path()).with_reason(Some(
                    "no verified client certificate on the connection".into(),
                )),
            );
            return Err(Status::unauthenticated(
                "no verified client certificate on this connection",
            ));
        };
        if let Err(reason) = authorise(peer.role, &peer.ous, rpc) {
            self.audit.record(
                AuditEvent::call(&peer, rpc, Decision::Denied, Code::PermissionDenied)
                    .with_reason(Some(reason.clone())),
            );
            return Err(Status::permission_denied(reason));
        }
        if !self.audit.is_healthy() {
            // Still try to record the refusal: a successful write restores the log.
            self.audit.record(
                AuditEvent::call(&peer, rpc, Decision::Denied, Code::Unavailable)
                    .with_reason(Some("audit log not writable".into())),
            );
            return Err(Status::unavailable(
                "the audit log cannot be written, so calls are refused until it can; \
                 the server's log says why",
            ));
        }
        Ok(Call {
            peer,
            rpc,
            job: None,
            code: None,
            audit: self.audit.clone(),
        })
    }
}

/// The answer to an RPC this server does not implement yet: authorised and audited like
/// any other call, then refused with a message naming what is missing.
pub fn not_implemented<T>(gate: &Gate, req: &Request<T>, rpc: Rpc, missing: &str) -> Status {
    match gate.enter(req, rpc) {
        Err(refused) => refused,
        Ok(call) => {
            let status = Status::unimplemented(format!("{}: {missing}", rpc.method()));
            let _ = call.finish::<()>(Err(status.clone()));
            status
        }
    }
}

/// Checks the role table; the error is the message the client sees.
pub fn authorise(role: Option<Role>, ous: &[String], rpc: Rpc) -> Result<(), String> {
    match role {
        None => Err(format!(
            "permission denied for {rpc}: the client certificate's OU {ous:?} names no known \
             role (admin, viewer or reader)"
        )),
        Some(role) if !role.may(rpc.operation()) => Err(format!(
            "permission denied for {rpc}: role {role} may only read; this method needs role admin"
        )),
        Some(_) => Ok(()),
    }
}

/// An authorised call in progress. Dropping it writes the audit line; a call dropped
/// without [`Call::finish`] (the client went away) is recorded as CANCELLED.
pub struct Call {
    peer: Peer,
    rpc: Rpc,
    job: Option<String>,
    code: Option<Code>,
    audit: AuditLog,
}

impl Call {
    pub fn set_job(&mut self, job: impl Into<String>) {
        self.job = Some(job.into());
    }

    /// Ends the call with the outcome of its handler, which it returns unchanged.
    #[allow(clippy::result_large_err)]
    pub fn finish<T>(mut self, result: Result<T, Status>) -> Result<T, Status> {
        self.code = Some(match &result {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        });
        result
    }

    /// Ends the call with a code (streams, whose outcome is known only at their end).
    pub fn finish_with(mut self, code: Code) {
        self.code = Some(code);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        self.audit.record(
            AuditEvent::call(&self.peer, self.rpc, Decision::Allowed, code)
                .with_job(self.job.take()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_messages_name_role_and_method() {
        let e = authorise(Some(Role::Viewer), &["viewer".into()], Rpc::RunJob).unwrap_err();
        assert!(
            e.contains("JobService/RunJob") && e.contains("viewer"),
            "{e}"
        );
        let e = authorise(None, &["intern".into()], Rpc::ListJobs).unwrap_err();
        assert!(
            e.contains("intern") && e.contains("JobService/ListJobs"),
            "{e}"
        );
        assert!(authorise(Some(Role::Viewer), &[], Rpc::ListJobs).is_ok());
        assert!(authorise(Some(Role::Admin), &[], Rpc::DeleteJob).is_ok());
    }
}
