//! `--upload` and `--upload-dir`: files read here and sent inline in RunJob.
//!
//! A file is uploaded under its base name; a directory's contents land at the workspace
//! root with their relative paths (as Joblet does). Only permission bits travel (no
//! setuid/setgid/sticky). Symbolic links inside a directory are skipped, so an upload never
//! reaches outside the tree the user named.

use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::path::{Component, Path, PathBuf};

use joblet_api_proto::FileUpload;

/// Uploads travel inside one gRPC message; keep well under the server's 128 MiB.
pub const MAX_TOTAL_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{flag}: cannot read {}: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag}: {} is not a directory", path.display())]
    NotADirectory { flag: &'static str, path: PathBuf },
    #[error("{flag}: {} has a name that is not UTF-8", path.display())]
    NotUtf8 { flag: &'static str, path: PathBuf },
    #[error("{flag}: {} has no file name", path.display())]
    NoName { flag: &'static str, path: PathBuf },
    #[error("{flag}: two uploads would both be written to '{target}'")]
    Duplicate { flag: &'static str, target: String },
    #[error(
        "--upload: the uploads total more than {} MiB; use a volume for large data",
        MAX_TOTAL_BYTES >> 20
    )]
    TooLarge,
}

/// The collected uploads, and notes for stderr (skipped links).
#[derive(Debug, Default)]
pub struct Collected {
    pub files: Vec<FileUpload>,
    pub total_bytes: u64,
    pub notes: Vec<String>,
    targets: BTreeSet<String>,
}

pub fn collect(uploads: &[PathBuf], upload_dirs: &[PathBuf]) -> Result<Collected, UploadError> {
    let mut c = Collected::default();
    for path in uploads {
        let meta = stat("--upload", path)?;
        if meta.is_dir() {
            c.walk("--upload", path, path)?;
        } else {
            let name = path
                .file_name()
                .ok_or_else(|| UploadError::NoName {
                    flag: "--upload",
                    path: path.clone(),
                })?
                .to_str()
                .ok_or_else(|| UploadError::NotUtf8 {
                    flag: "--upload",
                    path: path.clone(),
                })?
                .to_string();
            c.add_file("--upload", path, name, &meta)?;
        }
    }
    for dir in upload_dirs {
        if !stat("--upload-dir", dir)?.is_dir() {
            return Err(UploadError::NotADirectory {
                flag: "--upload-dir",
                path: dir.clone(),
            });
        }
        c.walk("--upload-dir", dir, dir)?;
    }
    Ok(c)
}

fn stat(flag: &'static str, path: &Path) -> Result<Metadata, UploadError> {
    // Follows a link the user named on the command line: that is their choice.
    fs::metadata(path).map_err(|source| UploadError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

impl Collected {
    fn walk(&mut self, flag: &'static str, root: &Path, dir: &Path) -> Result<(), UploadError> {
        let read_err = |source| UploadError::Read {
            flag,
            path: dir.to_path_buf(),
            source,
        };
        let mut entries: Vec<_> = fs::read_dir(dir)
            .map_err(read_err)?
            .collect::<Result<_, _>>()
            .map_err(read_err)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(|source| UploadError::Read {
                flag,
                path: path.clone(),
                source,
            })?;
            let target = relative_target(flag, root, &path)?;
            if meta.file_type().is_symlink() {
                self.notes.push(format!(
                    "note: {flag}: skipping symbolic link {}",
                    path.display()
                ));
            } else if meta.is_dir() {
                self.claim(flag, &target)?;
                self.files.push(FileUpload {
                    path: target,
                    content: Vec::new(),
                    mode: mode_of(&meta),
                    is_directory: true,
                });
                self.walk(flag, root, &path)?;
            } else if meta.is_file() {
                self.add_file(flag, &path, target, &meta)?;
            } else {
                self.notes.push(format!(
                    "note: {flag}: skipping {} (not a regular file)",
                    path.display()
                ));
            }
        }
        Ok(())
    }

    fn add_file(
        &mut self,
        flag: &'static str,
        path: &Path,
        target: String,
        meta: &Metadata,
    ) -> Result<(), UploadError> {
        self.total_bytes = self.total_bytes.saturating_add(meta.len());
        if self.total_bytes > MAX_TOTAL_BYTES {
            return Err(UploadError::TooLarge);
        }
        self.claim(flag, &target)?;
        let content = fs::read(path).map_err(|source| UploadError::Read {
            flag,
            path: path.to_path_buf(),
            source,
        })?;
        self.files.push(FileUpload {
            path: target,
            content,
            mode: mode_of(meta),
            is_directory: false,
        });
        Ok(())
    }

    fn claim(&mut self, flag: &'static str, target: &str) -> Result<(), UploadError> {
        if !self.targets.insert(target.to_string()) {
            return Err(UploadError::Duplicate {
                flag,
                target: target.to_string(),
            });
        }
        Ok(())
    }
}

/// `path` relative to `root`, with `/` separators on every platform.
fn relative_target(flag: &'static str, root: &Path, path: &Path) -> Result<String, UploadError> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let mut parts = Vec::new();
    for component in rel.components() {
        if let Component::Normal(part) = component {
            parts.push(part.to_str().ok_or_else(|| UploadError::NotUtf8 {
                flag,
                path: path.to_path_buf(),
            })?);
        }
    }
    Ok(parts.join("/"))
}

#[cfg(unix)]
fn mode_of(meta: &Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn mode_of(meta: &Metadata) -> u32 {
    match (meta.is_dir(), meta.permissions().readonly()) {
        (true, _) => 0o755,
        (false, true) => 0o444,
        (false, false) => 0o644,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_by_base_name_and_directories_by_relative_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("script.py");
        fs::write(&file, b"print(1)").unwrap();
        let tree = dir.path().join("proj");
        fs::create_dir_all(tree.join("src")).unwrap();
        fs::write(tree.join("main.py"), b"m").unwrap();
        fs::write(tree.join("src").join("lib.py"), b"l").unwrap();

        let c = collect(&[file, tree], &[]).unwrap();
        let got: Vec<(&str, bool)> = c
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.is_directory))
            .collect();
        assert_eq!(
            got,
            [
                ("script.py", false),
                ("main.py", false),
                ("src", true),
                ("src/lib.py", false)
            ]
        );
        assert_eq!(c.files[0].content, b"print(1)");
        assert_eq!(c.total_bytes, 10);
    }

    #[test]
    fn clashing_targets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["a", "b"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
            fs::write(dir.path().join(sub).join("same.txt"), b"x").unwrap();
        }
        let err = collect(
            &[dir.path().join("a/same.txt"), dir.path().join("b/same.txt")],
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("same.txt"), "{err}");
    }

    #[test]
    fn missing_paths_and_non_directories_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let err = collect(&[dir.path().join("nope")], &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("--upload: cannot read"),
            "{err}"
        );
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let err = collect(&[], &[file]).unwrap_err();
        assert!(err.to_string().starts_with("--upload-dir:"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn only_permission_bits_travel_and_links_are_skipped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        fs::create_dir(&tree).unwrap();
        let tool = tree.join("tool");
        fs::write(&tool, b"#!/bin/sh").unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", tree.join("link")).unwrap();

        let c = collect(&[], &[tree]).unwrap();
        assert_eq!(c.files.len(), 1);
        assert_eq!(c.files[0].path, "tool");
        assert_eq!(c.files[0].mode, 0o755);
        assert!(
            c.notes.iter().any(|n| n.contains("symbolic link")),
            "{:?}",
            c.notes
        );
    }
}
