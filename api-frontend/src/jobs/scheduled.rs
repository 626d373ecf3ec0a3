//! Scheduled jobs: creating one (uploads stay staged, secrets sealed into the record),
//! starting it when the scheduler says it is due, and canceling it.
//!
//! A due job is read from stated, its secrets unsealed, and only then moved SCHEDULED →
//! INITIALIZING (which makes stated drop the sealed copy). If the spawner is down or the
//! server is at its job limit, the job stays SCHEDULED and is tried again shortly. A crash
//! between that move and the spawner's answer leaves an INITIALIZING record the spawner does
//! not know, which the reconciliation marks FAILED (lost), as for any other job.

use std::sync::Arc;

use joblet_api_proto::RunJobResponse;
use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::job::{EndReason, JobId, JobOutcome, JobRecord, JobState, LaunchSpec};
use joblet_ipc_proto::validate;
use tonic::Status;

use super::convert::{RunRequest, now_ns, rfc3339};
use super::{launch, run, staged};
use crate::app::App;
use crate::links::PATIENCE;

/// How soon a due job that could not start (spawner down, job limit reached, stated
/// unreachable) is tried again.
const RETRY_NS: u64 = 1_000_000_000;

pub const CANCELED_MESSAGE: &str = "canceled before it started";

/// RunJob with a schedule.
pub async fn create(
    app: Arc<App>,
    id: JobId,
    request: RunRequest,
) -> Result<RunJobResponse, Status> {
    let due_ns = request.schedule_ns.unwrap_or(0);
    let RunRequest {
        launch, uploads, ..
    } = request;
    let sealed = app.sealer.seal(&id, &launch.secret_env).map_err(|e| {
        tracing::error!(job = %id, error = %e, "cannot seal secrets");
        Status::internal(format!("cannot seal the job's secrets: {e}"))
    })?;
    drop(launch.secret_env);
    let has_uploads = !uploads.is_empty();
    if has_uploads {
        staged::stage(&app, &id, uploads).await?;
    }
    let record = run::new_record(&app, &id, launch.spec, JobState::Scheduled, sealed);
    if let Err(e) = app.state.create(record).await {
        if has_uploads {
            staged::remove(&app, &id).await;
        }
        return Err(e.into());
    }
    app.scheduler.arm(id.clone(), due_ns);
    tracing::info!(job = %id, due = %rfc3339(due_ns), "job scheduled");
    Ok(RunJobResponse {
        job_uuid: id.to_string(),
        status: JobState::Scheduled.as_str().to_owned(),
    })
}

/// Starts a job the scheduler found due; re-arms it when it cannot start yet.
pub async fn start_due(app: Arc<App>, job: JobId) {
    if let Err(why) = try_start(&app, &job).await {
        tracing::warn!(job = %job, reason = %why, "scheduled job cannot start yet; retrying");
        app.scheduler.arm(job, now_ns() + RETRY_NS);
    }
}

