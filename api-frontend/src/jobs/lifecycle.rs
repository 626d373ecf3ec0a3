//! What happens to jobs outside any request: their exits are recorded in stated (then
//! acknowledged to the spawner), and on every connection to the spawner stated's view is
//! reconciled with the spawner's, so no job stays RUNNING forever after a restart.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::channel::spawner::{SpawnedJob, SpawnerEvent, SpawnerReply, SpawnerRequest};
use joblet_ipc_proto::job::{JobId, JobOutcome, JobState};
use tokio::sync::mpsc;

use super::convert::now_ns;
use crate::app::App;
use crate::errors::LinkError;
use crate::links::PATIENCE;
use crate::links::spawner::LinkEvent;

const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause before retrying work that failed because stated was unavailable.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Longest wait for a start being recorded before the exit handler looks again; the
/// notification normally comes first (a start is recorded within one stated round trip).
const START_WAIT_LIMIT: Duration = Duration::from_secs(2);

pub const LOST_MESSAGE: &str = "the job's process was not found after a restart";

/// An exit reported by the spawner, to be recorded in stated.
struct Exit {
    job: JobId,
    outcome: JobOutcome,
    ended_ns: u64,
}

/// What recording an exit came to.
enum Recorded {
    /// The job is in its final state (or gone): acknowledge the exit to the spawner.
    Done,
    /// This frontend is still recording the job's start; record the exit after it.
    StartPending,
}

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error("cannot read job records: {0}")]
    State(LinkError),
    #[error("cannot list the spawner's jobs: {0}")]
    Spawner(LinkError),
}

/// The jobs whose exit is being recorded, so a repeated report does not start a second
/// recorder while the first one waits or retries.
#[derive(Clone, Default)]
struct ExitsInFlight(Arc<Mutex<HashSet<JobId>>>);

impl ExitsInFlight {
    fn lock(&self) -> MutexGuard<'_, HashSet<JobId>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the caller is the one to record this job's exit.
    fn claim(&self, job: &JobId) -> bool {
        self.lock().insert(job.clone())
    }

    fn release(&self, job: &JobId) {
        self.lock().remove(job);
    }
}

/// Runs until the link's event channel closes.
///
/// Each exit is recorded by a task of its own, so exits are recorded concurrently (stated
/// commits them together) and one job waiting for its start to be recorded, or for stated to
/// come back, holds up no other.
pub async fn run(app: Arc<App>, mut events: mpsc::UnboundedReceiver<LinkEvent>) {
    let (retry_tx, mut retries) = mpsc::unbounded_channel::<()>();
    let exits = ExitsInFlight::default();
    // One pending reconciliation retry, however often the spawner reconnects.
    let mut reconcile_pending = false;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(LinkEvent::Connected) => {}
                Some(LinkEvent::Event(SpawnerEvent::Exited { job, outcome, ended_ns })) => {
                    if exits.claim(&job) {
                        // Lookups of the job wait for its record from now on (`lookup::find`).
                        app.tracker.exit_reported(&job);
                        let exit = Exit { job, outcome, ended_ns };
                        tokio::spawn(settle_exit(app.clone(), exits.clone(), exit));
                    }
                    continue;
                }
                None => return,
            },
            Some(()) = retries.recv() => reconcile_pending = false,
        }
        if reconcile_with_retry(&app).await && !reconcile_pending {
            reconcile_pending = true;
            let tx = retry_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RETRY_AFTER).await;
                let _ = tx.send(());
            });
        }
    }
}

/// Reconciles; returns whether it must be retried later.
async fn reconcile_with_retry(app: &App) -> bool {
    match reconcile(app).await {
        Ok(()) => false,
        // The next connection brings its own reconciliation.
        Err(e @ ReconcileError::Spawner(_)) => {
            tracing::warn!(error = %e, "reconciliation postponed to the next spawner connection");
            false
        }
        Err(e @ ReconcileError::State(_)) => {
            tracing::warn!(error = %e, "reconciliation failed; retrying");
            true
        }
    }
}

