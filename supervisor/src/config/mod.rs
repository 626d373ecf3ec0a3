//! `joblet-config.yml`: parsing (the only YAML parser in Joblet), validation and defaults.
//!
//! Parsing is strict about what we read (a bad value is an error naming its key) and lenient
//! about what we do not: keys Joblet documents are accepted silently, anything else is reported
//! as a warning so a typo does not go unnoticed.

pub mod duration;
pub mod keys;
mod layout;
mod monitoring;
pub mod raw;
mod security;
mod validate;

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use joblet_ipc_proto::settings::{Enforcement, LogFormat, UserNamespaces};

pub use monitoring::{DEFAULT_JOB_METRICS_INTERVAL, DEFAULT_SYSTEM_INTERVAL};
pub use security::{
    DEFAULT_USERNS_HOST_BASE, DEFAULT_USERNS_RANGE, DEFAULT_USERNS_SLOTS, userns_span,
};
pub use validate::{DEFAULT_ALLOWED_MOUNTS, DEFAULT_CONFIG_PATH};

/// The biggest config file we read; a real one is a few KiB.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes; is it really a config file?")]
    TooLarge { path: PathBuf },
    #[error(
        "{path} is {problem}: whoever can write it decides what root executes \
         (supervisor.binDir); make it root's, mode 0600"
    )]
    Untrusted { path: PathBuf, problem: String },
    #[error("not valid YAML: {0}")]
    Syntax(String),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A checked configuration with every default applied.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsMaterial,
    pub jobs: JobDefaults,
    pub cgroup: CgroupConfig,
    /// Host paths bind-mounted read-only into every job.
    pub allowed_mounts: Vec<PathBuf>,
    pub runtime: RuntimeConfig,
    pub logging: LoggingConfig,
    pub paths: Paths,
    pub users: UsersConfig,
    pub job_user: JobUser,
    pub restart: RestartPolicy,
    /// How long a helper (other than the spawner) may take to exit after SIGTERM at shutdown;
    /// the spawner gets the job stop grace on top.
    pub stop_timeout: Duration,
    /// Largest total upload per job, bytes (`grpc.maxRecvMsgSize`).
    pub max_upload_bytes: u64,
    pub security: SecurityConfig,
    pub monitoring: MonitoringConfig,
}

/// How jobs are confined beyond namespaces and cgroups (`security.userNamespace`,
/// `security.landlock`); seccomp is always on and has no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Handed to the spawner as is.
    pub userns: UserNamespaces,
    pub landlock: Enforcement,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoringConfig {
    /// Default period of StreamSystemMetrics (`monitoring.system_interval`).
    pub system_interval: Duration,
    /// How often persistd samples each running job's cgroup (`monitoring.job_metrics_interval`).
    pub job_metrics_interval: Duration,
    /// Where the frontend serves Prometheus metrics (`monitoring.bind_address`); `None` = off.
    pub metrics_address: Option<ListenAddress>,
}

/// A `HOST:PORT` to listen on; port 0 picks any free port (tests), which is then logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    /// A host name or an IP address, without brackets.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Host or IP to listen on, as configured (`server.address`).
    pub address: String,
    /// 0 means any free port (tests); the bound port is logged and handed to the frontend.
    pub port: u16,
    pub node_id: String,
}

/// The frontend's TLS material, embedded PEM as Joblet stores it.
#[derive(Clone)]
pub struct TlsMaterial {
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub ca_cert_pem: String,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

/// Job defaults from the `joblet` section, plus `cgroup.defaultPidsLimit` and the volume quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDefaults {
    pub cpu_percent: u32,
    pub memory_mb: u64,
    pub io_bps: u64,
    pub pids_max: u32,
    pub disk_mb: u64,
    /// 0 = unlimited.
    pub max_concurrent_jobs: u32,
    /// Zero = no timeout.
    pub timeout: Duration,
    /// Between SIGTERM and kill when a job is stopped (`joblet.cleanupTimeout`).
    pub stop_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupConfig {
    /// Our subtree's name under the spawner's cgroup.
    pub base: String,
    /// Controllers that must be available, with v2 names (`io`, not `blkio`).
    pub controllers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub base_path: PathBuf,
    pub common_paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// A tracing filter directive (`info`, `joblet=debug`).
    pub level: String,
    pub format: LogFormat,
    pub output: LogOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Sockets and the spawner's records: `root:<group>` 0750.
    pub run_dir: PathBuf,
    /// stated's database directory, 0700 to stated.
    pub state_dir: PathBuf,
    /// persistd's log store, 0700 to persistd.
    pub logs_dir: PathBuf,
    /// The frontend's private directory, 0700 to the frontend.
    pub data_dir: PathBuf,
    /// The frontend's append-only audit log (created by us, owned by the frontend, 0600).
    pub audit_log: PathBuf,
    /// Where the helper binaries are; `None` = next to our own executable.
    pub bin_dir: Option<PathBuf>,
}

impl Paths {
    pub fn spawner_dir(&self) -> PathBuf {
        self.run_dir.join("spawner")
    }
    pub fn stated_db(&self) -> PathBuf {
        self.state_dir.join("jobs.redb")
    }
}

/// A user or group, by name (resolved at start) or by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdRef {
    Id(u32),
    Name(String),
}

