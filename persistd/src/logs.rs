//! The logs channel: the frontend reads and deletes stored output, and reads metric samples.

use std::sync::Arc;
use std::time::Duration;

use joblet_ipc_proto::RemoteError;
use joblet_ipc_proto::channel::logs::{FromPersistLogs, ToPersistLogs};
use joblet_ipc_proto::job::JobId;
use joblet_ipc_proto::tokio::Conn;
use tracing::{debug, info, warn};

use crate::metric_reader::{self, MetricsQuery, Window};
use crate::reader::{self, ReadEnd};
use crate::registry::{DeleteError, Registry};
use crate::store::Store;

/// Serves one checked connection until it closes or breaks the protocol. Requests are
/// handled in order; a `Read` or `Metrics` occupies the connection until its `End`.
pub async fn serve_conn(registry: Arc<Registry>, conn: Conn) {
    let (sender, mut receiver) = conn.split();
    loop {
        let req = match receiver.recv::<ToPersistLogs>().await {
            Ok(req) => req.msg,
            Err(e) if e.is_closed() => {
                debug!("logs connection closed by the client");
                return;
            }
            Err(e) => {
                warn!(error = %e, "closing the logs connection: bad frame");
                return;
            }
        };
        let end = match req {
            ToPersistLogs::Read {
                job,
                from_seq,
                follow,
            } => {
                let read = reader::Read {
                    job,
                    from_seq,
                    follow,
                };
                reader::serve(&registry, &sender, &mut receiver, read).await
            }
            ToPersistLogs::Metrics {
                job,
                from_ns,
                to_ns,
                limit,
                follow,
            } => {
                let query = MetricsQuery {
                    job,
                    window: Window { from_ns, to_ns },
                    limit,
                    follow,
                };
                metric_reader::serve(&registry, &sender, &mut receiver, query).await
            }
            ToPersistLogs::Delete { job } => {
                let reply = delete(&registry, job).await;
                if sender.send(&reply, &[]).await.is_err() {
                    return;
                }
                ReadEnd::Done
            }
        };
        match end {
            ReadEnd::Done => {}
            ReadEnd::ClientGone => return,
            ReadEnd::Violation(reason) => {
                warn!(%reason, "closing the logs connection");
                return;
            }
        }
    }
}

/// How long a Delete waits for the pump of a job whose output is complete to finish.
const FINISH_WAIT: Duration = Duration::from_secs(20);

async fn delete(registry: &Registry, job: JobId) -> FromPersistLogs {
    let trashed = match registry.delete_when_finished(&job, FINISH_WAIT).await {
        Ok(path) => path,
        Err(e) => {
            let err = match &e {
                DeleteError::NotFound(_) => RemoteError::not_found(e.to_string()),
                DeleteError::StillOpen(_) => RemoteError::precondition(e.to_string()),
                DeleteError::Store(_) => RemoteError::internal(e.to_string()),
            };
            return FromPersistLogs::Error(err);
        }
    };
    // The job is gone from the namespace already; the bytes go now. A failure here only
    // delays reclaiming space: the trash is emptied at the next start.
    match tokio::task::spawn_blocking(move || Store::purge(&trashed)).await {
        Ok(Ok(())) => info!(%job, "deleted the job's output"),
        Ok(Err(e)) => warn!(%job, error = %e, "job output deleted but not yet removed from disk"),
        Err(e) => warn!(%job, error = %e, "job output deleted but the removal task failed"),
    }
    FromPersistLogs::Deleted
}
