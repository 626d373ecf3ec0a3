//! From `--settings-fd N` to a serving spawner: settings, logging, self-hardening, start-up
//! checks, cgroups, adoption of jobs left by a previous run, then the loop.

use std::{os::fd::AsRawFd, path::Path};

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::blocking::SeqListener;
use joblet_ipc_proto::settings::{LogFormat, Logging, ipc_listener};

use crate::cgroup::{CgroupConfig, CgroupError, Cgroups};
use crate::checks::{self, CheckError};
use crate::daemon::{DaemonError, Spawner};
use crate::harden::{self, HardenError};
use crate::launch::factory::Factory;
use crate::launch::{StepError, landlock, rootfs, seccomp};
use crate::output::OutputLink;
use crate::record::RecordError;
use crate::settings::{self, SettingsError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("no inherited listener for the spawner channel in the settings")]
    NoListener,
    #[error("take the inherited listener: {0}")]
    Listener(std::io::Error),
    #[error("harden the spawner: {0}")]
    Harden(#[from] HardenError),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("prepare the jobs' launches (their base root, the shim factory): {0}")]
    Factory(#[from] StepError),
    #[error("cgroups: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("job records: {0}")]
    Record(#[from] RecordError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

impl StartError {
    /// The host lacks a feature a configured boundary needs: a restart cannot help.
    pub fn is_host_unsupported(&self) -> bool {
        matches!(self, StartError::Check(CheckError::Unsupported(_)))
    }
}

fn init_logging(l: &Logging) {
    let filter = tracing_subscriber::EnvFilter::try_new(&l.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match l.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs the spawner until it is told to stop.
pub fn run(args: &[String]) -> Result<(), StartError> {
    let fd = settings::parse_args(args)?;
    let s = settings::read(fd)?;
    settings::validate(&s)?;
    init_logging(&s.logging);
    let listener_fd = ipc_listener(&s.listen, Channel::Spawner).ok_or(StartError::NoListener)?;
    let listener = joblet_ipc_proto::inherit::take_listener(listener_fd);
    let listener = SeqListener::from_fd(listener.map_err(StartError::Listener)?);
    harden::close_foreign_fds(listener.as_raw_fd())?;
    harden::harden_self()?;
    let signals = crate::daemon::signal_fd()?;
    let (jobs_dir, base_dir) = settings::prepare_state_dir(&s.state_dir)?;
    checks::namespaces(s.userns.enabled)?;
    let landlock = checks::landlock(s.landlock, landlock::abi())?;
    let cgroups = Cgroups::open(&CgroupConfig {
        root: s.cgroup_root.clone(),
        mode: s.cgroup_mode,
        base: s.cgroup_base.clone(),
    })?;
    let mounts: Vec<&Path> = s.allowed_mounts.iter().map(|p| p.as_path()).collect();
    let io_devices = Cgroups::devices_backing(&mounts);
    // Before the factory's fork: it, the shims and the jobs start from this mount namespace.
    let host_files = rootfs::build_base(&s, &base_dir)?;
    let mut spawner = Spawner {
        output: OutputLink::new(s.output_socket.clone()),
        settings: s,
        jobs_dir,
        cgroups,
        io_devices,
        host_files,
        factory: Factory::start(seccomp::job_filter()?)?,
        landlock,
        jobs: Default::default(),
        clients: Default::default(),
        next_client: 1,
        listener,
        shutdown_deadline: None,
        zombies: Vec::new(),
        buf: Vec::new(),
    };
    // Adopted first, so the probe takes a user-namespace slot no live job holds.
    spawner.adopt_all()?;
    if let Err(e) = spawner.probe() {
        let _ = spawner.cgroups.remove_base();
        return Err(e.into());
    }
    tracing::info!(
        cgroup_mode = ?spawner.cgroups.mode,
        io_devices = ?spawner.io_devices,
        userns = spawner.settings.userns.enabled,
        landlock,
        seccomp_instructions = spawner.factory.filter.instructions(),
        "spawner ready"
    );
    Ok(spawner.run(&signals)?)
}
