//! The output channel: the spawner hands over the read ends of each job's pipes, and its
//! cgroup directories for metrics.
//!
//! The reply enum has no error variant, so a request that cannot be honoured (fds that are not
//! pipe read ends, a job directory that cannot be created) closes the connection with a
//! logged reason; the spawner reconnects and attaches again, and its copies of the pipes keep
//! the output safe meanwhile.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use joblet_ipc_proto::channel::output::{CgroupDir, FromPersistOutput, ToPersistOutput};
use joblet_ipc_proto::job::JobId;
use joblet_ipc_proto::tokio::{Conn, Received, Sender};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::metrics::{CgroupDirs, Sampler};
use crate::pump::{self, Pipes};
use crate::registry::{Attach, DrainedTo, Registry};

/// Serves one checked connection until it closes or breaks the protocol.
pub async fn serve_conn(registry: Arc<Registry>, sampler: Sampler, conn: Conn) {
    let (sender, mut receiver) = conn.split();
    let (drained_to, mut drained) = mpsc::unbounded_channel::<JobId>();
    loop {
        tokio::select! {
            r = receiver.recv::<ToPersistOutput>() => match r {
                Ok(req) => {
                    if let Err(reason) = on_request(&registry, &sampler, &sender, &drained_to, req).await {
                        warn!(%reason, "closing the output connection");
                        return;
                    }
                }
                Err(e) if e.is_closed() => {
                    debug!("output connection closed by the spawner");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "closing the output connection: bad frame");
                    return;
                }
            },
            Some(job) = drained.recv() => {
                if let Err(e) = sender.send(&FromPersistOutput::Drained { job }, &[]).await {
                    debug!(error = %e, "output connection gone before Drained could be sent");
                    return;
                }
            }
        }
    }
}

async fn on_request(
    registry: &Arc<Registry>,
    sampler: &Sampler,
    sender: &Sender,
    drained_to: &DrainedTo,
    req: Received<ToPersistOutput>,
) -> Result<(), String> {
    let (job, started_ns) = match req.msg {
        ToPersistOutput::Attach { job, started_ns } => (job, started_ns),
        ToPersistOutput::Watch { job, dirs } => {
            return on_watch(registry, sampler, job, &dirs, req.fds).await;
        }
    };
    let [stdout, stderr]: [OwnedFd; 2] = req
        .fds
        .try_into()
        .map_err(|fds: Vec<OwnedFd>| format!("Attach carried {} fds, 2 expected", fds.len()))?;
    let pipes = Pipes { stdout, stderr };
    let reply = match registry.attach(&job, drained_to.clone(), started_ns) {
        Ok(Attach::Start(writer)) => {
            let watched = pump::watch(pipes).map_err(|e| format!("Attach for job {job}: {e}"))?;
            info!(%job, started_ns, "reading the job's output");
            tokio::spawn(run_pump(registry.clone(), sampler.clone(), writer, watched));
            FromPersistOutput::Attached { job }
        }
        Ok(Attach::AlreadyReading) => {
            debug!(%job, "job already being read; closing the new copies of its pipes");
            FromPersistOutput::Attached { job }
        }
        Ok(Attach::Complete) => {
            debug!(%job, "job output already complete");
            FromPersistOutput::Drained { job }
        }
        Err(e) => {
            error!(%job, error = %e, "cannot open the job's log");
            return Err(format!("cannot store output of job {job}: {e}"));
        }
    };
    sender
        .send(&reply, &[])
        .await
        .map_err(|e| format!("cannot reply: {e}"))
}

/// Starts sampling the job's cgroup through the handed-over directory fds. Fds that are not
/// cgroup directories of the kinds named close the connection, like a bad `Attach`; a
/// directory persistd may not search is logged and the job is not sampled.
async fn on_watch(
    registry: &Arc<Registry>,
    sampler: &Sampler,
    job: JobId,
    dirs: &[CgroupDir],
    fds: Vec<OwnedFd>,
) -> Result<(), String> {
    if dirs.is_empty() {
        warn!(%job, "Watch names no cgroup directory; the job is not sampled");
        return Ok(());
    }
    let cgroup = match CgroupDirs::new(dirs, fds) {
        Ok(cgroup) => cgroup,
        Err(e) if e.is_protocol_violation() => return Err(format!("Watch for job {job}: {e}")),
        // Not the spawner's protocol but the host's setup: closing would only make the
        // spawner reconnect and send the same again, disturbing the output hand-over.
        Err(e) => {
            error!(%job, error = %e, "the job's metrics are not collected");
            return Ok(());
        }
    };
    let (log, started_ns) = registry.watch_target(&job).map_err(|e| {
        error!(%job, error = %e, "cannot open the job's files for its metrics");
        format!("cannot store metrics of job {job}: {e}")
    })?;
    debug!(%job, ?dirs, "sampling the job's cgroup");
    sampler.watch(log, cgroup, started_ns).await;
    Ok(())
}

async fn run_pump(
    registry: Arc<Registry>,
    sampler: Sampler,
    writer: crate::store::LogWriter,
    watched: [Option<tokio::io::unix::AsyncFd<OwnedFd>>; 2],
) {
    let job = writer.job().clone();
    let log = writer.log().clone();
    match pump::run(writer, watched).await {
        // The final sample is taken before the spawner hears `Drained`, since it may remove
        // the cgroup then.
        Ok(()) => {
            sampler.end(log).await;
            registry.drained(&job);
        }
        // The writer went back to its slot; the spawner's next Attach resumes the job.
        Err(e) => error!(%job, error = %e, "stopped reading the job's output"),
    }
}
