//! StreamJobMetrics and GetJobMetrics: the job's metric samples as persistd keeps them
//! (sampled from the job's cgroup). Stream = the whole history, then new samples until the
//! job ends; Get = the history between two times, at most `limit` samples.
//!
//! The functions take the caller's [`Call`] and return a stream, so other front doors (the
//! SSE endpoint) serve the same thing. A broken persistd connection is resumed after the
//! last forwarded sample's time: no gap, no duplicate.

use std::sync::Arc;
use std::time::Duration;

use joblet_api_proto::{GetJobMetricsRequest, JobMetricsEvent, StreamJobMetricsRequest};
use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::channel::logs::{FromPersistLogs, MetricSample};
use joblet_ipc_proto::codec::Message;
use joblet_ipc_proto::job::{JobId, JobRecord};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::lookup;
use crate::app::App;
use crate::errors::LinkError;
use crate::gate::Call;
use crate::links::logs::{MetricReader, MetricsQuery};

pub type MetricsStream = ReceiverStream<Result<JobMetricsEvent, Status>>;

const BUFFER: usize = 16;
/// How often a following read checks whether the job has ended.
const STATE_POLL: Duration = Duration::from_secs(2);
/// How long after the job ended persistd may take to close its metrics.
const TERMINAL_GRACE: Duration = Duration::from_secs(5);
/// How often a following read asks again for a job persistd has no samples of yet.
const NOT_STORED_WAIT: Duration = Duration::from_secs(1);
const MAX_FAILURES: u32 = 8;

/// StreamJobMetrics: history, then live samples until the job ends.
pub async fn stream_job_metrics(
    app: &Arc<App>,
    call: Call,
    req: StreamJobMetricsRequest,
) -> Result<MetricsStream, Status> {
    open(app, call, &req.job_uuid, |record| MetricsQuery {
        follow: !record.state.is_terminal(),
        ..MetricsQuery::default()
    })
    .await
}

/// GetJobMetrics: stored samples with `start_time <= t <= end_time` (Unix ns, 0 = open),
/// at most `limit` (0 = all).
pub async fn get_job_metrics(
    app: &Arc<App>,
    call: Call,
    req: GetJobMetricsRequest,
) -> Result<MetricsStream, Status> {
    let query = match history_query(&req) {
        Ok(q) => q,
        Err(s) => return call.finish(Err(s)),
    };
    open(app, call, &req.job_uuid, |_| query).await
}

/// Checks GetJobMetrics' bounds.
#[allow(clippy::result_large_err)]
pub fn history_query(req: &GetJobMetricsRequest) -> Result<MetricsQuery, Status> {
    let non_negative = |field: &str, v: i64| {
        u64::try_from(v).map_err(|_| {
            Status::invalid_argument(format!(
                "invalid {field}: {v} is negative (Unix ns, 0 = open)"
            ))
        })
    };
    let from_ns = non_negative("start_time", req.start_time)?;
    let to_ns = non_negative("end_time", req.end_time)?;
    if to_ns != 0 && from_ns > to_ns {
        return Err(Status::invalid_argument(format!(
            "invalid time range: start_time {from_ns} is after end_time {to_ns}"
        )));
    }
    let limit = u32::try_from(req.limit).map_err(|_| {
        Status::invalid_argument(format!("invalid limit: {} is negative", req.limit))
    })?;
    Ok(MetricsQuery {
        from_ns,
        to_ns,
        limit,
        follow: false,
    })
}

