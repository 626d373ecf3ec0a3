//! Validation of everything a client can put in a job. The frontend runs it to answer the
//! client with a precise error; the spawner runs it again on what it receives, because it
//! trusts no sender. Host-dependent checks (does this CPU exist, is this much memory there)
//! happen in the spawner only, where the host is known.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::job::{EnvVar, JobSpec, LaunchSpec, Limits};

pub const MAX_COMMAND_LEN: usize = 4096;
pub const MAX_ARGS: usize = 4096;
pub const MAX_ENV_VARS: usize = 1024;
pub const MAX_ENV_KEY_LEN: usize = 256;
/// Sum of command, args, env and secret values, upload paths: keeps every record and launch
/// message well inside one IPC frame.
pub const MAX_SPEC_BYTES: usize = 96 * 1024;
pub const MAX_PATH_LEN: usize = 4096;
pub const MAX_CPU_INDEX: u32 = 4095;
pub const MAX_CPU_PERCENT: u32 = 100 * (MAX_CPU_INDEX + 1);
pub const MAX_MEMORY_MB: u64 = 64 * 1024 * 1024;
pub const MAX_IO_BPS: u64 = 1 << 40;
/// The kernel's own ceiling for `pid_max`.
pub const MAX_PIDS: u32 = 4_194_304;
pub const MAX_DISK_MB: u64 = 16 * 1024 * 1024;
pub const MAX_TIMEOUT_MS: u64 = 366 * 24 * 3600 * 1000;

/// Environment names the daemon sets itself; a client may not set them.
pub const RESERVED_ENV_KEYS: &[&str] = &["JOB_ID"];
/// Environment prefix reserved for the daemon.
pub const RESERVED_ENV_PREFIX: &str = "JOBLET_";

/// A refused value: which field, and why, in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.reason)
    }
}

impl From<ValidationError> for crate::RemoteError {
    fn from(e: ValidationError) -> Self {
        crate::RemoteError::invalid(e.to_string())
    }
}

type Result<T = ()> = std::result::Result<T, ValidationError>;

fn no_nul(field: &str, s: &str) -> Result {
    if s.contains('\0') {
        return Err(ValidationError::new(field, "contains a NUL byte"));
    }
    Ok(())
}

/// Validates a launch: the spec, the secret values, and that the two agree.
pub fn launch(l: &LaunchSpec) -> Result {
    spec(&l.spec)?;
    let declared: HashSet<&str> = l.spec.secret_env_keys.iter().map(String::as_str).collect();
    let given: HashSet<&str> = l.secret_env.iter().map(|v| v.key.as_str()).collect();
    if declared != given || given.len() != l.secret_env.len() {
        return Err(ValidationError::new(
            "secret_environment",
            "secret values do not match the declared secret names",
        ));
    }
    for v in &l.secret_env {
        no_nul("secret_environment", &v.value)?;
    }
    let secret_bytes: usize = l.secret_env.iter().map(|v| v.value.len()).sum();
    if spec_bytes(&l.spec) + secret_bytes > MAX_SPEC_BYTES {
        return Err(too_big());
    }
    Ok(())
}

fn too_big() -> ValidationError {
    ValidationError::new(
        "request",
        format!("command, arguments and environment together exceed {MAX_SPEC_BYTES} bytes"),
    )
}

fn spec_bytes(s: &JobSpec) -> usize {
    s.command.len()
        + s.args.iter().map(String::len).sum::<usize>()
        + s.env
            .iter()
            .map(|v| v.key.len() + v.value.len())
            .sum::<usize>()
        + s.secret_env_keys.iter().map(String::len).sum::<usize>()
        + s.uploads.iter().map(String::len).sum::<usize>()
        + s.volumes.iter().map(String::len).sum::<usize>()
        + s.work_dir.len()
        + s.limits.cpu_cores.len()
}

/// Validates a job spec (everything but secret values).
pub fn spec(s: &JobSpec) -> Result {
    command(&s.command)?;
    if s.args.len() > MAX_ARGS {
        return Err(ValidationError::new(
            "args",
            format!("more than {MAX_ARGS} arguments"),
        ));
    }
    for a in &s.args {
        no_nul("args", a)?;
    }
    env(&s.env, &s.secret_env_keys)?;
    limits(&s.limits)?;
    if !s.work_dir.is_empty() {
        job_path("work_dir", &s.work_dir)?;
    }
    if !s.network.is_empty() {
        name("network", &s.network)?;
    }
    for v in &s.volumes {
        name("volume", v)?;
    }
    if !s.runtime.is_empty() {
        runtime_name(&s.runtime)?;
    }
    if s.timeout_ms > MAX_TIMEOUT_MS {
        return Err(ValidationError::new("timeout", "longer than one year"));
    }
    for u in &s.uploads {
        upload_path(u)?;
    }
    if spec_bytes(s) > MAX_SPEC_BYTES {
        return Err(too_big());
    }
    Ok(())
}

