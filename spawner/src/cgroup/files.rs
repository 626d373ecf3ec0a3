//! Reading and writing cgroup files, creating and removing cgroup directories, and the names
//! of job cgroups. Every failure becomes a [`CgroupError`] naming the file.

use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use joblet_ipc_proto::job::JobId;

use super::error::{CgroupError, io_error};

pub(super) const JOB_PREFIX: &str = "job-";
/// How long `rmdir` retries while the kernel still reports the cgroup busy (exiting tasks).
const REMOVE_PATIENCE: Duration = Duration::from_secs(2);

pub(super) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|e| io_error("reading", path, e))
}

/// Writes `value` in one `write(2)`: cgroup files take one value per write.
pub(super) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let fail = |source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(fail)?;
    match f.write(value.as_bytes()).map_err(fail)? {
        n if n == value.len() => Ok(()),
        n => Err(fail(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write ({n} of {} bytes)", value.len()),
        ))),
    }
}

/// Creates a directory that may already exist (our base after a restart). True if created.
pub(super) fn ensure_dir(path: &Path) -> Result<bool, CgroupError> {
    match create_dir(path) {
        Ok(()) => Ok(true),
        Err(_) if path.is_dir() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates a directory that must not exist yet (a job's cgroup: never reuse a stranger's),
/// mode 0755 whatever our umask: persistd reads its files through a directory fd. The umask
/// is lifted around the `mkdir` (the spawner has one thread), which spares a `chmod`.
pub(super) fn create_dir(path: &Path) -> Result<(), CgroupError> {
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let made = std::fs::DirBuilder::new().mode(0o755).create(path);
    nix::sys::stat::umask(umask);
    made.map_err(|source| CgroupError::Create(path.to_owned(), source))
}

/// Removes a cgroup directory. Gone already is fine; busy (tasks still exiting) is retried
/// for a short while, then reported as [`CgroupError::NotEmpty`].
pub(super) fn remove_dir(path: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + REMOVE_PATIENCE;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {
                if Instant::now() >= deadline {
                    return Err(CgroupError::NotEmpty(path.to_owned()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(io_error("removing cgroup", path, e)),
        }
    }
}

/// The pids in `dir/cgroup.procs`.
pub(super) fn procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let parse = |l: &str| {
        l.trim()
            .parse::<i32>()
            .map_err(|_| format!("{l:?} is not a pid"))
    };
    let pids: Result<_, _> = read(&path)?.lines().map(parse).collect();
    pids.map_err(|detail| CgroupError::Parse(path, detail))
}

pub(super) fn attach(dir: &Path, pid: i32) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.procs");
    if pid <= 0 {
        let einval = io::Error::from_raw_os_error(libc::EINVAL);
        return Err(io_error("attaching a pid <= 0 to", &path, einval));
    }
    write(&path, &pid.to_string())
}

/// The value of `key` in a flat keyed file (`key value` per line, as in `cpu.stat`,
/// `memory.events`, `memory.oom_control`).
pub(super) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Like [`keyed_value`] on a file, with an error naming the file and key when absent.
pub(super) fn read_keyed(path: &Path, key: &str) -> Result<u64, CgroupError> {
    keyed_value(&read(path)?, key)
        .ok_or_else(|| CgroupError::Parse(path.to_owned(), format!("no {key:?} entry")))
}

/// The job ids of the `job-<uuid>` directories in `base` (other entries are ignored).
pub(super) fn list_jobs(base: &Path) -> Result<Vec<JobId>, CgroupError> {
    let entries = std::fs::read_dir(base).map_err(|e| io_error("listing", base, e))?;
    let mut jobs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing", base, e))?;
        let name = entry.file_name();
        let id = name.to_str().and_then(|n| n.strip_prefix(JOB_PREFIX));
        if let Some(id) = id.and_then(|n| JobId::parse(n).ok())
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            jobs.push(id);
        }
    }
    Ok(jobs)
}

/// Removes, in reverse order, the directories a failed creation made.
pub(super) fn undo_created(created: &[PathBuf]) {
    for dir in created.iter().rev() {
        if let Err(e) = remove_dir(dir) {
            tracing::error!(path = %dir.display(), error = %e, "could not undo a cgroup creation");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values() {
        let t = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(t, "oom_kill"), Some(3));
        assert_eq!(keyed_value(t, "under_oom"), Some(0));
        assert_eq!(keyed_value(t, "oom"), None);
        assert_eq!(keyed_value("oom_kill x\n", "oom_kill"), None);
    }
}
