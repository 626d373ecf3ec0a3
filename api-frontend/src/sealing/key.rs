//! The sealing key file: 32 random bytes in `data_dir/sealing.key`, mode 0600, owned by the
//! frontend's user, created once and never rewritten (rewriting it would make every sealed
//! secret of a SCHEDULED job unreadable).

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

pub const KEY_FILE: &str = "sealing.key";
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("sealing key {path}: cannot {step}: {source}")]
    Io {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
    #[error(
        "sealing key {path}: {why}; the secrets of SCHEDULED jobs depend on it, so it is not \
         replaced automatically (if no job is SCHEDULED, delete it and restart)"
    )]
    Unusable { path: PathBuf, why: String },
    #[error("cannot draw random bytes for the sealing key")]
    Random,
}

/// Reads the key, creating it first if it does not exist.
pub fn load_or_create(dir: &Path) -> Result<[u8; KEY_LEN], KeyFileError> {
    let path = dir.join(KEY_FILE);
    crate::harden::private_dir(dir).map_err(|e| KeyFileError::Io {
        path: path.clone(),
        step: "prepare its directory",
        source: std::io::Error::other(e),
    })?;
    match std::fs::symlink_metadata(&path) {
        Ok(_) => read(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(dir, &path),
        Err(source) => Err(KeyFileError::Io {
            path,
            step: "inspect it",
            source,
        }),
    }
}

fn read(path: &Path) -> Result<[u8; KEY_LEN], KeyFileError> {
    let unusable = |why: String| KeyFileError::Unusable {
        path: path.to_owned(),
        why,
    };
    let io = |step, source| KeyFileError::Io {
        path: path.to_owned(),
        step,
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nofollow())
        .open(path)
        .map_err(|e| io("open it (it must be a regular file, not a link)", e))?;
    let meta = file.metadata().map_err(|e| io("inspect it", e))?;
    if !meta.is_file() {
        return Err(unusable("not a regular file".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(unusable(format!(
            "owned by uid {}, not by this daemon (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(unusable(format!(
            "mode {:o} lets others read it; it must be 0600",
            meta.mode() & 0o777
        )));
    }
    if meta.len() != KEY_LEN as u64 {
        return Err(unusable(format!(
            "{} bytes long, expected {KEY_LEN}",
            meta.len()
        )));
    }
    let mut key = [0u8; KEY_LEN];
    file.read_exact(&mut key).map_err(|e| io("read it", e))?;
    Ok(key)
}

/// Writes a new key atomically: a temporary file, synced, renamed into place, the directory
/// synced, so a crash leaves either no key or a whole one.
fn create(dir: &Path, path: &Path) -> Result<[u8; KEY_LEN], KeyFileError> {
    let io = |step, source| KeyFileError::Io {
        path: path.to_owned(),
        step,
        source,
    };
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| KeyFileError::Random)?;
    let tmp = dir.join(format!("{KEY_FILE}.new"));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove a stale temporary key", e)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(&tmp)
        .map_err(|e| io("create it", e))?;
    file.write_all(&key).map_err(|e| io("write it", e))?;
    file.sync_all().map_err(|e| io("sync it", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io("move it into place", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync its directory", e))?;
    tracing::info!(path = %path.display(), "created a new sealing key for scheduled jobs' secrets");
    Ok(key)
}

fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let meta = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a, b, "the key must never change once created");
        assert_ne!(a, [0u8; KEY_LEN]);
    }

    #[test]
    fn damaged_or_exposed_keys_are_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, b"short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("5 bytes long"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"short", "left untouched");

        std::fs::write(&path, [7u8; KEY_LEN]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("0600"), "{e}");
    }

    #[test]
    fn a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, [1u8; KEY_LEN]).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(KEY_FILE)).unwrap();
        assert!(load_or_create(dir.path()).is_err());
    }
}
