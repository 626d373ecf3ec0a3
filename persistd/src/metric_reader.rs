//! Serving one `Metrics` request: stored samples in a time window, then (with `follow`) new
//! samples as the sampler stores them, until the job's output is complete.
//!
//! Like a log `Read`, history and live come from one ordered source (the sample file,
//! bounded by its published count), so no sample is skipped or sent twice at the hand-over.
//!
//! `limit` keeps the **last** `limit` samples of the window: a caller asking for a few
//! samples wants the current state of the job (like `tail`), not how it started; with
//! `follow` that is "the last `limit`, then live", and live samples are not limited.
//! `End.next_seq` is the number of samples this request sent (samples have no sequence
//! number on the wire; a client resumes by time, from the last `at_ns` it saw).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use joblet_ipc_proto::RemoteError;
use joblet_ipc_proto::channel::logs::{FromPersistLogs, MetricSample, ToPersistLogs};
use joblet_ipc_proto::job::JobId;
use joblet_ipc_proto::tokio::{Receiver, Sender};
use tracing::error;

use crate::reader::{Incoming, ReadEnd, interrupted, send, unreadable};
use crate::registry::Registry;
use crate::store::{MetricLog, StoreError};

/// Samples read from the file per blocking task, while following.
const LIVE_BATCH: usize = 256;

pub struct MetricsQuery {
    pub job: JobId,
    pub window: Window,
    /// 0 = every sample in the window.
    pub limit: u32,
    pub follow: bool,
}

/// `from_ns <= at_ns <= to_ns`; 0 leaves a side open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ns: u64,
    pub to_ns: u64,
}

impl Window {
    pub fn contains(&self, at_ns: u64) -> bool {
        at_ns >= self.from_ns && (self.to_ns == 0 || at_ns <= self.to_ns)
    }

    /// True once `at_ns` is past the window's end: later samples cannot match either.
    pub fn is_past(&self, at_ns: u64) -> bool {
        self.to_ns != 0 && at_ns > self.to_ns
    }
}

/// The samples of `samples` in `window`, only the last `limit` of them when `limit > 0`.
pub fn select(
    samples: impl IntoIterator<Item = MetricSample>,
    window: Window,
    limit: u32,
    into: &mut VecDeque<MetricSample>,
) {
    for s in samples {
        if !window.contains(s.at_ns) {
            continue;
        }
        into.push_back(s);
        if limit > 0 && into.len() > limit as usize {
            into.pop_front();
        }
    }
}

pub async fn serve(
    registry: &Registry,
    sender: &Sender,
    receiver: &mut Receiver,
    query: MetricsQuery,
) -> ReadEnd {
    let mut incoming: Incoming<'_> = Box::pin(receiver.recv::<ToPersistLogs>());
    match stream(registry, sender, &mut incoming, query).await {
        Ok(()) => ReadEnd::Done,
        Err(end) => end,
    }
}

async fn stream(
    registry: &Registry,
    sender: &Sender,
    incoming: &mut Incoming<'_>,
    q: MetricsQuery,
) -> Result<(), ReadEnd> {
    let job = q.job;
    // As for a log Read: following a job not attached yet waits for it to appear.
    let log = match registry.get(&job) {
        Ok(Some(log)) => log,
        Err(e) => return send(sender, incoming, unreadable(&job, "metrics", &e)).await,
        Ok(None) if q.follow => tokio::select! {
            log = registry.wait_for(&job) => match log {
                Ok(log) => log,
                Err(e) => return send(sender, incoming, unreadable(&job, "metrics", &e)).await,
            },
            r = incoming.as_mut() => return Err(interrupted(r)),
        },
        Ok(None) => {
            let err = RemoteError::not_found(format!("no metrics are stored for job {job}"));
            return send(sender, incoming, FromPersistLogs::Error(err)).await;
        }
    };
    let metrics = log.metrics().clone();
    let mut progress = metrics.subscribe();
    let upto = progress.borrow_and_update().next_seq;
    let history = match read_history(&metrics, q.window, q.limit, upto).await {
        Ok(h) => h,
        Err(e) => return send_read_error(sender, incoming, &job, e).await,
    };
    let mut sent = 0u64;
    for sample in history {
        send(sender, incoming, FromPersistLogs::Metric(sample)).await?;
        sent += 1;
    }
    if !q.follow {
        let p = *progress.borrow();
        let complete = p.closed && upto >= p.next_seq;
        return send(sender, incoming, end(sent, complete)).await;
    }
    let deadline = window_end(q.window);
    tokio::pin!(deadline);
    let mut seq = upto;
    loop {
        let p = *progress.borrow_and_update();
        if p.deleted {
            let err = RemoteError::not_found(format!("the metrics of job {job} were deleted"));
            return send(sender, incoming, FromPersistLogs::Error(err)).await;
        }
        if seq < p.next_seq {
            let (from, batch) = match read_live(&metrics, seq).await {
                Ok(b) => b,
                Err(e) => return send_read_error(sender, incoming, &job, e).await,
            };
            seq = from + batch.len() as u64;
            for sample in batch {
                if q.window.is_past(sample.at_ns) {
                    return send(sender, incoming, end(sent, false)).await;
                }
                if q.window.contains(sample.at_ns) {
                    send(sender, incoming, FromPersistLogs::Metric(sample)).await?;
                    sent += 1;
                }
            }
            continue;
        }
        if p.closed {
            return send(sender, incoming, end(sent, true)).await;
        }
        tokio::select! {
            // The log holds the sender, and we hold the log: this cannot fail.
            _ = progress.changed() => {}
            () = &mut deadline => return send(sender, incoming, end(sent, false)).await,
            r = incoming.as_mut() => return Err(interrupted(r)),
        }
    }
}

