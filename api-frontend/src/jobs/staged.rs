//! The async side of upload staging for the job handlers: staging and removal run on
//! blocking threads (they write and delete up to the upload limit).

use joblet_ipc_proto::job::JobId;
use tonic::Status;

use crate::app::App;
use crate::uploads::UploadPlan;

/// Stages `plan` for `job`; nothing is left behind on failure.
pub async fn stage(app: &App, job: &JobId, plan: UploadPlan) -> Result<(), Status> {
    let store = app.uploads.clone();
    let id = job.clone();
    let result = tokio::task::spawn_blocking(move || store.stage(&id, &plan))
        .await
        .map_err(|e| Status::internal(format!("staging the uploads failed: {e}")))?;
    result.map_err(|e| {
        if !e.is_request_error() {
            tracing::error!(job = %job, error = %e, "cannot stage uploads");
        }
        Status::from(e)
    })
}

/// Removes the job's staged uploads, if any; a failure is logged (the next start-up sweeps
/// what is left).
pub async fn remove(app: &App, job: &JobId) {
    let store = app.uploads.clone();
    let id = job.clone();
    let result = tokio::task::spawn_blocking(move || store.remove(&id)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(job = %job, error = %e, "cannot remove staged uploads"),
        Err(e) => tracing::warn!(job = %job, error = %e, "removing staged uploads failed"),
    }
}
