//! Client connections on the spawner channel (the frontend): handshake, a closed request set
//! with a per-state permit table, replies and pushed exit events.
//!
//! Like OpenSSH's monitor: before the hello nothing is permitted; after it, the five requests.
//! A frame that is malformed, too large, carries unexpected fds or is not permitted closes
//! that connection (and only it), with the reason logged.

use std::{collections::VecDeque, os::fd::OwnedFd};

use joblet_ipc_proto::blocking::SeqSocket;
use joblet_ipc_proto::channel::spawner::{
    FromSpawner, SpawnerEvent, SpawnerReply, SpawnerRequest, ToSpawner,
};
use joblet_ipc_proto::{Channel, IpcError, RemoteError, handshake::Hello};

use crate::clock;
use crate::daemon::Spawner;
use crate::registry::{self, ClientId};

/// Most connections at once; the frontend needs one or two.
pub const MAX_CLIENTS: usize = 16;
/// A connection must complete its hello within this time.
pub const HELLO_TIMEOUT_MS: u64 = 5_000;
/// Frames queued for a client that does not read; beyond this it is dropped.
pub const MAX_OUTBOX: usize = 4096;
/// Above this many queued frames, the client's requests wait unread.
pub const MAX_UNREAD_REPLIES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Connected; only a Hello frame is acceptable, until `deadline` (boot-time ns).
    AwaitHello {
        deadline: u64,
    },
    Ready,
}

pub struct Client {
    pub sock: SeqSocket,
    pub state: ConnState,
    pub outbox: VecDeque<FromSpawner>,
}

impl Client {
    /// Requests are read only while few replies wait, so a client that sends without reading
    /// cannot make the spawner queue unbounded replies.
    pub fn poll_events(&self) -> libc::c_short {
        // POLLIN while few replies wait, POLLOUT while any does.
        let read = libc::POLLIN * libc::c_short::from(self.outbox.len() < MAX_UNREAD_REPLIES);
        read | (libc::POLLOUT * libc::c_short::from(!self.outbox.is_empty()))
    }

    pub fn deadline(&self) -> Option<u64> {
        match self.state {
            ConnState::AwaitHello { deadline } => Some(deadline),
            ConnState::Ready => None,
        }
    }
}

/// Why a request is not served on this connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Drop the connection: a protocol violation.
    Violation(&'static str),
    /// Answer with this error; the connection stays.
    Answer(RemoteError),
}

/// The permit table: which request each connection state allows.
pub fn permit(state: ConnState, shutting_down: bool, req: &SpawnerRequest) -> Result<(), Refusal> {
    match (state, req) {
        (ConnState::AwaitHello { .. }, _) => Err(Refusal::Violation("request before the hello")),
        (ConnState::Ready, SpawnerRequest::StartJob { .. }) if shutting_down => Err(
            Refusal::Answer(RemoteError::unavailable("the spawner is shutting down")),
        ),
        (ConnState::Ready, _) => Ok(()),
    }
}

/// `Err` drops the connection, with the reason logged.
type Verdict = Result<(), String>;

impl Spawner {
    pub fn accept_clients(&mut self) {
        loop {
            match self.listener.accept() {
                Ok(Some(_)) if self.clients.len() >= MAX_CLIENTS => {
                    tracing::warn!(max = MAX_CLIENTS, "refusing a connection: too many clients");
                }
                Ok(Some(sock)) => {
                    let deadline = clock::boot_deadline(HELLO_TIMEOUT_MS);
                    let client = Client {
                        sock,
                        state: ConnState::AwaitHello { deadline },
                        outbox: VecDeque::new(),
                    };
                    self.clients.insert(self.next_client, client);
                    self.next_client += 1;
                }
                Ok(None) => return,
                Err(e) => return tracing::warn!(error = %e, "accept failed"),
            }
        }
    }

    pub fn on_client(&mut self, id: ClientId, revents: libc::c_short) {
        let readable = revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
        let mut verdict = Ok(());
        if revents & libc::POLLOUT != 0 {
            verdict = self.flush_client(id);
        }
        if readable && verdict.is_ok() {
            verdict = self.read_client(id);
        }
        if let Err(reason) = verdict {
            self.clients.remove(&id);
            tracing::info!(client = id, reason, "connection closed");
        }
    }

    fn read_client(&mut self, id: ClientId) -> Verdict {
        while let Some(client) = self.clients.get(&id) {
            if client.outbox.len() >= MAX_UNREAD_REPLIES {
                break;
            }
            let failed = |e: IpcError| match e {
                e if e.would_block() => None,
                IpcError::Closed => Some("peer closed".to_owned()),
                e => Some(format!("protocol violation: {e}")),
            };
            match client.state {
                ConnState::AwaitHello { .. } => match client.sock.recv::<Hello>(&mut self.buf) {
                    Ok((hello, _)) => self.on_hello(id, &hello)?,
                    Err(e) => return failed(e).map_or(Ok(()), Err),
                },
                ConnState::Ready => match client.sock.recv::<ToSpawner>(&mut self.buf) {
                    Ok((msg, fds)) => self.on_request(id, msg, fds)?,
                    Err(e) => return failed(e).map_or(Ok(()), Err),
                },
            }
        }
        Ok(())
    }

    fn on_hello(&mut self, id: ClientId, hello: &Hello) -> Verdict {
        let Some(client) = self.clients.get_mut(&id) else {
            return Ok(());
        };
        let api = [self.settings.api_uid];
        if let Err(e) = client.sock.answer_hello(hello, Channel::Spawner, &api) {
            return Err(format!("handshake refused: {e}"));
        }
        client.state = ConnState::Ready;
        tracing::info!(client = id, "client connected");
        // Every exit not yet acknowledged is told again to each new connection.
        client
            .outbox
            .extend(self.jobs.values().filter_map(exit_event));
        self.flush_client(id)
    }

