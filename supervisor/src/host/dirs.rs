//! Directories and files with the narrowest owner and mode, created or checked without
//! following symlinks: a path that is a symlink, or owned by someone other than root or its
//! intended owner, stops the start.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat};
use nix::unistd::{Gid, Uid, fchown};

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{path}: {step} failed: {source}")]
    Io {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("{path} is a symlink; refusing to use it (replace it with a real directory)")]
    Symlink { path: PathBuf },
    #[error("{path} is not a {expected}")]
    WrongType {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{path} is owned by uid {found}, expected {expected} (or root); fix or remove it")]
    ForeignOwner {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{path} has {links} hard links; refusing to hand it to another user")]
    HardLinked { path: PathBuf, links: u64 },
    #[error(
        "uid {uid} cannot reach {target}: {blocker} (mode {mode:04o}, owner {owner}:{group}) \
         denies it search permission"
    )]
    Unreachable {
        uid: u32,
        target: PathBuf,
        blocker: PathBuf,
        mode: u32,
        owner: u32,
        group: u32,
    },
}

/// A directory and who should own it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

fn io<'a>(path: &'a Path, step: &'static str) -> impl FnOnce(nix::Error) -> DirError + 'a {
    move |e| DirError::Io {
        path: path.to_owned(),
        step,
        source: e.into(),
    }
}

/// Creates the missing parents of `path` (root's, mode 0755).
fn create_parents(path: &Path) -> Result<(), DirError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .map_err(|source| DirError::Io {
            path: parent.to_owned(),
            step: "creating parent directories",
            source,
        })
}

/// Creates `spec.path` (and missing parents, root 0755), or checks the existing one, then sets
/// its owner and mode. The final checks and changes go through an `O_NOFOLLOW` descriptor, so
/// a symlink swapped in between cannot redirect them.
pub fn ensure_dir(spec: &DirSpec) -> Result<(), DirError> {
    let path = spec.path.as_path();
    create_parents(path)?;
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(DirError::Io {
                path: path.to_owned(),
                step: "mkdir",
                source,
            });
        }
    }
    let fd = open_nofollow(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let st = fstat(&fd).map_err(io(path, "fstat"))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return Err(DirError::WrongType {
            path: path.to_owned(),
            expected: "directory",
        });
    }
    check_owner(path, st.st_uid, spec.uid)?;
    set_owner_mode(&fd, path, spec)
}

/// Creates the file at `spec.path` (mode `spec.mode`, owned by `spec.uid`) if missing, or
/// checks the existing one is a plain file of that owner with a single link. Used for the
/// audit log, which the frontend may append to but not create (its directory is not its own).
pub fn ensure_file(spec: &DirSpec) -> Result<(), DirError> {
    let path = spec.path.as_path();
    create_parents(path)?;
    let created = open(
        path,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(spec.mode),
    );
    let fd = match created {
        Ok(fd) => return set_owner_mode(&fd, path, spec),
        Err(nix::Error::EEXIST) => open_nofollow(path, OFlag::O_WRONLY | OFlag::O_APPEND)?,
        Err(e) => return Err(io(path, "creating")(e)),
    };
    let st = fstat(&fd).map_err(io(path, "fstat"))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(DirError::WrongType {
            path: path.to_owned(),
            expected: "regular file",
        });
    }
    // An existing file is only accepted from its intended owner: chowning a root-owned one
    // could hand a hard link to some other root file to the frontend.
    if st.st_uid != spec.uid {
        return Err(DirError::ForeignOwner {
            path: path.to_owned(),
            found: st.st_uid,
            expected: spec.uid,
        });
    }
    if st.st_nlink != 1 {
        return Err(DirError::HardLinked {
            path: path.to_owned(),
            links: st.st_nlink,
        });
    }
    set_owner_mode(&fd, path, spec)
}

fn open_nofollow(path: &Path, flags: OFlag) -> Result<OwnedFd, DirError> {
    open(
        path,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // O_NOFOLLOW on a symlink: ELOOP (or ENOTDIR with O_DIRECTORY on some paths).
        nix::Error::ELOOP => DirError::Symlink {
            path: path.to_owned(),
        },
        nix::Error::ENOTDIR if is_symlink(path) => DirError::Symlink {
            path: path.to_owned(),
        },
        nix::Error::ENOTDIR => DirError::WrongType {
            path: path.to_owned(),
            expected: "directory",
        },
        other => io(path, "open")(other),
    })
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

fn check_owner(path: &Path, found: u32, expected: u32) -> Result<(), DirError> {
    if found == expected || found == 0 {
        Ok(())
    } else {
        Err(DirError::ForeignOwner {
            path: path.to_owned(),
            found,
            expected,
        })
    }
}

fn set_owner_mode(fd: &impl AsFd, path: &Path, spec: &DirSpec) -> Result<(), DirError> {
    fchown(
        fd.as_fd(),
        Some(Uid::from_raw(spec.uid)),
        Some(Gid::from_raw(spec.gid)),
    )
    .map_err(io(path, "chown"))?;
    fchmod(fd.as_fd(), Mode::from_bits_truncate(spec.mode)).map_err(io(path, "chmod"))
}

