//! The link to the spawner: one connection, requests matched to replies by id, exit events
//! passed on as they arrive. A background task keeps the connection up, reconnecting with
//! backoff, and announces every (re)connection so the jobs can be reconciled.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::channel::spawner::{
    FromSpawner, SpawnerEvent, SpawnerReply, SpawnerRequest, ToSpawner,
};
use joblet_ipc_proto::codec::Message;
use joblet_ipc_proto::tokio::{Receiver, Sender, connect};
use tokio::sync::{mpsc, oneshot, watch};

use crate::errors::LinkError;

const DAEMON: &str = "spawner";
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the link tells the job lifecycle.
#[derive(Debug)]
pub enum LinkEvent {
    /// A new connection is up: reconcile stated with what the spawner holds.
    Connected,
    /// The spawner reports (or repeats) a job's exit.
    Event(SpawnerEvent),
}

#[derive(Clone)]
pub struct SpawnerLink {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    sender: watch::Sender<Option<Sender>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<SpawnerReply>>>,
    next_id: AtomicU64,
}

impl SpawnerLink {
    pub fn new(path: PathBuf) -> SpawnerLink {
        SpawnerLink {
            shared: Arc::new(Shared {
                path,
                sender: watch::channel(None).0,
                pending: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Waits up to `patience` for a connection; false if the spawner stays unreachable.
    pub async fn wait_connected(&self, patience: Duration) -> bool {
        let mut rx = self.shared.sender.subscribe();
        matches!(
            tokio::time::timeout(patience, rx.wait_for(Option::is_some)).await,
            Ok(Ok(_))
        )
    }

    /// Sends a request and waits for its reply. `Error` replies become
    /// [`LinkError::Remote`]; a broken or silent connection is [`LinkError::Unavailable`].
    pub async fn request(
        &self,
        request: SpawnerRequest,
        patience: Duration,
        reply_timeout: Duration,
    ) -> Result<SpawnerReply, LinkError> {
        self.request_with_fds(request, &[], patience, reply_timeout)
            .await
    }

    /// Like [`SpawnerLink::request`], with file descriptors attached (StartJob's staged
    /// uploads); they must match what the request declares.
    pub async fn request_with_fds(
        &self,
        request: SpawnerRequest,
        fds: &[BorrowedFd<'_>],
        patience: Duration,
        reply_timeout: Duration,
    ) -> Result<SpawnerReply, LinkError> {
        let sent = self.send_with_fds(request, fds, patience).await?;
        sent.reply(reply_timeout).await
    }

    /// Sends a request and returns at once: its reply is awaited with [`SentRequest::reply`].
    /// Requests sent one after the other on this link reach the spawner in that order.
    pub async fn send_with_fds(
        &self,
        request: SpawnerRequest,
        fds: &[BorrowedFd<'_>],
        patience: Duration,
    ) -> Result<SentRequest<'_>, LinkError> {
        let msg = ToSpawner {
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            request,
        };
        let name = msg.name();
        if !self.wait_connected(patience).await {
            return Err(LinkError::unavailable(
                DAEMON,
                "the spawner is restarting, retry",
            ));
        }
        let Some(sender) = self.shared.sender.borrow().clone() else {
            return Err(LinkError::unavailable(
                DAEMON,
                "the spawner is restarting, retry",
            ));
        };
        let (tx, rx) = oneshot::channel();
        // Registered before sending, so a reply can never arrive unclaimed; the reader drops
        // every pending entry when the connection breaks.
        self.pending().insert(msg.id, tx);
        let guard = PendingGuard {
            shared: &self.shared,
            id: msg.id,
        };
        if let Err(e) = sender.send(&msg, fds).await {
            return Err(LinkError::unavailable(
                DAEMON,
                format!("cannot send {name}: {e}"),
            ));
        }
        Ok(SentRequest { name, rx, guard })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<SpawnerReply>>> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the connection up for as long as `events` has a receiver.
    pub async fn maintain(self, events: mpsc::UnboundedSender<LinkEvent>) {
        let mut backoff = MIN_BACKOFF;
        let mut reported_down = false;
        while !events.is_closed() {
            match connect(&self.shared.path, Channel::Spawner).await {
                Ok(conn) => {
                    backoff = MIN_BACKOFF;
                    reported_down = false;
                    tracing::info!("connected to the spawner");
                    let (sender, receiver) = conn.split();
                    self.shared.sender.send_replace(Some(sender.clone()));
                    let _ = events.send(LinkEvent::Connected);
                    let why = self.read_replies(receiver, &events).await;
                    self.shared.sender.send_replace(None);
                    sender.shutdown();
                    self.pending().clear();
                    tracing::warn!(reason = %why, "spawner connection lost; reconnecting");
                }
                Err(e) if !reported_down => {
                    tracing::warn!(error = %e, socket = %self.shared.path.display(), "cannot reach the spawner; retrying");
                    reported_down = true;
                }
                Err(e) => tracing::debug!(error = %e, "spawner still unreachable"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Routes replies to their requests and events to the lifecycle until the connection
    /// breaks; returns why it broke.
    async fn read_replies(
        &self,
        mut receiver: Receiver,
        events: &mpsc::UnboundedSender<LinkEvent>,
    ) -> String {
        loop {
            let msg = match receiver.recv::<FromSpawner>().await {
                Ok(r) => r.msg,
                Err(e) => return e.to_string(),
            };
            match msg {
                FromSpawner::Reply { id, reply } => {
                    let waiter = self.pending().remove(&id);
                    match waiter {
                        Some(tx) => {
                            let _ = tx.send(reply);
                        }
                        None => tracing::debug!(id, "spawner reply for a request nobody waits for"),
                    }
                }
                FromSpawner::Event(ev) => {
                    if events.send(LinkEvent::Event(ev)).is_err() {
                        return "the frontend is shutting down".into();
                    }
                }
            }
        }
    }
}

/// A request on its way: [`SentRequest::reply`] waits for the spawner's answer. Dropping it
/// forgets the reply (the spawner still acts on the request).
pub struct SentRequest<'a> {
    name: &'static str,
    rx: oneshot::Receiver<SpawnerReply>,
    guard: PendingGuard<'a>,
}

impl SentRequest<'_> {
    /// The reply: `Error` replies become [`LinkError::Remote`]; a broken or silent connection
    /// is [`LinkError::Unavailable`].
    pub async fn reply(self, reply_timeout: Duration) -> Result<SpawnerReply, LinkError> {
        let name = self.name;
        let reply = match tokio::time::timeout(reply_timeout, self.rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => {
                return Err(LinkError::unavailable(
                    DAEMON,
                    format!("the connection broke before the spawner answered {name}"),
                ));
            }
            Err(_) => {
                return Err(LinkError::unavailable(
                    DAEMON,
                    format!("no answer to {name} within {} s", reply_timeout.as_secs()),
                ));
            }
        };
        drop(self.guard);
        match reply {
            SpawnerReply::Error(e) => Err(LinkError::Remote(e)),
            other => Ok(other),
        }
    }
}

/// Removes a request's pending entry when it gives up waiting (timeout, cancellation).
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}
