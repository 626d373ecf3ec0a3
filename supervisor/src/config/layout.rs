//! The supervisor's layout: where each helper's directory is, and who each helper and job
//! runs as (`supervisor.*`, `audit.path`). Paths are absolute and normal; the helpers'
//! directories never overlap, since each gets its own owner.

use std::path::{Component, Path, PathBuf};

use super::raw::{RawConfig, Scalar};
use super::validate::Result;
use super::{ConfigError, IdRef, JobUser, Paths, UsersConfig};

pub(super) fn paths(raw: &RawConfig) -> Result<Paths> {
    let s = &raw.supervisor;
    let dir = |key: &str, value: &Option<PathBuf>, default: &str| {
        abs_path(key, value.clone().unwrap_or_else(|| default.into()))
    };
    let paths = Paths {
        run_dir: dir("supervisor.runDir", &s.run_dir, "/opt/joblet/run")?,
        state_dir: dir("supervisor.stateDir", &s.state_dir, "/opt/joblet/state")?,
        logs_dir: dir("supervisor.logsDir", &s.logs_dir, "/opt/joblet/logs")?,
        data_dir: dir("supervisor.dataDir", &s.data_dir, "/opt/joblet/data")?,
        audit_log: dir("audit.path", &raw.audit.path, "/opt/joblet/audit/audit.log")?,
        bin_dir: s
            .bin_dir
            .clone()
            .map(|p| abs_path("supervisor.binDir", p))
            .transpose()?,
    };
    let owned = [
        ("supervisor.runDir", &paths.run_dir),
        ("supervisor.stateDir", &paths.state_dir),
        ("supervisor.logsDir", &paths.logs_dir),
        ("supervisor.dataDir", &paths.data_dir),
    ];
    // Each directory gets its own owner; sharing or nesting one would hand one daemon's files
    // to another.
    for (i, (key_a, a)) in owned.iter().enumerate() {
        for (key_b, b) in &owned[i + 1..] {
            if a.starts_with(b) || b.starts_with(a) {
                return Err(ConfigError::invalid(
                    *key_b,
                    format!("{} overlaps {key_a} ({})", b.display(), a.display()),
                ));
            }
        }
    }
    Ok(paths)
}

pub(super) fn abs_paths(key: &str, list: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    list.into_iter()
        .enumerate()
        .map(|(i, p)| abs_path(&format!("{key}.{i}"), p))
        .collect()
}

/// An absolute path with no `..`, no NUL and not `/` itself, in normal form.
pub(crate) fn abs_path(key: &str, p: PathBuf) -> Result<PathBuf> {
    let text = p.to_string_lossy();
    if !p.is_absolute() {
        return Err(ConfigError::invalid(
            key,
            format!("{text:?} must be an absolute path"),
        ));
    }
    if text.contains('\0') {
        return Err(ConfigError::invalid(key, "contains a NUL byte"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(ConfigError::invalid(
            key,
            format!("{text:?} must not contain `..`"),
        ));
    }
    let normal: PathBuf = p.components().collect();
    if normal == Path::new("/") {
        return Err(ConfigError::invalid(key, "must not be `/`"));
    }
    Ok(normal)
}

pub(super) fn users(raw: &RawConfig) -> Result<UsersConfig> {
    let u = &raw.supervisor.users;
    Ok(UsersConfig {
        api: id_ref("supervisor.users.api", &u.api, "joblet-api")?,
        persistd: id_ref("supervisor.users.persistd", &u.persistd, "joblet-persistd")?,
        stated: id_ref("supervisor.users.stated", &u.stated, "joblet-stated")?,
        group: id_ref("supervisor.users.group", &u.group, "joblet")?,
    })
}

fn id_ref(key: &str, value: &Option<Scalar>, default: &str) -> Result<IdRef> {
    let text = value.as_ref().map_or(default, |s| s.0.as_str()).trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(IdRef::Id)
            .map_err(|_| ConfigError::invalid(key, format!("{text} is not a valid id")));
    }
    let valid = !text.is_empty()
        && text.len() <= 32
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(ConfigError::invalid(
            key,
            format!("{text:?} is neither a numeric id nor a user/group name"),
        ));
    }
    Ok(IdRef::Name(text.to_owned()))
}

pub(super) fn job_user(raw: &RawConfig) -> Result<JobUser> {
    let j = &raw.supervisor.job_user;
    let uid = j.uid.unwrap_or(65534);
    let gid = j.gid.unwrap_or(65534);
    if uid == 0 {
        return Err(ConfigError::invalid(
            "supervisor.jobUser.uid",
            "jobs must not run as root",
        ));
    }
    if gid == 0 {
        return Err(ConfigError::invalid(
            "supervisor.jobUser.gid",
            "jobs must not run with group root",
        ));
    }
    Ok(JobUser { uid, gid })
}
