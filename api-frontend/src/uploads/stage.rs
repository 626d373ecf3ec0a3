//! Writing a checked upload plan under `data_dir/uploads/<job>/`, opening it for the
//! spawner, and removing it.
//!
//! Every file is created relative to an open directory fd with `O_NOFOLLOW | O_EXCL`, and
//! every directory is entered with `O_NOFOLLOW | O_DIRECTORY`, so even a path that slipped
//! past the plan could neither follow a link nor overwrite anything. Directories are made
//! 0700 while they are filled and get their requested mode last, deepest first, so a
//! read-only directory can still receive its files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use joblet_ipc_proto::job::JobId;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fchmod, mkdirat};

use super::UploadError;
use super::plan::{DEFAULT_DIR_MODE, Kind, UploadPlan};

const DIR_NAME: &str = "uploads";

/// The staging area, `data_dir/uploads`.
#[derive(Debug, Clone)]
pub struct UploadStore {
    root: PathBuf,
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn stage_err(path: &str, step: &'static str, e: impl Into<std::io::Error>) -> UploadError {
    UploadError::Stage {
        path: path.to_owned(),
        step,
        source: e.into(),
    }
}

impl UploadStore {
    pub fn new(data_dir: &Path) -> UploadStore {
        UploadStore {
            root: data_dir.join(DIR_NAME),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens the staging area, creating it (0700) if needed.
    fn open_root(&self) -> Result<OwnedFd, UploadError> {
        crate::harden::private_dir(&self.root)
            .map_err(|e| stage_err("", "prepare the staging area", std::io::Error::other(e)))?;
        openat(nix::fcntl::AT_FDCWD, &self.root, dir_flags(), Mode::empty())
            .map_err(|e| stage_err("", "open the staging area", e))
    }

    /// Writes `plan` into a new directory for `job`; on failure nothing is left behind.
    /// Blocking: call it from a blocking task.
    pub fn stage(&self, job: &JobId, plan: &UploadPlan) -> Result<(), UploadError> {
        let root = self.open_root()?;
        mkdirat(&root, job.as_str(), Mode::from_bits_truncate(0o700))
            .map_err(|e| stage_err("", "create the job's staging directory", e))?;
        let result = openat(&root, job.as_str(), dir_flags(), Mode::empty())
            .map_err(|e| stage_err("", "open the job's staging directory", e))
            .and_then(|top| write_tree(top.as_fd(), plan));
        if result.is_err()
            && let Err(e) = self.remove(job)
        {
            tracing::error!(job = %job, error = %e, "cannot remove a partly staged upload");
        }
        result
    }

    /// The job's staging directory, opened for the spawner.
    pub fn open(&self, job: &JobId) -> Result<OwnedFd, UploadError> {
        let root = openat(nix::fcntl::AT_FDCWD, &self.root, dir_flags(), Mode::empty())
            .map_err(|e| stage_err("", "open the staging area", e))?;
        openat(&root, job.as_str(), dir_flags(), Mode::empty())
            .map_err(|e| stage_err("", "open the job's staged uploads", e))
    }

    pub fn exists(&self, job: &JobId) -> bool {
        self.root.join(job.as_str()).symlink_metadata().is_ok()
    }

    /// Removes the job's staging directory; one that does not exist is already removed.
    pub fn remove(&self, job: &JobId) -> std::io::Result<()> {
        remove_tree(&self.root.join(job.as_str()))
    }

    /// Names of everything in the staging area (job ids, or debris).
    pub fn entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes one entry of the staging area by name (a stale job directory).
    pub fn remove_entry(&self, name: &str) -> std::io::Result<()> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(std::io::Error::other(format!(
                "{name:?} is not an entry name"
            )));
        }
        remove_tree(&self.root.join(name))
    }
}

/// Creates every entry below `top`, then applies the directories' modes.
fn write_tree(top: BorrowedFd<'_>, plan: &UploadPlan) -> Result<(), UploadError> {
    let mut order: Vec<&super::plan::Entry> = plan.entries.iter().collect();
    order.sort_by(|a, b| a.depth().cmp(&b.depth()).then_with(|| a.path.cmp(&b.path)));
    // Every directory made, explicit or implied, with the mode it ends with.
    let mut dirs: BTreeMap<String, u32> = BTreeMap::new();
    for entry in order {
        let (parent_path, name) = match entry.path.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, entry.path.as_str()),
        };
        let parent = match parent_path {
            Some(p) => Some(enter(top, p, &mut dirs)?),
            None => None,
        };
        let at = parent.as_ref().map_or(top, |p| p.as_fd());
        match &entry.kind {
            Kind::Dir => {
                match mkdirat(at, name, Mode::from_bits_truncate(0o700)) {
                    Ok(()) => {}
                    // Made earlier as the parent of an entry sorted before it: not possible
                    // with the depth order, but harmless.
                    Err(Errno::EEXIST) if dirs.contains_key(&entry.path) => {}
                    Err(e) => return Err(stage_err(&entry.path, "create the directory", e)),
                }
                dirs.insert(entry.path.clone(), entry.mode);
            }
            Kind::File { content } => write_file(at, name, &entry.path, content, entry.mode)?,
        }
    }
    // Deepest first: a directory losing its write bit must already hold its contents.
    let mut by_depth: Vec<(&String, &u32)> = dirs.iter().collect();
    by_depth.sort_by_key(|(p, _)| std::cmp::Reverse(p.split('/').count()));
    for (path, mode) in by_depth {
        let fd = walk(top, path)?;
        fchmod(&fd, Mode::from_bits_truncate(*mode))
            .map_err(|e| stage_err(path, "set the directory's mode", e))?;
    }
    Ok(())
}

