//! GetJobLogs: the job's stored output, then live output until the job ends, from one
//! ordered source (persistd). Every chunk has a sequence number, so after a broken
//! connection the read resumes from the next number: no gap, no duplicate.

use std::sync::Arc;
use std::time::Duration;

use joblet_api_proto::{DataChunk, GetJobLogsRequest};
use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::channel::logs::FromPersistLogs;
use joblet_ipc_proto::codec::Message;
use joblet_ipc_proto::job::JobId;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::lookup;
use crate::app::App;
use crate::errors::LinkError;
use crate::gate::Call;
use crate::links::logs::LogReader;

pub type LogStream = ReceiverStream<Result<DataChunk, Status>>;

/// Messages buffered towards a slow client before persistd is made to wait.
const BUFFER: usize = 16;
/// Chunks already received from persistd are joined into one message of up to this many
/// bytes: each gRPC message costs a task wake-up, protobuf framing and HTTP/2 and TLS
/// records, so 16 messages of 64 KiB cost far more than one of 1 MiB. The client receives
/// the same bytes in the same order (a `DataChunk` carries no stream or sequence number).
/// Below gRPC's default 4 MiB receive limit.
const COALESCE_BYTES: usize = 1 << 20;
/// How often a following read checks whether the job has ended.
const STATE_POLL: Duration = Duration::from_secs(2);
/// How long after the job ended persistd may take to report its output complete before
/// the read switches to reading what is stored and ending.
const TERMINAL_GRACE: Duration = Duration::from_secs(5);
/// Consecutive failed attempts to reach persistd before the stream ends UNAVAILABLE.
const MAX_FAILURES: u32 = 8;

pub async fn get_job_logs(
    app: &Arc<App>,
    mut call: Call,
    req: GetJobLogsRequest,
) -> Result<LogStream, Status> {
    let record = match lookup::find(app, &req.uuid).await {
        Ok(r) => r,
        Err(s) => return call.finish(Err(s)),
    };
    call.set_job(record.id.as_str());
    let (tx, rx) = mpsc::channel(BUFFER);
    let mut pump = Pump {
        app: app.clone(),
        job: record.id,
        tx,
        next_seq: 0,
        failures: 0,
    };
    let follow = !record.state.is_terminal();
    tokio::spawn(async move {
        let code = match pump.run(follow).await {
            Ok(()) => Code::Ok,
            Err(status) => {
                let code = status.code();
                let _ = pump.tx.send(Err(status)).await;
                code
            }
        };
        call.finish_with(code);
    });
    Ok(ReceiverStream::new(rx))
}

/// What to do after one read ended.
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
    tx: mpsc::Sender<Result<DataChunk, Status>>,
    /// The first sequence number not yet forwarded.
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
                // persistd is down from the start: say so now rather than after retries.
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
                    let delay = Duration::from_millis(100 << self.failures.min(5));
                    self.pause(delay).await?;
                }
                Step::NotStored => {
                    // A job that ended with nothing stored has an empty log; a live one may
                    // not have handed its output over yet.
                    if !follow || self.job_ended().await {
                        return Ok(());
                    }
                    self.pause(Duration::from_secs(1)).await?;
                }
            }
        }
    }

    /// Forwards one read's chunks until it ends or breaks; whatever was received is
    /// delivered before it returns.
    async fn forward(&mut self, reader: &mut LogReader, follow: bool) -> Result<Step, Status> {
        let mut pending = Vec::new();
        let step = self.forward_into(reader, follow, &mut pending).await;
        if !pending.is_empty()
            && self
                .tx
                .send(Ok(DataChunk { payload: pending }))
                .await
                .is_err()
        {
            return Err(client_gone());
        }
        step
    }

    /// The loop of [`Pump::forward`]: chunks are appended to `pending`, which is sent as one
    /// message once persistd has nothing more ready (or it is full).
    async fn forward_into(
        &mut self,
        reader: &mut LogReader,
        follow: bool,
        pending: &mut Vec<u8>,
    ) -> Result<Step, Status> {
        let mut poll = tokio::time::interval(STATE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ended_at: Option<Instant> = None;
        loop {
            tokio::select! {
                // Take what persistd already sent before sending: that is the coalescing.
                biased;
                msg = reader.next(), if pending.len() < COALESCE_BYTES => match msg {
                    Ok(FromPersistLogs::Chunk(c)) => {
                        if c.seq < self.next_seq {
                            continue;
                        }
                        self.next_seq = c.seq + 1;
                        self.failures = 0;
                        if pending.is_empty() {
                            *pending = c.data;
                        } else {
                            // One allocation for the whole message, not one per doubling.
                            pending.reserve(COALESCE_BYTES.saturating_sub(pending.len()));
                            pending.extend_from_slice(&c.data);
                        }
                    }
                    Ok(FromPersistLogs::End { next_seq, complete }) => {
                        self.next_seq = self.next_seq.max(next_seq);
                        // A following read ends only when the output is complete; an
                        // early end (persistd restarting) is resumed.
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
                permit = self.tx.reserve(), if !pending.is_empty() => match permit {
                    Ok(permit) => permit.send(Ok(DataChunk { payload: std::mem::take(pending) })),
                    Err(_) => return Err(client_gone()),
                },
                _ = poll.tick(), if follow => {
                    if self.job_ended().await {
                        let since = *ended_at.get_or_insert_with(Instant::now);
                        if since.elapsed() >= TERMINAL_GRACE {
                            tracing::debug!(job = %self.job, "job ended but its output is not complete; reading what is stored");
                            return Ok(Step::StopFollowing);
                        }
                    }
                }
                _ = self.tx.closed() => return Err(client_gone()),
            }
        }
    }

    /// Whether the job is terminal (or gone); an unreachable stated counts as "not yet".
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
    Status::cancelled("the client closed the log stream")
}
