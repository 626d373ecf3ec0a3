//! `joblet-api --settings-fd N`: started by the supervisor as its own unprivileged user,
//! with its settings in a sealed memfd and its TCP listener inherited.

#![forbid(unsafe_code)]

use std::os::fd::{OwnedFd, RawFd};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use joblet_api::audit::AuditLog;
use joblet_api::{harden, server};
use joblet_ipc_proto::inherit;
use joblet_ipc_proto::settings::{self, FrontendSettings, LogFormat, Logging};
use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "joblet-api",
    about = "Joblet's gRPC frontend (mutual TLS, roles, audit)"
)]
struct Args {
    /// The sealed memfd holding this daemon's settings, passed by the supervisor.
    #[arg(long)]
    settings_fd: RawFd,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "joblet-api stopped");
            // Also on stderr in plain words, in case logging was never set up.
            eprintln!("joblet-api: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings_fd = inherit::take(args.settings_fd).context("taking the settings fd")?;
    let settings: FrontendSettings =
        settings::read_from_fd(settings_fd).context("reading the settings")?;
    init_logging(&settings.logging)?;
    harden::harden()?;
    let tcp_fd_number =
        settings::tcp_listener(&settings.listen).context("the settings name no TCP listener")?;
    let tcp_fd = inherit::take_listener(tcp_fd_number).context("taking the TCP listener")?;
    // The Prometheus listener exists only when `monitoring.bind_address` is configured.
    let metrics_fd_number = settings::metrics_listener(&settings.listen);
    let metrics_fd = metrics_fd_number
        .map(inherit::take)
        .transpose()
        .context("taking the metrics listener")?;
    let keep: Vec<RawFd> = std::iter::once(tcp_fd_number)
        .chain(metrics_fd_number)
        .collect();
    harden::close_stray_fds(&keep);
    harden::private_dir(&settings.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings, tcp_fd, metrics_fd))
}

/// An inherited listening TCP socket, registered with the runtime.
fn inherited_listener(fd: OwnedFd, what: &str) -> anyhow::Result<TcpListener> {
    if !getsockopt(&fd, sockopt::AcceptConn).with_context(|| format!("inspecting the {what}"))? {
        bail!("the inherited {what} is not listening");
    }
    let std_listener = std::net::TcpListener::from(fd);
    std_listener.set_nonblocking(true)?;
    TcpListener::from_std(std_listener).with_context(|| format!("registering the {what}"))
}

async fn serve(
    settings: FrontendSettings,
    tcp_fd: OwnedFd,
    metrics_fd: Option<OwnedFd>,
) -> anyhow::Result<()> {
    let listener = inherited_listener(tcp_fd, "TCP listener")?;
    let local = listener
        .local_addr()
        .context("the inherited TCP listener has no address")?;
    let metrics = metrics_fd
        .map(|fd| inherited_listener(fd, "metrics listener"))
        .transpose()?;
    let audit = AuditLog::open(&settings.audit_log).context("opening the audit log")?;
    tracing::info!(address = %settings.address, listening = %local, node = %settings.node_id, "joblet-api serving");
    let result = server::serve_with_metrics(
        &settings,
        listener,
        metrics,
        audit.clone(),
        shutdown_signal(),
    )
    .await;
    if !audit.flush(Duration::from_secs(2)).await {
        tracing::error!("audit log did not flush at shutdown");
    }
    result?;
    tracing::info!("joblet-api stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

fn init_logging(logging: &Logging) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&logging.level)
        .with_context(|| format!("log level {:?}", logging.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: under the supervisor stderr is a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match logging.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
