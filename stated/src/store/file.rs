//! The database file and its directory: ours alone (directory 0700, file 0600), no symlinks.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use redb::backends::FileBackend;
use redb::{Builder, Database};

use super::OpenError;

/// redb's default cache is 1 GiB; job records are small and mostly recent ones are read.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Opens (creating if needed) the database at `path`.
pub(super) fn open_database(path: &Path) -> Result<Database, OpenError> {
    let dir = match (path.is_absolute(), path.parent(), path.file_name()) {
        (true, Some(dir), Some(_)) => dir,
        _ => return Err(OpenError::BadPath(path.to_owned())),
    };
    private_dir(dir)?;
    let file = private_file(path)?;
    let backend = FileBackend::new(file).map_err(|source| OpenError::Database {
        path: path.to_owned(),
        source,
    })?;
    Builder::new()
        .set_cache_size(CACHE_BYTES)
        // A plain open trusts the file and may panic on one damaged outside redb; the check
        // turns that into an error at start instead.
        .set_check_integrity_on_open(true)
        .create_with_backend(backend)
        .map_err(|source| OpenError::Database {
            path: path.to_owned(),
            source,
        })
}

/// Makes sure `dir` exists, is a real directory owned by us, and has mode 0700.
fn private_dir(dir: &Path) -> Result<(), OpenError> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => tracing::info!(dir = %dir.display(), "created the database directory"),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(OpenError::CreateDir {
                path: dir.to_owned(),
                source,
            });
        }
    }
    let meta = fs::symlink_metadata(dir).map_err(|source| OpenError::Inspect {
        path: dir.to_owned(),
        source,
    })?;
    if !meta.file_type().is_dir() {
        return Err(OpenError::NotADirectory(dir.to_owned()));
    }
    check_owner(dir, meta.uid())?;
    if meta.mode() & 0o7777 != 0o700 {
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", meta.mode() & 0o7777),
            "database directory was not 0700; restricting it");
        fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(|source| {
            OpenError::Chmod {
                path: dir.to_owned(),
                source,
            }
        })?;
    }
    Ok(())
}

/// Opens a file of the store without following a symlink, creating it 0600.
pub(super) fn private_file(path: &Path) -> Result<File, OpenError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| OpenError::OpenFile {
            path: path.to_owned(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| OpenError::Inspect {
        path: path.to_owned(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(OpenError::NotAFile(path.to_owned()));
    }
    check_owner(path, meta.uid())?;
    if meta.mode() & 0o7777 != 0o600 {
        tracing::warn!(file = %path.display(), mode = format!("{:o}", meta.mode() & 0o7777),
            "database file was not 0600; restricting it");
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(|source| OpenError::Chmod {
                path: path.to_owned(),
                source,
            })?;
    }
    Ok(file)
}

fn check_owner(path: &Path, owner: u32) -> Result<(), OpenError> {
    let me = nix::unistd::geteuid().as_raw();
    if owner != me {
        return Err(OpenError::NotOwned {
            path: path.to_owned(),
            owner,
            me,
        });
    }
    Ok(())
}
