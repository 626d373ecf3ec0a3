//! The watched set and taking samples: blocking work (cgroup reads, record writes), run by
//! the sampler task on the blocking pool one step at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use joblet_ipc_proto::channel::logs::MetricSample;
use joblet_ipc_proto::job::JobId;
use tracing::{info, warn};

use super::cgroup::{CgroupDirs, Counters, Gone, READ_BUF_LEN};
use crate::store::JobLog;

/// Every job being sampled, and one read buffer they all share.
pub struct Sampling {
    jobs: HashMap<JobId, Watched>,
    buf: Vec<u8>,
}

struct Watched {
    log: Arc<JobLog>,
    dirs: CgroupDirs,
    baseline: Option<Baseline>,
    /// Storing the last sample failed; warn again only after one succeeds.
    store_failing: bool,
}

/// The CPU time of the previous sample, and when it was taken.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Baseline {
    usage_ns: u64,
    wall_ns: u64,
    /// Set when this process took the sample: intervals are then measured on the monotonic
    /// clock, immune to wall-clock steps. Baselines from disk or from the job's start time
    /// use the wall clock.
    mono: Option<Instant>,
}

/// What one pass over the watched set did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub sampled: usize,
    /// Jobs whose sampling ended (cgroup removed, job deleted).
    pub ended: usize,
}

enum Outcome {
    Stored,
    Gone,
    Deleted,
}

