//! Plain HTTP next to gRPC on the same mutual-TLS listener, for browsers and agents:
//! Server-Sent Events of a job's logs and metrics under `/v1/` ([`route`]), and the
//! Prometheus listener ([`prometheus`]) on its own port.
//!
//! The `/v1/` routes pass the same gate as gRPC: the verified client certificate, the role
//! table (each route needs the permission of the RPC that reads the same thing, so viewers
//! may read), a healthy audit log. Their audit lines name that RPC (GetJobLogs,
//! StreamJobMetrics). Requests for other paths go on to gRPC untouched; the [`layer`] that
//! routes them also times every gRPC call for Prometheus.

pub mod job_logs;
pub mod job_metrics;
pub mod layer;
pub mod prometheus;
pub mod reply;
pub mod route;
pub mod sse;

use std::time::Duration;

use bytes::Bytes;
use joblet_ipc_proto::job::{JobId, JobRecord};
use tokio::time::Instant;
use tonic::Status;

use crate::app::App;
use crate::gate::Call;
use crate::identity::Peer;
use crate::rbac::Rpc;

pub use layer::HttpLayer;

/// Authorises an HTTP request as if it were a call of `rpc` by the same client.
#[allow(clippy::result_large_err)]
fn enter(app: &App, peer: Option<Peer>, rpc: Rpc) -> Result<Call, Status> {
    let mut req = tonic::Request::new(());
    if let Some(peer) = peer {
        req.extensions_mut().insert(peer);
    }
    app.gate.enter(&req, rpc)
}

/// How long a followed stream's end waits for the job's exit to be recorded: its output
/// closes a moment before stated hears of the exit.
const EXIT_RECORD_GRACE: Duration = Duration::from_secs(5);

/// The job's record, once terminal if `settle` (waiting up to [`EXIT_RECORD_GRACE`]).
async fn record_at_end(app: &App, job: &JobId, settle: bool) -> Result<JobRecord, String> {
    let deadline = Instant::now() + EXIT_RECORD_GRACE;
    loop {
        let record = app.state.get(job).await.map_err(|e| e.to_string())?;
        if !settle || record.state.is_terminal() || Instant::now() >= deadline {
            return Ok(record);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last event of a stream: the job's status (and exit code once it ended). With
/// `settle` (the stream followed the job to its end) it waits for the exit to be recorded.
async fn end_event(app: &App, job: &JobId, settle: bool) -> Bytes {
    let data = match record_at_end(app, job, settle).await {
        Ok(r) => {
            let mut v = serde_json::json!({ "job_uuid": job.as_str(), "status": r.state.as_str() });
            if let (true, Some(outcome)) = (r.state.is_terminal(), &r.outcome) {
                v["exit_code"] = outcome.exit_code.into();
            }
            v
        }
        Err(e) => serde_json::json!({
            "job_uuid": job.as_str(),
            "status": "UNKNOWN",
            "message": format!("the job's status could not be read: {e}"),
        }),
    };
    sse::event("end", None, &data.to_string())
}

/// An error that ends a stream after its headers were sent.
fn error_event(status: &Status) -> Bytes {
    sse::event(
        "error",
        None,
        &reply::error_json(status.code(), status.message()),
    )
}
