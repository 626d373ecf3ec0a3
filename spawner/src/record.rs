//! Per-job records on disk, so that a spawner killed at any moment can pick its jobs up again.
//!
//! `state_dir/jobs/<id>/` (0700, root) holds:
//! - `record`: written by the spawner before the shim is forked, rewritten when the shim's pid
//!   is known and when a stop is requested;
//! - `started`: written by the shim once the command was exec'd;
//! - `exit`: written by the shim when the command ended (or failed to start).
//!
//! Each file is replaced atomically (temp file, rename), so a reader sees the old or the new
//! content, never a mix. Files start with a magic and version, then postcard.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use joblet_ipc_proto::{codec, job::JobId};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

const MAGIC: &[u8; 4] = b"JBSR";
/// 2: the job file records the user-namespace slot.
const VERSION: u8 = 2;
/// Records are tiny; anything larger is not ours.
const MAX_FILE_LEN: u64 = 64 * 1024;
/// Longest launch-failure message kept (it ends up in an IPC frame and in logs).
pub const MAX_MESSAGE_LEN: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid record: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RecordError {
    let path = path.to_path_buf();
    move |source| RecordError::Io { what, path, source }
}

/// A process named so that a reused pid cannot be mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: i32,
    /// Start time in clock ticks since boot (/proc/PID/stat field 22).
    pub start_ticks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopCause {
    /// A client asked (StopJob) or the spawner is shutting down.
    Stopped,
    /// The job ran past its timeout.
    Timeout,
    /// cgroup v1: the job reached its memory limit and the spawner, which owns OOM decisions
    /// there, kills the whole job (v2's `memory.oom.group` does it in the kernel).
    OutOfMemory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    pub cause: StopCause,
    /// When the grace period ends and everything is killed (boot-time ns).
    pub kill_at: u64,
}

/// The spawner's own record of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFile {
    /// When the job times out (boot-time ns); 0 = never.
    pub timeout_at: u64,
    /// The job's shim, once forked.
    pub shim: Option<ProcRef>,
    pub stop: Option<StopRequest>,
    /// The user-namespace slot (range of host ids) the job holds, if it has one.
    pub userns_slot: Option<u32>,
}

/// Written by the shim once the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedFile {
    /// Host pid of the job's PID 1.
    pub job_pid: i32,
    pub started_ns: u64,
}

/// Written by the shim when the job is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitFile {
    /// The command ran and ended; `wait_status` is the raw waitpid status.
    Exited { wait_status: i32, ended_ns: u64 },
    /// The command never ran. `exit_code` is 127 (not found), 126 (not executable) or -1.
    LaunchFailed {
        exit_code: i32,
        message: String,
        ended_ns: u64,
    },
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(VERSION);
    // Our own plain structs always encode; an empty body would be refused on reading.
    out.extend(postcard::to_allocvec(value).unwrap_or_default());
    out
}

fn decode<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, RecordError> {
    let corrupt = |reason: String| RecordError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let body = bytes.strip_prefix(MAGIC.as_slice());
    let body = body.ok_or_else(|| corrupt("bad magic".into()))?;
    match body.split_first() {
        Some((&VERSION, rest)) => codec::decode(rest).map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown version {v}"))),
        None => Err(corrupt("empty".into())),
    }
}

/// Replaces `path` atomically with `bytes`.
///
/// No fsync: the records only have to outlive the spawner (killed, restarted), and the page
/// cache already guarantees that. After a host crash every job is gone with the machine and
/// the frontend reconciles them as lost whatever the files say, so syncing would buy nothing
/// and cost a disk flush on every job's start and exit path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(0o600);
    let mut f = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, path)
}

/// One job's record directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobDir {
    path: PathBuf,
}

/// The files of a job directory.
pub const JOB: &str = "record";
pub const STARTED: &str = "started";
pub const EXIT: &str = "exit";

impl JobDir {
    pub fn new(jobs_dir: &Path, job: &JobId) -> JobDir {
        JobDir {
            path: jobs_dir.join(job.as_str()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory (refusing an existing one: job ids are never reused).
    pub fn create(&self) -> Result<(), RecordError> {
        let mut b = fs::DirBuilder::new();
        b.mode(0o700);
        b.create(&self.path).map_err(io("create", &self.path))
    }

    pub fn remove(&self) -> Result<(), RecordError> {
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &self.path)(e)),
            _ => Ok(()),
        }
    }

