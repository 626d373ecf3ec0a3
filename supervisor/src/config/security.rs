//! `security.userNamespace` and `security.landlock`: how jobs are confined beyond namespaces,
//! cgroups and seccomp (which is always on and has no key).
//!
//! With user namespaces on, each running job holds one *slot*: the `range` host ids from
//! `hostBase + slot × range`, which its namespace maps to ids `0..range`. Root inside a job is
//! then a host uid no other job, helper or host user has. This module checks the numbers; the
//! host's user databases are checked at start ([`crate::job_ids`]).

use std::ops::Range;

use joblet_ipc_proto::settings::{Enforcement, UserNamespaces};

use super::raw::RawConfig;
use super::validate::Result;
use super::{ConfigError, JobUser, SecurityConfig};

/// First host id of the jobs' ranges: `0x7000_0000` = 1879048192. On a Debian host nothing
/// hands out ids there: regular users end at 60000, systemd's dynamic users at 65519,
/// `useradd` allocates subordinate ids (`/etc/subuid`) from 100000 to 600100000
/// (`SUB_UID_MAX` in `/etc/login.defs`), and `systemd-nspawn --private-users=pick` picks
/// container ranges in 524288–1879048191; systemd's `UIDS-GIDS.md` lists 1879048192–2147483647
/// as unused. The default span (65536 × 1024 ids) ends at 1946157055, below 2^31, so no id
/// looks negative to software that keeps uids in signed 32-bit integers; and each slot's upper
/// 16 bits stay constant, the convention `systemd-nspawn` follows too.
pub const DEFAULT_USERNS_HOST_BASE: u32 = 0x7000_0000;
/// The whole 16-bit id space, the size every container manager gives a container.
pub const DEFAULT_USERNS_RANGE: u32 = 65536;
/// Jobs that can hold a range at once (raised to `joblet.maxConcurrentJobs` when that is
/// larger).
pub const DEFAULT_USERNS_SLOTS: u32 = 1024;

/// The host's own ids: root, system and regular users, systemd's dynamic users, `nobody`.
const HOST_OWN_IDS: u64 = 65536;
/// Ids at and above 2^31 look negative to software that stores them in a signed `int`.
const SIGNED_LIMIT: u64 = 1 << 31;
/// `(uid_t) -1` is not an id; the span must end at or before it.
const ID_LIMIT: u64 = u32::MAX as u64;

/// The host ids the jobs' namespaces map to (uids and gids alike), end exclusive.
pub fn userns_span(u: &UserNamespaces) -> Range<u64> {
    let start = u64::from(u.host_base);
    start..start + u64::from(u.range) * u64::from(u.slots)
}

pub(super) fn security(
    raw: &RawConfig,
    job: JobUser,
    max_concurrent_jobs: u32,
    warnings: &mut Vec<String>,
) -> Result<SecurityConfig> {
    Ok(SecurityConfig {
        userns: user_namespaces(raw, job, max_concurrent_jobs, warnings)?,
        landlock: landlock(raw, warnings)?,
    })
}

fn user_namespaces(
    raw: &RawConfig,
    job: JobUser,
    max_concurrent_jobs: u32,
    warnings: &mut Vec<String>,
) -> Result<UserNamespaces> {
    let u = &raw.security.user_namespace;
    let userns = UserNamespaces {
        enabled: u.enabled.unwrap_or(true),
        host_base: u.host_base.unwrap_or(DEFAULT_USERNS_HOST_BASE),
        range: u.range.unwrap_or(DEFAULT_USERNS_RANGE),
        slots: u
            .slots
            .unwrap_or(DEFAULT_USERNS_SLOTS.max(max_concurrent_jobs)),
    };
    // Checked even when disabled, so switching it on later cannot fail on old numbers.
    check_range(userns.range, job)?;
    check_slots(userns.slots, u.slots.is_some(), max_concurrent_jobs)?;
    check_span(&userns, warnings)?;
    if !userns.enabled {
        warnings.push(format!(
            "security.userNamespace.enabled is false: every job runs as the same host uid {} \
             (supervisor.jobUser), so jobs can signal each other's processes and reach each \
             other's files where modes allow",
            job.uid
        ));
    }
    Ok(userns)
}