/// Records one exit, waiting for the job's start to be recorded first if this frontend is
/// recording it right now (a job can end before RunJob has recorded RUNNING), then
/// acknowledges it to the spawner.
async fn settle_exit(app: Arc<App>, exits: ExitsInFlight, exit: Exit) {
    loop {
        match record_exit(&app, &exit).await {
            Ok(Recorded::Done) => {
                acknowledge(&app, &exit.job).await;
                break;
            }
            Ok(Recorded::StartPending) => {
                let started = app.tracker.start_recorded(&exit.job);
                let _ = tokio::time::timeout(START_WAIT_LIMIT, started).await;
            }
            Err(e) => {
                tracing::warn!(job = %exit.job, error = %e, "cannot record a job's exit yet; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
    exits.release(&exit.job);
}

/// Moves the job to its final state. Repeated exits are harmless: terminal states never
/// change.
async fn record_exit(app: &App, exit: &Exit) -> Result<Recorded, LinkError> {
    let Exit {
        job,
        outcome,
        ended_ns,
    } = exit;
    let ended_ns = *ended_ns;
    // Asking stated now would only be refused (INITIALIZING cannot end): wait for the start.
    if app.tracker.is_starting(job) {
        return Ok(Recorded::StartPending);
    }
    let to = outcome.final_state();
    let first = app
        .state
        .transition(job, to, ended_ns, Some(outcome.clone()))
        .await;
    let ours = Some((to, outcome.clone()));
    let recorded = match first {
        Ok(()) => ours,
        Err(e) if e.remote_kind() == Some(RemoteErrorKind::NotFound) => None,
        Err(e) if e.remote_kind() == Some(RemoteErrorKind::FailedPrecondition) => {
            let record = match app.state.get(job).await {
                Ok(r) => r,
                Err(e) if e.remote_kind() == Some(RemoteErrorKind::NotFound) => {
                    app.tracker.ended(job, None);
                    return Ok(Recorded::Done);
                }
                Err(e) => return Err(e),
            };
            match record.state {
                // Recorded before (a repeated exit): that record stands.
                s if s.is_terminal() => record.outcome.map(|o| (s, o)),
                JobState::Initializing if app.tracker.is_starting(job) => {
                    return Ok(Recorded::StartPending);
                }
                JobState::Initializing => {
                    // Started, but the start was never recorded (the frontend restarted).
                    let started = spawned(app, job).await.map_or(ended_ns, |s| s.started_ns);
                    app.state
                        .transition(job, JobState::Running, started, None)
                        .await?;
                    app.state
                        .transition(job, to, ended_ns, Some(outcome.clone()))
                        .await?;
                    ours
                }
                // The start was recorded between the refusal and the read: end it now.
                JobState::Running => {
                    app.state
                        .transition(job, to, ended_ns, Some(outcome.clone()))
                        .await?;
                    ours
                }
                _ => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    tracing::info!(job = %job, state = %to, exit_code = outcome.exit_code, reason = outcome.reason.as_str(), "job ended");
    app.tracker.ended(job, recorded);
    Ok(Recorded::Done)
}

async fn acknowledge(app: &App, job: &JobId) {
    let req = SpawnerRequest::AckExit { job: job.clone() };
    match app.spawner.request(req, PATIENCE, REPLY_TIMEOUT).await {
        Ok(_) => {}
        // Unacknowledged exits are repeated on the next connection.
        Err(e) => tracing::debug!(job = %job, error = %e, "exit not acknowledged"),
    }
}

/// Lets a held job start (see `launch::record_then_release`); NotFound means it was not held.
async fn release_held(app: &App, job: &JobId) {
    let req = SpawnerRequest::ReleaseJob { job: job.clone() };
    match app.spawner.request(req, PATIENCE, REPLY_TIMEOUT).await {
        Ok(_) => tracing::info!(job = %job, "released a job held for a previous frontend"),
        Err(e) if e.remote_kind() == Some(RemoteErrorKind::NotFound) => {}
        Err(e) => tracing::warn!(job = %job, error = %e, "cannot release a held job"),
    }
}

/// A job the spawner holds that no record knows: its record could not be written (RunJob's
/// create failed, or its frontend died first), or the record was lost. Either way it must not
/// run; a held job ends without having started.
pub(super) async fn stop_unrecorded(app: &App, job: &JobId) {
    tracing::warn!(job = %job, "the spawner holds a job without a record; stopping it");
    let req = SpawnerRequest::StopJob {
        job: job.clone(),
        grace_ms: 0,
    };
    if let Err(e) = app.spawner.request(req, PATIENCE, REPLY_TIMEOUT).await {
        tracing::warn!(job = %job, error = %e, "cannot stop a job without a record");
    }
}

/// The spawner's entry for one job, if it has one.
async fn spawned(app: &App, job: &JobId) -> Option<SpawnedJob> {
    spawner_jobs(app).await.ok()?.remove(job)
}

/// Every job the spawner holds, running or exited and not yet acknowledged.
async fn spawner_jobs(app: &App) -> Result<HashMap<JobId, SpawnedJob>, LinkError> {
    let mut all = HashMap::new();
    let mut after = None;
    loop {
        let reply = app
            .spawner
            .request(
                SpawnerRequest::ListJobs {
                    after: after.clone(),
                },
                PATIENCE,
                REPLY_TIMEOUT,
            )
            .await?;
        let SpawnerReply::Jobs { jobs, more } = reply else {
            return Err(LinkError::Unexpected {
                daemon: "spawner",
                request: "ListJobs",
                got: "another reply",
            });
        };
        let last = jobs.last().map(|j| j.job.clone());
        all.extend(jobs.into_iter().map(|j| (j.job.clone(), j)));
        match (more, last) {
            (true, Some(last)) => after = Some(last),
            _ => return Ok(all),
        }
    }
}

async fn reconcile(app: &App) -> Result<(), ReconcileError> {
    app.tracker.begin_reconcile();
    let result = reconcile_snapshots(app).await;
    if result.is_err() {
        app.tracker.abort_reconcile();
    }
    result
}

async fn reconcile_snapshots(app: &App) -> Result<(), ReconcileError> {
    // stated first: a job created after this snapshot is simply not judged this round,
    // and one created before it is in the spawner's later snapshot if it started.
    let records = app.state.list_all().await.map_err(ReconcileError::State)?;
    let held = spawner_jobs(app).await.map_err(ReconcileError::Spawner)?;
    let mut lost = 0usize;
    for r in records
        .iter()
        .filter(|r| matches!(r.state, JobState::Running | JobState::Initializing))
    {
        if app.tracker.reconcile_skips(&r.id) {
            continue;
        }
        let result = match held.get(&r.id) {
            Some(s) if r.state == JobState::Initializing && s.exited.is_none() => {
                // A job still launching (pid 0) has no start time at the spawner yet, and its
                // start is reported to the frontend that asked for it, not to this one; stated
                // refuses RUNNING without a time, so it is recorded as started now.
                let mut started_ns = s.started_ns;
                if s.pid == 0 {
                    // Perhaps held by a frontend that died before releasing it: its record is
                    // durable, so it may start (a job already released answers NotFound).
                    release_held(app, &r.id).await;
                    started_ns = now_ns();
                }
                app.state
                    .transition(&r.id, JobState::Running, started_ns, None)
                    .await
            }
            // Running, or its exit event is on its way.
            Some(_) => Ok(()),
            None => {
                tracing::warn!(job = %r.id, state = %r.state, "job not known to the spawner; marking it FAILED (lost)");
                lost += 1;
                let outcome = JobOutcome::lost(LOST_MESSAGE);
                app.state
                    .transition(&r.id, JobState::Failed, now_ns(), Some(outcome))
                    .await
            }
        };
        match result {
            Ok(()) => {}
            // It moved on meanwhile (an exit was recorded): nothing to correct.
            Err(e)
                if matches!(
                    e.remote_kind(),
                    Some(RemoteErrorKind::FailedPrecondition | RemoteErrorKind::NotFound)
                ) => {}
            Err(e) => return Err(ReconcileError::State(e)),
        }
    }
    let recorded: HashSet<&JobId> = records.iter().map(|r| &r.id).collect();
    for s in held
        .values()
        .filter(|s| s.exited.is_none() && !recorded.contains(&s.job))
    {
        if !app.tracker.reconcile_skips(&s.job) {
            stop_unrecorded(app, &s.job).await;
        }
    }
    let alive: HashSet<JobId> = held
        .values()
        .filter(|s| s.exited.is_none())
        .map(|s| s.job.clone())
        .collect();
    tracing::info!(
        records = records.len(),
        spawner_jobs = held.len(),
        running = alive.len(),
        lost,
        "reconciled job states with the spawner"
    );
    app.tracker.end_reconcile(alive);
    Ok(())
}
