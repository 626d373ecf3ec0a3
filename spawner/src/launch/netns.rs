//! The job's network namespace: loopback only, for now. Bringing `lo` up is one ioctl, so no
//! netlink library is needed.
//!
//! The shim factory makes each one ahead of the order that will use it ([`super::factory`]):
//! it moves itself into a fresh namespace after every shim it forks, so the next shim is born
//! there and clones the job init without `CLONE_NEWNET`. Making a network namespace was most of
//! what `clone3` cost on a job's start path (about 0.5 ms); the factory now pays it after it
//! answered, off that path though not off the CPU the launch shares (BENCHMARKS.md item 28).
//! The namespace belongs to the host's user namespace, not the job's: the job holds no
//! capability over it at any point, not even as root of its own.

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use super::{At, StepResult};

/// Moves the calling process into a new network namespace with `lo` up.
pub(super) fn enter_fresh() -> StepResult {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).at(|| "make a network namespace")?;
    loopback_up()
}

fn loopback_up() -> StepResult {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .at(|| "open a socket to configure loopback")?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags of the interface named in `req` into it.
    let got = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    Errno::result(got).at(|| "read loopback flags")?;
    // SAFETY: the union member for flags is the one SIOCGIFFLAGS filled.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `req`, which names lo and carries its flags.
    let set = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    Errno::result(set).map(drop).at(|| "bring loopback up")
}
