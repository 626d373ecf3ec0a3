//! `joblet` run: prepare the host (identities, cgroup mode, directories, sockets), then start
//! and supervise the helpers until told to stop.

pub mod backoff;
pub mod event_loop;
pub mod helpers;
pub mod spawn;

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::settings::CgroupMode;
use tracing::{info, warn};

use crate::config::Config;
use crate::host::cgroup::{self, CGROUP_ROOT};
use crate::host::dirs::{self, DirSpec};
use crate::host::harden;
use crate::host::landlock;
use crate::host::notify::Notifier;
use crate::host::records_mount::{RecordsMount, RecordsMountError};
use crate::host::sockets::{self, IpcSocket};
use crate::identity::{Identities, IdentityError};
use crate::job_ids::{self, JobIdsError};
use backoff::Backoff;
use event_loop::{EventLoop, Helper};
use helpers::{HelperKind, Host};
use spawn::{Creds, Launch};

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("joblet must run as root (it starts the spawner, which needs root)")]
    NotRoot,
    #[error("blocking signals failed: {0}")]
    Signals(nix::Error),
    #[error("hardening the supervisor failed: {0}")]
    Harden(std::io::Error),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    JobIds(#[from] JobIdsError),
    #[error(transparent)]
    Landlock(#[from] landlock::LandlockMissing),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Dir(#[from] dirs::DirError),
    #[error(transparent)]
    Socket(#[from] sockets::SocketError),
    #[error(transparent)]
    RecordsMount(#[from] RecordsMountError),
    #[error("cannot find our own executable to locate the helpers: {0}")]
    OwnExe(std::io::Error),
    #[error("helper binary {path}: {problem}")]
    Binary { path: PathBuf, problem: String },
    #[error("encoding the {helper} settings failed: {source}")]
    Settings {
        helper: HelperKind,
        source: postcard::Error,
    },
    #[error("preparing {helper}: {source}")]
    Launch {
        helper: HelperKind,
        source: spawn::SpawnError,
    },
    #[error(transparent)]
    Loop(#[from] event_loop::LoopError),
}

/// Runs Joblet with `config` until SIGTERM or SIGINT; returns once everything has stopped.
pub fn run(config: &Config) -> Result<(), SuperviseError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(SuperviseError::NotRoot);
    }
    // From here a stop signal is queued for the loop instead of killing us half-way.
    event_loop::loop_signals()
        .thread_block()
        .map_err(SuperviseError::Signals)?;
    harden::harden_self().map_err(SuperviseError::Harden)?;
    let ids = Identities::resolve(&config.users, config.job_user)?;
    check_confinement(config, &ids)?;
    let cgroup_mode = detect_cgroups(config)?;
    let bin_dir = match &config.paths.bin_dir {
        Some(dir) => dir.clone(),
        None => own_dir()?,
    };
    let binaries = HelperKind::START_ORDER
        .into_iter()
        .map(|kind| helper_binary(&bin_dir, kind, &ids).map(|path| (kind, path)))
        .collect::<Result<Vec<_>, _>>()?;
    prepare_dirs(config, &ids)?;
    let records = RecordsMount::mount(&config.paths.spawner_dir())?;
    let sockets = SocketSet::bind(&config.paths.run_dir, ids.group)?;
    let (tcp, local) =
        sockets::bind_tcp("server.address", &config.server.address, config.server.port)?;
    let bound_address = with_port(&config.server.address, local.port());
    info!(address = %local, "listening for clients");
    let metrics = bind_metrics(config)?;
    let host = Host {
        config,
        ids,
        cgroup_mode,
        ipc: &sockets.0,
        tcp: tcp.as_raw_fd(),
        bound_address,
        metrics: metrics.as_ref().map(AsRawFd::as_raw_fd),
    };
    let cap_last = harden::cap_last_cap();
    let mut helpers = Vec::new();
    for (kind, path) in binaries {
        let plan = host.plan(kind).map_err(|source| SuperviseError::Settings {
            helper: kind,
            source,
        })?;
        let creds = plan
            .creds
            .clone()
            .map(|(uid, gid, groups)| Creds { uid, gid, groups });
        let launch = Launch::new(&path, kind.binary(), creds, cap_last).map_err(|source| {
            SuperviseError::Launch {
                helper: kind,
                source,
            }
        })?;
        helpers.push(Helper::new(
            kind,
            plan,
            launch,
            Backoff::new(config.restart),
        ));
    }
    let event_loop = EventLoop::new(
        helpers,
        Notifier::from_env(),
        config.jobs.stop_grace,
        config.stop_timeout,
    )?;
    event_loop.run()?;
    // The listeners stay open until here, so a restarted helper always found its socket.
    drop(metrics);
    drop(tcp);
    drop(sockets);
    // The spawner has exited: its records are settled, or kept for the next start.
    drop(records);
    Ok(())
}

/// Refuses job id ranges that hold a host user's or a helper's id, and a required Landlock
/// the kernel lacks; says how jobs are confined.
fn check_confinement(config: &Config, ids: &Identities) -> Result<(), SuperviseError> {
    let userns = &config.security.userns;
    for warning in job_ids::check_host(userns, ids)? {
        warn!("{warning}");
    }
    let kernel = landlock::probe();
    if let Some(warning) = landlock::check(config.security.landlock, &kernel)? {
        warn!("{warning}");
    }
    let span = crate::config::userns_span(userns);
    info!(
        user_namespaces = userns.enabled,
        host_ids = %format_args!("{}-{}", span.start, span.end.saturating_sub(1)),
        slots = userns.slots,
        landlock = ?config.security.landlock,
        kernel_landlock = ?kernel,
        "job confinement"
    );
    Ok(())
}

/// The frontend's Prometheus listener, when `monitoring.bind_address` is set.
fn bind_metrics(config: &Config) -> Result<Option<std::os::fd::OwnedFd>, SuperviseError> {
    let Some(address) = &config.monitoring.metrics_address else {
        return Ok(None);
    };
    let (fd, local) = sockets::bind_tcp("monitoring.bind_address", &address.host, address.port)?;
    info!(address = %local, "listening for Prometheus scrapes");
    Ok(Some(fd))
}

fn detect_cgroups(config: &Config) -> Result<CgroupMode, SuperviseError> {
    let root = Path::new(CGROUP_ROOT);
    let mode = cgroup::detect(root, &config.cgroup.controllers)?;
    match mode {
        CgroupMode::V1 => info!(controllers = ?config.cgroup.controllers, "cgroup v1 driver"),
        CgroupMode::V2 => {
            info!(controllers = ?config.cgroup.controllers, "cgroup v2 driver");
            match cgroup::leave_delegated_root(root) {
                Ok(Some(leaf)) => info!(cgroup = %leaf.display(), "moved into a leaf cgroup"),
                Ok(None) => {}
                Err(e) => warn!(
                    error = %e,
                    "cannot move into a leaf cgroup; the spawner may not be able to enable \
                     controllers below ours"
                ),
            }
        }
    }
    Ok(mode)
}

fn own_dir() -> Result<PathBuf, SuperviseError> {
    let exe = std::env::current_exe().map_err(SuperviseError::OwnExe)?;
    exe.parent().map(Path::to_owned).ok_or_else(|| {
        SuperviseError::OwnExe(std::io::Error::other("executable path has no directory"))
    })
}

/// `host:port`, with brackets around an IPv6 literal.
fn with_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The helper's binary, which root will execute: a regular executable file owned by root and
/// writable by no one else, and executable by the helper's own user.
fn helper_binary(
    bin_dir: &Path,
    kind: HelperKind,
    ids: &Identities,
) -> Result<PathBuf, SuperviseError> {
    let path = bin_dir.join(kind.binary());
    let problem = |problem: String| SuperviseError::Binary {
        path: path.clone(),
        problem,
    };
    // Whoever can write the directory can swap the binary after our checks.
    let dir = std::fs::metadata(bin_dir).map_err(|e| problem(format!("its directory: {e}")))?;
    if dir.uid() != 0 || dir.mode() & 0o022 != 0 {
        return Err(problem(format!(
            "its directory must be root's and writable by no one else (owner {}, mode {:04o})",
            dir.uid(),
            dir.mode() & 0o7777
        )));
    }
    let meta = std::fs::metadata(&path).map_err(|e| {
        problem(format!(
            "{e} (helpers are looked up next to `joblet`, or in supervisor.binDir)"
        ))
    })?;
    let mode = meta.mode();
    if !meta.is_file() || mode & 0o111 == 0 {
        return Err(problem("is not an executable file".into()));
    }
    if meta.uid() != 0 || mode & 0o022 != 0 {
        return Err(problem(format!(
            "must be owned by root and writable by no one else (owner {}, mode {:04o})",
            meta.uid(),
            mode & 0o7777
        )));
    }
    if let Some(uid) = kind.uid(ids) {
        let by_group = meta.gid() == ids.group && mode & 0o010 != 0;
        if mode & 0o001 == 0 && !by_group {
            return Err(problem(format!(
                "uid {uid} may not execute it (mode {:04o})",
                mode & 0o7777
            )));
        }
        dirs::check_reachable(&path, uid, &[ids.group])?;
    }
    Ok(path)
}

/// Every directory with its owner and mode; the audit log; and a check that each helper can
/// reach what is its own.
fn prepare_dirs(config: &Config, ids: &Identities) -> Result<(), SuperviseError> {
    let p = &config.paths;
    let dir = |path: &Path, uid, gid, mode| DirSpec {
        path: path.to_owned(),
        uid,
        gid,
        mode,
    };
    for spec in [
        dir(&p.run_dir, 0, ids.group, 0o750),
        dir(&p.spawner_dir(), 0, 0, 0o700),
        dir(&p.state_dir, ids.stated, ids.group, 0o700),
        dir(&p.logs_dir, ids.persistd, ids.group, 0o700),
        dir(&p.data_dir, ids.api, ids.group, 0o700),
    ] {
        dirs::ensure_dir(&spec)?;
    }
    dirs::ensure_file(&dir(&p.audit_log, ids.api, ids.group, 0o600))?;
    let groups = [ids.group];
    for (uid, target) in [
        (ids.stated, p.stated_db()),
        (ids.stated, p.run_dir.join(Channel::State.socket_name())),
        (ids.persistd, p.logs_dir.join("x")),
        (ids.persistd, p.run_dir.join(Channel::Logs.socket_name())),
        (ids.api, p.data_dir.join("x")),
        (ids.api, p.audit_log.clone()),
        (ids.api, p.run_dir.join(Channel::Spawner.socket_name())),
    ] {
        dirs::check_reachable(&target, uid, &groups)?;
    }
    Ok(())
}

/// The IPC listeners; their socket files are removed when this is dropped, on every path out.
struct SocketSet(Vec<IpcSocket>);

impl SocketSet {
    fn bind(run_dir: &Path, gid: u32) -> Result<SocketSet, sockets::SocketError> {
        let mut set = SocketSet(Vec::new());
        for channel in [
            Channel::Spawner,
            Channel::Output,
            Channel::Logs,
            Channel::State,
        ] {
            set.0.push(sockets::bind_ipc(run_dir, channel, gid)?);
        }
        Ok(set)
    }
}

impl Drop for SocketSet {
    fn drop(&mut self) {
        sockets::remove_sockets(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(with_port("127.0.0.1", 5), "127.0.0.1:5");
        assert_eq!(with_port("::1", 5), "[::1]:5");
        assert_eq!(with_port("[::1]", 5), "[::1]:5");
        assert_eq!(with_port("joblet.example", 5), "joblet.example:5");
    }
}
