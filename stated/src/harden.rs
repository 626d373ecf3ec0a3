//! Self-hardening at start: stated needs no privilege at all, so it refuses to run with any.

use std::os::fd::RawFd;

use nix::sys::stat::{Mode, umask};

#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error(
        "joblet-stated must not run as root (uid {uid}, euid {euid}); \
         the supervisor starts it as its own user"
    )]
    Root { uid: u32, euid: u32 },
    #[error(
        "joblet-stated must hold no capabilities, but its {set} set is {value:#x}; \
         start it as a plain user without file or ambient capabilities"
    )]
    Capabilities { set: &'static str, value: u64 },
    #[error("cannot read /proc/self/status: {0}")]
    Status(std::io::Error),
    #[error("/proc/self/status has no readable {0} line")]
    StatusField(&'static str),
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("cannot make the process non-dumpable: {0}")]
    Dumpable(nix::Error),
    #[error("cannot list open file descriptors: {0}")]
    ListFds(std::io::Error),
}

/// The capability sets that must all be empty (the bounding set only limits what could be
/// gained, and with no_new_privs nothing can be).
const CAP_SETS: [&str; 4] = ["CapInh", "CapPrm", "CapEff", "CapAmb"];

/// Locks the process down: no_new_privs, private file modes, not root, no capabilities, not
/// dumpable (the database holds job specs and sealed secrets; a same-uid debugger has no
/// business reading them).
pub fn harden() -> Result<(), HardenError> {
    nix::sys::prctl::set_no_new_privs().map_err(HardenError::NoNewPrivs)?;
    umask(Mode::from_bits_truncate(0o077));
    refuse_root(
        nix::unistd::getuid().as_raw(),
        nix::unistd::geteuid().as_raw(),
    )?;
    let status = std::fs::read_to_string("/proc/self/status").map_err(HardenError::Status)?;
    refuse_capabilities(&status)?;
    nix::sys::prctl::set_dumpable(false).map_err(HardenError::Dumpable)?;
    Ok(())
}

fn refuse_root(uid: u32, euid: u32) -> Result<(), HardenError> {
    if uid == 0 || euid == 0 {
        return Err(HardenError::Root { uid, euid });
    }
    Ok(())
}

/// Checks the `Cap*` lines of a `/proc/<pid>/status` text.
fn refuse_capabilities(status: &str) -> Result<(), HardenError> {
    for set in CAP_SETS {
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(set)?.strip_prefix(':'))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .ok_or(HardenError::StatusField(set))?;
        if value != 0 {
            return Err(HardenError::Capabilities { set, value });
        }
    }
    Ok(())
}

/// Closes every inherited descriptor above stderr except `keep`, so nothing the supervisor
/// (or whoever started us) left open stays reachable. Must run before anything else in the
/// process opens a descriptor. Returns how many were closed.
pub fn close_inherited_fds(keep: &[RawFd]) -> Result<usize, HardenError> {
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(HardenError::ListFds)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own descriptor is in the list but already closed here: EBADF, ignored.
    let mut closed = 0;
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        if nix::unistd::close(fd).is_ok() {
            closed += 1;
        }
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tjoblet-stated\nUid:\t999\t999\t999\t999\n\
        CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
        CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";

    #[test]
    fn no_capabilities_pass_even_with_a_full_bounding_set() {
        assert!(refuse_capabilities(STATUS).is_ok());
    }

    #[test]
    fn any_capability_is_refused() {
        for set in CAP_SETS {
            let status = STATUS.replace(
                &format!("{set}:\t0000000000000000"),
                &format!("{set}:\t0000000000000400"),
            );
            match refuse_capabilities(&status) {
                Err(HardenError::Capabilities { set: s, value }) => {
                    assert_eq!((s, value), (set, 0x400));
                }
                other => panic!("{set}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_or_garbled_line_is_an_error_not_a_pass() {
        let missing = STATUS.replace("CapAmb:\t0000000000000000\n", "");
        assert!(matches!(
            refuse_capabilities(&missing),
            Err(HardenError::StatusField("CapAmb"))
        ));
        let garbled = STATUS.replace("CapEff:\t0000000000000000", "CapEff:\tzz");
        assert!(matches!(
            refuse_capabilities(&garbled),
            Err(HardenError::StatusField("CapEff"))
        ));
    }

    #[test]
    fn root_is_refused() {
        assert!(refuse_root(999, 999).is_ok());
        assert!(matches!(refuse_root(0, 999), Err(HardenError::Root { .. })));
        assert!(matches!(refuse_root(999, 0), Err(HardenError::Root { .. })));
    }
}