fn write_file(
    at: BorrowedFd<'_>,
    name: &str,
    path: &str,
    content: &[u8],
    mode: u32,
) -> Result<(), UploadError> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(at, name, flags, Mode::from_bits_truncate(0o600))
        .map_err(|e| stage_err(path, "create the file", e))?;
    let mut file = File::from(fd);
    file.write_all(content)
        .map_err(|e| stage_err(path, "write the file", e))?;
    fchmod(&file, Mode::from_bits_truncate(mode))
        .map_err(|e| stage_err(path, "set the file's mode", e))
}

/// Opens directory `path` below `top`, creating missing components (recorded in `dirs`
/// with the default mode).
fn enter(
    top: BorrowedFd<'_>,
    path: &str,
    dirs: &mut BTreeMap<String, u32>,
) -> Result<OwnedFd, UploadError> {
    let mut current: Option<OwnedFd> = None;
    let mut so_far = String::new();
    for component in path.split('/') {
        if !so_far.is_empty() {
            so_far.push('/');
        }
        so_far.push_str(component);
        let at = current.as_ref().map_or(top, |c| c.as_fd());
        if !dirs.contains_key(&so_far) {
            mkdirat(at, component, Mode::from_bits_truncate(0o700))
                .map_err(|e| stage_err(&so_far, "create the directory", e))?;
            dirs.insert(so_far.clone(), DEFAULT_DIR_MODE);
        }
        let next = openat(at, component, dir_flags(), Mode::empty())
            .map_err(|e| stage_err(&so_far, "enter the directory", e))?;
        current = Some(next);
    }
    current.ok_or_else(|| stage_err(path, "enter the directory", Errno::EINVAL))
}

