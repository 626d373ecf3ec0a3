//! The spawner's settings: read from the sealed memfd the supervisor passes as
//! `--settings-fd N`, then checked as if the supervisor could be wrong, because every path
//! and uid in them ends up in a mount, a chown or a setuid done as root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use joblet_ipc_proto::{settings::SpawnerSettings, validate};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("usage: joblet-spawner --settings-fd N (got {0})")]
    Usage(String),
    #[error("cannot take the settings fd {fd}: {source}")]
    TakeFd { fd: i32, source: std::io::Error },
    #[error("cannot read the settings: {0}")]
    Read(#[from] joblet_ipc_proto::IpcError),
    #[error("setting {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Longest stop grace the spawner accepts; longer ones are a configuration mistake.
pub const MAX_STOP_GRACE_MS: u32 = 10 * 60 * 1000;

/// Parses `--settings-fd N` from the arguments (program name excluded).
pub fn parse_args(args: &[String]) -> Result<i32, SettingsError> {
    match args {
        [flag, n] if flag == "--settings-fd" => {
            let not_a_number = |_| SettingsError::Usage(format!("{n:?} is not an fd number"));
            n.parse().map_err(not_a_number)
        }
        _ => Err(SettingsError::Usage(format!("{args:?}"))),
    }
}

/// Takes the inherited fd and decodes the settings from it.
pub fn read(fd: i32) -> Result<SpawnerSettings, SettingsError> {
    let owned = joblet_ipc_proto::inherit::take(fd)
        .map_err(|source| SettingsError::TakeFd { fd, source })?;
    Ok(joblet_ipc_proto::settings::read_from_fd(owned)?)
}

/// An absolute path with no `.`, `..` or empty components.
fn clean_absolute(field: &'static str, p: &Path) -> Result<(), SettingsError> {
    let not_utf8 = || invalid(field, format!("{p:?} is not UTF-8"));
    let s = p.to_str().ok_or_else(not_utf8)?;
    validate::job_path(field, s).map_err(|e| invalid(field, e.reason))?;
    if s.len() > 1 && s.ends_with('/') {
        return Err(invalid(field, format!("{s:?} has a trailing '/'")));
    }
    Ok(())
}

/// Checks every field. Pure: touches nothing on disk.
///
/// User namespaces: each job's maps its ids `0..range` to `host_base + slot * range ..`, so
/// every range must lie above the host's ordinary ids (0..=65535) and below 4294967295, and
/// the job's uid and gid (ids inside the namespace then) must be below `range`.
pub fn validate(s: &SpawnerSettings) -> Result<(), SettingsError> {
    clean_absolute("state_dir", &s.state_dir)?;
    clean_absolute("output_socket", &s.output_socket)?;
    clean_absolute("cgroup_root", &s.cgroup_root)?;
    validate::name("cgroup_base", &s.cgroup_base).map_err(|e| invalid("cgroup_base", e.reason))?;
    s.allowed_mounts.iter().try_for_each(|m| allowed_mount(m))?;
    let mut mounts = s.allowed_mounts.clone();
    mounts.sort();
    mounts.dedup();
    let (ids, max) = ([s.job_uid, s.job_gid], u32::MAX);
    let u = &s.userns;
    let end = u64::from(u.host_base) + u64::from(u.range) * u64::from(u.slots);
    #[rustfmt::skip]
    let checks = [
        (s.state_dir != Path::new("/"), "state_dir", "must not be /"),
        (!ids.contains(&0), "job_uid/job_gid", "jobs must not run as root (uid or gid 0)"),
        (!ids.contains(&max), "job_uid/job_gid", "4294967295 is not a valid id"),
        ((1..=validate::MAX_PIDS).contains(&s.default_pids_max), "default_pids_max", "must be 1..=4194304"),
        ((1..=validate::MAX_DISK_MB).contains(&s.default_disk_mb), "default_disk_mb", "must be 1..=16777216"),
        (s.stop_grace_ms <= MAX_STOP_GRACE_MS, "stop_grace_ms", "more than 10 minutes"),
        (mounts.len() == s.allowed_mounts.len(), "allowed_mounts", "a path is listed twice"),
        (!u.enabled || (u.range > 0 && u.slots > 0), "userns", "range and slots must be at least 1"),
        (!u.enabled || u.host_base > 65535, "userns", "host_base must be above 65535: job ranges may not overlap host ids 0..=65535"),
        (!u.enabled || end <= u64::from(max), "userns", "host_base + range * slots must stay below 4294967295"),
        (!u.enabled || ids.iter().all(|id| *id < u.range), "userns", "job_uid and job_gid are ids inside the job's namespace: they must be below range"),
    ];
    let failed = checks.into_iter().find(|(ok, _, _)| !ok);
    failed.map_or(Ok(()), |(_, field, reason)| Err(invalid(field, reason)))
}

/// A host path the job may see read-only. The spawner itself provides `/proc`, `/dev`, `/work`
/// and `/tmp`, so those are refused, as is `/` (the whole host).
fn allowed_mount(p: &Path) -> Result<(), SettingsError> {
    clean_absolute("allowed_mounts", p)?;
    let reserved = ["proc", "dev", "sys", "work", "tmp"];
    let shown = p.display();
    let why = match p.components().nth(1) {
        None => "/ would expose the whole host".into(),
        Some(Component::Normal(c)) if reserved.iter().any(|r| c == *r) => {
            format!("{shown} is provided by the spawner itself or never exposed")
        }
        _ => return Ok(()),
    };
    Err(invalid("allowed_mounts", why))
}

/// Makes sure the state directory, its `jobs/` and `base/` (where the spawner attaches the
/// jobs' base root, in its own mount namespace only) exist, belong to root and are 0700.
/// Returns the last two.
pub fn prepare_state_dir(dir: &Path) -> Result<(PathBuf, PathBuf), SettingsError> {
    let err = |source| SettingsError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    let (jobs, base) = (dir.join("jobs"), dir.join("base"));
    for d in [dir, jobs.as_path(), base.as_path()] {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
        let meta = std::fs::symlink_metadata(d).map_err(err)?;
        if !meta.is_dir() || meta.uid() != 0 {
            let why = format!("{} must be a directory owned by root", d.display());
            return Err(err(std::io::Error::other(why)));
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok((jobs, base))
}

#[cfg(test)]
mod tests {
    use super::*;
    use joblet_ipc_proto::settings::{CgroupMode, Enforcement, LogFormat, Logging, UserNamespaces};

    fn good() -> SpawnerSettings {
        SpawnerSettings {
            logging: Logging {
                level: "info".into(),
                format: LogFormat::Text,
            },
            listen: vec![],
            api_uid: 1000,
            output_socket: "/run/joblet/persistd-output.sock".into(),
            state_dir: "/opt/joblet/state/spawner".into(),
            job_uid: 65534,
            job_gid: 65534,
            allowed_mounts: vec!["/usr".into(), "/bin".into(), "/etc/ssl".into()],
            cgroup_root: "/sys/fs/cgroup".into(),
            cgroup_mode: CgroupMode::V2,
            cgroup_base: "joblet".into(),
            default_pids_max: 512,
            default_disk_mb: 64,
            stop_grace_ms: 5000,
            userns: UserNamespaces {
                enabled: true,
                host_base: 100_000,
                range: 65536,
                slots: 64,
            },
            landlock: Enforcement::Off,
        }
    }

    #[test]
    fn accepts_sane_settings() {
        validate(&good()).unwrap();
        let mut off = good();
        off.userns = UserNamespaces {
            enabled: false,
            host_base: 0,
            range: 0,
            slots: 0,
        };
        validate(&off).unwrap();
    }

    #[test]
    fn refuses_root_jobs_and_bad_paths() {
        type Breaker = fn(&mut SpawnerSettings);
        let cases: Vec<(Breaker, &str)> = vec![
            (|s| s.job_uid = 0, "job_uid"),
            (|s| s.job_gid = 0, "job_uid"),
            (|s| s.state_dir = "relative".into(), "state_dir"),
            (|s| s.state_dir = "/opt/../etc".into(), "state_dir"),
            (|s| s.state_dir = "/".into(), "state_dir"),
            (|s| s.allowed_mounts.push("/".into()), "allowed_mounts"),
            (|s| s.allowed_mounts.push("/proc".into()), "allowed_mounts"),
            (
                |s| s.allowed_mounts.push("/dev/sda".into()),
                "allowed_mounts",
            ),
            (|s| s.allowed_mounts.push("/usr/".into()), "allowed_mounts"),
            (|s| s.allowed_mounts.push("/usr".into()), "allowed_mounts"),
            (|s| s.cgroup_base = "../x".into(), "cgroup_base"),
            (|s| s.default_pids_max = 0, "default_pids_max"),
            (|s| s.default_disk_mb = 0, "default_disk_mb"),
            (|s| s.stop_grace_ms = u32::MAX, "stop_grace_ms"),
            (|s| s.userns.host_base = 65535, "userns"),
            (|s| s.userns.host_base = 1000, "userns"),
            (|s| s.userns.range = 65534, "userns"),
            (|s| s.userns.slots = 0, "userns"),
            (|s| s.userns.slots = 70_000, "userns"),
        ];
        for (breaker, field) in cases {
            let mut s = good();
            breaker(&mut s);
            let e = validate(&s).unwrap_err();
            assert!(e.to_string().contains(field), "{e} should name {field}");
        }
    }

    #[test]
    fn args() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_args(&a(&["--settings-fd", "7"])).unwrap(), 7);
        assert!(parse_args(&a(&["--settings-fd"])).is_err());
        assert!(parse_args(&a(&["--settings-fd", "x"])).is_err());
        assert!(parse_args(&a(&[])).is_err());
    }
}
