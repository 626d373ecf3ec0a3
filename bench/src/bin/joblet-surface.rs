//! `joblet-surface`: the privileged surface of `joblet-spawner` and `joblet` (the supervisor)
//! for auditors: lines of Rust without tests, `unsafe` blocks and their `// SAFETY:` comments,
//! the crates each links, the request types it accepts, and seccomp. A Markdown table, or
//! `--json`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use joblet_bench::surface::{self, render};

#[derive(Debug, Parser)]
#[command(
    name = "joblet-surface",
    about = "The privileged surface of the spawner and the supervisor, for auditors"
)]
struct Args {
    /// Print JSON instead of the Markdown table.
    #[arg(long)]
    json: bool,
    /// The workspace to read (default: the one this program was built from).
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("joblet-surface: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let ws = args
        .workspace
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")));
    let ws = ws
        .canonicalize()
        .with_context(|| format!("workspace {}", ws.display()))?;
    let reports = surface::report(&ws)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", render::markdown(&reports));
    }
    Ok(())
}
