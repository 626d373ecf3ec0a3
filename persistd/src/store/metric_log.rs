//! One job's metric samples: `<jobs>/<uuid>/metrics`, an append-only file of fixed-size
//! records next to the job's output, deleted with it.
//!
//! **Bounded**: a job keeps its newest [`KEEP_SAMPLES`] samples (24 hours at the default
//! 5 s interval, 1.6 MiB). When the file reaches a quarter more than that, the newest
//! `KEEP_SAMPLES` are copied to `metrics.tmp`, which is synced and renamed over `metrics`:
//! one atomic step, so a crash leaves either file whole, and the copy costs four record
//! writes per sample on average.
//!
//! **Crash safety**, like the output index: a record is written whole at its position with
//! one `pwrite`; on open a partial record at the tail is cut, and so are trailing records
//! that fail their checksum or do not continue the sequence (a tail the kernel extended but
//! never filled). Samples are not synced one by one (1,000 jobs every 5 s would be 200
//! fsyncs a second); a killed process loses nothing the kernel took, a power cut at most the
//! unsynced tail. The file is synced when sampling ends.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use joblet_ipc_proto::channel::logs::MetricSample;
use joblet_ipc_proto::job::JobId;
use tokio::sync::watch;
use tracing::{info, warn};

use super::error::StoreError;
use super::sample_record::{self, SAMPLE_RECORD_LEN};

/// Samples kept per job.
pub const KEEP_SAMPLES: u64 = 17_280;

/// Records read per `pread` (96 KiB).
const READ_RECORDS: usize = 1024;

const FILE_NAME: &str = "metrics";
const TMP_NAME: &str = "metrics.tmp";
const REC: u64 = SAMPLE_RECORD_LEN as u64;

/// What readers may see of a job's samples; published after the records it counts are
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricProgress {
    /// The oldest sample kept.
    pub first_seq: u64,
    /// The sequence number the next sample gets.
    pub next_seq: u64,
    /// The job's output is complete and its sampling has ended: no sample will follow.
    pub closed: bool,
    /// The job was deleted; readers stop.
    pub deleted: bool,
}

pub struct MetricLog {
    job: JobId,
    dir: PathBuf,
    keep: u64,
    file: Mutex<SampleFile>,
    progress: watch::Sender<MetricProgress>,
}

struct SampleFile {
    file: File,
    first_seq: u64,
    next_seq: u64,
    last: Option<MetricSample>,
    /// The last attempt to drop old samples failed; warn again only after one succeeds.
    compact_failing: bool,
}

/// What opening found: the log and the bytes of torn or invalid tail it cut off.
pub(crate) struct OpenedMetrics {
    pub log: Arc<MetricLog>,
    pub dropped_bytes: u64,
}

impl MetricLog {
    /// Opens (creating) the samples of the job whose directory is `dir`, cutting a torn tail.
    /// `closed` is true when the job's output is already complete.
    pub(crate) fn open(dir: &Path, job: &JobId, closed: bool) -> Result<OpenedMetrics, StoreError> {
        Self::open_keeping(dir, job, closed, KEEP_SAMPLES)
    }

    pub(crate) fn open_keeping(
        dir: &Path,
        job: &JobId,
        closed: bool,
        keep: u64,
    ) -> Result<OpenedMetrics, StoreError> {
        let recover_err = |source| StoreError::MetricRecover {
            job: job.clone(),
            source,
        };
        // A copy a crash interrupted; `metrics` itself is whole.
        match std::fs::remove_file(dir.join(TMP_NAME)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(recover_err(e)),
            _ => {}
        }
        let path = dir.join(FILE_NAME);
        let file = open_rw(&path, false).map_err(|source| StoreError::Open { path, source })?;
        let found = recover(&file).map_err(recover_err)?;
        let progress = MetricProgress {
            first_seq: found.first_seq,
            next_seq: found.first_seq + found.count,
            closed,
            deleted: false,
        };
        let log = MetricLog {
            job: job.clone(),
            dir: dir.to_owned(),
            keep: keep.max(1),
            file: Mutex::new(SampleFile {
                file,
                first_seq: progress.first_seq,
                next_seq: progress.next_seq,
                last: found.last,
                compact_failing: false,
            }),
            progress: watch::Sender::new(progress),
        };
        Ok(OpenedMetrics {
            log: Arc::new(log),
            dropped_bytes: found.dropped_bytes,
        })
    }

