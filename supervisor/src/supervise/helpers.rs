//! The four helpers: their binaries, order, identities, inherited sockets and settings.

use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::settings::{
    CgroupMode, DefaultLimits, FrontendSettings, Listen, Logging, PersistdSettings,
    SpawnerSettings, StatedSettings,
};

use crate::config::Config;
use crate::host::cgroup::CGROUP_ROOT;
use crate::host::sockets::IpcSocket;
use crate::identity::Identities;

/// Fd number of the settings memfd in every helper (`--settings-fd 3`).
pub const SETTINGS_FD: RawFd = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HelperKind {
    Stated,
    Persistd,
    Spawner,
    Api,
}

impl HelperKind {
    /// Stores first, so the spawner and the frontend find them; the frontend last.
    pub const START_ORDER: [HelperKind; 4] = [
        HelperKind::Stated,
        HelperKind::Persistd,
        HelperKind::Spawner,
        HelperKind::Api,
    ];

    /// The spawner first (it stops the jobs and reports their exits through the frontend),
    /// then the frontend, then the stores it writes to.
    pub const STOP_ORDER: [HelperKind; 4] = [
        HelperKind::Spawner,
        HelperKind::Api,
        HelperKind::Persistd,
        HelperKind::Stated,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HelperKind::Stated => "stated",
            HelperKind::Persistd => "persistd",
            HelperKind::Spawner => "spawner",
            HelperKind::Api => "api",
        }
    }

    pub fn binary(self) -> &'static str {
        match self {
            HelperKind::Stated => "joblet-stated",
            HelperKind::Persistd => "joblet-persistd",
            HelperKind::Spawner => "joblet-spawner",
            HelperKind::Api => "joblet-api",
        }
    }

    /// The IPC channels this helper serves, in the order of their inherited fds.
    pub fn channels(self) -> &'static [Channel] {
        match self {
            HelperKind::Stated => &[Channel::State],
            HelperKind::Persistd => &[Channel::Output, Channel::Logs],
            HelperKind::Spawner => &[Channel::Spawner],
            HelperKind::Api => &[],
        }
    }

    /// The uid it runs as; `None` for the spawner, which keeps root.
    pub fn uid(self, ids: &Identities) -> Option<u32> {
        match self {
            HelperKind::Stated => Some(ids.stated),
            HelperKind::Persistd => Some(ids.persistd),
            HelperKind::Spawner => None,
            HelperKind::Api => Some(ids.api),
        }
    }
}

impl std::fmt::Display for HelperKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything the settings are made of that is decided at start.
pub struct Host<'a> {
    pub config: &'a Config,
    pub ids: Identities,
    pub cgroup_mode: CgroupMode,
    pub ipc: &'a [IpcSocket],
    /// The frontend's TCP listener.
    pub tcp: RawFd,
    /// The address the TCP listener is bound to, as `host:port`.
    pub bound_address: String,
    /// The frontend's Prometheus listener, when `monitoring.bind_address` is set.
    pub metrics: Option<RawFd>,
}

/// A helper's inherited fds (sources in the supervisor, in target order after the memfd) and
/// its encoded settings.
pub struct HelperPlan {
    pub kind: HelperKind,
    pub inherited: Vec<RawFd>,
    pub settings: Vec<u8>,
    /// Set for the unprivileged helpers: (uid, gid, supplementary groups).
    pub creds: Option<(u32, u32, Vec<u32>)>,
}

