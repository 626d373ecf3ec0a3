//! The scheduler: one task holding a timetable of SCHEDULED jobs ([`queue`]), which starts
//! each job when it is due.
//!
//! It survives restarts because it keeps nothing of its own: at start it reads every
//! SCHEDULED record from stated and arms it (overdue ones start at once), then removes
//! staged uploads that belong to no SCHEDULED job (leftovers of a crash). Requests arm and
//! disarm jobs through a [`Scheduler`] handle; the start itself is the job service's
//! (`jobs::scheduled::start_due`).

pub mod queue;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use joblet_ipc_proto::job::{JobId, JobState};
use tokio::sync::mpsc;

use crate::app::App;
use crate::jobs::convert::now_ns;
use crate::jobs::scheduled;
use crate::uploads::UploadStore;
use queue::DueQueue;

/// The longest sleep between looks at the clock: a wall-clock step (NTP) is noticed
/// within this time.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// Pause before reading stated again when it is down at start.
const LOAD_RETRY: Duration = Duration::from_secs(2);

enum Command {
    Arm { job: JobId, due_ns: u64 },
    Disarm { job: JobId },
}

/// The handle requests use.
pub struct Scheduler {
    tx: mpsc::UnboundedSender<Command>,
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    /// Entries of the upload staging area when this process started; those not belonging
    /// to a SCHEDULED job are removed once the records are loaded.
    stale_candidates: Mutex<Vec<String>>,
}

impl Scheduler {
    /// Creates the handle, noting what the staging area holds right now (before any
    /// request can stage anything).
    pub fn new(uploads: &UploadStore) -> Scheduler {
        let (tx, rx) = mpsc::unbounded_channel();
        Scheduler {
            tx,
            inbox: Mutex::new(Some(rx)),
            stale_candidates: Mutex::new(uploads.entries()),
        }
    }

    /// Starts `job` at `due_ns` (Unix ns; a time in the past means now).
    pub fn arm(&self, job: JobId, due_ns: u64) {
        if self.tx.send(Command::Arm { job, due_ns }).is_err() {
            tracing::error!("the scheduler is not running; a scheduled job was not armed");
        }
    }

    /// Forgets `job` (canceled).
    pub fn disarm(&self, job: &JobId) {
        let _ = self.tx.send(Command::Disarm { job: job.clone() });
    }
}

/// Runs the scheduler of `app` until the process ends. Only the first call runs.
pub async fn run(app: Arc<App>) {
    let taken = app
        .scheduler
        .inbox
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some(mut inbox) = taken else {
        tracing::error!("the scheduler was started twice; the second one stops");
        return;
    };
    let mut queue = DueQueue::default();
    load(&app, &mut queue).await;
    loop {
        let sleep = queue.next_due().map_or(MAX_SLEEP, |due| {
            Duration::from_nanos(due.saturating_sub(now_ns())).min(MAX_SLEEP)
        });
        tokio::select! {
            cmd = inbox.recv() => match cmd {
                Some(Command::Arm { job, due_ns }) => queue.arm(job, due_ns),
                Some(Command::Disarm { job }) => { queue.disarm(&job); }
                None => return,
            },
            _ = tokio::time::sleep(sleep) => {
                for job in queue.pop_due(now_ns()) {
                    tokio::spawn(scheduled::start_due(app.clone(), job));
                }
            }
        }
    }
}

/// Arms every SCHEDULED record, retrying until stated answers, then sweeps the staging
/// area.
async fn load(app: &App, queue: &mut DueQueue) {
    let records = loop {
        match app.state.list_all().await {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot load scheduled jobs yet; retrying");
                tokio::time::sleep(LOAD_RETRY).await;
            }
        }
    };
    let mut scheduled = HashSet::new();
    for r in records
        .into_iter()
        .filter(|r| r.state == JobState::Scheduled)
    {
        queue.arm(r.id.clone(), r.spec.schedule_ns);
        scheduled.insert(r.id.to_string());
    }
    tracing::info!(jobs = scheduled.len(), next = ?queue.next_due(), "scheduled jobs armed");
    let candidates = std::mem::take(
        &mut *app
            .scheduler
            .stale_candidates
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    let uploads = app.uploads.clone();
    let swept = tokio::task::spawn_blocking(move || sweep(&uploads, candidates, &scheduled)).await;
    if let Err(e) = swept {
        tracing::error!(error = %e, "sweeping stale uploads failed");
    }
}

/// Removes staging entries that belong to no SCHEDULED job.
fn sweep(uploads: &UploadStore, candidates: Vec<String>, scheduled: &HashSet<String>) {
    for name in candidates.iter().filter(|n| !scheduled.contains(*n)) {
        match uploads.remove_entry(name) {
            Ok(()) => tracing::info!(entry = %name, "removed stale staged uploads"),
            Err(e) => {
                tracing::warn!(entry = %name, error = %e, "cannot remove stale staged uploads")
            }
        }
    }
}