    pub fn job(&self) -> &JobId {
        &self.job
    }

    pub fn progress(&self) -> MetricProgress {
        *self.progress.borrow()
    }

    /// A receiver that wakes on every new sample, on close and on deletion.
    pub fn subscribe(&self) -> watch::Receiver<MetricProgress> {
        self.progress.subscribe()
    }

    pub fn is_deleted(&self) -> bool {
        self.progress.borrow().deleted
    }

    /// The newest sample, if any (the baseline for the next CPU percentage after a restart).
    pub fn last(&self) -> Option<MetricSample> {
        self.lock().last.clone()
    }

    /// Samples stored and kept.
    pub fn count(&self) -> u64 {
        let p = self.progress();
        p.next_seq - p.first_seq
    }

    /// Stores one sample; returns its sequence number. A failed write is redone at the same
    /// position by the next append, so a torn record never stays in the middle.
    pub fn append(&self, sample: &MetricSample) -> Result<u64, StoreError> {
        let mut f = self.lock();
        let seq = f.next_seq;
        let at = (seq - f.first_seq) * REC;
        f.file
            .write_all_at(&sample_record::encode(seq, sample), at)
            .map_err(|source| StoreError::MetricAppend {
                job: self.job.clone(),
                seq,
                source,
            })?;
        f.next_seq += 1;
        f.last = Some(sample.clone());
        if f.next_seq - f.first_seq >= self.keep + self.keep / 4 {
            self.drop_oldest(&mut f);
        }
        let (first, next) = (f.first_seq, f.next_seq);
        self.progress.send_modify(|p| {
            p.first_seq = first;
            p.next_seq = next;
        });
        Ok(seq)
    }

    /// No sample will follow: syncs the file and tells followers. They are told even if the
    /// sync fails (the samples are in the page cache; only a power cut could lose them).
    pub fn close(&self) -> Result<(), StoreError> {
        let synced = self.lock().file.sync_data();
        self.progress.send_modify(|p| p.closed = true);
        synced.map_err(|source| StoreError::MetricSync {
            job: self.job.clone(),
            source,
        })
    }

    /// Reads up to `max` samples from `from` on (from the oldest kept, if `from` was
    /// dropped). Returns the sequence number of the first sample returned.
    pub fn read_batch(
        &self,
        from: u64,
        max: usize,
    ) -> Result<(u64, Vec<MetricSample>), StoreError> {
        let f = self.lock();
        let from = from.max(f.first_seq);
        let upto = f
            .next_seq
            .min(from.saturating_add(max.min(READ_RECORDS) as u64));
        if from >= upto {
            return Ok((from, Vec::new()));
        }
        let mut raw = vec![0u8; ((upto - from) * REC) as usize];
        f.file
            .read_exact_at(&mut raw, (from - f.first_seq) * REC)
            .map_err(|source| StoreError::MetricRead {
                job: self.job.clone(),
                seq: from,
                source,
            })?;
        drop(f);
        let mut out = Vec::with_capacity(raw.len() / SAMPLE_RECORD_LEN);
        for (i, chunk) in raw.chunks_exact(SAMPLE_RECORD_LEN).enumerate() {
            let want = from + i as u64;
            let (seq, sample) = decode(chunk).map_err(|source| StoreError::MetricCorrupt {
                job: self.job.clone(),
                seq: want,
                source,
            })?;
            if seq != want {
                return Err(StoreError::MetricCorrupt {
                    job: self.job.clone(),
                    seq: want,
                    source: sample_record::SampleRecordError::Checksum,
                });
            }
            out.push(sample);
        }
        Ok((from, out))
    }

