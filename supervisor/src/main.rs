//! `joblet`: run Joblet (the default), `joblet init`, `joblet check`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use joblet_supervisor::config::{self, DEFAULT_CONFIG_PATH};
use joblet_supervisor::host::landlock;
use joblet_supervisor::identity::Identities;
use joblet_supervisor::init::{self, InitOptions};
use joblet_supervisor::{job_ids, logging, supervise};

/// Joblet's supervisor: starts, watches and stops the Joblet helpers.
#[derive(Parser)]
#[command(name = "joblet", version)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "JOBLET_CONFIG_PATH",
        default_value = DEFAULT_CONFIG_PATH
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Write a development configuration and certificates, every path inside DIR.
    Init {
        /// The instance directory (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Where the server listens, HOST:PORT.
        #[arg(long, default_value = init::DEFAULT_ADDRESS)]
        address: String,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Parse and validate the configuration, then exit.
    Check,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Init {
            dir,
            address,
            force,
        }) => run_init(dir, address, force),
        Some(Command::Check) => run_check(&cli.config),
        None => run(&cli.config),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("joblet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_init(dir: PathBuf, address: String, force: bool) -> anyhow::Result<()> {
    let report = init::init(&InitOptions {
        dir,
        address: Some(address),
        force,
    })
    .context("joblet init")?;
    println!(
        "Wrote a Joblet development instance in {}:",
        report.dir.display()
    );
    let what = [
        "server configuration, with the server's certificate and key",
        "runtime configuration",
        "the CA's private key, to issue more client certificates",
        "rnx client configuration, role admin",
        "rnx client configuration, role viewer",
    ];
    for (path, what) in report.files().iter().zip(what) {
        println!("  {}  (0600) {what}", path.display());
    }
    println!(
        "Helpers run as api={} persistd={} stated={}, group {}.",
        report.ids.api, report.ids.persistd, report.ids.stated, report.ids.group
    );
    println!("Next:");
    println!("  sudo joblet --config {}", report.config.display());
    println!(
        "  rnx --config {} job run echo hello",
        report.rnx_admin.display()
    );
    Ok(())
}

fn run_check(path: &std::path::Path) -> anyhow::Result<()> {
    let loaded = config::load(path).with_context(|| format!("config {}", path.display()))?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let c = &loaded.config;
    let ids = Identities::resolve(&c.users, c.job_user)
        .with_context(|| format!("config {}", path.display()))?;
    let mut host_warnings = job_ids::check_host(&c.security.userns, &ids)
        .with_context(|| format!("config {}", path.display()))?;
    host_warnings.extend(landlock::check(c.security.landlock, &landlock::probe())?);
    for w in &host_warnings {
        eprintln!("warning: {w}");
    }
    let count = loaded.warnings.len() + host_warnings.len();
    println!(
        "{}: valid ({count} warning{}); listens on {}:{}, run directory {}",
        path.display(),
        if count == 1 { "" } else { "s" },
        c.server.address,
        c.server.port,
        c.paths.run_dir.display()
    );
    Ok(())
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    config::check_trusted(path).context("config")?;
    let loaded = config::load(path).with_context(|| format!("config {}", path.display()))?;
    logging::init(&loaded.config.logging);
    for w in &loaded.warnings {
        tracing::warn!(config = %path.display(), "{w}");
    }
    tracing::info!(config = %path.display(), node_id = %loaded.config.server.node_id, "starting joblet");
    supervise::run(&loaded.config).context("cannot run joblet")?;
    Ok(())
}
