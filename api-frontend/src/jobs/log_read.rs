//! A resumable read of one job's stored output from persistd, shared by the two front doors
//! that serve it (GetJobLogs, and the SSE endpoint). Every chunk has a sequence number, so
//! after a broken connection the read resumes from the next number: no gap, no duplicate.
//! Each front door only forwards one read's chunks in its own form ([`Forward`]).

use std::sync::Arc;
use std::time::Duration;

use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::job::JobId;
use tokio::time::{Instant, Interval};
use tonic::Status;

use crate::app::App;
use crate::errors::LinkError;
use crate::links::logs::{LogChunk, LogReadError, LogReader, ReadEvent};

/// How often a following read checks whether the job has ended.
const STATE_POLL: Duration = Duration::from_secs(2);
/// How long after the job ended persistd may take to report its output complete before
/// the read switches to reading what is stored and ending.
const TERMINAL_GRACE: Duration = Duration::from_secs(5);
/// How long a following read that reached the end of the output waits for the job's exit to
/// be recorded before it ends.
const EXIT_SETTLE: Duration = Duration::from_secs(1);
/// Consecutive failed attempts to reach persistd before the read ends UNAVAILABLE.
const MAX_FAILURES: u32 = 8;

/// What to do after one read ended.
#[derive(Debug)]
pub enum Step {
    Done,
    Reconnect,
    StopFollowing,
    NotStored,
}

/// One front door's side of the read: forwarding one persistd read, and its client.
pub trait Forward {
    /// Forwards `reader`'s chunks (through [`LogRead::on_message`]) until the read ends or
    /// breaks.
    fn forward(
        &mut self,
        read: &mut LogRead,
        reader: &mut LogReader,
        follow: bool,
    ) -> impl Future<Output = Result<Step, Status>> + Send;

    /// Resolves when the client went away.
    fn client_closed(&self) -> impl Future<Output = ()> + Send;

    /// The status ending the read when the client went away.
    fn client_gone(&self) -> Status;
}

/// Where a read of one job's output is, and how often persistd failed it in a row.
pub struct LogRead {
    pub app: Arc<App>,
    pub job: JobId,
    /// The first sequence number not yet forwarded.
    pub next_seq: u64,
    failures: u32,
    /// Why the last break happened, for the status if there are too many.
    last_break: Option<String>,
}

impl LogRead {
    pub fn new(app: Arc<App>, job: JobId, next_seq: u64) -> LogRead {
        LogRead {
            app,
            job,
            next_seq,
            failures: 0,
            last_break: None,
        }
    }

