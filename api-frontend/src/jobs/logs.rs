//! GetJobLogs: the job's stored output, then live output until the job ends, from one
//! ordered source (persistd), read by [`LogRead`] (resumed after breaks: no gap, no
//! duplicate); this module joins the chunks into the public `DataChunk`s.

use std::sync::Arc;

use joblet_api_proto::{DataChunk, GetJobLogsRequest};
use joblet_ipc_proto::job::JobRecord;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::end_metadata;
use super::log_read::{Forward, LogRead, Step};
use super::lookup;
use crate::app::App;
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
pub async fn get_job_logs(
    app: &Arc<App>,
    mut call: Call,
    req: GetJobLogsRequest,
) -> Result<LogStream, Status> {
    let record = match lookup::find_for_output(app, &req.uuid).await {
        Ok(r) => r,
        Err(s) => return call.finish(Err(s)),
    };
    call.set_job(record.id.as_str());
    let (tx, rx) = mpsc::channel(BUFFER);
    let mut read = LogRead::new(app.clone(), record.id.clone(), 0);
    let mut door = Door { tx };
    let follow = !record.state.is_terminal();
    let ended = (!follow).then_some(record);
    tokio::spawn(async move {
        let code = match read.run(&mut door, follow).await {
            Ok(()) => {
                door.end(&read, ended).await;
                Code::Ok
            }
            Err(status) => {
                let code = status.code();
                let _ = door.tx.send(Err(status)).await;
                code
            }
        };
        call.finish_with(code);
    });
    Ok(ReceiverStream::new(rx))
}

/// GetJobLogs' side of the read: chunks joined into `DataChunk`s for the gRPC stream.
struct Door {
    tx: mpsc::Sender<Result<DataChunk, Status>>,
}

impl Forward for Door {
    /// Whatever was received is delivered before it returns.
    async fn forward(
        &mut self,
        read: &mut LogRead,
        reader: &mut LogReader,
        follow: bool,
    ) -> Result<Step, Status> {
        let mut pending = Vec::new();
        let step = self.forward_into(read, reader, follow, &mut pending).await;
        if !pending.is_empty()
            && self
                .tx
                .send(Ok(DataChunk { payload: pending }))
                .await
                .is_err()
        {
            return Err(self.client_gone());
        }
        step
    }

    async fn client_closed(&self) {
        self.tx.closed().await
    }

    fn client_gone(&self) -> Status {
        Status::cancelled("the client closed the log stream")
    }
}

impl Door {
    /// Ends the stream with the job's final state in its trailers (see `end_metadata`), or
    /// with plain trailers while it is not recorded. `ended` is the record already read, for
    /// a read of a job that had ended before it began. A followed job's exit was recorded
    /// while the read settled, by this frontend (which remembers it) or, after a restart,
    /// before it (stated is asked).
    async fn end(&self, read: &LogRead, ended: Option<JobRecord>) {
        let app = &read.app;
        let end = match ended {
            Some(r) => Some((r.state, r.outcome)),
            None => match app.tracker.recorded_end(&read.job) {
                Some((state, outcome)) => Some((state, Some(outcome))),
                None => app
                    .state
                    .get(&read.job)
                    .await
                    .ok()
                    .map(|r| (r.state, r.outcome)),
            },
        };
        let trailers =
            end.and_then(|(state, outcome)| end_metadata::final_trailers(state, outcome.as_ref()));
        if let Some(md) = trailers {
            let _ = self
                .tx
                .send(Err(Status::with_metadata(Code::Ok, "", md)))
                .await;
        }
    }

    /// The loop of [`Door::forward`]: chunks are appended to `pending`, which is sent as one
    /// message once persistd has nothing more ready (or it is full).
    async fn forward_into(
        &mut self,
        read: &mut LogRead,
        reader: &mut LogReader,
        follow: bool,
        pending: &mut Vec<u8>,
    ) -> Result<Step, Status> {
        let mut poll = LogRead::end_poll();
        let mut ended_at = None;
        loop {
            tokio::select! {
                // Take what persistd already sent before sending: that is the coalescing.
                biased;
                msg = reader.next(), if pending.len() < COALESCE_BYTES => {
                    match read.on_message(msg, follow) {
                        Ok(c) if pending.is_empty() => *pending = c.data,
                        Ok(c) => {
                            // One allocation for the whole message, not one per doubling.
                            pending.reserve(COALESCE_BYTES.saturating_sub(pending.len()));
                            pending.extend_from_slice(&c.data);
                        }
                        Err(end) => return end,
                    }
                }
                permit = self.tx.reserve(), if !pending.is_empty() => match permit {
                    Ok(permit) => permit.send(Ok(DataChunk { payload: std::mem::take(pending) })),
                    Err(_) => return Err(self.client_gone()),
                },
                _ = poll.tick(), if follow => {
                    if let Some(step) = read.check_end(&mut ended_at).await {
                        return Ok(step);
                    }
                }
                _ = self.tx.closed() => return Err(self.client_gone()),
            }
        }
    }
}