pub fn command(c: &str) -> Result {
    if c.trim().is_empty() {
        return Err(ValidationError::new("command", "is empty"));
    }
    if c.len() > MAX_COMMAND_LEN {
        return Err(ValidationError::new(
            "command",
            format!("longer than {MAX_COMMAND_LEN} bytes"),
        ));
    }
    no_nul("command", c)
}

/// Environment names: `[A-Za-z_][A-Za-z0-9_]*`, not reserved, no duplicates across plain and
/// secret variables.
pub fn env(vars: &[EnvVar], secret_keys: &[String]) -> Result {
    if vars.len() + secret_keys.len() > MAX_ENV_VARS {
        return Err(ValidationError::new(
            "environment",
            format!("more than {MAX_ENV_VARS} variables"),
        ));
    }
    let mut seen = HashSet::new();
    for key in vars.iter().map(|v| &v.key).chain(secret_keys) {
        env_key(key)?;
        if !seen.insert(key.as_str()) {
            return Err(ValidationError::new(
                "environment",
                format!("variable {key} is given twice"),
            ));
        }
    }
    for v in vars {
        no_nul("environment", &v.value)?;
    }
    Ok(())
}

pub fn env_key(key: &str) -> Result {
    let field = "environment";
    let mut bytes = key.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok
        || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        || key.len() > MAX_ENV_KEY_LEN
    {
        return Err(ValidationError::new(
            field,
            format!(
                "name {key:?} is not of the form [A-Za-z_][A-Za-z0-9_]* (at most {MAX_ENV_KEY_LEN} bytes)"
            ),
        ));
    }
    if RESERVED_ENV_KEYS.contains(&key) || key.starts_with(RESERVED_ENV_PREFIX) {
        return Err(ValidationError::new(
            field,
            format!("{key} is reserved for the daemon"),
        ));
    }
    Ok(())
}

/// Static bounds of every limit; whether the host can apply them is the spawner's check.
pub fn limits(l: &Limits) -> Result {
    if l.cpu_percent > MAX_CPU_PERCENT {
        return Err(ValidationError::new(
            "max_cpu",
            format!(
                "{}% is more than {MAX_CPU_PERCENT}% (100 = one core)",
                l.cpu_percent
            ),
        ));
    }
    if !l.cpu_cores.is_empty() {
        cpu_list(&l.cpu_cores)?;
    }
    if l.memory_mb > MAX_MEMORY_MB {
        return Err(ValidationError::new(
            "max_memory",
            format!("{} MB is more than {MAX_MEMORY_MB} MB", l.memory_mb),
        ));
    }
    if l.io_bps > MAX_IO_BPS {
        return Err(ValidationError::new(
            "max_io_bps",
            format!("{} bytes/s is more than {MAX_IO_BPS}", l.io_bps),
        ));
    }
    if l.pids_max > MAX_PIDS {
        return Err(ValidationError::new(
            "pids limit",
            format!("{} is more than {MAX_PIDS}", l.pids_max),
        ));
    }
    if l.disk_mb > MAX_DISK_MB {
        return Err(ValidationError::new(
            "disk limit",
            format!("{} MB is more than {MAX_DISK_MB} MB", l.disk_mb),
        ));
    }
    Ok(())
}

