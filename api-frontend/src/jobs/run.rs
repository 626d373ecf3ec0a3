//! RunJob: validate, record the job, have the spawner start it, record the start.

use std::sync::Arc;
use std::time::Duration;

use joblet_api_proto::{RunJobRequest, RunJobResponse};
use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::channel::spawner::{SpawnerReply, SpawnerRequest};
use joblet_ipc_proto::job::{JobId, JobOutcome, JobRecord, JobState, LaunchSpec};
use tonic::Status;

use super::convert::{self, now_ns};
use super::tracker::Starting;
use crate::app::App;
use crate::errors::LinkError;
use crate::gate::Call;
use crate::links::PATIENCE;

/// Building a root filesystem and namespaces takes a moment; a hung spawner does not.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run_job(
    app: &Arc<App>,
    call: &mut Call,
    req: RunJobRequest,
) -> Result<RunJobResponse, Status> {
    let launch = convert::launch_from_request(req, &app.defaults)?;
    if !app.spawner.wait_connected(PATIENCE).await {
        return Err(Status::unavailable("spawner is restarting, retry"));
    }
    let id = JobId::parse(&uuid::Uuid::new_v4().to_string())
        .map_err(|e| Status::internal(format!("generated job id refused: {e}")))?;
    call.set_job(id.as_str());
    let starting = app
        .tracker
        .reserve(&id, app.max_concurrent_jobs)
        .map_err(|c| {
            Status::resource_exhausted(format!(
                "{} jobs are already running or starting, the most this server allows \
             (max_concurrent_jobs); retry when one has ended",
                c.max
            ))
        })?;
    // A detached task: a client that hangs up must not leave the job half-started.
    let task = tokio::spawn(start(app.clone(), id, launch, starting));
    task.await
        .map_err(|e| Status::internal(format!("the job start task failed: {e}")))?
}

async fn start(
    app: Arc<App>,
    id: JobId,
    launch: LaunchSpec,
    starting: Starting,
) -> Result<RunJobResponse, Status> {
    let record = JobRecord {
        id: id.clone(),
        // The record keeps secret names only; the values travel in the launch alone.
        spec: launch.spec.clone(),
        state: JobState::Initializing,
        node_id: app.node_id.clone(),
        created_ns: now_ns(),
        started_ns: 0,
        ended_ns: 0,
        outcome: None,
        sealed_secrets: Vec::new(),
    };
    if let Err(e) = app.state.create(record).await {
        starting.failed();
        return Err(e.into());
    }
    let request = SpawnerRequest::StartJob {
        job: id.clone(),
        launch,
    };
    match app.spawner.request(request, PATIENCE, START_TIMEOUT).await {
        Ok(SpawnerReply::Started { pid, started_ns }) => {
            tracing::info!(job = %id, pid, "job started");
            let status = record_start(&app, &id, started_ns).await;
            drop(starting);
            Ok(RunJobResponse {
                job_uuid: id.to_string(),
                status,
            })
        }
        Ok(other) => {
            let reason = format!("the spawner answered StartJob with {}", other_name(&other));
            launch_failed(&app, &id, starting, reason).await
        }
        Err(LinkError::Remote(e)) => launch_failed(&app, &id, starting, e.message).await,
        Err(e @ LinkError::Unexpected { .. }) => {
            launch_failed(&app, &id, starting, e.to_string()).await
        }
        Err(e @ LinkError::Unavailable { .. }) => {
            // The spawner may or may not have started it; the reconciliation after the
            // reconnection settles the record either way.
            tracing::warn!(job = %id, error = %e, "lost the spawner while starting a job");
            drop(starting);
            Err(Status::unavailable(format!(
                "lost contact with the spawner while starting job {id}; its state will be \
                 settled when the spawner is back ({e})"
            )))
        }
    }
}

fn other_name(reply: &SpawnerReply) -> &'static str {
    match reply {
        SpawnerReply::Started { .. } => "Started",
        SpawnerReply::Stopping => "Stopping",
        SpawnerReply::Jobs { .. } => "Jobs",
        SpawnerReply::Acked => "Acked",
        SpawnerReply::Error(_) => "Error",
    }
}

/// Records RUNNING and returns the job's status as it then is.
async fn record_start(app: &App, id: &JobId, started_ns: u64) -> String {
    match app
        .state
        .transition(id, JobState::Running, started_ns, None)
        .await
    {
        Ok(()) => JobState::Running.as_str().to_owned(),
        // A fast job's exit can be recorded before its start: report what stated holds.
        Err(e) if e.remote_kind() == Some(RemoteErrorKind::FailedPrecondition) => {
            match app.state.get(id).await {
                Ok(r) => r.state.as_str().to_owned(),
                Err(_) => JobState::Running.as_str().to_owned(),
            }
        }
        Err(e) => {
            // The job runs; its record catches up on its exit or the next reconciliation.
            tracing::error!(job = %id, error = %e, "job started but stated did not record it");
            JobState::Running.as_str().to_owned()
        }
    }
}

async fn launch_failed(
    app: &App,
    id: &JobId,
    starting: Starting,
    reason: String,
) -> Result<RunJobResponse, Status> {
    tracing::warn!(job = %id, reason = %reason, "job failed to start");
    let outcome = JobOutcome::launch_failed(reason.clone());
    if let Err(e) = app
        .state
        .transition(id, JobState::Failed, now_ns(), Some(outcome))
        .await
    {
        tracing::error!(job = %id, error = %e, "cannot record the failed start");
    }
    starting.failed();
    Err(Status::failed_precondition(format!(
        "job {id} failed to start: {reason}"
    )))
}
