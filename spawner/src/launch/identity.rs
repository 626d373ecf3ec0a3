//! Dropping the job init to the job's identity: no capabilities in any set (bounding,
//! permitted, effective, inheritable, ambient), no supplementary groups, the job uid and gid in
//! every slot, and no_new_privs so nothing it execs can gain privileges back.

use nix::unistd::{Gid, Uid};

use super::{At, StepError, StepResult};
use crate::sys;

pub(super) fn drop_to(uid: u32, gid: u32) -> StepResult {
    sys::drop_bounding_except(0).at(|| "clear the capability bounding set")?;
    nix::unistd::setgroups(&[]).at(|| "clear supplementary groups")?;
    let (g, u) = (Gid::from_raw(gid), Uid::from_raw(uid));
    nix::unistd::setresgid(g, g, g).at(|| format!("switch to gid {gid}"))?;
    nix::unistd::setresuid(u, u, u).at(|| format!("switch to uid {uid}"))?;
    sys::clear_ambient().at(|| "clear ambient capabilities")?;
    sys::capset(sys::CapSets::default()).at(|| "clear capabilities")?;
    nix::sys::prctl::set_no_new_privs().at(|| "set no_new_privs")?;
    verify(uid, gid)
}

/// Trust, but verify: the kernel's view after the drop.
fn verify(uid: u32, gid: u32) -> StepResult {
    let caps = sys::capget().at(|| "read capabilities back")?;
    if caps != sys::CapSets::default() {
        let why = format!("capabilities remain after the drop: {caps:?}");
        return Err(StepError::msg(why));
    }
    let ids = nix::unistd::getresuid().at(|| "read uids back")?;
    let gids = nix::unistd::getresgid().at(|| "read gids back")?;
    let uids = [ids.real, ids.effective, ids.saved].map(|u| u.as_raw());
    let gids = [gids.real, gids.effective, gids.saved].map(|g| g.as_raw());
    let (uid_ok, gid_ok) = (uids == [uid; 3], gids == [gid; 3]);
    if !uid_ok || !gid_ok || !nix::unistd::getgroups().is_ok_and(|g| g.is_empty()) {
        return Err(StepError::msg("uid, gid or groups did not change as asked"));
    }
    Ok(())
}
