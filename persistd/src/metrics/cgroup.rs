//! A job's cgroup directories, as fds handed over by the spawner, and reading one set of
//! counters through them.
//!
//! Files are opened with `openat(2)` relative to those fds, never by path: persistd has no
//! privilege and needs none, and a path could be swapped under it. Each file is opened, read
//! and closed per sample (three syscalls), so a watched job costs only its directory fds
//! between samples, and a removed cgroup shows at the next open (`ENOENT`).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use joblet_ipc_proto::channel::output::CgroupDir;
use joblet_ipc_proto::job::JobId;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, fstatfs};
use tracing::warn;

use super::parse::{self, IoBytes, ParseError};

/// One reading of a job's cgroup. A counter whose file is missing or unreadable reads 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub cpu_usage_ns: u64,
    pub memory_bytes: u64,
    /// 0 = no limit.
    pub memory_limit: u64,
    pub io: IoBytes,
    pub pids: u64,
}

/// Why a `Watch` cannot be sampled; the output connection is closed with this reason.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("Watch names {names} directories but carries {fds} fds")]
    Count { names: usize, fds: usize },
    #[error("the {0:?} directory is given twice")]
    Duplicate(CgroupDir),
    #[error("a cgroup v2 (Unified) directory cannot be combined with v1 directories")]
    Mixed,
    #[error("cannot inspect the {kind:?} fd: {source}")]
    Inspect { kind: CgroupDir, source: nix::Error },
    #[error("the {0:?} fd is not a directory")]
    NotADirectory(CgroupDir),
    #[error("the {kind:?} directory is not on a {expected} filesystem")]
    NotCgroup {
        kind: CgroupDir,
        expected: &'static str,
    },
    #[error(
        "persistd (uid {uid}) may not look up files in the job's {kind:?} cgroup directory; \
         the spawner must create job cgroups searchable by others (mode 0711)"
    )]
    NotSearchable { kind: CgroupDir, uid: u32 },
}

impl WatchError {
    /// True when the spawner sent something no correct spawner sends (the connection is
    /// closed); false for a deployment problem that only keeps this job from being sampled.
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(self, WatchError::NotSearchable { .. })
    }
}

/// The job's cgroup is gone (removed after the job ended): sampling ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// The counters a sample is made of; one warning each, at most, per job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    Cpu,
    Memory,
    MemoryLimit,
    Io,
    Pids,
}

impl Counter {
    const ALL: [Counter; 5] = [
        Counter::Cpu,
        Counter::Memory,
        Counter::MemoryLimit,
        Counter::Io,
        Counter::Pids,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

enum Layout {
    V2 {
        unified: OwnedFd,
    },
    /// Any hierarchy may be absent; its counters then read 0.
    V1 {
        cpu: Option<OwnedFd>,
        cpuacct: Option<OwnedFd>,
        memory: Option<OwnedFd>,
        blkio: Option<OwnedFd>,
        pids: Option<OwnedFd>,
    },
}

/// A watched job's cgroup directories.
pub struct CgroupDirs {
    layout: Layout,
    /// Counters already warned about (bit per [`Counter`]).
    warned: u8,
}

/// Where a counter is read from: a directory, a file in it, and its parser.
struct Source<'a> {
    dir: Option<BorrowedFd<'a>>,
    file: &'static CStr,
    parse: fn(&[u8]) -> Result<Value, ParseError>,
}

enum Value {
    Number(u64),
    Io(IoBytes),
}

/// A file's content as the kernel generated it fits this buffer in one read for every file
/// we read (`io.stat` takes about 70 bytes per device); larger content is read in more steps.
pub const READ_BUF_LEN: usize = 8192;

impl CgroupDirs {
    /// Checks the handed-over fds: one per name, no name twice, v2 or v1 but not both, each a
    /// directory on the cgroup filesystem of its kind.
    pub fn new(names: &[CgroupDir], fds: Vec<OwnedFd>) -> Result<CgroupDirs, WatchError> {
        if names.len() != fds.len() {
            return Err(WatchError::Count {
                names: names.len(),
                fds: fds.len(),
            });
        }
        let mut unified = None;
        let mut v1: [Option<OwnedFd>; 5] = Default::default();
        for (&kind, fd) in names.iter().zip(fds) {
            check_dir(kind, &fd)?;
            let slot = match kind {
                CgroupDir::Unified => &mut unified,
                CgroupDir::Cpu => &mut v1[0],
                CgroupDir::Cpuacct => &mut v1[1],
                CgroupDir::Memory => &mut v1[2],
                CgroupDir::Blkio => &mut v1[3],
                CgroupDir::Pids => &mut v1[4],
            };
            if slot.replace(fd).is_some() {
                return Err(WatchError::Duplicate(kind));
            }
        }
        let layout = match unified {
            Some(_) if v1.iter().any(Option::is_some) => return Err(WatchError::Mixed),
            Some(unified) => Layout::V2 { unified },
            None => {
                let [cpu, cpuacct, memory, blkio, pids] = v1;
                Layout::V1 {
                    cpu,
                    cpuacct,
                    memory,
                    blkio,
                    pids,
                }
            }
        };
        Ok(CgroupDirs { layout, warned: 0 })
    }

