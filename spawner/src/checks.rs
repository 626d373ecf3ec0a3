//! Start-up checks: the spawner refuses to start, naming the missing feature, where a boundary
//! it is configured to enforce is unavailable, rather than fail at the first job (or, worse,
//! run jobs without it).
//!
//! Cheap checks come first (namespaces present, user namespaces allowed, Landlock's ABI); then
//! a **probe launch**: a real shim and job init going through every step of a job (namespaces
//! with the configured user namespace, the whole root filesystem with pivot_root and the
//! masked /proc, Landlock, the identity drop, the seccomp filter) and ending in `_exit(0)`
//! where a job would `execve`. Its failure is the launch error a job would get, which names
//! the step. Seccomp is always required; the cgroup mode is checked by [`crate::cgroup`].

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use joblet_ipc_proto::job::{JobId, LaunchSpec};
use joblet_ipc_proto::settings::Enforcement;

use crate::daemon::Spawner;
use crate::launch::landlock::LandlockError;
use crate::launch::{self, Placement};
use crate::record::{EXIT, ExitFile, JobDir};
use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("this host cannot run jobs as configured: {0}")]
    Unsupported(String),
    #[error("the start-up probe could not run: {0}")]
    Probe(String),
}

/// How long the probe launch may take.
const PROBE_PATIENCE: Duration = Duration::from_secs(30);
/// The probe's job id (never a real job's: the frontend makes random v4 UUIDs).
const PROBE_ID: &str = "00000000-0000-4000-8000-000000000000";

/// Every namespace a job gets exists, and user namespaces may be created when jobs get one.
pub fn namespaces(userns: bool) -> Result<(), CheckError> {
    let user = userns.then_some("user");
    for ns in ["pid", "mnt", "net", "ipc", "uts", "cgroup"]
        .into_iter()
        .chain(user)
    {
        if !std::path::Path::new("/proc/self/ns").join(ns).exists() {
            return Err(CheckError::Unsupported(format!(
                "{ns} namespaces (no /proc/self/ns/{ns})"
            )));
        }
    }
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces");
    if userns && max.is_ok_and(|m| m.trim() == "0") {
        return Err(CheckError::Unsupported(
            "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0); allow \
             them or turn jobs' user namespaces off"
                .into(),
        ));
    }
    Ok(())
}

/// Whether jobs get Landlock, from the setting and what the kernel reported.
pub fn landlock(setting: Enforcement, abi: Result<u32, LandlockError>) -> Result<bool, CheckError> {
    match (setting, abi) {
        (Enforcement::Off, _) => Ok(false),
        (_, Ok(abi)) => {
            tracing::info!(abi, "Landlock enforced on jobs");
            Ok(true)
        }
        (Enforcement::Required, Err(e)) => Err(CheckError::Unsupported(format!(
            "Landlock is required (landlock: Required) but unavailable: {e}"
        ))),
        (Enforcement::BestEffort, Err(e)) => {
            tracing::warn!(error = %e, "Landlock unavailable: jobs run without it (landlock: BestEffort)");
            Ok(false)
        }
    }
}

impl Spawner {
    /// The probe launch (see the module documentation), in `state_dir`.
    pub fn probe(&mut self) -> Result<(), CheckError> {
        let failed = |e: &dyn std::fmt::Display| CheckError::Probe(e.to_string());
        let id = JobId::parse(PROBE_ID).map_err(|e| failed(&e))?;
        let request = LaunchSpec::default();
        // A free slot, or when every one is taken, the first (the probe never runs job code).
        let slot = self.userns_slot().unwrap_or(Some(0));
        let mut plan = self.plan(&id, &request, slot);
        let dir = JobDir::new(&self.settings.state_dir, &id);
        (plan.dir, plan.probe) = (dir.clone(), true);
        let _ = dir.remove();
        dir.create().map_err(|e| failed(&e))?;
        let join = Placement::Join(Vec::new());
        let shim = (self.factory.order(plan, join, None)).and_then(|()| self.factory.made());
        let result = shim
            .map_err(|e| failed(&e))
            .and_then(|(_, [pidfd, .., go])| {
                let released = launch::release(go).map_err(|e| failed(&e));
                let outcome = released.and_then(|()| wait_for_exit(&dir));
                sys::kill_and_reap(pidfd.as_fd());
                outcome
            });
        let _ = dir.remove();
        match result? {
            ExitFile::Exited { wait_status: 0, .. } => Ok(()),
            ExitFile::LaunchFailed { message, .. } => Err(CheckError::Unsupported(message)),
            ExitFile::Exited { wait_status, .. } => Err(failed(&format!(
                "the probe's init ended with wait status {wait_status:#x}"
            ))),
        }
    }
}

/// Waits for the probe shim's exit record.
fn wait_for_exit(dir: &JobDir) -> Result<ExitFile, CheckError> {
    let deadline = Instant::now() + PROBE_PATIENCE;
    loop {
        match dir.read::<ExitFile>(EXIT) {
            Ok(Some(exit)) => return Ok(exit),
            Err(e) => return Err(CheckError::Probe(e.to_string())),
            Ok(None) if Instant::now() > deadline => {
                let secs = PROBE_PATIENCE.as_secs();
                return Err(CheckError::Probe(format!("no result within {secs} s")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone() -> Result<u32, LandlockError> {
        Err(LandlockError::Unavailable {
            reason: "the kernel was built without it (CONFIG_SECURITY_LANDLOCK)",
        })
    }

    #[test]
    fn landlock_decision_follows_the_setting_and_the_kernel() {
        let required = landlock(Enforcement::Required, gone())
            .unwrap_err()
            .to_string();
        assert!(required.contains("Landlock is required"), "{required}");
        assert!(required.contains("CONFIG_SECURITY_LANDLOCK"), "{required}");
        assert!(!landlock(Enforcement::BestEffort, gone()).unwrap());
        assert!(!landlock(Enforcement::Off, gone()).unwrap());
        assert!(!landlock(Enforcement::Off, Ok(7)).unwrap());
        assert!(landlock(Enforcement::Required, Ok(1)).unwrap());
        assert!(landlock(Enforcement::BestEffort, Ok(3)).unwrap());
    }

    #[test]
    fn this_host_has_the_namespaces() {
        namespaces(true).unwrap();
    }
}
