//! Uploads: the directory tree the frontend staged (its own files, passed as a directory fd),
//! copied into the job's `/work`.
//!
//! The shim reads it, as host root in the host's namespaces (so it can read the frontend's
//! files, which a job in a user namespace could not): every name is opened relative to its
//! parent's fd with `O_PATH | O_NOFOLLOW`, its type taken from that fd, and only then is it
//! reopened for reading through `/proc/self/fd`, so a name swapped meanwhile cannot make it
//! follow a symlink or open a device. Regular files and directories only; permission bits
//! without setuid, setgid and sticky. The tree is held in memory, bounded by the job's disk
//! size (it could not fit otherwise), and handed to the init in its copy of the shim's memory.
//!
//! The init writes it into its fresh `/work` before the identity drop, owned by the job's uid
//! and gid. Nothing else exists there yet, so no path can lead outside.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::unistd::{Gid, Uid};

use super::{At, LaunchPlan, StepError, StepResult, env::WORK_DIR};

/// Most files and directories in one upload.
const MAX_ENTRIES: usize = 100_000;
/// Deepest directory nesting.
const MAX_DEPTH: usize = 128;

/// One uploaded file or directory, its path relative to `/work`.
pub(super) struct Entry {
    path: CString,
    mode: u32,
    /// `None` for a directory.
    data: Option<Vec<u8>>,
}

fn too_big(disk_mb: u64) -> StepError {
    let why = format!("uploads exceed the job's disk limit ({disk_mb} MiB)");
    StepError::msg(why)
}

fn failure(path: &str, e: impl std::fmt::Display) -> StepError {
    StepError::msg(format!("upload {path}: {e}"))
}

/// Reads the staged tree under `dir` (in the shim).
pub(super) fn read(dir: OwnedFd, disk_mb: u64) -> StepResult<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut left = disk_mb.saturating_mul(1 << 20);
    walk(dir.as_fd(), "", &mut entries, &mut left).map_err(|e| e.unwrap_or(too_big(disk_mb)))?;
    Ok(entries)
}

/// Adds the tree under `dir` to `out`; `left` is what the job's disk can still take.
/// `Err(None)` when the uploads do not fit.
fn walk(
    dir: BorrowedFd<'_>,
    prefix: &str,
    out: &mut Vec<Entry>,
    left: &mut u64,
) -> Result<(), Option<StepError>> {
    let fail = |path: &str, e: &dyn std::fmt::Display| Some(failure(path, e));
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let listing = openat(dir, c".", flags, Mode::empty()).and_then(nix::dir::Dir::from_fd);
    let mut names = Vec::new();
    for entry in listing.map_err(|e| fail(prefix, &e))? {
        let name = entry.map_err(|e| fail(prefix, &e))?.file_name().to_owned();
        if ![&b"."[..], b".."].contains(&name.as_bytes()) {
            names.push(name);
        }
    }
    names.sort();
    for name in names {
        let path = match prefix {
            "" => name.to_string_lossy().into_owned(),
            p => format!("{p}/{}", name.to_string_lossy()),
        };
        let depth = path.matches('/').count();
        if out.len() >= MAX_ENTRIES || depth >= MAX_DEPTH {
            let why = format!("more than {MAX_ENTRIES} entries or {MAX_DEPTH} levels");
            return Err(fail(&path, &why));
        }
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(dir, name.as_c_str(), flags, Mode::empty()).map_err(|e| fail(&path, &e))?;
        let st = fstat(&fd).map_err(|e| fail(&path, &e))?;
        // The inode just inspected, whatever happened to its name meanwhile.
        let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let reopen =
            |flags| nix::fcntl::open(proc_path.as_str(), flags | OFlag::O_CLOEXEC, Mode::empty());
        let c_path = CString::new(path.as_str()).map_err(|e| fail(&path, &e))?;
        let mode = st.st_mode & 0o777;
        let data = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => None,
            SFlag::S_IFREG => {
                let file = reopen(OFlag::O_RDONLY | OFlag::O_NOCTTY);
                let file = std::fs::File::from(file.map_err(|e| fail(&path, &e))?);
                let mut data = Vec::new();
                let read = file.take(*left + 1).read_to_end(&mut data);
                read.map_err(|e| fail(&path, &e))?;
                *left = left.checked_sub(data.len() as u64).ok_or(None)?;
                Some(data)
            }
            SFlag::S_IFLNK => return Err(fail(&path, &"symlinks are not allowed")),
            _ => {
                let only = "only regular files and directories are allowed";
                return Err(fail(&path, &only));
            }
        };
        let is_dir = data.is_none();
        out.push(Entry {
            path: c_path,
            mode,
            data,
        });
        if is_dir {
            let sub = reopen(OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(|e| fail(&path, &e))?;
            walk(sub.as_fd(), &path, out, left)?;
        }
    }
    Ok(())
}

/// Writes the entries into `/work` (in the init), owned by the job's uid and gid.
pub(super) fn write(entries: &[Entry], plan: &LaunchPlan) -> StepResult {
    if entries.is_empty() {
        return Ok(());
    }
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let work = nix::fcntl::open(WORK_DIR, flags, Mode::empty()).at(|| "open /work for uploads")?;
    let (uid, gid) = (Some(Uid::from_raw(plan.uid)), Some(Gid::from_raw(plan.gid)));
    let file_flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY;
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
    for e in entries {
        let fail = |err: Errno| match err {
            Errno::ENOSPC | Errno::EDQUOT => too_big(plan.disk_mb),
            err => failure(&e.path.to_string_lossy(), err),
        };
        let (at, private) = (e.path.as_c_str(), Mode::from_bits_truncate(0o700));
        let nofollow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match &e.data {
            None => nix::sys::stat::mkdirat(&work, at, private)
                .and_then(|()| openat(&work, at, dir_flags | nofollow, Mode::empty())),
            Some(_) => openat(&work, at, file_flags | nofollow, private),
        };
        let mut file = std::fs::File::from(fd.map_err(fail)?);
        if let Some(data) = &e.data {
            let errno = |err: std::io::Error| Errno::from_raw(err.raw_os_error().unwrap_or(0));
            file.write_all(data).map_err(|err| fail(errno(err)))?;
        }
        nix::unistd::fchown(&file, uid, gid).map_err(fail)?;
        nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(e.mode)).map_err(fail)?;
    }
    Ok(())
}