/// Parses a cpuset list (`0-3`, `1,3`, `0-1,6`) into sorted, distinct CPU numbers.
pub fn cpu_list(s: &str) -> Result<Vec<u32>> {
    let bad = |why: &str| ValidationError::new("cpu_cores", format!("{s:?}: {why}"));
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: u32 = lo
            .parse()
            .map_err(|_| bad("expected numbers like 0-3 or 1,3"))?;
        let hi: u32 = hi
            .parse()
            .map_err(|_| bad("expected numbers like 0-3 or 1,3"))?;
        if lo > hi {
            return Err(bad("a range runs backwards"));
        }
        if hi > MAX_CPU_INDEX {
            return Err(bad("CPU number too large"));
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// An absolute path inside the job (`/work/sub`): no `.` or `..`, no empty components.
pub fn job_path(field: &str, p: &str) -> Result {
    no_nul(field, p)?;
    if p.len() > MAX_PATH_LEN {
        return Err(ValidationError::new(field, "path too long"));
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(ValidationError::new(
            field,
            format!("{p:?} is not an absolute path"),
        ));
    };
    if rest.is_empty() {
        return Ok(());
    }
    components(field, p, rest)
}

/// A path relative to the work directory (`src/main.py`): not absolute, no `.` or `..`.
pub fn upload_path(p: &str) -> Result {
    let field = "upload path";
    no_nul(field, p)?;
    if p.is_empty() || p.len() > MAX_PATH_LEN {
        return Err(ValidationError::new(field, "empty or too long"));
    }
    if p.starts_with('/') {
        return Err(ValidationError::new(
            field,
            format!("{p:?} is absolute; uploads are relative to the work directory"),
        ));
    }
    components(field, p, p)
}

fn components(field: &str, whole: &str, rest: &str) -> Result {
    for c in rest.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(ValidationError::new(
                field,
                format!("{whole:?} has an empty, '.' or '..' component"),
            ));
        }
        if c.len() > 255 {
            return Err(ValidationError::new(field, "a path component is too long"));
        }
    }
    Ok(())
}

/// Names of networks and volumes: 1–63 of `[A-Za-z0-9_-]`, starting and ending alphanumeric.
pub fn name(field: &str, n: &str) -> Result {
    let b = n.as_bytes();
    let ok = (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "{n:?} must be 1-63 letters, digits, '_' or '-', starting and ending with a letter or digit"
            ),
        ))
    }
}

/// Runtime specs (`python-3.11-ml`, `python:3.11+ml`, `openjdk-21@1.0.0`).
pub fn runtime_name(n: &str) -> Result {
    let ok = (1..=128).contains(&n.len())
        && n.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._:@+-".contains(&c))
        && !n.contains("..")
        && n.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "runtime",
            format!("{n:?} is not a runtime name like python-3.11 or python:3.11+ml"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(f: impl FnOnce(&mut JobSpec)) -> JobSpec {
        let mut s = JobSpec {
            command: "echo".into(),
            ..Default::default()
        };
        f(&mut s);
        s
    }

    #[test]
    fn accepts_a_plain_spec() {
        assert!(spec(&spec_with(|_| {})).is_ok());
    }

    #[test]
    fn refuses_control_variables_and_bad_names() {
        for key in ["JOB_ID", "JOBLET_MODE", "1X", "A-B", "", "A=B"] {
            let s = spec_with(|s| s.env = vec![EnvVar::new(key, "x")]);
            assert!(spec(&s).is_err(), "{key:?} accepted");
        }
        let s = spec_with(|s| {
            s.env = vec![EnvVar::new("A", "1")];
            s.secret_env_keys = vec!["A".into()];
        });
        assert!(spec(&s).unwrap_err().reason.contains("twice"));
    }

    #[test]
    fn refuses_absurd_limits() {
        let s = spec_with(|s| s.limits.memory_mb = u64::MAX);
        assert_eq!(spec(&s).unwrap_err().field, "max_memory");
        let s = spec_with(|s| s.limits.cpu_percent = u32::MAX);
        assert_eq!(spec(&s).unwrap_err().field, "max_cpu");
        let s = spec_with(|s| s.limits.pids_max = u32::MAX);
        assert!(spec(&s).is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(cpu_list("3,1,1").unwrap(), vec![1, 3]);
        for bad in ["", "a", "3-1", "1-", "99999", "0-5000"] {
            assert!(cpu_list(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn paths() {
        assert!(job_path("work_dir", "/work/sub").is_ok());
        assert!(job_path("work_dir", "/").is_ok());
        for bad in ["work", "/work/../etc", "/work//x", "/a/./b", "/a\0b"] {
            assert!(job_path("work_dir", bad).is_err(), "{bad:?} accepted");
        }
        assert!(upload_path("src/main.py").is_ok());
        for bad in ["/etc/passwd", "../x", "a/../../x", "", "a//b", "./a"] {
            assert!(upload_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn launch_secrets_must_match_declared_names() {
        let l = LaunchSpec {
            spec: spec_with(|s| s.secret_env_keys = vec!["TOKEN".into()]),
            secret_env: vec![EnvVar::new("OTHER", "x")],
            has_upload_dir: false,
        };
        assert!(launch(&l).is_err());
    }

    #[test]
    fn total_size_is_bounded() {
        let s = spec_with(|s| s.args = vec!["x".repeat(1024); 100]);
        assert_eq!(spec(&s).unwrap_err().field, "request");
    }
}
