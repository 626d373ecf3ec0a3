//! One job's stored output: `<jobs>/<uuid>/{stdout,stderr,index}`, the count of records
//! readers may see, the single writer slot, and the job's metric samples (`metrics`).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use joblet_ipc_proto::channel::logs::LogRange;
use joblet_ipc_proto::job::{JobId, Stream};
use tokio::sync::{Notify, watch};

use super::error::StoreError;
use super::metric_log::MetricLog;
use super::ranges::{ChunkAt, RangeBuilder};
use super::record::{RECORD_LEN, Record};
use super::recover::{self, RecoveryReport};
use super::writer::LogWriter;

/// What readers may see of a job's output. Published only after the records it counts are
/// written, so a reader that sees `chunks = n` can read records `0..n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Chunks stored (the end record is not a chunk).
    pub chunks: u64,
    /// The end record is durable: no chunk will ever be added.
    pub complete: bool,
    /// The job's output was deleted; readers stop.
    pub deleted: bool,
}

/// Where the next write goes; owned by whoever holds the writer slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriterState {
    /// Bytes stored per stream (index by [`stream_index`]); the next chunk starts here.
    pub ends: [u64; 2],
    /// Position of the next index record, i.e. the sequence number of the next chunk.
    pub next_seq: u64,
    /// A chunk whose data is in its file but whose index record could not be written yet.
    pub pending: Option<Record>,
}

pub(crate) enum WriterSlot {
    Idle(WriterState),
    Busy,
    Complete,
}

/// The outcome of asking for a job's writer.
pub enum TakeWriter {
    Writer(LogWriter),
    /// Another pump is reading this job's pipes.
    Busy,
    /// The output is complete; there is nothing more to read.
    Complete,
}

pub(crate) struct Files {
    pub index: File,
    pub data: [File; 2],
}

pub struct JobLog {
    id: JobId,
    dir: PathBuf,
    pub(crate) files: Files,
    pub(crate) progress: watch::Sender<Progress>,
    slot: Mutex<WriterSlot>,
    /// Woken whenever the writer goes back to its slot.
    writer_back: Notify,
    metrics: Arc<MetricLog>,
    /// The job's directory was created by this process and its entry in the jobs directory
    /// is not synced yet. The sync waits for the end of the output ([`JobLog::sync_new_dir`],
    /// called off the runtime) rather than holding up the attach, which a follower waits on.
    dir_unsynced: AtomicBool,
}

