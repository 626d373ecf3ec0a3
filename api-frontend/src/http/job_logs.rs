//! `GET /v1/jobs/{id}/logs[?follow=true]`: a job's output as Server-Sent Events.
//!
//! Each run of chunks persistd stored (consecutive chunks of one stream, up to 1 MiB: one range
//! of its file) is one event: its stream (`stdout`/`stderr`) as the event name, its last
//! chunk's sequence number as the id, its bytes base64-encoded as the data. With `follow`
//! the stream goes on with live output until the job ends; it always finishes with an `end`
//! event holding the job's status. A client that reconnects with `Last-Event-ID` resumes
//! after that chunk, and a persistd connection that breaks mid-stream is resumed from the
//! next sequence number: no gap, no duplicate.
//!
//! This forwards the same resumable read as GetJobLogs ([`LogRead`]) rather than GetJobLogs'
//! stream, whose public `DataChunk` carries neither the stream name nor the sequence number.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use joblet_ipc_proto::job::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::http::Response;
use tonic::{Code, Status};

use super::{end_event, enter, error_event, reply, sse};
use crate::app::App;
use crate::identity::Peer;
use crate::jobs::log_read::{Forward, LogRead, Step};
use crate::jobs::lookup;
use crate::links::logs::{LogChunk, LogReader};
use crate::rbac::Rpc;

/// Events buffered towards a slow client before persistd is made to wait.
const BUFFER: usize = 16;
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
    let record = match lookup::find_for_output(&app, job).await {
        Ok(r) => r,
        Err(s) => {
            let resp = reply::error(&s);
            let _ = call.finish::<()>(Err(s));
            return resp;
        }
    };
    call.set_job(record.id.as_str());
    let (tx, rx) = mpsc::channel(BUFFER);
    let next_seq = after.map_or(0, |s| s.saturating_add(1));
    let mut read = LogRead::new(app.clone(), record.id, next_seq);
    let mut door = Door { tx };
    let follow = follow && !record.state.is_terminal();
    tokio::spawn(async move {
        let code = match read.run(&mut door, follow).await {
            Ok(()) => {
                let end = end_event(&app, &read.job, follow).await;
                let _ = door.tx.send(end).await;
                Code::Ok
            }
            Err(status) => {
                let _ = door.tx.send(error_event(&status)).await;
                status.code()
            }
        };
        call.finish_with(code);
    });
    reply::event_stream(rx)
}

/// The event for stored chunks `..=c.seq` (one range of them: its last chunk is the id).
pub fn chunk_event(c: &LogChunk) -> Bytes {
    let name = match c.stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    let data = base64::engine::general_purpose::STANDARD.encode(&c.data);
    sse::event(name, Some(&c.seq.to_string()), &data)
}

/// The SSE side of the read: one event per chunk, and a keepalive comment after silence.
struct Door {
    tx: mpsc::Sender<Bytes>,
}

impl Forward for Door {
    async fn forward(
        &mut self,
        read: &mut LogRead,
        reader: &mut LogReader,
        follow: bool,
    ) -> Result<Step, Status> {
        let mut poll = LogRead::end_poll();
        let mut ended_at = None;
        let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            tokio::select! {
                msg = reader.next() => match read.on_message(msg, follow) {
                    Ok(c) => {
                        self.send(chunk_event(&c)).await?;
                        keepalive.reset();
                    }
                    Err(end) => return end,
                },
                _ = poll.tick(), if follow => {
                    if let Some(step) = read.check_end(&mut ended_at).await {
                        return Ok(step);
                    }
                }
                _ = keepalive.tick() => self.send(sse::comment("keepalive")).await?,
                _ = self.tx.closed() => return Err(self.client_gone()),
            }
        }
    }

    async fn client_closed(&self) {
        self.tx.closed().await
    }

    fn client_gone(&self) -> Status {
        Status::cancelled("the client closed the event stream")
    }
}

impl Door {
    async fn send(&self, event: Bytes) -> Result<(), Status> {
        self.tx.send(event).await.map_err(|_| self.client_gone())
    }
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
