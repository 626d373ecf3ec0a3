//! The link to persistd's log channel: one connection per reader of output or metrics (a
//! following read keeps its connection; one that persistd ended is kept for the next read),
//! plus deletion of a job's stored output. Reading output is [`LogReader`]'s.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use joblet_ipc_proto::channel::logs::{FromPersistLogs, ToPersistLogs};
use joblet_ipc_proto::codec::Message;
use joblet_ipc_proto::job::JobId;
use joblet_ipc_proto::tokio::Conn;
use joblet_ipc_proto::{Channel, IpcError, RemoteErrorKind};

use super::{PATIENCE, connect_patiently};
use crate::errors::LinkError;

pub use super::log_reader::{LogChunk, LogReadError, LogReader, ReadEvent};

const DAEMON: &str = "persistd";
const DELETE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct LogsClient {
    path: PathBuf,
    idle: IdleConns,
}

/// Connections on which persistd ended a read and waits for the next request. Every
/// followed job is read once: reusing one spares persistd an accept and a task, and the
/// read a connect and the handshake's round trip, on the path from a job's exit to its
/// client.
#[derive(Clone, Default)]
pub struct IdleConns(Arc<Mutex<Vec<Conn>>>);

/// At most this many are kept; more reads at once connect anew.
const IDLE_MAX: usize = 16;

impl IdleConns {
    fn lock(&self) -> MutexGuard<'_, Vec<Conn>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Option<Conn> {
        self.lock().pop()
    }

    pub fn put(&self, conn: Conn) {
        let mut idle = self.lock();
        if idle.len() < IDLE_MAX {
            idle.push(conn);
        }
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

/// Which metric samples to read: `from_ns <= at_ns <= to_ns` (0 = open), at most `limit`
/// (0 = all), and with `follow` new ones until the job's output is complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsQuery {
    pub from_ns: u64,
    pub to_ns: u64,
    pub limit: u32,
    pub follow: bool,
}

/// An open read of one job's metric samples.
pub struct MetricReader {
    conn: Conn,
}

impl LogsClient {
    pub fn new(path: PathBuf) -> LogsClient {
        LogsClient {
            path,
            idle: IdleConns::default(),
        }
    }

    /// Opens a read from sequence number `from_seq`; with `follow` it continues with live
    /// output until the job's output is complete.
    pub async fn read(
        &self,
        job: &JobId,
        from_seq: u64,
        follow: bool,
    ) -> Result<LogReader, LinkError> {
        let req = ToPersistLogs::Read {
            job: job.clone(),
            from_seq,
            follow,
        };
        let reader = |conn| LogReader::new(conn, from_seq).returning_to(self.idle.clone());
        if let Some(conn) = self.idle.take() {
            if conn.send(&req, &[]).await.is_ok() {
                return Ok(reader(conn));
            }
            // persistd closed it, so it restarted: the other idle ones are as dead.
            self.idle.clear();
        }
        let conn = connect_patiently(&self.path, Channel::Logs, DAEMON, PATIENCE).await?;
        conn.send(&req, &[])
            .await
            .map_err(|e| LinkError::unavailable(DAEMON, e))?;
        Ok(reader(conn))
    }

    /// Opens a read of the job's metric samples (see [`MetricsQuery`]).
    pub async fn metrics(&self, job: &JobId, q: MetricsQuery) -> Result<MetricReader, LinkError> {
        let conn = connect_patiently(&self.path, Channel::Logs, DAEMON, PATIENCE).await?;
        let req = ToPersistLogs::Metrics {
            job: job.clone(),
            from_ns: q.from_ns,
            to_ns: q.to_ns,
            limit: q.limit,
            follow: q.follow,
        };
        conn.send(&req, &[])
            .await
            .map_err(|e| LinkError::unavailable(DAEMON, e))?;
        Ok(MetricReader { conn })
    }

    /// Deletes a job's stored output; output that was never stored counts as deleted.
    pub async fn delete(&self, job: &JobId) -> Result<(), LinkError> {
        let mut conn = connect_patiently(&self.path, Channel::Logs, DAEMON, PATIENCE).await?;
        conn.send(&ToPersistLogs::Delete { job: job.clone() }, &[])
            .await
            .map_err(|e| LinkError::unavailable(DAEMON, e))?;
        let reply = tokio::time::timeout(DELETE_TIMEOUT, conn.recv::<FromPersistLogs>())
            .await
            .map_err(|_| LinkError::unavailable(DAEMON, "no answer to Delete"))?
            .map_err(|e| LinkError::unavailable(DAEMON, e))?;
        match reply.msg {
            FromPersistLogs::Deleted => Ok(()),
            FromPersistLogs::Error(e) if e.kind == RemoteErrorKind::NotFound => Ok(()),
            FromPersistLogs::Error(e) => Err(LinkError::Remote(e)),
            other => Err(LinkError::Unexpected {
                daemon: DAEMON,
                request: "Delete",
                got: other.name(),
            }),
        }
    }
}

impl MetricReader {
    /// The next message of the read. An error means the connection broke.
    pub async fn next(&mut self) -> Result<FromPersistLogs, IpcError> {
        Ok(self.conn.recv::<FromPersistLogs>().await?.msg)
    }
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
