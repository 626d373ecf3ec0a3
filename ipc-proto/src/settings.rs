//! What the supervisor hands each helper at start.
//!
//! Only the supervisor parses `joblet-config.yml` (YAML, root-owned, mode 0600). It validates
//! it, then gives each helper exactly the settings that helper needs, postcard-encoded in a
//! sealed memfd whose number is passed as `--settings-fd N`. Listening sockets are created
//! by the supervisor and inherited (their fd numbers are in the settings), so a helper that
//! restarts keeps its socket and clients queue instead of failing, and the frontend can serve
//! a privileged port with no capability. The spawner thus never parses YAML, and the TLS key
//! reaches only the frontend.

use std::os::fd::RawFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::channel::Channel;

/// A listening socket a helper inherits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Listen {
    /// A `SOCK_SEQPACKET` socket serving `channel`.
    Ipc { channel: Channel, fd: RawFd },
    /// The public TCP socket (frontend only).
    Tcp { fd: RawFd },
    /// The plain-HTTP Prometheus socket at `monitoring.bind_address` (frontend only).
    Metrics { fd: RawFd },
}

/// How a helper logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logging {
    /// A tracing filter directive such as `info` or `joblet_spawner=debug`.
    pub level: String,
    pub format: LogFormat,
}

/// Exit status of a helper that refuses to run on this host because a boundary it is
/// configured to enforce is unavailable (sysexits' `EX_CONFIG`). Restarting cannot help, so
/// the supervisor stops the system and exits with an error instead.
pub const EXIT_HOST_UNSUPPORTED: u8 = 78;

/// Which cgroup hierarchy the host has, as the supervisor detected it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupMode {
    V1,
    V2,
}

/// Whether a security layer must be present on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Enforcement {
    /// Refuse to start, naming the missing kernel feature, if it is unavailable.
    Required,
    /// Use it where the kernel has it; log a warning where it does not.
    BestEffort,
    /// Do not use it.
    Off,
}

/// User namespaces for jobs: each running job gets its own range of host ids, so root
/// inside a job is an unprivileged, unshared uid on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespaces {
    pub enabled: bool,
    /// First host uid (and gid) of the ranges given to jobs.
    pub host_base: u32,
    /// Ids per job (65536 maps the whole 16-bit space).
    pub range: u32,
    /// How many ranges exist: at most this many jobs hold one at once.
    pub slots: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnerSettings {
    pub logging: Logging,
    pub listen: Vec<Listen>,
    /// Uid of the frontend: the only peer allowed on the spawner channel.
    pub api_uid: u32,
    /// persistd's output socket, where job pipes are handed over. Only root can create or
    /// replace it (it lives in the root-owned 0750 run directory); its peer credentials would
    /// name the supervisor, which listens on behalf of persistd, so they are not checked.
    pub output_socket: PathBuf,
    /// Root-only directory for the spawner's per-job records (survives a spawner restart).
    pub state_dir: PathBuf,
    /// Uid and gid the job's command runs as.
    pub job_uid: u32,
    pub job_gid: u32,
    /// Host paths bind-mounted read-only into every job at the same place.
    pub allowed_mounts: Vec<PathBuf>,
    /// Mount point of the cgroup filesystem(s), normally `/sys/fs/cgroup`.
    pub cgroup_root: PathBuf,
    pub cgroup_mode: CgroupMode,
    /// Name of our own subtree under the spawner's cgroup (per hierarchy on v1).
    pub cgroup_base: String,
    /// pids limit applied when a request carries none.
    pub default_pids_max: u32,
    /// Size of the job's writable space when a request carries none, MiB.
    pub default_disk_mb: u64,
    /// Grace period between SIGTERM and kill when stopping, if the request gives none.
    pub stop_grace_ms: u32,
    pub userns: UserNamespaces,
    pub landlock: Enforcement,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistdSettings {
    pub logging: Logging,
    pub listen: Vec<Listen>,
    /// Where logs are stored (mode 0700, owned by persistd).
    pub data_dir: PathBuf,
    /// Allowed peer on the output channel (the spawner: root).
    pub spawner_uid: u32,
    /// Allowed peer on the logs channel.
    pub api_uid: u32,
    /// How often each running job's cgroup is sampled for metrics.
    pub metrics_interval_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatedSettings {
    pub logging: Logging,
    pub listen: Vec<Listen>,
    /// The redb database file (in a 0700 directory owned by stated).
    pub db_path: PathBuf,
    pub api_uid: u32,
}

/// Limits applied when a request leaves them at zero (`joblet.default*Limit` in the config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultLimits {
    pub cpu_percent: u32,
    pub memory_mb: u64,
    pub io_bps: u64,
    pub pids_max: u32,
    pub disk_mb: u64,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontendSettings {
    pub logging: Logging,
    pub listen: Vec<Listen>,
    /// Address as configured (`server.address:server.port`), for logs and system status.
    pub address: String,
    pub node_id: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub ca_cert_pem: String,
    pub spawner_socket: PathBuf,
    pub state_socket: PathBuf,
    pub logs_socket: PathBuf,
    /// Append-only audit log (one JSON line per call), owned by the frontend, mode 0600.
    pub audit_log: PathBuf,
    /// The frontend's own private directory (upload staging, sealing key).
    pub data_dir: PathBuf,
    pub defaults: DefaultLimits,
    pub stop_grace_ms: u32,
    /// Largest total upload per job, bytes.
    pub max_upload_bytes: u64,
    /// Most jobs in RUNNING or INITIALIZING at once; 0 = unlimited.
    pub max_concurrent_jobs: u32,
    /// `joblet.jobTimeout` in ms; 0 = none.
    pub default_timeout_ms: u64,
    /// `monitoring.system_interval`: default period of StreamSystemMetrics.
    pub system_interval_ms: u32,
}

impl std::fmt::Debug for FrontendSettings {
    // The private key must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontendSettings")
            .field("address", &self.address)
            .field("node_id", &self.node_id)
            .field("listen", &self.listen)
            .field("spawner_socket", &self.spawner_socket)
            .field("state_socket", &self.state_socket)
            .field("logs_socket", &self.logs_socket)
            .field("audit_log", &self.audit_log)
            .field("data_dir", &self.data_dir)
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

/// Reads a helper's settings from the fd the supervisor passed (`--settings-fd N`).
pub fn read_from_fd<T: serde::de::DeserializeOwned>(
    fd: std::os::fd::OwnedFd,
) -> Result<T, crate::IpcError> {
    use std::io::Read;
    let mut file = std::fs::File::from(fd);
    let mut buf = Vec::new();
    (&mut file)
        .take(1 << 20)
        .read_to_end(&mut buf)
        .map_err(crate::IpcError::Io)?;
    postcard::from_bytes(&buf).map_err(|e| crate::IpcError::Malformed(format!("settings: {e}")))
}

/// Finds the fd of the listener serving `channel`.
pub fn ipc_listener(listen: &[Listen], channel: Channel) -> Option<RawFd> {
    listen.iter().find_map(|l| match l {
        Listen::Ipc { channel: c, fd } if *c == channel => Some(*fd),
        _ => None,
    })
}

/// Finds the fd of the TCP listener.
pub fn tcp_listener(listen: &[Listen]) -> Option<RawFd> {
    listen.iter().find_map(|l| match l {
        Listen::Tcp { fd } => Some(*fd),
        _ => None,
    })
}

/// Finds the fd of the Prometheus listener, if one is configured.
pub fn metrics_listener(listen: &[Listen]) -> Option<RawFd> {
    listen.iter().find_map(|l| match l {
        Listen::Metrics { fd } => Some(*fd),
        _ => None,
    })
}
