//! The jobs persistd knows, and the rules for attaching and deleting them.
//!
//! One lock guards the map and every decision that depends on it (attach, delete, who is told
//! `Drained`), so those never interleave half way. It is a std mutex held only for map
//! operations and a few metadata syscalls (mkdir/open of a new job, the reopening of a
//! finished one, one rename on delete), never across an await.
//!
//! A job's files (four of them) stay open only while the job can still be written or someone
//! uses them: a finished job's entry keeps no open file, and its first user reopens it. Kept
//! open, a store of a few thousand finished jobs exhausted persistd's fd limit, after which
//! no new job's output could be stored.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use joblet_ipc_proto::job::JobId;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::store::{Found, JobLog, LogWriter, Opened, Store, StoreError, TakeWriter};

/// Where a pump reports that a job's output is drained: the output connection that attached
/// it last. Unbounded because it holds at most one job id per attached job.
pub type DrainedTo = mpsc::UnboundedSender<JobId>;

pub struct Registry {
    store: Store,
    jobs: Mutex<HashMap<JobId, Entry>>,
    /// Bumped whenever a job is added, for readers waiting for a job to appear.
    added: watch::Sender<u64>,
}

struct Entry {
    /// The job's log while its output is not complete (a pump may attach at any time).
    kept: Option<Arc<JobLog>>,
    /// The open log while anyone holds it. Every user of a job shares this one instance,
    /// so a delete marks deleted the very log its readers watch.
    shared: Weak<JobLog>,
    drained_to: Option<DrainedTo>,
    /// When the job started, as its last `Attach` said (0 = not attached since our start).
    started_ns: u64,
}

impl Entry {
    /// A job whose files are not open.
    fn closed() -> Entry {
        Entry {
            kept: None,
            shared: Weak::new(),
            drained_to: None,
            started_ns: 0,
        }
    }

    fn new(log: Arc<JobLog>) -> Entry {
        let mut entry = Entry::closed();
        entry.hold(log);
        entry
    }

    fn hold(&mut self, log: Arc<JobLog>) {
        self.shared = Arc::downgrade(&log);
        self.kept = (!log.progress().complete).then_some(log);
    }

    /// The job's log if it is open now.
    fn live(&self) -> Option<Arc<JobLog>> {
        self.kept.clone().or_else(|| self.shared.upgrade())
    }

    /// The job's log, reopened if nobody held it.
    fn log(&mut self, store: &Store, job: &JobId) -> Result<Arc<JobLog>, StoreError> {
        if let Some(log) = self.live() {
            return Ok(log);
        }
        let opened = store.open_job(job)?;
        report_repairs(&opened);
        self.hold(opened.log.clone());
        Ok(opened.log)
    }
}

fn report_repairs(opened: &Opened) {
    let report = &opened.report;
    if report.repaired() {
        info!(job = %opened.log.id(), dropped_index_bytes = report.dropped_index_bytes,
            tail_records = report.tail_records,
            dropped_metric_bytes = report.dropped_metric_bytes,
            "repaired the job's files after an unclean stop");
    }
}

