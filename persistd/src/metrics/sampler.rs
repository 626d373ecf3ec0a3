//! The one sampling task: a single timer walks the whole watched set every interval, so
//! 1,000 jobs cost one wake-up per interval, not 1,000 timers.
//!
//! The task owns the [`Sampling`] state; `Watch` and end-of-job requests reach it over a
//! channel and are applied between passes. Each step (a pass, a watch with its first sample,
//! a final sample with its fsync) runs on the blocking pool, so cgroup reads and file writes
//! never hold a runtime thread that serves pipes or readers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, warn};

use super::cgroup::CgroupDirs;
use super::sampling::Sampling;
use crate::store::JobLog;

/// Requests waiting for the task. The spawner sends one `Watch` per job, so a full queue
/// means the task is stuck; senders then wait rather than grow memory.
const QUEUE: usize = 1024;

/// How long the end of a job waits for its final sample before reporting `Drained` anyway.
const END_WAIT: Duration = Duration::from_secs(10);

/// The shortest sampling interval accepted (a shorter one would mostly measure itself).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// A handle to the sampling task.
#[derive(Clone)]
pub struct Sampler {
    commands: mpsc::Sender<Command>,
}

enum Command {
    Watch {
        log: Arc<JobLog>,
        dirs: CgroupDirs,
        started_ns: u64,
    },
    End {
        log: Arc<JobLog>,
        done: oneshot::Sender<()>,
    },
}

/// Starts the task; it runs until every [`Sampler`] handle is dropped or the runtime stops.
/// Must run inside the runtime. `interval` below [`MIN_INTERVAL`] is raised to it.
pub fn start(interval: Duration) -> (Sampler, JoinHandle<()>) {
    let (commands, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(interval.max(MIN_INTERVAL), rx));
    (Sampler { commands }, task)
}

impl Sampler {
    /// Samples the job's cgroup through `dirs` from now until its output is drained.
    pub async fn watch(&self, log: Arc<JobLog>, dirs: CgroupDirs, started_ns: u64) {
        let job = log.id().clone();
        let cmd = Command::Watch {
            log,
            dirs,
            started_ns,
        };
        if self.commands.send(cmd).await.is_err() {
            warn!(%job, "the sampling task has stopped; the job is not sampled");
        }
    }

    /// The job's output is drained: takes its final sample and closes its samples. Returns
    /// when that is done (or after [`END_WAIT`], closing them here), before the spawner is
    /// told `Drained` and may remove the cgroup.
    pub async fn end(&self, log: Arc<JobLog>) {
        let (done, finished) = oneshot::channel();
        let cmd = Command::End {
            log: log.clone(),
            done,
        };
        let delivered = self.commands.send(cmd).await.is_ok();
        if delivered
            && tokio::time::timeout(END_WAIT, finished)
                .await
                .is_ok_and(|r| r.is_ok())
        {
            return;
        }
        warn!(job = %log.id(), "no final metric sample (the sampling task did not answer)");
        let closing = tokio::task::spawn_blocking(move || log.metrics().close()).await;
        if let Ok(Err(error)) = closing {
            warn!(%error, "closing the job's metric samples");
        }
    }
}

enum Step {
    Tick,
    Apply(Command),
}

async fn run(interval: Duration, mut commands: mpsc::Receiver<Command>) {
    let mut sampling = Sampling::new();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // A late pass is followed by a full interval, not a burst of catch-up passes.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let step = tokio::select! {
            _ = ticks.tick() => Step::Tick,
            cmd = commands.recv() => match cmd {
                Some(cmd) => Step::Apply(cmd),
                None => return,
            },
        };
        let applied = tokio::task::spawn_blocking(move || {
            apply(&mut sampling, step);
            sampling
        })
        .await;
        sampling = match applied {
            Ok(s) => s,
            Err(e) => {
                // Only a bug panics here. Starting empty loses the watched set; the spawner
                // re-sends `Watch` for its jobs when it reconnects.
                error!(error = %e, "a sampling step failed; the watched set is reset");
                Sampling::new()
            }
        };
    }
}

fn apply(sampling: &mut Sampling, step: Step) {
    match step {
        Step::Tick => {
            if sampling.is_empty() {
                return;
            }
            let began = Instant::now();
            let report = sampling.sample_all();
            debug!(
                sampled = report.sampled,
                ended = report.ended,
                elapsed_us = began.elapsed().as_micros() as u64,
                "sampled the watched jobs"
            );
        }
        Step::Apply(Command::Watch {
            log,
            dirs,
            started_ns,
        }) => sampling.watch(log, dirs, started_ns),
        Step::Apply(Command::End { log, done }) => {
            sampling.end(&log);
            let _ = done.send(());
        }
    }
}