pub fn stream_index(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

pub const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

const INDEX_FILE: &str = "index";
const DATA_FILES: [&str; 2] = ["stdout", "stderr"];

impl JobLog {
    /// Opens the job's directory under `jobs_dir`, creating it (0700) and its files (0600)
    /// when missing, and recovers what a crash may have left half done.
    pub fn open(
        jobs_dir: &Path,
        id: &JobId,
        now_ns: u64,
    ) -> Result<(Arc<JobLog>, RecoveryReport), StoreError> {
        // The id is a validated UUID, so this cannot leave `jobs_dir`.
        let dir = jobs_dir.join(id.as_str());
        let created = create_private_dir(&dir)?;
        let files = Files {
            index: open_rw(&dir.join(INDEX_FILE))?,
            data: [
                open_rw(&dir.join(DATA_FILES[0]))?,
                open_rw(&dir.join(DATA_FILES[1]))?,
            ],
        };
        let mut found = recover::recover(&files, now_ns).map_err(|source| StoreError::Recover {
            job: id.clone(),
            source,
        })?;
        // Sampling of a job whose output is complete has ended: its samples are closed.
        let metrics = MetricLog::open(&dir, id, found.complete)?;
        found.report.dropped_metric_bytes = metrics.dropped_bytes;
        let progress = Progress {
            chunks: found.chunks,
            complete: found.complete,
            deleted: false,
        };
        let slot = match found.writer {
            Some(state) => WriterSlot::Idle(state),
            None => WriterSlot::Complete,
        };
        let log = Arc::new(JobLog {
            id: id.clone(),
            dir,
            files,
            progress: watch::Sender::new(progress),
            slot: Mutex::new(slot),
            writer_back: Notify::new(),
            metrics: metrics.log,
            dir_unsynced: AtomicBool::new(created),
        });
        Ok((log, found.report))
    }

    pub fn id(&self) -> &JobId {
        &self.id
    }

    /// Makes the job directory's entry durable, like the data it holds, if that is not done
    /// yet. Blocking (fsync).
    pub(crate) fn sync_new_dir(&self) -> Result<(), StoreError> {
        if !self.dir_unsynced.load(Ordering::Acquire) {
            return Ok(());
        }
        let jobs_dir = self.dir.parent().unwrap_or(&self.dir);
        sync_dir(jobs_dir).map_err(|source| StoreError::Dir {
            path: jobs_dir.to_owned(),
            source,
        })?;
        self.dir_unsynced.store(false, Ordering::Release);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// The job's metric samples.
    pub fn metrics(&self) -> &Arc<MetricLog> {
        &self.metrics
    }

    /// A receiver that wakes on every new chunk, on completion and on deletion.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// True while a pump holds the writer (the job's pipes are being read).
    pub fn is_attached(&self) -> bool {
        matches!(*self.lock_slot(), WriterSlot::Busy)
    }

    /// Takes the single writer. It goes back to the slot when dropped unfinished.
    pub fn take_writer(self: &Arc<Self>) -> TakeWriter {
        let mut slot = self.lock_slot();
        match std::mem::replace(&mut *slot, WriterSlot::Busy) {
            WriterSlot::Idle(state) => TakeWriter::Writer(LogWriter::new(self.clone(), state)),
            WriterSlot::Busy => TakeWriter::Busy,
            WriterSlot::Complete => {
                *slot = WriterSlot::Complete;
                TakeWriter::Complete
            }
        }
    }

    pub(crate) fn release_writer(&self, state: Option<WriterState>) {
        *self.lock_slot() = match state {
            Some(s) => WriterSlot::Idle(s),
            None => WriterSlot::Complete,
        };
        self.writer_back.notify_waiters();
    }

    /// Resolves once no pump holds the writer (at once if none does).
    pub async fn detached(&self) {
        loop {
            let back = self.writer_back.notified();
            tokio::pin!(back);
            // Registered before the check, so a release in between is not missed.
            back.as_mut().enable();
            if !self.is_attached() {
                return;
            }
            back.await;
        }
    }

    pub(crate) fn mark_deleted(&self) {
        self.progress.send_modify(|p| p.deleted = true);
        self.metrics.mark_deleted();
    }

    fn lock_slot(&self) -> MutexGuard<'_, WriterSlot> {
        // The slot holds plain data that is valid at every point, so a panic elsewhere
        // cannot have left it half updated.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ranges of chunks `from..`, at most `max_chunks` of them, never past what
    /// [`Progress::chunks`] allows. Reads only the index: the data stays in the files, which
    /// the reader reads itself ([`JobLog::open_data_readonly`]). Blocking.
    pub fn read_ranges(&self, from: u64, max_chunks: u64) -> Result<Vec<LogRange>, StoreError> {
        let upto = self.progress().chunks.min(from.saturating_add(max_chunks));
        if from >= upto {
            return Ok(Vec::new());
        }
        let count = (upto - from) as usize;
        let mut raw = vec![0u8; count * RECORD_LEN];
        self.files
            .index
            .read_exact_at(&mut raw, from * RECORD_LEN as u64)
            .map_err(|source| self.read_error(from, source))?;
        let mut ranges = RangeBuilder::default();
        for (i, rec) in raw.chunks_exact(RECORD_LEN).enumerate() {
            ranges.push(self.chunk_at(from + i as u64, rec)?);
        }
        Ok(ranges.finish())
    }

    fn chunk_at(&self, seq: u64, raw: &[u8]) -> Result<ChunkAt, StoreError> {
        let mut rec = [0u8; RECORD_LEN];
        rec.copy_from_slice(raw);
        let corrupt = |source| StoreError::Corrupt {
            job: self.id.clone(),
            seq,
            source,
        };
        match Record::decode(&rec).map_err(corrupt)? {
            Record::Chunk {
                stream,
                offset,
                len,
                at_ns,
            } => Ok(ChunkAt {
                seq,
                stream,
                offset,
                len,
                at_ns,
            }),
            Record::End { .. } => {
                let e = io::Error::new(io::ErrorKind::InvalidData, "end record inside the log");
                Err(self.read_error(seq, e))
            }
        }
    }

    /// The job's `stdout` and `stderr` data files, opened again read-only for a reader: it
    /// gets its own descriptors, never the ones this process writes with. Each is checked to
    /// be the very file this log writes (device and inode), so a job directory that was
    /// deleted or replaced in between is refused rather than served. Blocking.
    pub fn open_data_readonly(&self) -> Result<[File; 2], StoreError> {
        let open = |i: usize| -> Result<File, StoreError> {
            let path = self.dir.join(DATA_FILES[i]);
            let err = |source| StoreError::Open {
                path: path.clone(),
                source,
            };
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(err)?;
            let (ours, theirs) = (
                self.files.data[i].metadata().map_err(err)?,
                file.metadata().map_err(err)?,
            );
            if (ours.dev(), ours.ino()) != (theirs.dev(), theirs.ino()) {
                return Err(err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "not the file this job's log writes (its directory was replaced)",
                )));
            }
            Ok(file)
        };
        Ok([open(0)?, open(1)?])
    }

    fn read_error(&self, seq: u64, source: io::Error) -> StoreError {
        StoreError::Read {
            job: self.id.clone(),
            seq,
            source,
        }
    }
}

/// Whether the job's stored output is complete, from the last record of its index alone. A
/// directory that is not one (a symlink, say), or has no index, says no: [`JobLog::open`]
/// then reports or repairs it.
pub(crate) fn stored_complete(jobs_dir: &Path, id: &JobId) -> Result<bool, StoreError> {
    // The id is a validated UUID, so this cannot leave `jobs_dir`.
    let dir = jobs_dir.join(id.as_str());
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return Ok(false);
    }
    let path = dir.join(INDEX_FILE);
    let index = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(index) => index,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(StoreError::Open { path, source }),
    };
    recover::is_complete(&index).map_err(|source| StoreError::Recover {
        job: id.clone(),
        source,
    })
}

/// Creates `dir` with mode 0700; returns whether it was new. An existing directory is
/// tightened to 0700 too.
pub(crate) fn create_private_dir(dir: &Path) -> Result<bool, StoreError> {
    let err = |source| StoreError::Dir {
        path: dir.to_owned(),
        source,
    };
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::symlink_metadata(dir).map_err(err)?;
            if !meta.is_dir() {
                return Err(err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a directory",
                )));
            }
            if meta.permissions().mode() & 0o777 != 0o700 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(err)?;
            }
            Ok(false)
        }
        Err(e) => Err(err(e)),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Read-write, never `O_APPEND`: `splice(2)` writes at explicit offsets, and refuses
/// append-mode files. `O_NOFOLLOW` keeps a planted symlink from redirecting our writes.
fn open_rw(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })
}