impl fmt::Display for IdRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdRef::Id(id) => write!(f, "{id}"),
            IdRef::Name(n) => f.write_str(n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersConfig {
    pub api: IdRef,
    pub persistd: IdRef,
    pub stated: IdRef,
    /// Shared group of the helpers: lets them reach the run directory and its sockets.
    pub group: IdRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobUser {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

/// A checked config and what was worth telling about it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Reads, parses and validates the config at `path`, and `runtime-config.yml` beside it when
/// present (Joblet's split configuration: it overrides the `runtime` section).
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let text = read_limited(path)?;
    warn_if_exposed(path, &mut warnings);
    let mut raw: raw::RawConfig = parse(&text, &mut warnings)?;
    if let Some(runtime_file) = runtime_config_beside(path) {
        let text = read_limited(&runtime_file)?;
        let file: raw::RawRuntimeFile = parse(&text, &mut warnings).map_err(|e| match e {
            ConfigError::Invalid { key, message } => ConfigError::Invalid {
                key: format!("{}: {key}", runtime_file.display()),
                message,
            },
            other => other,
        })?;
        raw.runtime = file.runtime;
    }
    let config = validate::validate(raw, &mut warnings)?;
    Ok(Loaded { config, warnings })
}

/// Refuses a config file that anyone but root could have written; the supervisor runs as root
/// and executes what the file names.
pub fn check_trusted(path: &Path) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let problem = if meta.uid() != 0 {
        Some(format!("owned by uid {}", meta.uid()))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "writable by others (mode {:04o})",
            meta.mode() & 0o7777
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::Untrusted {
            path: path.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Parses and validates config text (no file checks, no `runtime-config.yml`).
pub fn from_str(text: &str) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let raw: raw::RawConfig = parse(text, &mut warnings)?;
    let config = validate::validate(raw, &mut warnings)?;
    Ok(Loaded { config, warnings })
}

fn runtime_config_beside(config: &Path) -> Option<PathBuf> {
    let candidate = config.parent()?.join("runtime-config.yml");
    candidate.is_file().then_some(candidate)
}

fn read_limited(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

fn warn_if_exposed(path: &Path, warnings: &mut Vec<String>) {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.mode() & 0o077 != 0
    {
        warnings.push(format!(
            "{} has mode {:04o}: it holds the server's private key; run chmod 0600 on it",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
}

/// Parses YAML into `T`, naming the key of a bad value and collecting unknown keys.
fn parse<T: serde::de::DeserializeOwned>(
    text: &str,
    warnings: &mut Vec<String>,
) -> Result<T, ConfigError> {
    // Snippets would quote the lines around an error, which may be the private key.
    let options = serde_saphyr::options! {
        with_snippet: false,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    let mut unused = Vec::new();
    let mut failed_at = None;
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        let mut record = |path: serde_ignored::Path<'_>| unused.push(keys::dotted(&path));
        let de = serde_ignored::Deserializer::new(de, &mut record);
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            failed_at = Some(e.path().to_string());
            e.into_inner()
        })
    });
    let value = parsed.map_err(|e| match failed_at.filter(|k| !k.is_empty() && k != ".") {
        Some(key) => ConfigError::Invalid {
            key,
            message: e.to_string(),
        },
        None => ConfigError::Syntax(e.to_string()),
    })?;
    for key in unused {
        if !keys::is_documented(&key) {
            warnings.push(format!(
                "unknown key `{key}` ignored (neither a Joblet nor a joblet-rs setting)"
            ));
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
