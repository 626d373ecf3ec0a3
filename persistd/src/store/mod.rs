//! The log store on disk.
//!
//! ```text
//! data_dir/            0700
//!   jobs/<uuid>/       0700, one per job
//!     stdout, stderr   data files (0600), bytes as they came out of the pipes
//!     index            fixed-size records (stream, offset, len, at_ns); position = seq
//!     metrics          fixed-size metric samples, the newest `KEEP_SAMPLES` kept
//!   trash/             deleted jobs on their way out (emptied at start)
//! ```
//!
//! Paths are built only from the configured `data_dir` and validated [`JobId`]s.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use joblet_ipc_proto::job::JobId;

mod error;
mod job_log;
mod metric_log;
mod ranges;
mod record;
mod recover;
mod sample_record;
mod writer;

#[cfg(test)]
mod metric_tests;
#[cfg(test)]
mod tests;

pub use error::StoreError;
pub use job_log::{JobLog, Progress, STREAMS, TakeWriter, stream_index};
pub use metric_log::{KEEP_SAMPLES, MetricLog, MetricProgress};
pub use ranges::{ChunkAt, RangeBuilder};
pub use record::{RECORD_LEN, Record, RecordError};
pub use recover::RecoveryReport;
pub use sample_record::{SAMPLE_RECORD_LEN, SampleRecordError};
pub use writer::{Append, LogWriter};

use job_log::create_private_dir;

pub struct Store {
    jobs: PathBuf,
    trash: PathBuf,
    trashed: AtomicU64,
}

/// What [`Store::open_all`] could not open.
#[derive(Default)]
pub struct Scan {
    pub failed: Vec<StoreError>,
    /// Entries of `jobs/` that are not job ids.
    pub foreign: Vec<PathBuf>,
}

/// A job directory found by [`Store::open_all`].
pub enum Found {
    /// Its output is complete, so it needs no recovery and was not opened.
    Complete(JobId),
    /// Opened and recovered.
    Opened(Opened),
}

/// A job directory, opened and recovered.
pub struct Opened {
    pub log: Arc<JobLog>,
    pub report: RecoveryReport,
}

impl Store {
    /// Prepares `data_dir` (0700) with its `jobs/` and `trash/` directories and empties the
    /// trash left by deletions a crash interrupted.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(data_dir)?;
        let store = Store {
            jobs: data_dir.join("jobs"),
            trash: data_dir.join("trash"),
            trashed: AtomicU64::new(0),
        };
        create_private_dir(&store.jobs)?;
        create_private_dir(&store.trash)?;
        for entry in list(&store.trash)? {
            remove_tree(&entry)?;
        }
        Ok(store)
    }

    pub fn jobs_dir(&self) -> &Path {
        &self.jobs
    }

    /// Opens (creating if new) one job's log.
    pub fn open_job(&self, id: &JobId) -> Result<Opened, StoreError> {
        let (log, report) = JobLog::open(&self.jobs, id, crate::clock::now_ns())?;
        Ok(Opened { log, report })
    }

    /// Finds every job directory and hands each to `each`: a finished job after reading the
    /// last record of its index, any other opened and recovered, so a store of many finished
    /// jobs opens quickly. A directory that fails is reported and skipped, so one broken job
    /// cannot keep the others from being served; entries that are not job ids are left alone.
    pub fn open_all(&self, mut each: impl FnMut(Found)) -> Result<Scan, StoreError> {
        let mut scan = Scan::default();
        for path in list(&self.jobs)? {
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| JobId::parse(n).ok());
            match id {
                Some(id) => match self.find_job(id) {
                    Ok(found) => each(found),
                    Err(e) => scan.failed.push(e),
                },
                None => scan.foreign.push(path),
            }
        }
        Ok(scan)
    }

    fn find_job(&self, id: JobId) -> Result<Found, StoreError> {
        if job_log::stored_complete(&self.jobs, &id)? {
            return Ok(Found::Complete(id));
        }
        self.open_job(&id).map(Found::Opened)
    }

    /// Moves a job's directory into the trash (one atomic rename) and marks its open log,
    /// if it has one, deleted so its readers stop. Returns the trash path for
    /// [`Store::purge`].
    pub fn trash_job(&self, job: &JobId, open: Option<&JobLog>) -> Result<PathBuf, StoreError> {
        let n = self.trashed.fetch_add(1, Ordering::Relaxed);
        let to = self.trash.join(format!("{job}.{n}"));
        // The id is a validated UUID, so this cannot leave the jobs directory.
        let from = self.jobs.join(job.as_str());
        std::fs::rename(&from, &to).map_err(|source| StoreError::Remove { path: from, source })?;
        if let Some(log) = open {
            log.mark_deleted();
        }
        Ok(to)
    }

    /// Removes a trashed directory (blocking; may take a while for a large log).
    pub fn purge(path: &Path) -> Result<(), StoreError> {
        remove_tree(path)
    }
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let err = |source| StoreError::List {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        out.push(entry.map_err(err)?.path());
    }
    out.sort();
    Ok(out)
}

fn remove_tree(path: &Path) -> Result<(), StoreError> {
    // remove_dir_all does not follow symlinks, so a planted link cannot widen the removal.
    std::fs::remove_dir_all(path).map_err(|source| StoreError::Remove {
        path: path.to_owned(),
        source,
    })
}