fn end(sent: u64, complete: bool) -> FromPersistLogs {
    FromPersistLogs::End {
        next_seq: sent,
        complete,
    }
}

/// Completes when the window's end has passed on the wall clock; never for an open window.
async fn window_end(window: Window) {
    if window.to_ns == 0 {
        return std::future::pending().await;
    }
    let left = window.to_ns.saturating_sub(crate::clock::now_ns());
    // One interval's slack is not needed: a sample taken later cannot be inside the window.
    tokio::time::sleep(Duration::from_nanos(left)).await;
}

/// The stored samples before `upto` that the query selects. Blocking reads of at most the
/// kept samples (about 2 MiB), run off the runtime threads.
async fn read_history(
    metrics: &Arc<MetricLog>,
    window: Window,
    limit: u32,
    upto: u64,
) -> Result<VecDeque<MetricSample>, StoreError> {
    let metrics = metrics.clone();
    let job = metrics.job().clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut out = VecDeque::new();
        let mut seq = 0;
        while seq < upto {
            let (from, batch) = metrics.read_batch(seq, (upto - seq) as usize)?;
            if batch.is_empty() {
                break;
            }
            let wanted = upto.saturating_sub(from) as usize;
            seq = from + batch.len() as u64;
            select(batch.into_iter().take(wanted), window, limit, &mut out);
        }
        Ok(out)
    });
    task.await.unwrap_or_else(|e| Err(join_error(job, e)))
}

async fn read_live(
    metrics: &Arc<MetricLog>,
    from: u64,
) -> Result<(u64, Vec<MetricSample>), StoreError> {
    let metrics = metrics.clone();
    let job = metrics.job().clone();
    tokio::task::spawn_blocking(move || metrics.read_batch(from, LIVE_BATCH))
        .await
        .unwrap_or_else(|e| Err(join_error(job, e)))
}

fn join_error(job: JobId, e: tokio::task::JoinError) -> StoreError {
    StoreError::MetricRead {
        job,
        seq: 0,
        source: std::io::Error::other(e),
    }
}

async fn send_read_error(
    sender: &Sender,
    incoming: &mut Incoming<'_>,
    job: &JobId,
    e: StoreError,
) -> Result<(), ReadEnd> {
    error!(%job, error = %e, "cannot read stored metric samples");
    let err = RemoteError::internal(e.to_string());
    send(sender, incoming, FromPersistLogs::Error(err)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ns: u64) -> MetricSample {
        MetricSample {
            at_ns: ns,
            cpu_usage_ns: 0,
            cpu_percent: 0.0,
            memory_bytes: 0,
            memory_limit: 0,
            io_read_bytes: 0,
            io_write_bytes: 0,
            pids: 0,
            net_rx_bytes: 0,
            net_tx_bytes: 0,
        }
    }

    fn times(window: Window, limit: u32) -> Vec<u64> {
        let mut out = VecDeque::new();
        select((1..=10).map(|i| at(i * 100)), window, limit, &mut out);
        out.into_iter().map(|s| s.at_ns).collect()
    }

    #[test]
    fn the_window_is_inclusive_and_zero_leaves_it_open() {
        let open = Window {
            from_ns: 0,
            to_ns: 0,
        };
        assert_eq!(times(open, 0).len(), 10);
        let mid = Window {
            from_ns: 300,
            to_ns: 500,
        };
        assert_eq!(times(mid, 0), [300, 400, 500]);
        let from = Window {
            from_ns: 950,
            to_ns: 0,
        };
        assert_eq!(times(from, 0), [1000]);
        assert!(mid.is_past(501) && !mid.is_past(500) && !open.is_past(u64::MAX));
    }

    #[test]
    fn limit_keeps_the_last_samples_of_the_window() {
        let open = Window {
            from_ns: 0,
            to_ns: 0,
        };
        assert_eq!(times(open, 3), [800, 900, 1000]);
        let until = Window {
            from_ns: 0,
            to_ns: 450,
        };
        assert_eq!(times(until, 2), [300, 400]);
        assert_eq!(times(open, 50).len(), 10);
    }
}