    /// Replaces the record file `name` ([`JOB`], [`STARTED`], [`EXIT`]).
    pub fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), RecordError> {
        let path = self.path.join(name);
        write_atomic(&path, &encode(value)).map_err(io("write", &path))
    }

    /// Reads the record file `name`; `None` when it does not exist.
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, RecordError> {
        let path = self.path.join(name);
        let nofollow = libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nofollow)
            .open(&path);
        let mut bytes = Vec::new();
        match file.and_then(|f| f.take(MAX_FILE_LEN).read_to_end(&mut bytes)) {
            Ok(_) => decode(&path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }
}

/// The job directories present, and the names that are not job ids (left alone, reported).
pub fn scan(jobs_dir: &Path) -> Result<(Vec<JobId>, Vec<String>), RecordError> {
    let (mut ids, mut strays) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(jobs_dir).map_err(io("list", jobs_dir))? {
        let name = entry.map_err(io("list", jobs_dir))?.file_name();
        let name = name.to_string_lossy().into_owned();
        match JobId::parse(&name) {
            Ok(id) => ids.push(id),
            Err(_) => strays.push(name),
        }
    }
    ids.sort();
    Ok((ids, strays))
}

/// Cuts a message to at most [`MAX_MESSAGE_LEN`] bytes on a char boundary.
pub fn bounded_message(mut m: String) -> String {
    m.truncate(m.floor_char_boundary(MAX_MESSAGE_LEN));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> JobId {
        JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").unwrap()
    }

    fn tempdir() -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("spawner-record-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_every_file() {
        let base = tempdir();
        let dir = JobDir::new(&base, &id());
        dir.create().unwrap();
        assert!(
            dir.create().is_err(),
            "an existing job dir must not be reused"
        );
        assert_eq!(dir.read::<JobFile>(JOB).unwrap(), None);
        let job = JobFile {
            timeout_at: 2,
            shim: Some(ProcRef {
                pid: 3,
                start_ticks: 4,
            }),
            stop: Some(StopRequest {
                cause: StopCause::Timeout,
                kill_at: 5,
            }),
            userns_slot: Some(7),
        };
        dir.write(JOB, &job).unwrap();
        assert_eq!(dir.read(JOB).unwrap(), Some(job));
        let started = StartedFile {
            job_pid: 9,
            started_ns: 10,
        };
        dir.write(STARTED, &started).unwrap();
        assert_eq!(dir.read(STARTED).unwrap(), Some(started));
        let exit = ExitFile::LaunchFailed {
            exit_code: 127,
            message: "command not found: x".into(),
            ended_ns: 11,
        };
        dir.write(EXIT, &exit).unwrap();
        assert_eq!(dir.read(EXIT).unwrap(), Some(exit));
        assert_eq!(scan(&base).unwrap().0, vec![id()]);
        dir.remove().unwrap();
        assert!(scan(&base).unwrap().0.is_empty());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn corrupt_files_are_refused() {
        let p = Path::new("/x");
        assert!(decode::<StartedFile>(p, b"").is_err());
        assert!(decode::<StartedFile>(p, b"JBSR").is_err());
        assert!(decode::<StartedFile>(p, b"JBSR\x01\x00\x00").is_err());
        let mut good = encode(&StartedFile {
            job_pid: 1,
            started_ns: 2,
        });
        assert!(decode::<StartedFile>(p, &good).is_ok());
        good.push(0);
        assert!(decode::<StartedFile>(p, &good).is_err());
    }

    #[test]
    fn scan_reports_strays() {
        let base = tempdir();
        fs::create_dir(base.join("not-a-job")).unwrap();
        let (ids, strays) = scan(&base).unwrap();
        assert!(ids.is_empty());
        assert_eq!(strays, vec!["not-a-job".to_string()]);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn messages_are_bounded_on_char_boundaries() {
        let m = bounded_message("é".repeat(MAX_MESSAGE_LEN));
        assert!(m.len() <= MAX_MESSAGE_LEN);
        assert_eq!(bounded_message("short".into()), "short");
    }
}