    fn on_request(&mut self, id: ClientId, msg: ToSpawner, mut fds: Vec<OwnedFd>) -> Verdict {
        let Some(client) = self.clients.get(&id) else {
            return Ok(());
        };
        let name = joblet_ipc_proto::codec::Message::name(&msg);
        let reply = match permit(client.state, self.shutdown_deadline.is_some(), &msg.request) {
            Err(Refusal::Violation(why)) => return Err(format!("{name} refused: {why}")),
            Err(Refusal::Answer(e)) => Some(SpawnerReply::Error(e)),
            Ok(()) => {
                tracing::debug!(client = id, request = name, id = msg.id, "request");
                match msg.request {
                    SpawnerRequest::StartJob { job, launch } => {
                        let started = self.start_job(&job, &launch, fds.pop(), (id, msg.id));
                        started.err().map(SpawnerReply::Error)
                    }
                    SpawnerRequest::ReleaseJob { job } => {
                        Some(self.release_held(&job).unwrap_or_else(SpawnerReply::Error))
                    }
                    SpawnerRequest::StopJob { job, grace_ms } => {
                        Some(self.stop_request(&job, grace_ms))
                    }
                    SpawnerRequest::ListJobs { after } => {
                        let (jobs, more) = registry::list(&self.jobs, after.as_ref());
                        Some(SpawnerReply::Jobs { jobs, more })
                    }
                    SpawnerRequest::AckExit { job } => {
                        self.ack_exit(&job);
                        Some(SpawnerReply::Acked)
                    }
                }
            }
        };
        if let Some(r) = reply {
            self.reply(id, msg.id, r);
        }
        self.flush_client(id)
    }

    /// Queues a reply for one client.
    pub fn reply(&mut self, client: ClientId, request: u64, reply: SpawnerReply) {
        if let SpawnerReply::Error(e) = &reply {
            tracing::info!(client, request, kind = ?e.kind, error = %e.message, "request refused");
        }
        if let Some(c) = self.clients.get_mut(&client) {
            c.outbox
                .push_back(FromSpawner::Reply { id: request, reply });
        }
    }

    /// Queues an event for every client past its hello.
    pub fn broadcast(&mut self, event: FromSpawner) {
        let ready = self
            .clients
            .values_mut()
            .filter(|c| c.state == ConnState::Ready);
        ready.for_each(|c| c.outbox.push_back(event.clone()));
    }

    /// Sends queued frames until the socket is full.
    fn flush_client(&mut self, id: ClientId) -> Verdict {
        let Some(c) = self.clients.get_mut(&id) else {
            return Ok(());
        };
        while let Some(frame) = c.outbox.front() {
            match c.sock.send(frame, &[]) {
                Ok(()) => drop(c.outbox.pop_front()),
                Err(e) if e.would_block() => break,
                Err(e) => return Err(format!("send failed: {e}")),
            }
        }
        match c.outbox.len() > MAX_OUTBOX {
            true => Err("client does not read its replies".into()),
            false => Ok(()),
        }
    }

    /// Flushes every client (after events were broadcast) and drops the ones that fail.
    pub fn flush_all(&mut self) {
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        for id in ids {
            if let Err(reason) = self.flush_client(id) {
                self.clients.remove(&id);
                tracing::info!(client = id, reason, "connection closed");
            }
        }
    }

    /// Drops connections that did not say hello in time.
    pub fn expire_hellos(&mut self, now: u64) {
        self.clients.retain(|id, c| match c.state {
            ConnState::AwaitHello { deadline } if deadline <= now => {
                tracing::info!(client = id, "connection closed: no hello in time");
                false
            }
            _ => true,
        });
    }
}

/// The exit event of a job that ended, if it did.
pub fn exit_event(job: &crate::registry::Job) -> Option<FromSpawner> {
    job.exited().map(|(outcome, ended_ns)| {
        FromSpawner::Event(SpawnerEvent::Exited {
            job: job.id.clone(),
            outcome: outcome.clone(),
            ended_ns,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use joblet_ipc_proto::RemoteErrorKind;
    use joblet_ipc_proto::job::JobId;

    fn ack() -> SpawnerRequest {
        SpawnerRequest::AckExit {
            job: JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").unwrap(),
        }
    }

    #[test]
    fn nothing_before_hello() {
        let s = ConnState::AwaitHello { deadline: 0 };
        assert!(matches!(
            permit(s, false, &ack()),
            Err(Refusal::Violation(_))
        ));
        let list = SpawnerRequest::ListJobs { after: None };
        assert!(matches!(
            permit(s, false, &list),
            Err(Refusal::Violation(_))
        ));
    }

    #[test]
    fn ready_allows_the_closed_set_but_no_starts_in_shutdown() {
        assert_eq!(permit(ConnState::Ready, false, &ack()), Ok(()));
        assert_eq!(permit(ConnState::Ready, true, &ack()), Ok(()));
        let start = SpawnerRequest::StartJob {
            job: JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").unwrap(),
            launch: joblet_ipc_proto::job::LaunchSpec {
                spec: Default::default(),
                secret_env: vec![],
                has_upload_dir: false,
            },
        };
        assert_eq!(permit(ConnState::Ready, false, &start), Ok(()));
        match permit(ConnState::Ready, true, &start) {
            Err(Refusal::Answer(e)) => assert_eq!(e.kind, RemoteErrorKind::Unavailable),
            other => panic!("{other:?}"),
        }
    }
}
