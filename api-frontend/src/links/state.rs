//! The link to stated: a small pool of connections, one request in flight on each (stated
//! answers in order per connection), reconnected on error.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::channel::state::{FromState, ToState};
use joblet_ipc_proto::codec::Message;
use joblet_ipc_proto::job::{JobId, JobOutcome, JobRecord, JobState};
use joblet_ipc_proto::tokio::Conn;
use tokio::sync::Semaphore;

use super::{PATIENCE, connect_patiently};
use crate::errors::LinkError;

const DAEMON: &str = "stated";
/// Connections kept open to stated (and requests in flight at once).
const POOL_SIZE: usize = 4;
/// stated answers from a local database; a silent one is treated as down.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct StateClient {
    path: PathBuf,
    idle: Mutex<Vec<Conn>>,
    slots: Semaphore,
}

/// Where an exchange failed, which decides whether it may be repeated.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    /// The request never left: always safe to repeat on a fresh connection.
    #[error("cannot send {0}: {1}")]
    Send(&'static str, String),
    /// The request may have been applied.
    #[error("no reply to {0}: {1}")]
    Reply(&'static str, String),
}

impl ExchangeError {
    fn never_sent(&self) -> bool {
        matches!(self, ExchangeError::Send(..))
    }
}

impl StateClient {
    pub fn new(path: PathBuf) -> StateClient {
        StateClient {
            path,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(POOL_SIZE),
        }
    }

    /// Sends one request and returns stated's answer (its `Error` replies become
    /// [`LinkError::Remote`]).
    async fn call(&self, req: ToState) -> Result<FromState, LinkError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| LinkError::unavailable(DAEMON, "the client is shutting down"))?;
        let pooled = self.take_idle();
        let had_pooled = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect().await?,
        };
        let reply = match exchange(&mut conn, &req).await {
            Ok(reply) => Ok((conn, reply)),
            // A pooled connection may have died while idle (stated restarted): repeat the
            // request on a fresh one when it surely never arrived, or when repeating it
            // changes nothing.
            Err(e) if had_pooled && (e.never_sent() || idempotent(&req)) => {
                tracing::debug!(error = %e, "stated connection went stale; reconnecting");
                let mut fresh = self.connect().await?;
                exchange(&mut fresh, &req).await.map(|reply| (fresh, reply))
            }
            Err(e) => Err(e),
        };
        match reply {
            Ok((conn, FromState::Error(e))) => {
                self.put_idle(conn);
                Err(LinkError::Remote(e))
            }
            Ok((conn, reply)) => {
                self.put_idle(conn);
                Ok(reply)
            }
            Err(e) => Err(LinkError::unavailable(DAEMON, e)),
        }
    }

    async fn connect(&self) -> Result<Conn, LinkError> {
        connect_patiently(&self.path, Channel::State, DAEMON, PATIENCE).await
    }

    fn take_idle(&self) -> Option<Conn> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put_idle(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < POOL_SIZE {
            idle.push(conn);
        }
    }

    pub async fn create(&self, record: JobRecord) -> Result<(), LinkError> {
        let req = ToState::Create { record };
        expect_done(self.call(req).await?, "Create")
    }

    pub async fn transition(
        &self,
        job: &JobId,
        to: JobState,
        at_ns: u64,
        outcome: Option<JobOutcome>,
    ) -> Result<(), LinkError> {
        let req = ToState::Transition {
            job: job.clone(),
            to,
            at_ns,
            outcome,
        };
        expect_done(self.call(req).await?, "Transition")
    }

    pub async fn get(&self, job: &JobId) -> Result<JobRecord, LinkError> {
        match self.call(ToState::Get { job: job.clone() }).await? {
            FromState::Record(r) => Ok(r),
            other => Err(unexpected("Get", &other)),
        }
    }

    pub async fn resolve(&self, prefix: &str) -> Result<JobId, LinkError> {
        let req = ToState::Resolve {
            prefix: prefix.to_owned(),
        };
        match self.call(req).await? {
            FromState::Resolved(id) => Ok(id),
            other => Err(unexpected("Resolve", &other)),
        }
    }

    /// One page of records after `after`, and whether more follow.
    pub async fn list_page(
        &self,
        after: Option<JobId>,
    ) -> Result<(Vec<JobRecord>, bool), LinkError> {
        match self.call(ToState::List { after }).await? {
            FromState::Records { records, more } => Ok((records, more)),
            other => Err(unexpected("List", &other)),
        }
    }

    /// Every record, in id order.
    pub async fn list_all(&self) -> Result<Vec<JobRecord>, LinkError> {
        let mut all: Vec<JobRecord> = Vec::new();
        let mut after = None;
        loop {
            let (page, more) = self.list_page(after).await?;
            let last = page.last().map(|r| r.id.clone());
            all.extend(page);
            match (more, last) {
                (true, Some(last)) => after = Some(last),
                // `more` with an empty page would loop forever; stop instead.
                _ => return Ok(all),
            }
        }
    }

    pub async fn delete(&self, job: &JobId) -> Result<(), LinkError> {
        expect_done(
            self.call(ToState::Delete { job: job.clone() }).await?,
            "Delete",
        )
    }
}

/// Requests that may be repeated without changing the outcome (stated accepts a repeated
/// transition to the state a job is already in).
fn idempotent(req: &ToState) -> bool {
    matches!(
        req,
        ToState::Get { .. }
            | ToState::Resolve { .. }
            | ToState::List { .. }
            | ToState::Transition { .. }
    )
}

async fn exchange(conn: &mut Conn, req: &ToState) -> Result<FromState, ExchangeError> {
    let name = req.name();
    conn.send(req, &[])
        .await
        .map_err(|e| ExchangeError::Send(name, e.to_string()))?;
    match tokio::time::timeout(REPLY_TIMEOUT, conn.recv::<FromState>()).await {
        Ok(Ok(r)) => Ok(r.msg),
        Ok(Err(e)) => Err(ExchangeError::Reply(name, e.to_string())),
        Err(_) => Err(ExchangeError::Reply(
            name,
            format!("nothing within {} s", REPLY_TIMEOUT.as_secs()),
        )),
    }
}

fn expect_done(reply: FromState, request: &'static str) -> Result<(), LinkError> {
    match reply {
        FromState::Done => Ok(()),
        other => Err(unexpected(request, &other)),
    }
}

fn unexpected(request: &'static str, got: &FromState) -> LinkError {
    LinkError::Unexpected {
        daemon: DAEMON,
        request,
        got: got.name(),
    }
}
