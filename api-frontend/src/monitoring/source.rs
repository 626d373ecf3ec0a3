//! Where the collectors read from: the host's `/proc`, `/sys` and `/etc`, or a captured tree
//! in tests. Everything read here is world-readable, so the unprivileged frontend can.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest file read (mountinfo on a host with many mounts is the biggest).
const MAX_FILE: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    Parse { file: &'static str, reason: String },
}

impl CollectError {
    pub fn parse(file: &'static str, reason: impl Into<String>) -> CollectError {
        CollectError::Parse {
            file,
            reason: reason.into(),
        }
    }
}

/// The roots of the three trees the collectors read.
#[derive(Debug, Clone)]
pub struct Source {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub etc: PathBuf,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            etc: PathBuf::from("/etc"),
        }
    }
}

impl Source {
    pub fn proc_file(&self, rel: &str) -> Result<String, CollectError> {
        read_text(&self.proc.join(rel))
    }

    pub fn sys_file(&self, rel: &str) -> Result<String, CollectError> {
        read_text(&self.sys.join(rel))
    }

    pub fn etc_file(&self, rel: &str) -> Result<String, CollectError> {
        read_text(&self.etc.join(rel))
    }
}

/// Reads a (small, text) kernel file; invalid UTF-8 is replaced rather than refused, since
/// names in it (interfaces, mount points, commands) are not ours to trust.
pub fn read_text(path: &Path) -> Result<String, CollectError> {
    let err = |source| CollectError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut buf = Vec::new();
    file.take(MAX_FILE).read_to_end(&mut buf).map_err(err)?;
    Ok(match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}