impl Default for Sampling {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampling {
    pub fn new() -> Sampling {
        Sampling {
            jobs: HashMap::new(),
            buf: vec![0; READ_BUF_LEN],
        }
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Starts (or, with new directory fds, continues) sampling a job, with one sample now so
    /// even a job shorter than the interval has a baseline and a first reading.
    ///
    /// A job whose samples are closed has ended (its output drained and [`Sampling::end`]
    /// ran): it gets one sample only if it has none (it ended before its `Watch` was read),
    /// and is not sampled further. Closed, not "output complete", decides: between the two a
    /// repeated `Watch` must keep the job in the set so `end` takes its final sample.
    pub fn watch(&mut self, log: Arc<JobLog>, dirs: CgroupDirs, started_ns: u64) {
        let job = log.id().clone();
        let previous = self.jobs.remove(&job).and_then(|w| w.baseline);
        let baseline = previous.or_else(|| stored_baseline(&log, started_ns));
        let ended = log.metrics().progress().closed;
        if ended && log.metrics().count() > 0 {
            return;
        }
        let mut w = Watched {
            log,
            dirs,
            baseline,
            store_failing: false,
        };
        match sample(&mut w, &mut self.buf) {
            Outcome::Stored if !ended => {
                self.jobs.insert(job, w);
            }
            Outcome::Gone => info!(%job, "the job's cgroup is already gone; nothing to sample"),
            Outcome::Stored | Outcome::Deleted => {}
        }
    }

    /// The job's output is drained (it ended): takes the final sample and closes its
    /// samples, whether it was watched or not, so followers end.
    pub fn end(&mut self, log: &Arc<JobLog>) {
        if let Some(mut w) = self.jobs.remove(log.id())
            && let Outcome::Gone = sample(&mut w, &mut self.buf)
        {
            info!(job = %log.id(), "the job's cgroup was removed before its final sample");
        }
        if let Err(error) = log.metrics().close() {
            warn!(%error, "closing the job's metric samples");
        }
    }

    /// Samples every watched job once.
    pub fn sample_all(&mut self) -> TickReport {
        let mut report = TickReport::default();
        let buf = &mut self.buf;
        self.jobs.retain(|job, w| match sample(w, buf) {
            Outcome::Stored => {
                report.sampled += 1;
                true
            }
            Outcome::Gone => {
                info!(%job, "the job's cgroup is gone; its sampling ends");
                report.ended += 1;
                false
            }
            Outcome::Deleted => {
                report.ended += 1;
                false
            }
        });
        report
    }
}

/// The baseline for a job this process has not sampled yet: its newest stored sample (after
/// a restart), else its start (the first CPU percentage is then the average since the start).
fn stored_baseline(log: &JobLog, started_ns: u64) -> Option<Baseline> {
    let from_disk = log.metrics().last().map(|s| Baseline {
        usage_ns: s.cpu_usage_ns,
        wall_ns: s.at_ns,
        mono: None,
    });
    from_disk.or((started_ns > 0).then_some(Baseline {
        usage_ns: 0,
        wall_ns: started_ns,
        mono: None,
    }))
}

fn sample(w: &mut Watched, buf: &mut Vec<u8>) -> Outcome {
    let metrics = w.log.metrics();
    if metrics.is_deleted() {
        return Outcome::Deleted;
    }
    let (wall_ns, mono) = (crate::clock::now_ns(), Instant::now());
    let counters = match w.dirs.read(w.log.id(), buf) {
        Ok(c) => c,
        Err(Gone) => return Outcome::Gone,
    };
    let now = Baseline {
        usage_ns: counters.cpu_usage_ns,
        wall_ns,
        mono: Some(mono),
    };
    let cpu_percent = w.baseline.map_or(0.0, |b| cpu_percent(&b, &now));
    w.baseline = Some(now);
    let sample = to_sample(&counters, wall_ns, cpu_percent);
    match metrics.append(&sample) {
        Ok(_) if w.store_failing => {
            w.store_failing = false;
            info!(job = %w.log.id(), "metric samples are stored again");
        }
        Ok(_) => {}
        // A sample is a reading, not data the job produced: a lost one is a gap in a graph,
        // not lost output, so it is not retried.
        Err(error) if !w.store_failing => {
            w.store_failing = true;
            warn!(%error, "metric samples of the job are not stored until a write succeeds");
        }
        Err(_) => {}
    }
    Outcome::Stored
}

/// CPU time used between two readings, in percent of one core over the time between them.
fn cpu_percent(before: &Baseline, now: &Baseline) -> f64 {
    let elapsed_ns = match (before.mono, now.mono) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_nanos() as f64,
        _ => now.wall_ns.saturating_sub(before.wall_ns) as f64,
    };
    if elapsed_ns <= 0.0 {
        return 0.0;
    }
    let used_ns = now.usage_ns.saturating_sub(before.usage_ns) as f64;
    used_ns / elapsed_ns * 100.0
}

fn to_sample(c: &Counters, at_ns: u64, cpu_percent: f64) -> MetricSample {
    MetricSample {
        at_ns,
        cpu_usage_ns: c.cpu_usage_ns,
        cpu_percent,
        memory_bytes: c.memory_bytes,
        memory_limit: c.memory_limit,
        io_read_bytes: c.io.read,
        io_write_bytes: c.io.write,
        pids: c.pids,
        // Jobs have only a loopback interface for now (no network namespace wiring to a
        // host link yet), so there is no job traffic to count; these stay 0 until networks
        // land and the job's veth counters can be read.
        net_rx_bytes: 0,
        net_tx_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cpu_percent_is_usage_over_elapsed_time() {
        let t0 = Instant::now();
        let a = Baseline {
            usage_ns: 1_000_000_000,
            wall_ns: 5_000_000_000,
            mono: Some(t0),
        };
        let b = Baseline {
            usage_ns: 1_500_000_000,
            wall_ns: 0, // ignored: both have a monotonic time
            mono: Some(t0 + Duration::from_secs(1)),
        };
        assert!((cpu_percent(&a, &b) - 50.0).abs() < 1e-9);
        // Two cores busy for the whole interval.
        let c = Baseline {
            usage_ns: 3_500_000_000,
            ..b
        };
        assert!((cpu_percent(&a, &c) - 250.0).abs() < 1e-9);
    }

    #[test]
    fn wall_clock_baselines_and_odd_readings() {
        let start = Baseline {
            usage_ns: 0,
            wall_ns: 10_000_000_000,
            mono: None,
        };
        let now = Baseline {
            usage_ns: 500_000_000,
            wall_ns: 12_000_000_000,
            mono: Some(Instant::now()),
        };
        assert!((cpu_percent(&start, &now) - 25.0).abs() < 1e-9);
        // The wall clock stepped back, or the counter went down (a recreated cgroup): 0,
        // never a negative or infinite percentage.
        let past = Baseline {
            wall_ns: 20_000_000_000,
            ..start
        };
        assert_eq!(cpu_percent(&past, &now), 0.0);
        let higher = Baseline {
            usage_ns: 900_000_000,
            ..start
        };
        assert_eq!(cpu_percent(&higher, &now), 0.0);
    }

    #[test]
    fn a_sample_carries_every_counter_and_no_network_traffic() {
        let c = Counters {
            cpu_usage_ns: 1,
            memory_bytes: 2,
            memory_limit: 3,
            io: super::super::parse::IoBytes { read: 4, write: 5 },
            pids: 6,
        };
        let s = to_sample(&c, 7, 8.5);
        assert_eq!(
            (
                s.cpu_usage_ns,
                s.memory_bytes,
                s.memory_limit,
                s.io_read_bytes,
                s.io_write_bytes,
                s.pids,
                s.at_ns
            ),
            (1, 2, 3, 4, 5, 6, 7)
        );
        assert_eq!(s.cpu_percent, 8.5);
        assert_eq!((s.net_rx_bytes, s.net_tx_bytes), (0, 0));
    }
}
