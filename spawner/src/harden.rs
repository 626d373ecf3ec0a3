//! What the spawner does to itself before it serves anyone: keep only the capabilities its
//! work needs, no_new_privs, not dumpable (it holds job secrets in memory while launching),
//! a strict umask, and no file descriptors it does not own.

use std::os::fd::RawFd;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::stat::{Mode, umask};

use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error("{step}: {errno}")]
    Step {
        step: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("the spawner must run as root with CAP_SYS_ADMIN (effective capabilities: {0:#x})")]
    NotPrivileged(u64),
}

fn step(step: &'static str) -> impl FnOnce(nix::errno::Errno) -> HardenError {
    move |errno| HardenError::Step { step, errno }
}

/// `CAP_SYS_ADMIN`, which the spawner must start with.
const CAP_SYS_ADMIN: u32 = 21;

/// Capabilities the spawner keeps (numbers from linux/capability.h, which libc does not
/// export), each for a named reason; every other one leaves the bounding set.
#[rustfmt::skip]
pub const KEPT_CAPS: &[(u32, &str, &str)] = &[
    (0, "CHOWN", "give the job's /work and uploads to the job uid"),
    (1, "DAC_OVERRIDE", "write cgroup files and job records"),
    (2, "DAC_READ_SEARCH", "read /proc of other users' processes and the frontend's staged uploads"),
    (3, "FOWNER", "set modes on directories it creates for jobs"),
    (5, "KILL", "signal jobs running as the job uid"),
    (6, "SETGID", "drop the job to its gid, clear its groups, write user-namespace gid maps"),
    (7, "SETUID", "drop the job to its uid, write user-namespace uid maps"),
    (8, "SETPCAP", "clear the job's capability bounding set"),
    (12, "NET_ADMIN", "bring up loopback in the job's network namespace"),
    (19, "SYS_PTRACE", "re-obtain pipe and pidfd handles from shims (pidfd_getfd)"),
    (CAP_SYS_ADMIN, "SYS_ADMIN", "namespaces, mounts, pivot_root, cgroups, the v2 device program"),
];

pub fn kept_mask() -> u64 {
    KEPT_CAPS.iter().fold(0, |m, (c, _, _)| m | (1u64 << c))
}

/// Everything but the fd hygiene, which needs to know which fds are ours (see
/// [`close_foreign_fds`]).
pub fn harden_self() -> Result<(), HardenError> {
    umask(Mode::from_bits_truncate(0o077));
    let current = sys::capget().map_err(step("read capabilities"))?;
    if current.effective & (1 << CAP_SYS_ADMIN) == 0 || !nix::unistd::geteuid().is_root() {
        return Err(HardenError::NotPrivileged(current.effective));
    }
    raise_fd_limit()?;
    let keep = kept_mask();
    sys::drop_bounding_except(keep).map_err(step("drop capabilities from the bounding set"))?;
    sys::clear_ambient().map_err(step("clear ambient capabilities"))?;
    sys::capset(sys::CapSets {
        effective: current.effective & keep,
        permitted: current.permitted & keep,
        inheritable: 0,
    })
    .map_err(step("reduce capabilities"))?;
    nix::sys::prctl::set_no_new_privs().map_err(step("set no_new_privs"))?;
    nix::sys::prctl::set_dumpable(false).map_err(step("clear dumpable"))
}

/// One fd per pipe end, pidfd and socket per job: lift the soft limit to the hard one. Jobs get
/// the usual 1024 back before they exec.
fn raise_fd_limit() -> Result<(), HardenError> {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(step("read RLIMIT_NOFILE"))?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(step("raise RLIMIT_NOFILE"))
}

/// Closes every inherited fd but stdio and `keep` (the listener and anything taken already).
pub fn close_foreign_fds(keep: RawFd) -> Result<(), HardenError> {
    sys::close_all_except(&[0, 1, 2, keep]).map_err(step("close inherited fds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_what_it_names() {
        let m = kept_mask();
        assert_eq!(m.count_ones() as usize, KEPT_CAPS.len());
        // SYS_MODULE, SYS_RAWIO, SYS_BOOT, MKNOD, BPF.
        for dropped in [16, 17, 22, 27, 39] {
            assert_eq!(m & (1 << dropped), 0, "cap {dropped} kept");
        }
    }
}
