//! Whether this kernel offers Landlock, asked before any helper starts: with
//! `security.landlock: required` Joblet then refuses to start with a message saying why,
//! instead of starting a spawner that can only fail and be restarted.

use joblet_ipc_proto::settings::Enforcement;

/// `LANDLOCK_CREATE_RULESET_VERSION`: ask for the ABI version instead of creating a ruleset.
const CREATE_RULESET_VERSION: libc::c_uint = 1;

#[derive(Debug, thiserror::Error)]
#[error(
    "security.landlock is required, but this kernel does not offer Landlock: {0}; \
     set security.landlock to best-effort to run jobs without it"
)]
pub struct LandlockMissing(pub String);

/// What the kernel said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Landlock is on, with this ABI version (1 = Linux 5.13).
    Abi(u32),
    /// Why it is not there.
    Missing(String),
}

/// Asks the kernel for its Landlock ABI version.
pub fn probe() -> Availability {
    // SAFETY: with a NULL attribute pointer, size 0 and only the VERSION flag,
    // landlock_create_ruleset returns the ABI version or an error; it creates no fd and reads
    // or writes no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0 as libc::size_t,
            CREATE_RULESET_VERSION,
        )
    };
    match u32::try_from(rc) {
        Ok(abi) if abi >= 1 => Availability::Abi(abi),
        _ => Availability::Missing(reason(std::io::Error::last_os_error())),
    }
}

fn reason(e: std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel is built without CONFIG_SECURITY_LANDLOCK".into(),
        Some(libc::EOPNOTSUPP) => {
            "Landlock is built in but not enabled (add landlock to the lsm= boot parameter)".into()
        }
        _ => format!("landlock_create_ruleset failed: {e}"),
    }
}

/// Refuses a required Landlock the kernel lacks; returns a warning when best effort will run
/// jobs without it.
pub fn check(
    enforcement: Enforcement,
    availability: &Availability,
) -> Result<Option<String>, LandlockMissing> {
    match (enforcement, availability) {
        (Enforcement::Required, Availability::Missing(why)) => Err(LandlockMissing(why.clone())),
        (Enforcement::BestEffort, Availability::Missing(why)) => Ok(Some(format!(
            "security.landlock is best-effort and this kernel does not offer Landlock ({why}): \
             jobs run without its file-access rules"
        ))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_refuses_a_missing_landlock_and_best_effort_warns() {
        let missing = Availability::Missing("the kernel is built without it".into());
        let err = check(Enforcement::Required, &missing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("security.landlock is required"), "{err}");
        assert!(err.contains("built without it"), "{err}");
        let warning = check(Enforcement::BestEffort, &missing).unwrap().unwrap();
        assert!(
            warning.contains("without its file-access rules"),
            "{warning}"
        );
        assert_eq!(check(Enforcement::Off, &missing).unwrap(), None);
        for e in [
            Enforcement::Required,
            Enforcement::BestEffort,
            Enforcement::Off,
        ] {
            assert_eq!(check(e, &Availability::Abi(1)).unwrap(), None);
        }
    }

    #[test]
    fn the_probe_agrees_with_the_kernel() {
        // The LSM list names landlock exactly when the kernel enforces it; securityfs may not
        // be mounted, in which case only the probe's own consistency is checked.
        let probed = probe();
        match std::fs::read_to_string("/sys/kernel/security/lsm") {
            Ok(list) if !list.trim().is_empty() => {
                let listed = list.trim().split(',').any(|l| l == "landlock");
                assert_eq!(
                    matches!(probed, Availability::Abi(_)),
                    listed,
                    "{probed:?} vs {list}"
                );
            }
            _ => match probed {
                Availability::Abi(abi) => assert!((1..100).contains(&abi), "{abi}"),
                Availability::Missing(why) => assert!(!why.is_empty()),
            },
        }
    }
}