    pub(crate) fn mark_deleted(&self) {
        self.progress.send_modify(|p| p.deleted = true);
    }

    fn lock(&self) -> MutexGuard<'_, SampleFile> {
        // Every field is updated only after the write it describes succeeded, so a panic
        // elsewhere cannot leave the state ahead of the file.
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the newest `keep` samples. A failure leaves the file as it was (it grows past
    /// the bound until a later attempt succeeds) and is logged once.
    fn drop_oldest(&self, f: &mut SampleFile) {
        // A deleted job's directory was renamed away; a new one may exist at the same path.
        if self.is_deleted() {
            return;
        }
        let count = f.next_seq - f.first_seq;
        let dropped = count.saturating_sub(self.keep);
        match self.copy_newest(f, dropped, count) {
            Ok(file) => {
                f.file = file;
                f.first_seq += dropped;
                if std::mem::take(&mut f.compact_failing) {
                    info!(job = %self.job, "old metric samples dropped again");
                }
            }
            Err(source) => {
                let _ = std::fs::remove_file(self.dir.join(TMP_NAME));
                if !std::mem::replace(&mut f.compact_failing, true) {
                    let e = StoreError::MetricCompact {
                        job: self.job.clone(),
                        source,
                    };
                    warn!(error = %e, "the job's metric file grows past its bound until this succeeds");
                }
            }
        }
    }

    fn copy_newest(&self, f: &SampleFile, dropped: u64, count: u64) -> io::Result<File> {
        let tmp_path = self.dir.join(TMP_NAME);
        let tmp = open_rw(&tmp_path, true)?;
        let mut buf = vec![0u8; READ_RECORDS * SAMPLE_RECORD_LEN];
        let mut at = dropped;
        while at < count {
            let n = (count - at).min(READ_RECORDS as u64);
            let part = &mut buf[..(n * REC) as usize];
            f.file.read_exact_at(part, at * REC)?;
            tmp.write_all_at(part, (at - dropped) * REC)?;
            at += n;
        }
        tmp.sync_data()?;
        std::fs::rename(&tmp_path, self.dir.join(FILE_NAME))?;
        Ok(tmp)
    }
}

fn decode(chunk: &[u8]) -> Result<(u64, MetricSample), sample_record::SampleRecordError> {
    let mut rec = [0u8; SAMPLE_RECORD_LEN];
    rec.copy_from_slice(chunk);
    sample_record::decode(&rec)
}

struct Recovered {
    first_seq: u64,
    count: u64,
    last: Option<MetricSample>,
    dropped_bytes: u64,
}

/// Finds the valid records of a sample file and cuts everything after them.
fn recover(file: &File) -> io::Result<Recovered> {
    let len = file.metadata()?.len();
    let mut whole = len / REC;
    let read = |i: u64| -> io::Result<Option<(u64, MetricSample)>> {
        let mut rec = [0u8; SAMPLE_RECORD_LEN];
        file.read_exact_at(&mut rec, i * REC)?;
        Ok(sample_record::decode(&rec).ok())
    };
    let first_seq = match whole {
        0 => None,
        _ => read(0)?.map(|(seq, _)| seq),
    };
    let Some(first_seq) = first_seq else {
        // Nothing valid at all: an empty file, or a first record that never got written.
        if len > 0 {
            file.set_len(0)?;
        }
        return Ok(Recovered {
            first_seq: 0,
            count: 0,
            last: None,
            dropped_bytes: len,
        });
    };
    let mut last = None;
    while whole > 0 {
        match read(whole - 1)? {
            Some((seq, sample)) if seq == first_seq + whole - 1 => {
                last = Some(sample);
                break;
            }
            _ => whole -= 1,
        }
    }
    let kept = whole * REC;
    if kept < len {
        file.set_len(kept)?;
    }
    Ok(Recovered {
        first_seq,
        count: whole,
        last,
        dropped_bytes: len - kept,
    })
}

/// Read-write, 0600, never following a planted symlink; `fresh` truncates.
fn open_rw(path: &Path, fresh: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(fresh)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}
