//! The spawner's settings: read from the sealed memfd the supervisor passes as
//! `--settings-fd N`, then checked as if the supervisor could be wrong, because every path
//! and uid in them ends up in a mount, a chown or a setuid done as root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use joblet_ipc_proto::settings::SpawnerSettings;
use joblet_ipc_proto::validate;

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
        [flag, n] if flag == "--settings-fd" => n
            .parse()
            .map_err(|_| SettingsError::Usage(format!("{n:?} is not an fd number"))),
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
    let s = p
        .to_str()
        .ok_or_else(|| invalid(field, format!("{p:?} is not UTF-8")))?;
    validate::job_path(field, s).map_err(|e| invalid(field, e.reason))?;
    if s.len() > 1 && s.ends_with('/') {
        return Err(invalid(field, format!("{s:?} has a trailing '/'")));
    }
    Ok(())
}

/// Checks every field. Pure: touches nothing on disk.
pub fn validate(s: &SpawnerSettings) -> Result<(), SettingsError> {
    clean_absolute("state_dir", &s.state_dir)?;
    if s.state_dir == Path::new("/") {
        return Err(invalid("state_dir", "must not be /"));
    }
    clean_absolute("output_socket", &s.output_socket)?;
    clean_absolute("cgroup_root", &s.cgroup_root)?;
    validate::name("cgroup_base", &s.cgroup_base).map_err(|e| invalid("cgroup_base", e.reason))?;
    if s.job_uid == 0 || s.job_gid == 0 {
        return Err(invalid(
            "job_uid/job_gid",
            "jobs must not run as root (uid or gid 0)",
        ));
    }
    if s.job_uid == u32::MAX || s.job_gid == u32::MAX {
        return Err(invalid("job_uid/job_gid", "4294967295 is not a valid id"));
    }
    if s.default_pids_max == 0 || s.default_pids_max > validate::MAX_PIDS {
        return Err(invalid(
            "default_pids_max",
            format!("must be 1..={}", validate::MAX_PIDS),
        ));
    }
    if s.default_disk_mb == 0 || s.default_disk_mb > validate::MAX_DISK_MB {
        return Err(invalid(
            "default_disk_mb",
            format!("must be 1..={}", validate::MAX_DISK_MB),
        ));
    }
    if s.stop_grace_ms > MAX_STOP_GRACE_MS {
        return Err(invalid(
            "stop_grace_ms",
            format!("more than {MAX_STOP_GRACE_MS} ms"),
        ));
    }
    for m in &s.allowed_mounts {
        allowed_mount(m)?;
    }
    let mut sorted = s.allowed_mounts.clone();
    sorted.sort();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("allowed_mounts", "a path is listed twice"));
    }
    Ok(())
}

/// A host path the job may see read-only. The spawner itself provides `/proc`, `/dev`, `/work`
/// and `/tmp`, so those are refused, as is `/` (the whole host).
fn allowed_mount(p: &Path) -> Result<(), SettingsError> {
    clean_absolute("allowed_mounts", p)?;
    let first = p.components().nth(1);
    let reserved = ["proc", "dev", "sys", "work", "tmp"];
    match first {
        None => Err(invalid("allowed_mounts", "/ would expose the whole host")),
        Some(Component::Normal(c)) if reserved.iter().any(|r| c == *r) => Err(invalid(
            "allowed_mounts",
            format!(
                "{} is provided by the spawner itself or never exposed",
                p.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// Makes sure the state directory and its `jobs/` exist, belong to root and are 0700.
pub fn prepare_state_dir(dir: &Path) -> Result<PathBuf, SettingsError> {
    let err = |source| SettingsError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    let jobs = dir.join("jobs");
    for d in [dir, jobs.as_path()] {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
        let meta = std::fs::symlink_metadata(d).map_err(err)?;
        if !meta.is_dir() || meta.uid() != 0 {
            return Err(err(std::io::Error::other(format!(
                "{} must be a directory owned by root",
                d.display()
            ))));
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(jobs)
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
                enabled: false,
                host_base: 0,
                range: 0,
                slots: 0,
            },
            landlock: Enforcement::Off,
        }
    }

    #[test]
    fn accepts_sane_settings() {
        validate(&good()).unwrap();
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
