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

/// Capability numbers (linux/capability.h); libc does not export them.
pub mod cap {
    pub const CHOWN: u32 = 0;
    pub const DAC_OVERRIDE: u32 = 1;
    pub const DAC_READ_SEARCH: u32 = 2;
    pub const FOWNER: u32 = 3;
    pub const KILL: u32 = 5;
    pub const SETGID: u32 = 6;
    pub const SETUID: u32 = 7;
    pub const SETPCAP: u32 = 8;
    pub const NET_ADMIN: u32 = 12;
    pub const SYS_MODULE: u32 = 16;
    pub const SYS_RAWIO: u32 = 17;
    pub const SYS_PTRACE: u32 = 19;
    pub const SYS_ADMIN: u32 = 21;
    pub const SYS_BOOT: u32 = 22;
    pub const MKNOD: u32 = 27;
    pub const BPF: u32 = 39;
}

/// Capabilities the spawner keeps, each for a named reason.
pub const KEPT_CAPS: &[(u32, &str)] = &[
    (cap::CHOWN, "give the job's /work to the job uid"),
    (cap::DAC_OVERRIDE, "write cgroup files and job records"),
    (cap::DAC_READ_SEARCH, "read /proc of other users' processes"),
    (cap::FOWNER, "set modes on directories it creates for jobs"),
    (cap::KILL, "signal jobs running as the job uid"),
    (cap::SETGID, "drop the job to its gid and clear its groups"),
    (cap::SETUID, "drop the job to its uid"),
    (cap::SETPCAP, "clear the job's capability bounding set"),
    (
        cap::NET_ADMIN,
        "bring up loopback in the job's network namespace",
    ),
    (
        cap::SYS_PTRACE,
        "re-obtain pipe and pidfd handles from shims (pidfd_getfd)",
    ),
    (
        cap::SYS_ADMIN,
        "namespaces, mounts, pivot_root, hostname, cgroups",
    ),
];

pub fn kept_mask() -> u64 {
    KEPT_CAPS.iter().fold(0, |m, (c, _)| m | (1u64 << c))
}

/// Everything but the fd hygiene, which needs to know which fds are ours (see
/// [`close_foreign_fds`]).
pub fn harden_self() -> Result<(), HardenError> {
    umask(Mode::from_bits_truncate(0o077));
    let current = sys::capget().map_err(step("read capabilities"))?;
    if current.effective & (1 << cap::SYS_ADMIN) == 0 || !nix::unistd::geteuid().is_root() {
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
    nix::sys::prctl::set_dumpable(false).map_err(step("clear dumpable"))?;
    Ok(())
}

/// One fd per pipe end, pidfd and socket per job: lift the soft limit to the hard one. Jobs get
/// the usual 1024 back before they exec.
fn raise_fd_limit() -> Result<(), HardenError> {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(step("read RLIMIT_NOFILE"))?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(step("raise RLIMIT_NOFILE"))
}

/// Closes every inherited fd but stdio and `keep` (the listener and anything taken already).
pub fn close_foreign_fds(keep: &[RawFd]) -> Result<(), HardenError> {
    let mut all = vec![0, 1, 2];
    all.extend_from_slice(keep);
    sys::close_all_except(&all).map_err(step("close inherited fds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_what_it_names() {
        let m = kept_mask();
        assert_eq!(m.count_ones() as usize, KEPT_CAPS.len());
        for dropped in [
            cap::SYS_MODULE,
            cap::SYS_RAWIO,
            cap::MKNOD,
            cap::SYS_BOOT,
            cap::BPF,
        ] {
            assert_eq!(m & (1 << dropped), 0, "cap {dropped} kept");
        }
    }
}