    /// Reads every counter. `buf` is reused between calls (no allocation per sample once it
    /// has grown to the largest file). A counter that cannot be read is 0, with one warning
    /// per job; a removed cgroup is [`Gone`].
    pub fn read(&mut self, job: &JobId, buf: &mut Vec<u8>) -> Result<Counters, Gone> {
        let mut c = Counters::default();
        for counter in Counter::ALL {
            let source = source(&self.layout, counter);
            let value = match read_value(&source, buf) {
                Ok(v) => Some(v),
                Err(ReadError::Gone) => return Err(Gone),
                Err(ReadError::Unavailable(why)) => {
                    warn_once(&mut self.warned, job, counter, source.file, &why);
                    None
                }
            };
            match (counter, value) {
                (Counter::Cpu, Some(Value::Number(n))) => c.cpu_usage_ns = n,
                (Counter::Memory, Some(Value::Number(n))) => c.memory_bytes = n,
                (Counter::MemoryLimit, Some(Value::Number(n))) => c.memory_limit = n,
                (Counter::Io, Some(Value::Io(io))) => c.io = io,
                (Counter::Pids, Some(Value::Number(n))) => c.pids = n,
                _ => {}
            }
        }
        Ok(c)
    }
}

fn source(layout: &Layout, counter: Counter) -> Source<'_> {
    let number = |b: &[u8]| parse::single_u64(b).map(Value::Number);
    let (dir, file, parse): (_, &'static CStr, fn(&[u8]) -> _) = match layout {
        Layout::V2 { unified } => {
            let dir = Some(unified.as_fd());
            match counter {
                Counter::Cpu => (dir, c"cpu.stat", |b| {
                    parse::cpu_stat_usage_ns(b).map(Value::Number)
                }),
                Counter::Memory => (dir, c"memory.current", number),
                Counter::MemoryLimit => (dir, c"memory.max", |b| {
                    parse::memory_max(b).map(Value::Number)
                }),
                Counter::Io => (dir, c"io.stat", |b| parse::io_stat(b).map(Value::Io)),
                Counter::Pids => (dir, c"pids.current", number),
            }
        }
        Layout::V1 {
            cpu,
            cpuacct,
            memory,
            blkio,
            pids,
        } => match counter {
            // Where cpu and cpuacct are co-mounted, the cpu directory has the file.
            Counter::Cpu => (borrow(cpuacct).or(borrow(cpu)), c"cpuacct.usage", number),
            Counter::Memory => (borrow(memory), c"memory.usage_in_bytes", number),
            Counter::MemoryLimit => (borrow(memory), c"memory.limit_in_bytes", |b| {
                parse::memory_limit_v1(b).map(Value::Number)
            }),
            // The recursive file counts the whole subtree, like every other counter here
            // (and like v2's io.stat); the plain one would miss child cgroups.
            Counter::Io => (
                borrow(blkio),
                c"blkio.throttle.io_service_bytes_recursive",
                |b| parse::blkio_service_bytes(b).map(Value::Io),
            ),
            Counter::Pids => (borrow(pids), c"pids.current", number),
        },
    };
    Source { dir, file, parse }
}

fn borrow(dir: &Option<OwnedFd>) -> Option<BorrowedFd<'_>> {
    dir.as_ref().map(|d| d.as_fd())
}

fn warn_once(warned: &mut u8, job: &JobId, counter: Counter, file: &CStr, why: &str) {
    if *warned & counter.bit() != 0 {
        return;
    }
    *warned |= counter.bit();
    warn!(%job, file = %file.to_string_lossy(), reason = %why,
        "a cgroup counter cannot be read; it is reported as 0 for this job");
}

