//! Self-hardening at start: the frontend faces the network and holds the TLS key, so it
//! refuses to run as root or with any capability, forbids privilege gain, is not
//! dumpable, creates private files only, and closes inherited fds it does not own.

use std::collections::HashSet;
use std::os::fd::RawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};

#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error(
        "refusing to run as root (uid {uid}, euid {euid}): joblet-api must run as its own \
         unprivileged user; the supervisor starts it that way"
    )]
    Root { uid: u32, euid: u32 },
    #[error(
        "refusing to run with capabilities ({set} = {mask:#x}); joblet-api needs none \
         (start it with an empty capability set)"
    )]
    Capabilities { set: &'static str, mask: u64 },
    #[error("cannot read this process's capabilities from /proc/self/status: {0}")]
    ReadStatus(String),
    #[error("prctl({what}) failed: {source}")]
    Prctl {
        what: &'static str,
        source: nix::Error,
    },
    #[error("data directory {path}: {why}")]
    DataDir { path: PathBuf, why: String },
}

/// Applies every hardening step; call it first thing, before any thread starts.
pub fn harden() -> Result<(), HardenError> {
    refuse_root(
        nix::unistd::getuid().as_raw(),
        nix::unistd::geteuid().as_raw(),
    )?;
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| HardenError::ReadStatus(e.to_string()))?;
    refuse_capabilities(&status)?;
    nix::sys::prctl::set_no_new_privs().map_err(|source| HardenError::Prctl {
        what: "PR_SET_NO_NEW_PRIVS",
        source,
    })?;
    // Holds the TLS private key: no core dumps, no ptrace by same-uid processes.
    nix::sys::prctl::set_dumpable(false).map_err(|source| HardenError::Prctl {
        what: "PR_SET_DUMPABLE",
        source,
    })?;
    umask(Mode::from_bits_truncate(0o077));
    Ok(())
}

fn refuse_root(uid: u32, euid: u32) -> Result<(), HardenError> {
    if uid == 0 || euid == 0 {
        return Err(HardenError::Root { uid, euid });
    }
    Ok(())
}

/// Checks the effective, permitted and ambient capability sets in `/proc/self/status`
/// text are all empty.
pub fn refuse_capabilities(status: &str) -> Result<(), HardenError> {
    for set in ["CapEff", "CapPrm", "CapAmb"] {
        let mask = capability_mask(status, set)
            .ok_or_else(|| HardenError::ReadStatus(format!("no readable {set} line")))?;
        if mask != 0 {
            return Err(HardenError::Capabilities { set, mask });
        }
    }
    Ok(())
}

fn capability_mask(status: &str, set: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(set)?.strip_prefix(':'))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// Closes every fd above 2 that is not in `keep`. The supervisor passes only what we
/// need, but an fd leaked by a careless parent must not survive into a daemon on the
/// network. Call before any thread or runtime opens fds of its own.
pub fn close_stray_fds(keep: &[RawFd]) {
    let keep: HashSet<RawFd> = keep.iter().copied().collect();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    // Collected first: the directory handle itself is one of the listed fds.
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // Taking ownership and dropping closes it; fds that vanished are skipped.
            if let Ok(owned) = joblet_ipc_proto::inherit::take(fd) {
                tracing::warn!(
                    fd,
                    "closing an inherited file descriptor joblet-api does not own"
                );
                drop(owned);
            }
        }
    }
}

/// Makes sure the frontend's own directory exists, is ours and is 0700.
pub fn private_dir(path: &Path) -> Result<(), HardenError> {
    let err = |why: String| HardenError::DataDir {
        path: path.to_owned(),
        why,
    };
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| err(format!("cannot create it: {e}")))?;
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(err("not a directory".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(err(format!(
            "owned by uid {}, not by this daemon (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| err(format!("cannot make it private: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tjoblet-api\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
                          CapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";

    #[test]
    fn no_capabilities_passes_even_with_a_full_bounding_set() {
        assert!(refuse_capabilities(STATUS).is_ok());
    }

    #[test]
    fn any_capability_is_refused() {
        let with_eff = STATUS.replace("CapEff:\t0000000000000000", "CapEff:\t0000000000000400");
        assert!(matches!(
            refuse_capabilities(&with_eff),
            Err(HardenError::Capabilities {
                set: "CapEff",
                mask: 0x400
            })
        ));
        let with_amb = STATUS.replace("CapAmb:\t0000000000000000", "CapAmb:\t0000000000000001");
        assert!(matches!(
            refuse_capabilities(&with_amb),
            Err(HardenError::Capabilities { set: "CapAmb", .. })
        ));
        assert!(matches!(
            refuse_capabilities("Name:\tx\n"),
            Err(HardenError::ReadStatus(_))
        ));
    }

    #[test]
    fn root_is_refused() {
        assert!(refuse_root(0, 0).is_err());
        assert!(refuse_root(1000, 0).is_err());
        assert!(refuse_root(0, 1000).is_err());
        assert!(refuse_root(998, 998).is_ok());
    }

    #[test]
    fn private_dir_is_created_and_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("data");
        private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        let f = tmp.path().join("file");
        std::fs::write(&f, b"").unwrap();
        assert!(private_dir(&f).is_err());
    }
}