/// Checks that a process with `uid` and groups `gids` can search every directory on the way
/// to `target` (not `target` itself). A helper started under a tempdir of mode 0700 would
/// otherwise fail later with a bare EACCES.
pub fn check_reachable(target: &Path, uid: u32, gids: &[u32]) -> Result<(), DirError> {
    let mut blocker = None;
    for dir in target.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|source| DirError::Io {
            path: dir.to_owned(),
            step: "stat",
            source,
        })?;
        let mode = meta.mode();
        let bit = if meta.uid() == uid {
            0o100
        } else if gids.contains(&meta.gid()) {
            0o010
        } else {
            0o001
        };
        if uid != 0 && mode & bit == 0 {
            blocker = Some((dir.to_owned(), meta));
        }
    }
    match blocker {
        None => Ok(()),
        Some((blocker, meta)) => Err(DirError::Unreachable {
            uid,
            target: target.to_owned(),
            blocker,
            mode: meta.mode() & 0o7777,
            owner: meta.uid(),
            group: meta.gid(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn spec(path: PathBuf, uid: u32, gid: u32, mode: u32) -> DirSpec {
        DirSpec {
            path,
            uid,
            gid,
            mode,
        }
    }

    fn mode_of(p: &Path) -> (u32, u32, u32) {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    }

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn creates_and_repairs_owner_and_mode() {
        if !root() {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b/state");
        ensure_dir(&spec(d.clone(), 64702, 64700, 0o700)).unwrap();
        assert_eq!(mode_of(&d), (64702, 64700, 0o700));
        assert_eq!(mode_of(&t.path().join("a")).2, 0o755);
        // A loose mode is tightened; root-owned is taken over; idempotent.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_dir(&spec(d.clone(), 64702, 64700, 0o700)).unwrap();
        assert_eq!(mode_of(&d), (64702, 64700, 0o700));
        let r = t.path().join("run");
        std::fs::create_dir(&r).unwrap();
        ensure_dir(&spec(r.clone(), 0, 64700, 0o750)).unwrap();
        assert_eq!(mode_of(&r), (0, 64700, 0o750));
    }

    #[test]
    fn refuses_symlinks_foreign_owners_and_files() {
        if !root() {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = ensure_dir(&spec(link, 0, 0, 0o700)).unwrap_err();
        assert!(matches!(err, DirError::Symlink { .. }), "{err}");

        let foreign = t.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        nix::unistd::chown(&foreign, Some(Uid::from_raw(4242)), None).unwrap();
        let err = ensure_dir(&spec(foreign.clone(), 64701, 0, 0o700)).unwrap_err();
        assert!(
            matches!(err, DirError::ForeignOwner { found: 4242, .. }),
            "{err}"
        );
        assert_eq!(mode_of(&foreign).0, 4242, "nothing changed");

        let file = t.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = ensure_dir(&spec(file, 0, 0, 0o700)).unwrap_err();
        assert!(matches!(err, DirError::WrongType { .. }), "{err}");
    }

    #[test]
    fn audit_file_is_created_for_its_owner_and_never_taken_over() {
        if !root() {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("audit/audit.log");
        let s = spec(f.clone(), 64701, 64700, 0o600);
        ensure_file(&s).unwrap();
        assert_eq!(mode_of(&f), (64701, 64700, 0o600));
        std::fs::write(&f, b"kept\n").unwrap();
        ensure_file(&s).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"kept\n");

        let root_owned = t.path().join("root.log");
        std::fs::write(&root_owned, b"").unwrap();
        let err = ensure_file(&spec(root_owned, 64701, 64700, 0o600)).unwrap_err();
        assert!(
            matches!(err, DirError::ForeignOwner { found: 0, .. }),
            "{err}"
        );

        let linked = t.path().join("linked.log");
        std::fs::hard_link(&f, &linked).unwrap();
        let err = ensure_file(&s).unwrap_err();
        assert!(
            matches!(err, DirError::HardLinked { links: 2, .. }),
            "{err}"
        );

        let sym = t.path().join("sym.log");
        std::os::unix::fs::symlink("/etc/passwd", &sym).unwrap();
        let err = ensure_file(&spec(sym, 64701, 64700, 0o600)).unwrap_err();
        assert!(matches!(err, DirError::Symlink { .. }), "{err}");
        assert_eq!(mode_of(Path::new("/etc/passwd")).0, 0);
    }

    #[test]
    fn reachability_names_the_blocking_directory() {
        let t = tempfile::tempdir().unwrap();
        let inner = t.path().join("x/y");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let owner = std::fs::metadata(t.path()).unwrap().uid();
        let stranger = if me == 0 { 64799 } else { me + 1 };
        let err = check_reachable(&inner.join("z"), stranger, &[]).unwrap_err();
        match err {
            DirError::Unreachable { blocker, .. } => assert_eq!(blocker, t.path()),
            other => panic!("{other}"),
        }
        assert!(check_reachable(&inner.join("z"), owner, &[]).is_ok());
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        assert!(check_reachable(&inner.join("z"), stranger, &[]).is_ok());
    }
}
