//! RunJob: check the request, then either schedule the job or stage its uploads, record
//! it, and have the spawner start it.

use std::sync::Arc;

use joblet_api_proto::{RunJobRequest, RunJobResponse};
use joblet_ipc_proto::job::{JobId, JobRecord, JobSpec, JobState};
use tonic::Status;

use super::convert::{self, RequestLimits, RunRequest, now_ns};
use super::tracker::Starting;
use super::{launch, scheduled, staged};
use crate::app::App;
use crate::gate::Call;
use crate::links::PATIENCE;

pub async fn run_job(
    app: &Arc<App>,
    call: &mut Call,
    req: RunJobRequest,
) -> Result<RunJobResponse, Status> {
    let limits = RequestLimits {
        max_upload_bytes: app.max_upload_bytes,
        now_ns: now_ns(),
    };
    let request = convert::run_request(req, &app.defaults, limits)?;
    let id = JobId::parse(&uuid::Uuid::new_v4().to_string())
        .map_err(|e| Status::internal(format!("generated job id refused: {e}")))?;
    call.set_job(id.as_str());
    // Detached tasks: a client that hangs up must not leave the job half-made.
    let task = if request.schedule_ns.is_some() {
        tokio::spawn(scheduled::create(app.clone(), id, request))
    } else {
        if !app.spawner.wait_connected(PATIENCE).await {
            return Err(Status::unavailable("spawner is restarting, retry"));
        }
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
        tokio::spawn(start(app.clone(), id, request, starting))
    };
    task.await
        .map_err(|e| Status::internal(format!("the job start task failed: {e}")))?
}

/// A new record of `id`; it keeps secret names only, never their values.
pub fn new_record(
    app: &App,
    id: &JobId,
    spec: JobSpec,
    state: JobState,
    sealed: Vec<u8>,
) -> JobRecord {
    JobRecord {
        id: id.clone(),
        spec,
        state,
        node_id: app.node_id.clone(),
        created_ns: now_ns(),
        started_ns: 0,
        ended_ns: 0,
        outcome: None,
        sealed_secrets: sealed,
    }
}

async fn start(
    app: Arc<App>,
    id: JobId,
    request: RunRequest,
    starting: Starting,
) -> Result<RunJobResponse, Status> {
    let RunRequest {
        launch, uploads, ..
    } = request;
    let has_uploads = !uploads.is_empty();
    if has_uploads && let Err(e) = staged::stage(&app, &id, uploads).await {
        starting.failed();
        return Err(e);
    }
    let record = new_record(
        &app,
        &id,
        launch.spec.clone(),
        JobState::Initializing,
        Vec::new(),
    );
    let fd = if has_uploads {
        match app.uploads.open(&id) {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::error!(job = %id, error = %e, "cannot open the staged uploads");
                None
            }
        }
    } else {
        None
    };
    let result = launch::start_recorded(&app, &id, launch, fd, starting, Some(record)).await;
    // The spawner copied the tree before it answered; the staging copy has served.
    if has_uploads {
        staged::remove(&app, &id).await;
    }
    result
}
