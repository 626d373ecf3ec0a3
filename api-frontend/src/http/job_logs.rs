//! `GET /v1/jobs/{id}/logs[?follow=true]`: a job's output as Server-Sent Events.
//!
//! Each chunk persistd stored is one event: its stream (`stdout`/`stderr`) as the event
//! name, its sequence number as the id, its bytes base64-encoded as the data. With `follow`
//! the stream goes on with live output until the job ends; it always finishes with an `end`
//! event holding the job's status. A client that reconnects with `Last-Event-ID` resumes
//! after that chunk, and a persistd connection that breaks mid-stream is resumed from the
//! next sequence number: no gap, no duplicate.
//!
//! This is an adapter over persistd's log channel rather than a reuse of GetJobLogs, whose
//! stream (the public `DataChunk`) carries neither the stream name nor the sequence number.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::channel::logs::{FromPersistLogs, LogChunk};
use joblet_ipc_proto::codec::Message;
use joblet_ipc_proto::job::{JobId, Stream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::http::Response;
use tonic::{Code, Status};

use super::{end_event, enter, error_event, reply, sse};
use crate::app::App;
use crate::errors::LinkError;
use crate::identity::Peer;
use crate::jobs::lookup;
use crate::links::logs::LogReader;
use crate::rbac::Rpc;

/// Events buffered towards a slow client before persistd is made to wait.
const BUFFER: usize = 16;
/// How often a following read checks whether the job has ended.
const STATE_POLL: Duration = Duration::from_secs(2);
/// How long after the job ended persistd may take to report its output complete.
const TERMINAL_GRACE: Duration = Duration::from_secs(5);
/// Consecutive failed attempts to reach persistd before the stream ends with an error.
const MAX_FAILURES: u32 = 8;
/// A comment is sent after this much silence, so idle connections stay open.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

pub async fn serve(
    app: Arc<App>,
    peer: Option<Peer>,
    job: &str,
    follow: bool,
    after: Option<u64>,
) -> Response<Body> {
    let mut call = match enter(&app, peer, Rpc::GetJobLogs) {
        Ok(c) => c,
        Err(s) => return reply::error(&s),
    };
    let record = match lookup::find(&app, job).await {
        Ok(r) => r,
        Err(s) => {
            let resp = reply::error(&s);
            let _ = call.finish::<()>(Err(s));
            return resp;
        }
    };
    call.set_job(record.id.as_str());
    let (tx, rx) = mpsc::channel(BUFFER);
    let mut pump = Pump {
        app,
        job: record.id,
        tx,
        next_seq: after.map_or(0, |s| s.saturating_add(1)),
        failures: 0,
    };
    let follow = follow && !record.state.is_terminal();
    tokio::spawn(async move {
        let code = match pump.run(follow).await {
            Ok(()) => {
                let end = end_event(&pump.app, &pump.job, follow).await;
                let _ = pump.tx.send(end).await;
                Code::Ok
            }
            Err(status) => {
                let _ = pump.tx.send(error_event(&status)).await;
                status.code()
            }
        };
        call.finish_with(code);
    });
    reply::event_stream(rx)
}

/// The event for one stored chunk.
pub fn chunk_event(c: &LogChunk) -> Bytes {
    let name = match c.stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    let data = base64::engine::general_purpose::STANDARD.encode(&c.data);
    sse::event(name, Some(&c.seq.to_string()), &data)
}

#[derive(Debug)]
enum Step {
    Done,
    Reconnect,
    StopFollowing,
    NotStored,
}

struct Pump {
    app: Arc<App>,
    job: JobId,
    tx: mpsc::Sender<Bytes>,
    /// The first sequence number not yet sent.
    next_seq: u64,
    failures: u32,
}

impl Pump {
    async fn run(&mut self, mut follow: bool) -> Result<(), Status> {
        let mut opened = false;
        loop {
            let step = match self.app.logs.read(&self.job, self.next_seq, follow).await {
                Ok(mut reader) => {
                    opened = true;
                    self.forward(&mut reader, follow).await?
                }
                Err(e) if !opened => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(job = %self.job, error = %e, "cannot open a log read");
                    Step::Reconnect
                }
            };
            match step {
                Step::Done => return Ok(()),
                Step::StopFollowing => follow = false,
                Step::Reconnect => {
                    self.failures += 1;
                    if self.failures > MAX_FAILURES {
                        return Err(LinkError::unavailable(
                            "persistd",
                            format!("the log stream of job {} broke too often", self.job),
                        )
                        .into());
                    }
                    self.pause(Duration::from_millis(100 << self.failures.min(5)))
                        .await?;
                }
                Step::NotStored => {
                    if !follow || self.job_ended().await {
                        return Ok(());
                    }
                    self.pause(Duration::from_secs(1)).await?;
                }
            }
        }
    }

    async fn forward(&mut self, reader: &mut LogReader, follow: bool) -> Result<Step, Status> {
        let mut poll = tokio::time::interval(STATE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ended_at: Option<Instant> = None;
        let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            tokio::select! {
                msg = reader.next() => match msg {
                    Ok(FromPersistLogs::Chunk(c)) => {
                        if c.seq < self.next_seq {
                            continue;
                        }
                        self.next_seq = c.seq + 1;
                        self.failures = 0;
                        self.send(chunk_event(&c)).await?;
                        keepalive.reset();
                    }
                    Ok(FromPersistLogs::End { next_seq, complete }) => {
                        self.next_seq = self.next_seq.max(next_seq);
                        return Ok(if !follow || complete { Step::Done } else { Step::Reconnect });
                    }
                    Ok(FromPersistLogs::Error(e)) if e.kind == RemoteErrorKind::NotFound => {
                        return Ok(Step::NotStored);
                    }
                    Ok(FromPersistLogs::Error(e)) => return Err(LinkError::Remote(e).into()),
                    Ok(other) => {
                        return Err(LinkError::Unexpected {
                            daemon: "persistd",
                            request: "Read",
                            got: other.name(),
                        }
                        .into());
                    }
                    Err(e) => {
                        tracing::warn!(job = %self.job, error = %e, next_seq = self.next_seq,
                            "persistd connection broke mid-stream; resuming");
                        return Ok(Step::Reconnect);
                    }
                },
                _ = poll.tick(), if follow => {
                    if self.job_ended().await {
                        let since = *ended_at.get_or_insert_with(Instant::now);
                        if since.elapsed() >= TERMINAL_GRACE {
                            return Ok(Step::StopFollowing);
                        }
                    }
                }
                _ = keepalive.tick() => self.send(sse::comment("keepalive")).await?,
                _ = self.tx.closed() => return Err(client_gone()),
            }
        }
    }

    async fn send(&self, event: Bytes) -> Result<(), Status> {
        self.tx.send(event).await.map_err(|_| client_gone())
    }

    async fn job_ended(&self) -> bool {
        match self.app.state.get(&self.job).await {
            Ok(r) => r.state.is_terminal(),
            Err(e) => e.remote_kind() == Some(RemoteErrorKind::NotFound),
        }
    }

    async fn pause(&self, d: Duration) -> Result<(), Status> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.tx.closed() => Err(client_gone()),
        }
    }
}

fn client_gone() -> Status {
    Status::cancelled("the client closed the event stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_become_events() {
        let c = LogChunk {
            seq: 41,
            stream: Stream::Stderr,
            at_ns: 0,
            data: b"\x00\xffline\n".to_vec(),
        };
        let e = String::from_utf8(chunk_event(&c).to_vec()).unwrap();
        assert_eq!(e, "event: stderr\nid: 41\ndata: AP9saW5lCg==\n\n");
    }
}