/// What to do with a job's pipes that just arrived.
pub enum Attach {
    /// Read them with this writer.
    Start(LogWriter),
    /// They are read already; close the new copies.
    AlreadyReading,
    /// The output is complete; close them and report `Drained`.
    Complete,
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no output is stored for job {0}")]
    NotFound(JobId),
    #[error(
        "the output of job {0} is still open (its pipes are being read); delete it after the job ended"
    )]
    StillOpen(JobId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Registry {
    /// Opens the store and every unfinished job in it, repairing what a crash left. Blocking.
    pub fn open(data_dir: &Path) -> Result<Registry, StoreError> {
        let store = Store::open(data_dir)?;
        let mut jobs = HashMap::new();
        // A finished job is entered closed; it is opened, and repaired if need be, on its
        // first use.
        let scan = store.open_all(|found| {
            let (job, entry) = match found {
                Found::Complete(job) => (job, Entry::closed()),
                Found::Opened(opened) => {
                    report_repairs(&opened);
                    (opened.log.id().clone(), Entry::new(opened.log))
                }
            };
            jobs.insert(job, entry);
        })?;
        for path in &scan.foreign {
            warn!(path = %path.display(), "ignoring an entry of the jobs directory that is not a job id");
        }
        for e in &scan.failed {
            error!(error = %e, "cannot open a job's stored output; it is not served until the next start");
        }
        info!(jobs = jobs.len(), data_dir = %data_dir.display(), "log store open");
        Ok(Registry {
            store,
            jobs: Mutex::new(jobs),
            added: watch::Sender::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<JobId, Entry>> {
        // Entries are inserted and removed whole; a panic elsewhere cannot leave one torn.
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job's log, opened if its files were closed; `None` if the job is unknown.
    pub fn get(&self, job: &JobId) -> Result<Option<Arc<JobLog>>, StoreError> {
        match self.lock().get_mut(job) {
            Some(entry) => entry.log(&self.store, job).map(Some),
            None => Ok(None),
        }
    }

    /// The job's log if it is open now, without opening it.
    fn live(&self, job: &JobId) -> Option<Arc<JobLog>> {
        self.lock().get(job).and_then(Entry::live)
    }

    /// How many jobs' files are open now.
    #[cfg(test)]
    fn open_logs(&self) -> usize {
        self.lock().values().filter(|e| e.live().is_some()).count()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until `job` is known (attached for the first time, if it is new).
    pub async fn wait_for(&self, job: &JobId) -> Result<Arc<JobLog>, StoreError> {
        let mut added = self.added.subscribe();
        loop {
            if let Some(log) = self.get(job)? {
                return Ok(log);
            }
            // The sender lives as long as `self`, so this cannot fail while we wait.
            let _ = added.changed().await;
        }
    }

    /// Decides what to do with pipes handed over for `job`; `drained_to` is told when the
    /// output is drained, unless a later attach replaces it.
    pub fn attach(
        &self,
        job: &JobId,
        drained_to: DrainedTo,
        started_ns: u64,
    ) -> Result<Attach, StoreError> {
        let mut jobs = self.lock();
        let entry = self.entry_or_open(&mut jobs, job)?;
        let verdict = match entry.log(&self.store, job)?.take_writer() {
            TakeWriter::Writer(w) => Attach::Start(w),
            TakeWriter::Busy => Attach::AlreadyReading,
            TakeWriter::Complete => return Ok(Attach::Complete),
        };
        entry.drained_to = Some(drained_to);
        entry.started_ns = started_ns;
        Ok(verdict)
    }

    /// The job whose cgroup is to be sampled, and when it started (0 = unknown). A job not
    /// attached yet is opened as `Attach` would, so the order of `Attach` and `Watch` does
    /// not matter.
    pub fn watch_target(&self, job: &JobId) -> Result<(Arc<JobLog>, u64), StoreError> {
        let mut jobs = self.lock();
        let entry = self.entry_or_open(&mut jobs, job)?;
        Ok((entry.log(&self.store, job)?, entry.started_ns))
    }

    fn entry_or_open<'a>(
        &self,
        jobs: &'a mut HashMap<JobId, Entry>,
        job: &JobId,
    ) -> Result<&'a mut Entry, StoreError> {
        match jobs.entry(job.clone()) {
            MapEntry::Occupied(known) => Ok(known.into_mut()),
            MapEntry::Vacant(new) => {
                let opened = self.store.open_job(job)?;
                // Waiters look the job up under the lock we hold: they see it once we return.
                self.added.send_modify(|n| *n += 1);
                Ok(new.insert(Entry::new(opened.log)))
            }
        }
    }

    /// Called by a pump once the job's output is complete: tells the last attacher, and
    /// lets the job's files close once their last user is done.
    pub fn drained(&self, job: &JobId) {
        let to = self.lock().get_mut(job).and_then(|e| {
            // `hold` keeps the log only while its output is not complete.
            if let Some(log) = e.kept.take() {
                e.hold(log);
            }
            e.drained_to.take()
        });
        if let Some(to) = to {
            // A closed connection is fine: the spawner re-attaches and hears it then.
            let _ = to.send(job.clone());
        }
    }

    /// [`Registry::delete`], but a log whose output is complete and whose pump is only
    /// finishing (syncing it to disk, then telling the spawner) is waited for, up to
    /// `patience`: a client that read the whole output and saw the job end may well ask at
    /// once. Output that is still open is refused at once, as by `delete`.
    pub async fn delete_when_finished(
        &self,
        job: &JobId,
        patience: Duration,
    ) -> Result<PathBuf, DeleteError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let log = match self.delete(job) {
                Err(DeleteError::StillOpen(_)) => self.live(job),
                other => return other,
            };
            match log {
                Some(log) if log.progress().complete => {
                    if tokio::time::timeout_at(deadline, log.detached())
                        .await
                        .is_err()
                    {
                        return Err(DeleteError::StillOpen(job.clone()));
                    }
                }
                // Still being written, or removed meanwhile: the next `delete` says which.
                Some(_) => return Err(DeleteError::StillOpen(job.clone())),
                None => continue,
            }
        }
    }

    /// Removes the job from the map and moves its directory to the trash; the caller purges
    /// the returned path.
    pub fn delete(&self, job: &JobId) -> Result<PathBuf, DeleteError> {
        let mut jobs = self.lock();
        let entry = jobs
            .get_mut(job)
            .ok_or_else(|| DeleteError::NotFound(job.clone()))?;
        let live = entry.live();
        if live.as_ref().is_some_and(|log| log.is_attached()) {
            return Err(DeleteError::StillOpen(job.clone()));
        }
        let trashed = self.store.trash_job(job, live.as_deref())?;
        // Deleted after its pump ended but before its final sample: the spawner has not heard
        // `Drained` yet, and the pump's report will find no entry. Without this the spawner
        // would keep the job's shim and cgroup until it restarts.
        if let Some(to) = entry.drained_to.take() {
            let _ = to.send(job.clone());
        }
        jobs.remove(job);
        Ok(trashed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Attach;

    #[tokio::test]
    async fn deleting_a_finishing_log_waits_for_its_pump() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Arc::new(Registry::open(&dir.path().join("data")).unwrap());
        let job = JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").unwrap();
        let (tx, mut drained) = mpsc::unbounded_channel();
        let Ok(Attach::Start(mut writer)) = registry.attach(&job, tx, 1) else {
            panic!("no writer");
        };
        let patience = Duration::from_secs(10);
        // Still open: refused at once, however patient the caller.
        let open = registry.delete_when_finished(&job, patience).await;
        assert!(matches!(open, Err(DeleteError::StillOpen(_))));
        // Complete, the pump still holding the writer (syncing): the delete waits for it.
        writer.finish().unwrap();
        let deleting = tokio::spawn({
            let (registry, job) = (registry.clone(), job.clone());
            async move { registry.delete_when_finished(&job, patience).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !deleting.is_finished(),
            "deleted under a pump still finishing"
        );
        drop(writer);
        let trashed = deleting.await.unwrap().unwrap();
        assert!(trashed.exists());
        assert!(registry.get(&job).unwrap().is_none());
        // Deleted before its pump reported the end (its final sample pending): the delete
        // reports it, or the spawner would wait for it forever.
        assert_eq!(drained.try_recv().ok(), Some(job.clone()));
        registry.drained(&job);
        assert!(drained.try_recv().is_err(), "reported twice");
        // And not past its patience.
        let job2 = JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3d").unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        let Ok(Attach::Start(mut writer)) = registry.attach(&job2, tx, 1) else {
            panic!("no writer");
        };
        writer.finish().unwrap();
        let late = registry
            .delete_when_finished(&job2, Duration::from_millis(50))
            .await;
        assert!(matches!(late, Err(DeleteError::StillOpen(_))));
    }

    /// The files this process holds open under `dir`.
    fn files_open_under(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir))
            .collect()
    }

    #[tokio::test]
    async fn finished_jobs_keep_no_file_open() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let registry = Registry::open(&data).unwrap();
        let jobs: Vec<JobId> = (0..6)
            .map(|i| JobId::parse(&format!("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b{i:02x}")).unwrap())
            .collect();
        let (tx, _drained) = mpsc::unbounded_channel();
        for job in &jobs[..5] {
            let Ok(Attach::Start(mut writer)) = registry.attach(job, tx.clone(), 1) else {
                panic!("no writer");
            };
            writer.finish().unwrap();
            drop(writer);
            registry.drained(job);
        }
        // Still running: its files stay open for the pump that will attach again.
        let Ok(Attach::Start(running)) = registry.attach(&jobs[5], tx.clone(), 1) else {
            panic!("no writer");
        };
        drop(running);
        let running_dir = data.join("jobs").join(jobs[5].as_str());
        let open = files_open_under(&data);
        assert!(
            !open.is_empty() && open.iter().all(|f| f.starts_with(&running_dir)),
            "open: {open:?}"
        );
        assert_eq!(registry.open_logs(), 1);

        // A reader reopens a finished job, sees it whole, and shares the one instance.
        let log = registry.get(&jobs[0]).unwrap().unwrap();
        assert!(log.progress().complete);
        assert!(Arc::ptr_eq(&log, &registry.get(&jobs[0]).unwrap().unwrap()));
        assert_eq!(registry.open_logs(), 2);
        // A delete marks deleted the log that reader holds.
        let progress = log.subscribe();
        registry.delete(&jobs[0]).unwrap();
        assert!(progress.borrow().deleted);
        drop(log);
        // One nobody holds is deleted without being opened.
        registry.delete(&jobs[1]).unwrap();
        assert!(!data.join("jobs").join(jobs[1].as_str()).exists());
        assert!(matches!(
            registry.attach(&jobs[2], tx.clone(), 1),
            Ok(Attach::Complete)
        ));
        assert_eq!(registry.open_logs(), 1);

        // After a restart only the unfinished job's files are open. A finished job is not
        // even opened until it is used: a missing data file of one (opening creates it)
        // appears only then.
        drop(registry);
        assert!(files_open_under(&data).is_empty());
        let stdout = data.join("jobs").join(jobs[3].as_str()).join("stdout");
        std::fs::remove_file(&stdout).unwrap();
        let registry = Registry::open(&data).unwrap();
        assert_eq!((registry.len(), registry.open_logs()), (4, 1));
        let open = files_open_under(&data);
        assert!(
            open.iter().all(|f| f.starts_with(&running_dir)),
            "open: {open:?}"
        );
        assert!(!stdout.exists(), "the scan opened a finished job");
        let log = registry.get(&jobs[3]).unwrap().unwrap();
        assert!(log.progress().complete && stdout.exists());
    }
}
