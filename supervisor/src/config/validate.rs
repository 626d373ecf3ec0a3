//! From [`RawConfig`] to [`Config`]: defaults, ranges, paths, names. Every error names its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use joblet_ipc_proto::settings::LogFormat;
use joblet_ipc_proto::validate as limits;

use super::layout::{abs_path, abs_paths, job_user, paths, users};
use super::monitoring::monitoring;
use super::raw::RawConfig;
use super::security::security;
use super::{
    CgroupConfig, Config, ConfigError, JobDefaults, LogOutput, LoggingConfig, RestartPolicy,
    RuntimeConfig, ServerConfig, TlsMaterial,
};

pub const DEFAULT_CONFIG_PATH: &str = "/opt/joblet/config/joblet-config.yml";

/// Joblet's default `filesystem.allowedMounts`, plus `/etc/alternatives`: on Debian most of
/// `/usr/bin` links through it, so without it `python3` and friends dangle inside a job.
pub const DEFAULT_ALLOWED_MOUNTS: &[&str] = &[
    "/usr/bin",
    "/bin",
    "/usr/sbin",
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/etc/alternatives",
];

const DEFAULT_COMMON_PATHS: &[&str] = &[
    "/usr/local/bin",
    "/usr/local/lib",
    "/usr/lib/jvm",
    "/usr/local/node",
    "/usr/local/go",
];

/// Controllers job limits always rely on, whatever `cgroup.enableControllers` says.
const REQUIRED_CONTROLLERS: &[&str] = &["cpu", "memory", "pids"];
/// Joblet's default `cgroup.enableControllers` (without `devices`, which v2 does not have).
const DEFAULT_CONTROLLERS: &[&str] = &["memory", "cpu", "io", "pids", "cpuset"];
/// Names accepted in `cgroup.enableControllers` (v1 and v2 spellings).
const KNOWN_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "io", "blkio", "pids", "devices", "freezer", "hugetlb",
    "rdma", "misc",
];

const MIB: u64 = 1024 * 1024;
const DEFAULT_MAX_UPLOAD: u64 = 128 * MIB;
const MAX_STOP_GRACE: Duration = Duration::from_secs(3600);

pub(super) type Result<T> = std::result::Result<T, ConfigError>;

pub fn validate(raw: RawConfig, warnings: &mut Vec<String>) -> Result<Config> {
    let server = server(&raw)?;
    let tls = tls(&raw)?;
    let jobs = jobs(&raw)?;
    let cgroup = cgroup(&raw, warnings)?;
    let allowed_mounts = match raw.filesystem.allowed_mounts.clone() {
        Some(list) => abs_paths("filesystem.allowedMounts", list)?,
        None => DEFAULT_ALLOWED_MOUNTS.iter().map(PathBuf::from).collect(),
    };
    if let Some(p) = raw.filesystem.base_dir.clone() {
        abs_path("filesystem.baseDir", p)?;
    }
    if let Some(p) = raw.volumes.base_path.clone() {
        abs_path("volumes.base_path", p)?;
    }
    let runtime = RuntimeConfig {
        base_path: abs_path(
            "runtime.base_path",
            raw.runtime
                .base_path
                .clone()
                .unwrap_or_else(|| "/opt/joblet/runtimes".into()),
        )?,
        common_paths: match raw.runtime.common_paths.clone() {
            Some(list) => abs_paths("runtime.common_paths", list)?,
            None => DEFAULT_COMMON_PATHS.iter().map(PathBuf::from).collect(),
        },
    };
    let logging = logging(&raw, warnings)?;
    let monitoring = monitoring(&raw, warnings)?;
    let paths = paths(&raw)?;
    let users = users(&raw)?;
    let job_user = job_user(&raw)?;
    let security = security(&raw, job_user, jobs.max_concurrent_jobs, warnings)?;
    let restart = restart(&raw)?;
    let stop_timeout = raw
        .supervisor
        .stop_timeout
        .map_or(Duration::from_secs(10), |d| d.0);
    if stop_timeout.is_zero() || stop_timeout > Duration::from_secs(600) {
        return Err(ConfigError::invalid(
            "supervisor.stopTimeout",
            "must be between 1ms and 10m",
        ));
    }
    let max_upload_bytes = raw.grpc.max_recv_msg_size.unwrap_or(DEFAULT_MAX_UPLOAD);
    if !(MIB..=4096 * MIB).contains(&max_upload_bytes) {
        return Err(ConfigError::invalid(
            "grpc.maxRecvMsgSize",
            "must be between 1 MiB and 4 GiB (it bounds a job's uploads)",
        ));
    }
    Ok(Config {
        server,
        tls,
        jobs,
        cgroup,
        allowed_mounts,
        runtime,
        logging,
        paths,
        users,
        job_user,
        restart,
        stop_timeout,
        max_upload_bytes,
        security,
        monitoring,
    })
}