impl Host<'_> {
    fn socket_path(&self, channel: Channel) -> PathBuf {
        self.config.paths.run_dir.join(channel.socket_name())
    }

    fn ipc_fd(&self, channel: Channel) -> RawFd {
        self.ipc
            .iter()
            .find(|s| s.channel == channel)
            .map(|s| s.fd.as_raw_fd())
            // Every channel's socket is bound before any plan is made (see `setup`).
            .unwrap_or(-1)
    }

    fn logging(&self) -> Logging {
        Logging {
            level: self.config.logging.level.clone(),
            format: self.config.logging.format,
        }
    }

    /// The settings, inherited fds and credentials of `kind`.
    pub fn plan(&self, kind: HelperKind) -> Result<HelperPlan, postcard::Error> {
        let mut inherited: Vec<RawFd> = kind.channels().iter().map(|c| self.ipc_fd(*c)).collect();
        let mut listen: Vec<Listen> = kind
            .channels()
            .iter()
            .zip(SETTINGS_FD + 1..)
            .map(|(c, fd)| Listen::Ipc { channel: *c, fd })
            .collect();
        if kind == HelperKind::Api {
            // Each inherited fd lands on the next number after the settings (see `spawn`).
            let next = |inherited: &Vec<RawFd>| SETTINGS_FD + 1 + inherited.len() as RawFd;
            listen.push(Listen::Tcp {
                fd: next(&inherited),
            });
            inherited.push(self.tcp);
            if let Some(metrics) = self.metrics {
                listen.push(Listen::Metrics {
                    fd: next(&inherited),
                });
                inherited.push(metrics);
            }
        }
        let settings = self.encode(kind, listen)?;
        let creds = kind
            .uid(&self.ids)
            .map(|uid| (uid, self.ids.group, vec![self.ids.group]));
        Ok(HelperPlan {
            kind,
            inherited,
            settings,
            creds,
        })
    }

    fn encode(&self, kind: HelperKind, listen: Vec<Listen>) -> Result<Vec<u8>, postcard::Error> {
        let c = self.config;
        let stop_grace_ms = millis(c.jobs.stop_grace);
        match kind {
            HelperKind::Stated => postcard::to_allocvec(&StatedSettings {
                logging: self.logging(),
                listen,
                db_path: c.paths.stated_db(),
                api_uid: self.ids.api,
            }),
            HelperKind::Persistd => postcard::to_allocvec(&PersistdSettings {
                logging: self.logging(),
                listen,
                data_dir: c.paths.logs_dir.clone(),
                spawner_uid: 0,
                api_uid: self.ids.api,
                metrics_interval_ms: millis(c.monitoring.job_metrics_interval),
            }),
            HelperKind::Spawner => postcard::to_allocvec(&SpawnerSettings {
                logging: self.logging(),
                listen,
                api_uid: self.ids.api,
                output_socket: self.socket_path(Channel::Output),
                state_dir: c.paths.spawner_dir(),
                job_uid: c.job_user.uid,
                job_gid: c.job_user.gid,
                allowed_mounts: c.allowed_mounts.clone(),
                cgroup_root: PathBuf::from(CGROUP_ROOT),
                cgroup_mode: self.cgroup_mode,
                cgroup_base: c.cgroup.base.clone(),
                default_pids_max: c.jobs.pids_max,
                default_disk_mb: c.jobs.disk_mb,
                stop_grace_ms,
                userns: c.security.userns.clone(),
                landlock: c.security.landlock,
            }),
            HelperKind::Api => postcard::to_allocvec(&FrontendSettings {
                logging: self.logging(),
                listen,
                address: self.bound_address.clone(),
                node_id: c.server.node_id.clone(),
                server_cert_pem: c.tls.server_cert_pem.clone(),
                server_key_pem: c.tls.server_key_pem.clone(),
                ca_cert_pem: c.tls.ca_cert_pem.clone(),
                spawner_socket: self.socket_path(Channel::Spawner),
                state_socket: self.socket_path(Channel::State),
                logs_socket: self.socket_path(Channel::Logs),
                audit_log: c.paths.audit_log.clone(),
                data_dir: c.paths.data_dir.clone(),
                defaults: DefaultLimits {
                    cpu_percent: c.jobs.cpu_percent,
                    memory_mb: c.jobs.memory_mb,
                    io_bps: c.jobs.io_bps,
                    pids_max: c.jobs.pids_max,
                    disk_mb: c.jobs.disk_mb,
                },
                stop_grace_ms,
                max_upload_bytes: c.max_upload_bytes,
                max_concurrent_jobs: c.jobs.max_concurrent_jobs,
                default_timeout_ms: u64::try_from(c.jobs.timeout.as_millis()).unwrap_or(u64::MAX),
                system_interval_ms: millis(c.monitoring.system_interval),
            }),
        }
    }
}

