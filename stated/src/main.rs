//! `joblet-stated --settings-fd N`: started by the `joblet` supervisor as its own user.

#![forbid(unsafe_code)]

use std::os::fd::RawFd;

use anyhow::Context;
use clap::Parser;
use joblet_stated::{daemon, harden, logging, settings};

/// Joblet's job state store. Started by the `joblet` supervisor, which passes its settings
/// and its listening socket; not meant to be run by hand.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The sealed memfd holding the postcard-encoded settings.
    #[arg(long, value_name = "N")]
    settings_fd: RawFd,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    harden::harden().context("hardening at start")?;
    let startup = settings::load(args.settings_fd).context("loading the settings")?;
    let closed = harden::close_inherited_fds(&startup.kept_fds())
        .context("closing inherited descriptors")?;
    logging::init(&startup.settings.logging).context("setting up logging")?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        closed_inherited_fds = closed,
        "joblet-stated starting"
    );
    daemon::run(startup).inspect_err(|e| tracing::error!(error = %e, "joblet-stated failed"))?;
    Ok(())
}
