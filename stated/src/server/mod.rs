//! The state channel server: accepts frontend connections and serves each in its own task.

mod conn;
mod request;

use std::future::Future;
use std::time::Duration;

use joblet_ipc_proto::tokio::Listener;
use tokio::task::JoinSet;

use crate::store::Store;

pub use conn::MAX_IN_FLIGHT;

/// Connections served at once; only the frontend may connect, and it needs a handful.
pub const MAX_CONNECTIONS: usize = 256;

/// Pause after a failed accept (such as EMFILE) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves connections until `shutdown` resolves, then closes them all. Writes already handed
/// to the writer still complete; the caller then drops the store and joins the writer.
pub async fn serve(mut listener: Listener, store: Store, shutdown: impl Future<Output = ()>) {
    let mut conns = JoinSet::new();
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(incoming) if conns.len() >= MAX_CONNECTIONS => {
                    tracing::warn!(max = MAX_CONNECTIONS, "too many connections; refusing one");
                    drop(incoming);
                }
                Ok(incoming) => {
                    next_id += 1;
                    conns.spawn(conn::serve(incoming, store.clone(), next_id));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "connection task failed");
                }
            }
        }
    }
    tracing::info!(connections = conns.len(), "stopping: closing connections");
    conns.shutdown().await;
}
