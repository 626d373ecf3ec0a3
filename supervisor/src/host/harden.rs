//! The supervisor's own hardening. It stays root with its capabilities, because the spawner it
//! starts needs them; everything it does not hand down is dropped here.

/// Makes orphaned descendants (a job shim whose spawner died) our children, so we reap them;
/// clears ambient capabilities so no helper inherits one by accident; and makes us
/// non-dumpable, since we hold the server's private key.
pub fn harden_self() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)?;
    clear_ambient_caps()?;
    nix::sys::prctl::set_dumpable(false)?;
    Ok(())
}

fn clear_ambient_caps() -> std::io::Result<()> {
    // SAFETY: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL) takes integer arguments only and
    // touches no memory of ours.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn cap_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        // Linux 5.9+ knows 40 (CAP_CHECKPOINT_RESTORE); dropping unknown ones fails harmlessly.
        .unwrap_or(63)
}
