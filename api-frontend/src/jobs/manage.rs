//! StopJob, CancelJob, DeleteJob and DeleteAllJobs.

use std::time::Duration;

use joblet_api_proto::{
    CancelJobRequest, CancelJobResponse, DeleteAllJobsResponse, DeleteJobRequest,
    DeleteJobResponse, StopJobRequest, StopJobResponse,
};
use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::channel::spawner::{SpawnerReply, SpawnerRequest};
use joblet_ipc_proto::job::{JobId, JobRecord, JobState};
use tonic::Status;

use super::convert;
use super::{lookup, scheduled};
use crate::app::App;
use crate::errors::LinkError;
use crate::gate::Call;
use crate::links::PATIENCE;

const STOP_REPLY_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn stop_job(
    app: &App,
    call: &mut Call,
    req: StopJobRequest,
) -> Result<StopJobResponse, Status> {
    let mut record = lookup::find(app, &req.uuid).await?;
    let id = record.id.clone();
    call.set_job(id.as_str());
    if record.state == JobState::Scheduled {
        // Joblet's rnx cancels a scheduled job with StopJob.
        match scheduled::cancel(app, &record).await {
            Ok(()) => return Ok(stop_response(app, record).await),
            // It started meanwhile: stop it like any running job.
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                record = app.state.get(&id).await?;
            }
            Err(s) => return Err(s),
        }
    }
    if !matches!(record.state, JobState::Running | JobState::Initializing) {
        return Err(Status::failed_precondition(format!(
            "job {id} is not running (status {})",
            record.state
        )));
    }
    if !app.spawner.wait_connected(PATIENCE).await {
        return Err(Status::unavailable("spawner is restarting, retry"));
    }
    let request = SpawnerRequest::StopJob {
        job: id.clone(),
        grace_ms: app.stop_grace_ms,
    };
    match app
        .spawner
        .request(request, PATIENCE, STOP_REPLY_TIMEOUT)
        .await
    {
        Ok(SpawnerReply::Stopping) => {}
        // stated says running, the spawner holds no such job: the record is stale, and the
        // next reconciliation marks it lost.
        Err(e) if e.remote_kind() == Some(RemoteErrorKind::NotFound) => {
            return Err(Status::failed_precondition(format!(
                "job {id} is not running on this host ({e})"
            )));
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {
            return Err(LinkError::Unexpected {
                daemon: "spawner",
                request: "StopJob",
                got: "another reply",
            }
            .into());
        }
    }
    tracing::info!(job = %id, grace_ms = app.stop_grace_ms, "job stopping");
    // The status at this moment; the job reaches STOPPED when its exit is recorded.
    Ok(stop_response(app, record).await)
}

async fn stop_response(app: &App, record: JobRecord) -> StopJobResponse {
    let now = app.state.get(&record.id).await.unwrap_or(record);
    StopJobResponse {
        uuid: now.id.to_string(),
        status: now.state.as_str().to_owned(),
        end_time: convert::rfc3339(now.ended_ns),
        exit_code: convert::exit_code(&now),
    }
}

pub async fn cancel_job(
    app: &App,
    call: &mut Call,
    req: CancelJobRequest,
) -> Result<CancelJobResponse, Status> {
    let record = lookup::find(app, &req.uuid).await?;
    call.set_job(record.id.as_str());
    scheduled::cancel(app, &record).await?;
    Ok(CancelJobResponse {
        uuid: record.id.to_string(),
        status: JobState::Canceled.as_str().to_owned(),
    })
}

pub async fn delete_job(
    app: &App,
    call: &mut Call,
    req: DeleteJobRequest,
) -> Result<DeleteJobResponse, Status> {
    let record = lookup::find(app, &req.uuid).await?;
    let id = record.id.clone();
    call.set_job(id.as_str());
    if matches!(
        record.state,
        JobState::Running | JobState::Initializing | JobState::Scheduled
    ) {
        return Err(Status::failed_precondition(format!(
            "job {id} is {}; {} it before deleting it",
            record.state,
            if record.state == JobState::Scheduled {
                "cancel"
            } else {
                "stop"
            }
        )));
    }
    delete_finished(app, &id).await?;
    Ok(DeleteJobResponse {
        uuid: id.to_string(),
        success: true,
        message: format!("job {id} and its logs were deleted"),
    })
}

/// Deletes a finished job's logs, then its record.
async fn delete_finished(app: &App, id: &JobId) -> Result<(), LinkError> {
    // Logs first: a record without logs can be deleted again; logs without a record could not.
    app.logs.delete(id).await?;
    app.state.delete(id).await?;
    tracing::info!(job = %id, "job deleted");
    Ok(())
}

/// DeleteAllJobs: every finished job (terminal state) is deleted, the others are skipped.
/// One job that cannot be deleted does not stop the others; the reply says how many failed.
pub async fn delete_all_jobs(app: &App) -> Result<DeleteAllJobsResponse, Status> {
    let records = app.state.list_all().await?;
    let mut deleted = 0usize;
    let mut active = 0usize;
    let mut failed: Vec<(JobId, LinkError)> = Vec::new();
    for r in records {
        if !r.state.is_terminal() {
            active += 1;
            continue;
        }
        match delete_finished(app, &r.id).await {
            Ok(()) => deleted += 1,
            // Deleted by someone else meanwhile: nothing left to do.
            Err(e) if e.remote_kind() == Some(RemoteErrorKind::NotFound) => {}
            Err(e) => {
                tracing::warn!(job = %r.id, error = %e, "cannot delete a finished job");
                failed.push((r.id, e));
            }
        }
    }
    let mut message = format!(
        "deleted {deleted} finished job(s); skipped {active} still scheduled, starting or running"
    );
    if let Some((id, e)) = failed.first() {
        message.push_str(&format!(
            "; {} could not be deleted (job {id}: {e})",
            failed.len()
        ));
    }
    Ok(DeleteAllJobsResponse {
        success: failed.is_empty(),
        message,
        deleted_count: i32::try_from(deleted).unwrap_or(i32::MAX),
        skipped_count: i32::try_from(active + failed.len()).unwrap_or(i32::MAX),
    })
}
