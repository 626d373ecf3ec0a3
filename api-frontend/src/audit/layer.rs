//! Records requests for paths that name no RPC of the public contract (scanners, removed
//! methods of old clients such as `RunWorkflow`). Known RPCs are audited by the gate in
//! their handler, where the job id and the result are known.

use std::task::{Context, Poll};

use tonic::codegen::{Service, http};
use tower_layer::Layer;

use super::{AuditEvent, AuditLog};
use crate::identity::Peer;
use crate::rbac::Rpc;

#[derive(Clone)]
pub struct UnknownRpcAuditLayer {
    audit: AuditLog,
}

impl UnknownRpcAuditLayer {
    pub fn new(audit: AuditLog) -> Self {
        UnknownRpcAuditLayer { audit }
    }
}

impl<S> Layer<S> for UnknownRpcAuditLayer {
    type Service = UnknownRpcAudit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        UnknownRpcAudit {
            inner,
            audit: self.audit.clone(),
        }
    }
}

#[derive(Clone)]
pub struct UnknownRpcAudit<S> {
    inner: S,
    audit: AuditLog,
}

impl<S, B> Service<http::Request<B>> for UnknownRpcAudit<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if Rpc::from_path(path).is_none() {
            let peer = req.extensions().get::<Peer>();
            self.audit
                .record(AuditEvent::unknown_path(peer.map(|p| &*p.0), path));
        }
        // The router answers UNIMPLEMENTED for such paths.
        self.inner.call(req)
    }
}
