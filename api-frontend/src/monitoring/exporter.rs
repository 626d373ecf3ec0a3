//! What `/metrics` on the Prometheus listener shows. That listener has no authentication,
//! so this exposes counts and latencies only: no job id, command, user, certificate name or
//! secret ever appears, and every label value comes from a fixed table (states, end
//! reasons, method and code names).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use joblet_ipc_proto::job::JobRecord;
use tokio::sync::Mutex as AsyncMutex;

use super::census::{Census, JobFacts};
use super::exposition::{Exposition, Kind};
use super::rpc_stats::RpcStats;
use crate::app::App;
use crate::audit::AuditLog;
use crate::errors::LinkError;

/// How often the job census runs without a scrape.
pub const CENSUS_PERIOD: Duration = Duration::from_secs(5);
/// Scrapes closer together than this reuse the last census.
const MIN_CENSUS_GAP: Duration = Duration::from_secs(1);

/// Reads every job record (from stated, in production).
pub type ListJobs = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<JobRecord>, LinkError>> + Send>>
        + Send
        + Sync,
>;

/// The records of the application's stated.
pub fn stated_records(app: Arc<App>) -> ListJobs {
    Arc::new(move || {
        let app = app.clone();
        Box::pin(async move { app.state.list_all().await })
    })
}

pub struct Exporter {
    list_jobs: ListJobs,
    audit: AuditLog,
    rpc: Arc<RpcStats>,
    census: Census,
    /// Serialises passes; holds when the last one ran.
    last_pass: AsyncMutex<Option<Instant>>,
}

impl Exporter {
    pub fn new(list_jobs: ListJobs, audit: AuditLog, rpc: Arc<RpcStats>) -> Exporter {
        Exporter {
            list_jobs,
            audit,
            rpc,
            census: Census::default(),
            last_pass: AsyncMutex::new(None),
        }
    }

    /// Runs a census pass unless one ran less than `min_gap` ago.
    pub async fn refresh(&self, min_gap: Duration) {
        let mut last = self.last_pass.lock().await;
        if last.is_some_and(|t| t.elapsed() < min_gap) {
            return;
        }
        match (self.list_jobs)().await {
            Ok(records) => {
                let facts: Vec<JobFacts> = records.iter().map(JobFacts::from).collect();
                self.census.observe(&facts);
            }
            Err(e) => {
                tracing::debug!(error = %e, "job census: stated not readable");
                self.census.unreachable();
            }
        }
        *last = Some(Instant::now());
    }

    /// Keeps the census current between scrapes (so short-lived jobs are counted).
    pub async fn run_census(self: Arc<Self>) {
        loop {
            self.refresh(MIN_CENSUS_GAP).await;
            tokio::time::sleep(CENSUS_PERIOD).await;
        }
    }

    /// The exposition text, after a fresh census.
    pub async fn render(&self) -> String {
        self.refresh(MIN_CENSUS_GAP).await;
        self.text()
    }

