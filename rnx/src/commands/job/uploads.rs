//! `--upload` and `--upload-dir`: files sent inline in RunJob.
//!
//! A file is uploaded under its base name; a directory's contents land at the workspace
//! root with their relative paths (as Joblet does). Only permission bits travel (no
//! setuid/setgid/sticky). Inside a directory, a symbolic link to a file within the same tree
//! is uploaded as a copy of that file; a link that leads outside the tree, or nowhere, and
//! any special file (FIFO, socket, device) is refused with its path, so an upload never
//! carries more than the tree the user named (Joblet's rnx followed such links).
//!
//! Uploading is done in two steps: [`plan`] walks the paths and checks names, sizes and the
//! total before anything is read; [`read`] then reads the files, reporting progress.

use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use joblet_api_proto::FileUpload;

/// Uploads travel inside one gRPC message; keep well under the server's 128 MiB.
pub const MAX_TOTAL_BYTES: u64 = 100 * 1024 * 1024;
const READ_CHUNK: usize = 256 * 1024;

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
        "{flag}: refusing {}: it is a symbolic link to {}, outside {}",
        path.display(), target.display(), root.display()
    )]
    LinkOutside {
        flag: &'static str,
        path: PathBuf,
        target: PathBuf,
        root: PathBuf,
    },
    #[error("{flag}: refusing {}: it is a symbolic link to nothing", path.display())]
    LinkDangling { flag: &'static str, path: PathBuf },
    #[error(
        "{flag}: refusing {}: it is a {kind}; only regular files and directories can be \
         uploaded",
        path.display()
    )]
    Special {
        flag: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error(
        "--upload: the uploads total more than {} MiB; use a volume for large data",
        MAX_TOTAL_BYTES >> 20
    )]
    TooLarge,
}

/// One thing to create in the workspace: a directory, or a file read from `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub target: String,
    pub mode: u32,
    pub source: Option<PathBuf>,
    pub size: u64,
    flag: &'static str,
}

/// What will be uploaded, checked but not read yet; and notes for stderr.
#[derive(Debug, Default)]
pub struct Plan {
    pub entries: Vec<Entry>,
    pub total_bytes: u64,
    pub notes: Vec<String>,
    targets: BTreeSet<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn file_count(&self) -> usize {
        self.entries.iter().filter(|e| e.source.is_some()).count()
    }
}

pub fn plan(uploads: &[PathBuf], upload_dirs: &[PathBuf]) -> Result<Plan, UploadError> {
    let mut p = Plan::default();
    for path in uploads {
        let meta = stat("--upload", path)?;
        if meta.is_dir() {
            p.walk_root("--upload", path)?;
        } else if meta.is_file() {
            let name = base_name("--upload", path)?;
            p.add_file("--upload", path, name, &meta)?;
        } else {
            return Err(special("--upload", path, &meta));
        }
    }
    for dir in upload_dirs {
        if !stat("--upload-dir", dir)?.is_dir() {
            return Err(UploadError::NotADirectory {
                flag: "--upload-dir",
                path: dir.clone(),
            });
        }
        p.walk_root("--upload-dir", dir)?;
    }
    Ok(p)
}

/// Reads the planned files, calling `progress` with the bytes read so far.
pub fn read(plan: Plan, mut progress: impl FnMut(u64)) -> Result<Vec<FileUpload>, UploadError> {
    let mut done = 0u64;
    let mut files = Vec::with_capacity(plan.entries.len());
    for entry in plan.entries {
        let Some(source) = &entry.source else {
            files.push(FileUpload {
                path: entry.target,
                content: Vec::new(),
                mode: entry.mode,
                is_directory: true,
            });
            continue;
        };
        let content = read_file(entry.flag, source, entry.size, &mut done, &mut progress)?;
        files.push(FileUpload {
            path: entry.target,
            content,
            mode: entry.mode,
            is_directory: false,
        });
    }
    Ok(files)
}