async fn open(
    app: &Arc<App>,
    mut call: Call,
    job: &str,
    query: impl FnOnce(&JobRecord) -> MetricsQuery,
) -> Result<MetricsStream, Status> {
    let record = match lookup::find(app, job).await {
        Ok(r) => r,
        Err(s) => return call.finish(Err(s)),
    };
    call.set_job(record.id.as_str());
    let (tx, rx) = mpsc::channel(BUFFER);
    let mut pump = Pump {
        app: app.clone(),
        query: query(&record),
        job: record.id,
        tx,
        last_at: None,
        sent: 0,
        failures: 0,
    };
    tokio::spawn(async move {
        let code = match pump.run().await {
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

/// The public form of a sample. GPU fields stay 0: this host has no GPU support.
pub fn event(job: &JobId, s: &MetricSample) -> JobMetricsEvent {
    let i64_of = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    JobMetricsEvent {
        timestamp: i64_of(s.at_ns),
        job_uuid: job.to_string(),
        cpu_percent: s.cpu_percent,
        memory_bytes: i64_of(s.memory_bytes),
        memory_limit: i64_of(s.memory_limit),
        disk_read_bytes: i64_of(s.io_read_bytes),
        disk_write_bytes: i64_of(s.io_write_bytes),
        net_recv_bytes: i64_of(s.net_rx_bytes),
        net_sent_bytes: i64_of(s.net_tx_bytes),
        gpu_percent: 0.0,
        gpu_memory_bytes: 0,
    }
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
    query: MetricsQuery,
    tx: mpsc::Sender<Result<JobMetricsEvent, Status>>,
    /// Time of the last forwarded sample: a resumed read starts after it.
    last_at: Option<u64>,
    sent: u32,
    failures: u32,
}

impl Pump {
    async fn run(&mut self) -> Result<(), Status> {
        let mut opened = false;
        loop {
            let step = match self.app.logs.metrics(&self.job, self.resumed()).await {
                Ok(mut reader) => {
                    opened = true;
                    self.forward(&mut reader).await?
                }
                Err(e) if !opened => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(job = %self.job, error = %e, "cannot open a metrics read");
                    Step::Reconnect
                }
            };
            match step {
                Step::Done => return Ok(()),
                Step::StopFollowing => self.query.follow = false,
                Step::Reconnect => {
                    // "The last N" cannot be resumed exactly once some were sent.
                    if self.query.limit > 0 && self.sent > 0 {
                        return Err(LinkError::unavailable(
                            "persistd",
                            format!("the metrics read of job {} broke", self.job),
                        )
                        .into());
                    }
                    self.failures += 1;
                    if self.failures > MAX_FAILURES {
                        return Err(LinkError::unavailable(
                            "persistd",
                            format!("the metrics stream of job {} broke too often", self.job),
                        )
                        .into());
                    }
                    self.pause(Duration::from_millis(100 << self.failures.min(5)))
                        .await?;
                }
                Step::NotStored => {
                    if !self.query.follow || self.job_ended().await {
                        return Ok(());
                    }
                    self.pause(NOT_STORED_WAIT).await?;
                }
            }
        }
    }

    /// The query for the next read: after the last forwarded sample.
    fn resumed(&self) -> MetricsQuery {
        MetricsQuery {
            from_ns: self
                .last_at
                .map_or(self.query.from_ns, |t| t.saturating_add(1)),
            ..self.query
        }
    }

    async fn forward(&mut self, reader: &mut MetricReader) -> Result<Step, Status> {
        let follow = self.query.follow;
        let mut poll = tokio::time::interval(STATE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ended_at: Option<Instant> = None;
        loop {
            tokio::select! {
                msg = reader.next() => match msg {
                    Ok(FromPersistLogs::Metric(s)) => {
                        if self.last_at.is_some_and(|t| s.at_ns <= t) {
                            continue;
                        }
                        self.last_at = Some(s.at_ns);
                        self.sent += 1;
                        self.failures = 0;
                        if self.tx.send(Ok(event(&self.job, &s))).await.is_err() {
                            return Err(client_gone());
                        }
                        if self.query.limit > 0 && self.sent >= self.query.limit {
                            return Ok(Step::Done);
                        }
                    }
                    Ok(FromPersistLogs::End { complete, .. }) => {
                        return Ok(if !follow || complete { Step::Done } else { Step::Reconnect });
                    }
                    Ok(FromPersistLogs::Error(e)) if e.kind == RemoteErrorKind::NotFound => {
                        return Ok(Step::NotStored);
                    }
                    Ok(FromPersistLogs::Error(e)) => return Err(LinkError::Remote(e).into()),
                    Ok(other) => {
                        return Err(LinkError::Unexpected {
                            daemon: "persistd",
                            request: "Metrics",
                            got: other.name(),
                        }
                        .into());
                    }
                    Err(e) => {
                        tracing::warn!(job = %self.job, error = %e, "persistd connection broke during a metrics read; resuming");
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
                _ = self.tx.closed() => return Err(client_gone()),
            }
        }
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
    Status::cancelled("the client closed the metrics stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_map_to_events_with_no_gpu() {
        let job = JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").unwrap();
        let s = MetricSample {
            at_ns: 1_795_450_850_000_000_000,
            cpu_usage_ns: 5_000_000,
            cpu_percent: 87.5,
            memory_bytes: 64 << 20,
            memory_limit: 0,
            io_read_bytes: 4096,
            io_write_bytes: 8192,
            pids: 3,
            net_rx_bytes: 10,
            net_tx_bytes: 20,
        };
        let e = event(&job, &s);
        assert_eq!(e.timestamp, 1_795_450_850_000_000_000);
        assert_eq!(e.job_uuid, job.to_string());
        assert_eq!(e.cpu_percent, 87.5);
        assert_eq!(e.memory_bytes, 64 << 20);
        assert_eq!(e.memory_limit, 0);
        assert_eq!((e.disk_read_bytes, e.disk_write_bytes), (4096, 8192));
        assert_eq!((e.net_recv_bytes, e.net_sent_bytes), (10, 20));
        assert_eq!((e.gpu_percent, e.gpu_memory_bytes), (0.0, 0));
        let huge = MetricSample {
            memory_bytes: u64::MAX,
            ..s
        };
        assert_eq!(event(&job, &huge).memory_bytes, i64::MAX);
    }

    #[test]
    fn history_bounds_are_checked() {
        let req = |start_time, end_time, limit| GetJobMetricsRequest {
            job_uuid: "x".into(),
            start_time,
            end_time,
            limit,
        };
        assert_eq!(
            history_query(&req(10, 20, 5)).unwrap(),
            MetricsQuery {
                from_ns: 10,
                to_ns: 20,
                limit: 5,
                follow: false
            }
        );
        assert!(history_query(&req(10, 0, 0)).is_ok(), "open end");
        for (bad, needle) in [
            (req(-1, 0, 0), "start_time"),
            (req(0, -5, 0), "end_time"),
            (req(30, 20, 0), "after end_time"),
            (req(0, 0, -1), "limit"),
        ] {
            let e = history_query(&bad).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.message().contains(needle), "{}", e.message());
        }
    }
}
