//! `joblet-persistd --settings-fd N`: started by the supervisor as its own user, with its
//! settings in a sealed memfd and its two listening sockets inherited.

use std::os::fd::{OwnedFd, RawFd};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use joblet_ipc_proto::settings::{self, LogFormat, Logging, PersistdSettings};
use joblet_ipc_proto::tokio::Listener;
use joblet_ipc_proto::{Channel, inherit};
use joblet_persistd::harden;
use joblet_persistd::metrics::sampler::MIN_INTERVAL;
use joblet_persistd::registry::Registry;
use joblet_persistd::server::{self, Listeners, Options};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tracing::{error, info};

#[derive(Parser)]
#[command(name = "joblet-persistd", about = "Joblet's log store")]
struct Args {
    /// Inherited fd holding the postcard-encoded settings (sealed memfd from the supervisor).
    #[arg(long)]
    settings_fd: RawFd,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Before tracing is up (bad settings, refused privileges) stderr is all we have.
            if tracing::dispatcher::has_been_set() {
                error!("{e:#}");
            } else {
                eprintln!("joblet-persistd: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    harden::refuse_privilege()?;
    harden::lock_down()?;
    let settings_fd = inherit::take(args.settings_fd).context("taking the settings fd")?;
    let settings: PersistdSettings =
        settings::read_from_fd(settings_fd).context("reading the settings")?;
    let (output_fd, output) = take_listener(&settings, Channel::Output)?;
    let (logs_fd, logs) = take_listener(&settings, Channel::Logs)?;
    let closed = harden::close_stray_fds(&[output_fd, logs_fd])?;
    init_tracing(&settings.logging)?;
    let options = options(&settings)?;
    // Each running job holds two pipes and up to five cgroup directories open here.
    let max_fds = harden::raise_fd_limit()?;
    info!(?closed, max_fds, data_dir = %settings.data_dir.display(), "hardened; opening the log store");

    // Recovery is blocking file work; it is done before the runtime starts.
    let registry = Arc::new(Registry::open(&settings.data_dir)?);

    // Two workers: the pumps (splice + index append) and the readers (frame encoding and
    // sends) then use both cores of a small host, and a follower being fed never delays a
    // pipe being drained. File reads and fsyncs run on the blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("persistd")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let listeners = Listeners {
            output: Listener::from_fd(output, Channel::Output, vec![settings.spawner_uid])
                .context("adopting the output listener")?,
            logs: Listener::from_fd(logs, Channel::Logs, vec![settings.api_uid])
                .context("adopting the logs listener")?,
        };
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        server::serve(registry, listeners, options, shutdown).await;
        Ok(())
    })
}

fn options(s: &PersistdSettings) -> Result<Options> {
    let interval = Duration::from_millis(u64::from(s.metrics_interval_ms));
    anyhow::ensure!(
        interval >= MIN_INTERVAL,
        "metrics_interval_ms is {}; it must be at least {} ms",
        s.metrics_interval_ms,
        MIN_INTERVAL.as_millis()
    );
    Ok(Options {
        metrics_interval: interval,
    })
}

/// Takes the inherited listener of `channel` and makes it non-blocking: the supervisor may
/// hand it over blocking, and the async accept loop needs `EAGAIN` when the backlog is empty.
fn take_listener(s: &PersistdSettings, channel: Channel) -> Result<(RawFd, OwnedFd)> {
    let fd = settings::ipc_listener(&s.listen, channel)
        .with_context(|| format!("the settings name no listener for the {channel} channel"))?;
    let owned =
        inherit::take_listener(fd).with_context(|| format!("taking the {channel} listener"))?;
    let flags = OFlag::from_bits_truncate(fcntl(&owned, FcntlArg::F_GETFL)?);
    fcntl(&owned, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))
        .with_context(|| format!("making the {channel} listener non-blocking"))?;
    Ok((fd, owned))
}

fn init_tracing(logging: &Logging) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&logging.level)
        .with_context(|| format!("invalid log level {:?}", logging.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal; the supervisor's log gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let set = match logging.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    set.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    })
}
