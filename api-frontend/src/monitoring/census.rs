//! Jobs as the frontend sees them in stated, for Prometheus: how many are in each state
//! now, and counters of starts, ends, failures by reason and limits hit since this frontend
//! started.
//!
//! The counters come from comparing each pass over stated's records with the one before:
//! a job seen started (or ended) for the first time is counted once. The first pass is the
//! baseline and counts nothing, so counters start at zero with the process, as Prometheus
//! expects. A job created and deleted between two passes is not counted; passes run on
//! every scrape and in the background every few seconds, which keeps that window short.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use joblet_ipc_proto::job::{EndReason, JobId, JobRecord, JobState};

/// What a pass keeps of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    pub id: JobId,
    pub state: JobState,
    pub started: bool,
    pub reason: Option<EndReason>,
    pub oom_killed: bool,
}

impl From<&JobRecord> for JobFacts {
    fn from(r: &JobRecord) -> JobFacts {
        JobFacts {
            id: r.id.clone(),
            state: r.state,
            started: r.started_ns > 0,
            reason: r.outcome.as_ref().map(|o| o.reason),
            oom_killed: r.outcome.as_ref().is_some_and(|o| o.oom_killed),
        }
    }
}

/// Counters since start, keyed by their label value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub starts: u64,
    /// By terminal state.
    pub finished: BTreeMap<&'static str, u64>,
    /// Jobs that ended FAILED or TIMEOUT, by end reason (`EndReason::code`).
    pub failures: BTreeMap<&'static str, u64>,
    /// `memory` (OOM kills) and `timeout`.
    pub limits_hit: BTreeMap<&'static str, u64>,
}

/// What the last pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Jobs per state now; None if the last pass could not read stated.
    pub by_state: Option<BTreeMap<&'static str, u64>>,
    pub counters: Counters,
}

#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    started: bool,
    ended: bool,
}

#[derive(Debug, Default)]
struct Inner {
    baseline_taken: bool,
    seen: HashMap<JobId, Seen>,
    view: View,
}

#[derive(Debug, Default)]
pub struct Census {
    inner: Mutex<Inner>,
}

impl Census {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn view(&self) -> View {
        self.lock().view.clone()
    }

    /// stated could not be read: the state gauges are unknown until the next pass.
    pub fn unreachable(&self) {
        self.lock().view.by_state = None;
    }

    /// Takes one pass over every record stated holds.
    pub fn observe(&self, jobs: &[JobFacts]) {
        let mut inner = self.lock();
        let mut by_state: BTreeMap<&'static str, u64> =
            JobState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for j in jobs {
            *by_state.entry(j.state.as_str()).or_default() += 1;
        }
        inner.view.by_state = Some(by_state);
        if !inner.baseline_taken {
            inner.seen = jobs
                .iter()
                .map(|j| {
                    let seen = Seen {
                        started: j.started,
                        ended: j.state.is_terminal(),
                    };
                    (j.id.clone(), seen)
                })
                .collect();
            inner.baseline_taken = true;
            return;
        }
        let Inner { seen, view, .. } = &mut *inner;
        let mut current = HashMap::with_capacity(jobs.len());
        for j in jobs {
            let mut s = seen.get(&j.id).copied().unwrap_or_default();
            if j.started && !s.started {
                s.started = true;
                view.counters.starts += 1;
            }
            if j.state.is_terminal() && !s.ended {
                s.ended = true;
                count_end(&mut view.counters, j);
            }
            current.insert(j.id.clone(), s);
        }
        // Deleted jobs are gone for good: forget them.
        *seen = current;
    }
}

fn count_end(c: &mut Counters, j: &JobFacts) {
    *c.finished.entry(j.state.as_str()).or_default() += 1;
    if matches!(j.state, JobState::Failed | JobState::Timeout) {
        let reason = j.reason.map_or("unknown", EndReason::code);
        *c.failures.entry(reason).or_default() += 1;
    }
    if j.oom_killed || j.reason == Some(EndReason::OomKilled) {
        *c.limits_hit.entry("memory").or_default() += 1;
    }
    if j.reason == Some(EndReason::Timeout) {
        *c.limits_hit.entry("timeout").or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> JobId {
        JobId::parse(&format!("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b{n:02x}")).unwrap()
    }

    fn job(n: u8, state: JobState, started: bool, reason: Option<EndReason>) -> JobFacts {
        JobFacts {
            id: id(n),
            state,
            started,
            reason,
            oom_killed: reason == Some(EndReason::OomKilled),
        }
    }

    #[test]
    fn the_first_pass_is_a_baseline() {
        let c = Census::default();
        assert_eq!(c.view().by_state, None);
        c.observe(&[
            job(1, JobState::Running, true, None),
            job(2, JobState::Failed, true, Some(EndReason::OomKilled)),
        ]);
        let v = c.view();
        assert_eq!(v.counters, Counters::default());
        let states = v.by_state.unwrap();
        assert_eq!(states["RUNNING"], 1);
        assert_eq!(states["FAILED"], 1);
        assert_eq!(states["SCHEDULED"], 0);
        assert_eq!(states.len(), JobState::ALL.len());
    }

    #[test]
    fn starts_and_ends_are_counted_once() {
        let c = Census::default();
        c.observe(&[job(1, JobState::Running, true, None)]);
        c.observe(&[
            job(1, JobState::Running, true, None),
            job(2, JobState::Initializing, false, None),
            job(3, JobState::Scheduled, false, None),
        ]);
        assert_eq!(c.view().counters.starts, 0);
        let later = [
            job(1, JobState::Failed, true, Some(EndReason::OomKilled)),
            job(2, JobState::Timeout, true, Some(EndReason::Timeout)),
            job(3, JobState::Failed, false, Some(EndReason::LaunchFailed)),
            // Ran and ended between two passes.
            job(4, JobState::Completed, true, Some(EndReason::Exited)),
            job(5, JobState::Stopped, true, Some(EndReason::Stopped)),
        ];
        c.observe(&later);
        c.observe(&later);
        let k = c.view().counters;
        assert_eq!(
            k.starts, 3,
            "jobs 2, 4 and 5; 1 started before the baseline"
        );
        assert_eq!(k.failures["oom_killed"], 1);
        assert_eq!(k.failures["timeout"], 1);
        assert_eq!(k.failures["launch_failed"], 1);
        assert_eq!(
            k.failures.len(),
            3,
            "completed and stopped are not failures"
        );
        assert_eq!(k.limits_hit["memory"], 1);
        assert_eq!(k.limits_hit["timeout"], 1);
        assert_eq!(k.finished["FAILED"], 2);
        assert_eq!(k.finished["COMPLETED"], 1);
        assert_eq!(k.finished["STOPPED"], 1);
    }

    #[test]
    fn deleted_jobs_are_forgotten_and_stated_outages_hide_the_gauges() {
        let c = Census::default();
        c.observe(&[]);
        c.observe(&[job(1, JobState::Completed, true, Some(EndReason::Exited))]);
        c.observe(&[]);
        assert_eq!(c.lock().seen.len(), 0);
        assert_eq!(c.view().counters.starts, 1);
        c.unreachable();
        assert_eq!(c.view().by_state, None);
        assert_eq!(c.view().counters.starts, 1, "counters survive an outage");
    }
}