fn server(raw: &RawConfig) -> Result<ServerConfig> {
    let s = &raw.server;
    if let Some(mode) = &s.mode
        && !mode.eq_ignore_ascii_case("server")
    {
        return Err(ConfigError::invalid(
            "server.mode",
            format!(
                "{mode:?} is not supported: only \"server\" (jobs are started by joblet-spawner, \
                 there is no init mode)"
            ),
        ));
    }
    let address = s.address.clone().unwrap_or_else(|| "0.0.0.0".into());
    if address.is_empty() || address.contains(char::is_whitespace) {
        return Err(ConfigError::invalid(
            "server.address",
            "must be a host name or an IP address",
        ));
    }
    let node_id = match s.node_id.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => host_name(),
    };
    if node_id.len() > 255 || node_id.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            "server.nodeId",
            "must be at most 255 printable characters",
        ));
    }
    Ok(ServerConfig {
        address,
        port: s.port.unwrap_or(50051),
        node_id,
    })
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "joblet".into())
}

fn tls(raw: &RawConfig) -> Result<TlsMaterial> {
    let pem = |key: &str, value: &Option<String>, marker: &str| -> Result<String> {
        let missing = || {
            ConfigError::invalid(
                key,
                "missing: the embedded PEM is required (`joblet init` generates one)",
            )
        };
        let v = value.as_deref().ok_or_else(missing)?;
        if v.trim().is_empty() {
            return Err(missing());
        }
        if !(v.contains("-----BEGIN ") && v.contains(marker) && v.contains("-----END ")) {
            return Err(ConfigError::invalid(
                key,
                format!("is not PEM (expected a -----BEGIN ...{marker}----- block)"),
            ));
        }
        Ok(v.to_owned())
    };
    let s = &raw.security;
    Ok(TlsMaterial {
        server_cert_pem: pem("security.serverCert", &s.server_cert, "CERTIFICATE")?,
        server_key_pem: pem("security.serverKey", &s.server_key, "PRIVATE KEY")?,
        ca_cert_pem: pem("security.caCert", &s.ca_cert, "CERTIFICATE")?,
    })
}

fn jobs(raw: &RawConfig) -> Result<JobDefaults> {
    let j = &raw.joblet;
    let cpu_percent = j.default_cpu_limit.unwrap_or(0);
    at_most(
        "joblet.defaultCpuLimit",
        cpu_percent.into(),
        limits::MAX_CPU_PERCENT.into(),
    )?;
    let memory_mb = j.default_memory_limit.unwrap_or(0);
    at_most(
        "joblet.defaultMemoryLimit",
        memory_mb,
        limits::MAX_MEMORY_MB,
    )?;
    let io_bps = j.default_io_limit.unwrap_or(0);
    at_most("joblet.defaultIoLimit", io_bps, limits::MAX_IO_BPS)?;
    let pids_max = raw.cgroup.default_pids_limit.unwrap_or(1024);
    if pids_max == 0 || pids_max > limits::MAX_PIDS {
        return Err(ConfigError::invalid(
            "cgroup.defaultPidsLimit",
            format!(
                "must be between 1 and {} (a fork bomb needs a ceiling)",
                limits::MAX_PIDS
            ),
        ));
    }
    let quota = raw.volumes.default_disk_quota_bytes.unwrap_or(MIB);
    let disk_mb = quota.div_ceil(MIB);
    at_most(
        "volumes.default_disk_quota_bytes",
        disk_mb,
        limits::MAX_DISK_MB,
    )?;
    let timeout = j.job_timeout.map_or(Duration::ZERO, |d| d.0);
    at_most(
        "joblet.jobTimeout",
        u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        limits::MAX_TIMEOUT_MS,
    )?;
    let stop_grace = j.cleanup_timeout.map_or(Duration::from_secs(5), |d| d.0);
    if stop_grace > MAX_STOP_GRACE {
        return Err(ConfigError::invalid(
            "joblet.cleanupTimeout",
            "must be at most 1h (it is the grace between SIGTERM and kill when a job stops)",
        ));
    }
    Ok(JobDefaults {
        cpu_percent,
        memory_mb,
        io_bps,
        pids_max,
        disk_mb,
        max_concurrent_jobs: j.max_concurrent_jobs.unwrap_or(0),
        timeout,
        stop_grace,
    })
}

