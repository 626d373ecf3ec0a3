//! What this frontend knows about jobs in flight: which jobs are active (for
//! `max_concurrent_jobs`), which are being started right now, which started during a
//! reconciliation (so it does not mistake a job it has just started for a lost one), and
//! how the jobs it saw end most recently ended.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use joblet_ipc_proto::job::{JobId, JobOutcome, JobState};
use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    /// Jobs RUNNING or INITIALIZING as far as we know.
    active: HashSet<JobId>,
    /// Jobs whose RunJob is between creating the record and recording the start.
    starting: HashSet<JobId>,
    /// Of those, the ones the spawner reports started: only their RUNNING record is pending.
    confirmed: HashSet<JobId>,
    /// Jobs the spawner reports ended whose final state is not recorded yet.
    exiting: HashSet<JobId>,
    /// While a reconciliation runs: jobs that finished starting since it began.
    touched: Option<HashSet<JobId>>,
    /// The final states this frontend recorded last, newest at the back: a log stream that
    /// ends with its job tells that state without asking stated for it.
    recent: VecDeque<RecordedEnd>,
}

/// A job's final state and why it ended, as recorded.
type RecordedEnd = (JobId, JobState, JobOutcome);

/// How many [`Inner::recent`] keeps: the followers of a job read its end within a second
/// of its record, and a few hundred outcomes are a few tens of KB.
const RECENT_MAX: usize = 256;

#[derive(Clone, Default)]
pub struct Tracker {
    inner: Arc<Mutex<Inner>>,
    /// Woken whenever a job leaves the "starting" phase.
    start_ended: Arc<Notify>,
    /// Woken whenever a job's exit has been recorded.
    exit_recorded: Arc<Notify>,
}

/// Why a job may not start now.
#[derive(Debug, PartialEq, Eq)]
pub struct AtCapacity {
    pub max: u32,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a place for a new job (`max` 0 = unlimited) and marks it starting.
    pub fn reserve(&self, job: &JobId, max: u32) -> Result<Starting, AtCapacity> {
        let mut inner = self.lock();
        if max > 0 && inner.active.len() >= max as usize {
            return Err(AtCapacity { max });
        }
        inner.active.insert(job.clone());
        inner.starting.insert(job.clone());
        Ok(Starting {
            tracker: self.clone(),
            job: job.clone(),
        })
    }

    /// The spawner reports the job ended; its final state is being recorded.
    pub fn exit_reported(&self, job: &JobId) {
        self.lock().exiting.insert(job.clone());
    }

    /// The job ended (its exit is recorded, as `recorded` if known): it no longer counts.
    pub fn ended(&self, job: &JobId, recorded: Option<(JobState, JobOutcome)>) {
        {
            let mut inner = self.lock();
            inner.active.remove(job);
            inner.exiting.remove(job);
            if let Some((state, outcome)) = recorded {
                if inner.recent.len() >= RECENT_MAX {
                    inner.recent.pop_front();
                }
                inner.recent.push_back((job.clone(), state, outcome));
            }
        }
        self.exit_recorded.notify_waiters();
    }

    /// How `job` ended, if this frontend recorded it among its latest ends.
    pub fn recorded_end(&self, job: &JobId) -> Option<(JobState, JobOutcome)> {
        let inner = self.lock();
        let (_, state, outcome) = inner.recent.iter().rev().find(|(id, ..)| id == job)?;
        Some((*state, outcome.clone()))
    }

    /// Resolves once `job` is not active here: its exit is recorded, or it is not ours.
    pub async fn until_ended(&self, job: &JobId) {
        wait_for(&self.exit_recorded, || !self.lock().active.contains(job)).await
    }

    /// Whether the spawner reported `job` ended and its final state is not recorded yet.
    pub fn is_exit_pending(&self, job: &JobId) -> bool {
        self.lock().exiting.contains(job)
    }

    pub fn is_starting(&self, job: &JobId) -> bool {
        self.lock().starting.contains(job)
    }

    /// Whether `job` runs and only the record of its start is still being written.
    pub fn is_start_confirmed(&self, job: &JobId) -> bool {
        self.lock().confirmed.contains(job)
    }

    /// Resolves once `job` is not being started (at once if it is not).
    pub async fn start_recorded(&self, job: &JobId) {
        wait_for(&self.start_ended, || !self.is_starting(job)).await
    }

    pub fn active_count(&self) -> usize {
        self.lock().active.len()
    }

    /// Starts watching for jobs that finish starting while a reconciliation runs.
    pub fn begin_reconcile(&self) {
        self.lock().touched = Some(HashSet::new());
    }

    /// Whether reconciliation must leave this job alone: it is being started, or finished
    /// starting after the reconciliation took its snapshots.
    pub fn reconcile_skips(&self, job: &JobId) -> bool {
        let inner = self.lock();
        inner.starting.contains(job) || inner.touched.as_ref().is_some_and(|t| t.contains(job))
    }

    /// Ends a reconciliation that could not finish; the active set stays as it was.
    pub fn abort_reconcile(&self) {
        self.lock().touched = None;
    }

    /// Ends a reconciliation with the set of jobs the spawner holds alive.
    pub fn end_reconcile(&self, alive: HashSet<JobId>) {
        let mut inner = self.lock();
        let touched = inner.touched.take().unwrap_or_default();
        let starting = inner.starting.clone();
        let still_active: HashSet<JobId> = inner
            .active
            .iter()
            .filter(|j| touched.contains(*j))
            .cloned()
            .collect();
        inner.active = alive;
        inner.active.extend(starting);
        inner.active.extend(still_active);
    }
}

