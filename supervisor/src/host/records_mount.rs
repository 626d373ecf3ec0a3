//! The spawner's job records live in memory, on a tmpfs the supervisor mounts on the
//! spawner's directory for as long as it runs.
//!
//! The records must outlive a spawner restart, which memory does, not a host reboot, which the
//! jobs do not survive either. On the journalled disk they cost the spawner's single loop a
//! directory and three files created, renamed and removed per job: 3 ms of `unlinkat` per job
//! on this ext4 (`perf trace -s` of the spawner), up to 5 ms for one call.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use tracing::{info, warn};

/// The mount's source name, which tells our tmpfs from anyone else's in `mountinfo`.
const SOURCE: &str = "joblet-spawner";
/// Records are a few hundred bytes per job; this bounds what a runaway could pin in memory.
const OPTIONS: &str = "mode=0700,size=64m,nr_inodes=65536";

#[derive(Debug, thiserror::Error)]
pub enum RecordsMountError {
    #[error("mounting a tmpfs for the spawner's records on {path}: {source}")]
    Mount { path: PathBuf, source: nix::Error },
    #[error("reading /proc/self/mountinfo: {0}")]
    MountInfo(std::io::Error),
    #[error("resolving {path}: {source}")]
    Resolve {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is already a mount point of something else ({fstype} from {from}); the \
         spawner's directory must be ours"
    )]
    Foreign {
        path: PathBuf,
        fstype: String,
        from: String,
    },
}

/// Our tmpfs on the spawner's directory; unmounted when dropped.
#[derive(Debug)]
pub struct RecordsMount {
    path: PathBuf,
}

impl RecordsMount {
    /// Mounts the tmpfs on `path` (an existing directory), or takes over the one a supervisor
    /// killed before it could unmount left there, with the records of its jobs.
    pub fn mount(path: &Path) -> Result<RecordsMount, RecordsMountError> {
        // mountinfo names mount points by their resolved path: a symlinked parent (say
        // /opt -> /data/opt) must not hide the tmpfs a killed supervisor left.
        let resolved =
            std::fs::canonicalize(path).map_err(|source| RecordsMountError::Resolve {
                path: path.to_owned(),
                source,
            })?;
        let path = resolved.as_path();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(RecordsMountError::MountInfo)?;
        match mounted_at(&mountinfo, path) {
            Some((fstype, source)) if fstype == "tmpfs" && source == SOURCE => {
                info!(path = %path.display(), "reusing the spawner's records tmpfs");
            }
            Some((fstype, from)) => {
                return Err(RecordsMountError::Foreign {
                    path: path.to_owned(),
                    fstype,
                    from,
                });
            }
            None => mount_tmpfs(path)?,
        }
        Ok(RecordsMount {
            path: path.to_owned(),
        })
    }
}

fn mount_tmpfs(path: &Path) -> Result<(), RecordsMountError> {
    let err = |source| RecordsMountError::Mount {
        path: path.to_owned(),
        source,
    };
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    nix::mount::mount(Some(SOURCE), path, Some("tmpfs"), flags, Some(OPTIONS)).map_err(err)?;
    // Not propagated to the mount namespaces that share ours: it is nobody else's business.
    let private = MsFlags::MS_PRIVATE;
    if let Err(e) = nix::mount::mount(None::<&str>, path, None::<&str>, private, None::<&str>) {
        let _ = nix::mount::umount2(path, MntFlags::MNT_DETACH);
        return Err(err(e));
    }
    info!(path = %path.display(), "mounted a tmpfs for the spawner's records");
    Ok(())
}

impl Drop for RecordsMount {
    fn drop(&mut self) {
        // Jobs whose end the frontend has not recorded keep their records for the next start,
        // which reports them (as after a supervisor killed before it could unmount).
        let jobs = std::fs::read_dir(self.path.join("jobs"));
        if jobs.is_ok_and(|mut entries| entries.next().is_some()) {
            warn!(path = %self.path.display(),
                "keeping the spawner's records tmpfs mounted: it holds jobs whose end is not \
                 recorded yet; the next start takes them over");
            return;
        }
        // Detached: a process still holding a directory there (a shim outliving the stop)
        // keeps its view, and the host's mount table is clean at once.
        match nix::mount::umount2(&self.path, MntFlags::MNT_DETACH) {
            Ok(()) => info!(path = %self.path.display(), "unmounted the spawner's records tmpfs"),
            Err(e) => warn!(path = %self.path.display(), error = %e,
                "cannot unmount the spawner's records tmpfs"),
        }
    }
}

/// The file system type and source of the mount whose mount point is `path`, if any (the
/// last one: mounts stack).
fn mounted_at(mountinfo: &str, path: &Path) -> Option<(String, String)> {
    let wanted = escape(&path.to_string_lossy());
    mountinfo.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        let mut right = right.split(' ');
        let (fstype, source) = (right.next()?, right.next()?);
        (mount_point == wanted).then(|| (fstype.to_owned(), source.to_owned()))
    })
}

/// A path as `mountinfo` writes it: space, tab, newline and backslash in octal.
fn escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
90 22 0:55 / /opt/joblet/run/spawner rw,nosuid,nodev,noexec shared:40 - tmpfs joblet-spawner rw,size=65536k,mode=700
91 22 0:56 / /srv/my\\040run/spawner rw - tmpfs other rw
";

    #[test]
    fn finds_the_mount_at_a_path() {
        let at = |p: &str| mounted_at(MOUNTINFO, Path::new(p));
        assert_eq!(
            at("/opt/joblet/run/spawner"),
            Some(("tmpfs".into(), "joblet-spawner".into()))
        );
        assert_eq!(
            at("/srv/my run/spawner"),
            Some(("tmpfs".into(), "other".into()))
        );
        assert_eq!(at("/opt/joblet/run"), None);
        assert_eq!(at("/"), Some(("ext4".into(), "/dev/vda".into())));
    }

    #[test]
    fn mounts_reuses_and_unmounts_its_own_tmpfs_and_refuses_a_foreign_mount() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: needs root to mount");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let is_mounted = || {
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            mounted_at(&info, &path).is_some()
        };
        let first = RecordsMount::mount(&path).unwrap();
        assert!(is_mounted());
        std::fs::write(path.join("record"), b"kept").unwrap();
        // A supervisor killed without unmounting: the next one takes the tmpfs over, also
        // when its configured path goes through a symlink.
        std::mem::forget(first);
        let links = tempfile::tempdir().unwrap();
        let via_link = links.path().join("link");
        std::os::unix::fs::symlink(&path, &via_link).unwrap();
        let second = RecordsMount::mount(&via_link).unwrap();
        assert_eq!(std::fs::read(path.join("record")).unwrap(), b"kept");
        // Records of jobs not yet settled keep it mounted.
        std::fs::create_dir_all(path.join("jobs/some-job")).unwrap();
        drop(second);
        assert!(is_mounted());
        std::fs::remove_dir(path.join("jobs/some-job")).unwrap();
        drop(RecordsMount::mount(&path).unwrap());
        assert!(!is_mounted());
        assert!(!path.join("record").exists());

        let flags = MsFlags::MS_NOSUID;
        nix::mount::mount(Some("someone"), &path, Some("tmpfs"), flags, None::<&str>).unwrap();
        let err = RecordsMount::mount(&path).unwrap_err().to_string();
        nix::mount::umount2(&path, MntFlags::MNT_DETACH).unwrap();
        assert!(err.contains("tmpfs from someone"), "{err}");
    }
}