    /// Reads, resuming after every break, until the output ended (or, with `follow`, until
    /// the job ended and its output is complete).
    pub async fn run(&mut self, door: &mut impl Forward, mut follow: bool) -> Result<(), Status> {
        let mut opened = false;
        loop {
            let step = match self.app.logs.read(&self.job, self.next_seq, follow).await {
                Ok(mut reader) => {
                    opened = true;
                    let step = door.forward(self, &mut reader, follow).await?;
                    reader.release();
                    step
                }
                // persistd is down from the start: say so now rather than after retries.
                Err(e) if !opened => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(job = %self.job, error = %e, "cannot open a log read");
                    self.last_break = Some(e.to_string());
                    Step::Reconnect
                }
            };
            match step {
                Step::Done => {
                    if follow {
                        self.settle(door).await;
                    }
                    return Ok(());
                }
                Step::StopFollowing => follow = false,
                Step::Reconnect => {
                    self.failures += 1;
                    if self.failures > MAX_FAILURES {
                        return Err(LinkError::unavailable(
                            "persistd",
                            format!(
                                "the log stream of job {} broke too often (last: {})",
                                self.job,
                                self.last_break.as_deref().unwrap_or("cannot connect")
                            ),
                        )
                        .into());
                    }
                    let delay = Duration::from_millis(100 << self.failures.min(5));
                    pause(door, delay).await?;
                }
                Step::NotStored => {
                    // A job that ended with nothing stored has an empty log; a live one may
                    // not have handed its output over yet.
                    if !follow || self.job_ended().await {
                        return Ok(());
                    }
                    pause(door, Duration::from_secs(1)).await?;
                }
            }
        }
    }

    /// One event of persistd's read: `Ok(chunk)` to forward, `Err(Ok(step))` when this read
    /// ends, `Err(Err(status))` when the whole read fails.
    pub fn on_message(
        &mut self,
        msg: Result<ReadEvent, LogReadError>,
        follow: bool,
    ) -> Result<LogChunk, Result<Step, Status>> {
        match msg {
            // The reader checked that it starts at `next_seq`.
            Ok(ReadEvent::Chunk(c)) => {
                self.next_seq = c.seq.saturating_add(1);
                self.failures = 0;
                Ok(c)
            }
            Ok(ReadEvent::End { next_seq, complete }) => {
                self.next_seq = self.next_seq.max(next_seq);
                // A following read ends only when the output is complete; an early end
                // (persistd restarting) is resumed.
                Err(Ok(if !follow || complete {
                    Step::Done
                } else {
                    Step::Reconnect
                }))
            }
            Ok(ReadEvent::Error(e)) if e.kind == RemoteErrorKind::NotFound => {
                Err(Ok(Step::NotStored))
            }
            Ok(ReadEvent::Error(e)) => Err(Err(LinkError::Remote(e).into())),
            Err(e) if e.is_link() => {
                tracing::warn!(job = %self.job, error = %e, next_seq = self.next_seq,
                    "persistd connection broke mid-stream; resuming");
                self.last_break = Some(e.to_string());
                Err(Ok(Step::Reconnect))
            }
            // Not a broken connection: the same read would fail the same way again.
            Err(e) => {
                tracing::error!(job = %self.job, error = %e, next_seq = self.next_seq,
                    "cannot read the job's stored output");
                Err(Err(Status::internal(format!(
                    "cannot read the stored output of job {}: {e}",
                    self.job
                ))))
            }
        }
    }

    /// A following read ends with the job. Its output closes a moment before its exit is
    /// recorded, and a client that asks for the status as the stream ends should find it
    /// final rather than poll for it. Bounded: a job may close its output and run on.
    ///
    /// Ending on the spawner's report instead (a lookup waits for a reported exit's record
    /// anyway) measured slower on a 2-core host, most likely because the client's next call
    /// then meets the job's clean-up (its cgroups' removal, its mounts' teardown).
    async fn settle(&self, door: &impl Forward) {
        let recorded = self.app.tracker.until_ended(&self.job);
        tokio::select! {
            _ = tokio::time::timeout(EXIT_SETTLE, recorded) => {}
            _ = door.client_closed() => {}
        }
    }

    /// The timer of a following read's checks for the job's end.
    pub fn end_poll() -> Interval {
        let mut poll = tokio::time::interval(STATE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll
    }

    /// At a tick of [`LogRead::end_poll`]: `Some(StopFollowing)` once the job has been
    /// over for longer than persistd may take to complete its output.
    pub async fn check_end(&self, ended_at: &mut Option<Instant>) -> Option<Step> {
        if !self.job_ended().await {
            return None;
        }
        let since = *ended_at.get_or_insert_with(Instant::now);
        (since.elapsed() >= TERMINAL_GRACE).then(|| {
            tracing::debug!(job = %self.job, "job ended but its output is not complete; reading what is stored");
            Step::StopFollowing
        })
    }

    /// Whether the job is terminal (or gone); an unreachable stated counts as "not yet".
    pub async fn job_ended(&self) -> bool {
        match self.app.state.get(&self.job).await {
            Ok(r) => r.state.is_terminal(),
            Err(e) => e.remote_kind() == Some(RemoteErrorKind::NotFound),
        }
    }
}

/// Waits `d`, unless the client goes away first.
async fn pause(door: &impl Forward, d: Duration) -> Result<(), Status> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = door.client_closed() => Err(door.client_gone()),
    }
}
