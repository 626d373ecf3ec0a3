//! Starting a job: StartJob to the spawner with the staged uploads attached, the job's record
//! (INITIALIZING) written while the spawner prepares the job, ReleaseJob once it is durable,
//! then RUNNING, or FAILED with the reason. Shared by RunJob (which brings the new record) and
//! the scheduler (whose record exists).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use joblet_api_proto::RunJobResponse;
use joblet_ipc_proto::channel::spawner::{SpawnerReply, SpawnerRequest};
use joblet_ipc_proto::job::{JobId, JobOutcome, JobRecord, JobState, LaunchSpec};
use joblet_ipc_proto::{RemoteError, RemoteErrorKind};
use tonic::Status;

use super::convert::now_ns;
use super::tracker::Starting;
use crate::app::App;
use crate::errors::{LinkError, code_for};
use crate::links::PATIENCE;

/// Building a root filesystem and namespaces (and copying uploads) takes a moment; a hung
/// spawner does not.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Has the spawner start `id`, with `uploads` (the staging directory) attached when the
/// launch says it has some, and records the result. `record` is the job's new record, written
/// while the spawner prepares the job (`None`: it exists already).
pub async fn start_recorded(
    app: &Arc<App>,
    id: &JobId,
    launch: LaunchSpec,
    uploads: Option<OwnedFd>,
    starting: Starting,
    record: Option<JobRecord>,
) -> Result<RunJobResponse, Status> {
    let fds: Vec<_> = uploads.iter().map(|fd| fd.as_fd()).collect();
    if fds.len() != usize::from(launch.has_upload_dir) {
        let reason = "the staged uploads could not be handed over".to_owned();
        if let Some(record) = record
            && let Err(e) = app.state.create(record).await
        {
            starting.failed();
            return Err(e.into());
        }
        return launch_failed(app, id, starting, reason).await;
    }
    let request = SpawnerRequest::StartJob {
        job: id.clone(),
        launch,
    };
    // A StartJob that cannot be sent leaves nothing to undo: the job was neither prepared nor
    // (for a new job) recorded.
    let reply = match app.spawner.send_with_fds(request, &fds, PATIENCE).await {
        Ok(sent) => {
            if let Err(e) = record_then_release(app, id, record).await {
                starting.failed();
                return Err(e.into());
            }
            sent.reply(START_TIMEOUT).await
        }
        Err(e) => Err(e),
    };
    match reply {
        Ok(SpawnerReply::Started { pid, started_ns }) => {
            tracing::info!(job = %id, pid, "job started");
            // The job runs: the client need not wait for the record of it. Until that record
            // is written, lookups of the job wait for it (see `lookup::find`), and the job's
            // exit is recorded after it (`Starting` is held until then).
            starting.confirm();
            let (app, job) = (app.clone(), id.clone());
            tokio::spawn(async move {
                record_start(&app, &job, started_ns).await;
                drop(starting);
            });
            Ok(RunJobResponse {
                job_uuid: id.to_string(),
                status: JobState::Running.as_str().to_owned(),
            })
        }
        Ok(SpawnerReply::LaunchFailed { outcome }) => {
            launch_failed(app, id, starting, outcome.message).await
        }
        Ok(other) => {
            let reason = format!("the spawner answered StartJob with {}", other_name(&other));
            launch_failed(app, id, starting, reason).await
        }
        // Refused before anything was created (a limit this host cannot apply, ...): the
        // request was wrong, so no job is left behind and the client gets the spawner's kind.
        Err(LinkError::Remote(e)) => refused(app, id, starting, e).await,
        Err(e @ LinkError::Unexpected { .. }) => {
            launch_failed(app, id, starting, e.to_string()).await
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

/// Writes the job's new record (when it has one to write) while the spawner prepares the job,
/// then lets the spawner start it: no job code runs before its record is durable. A record that
/// cannot be written stops the held job, which then ends without having started anything.
async fn record_then_release(
    app: &App,
    id: &JobId,
    record: Option<JobRecord>,
) -> Result<(), LinkError> {
    if let Some(record) = record
        && let Err(e) = app.state.create(record).await
    {
        // If even the stop fails, the unreleased job fails at the spawner's launch timeout.
        super::lifecycle::stop_unrecorded(app, id).await;
        return Err(e);
    }
    let release = SpawnerRequest::ReleaseJob { job: id.clone() };
    if let Err(e) = app.spawner.request(release, PATIENCE, START_TIMEOUT).await {
        // StartJob's own reply says what became of the job (refused, failed, link lost).
        tracing::debug!(job = %id, error = %e, "ReleaseJob not acknowledged");
    }
    Ok(())
}

fn other_name(reply: &SpawnerReply) -> &'static str {
    match reply {
        SpawnerReply::Started { .. } => "Started",
        SpawnerReply::LaunchFailed { .. } => "LaunchFailed",
        SpawnerReply::Stopping => "Stopping",
        SpawnerReply::Jobs { .. } => "Jobs",
        SpawnerReply::Acked => "Acked",
        SpawnerReply::Error(_) => "Error",
    }
}

/// Records RUNNING. A refusal means the record moved on without it (the exit of a job whose
/// start a restarted frontend never recorded); any other failure is settled by the exit or
/// the next reconciliation.
async fn record_start(app: &App, id: &JobId, started_ns: u64) {
    let recorded = app
        .state
        .transition(id, JobState::Running, started_ns, None)
        .await;
    match recorded {
        Ok(()) => {}
        Err(e) if e.remote_kind() == Some(RemoteErrorKind::FailedPrecondition) => {
            tracing::debug!(job = %id, error = %e, "the job's record moved on before its start");
        }
        Err(e) => {
            tracing::error!(job = %id, error = %e, "job started but stated did not record it");
        }
    }
}

/// The spawner refused the job before creating anything: its record goes (it never existed
/// as far as the host is concerned) and the client gets the refusal with its kind.
async fn refused(
    app: &App,
    id: &JobId,
    starting: Starting,
    e: RemoteError,
) -> Result<RunJobResponse, Status> {
    tracing::info!(job = %id, error = %e.message, "the spawner refused the job");
    let outcome = JobOutcome::launch_failed(e.message.clone());
    let forgotten = async {
        app.state
            .transition(id, JobState::Failed, now_ns(), Some(outcome))
            .await?;
        app.state.delete(id).await
    };
    if let Err(err) = forgotten.await {
        tracing::error!(job = %id, error = %err, "cannot remove the refused job's record");
    }
    starting.failed();
    Err(Status::new(code_for(e.kind), e.message))
}

/// Records that the job never started (FAILED, with the reason) and builds the client's
/// error; the record stays for inspection.
pub async fn launch_failed(
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