fn at_most(key: &str, value: u64, max: u64) -> Result<()> {
    if value > max {
        return Err(ConfigError::invalid(
            key,
            format!("{value} is above the maximum of {max}"),
        ));
    }
    Ok(())
}

fn cgroup(raw: &RawConfig, warnings: &mut Vec<String>) -> Result<CgroupConfig> {
    let c = &raw.cgroup;
    let base = cgroup_base(c.base_dir.as_deref().unwrap_or("joblet"), warnings)?;
    let mut controllers: Vec<String> = REQUIRED_CONTROLLERS.iter().map(|s| s.to_string()).collect();
    let listed: Vec<&str> = match &c.enable_controllers {
        Some(list) => list.iter().map(|s| s.trim()).collect(),
        None => DEFAULT_CONTROLLERS.to_vec(),
    };
    for name in listed {
        if !KNOWN_CONTROLLERS.contains(&name) {
            return Err(ConfigError::invalid(
                "cgroup.enableControllers",
                format!(
                    "unknown controller {name:?} (known: {})",
                    KNOWN_CONTROLLERS.join(", ")
                ),
            ));
        }
        // One spelling, the v2 one; `devices` and `cpuacct` have no v2 controller (device
        // policy is a BPF program there, accounting is part of `cpu`).
        let v2 = match name {
            "blkio" => "io",
            "devices" | "cpuacct" | "freezer" => continue,
            other => other,
        };
        if !controllers.iter().any(|c| c == v2) {
            controllers.push(v2.to_owned());
        }
    }
    Ok(CgroupConfig { base, controllers })
}

/// Our subtree's name. Joblet wrote a full path (`/sys/fs/cgroup/joblet.slice/joblet.service`);
/// we place the subtree under the spawner's own cgroup, so only the last component is used.
fn cgroup_base(value: &str, warnings: &mut Vec<String>) -> Result<String> {
    let key = "cgroup.baseDir";
    let name = if value.starts_with('/') {
        let last = Path::new(value)
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ConfigError::invalid(key, "an absolute path needs a final name"))?;
        warnings.push(format!(
            "{key}: {value:?} is a path; joblet-rs uses only its last component, {last:?}, as \
             its subtree under the spawner's cgroup"
        ));
        last
    } else {
        value
    };
    let valid = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(ConfigError::invalid(
            key,
            format!("{name:?} must be 1-64 characters of A-Z a-z 0-9 . _ -"),
        ));
    }
    Ok(name.to_owned())
}

fn logging(raw: &RawConfig, warnings: &mut Vec<String>) -> Result<LoggingConfig> {
    let l = &raw.logging;
    let level = l.level.as_deref().unwrap_or("info").trim();
    // Joblet writes `INFO`, `DEBUG`, `WARN`; tracing wants lower case, and "warning" is Go's.
    let level = match level.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_owned(),
        simple @ ("trace" | "debug" | "info" | "warn" | "error" | "off") => simple.to_owned(),
        _ => level.to_owned(),
    };
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
        return Err(ConfigError::invalid(
            "logging.level",
            format!("{level:?} is not a level or a filter directive: {e}"),
        ));
    }
    let format = match l.format.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(ConfigError::invalid(
                "logging.format",
                format!("{other:?}: must be text or json"),
            ));
        }
    };
    let output = match l.output.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("stdout") => LogOutput::Stdout,
        Some("stderr") => LogOutput::Stderr,
        Some(other) => {
            warnings.push(format!(
                "logging.output: {other:?} is not supported, logging to stdout (run under \
                 systemd, whose journal keeps it)"
            ));
            LogOutput::Stdout
        }
    };
    Ok(LoggingConfig {
        level,
        format,
        output,
    })
}

fn restart(raw: &RawConfig) -> Result<RestartPolicy> {
    let r = &raw.supervisor.restart;
    let min_backoff = r.min_backoff.map_or(Duration::from_millis(500), |d| d.0);
    let max_backoff = r.max_backoff.map_or(Duration::from_secs(30), |d| d.0);
    if min_backoff < Duration::from_millis(10) {
        return Err(ConfigError::invalid(
            "supervisor.restart.minBackoff",
            "must be at least 10ms (a crashing helper would spin)",
        ));
    }
    if max_backoff < min_backoff || max_backoff > Duration::from_secs(3600) {
        return Err(ConfigError::invalid(
            "supervisor.restart.maxBackoff",
            "must be at least minBackoff and at most 1h",
        ));
    }
    Ok(RestartPolicy {
        min_backoff,
        max_backoff,
    })
}
