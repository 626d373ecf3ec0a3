//! StopJob and DeleteJob.

use std::time::Duration;

use joblet_api_proto::{DeleteJobRequest, DeleteJobResponse, StopJobRequest, StopJobResponse};
use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::channel::spawner::{SpawnerReply, SpawnerRequest};
use joblet_ipc_proto::job::JobState;
use tonic::Status;

use super::convert;
use super::lookup;
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
    let record = lookup::find(app, &req.uuid).await?;
    let id = record.id.clone();
    call.set_job(id.as_str());
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
    let now = app.state.get(&id).await.unwrap_or(record);
    Ok(StopJobResponse {
        uuid: id.to_string(),
        status: now.state.as_str().to_owned(),
        end_time: convert::rfc3339(now.ended_ns),
        exit_code: convert::exit_code(&now),
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
            "job {id} is {}; stop it before deleting it",
            record.state
        )));
    }
    // Logs first: a record without logs can be deleted again; logs without a record could not.
    app.logs.delete(&id).await?;
    app.state.delete(&id).await?;
    tracing::info!(job = %id, "job deleted");
    Ok(DeleteJobResponse {
        uuid: id.to_string(),
        success: true,
        message: format!("job {id} and its logs were deleted"),
    })
}
