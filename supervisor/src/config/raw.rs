//! The config file as written: every key we read, all optional, with Joblet's own spellings
//! (camelCase in most sections, snake_case in `volumes`, `runtime` and `monitoring`).
//! [`super::validate`] turns this into a checked [`super::Config`] with defaults filled in.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::duration::GoDuration;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub version: Option<Scalar>,
    pub server: RawServer,
    pub security: RawSecurity,
    pub joblet: RawJoblet,
    pub cgroup: RawCgroup,
    pub filesystem: RawFilesystem,
    pub volumes: RawVolumes,
    pub runtime: RawRuntime,
    pub logging: RawLogging,
    pub monitoring: RawMonitoring,
    pub grpc: RawGrpc,
    pub supervisor: RawSupervisor,
    pub audit: RawAudit,
}

/// `runtime-config.yml`: Joblet's distro-specific file holding only the runtime section.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRuntimeFile {
    pub runtime: RawRuntime,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawServer {
    pub address: Option<String>,
    pub port: Option<u16>,
    #[serde(rename = "nodeId")]
    pub node_id: Option<String>,
    pub mode: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawSecurity {
    #[serde(rename = "serverCert")]
    pub server_cert: Option<String>,
    #[serde(rename = "serverKey")]
    pub server_key: Option<String>,
    #[serde(rename = "caCert")]
    pub ca_cert: Option<String>,
    #[serde(rename = "userNamespace")]
    pub user_namespace: RawUserNamespace,
    pub landlock: Option<Scalar>,
}

/// `security.userNamespace` (joblet-rs).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawUserNamespace {
    pub enabled: Option<bool>,
    #[serde(rename = "hostBase")]
    pub host_base: Option<u32>,
    pub range: Option<u32>,
    pub slots: Option<u32>,
}

impl fmt::Debug for RawSecurity {
    // The server key must never reach a log or an error message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSecurity")
            .field("server_cert", &self.server_cert.as_ref().map(|_| "<pem>"))
            .field(
                "server_key",
                &self.server_key.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_cert", &self.ca_cert.as_ref().map(|_| "<pem>"))
            .field("user_namespace", &self.user_namespace)
            .field("landlock", &self.landlock)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawJoblet {
    #[serde(rename = "defaultCpuLimit")]
    pub default_cpu_limit: Option<u32>,
    #[serde(rename = "defaultMemoryLimit")]
    pub default_memory_limit: Option<u64>,
    #[serde(rename = "defaultIoLimit")]
    pub default_io_limit: Option<u64>,
    #[serde(rename = "maxConcurrentJobs")]
    pub max_concurrent_jobs: Option<u32>,
    #[serde(rename = "jobTimeout")]
    pub job_timeout: Option<GoDuration>,
    #[serde(rename = "cleanupTimeout")]
    pub cleanup_timeout: Option<GoDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawCgroup {
    #[serde(rename = "baseDir")]
    pub base_dir: Option<String>,
    #[serde(rename = "enableControllers")]
    pub enable_controllers: Option<Vec<String>>,
    #[serde(rename = "cleanupTimeout")]
    pub cleanup_timeout: Option<GoDuration>,
    #[serde(rename = "defaultPidsLimit")]
    pub default_pids_limit: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawFilesystem {
    #[serde(rename = "baseDir")]
    pub base_dir: Option<PathBuf>,
    #[serde(rename = "tmpDir")]
    pub tmp_dir: Option<String>,
    #[serde(rename = "allowedMounts")]
    pub allowed_mounts: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawVolumes {
    pub base_path: Option<PathBuf>,
    pub default_disk_quota_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRuntime {
    pub base_path: Option<PathBuf>,
    pub common_paths: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawLogging {
    pub level: Option<String>,
    pub format: Option<String>,
    pub output: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawMonitoring {
    pub system_interval: Option<GoDuration>,
    /// joblet-rs: how often persistd samples each running job's cgroup.
    pub job_metrics_interval: Option<GoDuration>,
    pub bind_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawGrpc {
    #[serde(rename = "maxRecvMsgSize")]
    pub max_recv_msg_size: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSupervisor {
    #[serde(rename = "runDir")]
    pub run_dir: Option<PathBuf>,
    #[serde(rename = "stateDir")]
    pub state_dir: Option<PathBuf>,
    #[serde(rename = "logsDir")]
    pub logs_dir: Option<PathBuf>,
    #[serde(rename = "dataDir")]
    pub data_dir: Option<PathBuf>,
    #[serde(rename = "binDir")]
    pub bin_dir: Option<PathBuf>,
    pub users: RawUsers,
    #[serde(rename = "jobUser")]
    pub job_user: RawJobUser,
    pub restart: RawRestart,
    #[serde(rename = "stopTimeout")]
    pub stop_timeout: Option<GoDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawUsers {
    pub api: Option<Scalar>,
    pub persistd: Option<Scalar>,
    pub stated: Option<Scalar>,
    pub group: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawJobUser {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRestart {
    #[serde(rename = "minBackoff")]
    pub min_backoff: Option<GoDuration>,
    #[serde(rename = "maxBackoff")]
    pub max_backoff: Option<GoDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAudit {
    pub path: Option<PathBuf>,
}

/// A scalar written as a string, a number or a boolean (`version: 3.0`, `api: 64701`,
/// `landlock: off`, which YAML 1.1 readers take for `false`), kept as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}
