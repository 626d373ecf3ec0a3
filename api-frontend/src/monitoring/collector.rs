//! Takes readings off the async runtime (reading `/proc` blocks) and keeps the latest one,
//! so a status request can measure against it instead of waiting for a second reading.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use joblet_api_proto::{SystemMetricsResponse, SystemStatusResponse};
use tokio::sync::mpsc;
use tonic::Status;

use super::filter::MetricSet;
use super::report::{self, Report, Snapshot};
use super::source::Source;

/// A reading younger than this is too close to measure rates against.
const MIN_GAP: Duration = Duration::from_millis(250);
/// A reading older than this would average over too long a time.
const MAX_AGE: Duration = Duration::from_secs(30);
/// The gap between two readings taken for one status request.
const STATUS_GAP: Duration = Duration::from_millis(500);
/// The first message of a stream comes this soon (or after the interval, if shorter).
const FIRST_GAP: Duration = Duration::from_secs(1);

pub struct Collector {
    source: Source,
    node_id: String,
    /// The last status's reading and the baseline it was measured against, newest first: a
    /// request that comes too soon after the last one measures against the older one.
    latest: Mutex<[Option<Arc<Snapshot>>; 2]>,
}

impl Collector {
    pub fn new(source: Source, node_id: String) -> Collector {
        Collector {
            source,
            node_id,
            latest: Mutex::new([None, None]),
        }
    }

    async fn snapshot(&self, wanted: MetricSet) -> Arc<Snapshot> {
        let source = self.source.clone();
        let taken = tokio::task::spawn_blocking(move || Snapshot::take(&source, &wanted)).await;
        // A panic in a parser must not take the service down; an empty reading says less.
        Arc::new(taken.unwrap_or_else(|e| {
            tracing::error!(error = %e, "taking a host reading failed");
            Snapshot {
                at: std::time::Instant::now(),
                cpu: None,
                net: None,
                diskstats: None,
                procs: None,
            }
        }))
    }

    async fn report(
        &self,
        prev: Arc<Snapshot>,
        cur: Arc<Snapshot>,
        wanted: MetricSet,
    ) -> Option<Report> {
        let source = self.source.clone();
        let node_id = self.node_id.clone();
        let built = tokio::task::spawn_blocking(move || {
            report::build(&source, &node_id, &prev, &cur, &wanted)
        })
        .await;
        match built {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "building a host report failed");
                None
            }
        }
    }

    /// The newest kept reading that is a usable baseline now.
    fn baseline(&self) -> Option<Arc<Snapshot>> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest
            .iter()
            .flatten()
            .find(|s| (MIN_GAP..=MAX_AGE).contains(&s.at.elapsed()))
            .cloned()
    }

    /// The host's status now: measured against the last reading when a recent one exists,
    /// else over a fresh half second.
    pub async fn status(&self) -> Result<SystemStatusResponse, Status> {
        let (prev, cur) = match self.baseline() {
            Some(prev) => (prev, self.snapshot(MetricSet::ALL).await),
            None => {
                let prev = self.snapshot(MetricSet::ALL).await;
                tokio::time::sleep(STATUS_GAP).await;
                (prev, self.snapshot(MetricSet::ALL).await)
            }
        };
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) =
            [Some(cur.clone()), Some(prev.clone())];
        self.report(prev, cur, MetricSet::ALL)
            .await
            .map(Report::into_status)
            .ok_or_else(|| {
                Status::internal("the host report could not be built; the server's log says why")
            })
    }

    /// Sends a report every `interval` until the receiver goes away.
    pub async fn stream(
        self: Arc<Self>,
        interval: Duration,
        wanted: MetricSet,
        tx: mpsc::Sender<Result<SystemMetricsResponse, Status>>,
    ) {
        let mut prev = self.snapshot(wanted).await;
        let mut gap = interval.min(FIRST_GAP);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(gap) => {}
                _ = tx.closed() => return,
            }
            gap = interval;
            let cur = self.snapshot(wanted).await;
            let Some(report) = self.report(prev, cur.clone(), wanted).await else {
                let _ = tx
                    .send(Err(Status::internal(
                        "the host report could not be built; the server's log says why",
                    )))
                    .await;
                return;
            };
            if tx.send(Ok(report.into_metrics())).await.is_err() {
                return;
            }
            prev = cur;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn status_of_this_host_and_a_reused_baseline() {
        let c = Collector::new(Source::default(), "node".into());
        let first = c.status().await.unwrap();
        assert!(first.available);
        assert!(first.cpu.unwrap().cores >= 1);
        assert!(first.memory.unwrap().total_bytes > 0);
        assert!(!first.host.unwrap().hostname.is_empty());
        assert!(first.processes.unwrap().total_processes > 1);
        assert!(!first.disks.is_empty());
        tokio::time::sleep(MIN_GAP).await;
        let started = std::time::Instant::now();
        c.status().await.unwrap();
        assert!(
            started.elapsed() < STATUS_GAP,
            "the second status measures against the first reading"
        );
        // Too soon after the last reading to measure against it: the one before serves.
        let started = std::time::Instant::now();
        let third = c.status().await.unwrap();
        assert!(
            started.elapsed() < STATUS_GAP,
            "a status right after another measures against the earlier baseline"
        );
        assert!(third.cpu.unwrap().cores >= 1);
    }

    #[tokio::test]
    async fn stream_sends_at_the_interval_and_stops_when_the_client_goes() {
        let c = Arc::new(Collector::new(Source::default(), "node".into()));
        let (tx, mut rx) = mpsc::channel(4);
        let wanted = MetricSet::parse(&["cpu".to_owned()]).unwrap();
        let task = tokio::spawn(c.stream(Duration::from_millis(300), wanted, tx));
        for _ in 0..3 {
            let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert!(m.cpu.is_some() && m.memory.is_none());
        }
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the stream ends once its client is gone")
            .unwrap();
    }
}