fn read_file(
    flag: &'static str,
    path: &Path,
    expected: u64,
    done: &mut u64,
    progress: &mut impl FnMut(u64),
) -> Result<Vec<u8>, UploadError> {
    let read_err = |source| UploadError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::open(path).map_err(read_err)?;
    let mut content = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = file.read(&mut chunk).map_err(read_err)?;
        if n == 0 {
            return Ok(content);
        }
        *done += n as u64;
        // A file that grew since it was planned still counts against the limit.
        if *done > MAX_TOTAL_BYTES {
            return Err(UploadError::TooLarge);
        }
        content.extend_from_slice(&chunk[..n]);
        progress(*done);
    }
}

fn stat(flag: &'static str, path: &Path) -> Result<Metadata, UploadError> {
    // Follows a link the user named on the command line: that is their choice.
    fs::metadata(path).map_err(|source| UploadError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

fn base_name(flag: &'static str, path: &Path) -> Result<String, UploadError> {
    path.file_name()
        .ok_or_else(|| UploadError::NoName {
            flag,
            path: path.to_path_buf(),
        })?
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| UploadError::NotUtf8 {
            flag,
            path: path.to_path_buf(),
        })
}

impl Plan {
    fn walk_root(&mut self, flag: &'static str, root: &Path) -> Result<(), UploadError> {
        let real_root = fs::canonicalize(root).map_err(|source| UploadError::Read {
            flag,
            path: root.to_path_buf(),
            source,
        })?;
        self.walk(flag, root, &real_root, root)
    }

    fn walk(
        &mut self,
        flag: &'static str,
        root: &Path,
        real_root: &Path,
        dir: &Path,
    ) -> Result<(), UploadError> {
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
                self.add_link(flag, root, real_root, &path, target)?;
            } else if meta.is_dir() {
                self.claim(flag, &target)?;
                self.entries.push(Entry {
                    target,
                    mode: mode_of(&meta),
                    source: None,
                    size: 0,
                    flag,
                });
                self.walk(flag, root, real_root, &path)?;
            } else if meta.is_file() {
                self.add_file(flag, &path, target, &meta)?;
            } else {
                return Err(special(flag, &path, &meta));
            }
        }
        Ok(())
    }

    /// A link inside an uploaded tree: a copy of its file if it stays inside the tree.
    fn add_link(
        &mut self,
        flag: &'static str,
        root: &Path,
        real_root: &Path,
        path: &Path,
        target: String,
    ) -> Result<(), UploadError> {
        let Ok(resolved) = fs::canonicalize(path) else {
            return Err(UploadError::LinkDangling {
                flag,
                path: path.to_path_buf(),
            });
        };
        if !resolved.starts_with(real_root) {
            return Err(UploadError::LinkOutside {
                flag,
                path: path.to_path_buf(),
                target: resolved,
                root: root.to_path_buf(),
            });
        }
        let meta = stat(flag, &resolved)?;
        if meta.is_dir() {
            // Its files are uploaded where they really are; following it could loop.
            self.notes.push(format!(
                "note: {flag}: skipping {}, a symbolic link to a directory of the same upload",
                path.display()
            ));
            return Ok(());
        }
        if !meta.is_file() {
            return Err(special(flag, path, &meta));
        }
        self.add_file(flag, path, target, &meta)
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
        self.entries.push(Entry {
            target,
            mode: mode_of(meta),
            source: Some(path.to_path_buf()),
            size: meta.len(),
            flag,
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

fn special(flag: &'static str, path: &Path, meta: &Metadata) -> UploadError {
    UploadError::Special {
        flag,
        path: path.to_path_buf(),
        kind: special_kind(meta),
    }
}

#[cfg(unix)]
fn special_kind(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &Metadata) -> &'static str {
    "special file"
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
#[path = "uploads_tests.rs"]
mod tests;