/// Milliseconds as the settings carry them; the config bounds every duration far below
/// `u32::MAX` ms (49 days).
fn millis(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use joblet_ipc_proto::settings::{Enforcement, UserNamespaces};

    use super::*;

    const PEMS: &str = "security:\n  serverCert: \"-----BEGIN CERTIFICATE-----\\nA\\n-----END CERTIFICATE-----\"\n  serverKey: \"-----BEGIN PRIVATE KEY-----\\nSECRET\\n-----END PRIVATE KEY-----\"\n  caCert: \"-----BEGIN CERTIFICATE-----\\nC\\n-----END CERTIFICATE-----\"\n";

    /// A host from a config with the test's directories, `security` lines (indented, they
    /// continue the PEMs' section) and `extra` config text, and the Prometheus listener
    /// `metrics` if any.
    fn host_with<R>(
        security: &str,
        extra: &str,
        metrics: Option<RawFd>,
        f: impl FnOnce(&Host<'_>) -> R,
    ) -> R {
        let text = format!(
            "{PEMS}{security}supervisor: {{runDir: /r, stateDir: /s, logsDir: /l, dataDir: /d}}\n\
             joblet: {{cleanupTimeout: 2s, jobTimeout: 1m, defaultMemoryLimit: 64}}\n{extra}"
        );
        let config = crate::config::from_str(&text).unwrap().config;
        let host = Host {
            config: &config,
            ids: Identities {
                api: 11,
                persistd: 12,
                stated: 13,
                group: 10,
            },
            cgroup_mode: CgroupMode::V1,
            ipc: &[],
            tcp: 99,
            bound_address: "127.0.0.1:5000".into(),
            metrics,
        };
        f(&host)
    }

    #[test]
    fn each_helper_gets_its_channels_and_peer_uids() {
        host_with("", "", None, |host| {
            let stated = host.plan(HelperKind::Stated).unwrap();
            let s: StatedSettings = postcard::from_bytes(&stated.settings).unwrap();
            assert_eq!(
                s.listen,
                [Listen::Ipc {
                    channel: Channel::State,
                    fd: 4
                }]
            );
            assert_eq!(s.db_path, PathBuf::from("/s/jobs.redb"));
            assert_eq!(s.api_uid, 11);
            assert_eq!(stated.creds, Some((13, 10, vec![10])));

            let persistd = host.plan(HelperKind::Persistd).unwrap();
            let p: PersistdSettings = postcard::from_bytes(&persistd.settings).unwrap();
            assert_eq!(
                p.listen,
                [
                    Listen::Ipc {
                        channel: Channel::Output,
                        fd: 4
                    },
                    Listen::Ipc {
                        channel: Channel::Logs,
                        fd: 5
                    }
                ]
            );
            assert_eq!((p.spawner_uid, p.api_uid), (0, 11));
            assert_eq!(p.data_dir, PathBuf::from("/l"));
            assert_eq!(p.metrics_interval_ms, 5000);

            let spawner = host.plan(HelperKind::Spawner).unwrap();
            let sp: SpawnerSettings = postcard::from_bytes(&spawner.settings).unwrap();
            assert_eq!(sp.api_uid, 11);
            assert_eq!(sp.output_socket, PathBuf::from("/r/persistd-output.sock"));
            assert_eq!(sp.state_dir, PathBuf::from("/r/spawner"));
            assert_eq!(sp.stop_grace_ms, 2000);
            assert_eq!((sp.job_uid, sp.job_gid), (65534, 65534));
            assert_eq!(
                sp.userns,
                UserNamespaces {
                    enabled: true,
                    host_base: 0x7000_0000,
                    range: 65536,
                    slots: 1024
                }
            );
            assert_eq!(sp.landlock, Enforcement::BestEffort);
            assert_eq!(spawner.creds, None, "the spawner keeps root");

            let api = host.plan(HelperKind::Api).unwrap();
            assert_eq!(api.inherited, [99]);
            let a: FrontendSettings = postcard::from_bytes(&api.settings).unwrap();
            assert_eq!(a.listen, [Listen::Tcp { fd: 4 }]);
            assert_eq!(a.address, "127.0.0.1:5000");
            assert_eq!(a.state_socket, PathBuf::from("/r/stated.sock"));
            assert_eq!(a.logs_socket, PathBuf::from("/r/persistd.sock"));
            assert_eq!(a.spawner_socket, PathBuf::from("/r/spawner.sock"));
            assert!(a.server_key_pem.contains("SECRET"));
            assert_eq!(a.defaults.memory_mb, 64);
            assert_eq!(a.default_timeout_ms, 60_000);
            assert_eq!(a.system_interval_ms, 10_000);
            assert_eq!(api.creds, Some((11, 10, vec![10])));
        });
    }

    #[test]
    fn configured_confinement_intervals_and_metrics_listener_reach_their_helpers() {
        let security = "  userNamespace: {enabled: true, hostBase: 2000000000, range: 70000, \
                        slots: 8}\n  landlock: required\n";
        let monitoring = "monitoring: {system_interval: 3s, job_metrics_interval: 250ms, \
                          bind_address: \"127.0.0.1:9100\"}\n";
        host_with(security, monitoring, Some(98), |host| {
            let sp: SpawnerSettings =
                postcard::from_bytes(&host.plan(HelperKind::Spawner).unwrap().settings).unwrap();
            assert_eq!(
                sp.userns,
                UserNamespaces {
                    enabled: true,
                    host_base: 2_000_000_000,
                    range: 70000,
                    slots: 8
                }
            );
            assert_eq!(sp.landlock, Enforcement::Required);
            let api = host.plan(HelperKind::Api).unwrap();
            assert_eq!(api.inherited, [99, 98], "TCP first, then Prometheus");
            let a: FrontendSettings = postcard::from_bytes(&api.settings).unwrap();
            assert_eq!(a.listen, [Listen::Tcp { fd: 4 }, Listen::Metrics { fd: 5 }]);
            assert_eq!(a.system_interval_ms, 3000);
            let p: PersistdSettings =
                postcard::from_bytes(&host.plan(HelperKind::Persistd).unwrap().settings).unwrap();
            assert_eq!(p.metrics_interval_ms, 250);
            // Only the frontend gets the Prometheus listener.
            for kind in [
                HelperKind::Stated,
                HelperKind::Persistd,
                HelperKind::Spawner,
            ] {
                assert!(!host.plan(kind).unwrap().inherited.contains(&98), "{kind}");
            }
        });
    }
}