enum ReadError {
    Gone,
    Unavailable(String),
}

fn read_value(source: &Source<'_>, buf: &mut Vec<u8>) -> Result<Value, ReadError> {
    let Some(dir) = source.dir else {
        return Err(ReadError::Unavailable(
            "its cgroup directory was not handed over".into(),
        ));
    };
    let len = match read_file(dir, source.file, buf) {
        Ok(len) => len,
        Err(e) if is_removed(e) && dir_removed(dir) => return Err(ReadError::Gone),
        Err(e) => return Err(ReadError::Unavailable(io::Error::from(e).to_string())),
    };
    (source.parse)(&buf[..len]).map_err(|e| ReadError::Unavailable(e.to_string()))
}

/// Reads a whole cgroup file into `buf`, returning its length.
fn read_file(dir: BorrowedFd<'_>, name: &CStr, buf: &mut Vec<u8>) -> Result<usize, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY;
    let fd = openat(dir, name, flags, Mode::empty())?;
    if buf.len() < READ_BUF_LEN {
        buf.resize(READ_BUF_LEN, 0);
    }
    let mut filled = 0;
    loop {
        let n = match nix::unistd::read(&fd, &mut buf[filled..]) {
            Err(Errno::EINTR) => continue,
            r => r?,
        };
        filled += n;
        // The kernel generates a cgroup file whole and copies as much as fits, so a read
        // that leaves room returned all of it; only a full buffer needs another read.
        if n == 0 || filled < buf.len() {
            return Ok(filled);
        }
        let grown = buf.len() * 2;
        buf.resize(grown, 0);
    }
}

fn is_removed(e: Errno) -> bool {
    matches!(e, Errno::ENOENT | Errno::ENODEV)
}

/// Tells a removed cgroup from a missing file: `cgroup.procs` exists in every cgroup
/// directory, v1 and v2, and cannot be opened once the directory is removed.
fn dir_removed(dir: BorrowedFd<'_>) -> bool {
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    matches!(openat(dir, c"cgroup.procs", flags, Mode::empty()), Err(e) if is_removed(e))
}

fn check_dir(kind: CgroupDir, fd: &OwnedFd) -> Result<(), WatchError> {
    let inspect = |source| WatchError::Inspect { kind, source };
    let st = fstat(fd).map_err(inspect)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return Err(WatchError::NotADirectory(kind));
    }
    let fs = fstatfs(fd).map_err(inspect)?.filesystem_type();
    let (expected, name) = match kind {
        CgroupDir::Unified => (CGROUP2_SUPER_MAGIC, "cgroup2"),
        _ => (CGROUP_SUPER_MAGIC, "cgroup (v1)"),
    };
    if fs != expected {
        return Err(WatchError::NotCgroup {
            kind,
            expected: name,
        });
    }
    // Sampling runs without privilege: a directory we may not search would read as zeros
    // forever, so it is refused here, loudly. Other errors (a cgroup removed meanwhile) are
    // the first sample's to report.
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    match openat(fd, c"cgroup.procs", flags, Mode::empty()) {
        Err(Errno::EACCES) => Err(WatchError::NotSearchable {
            kind,
            uid: nix::unistd::geteuid().as_raw(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_fd(path: &std::path::Path) -> OwnedFd {
        std::fs::File::open(path).unwrap().into()
    }

    #[test]
    fn refuses_fds_that_are_not_cgroup_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(matches!(
            CgroupDirs::new(&[CgroupDir::Memory], vec![file.into()]),
            Err(WatchError::NotADirectory(CgroupDir::Memory))
        ));
        assert!(matches!(
            CgroupDirs::new(&[CgroupDir::Unified], vec![dir_fd(tmp.path())]),
            Err(WatchError::NotCgroup {
                kind: CgroupDir::Unified,
                ..
            })
        ));
        assert!(matches!(
            CgroupDirs::new(
                &[CgroupDir::Pids, CgroupDir::Memory],
                vec![dir_fd(tmp.path())]
            ),
            Err(WatchError::Count { names: 2, fds: 1 })
        ));
    }

    #[test]
    fn an_empty_set_reads_zeros_and_is_never_gone() {
        let mut dirs = CgroupDirs::new(&[], vec![]).unwrap();
        let job = JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").unwrap();
        let mut buf = Vec::new();
        assert_eq!(dirs.read(&job, &mut buf), Ok(Counters::default()));
        assert_eq!(dirs.warned, 0b11111);
    }
}