/// `Err` says why the job must wait and be tried again; `Ok` means it is settled (started,
/// failed, or no longer scheduled).
async fn try_start(app: &Arc<App>, job: &JobId) -> Result<(), String> {
    let record = match app.state.get(job).await {
        Ok(r) => r,
        Err(e) if e.remote_kind() == Some(RemoteErrorKind::NotFound) => {
            staged::remove(app, job).await;
            return Ok(());
        }
        Err(e) => return Err(e.to_string()),
    };
    if record.state != JobState::Scheduled {
        // Canceled (or started by an earlier attempt) meanwhile.
        return Ok(());
    }
    let launch = match launch_of(app, &record) {
        Ok(l) => l,
        Err(reason) => {
            fail_scheduled(app, job, reason).await;
            return Ok(());
        }
    };
    if !app.spawner.wait_connected(PATIENCE).await {
        return Err("the spawner is unreachable".into());
    }
    let starting = app
        .tracker
        .reserve(job, app.max_concurrent_jobs)
        .map_err(|c| format!("{} jobs are running, the most allowed", c.max))?;
    match app
        .state
        .transition(job, JobState::Initializing, now_ns(), None)
        .await
    {
        Ok(()) => {}
        Err(e) if e.remote_kind().is_some() => {
            // Canceled or deleted since it was read.
            starting.failed();
            tracing::info!(job = %job, error = %e, "scheduled job moved on before its start");
            return Ok(());
        }
        Err(e) => {
            starting.failed();
            return Err(e.to_string());
        }
    }
    let fd = if launch.has_upload_dir {
        match app.uploads.open(job) {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::error!(job = %job, error = %e, "cannot open the staged uploads");
                None
            }
        }
    } else {
        None
    };
    tracing::info!(job = %job, due = %rfc3339(record.spec.schedule_ns), "starting scheduled job");
    let result = launch::start_recorded(app, job, launch, fd, starting, None).await;
    staged::remove(app, job).await;
    if let Err(status) = result {
        tracing::warn!(job = %job, error = %status.message(), "scheduled job did not start");
    }
    Ok(())
}

/// The launch of a scheduled record: its spec, its unsealed secrets, its staged uploads.
fn launch_of(app: &App, record: &JobRecord) -> Result<LaunchSpec, String> {
    let secret_env = app
        .sealer
        .unseal(&record.id, &record.sealed_secrets)
        .map_err(|e| format!("its secrets cannot be unsealed: {e}"))?;
    let has_upload_dir = app.uploads.exists(&record.id);
    if !record.spec.uploads.is_empty() && !has_upload_dir {
        return Err("its staged uploads are missing from this server".into());
    }
    let launch = LaunchSpec {
        spec: record.spec.clone(),
        secret_env,
        has_upload_dir,
    };
    validate::launch(&launch).map_err(|e| e.to_string())?;
    Ok(launch)
}

/// A scheduled job that can never start: FAILED with the reason, uploads removed.
async fn fail_scheduled(app: &App, job: &JobId, reason: String) {
    tracing::error!(job = %job, reason = %reason, "scheduled job cannot start");
    let outcome = JobOutcome::launch_failed(reason);
    if let Err(e) = app
        .state
        .transition(job, JobState::Failed, now_ns(), Some(outcome))
        .await
    {
        tracing::error!(job = %job, error = %e, "cannot record the failed scheduled job");
    }
    staged::remove(app, job).await;
}

/// CancelJob (and StopJob on a scheduled job): SCHEDULED → CANCELED, its timer dropped and
/// its staged uploads removed. Anything else is refused naming its state.
pub async fn cancel(app: &App, record: &JobRecord) -> Result<(), Status> {
    let id = &record.id;
    if record.state != JobState::Scheduled {
        return Err(not_scheduled(id, record.state));
    }
    let outcome = JobOutcome {
        exit_code: -1,
        signal: None,
        oom_killed: false,
        reason: EndReason::Canceled,
        message: CANCELED_MESSAGE.into(),
    };
    match app
        .state
        .transition(id, JobState::Canceled, now_ns(), Some(outcome))
        .await
    {
        Ok(()) => {}
        Err(e) if e.remote_kind() == Some(RemoteErrorKind::FailedPrecondition) => {
            // It started (or was canceled) in the meantime.
            let now = app.state.get(id).await.map_err(Status::from)?;
            return Err(not_scheduled(id, now.state));
        }
        Err(e) => return Err(Status::from(e)),
    }
    app.scheduler.disarm(id);
    staged::remove(app, id).await;
    tracing::info!(job = %id, "scheduled job canceled");
    Ok(())
}

fn not_scheduled(id: &JobId, state: JobState) -> Status {
    Status::failed_precondition(format!(
        "job {id} is {state}; only a SCHEDULED job can be canceled{}",
        if matches!(state, JobState::Running | JobState::Initializing) {
            " (stop a running job with StopJob)"
        } else {
            ""
        }
    ))
}