/// Resolves once `done` holds, checking again each time `woken` is notified.
async fn wait_for(woken: &Notify, done: impl Fn() -> bool) {
    loop {
        // Registered before the check, so a change made in between still wakes us.
        let notified = woken.notified();
        if done() {
            return;
        }
        notified.await;
    }
}

/// A job being started. Dropping it ends the "starting" phase; [`Starting::failed`] also
/// frees its place.
pub struct Starting {
    tracker: Tracker,
    job: JobId,
}

impl Starting {
    /// The spawner started the job; what remains is recording it.
    pub fn confirm(&self) {
        self.tracker.lock().confirmed.insert(self.job.clone());
    }

    /// The job never started: it does not count against the limit.
    pub fn failed(self) {
        self.tracker.lock().active.remove(&self.job);
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        {
            let mut inner = self.tracker.lock();
            inner.starting.remove(&self.job);
            inner.confirmed.remove(&self.job);
            if let Some(t) = inner.touched.as_mut() {
                t.insert(self.job.clone());
            }
        }
        self.tracker.start_ended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> JobId {
        JobId::parse(&format!("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b{n:02x}")).unwrap()
    }

    #[test]
    fn capacity_is_enforced_and_freed() {
        let t = Tracker::default();
        let a = t.reserve(&id(1), 2).unwrap();
        let _b = t.reserve(&id(2), 2).unwrap();
        assert_eq!(t.reserve(&id(3), 2).err(), Some(AtCapacity { max: 2 }));
        a.failed();
        let c = t.reserve(&id(3), 2).unwrap();
        drop(c);
        assert_eq!(
            t.active_count(),
            2,
            "a started job still counts until it ends"
        );
        t.ended(&id(3), None);
        assert!(t.reserve(&id(4), 2).is_ok());
        assert!(t.reserve(&id(5), 0).is_ok(), "0 means unlimited");
    }

    #[test]
    fn the_latest_recorded_ends_are_remembered_and_no_more() {
        let t = Tracker::default();
        let failed = || (JobState::Failed, JobOutcome::launch_failed("no such file"));
        t.ended(&id(1), Some(failed()));
        t.ended(&id(2), None);
        assert_eq!(t.recorded_end(&id(1)), Some(failed()));
        assert_eq!(t.recorded_end(&id(2)), None, "ended, but not recorded here");
        for n in 0..RECENT_MAX {
            let other = JobId::parse(&format!("1c7c1a2e-4f3d-4e8a-9c61-2d5e7f{n:06x}")).unwrap();
            t.ended(&other, Some(failed()));
        }
        assert_eq!(t.recorded_end(&id(1)), None, "the oldest is forgotten");
        assert_eq!(t.lock().recent.len(), RECENT_MAX);
    }

    #[tokio::test]
    async fn a_start_ending_wakes_its_waiter() {
        let t = Tracker::default();
        t.start_recorded(&id(1)).await;
        let starting = t.reserve(&id(1), 0).unwrap();
        let other = t.reserve(&id(2), 0).unwrap();
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.start_recorded(&id(1)).await }
        });
        tokio::task::yield_now().await;
        drop(other);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "another job's start is not this one's"
        );
        drop(starting);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken when its start ended")
            .unwrap();
    }

    #[test]
    fn a_confirmed_start_is_known_until_it_is_recorded() {
        let t = Tracker::default();
        let starting = t.reserve(&id(1), 0).unwrap();
        assert!(!t.is_start_confirmed(&id(1)), "not started yet");
        starting.confirm();
        assert!(t.is_start_confirmed(&id(1)));
        assert!(!t.is_start_confirmed(&id(2)));
        drop(starting);
        assert!(!t.is_start_confirmed(&id(1)), "its RUNNING is recorded");
        assert!(!t.is_starting(&id(1)));
    }

    #[tokio::test]
    async fn a_recorded_exit_wakes_its_waiter() {
        let t = Tracker::default();
        t.until_ended(&id(1)).await;
        let _started = t.reserve(&id(1), 0);
        let _other = t.reserve(&id(2), 0);
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.until_ended(&id(1)).await }
        });
        tokio::task::yield_now().await;
        t.ended(&id(2), None);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "another job's exit is not this one's"
        );
        t.ended(&id(1), None);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken when its exit was recorded")
            .unwrap();
    }

    #[test]
    fn a_reported_exit_is_pending_until_recorded() {
        let t = Tracker::default();
        let _started = t.reserve(&id(1), 0);
        assert!(!t.is_exit_pending(&id(1)), "no exit reported yet");
        t.exit_reported(&id(1));
        assert!(t.is_exit_pending(&id(1)));
        assert!(!t.is_exit_pending(&id(2)));
        t.ended(&id(1), None);
        assert!(!t.is_exit_pending(&id(1)), "recorded");
    }

    #[test]
    fn reconciliation_leaves_starting_and_just_started_jobs_alone() {
        let t = Tracker::default();
        let early = t.reserve(&id(1), 0).unwrap();
        t.begin_reconcile();
        let during = t.reserve(&id(2), 0).unwrap();
        assert!(t.reconcile_skips(&id(1)));
        assert!(t.reconcile_skips(&id(2)));
        drop(early);
        drop(during);
        assert!(
            t.reconcile_skips(&id(1)),
            "finished starting during the reconciliation"
        );
        assert!(!t.reconcile_skips(&id(3)));
        t.end_reconcile(HashSet::from([id(7)]));
        assert!(!t.reconcile_skips(&id(1)));
        assert_eq!(
            t.active_count(),
            3,
            "spawner's jobs plus those started meanwhile"
        );
    }
}