    fn text(&self) -> String {
        let mut e = Exposition::new();
        let view = self.census.view();
        e.family(
            "joblet_state_store_up",
            "Whether the last job census could read stated (1) or not (0).",
            Kind::Gauge,
        );
        e.sample(
            "joblet_state_store_up",
            &[],
            f64::from(u8::from(view.by_state.is_some())),
        );
        if let Some(states) = &view.by_state {
            e.family(
                "joblet_jobs",
                "Jobs in each state, as recorded in stated.",
                Kind::Gauge,
            );
            for (state, n) in states {
                e.sample("joblet_jobs", &[("state", state)], *n as f64);
            }
        }
        let c = &view.counters;
        e.family(
            "joblet_job_starts_total",
            "Jobs seen starting since this frontend started.",
            Kind::Counter,
        );
        e.sample("joblet_job_starts_total", &[], c.starts as f64);
        e.family(
            "joblet_jobs_finished_total",
            "Jobs seen ending since this frontend started, by final state.",
            Kind::Counter,
        );
        for (state, n) in &c.finished {
            e.sample("joblet_jobs_finished_total", &[("state", state)], *n as f64);
        }
        e.family(
            "joblet_job_failures_total",
            "Jobs that ended FAILED or TIMEOUT since this frontend started, by end reason.",
            Kind::Counter,
        );
        for (reason, n) in &c.failures {
            e.sample(
                "joblet_job_failures_total",
                &[("reason", reason)],
                *n as f64,
            );
        }
        e.family(
            "joblet_job_limits_hit_total",
            "Jobs ended by a limit since this frontend started: memory (OOM kill) or timeout.",
            Kind::Counter,
        );
        for limit in ["memory", "timeout"] {
            let n = c.limits_hit.get(limit).copied().unwrap_or(0);
            e.sample("joblet_job_limits_hit_total", &[("limit", limit)], n as f64);
        }
        e.family(
            "joblet_rpc_duration_seconds",
            "Time until an RPC's response starts (for streams, until the stream opens), by \
             method and gRPC code.",
            Kind::Histogram,
        );
        for (method, code, h) in self.rpc.snapshot() {
            e.histogram(
                "joblet_rpc_duration_seconds",
                &[("method", method), ("code", code)],
                &h,
            );
        }
        e.family(
            "joblet_audit_write_failures_total",
            "Audit lines that could not be queued or written.",
            Kind::Counter,
        );
        e.sample(
            "joblet_audit_write_failures_total",
            &[],
            self.audit.failures() as f64,
        );
        e.family(
            "joblet_audit_log_healthy",
            "Whether the audit log is writable (1); while it is not (0) calls are refused.",
            Kind::Gauge,
        );
        e.sample(
            "joblet_audit_log_healthy",
            &[],
            f64::from(u8::from(self.audit.is_healthy())),
        );
        e.family("joblet_build_info", "This frontend's version.", Kind::Gauge);
        e.sample(
            "joblet_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("component", "joblet-api"),
            ],
            1.0,
        );
        e.finish()
    }

    pub fn rpc_stats(&self) -> Arc<RpcStats> {
        self.rpc.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::exposition::parse;
    use crate::rbac::Rpc;
    use joblet_ipc_proto::job::{EndReason, JobId, JobOutcome, JobSpec, JobState};
    use tonic::Code;

    fn record(n: u8, state: JobState, outcome: Option<JobOutcome>) -> JobRecord {
        JobRecord {
            id: JobId::parse(&format!("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b{n:02x}")).unwrap(),
            spec: JobSpec {
                command: "secret-command".into(),
                ..JobSpec::default()
            },
            state,
            node_id: "node".into(),
            created_ns: 1,
            started_ns: 2,
            ended_ns: 0,
            outcome,
            sealed_secrets: Vec::new(),
        }
    }

    /// An exporter whose stated holds what `records` holds at the time of each pass
    /// (None: stated is down).
    fn exporter(
        dir: &std::path::Path,
        records: Arc<std::sync::Mutex<Option<Vec<JobRecord>>>>,
    ) -> Exporter {
        let audit = AuditLog::open(&dir.join("audit.log")).unwrap();
        let list: ListJobs = Arc::new(move || {
            let now = records.lock().unwrap().clone();
            Box::pin(async move {
                now.ok_or_else(|| LinkError::unavailable("stated", "down for the test"))
            })
        });
        Exporter::new(list, audit, Arc::new(RpcStats::default()))
    }

    #[tokio::test]
    async fn the_text_parses_and_shows_counts_only() {
        let dir = tempfile::tempdir().unwrap();
        let records = Arc::new(std::sync::Mutex::new(Some(Vec::new())));
        let x = exporter(dir.path(), records.clone());
        x.refresh(Duration::ZERO).await;
        let oom = JobOutcome {
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
            reason: EndReason::OomKilled,
            message: "out of memory".into(),
        };
        *records.lock().unwrap() = Some(vec![
            record(1, JobState::Running, None),
            record(2, JobState::Failed, Some(oom)),
        ]);
        x.rpc_stats()
            .observe(Some(Rpc::RunJob), Code::Ok, Duration::from_millis(20));
        // A scrape right after a pass reuses it; this one must see the new records.
        x.refresh(Duration::ZERO).await;
        let text = x.text();
        let p = parse::parse(&text).unwrap_or_else(|m| panic!("{m}\n{text}"));
        assert_eq!(p.value("joblet_state_store_up", &[]), Some(1.0));
        assert_eq!(p.value("joblet_jobs", &[("state", "RUNNING")]), Some(1.0));
        assert_eq!(p.value("joblet_jobs", &[("state", "COMPLETED")]), Some(0.0));
        assert_eq!(p.value("joblet_job_starts_total", &[]), Some(2.0));
        assert_eq!(
            p.value("joblet_job_failures_total", &[("reason", "oom_killed")]),
            Some(1.0)
        );
        assert_eq!(
            p.value("joblet_job_limits_hit_total", &[("limit", "memory")]),
            Some(1.0)
        );
        assert_eq!(
            p.value("joblet_job_limits_hit_total", &[("limit", "timeout")]),
            Some(0.0)
        );
        assert_eq!(
            p.value(
                "joblet_rpc_duration_seconds_count",
                &[("method", "RunJob"), ("code", "OK")]
            ),
            Some(1.0)
        );
        assert_eq!(p.value("joblet_audit_write_failures_total", &[]), Some(0.0));
        assert_eq!(p.value("joblet_audit_log_healthy", &[]), Some(1.0));
        for secret in ["0b7c1a2e", "secret-command", "out of memory", "node"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_stated_is_reported_not_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let x = exporter(dir.path(), Arc::new(std::sync::Mutex::new(None)));
        let text = x.render().await;
        let p = parse::parse(&text).unwrap_or_else(|m| panic!("{m}\n{text}"));
        assert_eq!(p.value("joblet_state_store_up", &[]), Some(0.0));
        assert!(!p.types.contains_key("joblet_jobs"));
        assert_eq!(p.value("joblet_job_starts_total", &[]), Some(0.0));
    }
}
