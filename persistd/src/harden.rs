//! Process hardening at start, before any thread exists.
//!
//! persistd needs no privilege at all: it reads pipes it is given and writes files in its own
//! directory. So it refuses to run as root or with any capability (a misconfigured unit should
//! fail loudly, not run with more power than it needs), sets no_new_privs, makes itself
//! non-dumpable (job output may hold secrets), and closes every fd it did not expect.

use std::io;
use std::os::fd::RawFd;

use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::stat::{Mode, umask};
use nix::unistd::{getresgid, getresuid};

#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error(
        "refusing to run as root (uids {uids:?}, gids {gids:?}); start persistd as its own user"
    )]
    Root { uids: [u32; 3], gids: [u32; 3] },
    #[error("refusing to run with capabilities ({field} = {value:016x}); persistd needs none")]
    Capabilities { field: &'static str, value: u64 },
    #[error("cannot read the process's credentials: {0}")]
    Credentials(nix::Error),
    #[error("cannot read /proc/self/status: {0}")]
    Status(io::Error),
    #[error("/proc/self/status has no readable {0} line")]
    StatusField(&'static str),
    #[error("prctl({what}) failed: {source}")]
    Prctl {
        what: &'static str,
        source: nix::Error,
    },
    #[error("cannot list open file descriptors in /proc/self/fd: {0}")]
    ListFds(io::Error),
    #[error("cannot raise the open-file limit to its hard limit: {0}")]
    FdLimit(nix::Error),
}

/// The capability sets that must all be empty.
const CAP_FIELDS: [&str; 4] = ["CapEff", "CapPrm", "CapInh", "CapAmb"];

/// Fails unless every uid and gid is non-zero and every capability set is empty.
pub fn refuse_privilege() -> Result<(), HardenError> {
    let u = getresuid().map_err(HardenError::Credentials)?;
    let g = getresgid().map_err(HardenError::Credentials)?;
    let uids = [u.real.as_raw(), u.effective.as_raw(), u.saved.as_raw()];
    let gids = [g.real.as_raw(), g.effective.as_raw(), g.saved.as_raw()];
    if uids.contains(&0) || gids.contains(&0) {
        return Err(HardenError::Root { uids, gids });
    }
    let status = std::fs::read_to_string("/proc/self/status").map_err(HardenError::Status)?;
    check_no_capabilities(&status)
}

/// Checks the capability lines of a `/proc/<pid>/status` text.
pub fn check_no_capabilities(status: &str) -> Result<(), HardenError> {
    for field in CAP_FIELDS {
        let value = status_hex(status, field).ok_or(HardenError::StatusField(field))?;
        if value != 0 {
            return Err(HardenError::Capabilities { field, value });
        }
    }
    Ok(())
}

fn status_hex(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name != field {
            return None;
        }
        u64::from_str_radix(value.trim(), 16).ok()
    })
}

/// no_new_privs, not dumpable, and a umask that keeps every new file private.
pub fn lock_down() -> Result<(), HardenError> {
    prctl::set_no_new_privs().map_err(|source| HardenError::Prctl {
        what: "PR_SET_NO_NEW_PRIVS",
        source,
    })?;
    prctl::set_dumpable(false).map_err(|source| HardenError::Prctl {
        what: "PR_SET_DUMPABLE",
        source,
    })?;
    umask(Mode::from_bits_truncate(0o077));
    Ok(())
}

/// Raises the soft open-file limit to the hard one (no privilege needed) and returns it:
/// every running job holds its two pipes and up to five cgroup directories open here, so a
/// 1024 default would cap persistd near 150 jobs. The hard limit is the supervisor's (or the
/// unit's `LimitNOFILE=`) to set.
pub fn raise_fd_limit() -> Result<u64, HardenError> {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(HardenError::FdLimit)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(HardenError::FdLimit)?;
    Ok(hard)
}

/// Closes every fd above 2 except `keep` (the ones already taken with
/// `ipc_proto::inherit::take`). Returns the numbers it closed, to be logged.
pub fn close_stray_fds(keep: &[RawFd]) -> Result<Vec<RawFd>, HardenError> {
    let mut open = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").map_err(HardenError::ListFds)? {
        let entry = entry.map_err(HardenError::ListFds)?;
        if let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        {
            open.push(fd);
        }
    }
    // The listing's own fd was in the list and is closed by now; `take` refuses it.
    let mut closed = Vec::new();
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // Taking ownership and dropping it closes the fd, without unsafe code here.
        if let Ok(owned) = joblet_ipc_proto::inherit::take(fd) {
            drop(owned);
            closed.push(fd);
        }
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tjoblet-persistd\nUid:\t999\t999\t999\t999\n\
        CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
        CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";

    #[test]
    fn accepts_empty_capability_sets_and_ignores_the_bounding_set() {
        check_no_capabilities(STATUS).unwrap();
    }

    #[test]
    fn refuses_any_capability() {
        for field in CAP_FIELDS {
            let status = STATUS.replace(
                &format!("{field}:\t0000000000000000"),
                &format!("{field}:\t0000000000000400"),
            );
            match check_no_capabilities(&status) {
                Err(HardenError::Capabilities { field: f, value }) => {
                    assert_eq!(f, field);
                    assert_eq!(value, 0x400);
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_line_is_an_error_not_a_pass() {
        let status = STATUS.replace("CapAmb:\t0000000000000000\n", "");
        assert!(matches!(
            check_no_capabilities(&status),
            Err(HardenError::StatusField("CapAmb"))
        ));
    }
}