/// Opens an existing directory `path` below `top`.
fn walk(top: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, UploadError> {
    let mut current: Option<OwnedFd> = None;
    for component in path.split('/') {
        let at = current.as_ref().map_or(top, |c| c.as_fd());
        current = Some(
            openat(at, component, dir_flags(), Mode::empty())
                .map_err(|e| stage_err(path, "open the directory", e))?,
        );
    }
    current.ok_or_else(|| stage_err(path, "open the directory", Errno::EINVAL))
}

/// Removes a staged tree, first giving back write access to directories a client made
/// read-only. Links are never followed (nothing here makes any; `remove_dir_all` does not
/// follow them either).
fn remove_tree(path: &Path) -> std::io::Result<()> {
    match path.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if !m.is_dir() => return std::fs::remove_file(path),
        Ok(_) => {}
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    std::fs::remove_dir_all(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uploads::plan::plan;
    use crate::uploads::plan::tests::{dir, file};
    use std::os::unix::fs::MetadataExt;

    fn job() -> JobId {
        JobId::parse(&uuid::Uuid::new_v4().to_string()).unwrap()
    }

    fn mode(p: &Path) -> u32 {
        p.symlink_metadata().unwrap().mode() & 0o7777
    }

    #[test]
    fn stages_a_tree_with_modes_and_removes_it() {
        let data = tempfile::tempdir().unwrap();
        let store = UploadStore::new(data.path());
        let id = job();
        let p = plan(
            vec![
                file("bin/tool", b"#!/bin/sh\necho hi\n", 0o4755),
                dir("ro", 0o555),
                file("ro/inside.txt", b"kept", 0o444),
                file("deep/a/b/c.txt", b"deep", 0o600),
                file("top.txt", b"top", 0),
            ],
            1 << 20,
        )
        .unwrap();
        store.stage(&id, &p).unwrap();
        let base = store.root().join(id.as_str());
        assert_eq!(mode(store.root()), 0o700);
        assert_eq!(mode(&base), 0o700);
        assert_eq!(
            std::fs::read(base.join("bin/tool")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(mode(&base.join("bin/tool")), 0o755, "setuid stripped");
        assert_eq!(
            mode(&base.join("bin")),
            DEFAULT_DIR_MODE,
            "implied directory"
        );
        assert_eq!(mode(&base.join("ro")), 0o555);
        assert_eq!(mode(&base.join("ro/inside.txt")), 0o444);
        assert_eq!(std::fs::read(base.join("deep/a/b/c.txt")).unwrap(), b"deep");
        assert_eq!(mode(&base.join("top.txt")), 0o644);
        // The spawner gets a directory fd.
        let fd = store.open(&id).unwrap();
        let meta = File::from(fd).metadata().unwrap();
        assert!(meta.is_dir());
        assert_eq!(store.entries(), vec![id.to_string()]);
        store.remove(&id).unwrap();
        assert!(!base.exists());
        store.remove(&id).unwrap();
    }

    #[test]
    fn a_failed_stage_leaves_nothing() {
        let data = tempfile::tempdir().unwrap();
        let store = UploadStore::new(data.path());
        let id = job();
        // Bypass the plan's checks to make the stager meet a conflict on disk: a file
        // where a directory is needed.
        let mut p = plan(vec![file("a", b"1", 0)], 10).unwrap();
        p.entries.push(crate::uploads::plan::Entry {
            path: "a/b".into(),
            mode: 0o644,
            kind: Kind::File {
                content: b"2".to_vec(),
            },
        });
        let e = store.stage(&id, &p).unwrap_err();
        assert!(
            matches!(&e, UploadError::Stage { path, .. } if path == "a"),
            "{e}"
        );
        assert!(!store.root().join(id.as_str()).exists());
    }

    #[test]
    fn links_planted_in_the_staging_area_are_not_followed() {
        let data = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let store = UploadStore::new(data.path());
        let id = job();
        let p = plan(vec![file("x/evil", b"owned", 0)], 10).unwrap();
        // Simulate a hostile tree: the job directory exists already with a link in it.
        std::fs::create_dir_all(store.root().join(id.as_str())).unwrap();
        std::os::unix::fs::symlink(outside.path(), store.root().join(id.as_str()).join("x"))
            .unwrap();
        assert!(
            store.stage(&id, &p).is_err(),
            "existing directory is refused"
        );
        assert!(!outside.path().join("evil").exists());
        // Even below an existing job directory, a link is not entered.
        let mut dirs = BTreeMap::new();
        dirs.insert("x".to_owned(), 0o755);
        let top = store.open(&id).unwrap();
        assert!(enter(top.as_fd(), "x", &mut dirs).is_err());
        store.remove(&id).unwrap();
        assert!(outside.path().exists(), "removal does not follow the link");
    }

    #[test]
    fn stray_entries_are_removed_by_name_only() {
        let data = tempfile::tempdir().unwrap();
        let store = UploadStore::new(data.path());
        std::fs::create_dir_all(store.root().join("junk/sub")).unwrap();
        std::fs::set_permissions(
            store.root().join("junk/sub"),
            std::fs::Permissions::from_mode(0o500),
        )
        .unwrap();
        std::fs::write(store.root().join("junk/sub/f"), b"").ok();
        store.remove_entry("junk").unwrap();
        assert!(store.entries().is_empty());
        assert!(store.remove_entry("..").is_err());
        assert!(store.remove_entry("a/b").is_err());
    }
}