fn check_range(range: u32, job: JobUser) -> Result<()> {
    let key = "security.userNamespace.range";
    if u64::from(range) < HOST_OWN_IDS {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{range} is below 65536: a job needs the whole 16-bit id space (files in its \
                 root and runtimes are owned by ids up to 65534, nobody)"
            ),
        ));
    }
    let highest = job.uid.max(job.gid);
    if range <= highest {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{range} ids do not cover supervisor.jobUser (uid {}, gid {}), which jobs run as \
                 inside their namespace: it must be at least {}",
                job.uid,
                job.gid,
                u64::from(highest) + 1
            ),
        ));
    }
    Ok(())
}

fn check_slots(slots: u32, explicit: bool, max_concurrent_jobs: u32) -> Result<()> {
    let key = "security.userNamespace.slots";
    if slots == 0 {
        return Err(ConfigError::invalid(
            key,
            "must be at least 1 (each running job holds one slot)",
        ));
    }
    if explicit && max_concurrent_jobs > slots {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{slots} is below joblet.maxConcurrentJobs ({max_concurrent_jobs}): each \
                 running job holds one slot, so jobs beyond {slots} could not start"
            ),
        ));
    }
    Ok(())
}

fn check_span(u: &UserNamespaces, warnings: &mut Vec<String>) -> Result<()> {
    if u64::from(u.host_base) < HOST_OWN_IDS {
        return Err(ConfigError::invalid(
            "security.userNamespace.hostBase",
            format!(
                "{} overlaps the host's own ids 0-65535 (root, system and regular users, \
                 nobody); the default is {DEFAULT_USERNS_HOST_BASE}",
                u.host_base
            ),
        ));
    }
    let span = userns_span(u);
    if span.end > ID_LIMIT {
        return Err(ConfigError::invalid(
            "security.userNamespace",
            format!(
                "hostBase {} + range {} × slots {} ends past the last valid id, 4294967294; \
                 lower hostBase or slots",
                u.host_base, u.range, u.slots
            ),
        ));
    }
    if span.end > SIGNED_LIMIT {
        warnings.push(format!(
            "security.userNamespace: jobs' host ids reach {}, above 2147483647; software that \
             keeps ids in signed 32-bit integers misreads them (lower hostBase or slots)",
            span.end - 1
        ));
    }
    Ok(())
}

fn landlock(raw: &RawConfig, warnings: &mut Vec<String>) -> Result<Enforcement> {
    let text = raw
        .security
        .landlock
        .as_ref()
        .map(|s| s.0.trim().to_ascii_lowercase());
    let enforcement = match text.as_deref() {
        None | Some("best-effort") | Some("best_effort") => Enforcement::BestEffort,
        Some("required") => Enforcement::Required,
        // `off` unquoted is the boolean false to YAML 1.1 readers.
        Some("off") | Some("false") => Enforcement::Off,
        Some(other) => {
            return Err(ConfigError::invalid(
                "security.landlock",
                format!("{other:?}: must be required, best-effort or off"),
            ));
        }
    };
    if enforcement == Enforcement::Off {
        warnings.push(
            "security.landlock is off: a job's file access is limited only by its mounts and \
             file modes"
                .into(),
        );
    }
    Ok(enforcement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_span_is_computed_without_overflow() {
        let u = UserNamespaces {
            enabled: true,
            host_base: u32::MAX - 1,
            range: u32::MAX,
            slots: u32::MAX,
        };
        let span = userns_span(&u);
        assert_eq!(span.start, u64::from(u32::MAX - 1));
        assert_eq!(
            span.end - span.start,
            u64::from(u32::MAX) * u64::from(u32::MAX)
        );
    }

    #[test]
    fn the_default_span_is_in_the_unused_range_below_two_to_the_31() {
        let u = UserNamespaces {
            enabled: true,
            host_base: DEFAULT_USERNS_HOST_BASE,
            range: DEFAULT_USERNS_RANGE,
            slots: DEFAULT_USERNS_SLOTS,
        };
        let span = userns_span(&u);
        // Past systemd-nspawn's container ranges (which end above useradd's subordinate ids).
        assert!(span.start > 1_879_048_191);
        assert!(span.end <= SIGNED_LIMIT);
        assert_eq!(span.start % 65536, 0, "slots keep their upper 16 bits");
    }
}
