//! Accepting connections on the two channels.
//!
//! Each connection runs in its own task, handshake included (peer uid, then hello), so a
//! stalled client never holds up the accept loop. Stopping drops every task: the store is
//! consistent at every await point (a chunk's data and its record are written with no await
//! in between), and unread output stays in the pipes the spawner keeps open.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::tokio::{Conn, Incoming, Listener};
use tracing::{info, warn};

use crate::metrics::{Sampler, sampler};
use crate::registry::Registry;

pub struct Listeners {
    /// `Channel::Output`, peer uid = the spawner's.
    pub output: Listener,
    /// `Channel::Logs`, peer uid = the frontend's.
    pub logs: Listener,
}

/// What the server is told besides its listeners.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How often each watched job's cgroup is sampled.
    pub metrics_interval: Duration,
}

/// Pause after a failed accept (out of fds, say) so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves both channels, and samples watched jobs, until `shutdown` completes.
pub async fn serve(
    registry: Arc<Registry>,
    listeners: Listeners,
    options: Options,
    shutdown: impl Future<Output = ()>,
) {
    let Listeners {
        mut output,
        mut logs,
    } = listeners;
    let (sampler, sampling) = sampler::start(options.metrics_interval);
    tokio::pin!(shutdown);
    info!(
        metrics_interval_ms = options.metrics_interval.as_millis() as u64,
        "persistd serving the output and logs channels"
    );
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            r = output.accept() => on_accept(r, Channel::Output, &registry, &sampler).await,
            r = logs.accept() => on_accept(r, Channel::Logs, &registry, &sampler).await,
        }
    }
    sampling.abort();
    info!("persistd stopping");
}

async fn on_accept(
    r: std::io::Result<Incoming>,
    channel: Channel,
    registry: &Arc<Registry>,
    sampler: &Sampler,
) {
    match r {
        Ok(incoming) => {
            tokio::spawn(handle(incoming, channel, registry.clone(), sampler.clone()));
        }
        Err(e) => {
            warn!(%channel, error = %e, "accept failed");
            tokio::time::sleep(ACCEPT_RETRY).await;
        }
    }
}

async fn handle(incoming: Incoming, channel: Channel, registry: Arc<Registry>, sampler: Sampler) {
    let conn: Conn = match incoming.handshake().await {
        Ok(conn) => conn,
        Err(e) => {
            warn!(%channel, error = %e, "refused a connection");
            return;
        }
    };
    match channel {
        Channel::Output => crate::output::serve_conn(registry, sampler, conn).await,
        Channel::Logs => crate::logs::serve_conn(registry, conn).await,
        // Listeners are only ever made for the two channels above.
        Channel::Spawner | Channel::State => {}
    }
}
