//! `joblet-bench`: starts the real system with a fresh configuration and prints, for every
//! figure, min / median / p99 of ours and of the peers (bubblewrap, runc, unshare) measured in
//! the same run, interleaved, with the ratio and the targets; then the teardown check
//! after each phase. Exits non-zero if a phase could not measure (an isolation probe failed, a
//! job did not complete) or left something behind.
//!
//! Build everything first: `cargo build --release --bins`, then, as root,
//! `target/release/joblet-bench [--quick] [--runs N] [--only latency|throughput|logs|scale]`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use joblet_bench::bins::Binaries;
use joblet_bench::ctx::{Ctx, Options, Peers, Phase};
use joblet_bench::{machine, phases};

#[derive(Debug, Parser)]
#[command(
    name = "joblet-bench",
    about = "Joblet side by side with bubblewrap and runc: start latency, throughput, log \
             throughput, scale, teardown"
)]
struct Args {
    /// A smoke run: every phase and check, few iterations (10 latency runs, 1 trial, 100
    /// sleeping jobs).
    #[arg(long)]
    quick: bool,
    /// Start-latency iterations (each runs every runner once).
    #[arg(long, value_name = "N")]
    runs: Option<usize>,
    /// Throughput trials per concurrency level.
    #[arg(long, value_name = "N")]
    trials: Option<usize>,
    /// Runs of the log-throughput job.
    #[arg(long, value_name = "N")]
    log_runs: Option<usize>,
    /// Size of the log-throughput job's output, MiB.
    #[arg(long, value_name = "MIB")]
    log_mib: Option<u64>,
    /// Sleeping jobs in the scale phase.
    #[arg(long, value_name = "N")]
    scale_jobs: Option<usize>,
    /// Only these phases (repeatable, or comma-separated): latency, throughput, logs, scale.
    #[arg(long, value_name = "PHASE", value_delimiter = ',')]
    only: Vec<String>,
    /// Where joblet, rnx and the helpers are (default: next to this program).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("joblet-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn options(args: &Args) -> anyhow::Result<(Options, Vec<Phase>)> {
    let mut o = if args.quick {
        Options::quick()
    } else {
        Options::full()
    };
    let positive = |name: &str, v: usize| {
        if v == 0 {
            bail!("--{name} must be at least 1");
        }
        Ok(v)
    };
    if let Some(n) = args.runs {
        o.runs = positive("runs", n)?;
    }
    if let Some(n) = args.trials {
        o.trials = positive("trials", n)?;
    }
    if let Some(n) = args.log_runs {
        o.log_runs = positive("log-runs", n)?;
    }
    if let Some(n) = args.scale_jobs {
        o.scale_jobs = positive("scale-jobs", n)?;
    }
    if let Some(mib) = args.log_mib {
        o.log_bytes = (positive("log-mib", mib as usize)? as u64) << 20;
    }
    let phases = if args.only.is_empty() {
        Phase::ALL.to_vec()
    } else {
        args.only
            .iter()
            .map(|p| {
                Phase::parse(p).with_context(|| {
                    format!("--only {p}: not a phase (latency, throughput, logs, scale)")
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    Ok((o, phases))
}

fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    let (opts, selected) = options(&args)?;
    if !nix::unistd::geteuid().is_root() {
        bail!("must run as root: the system and the peers create namespaces and cgroups");
    }
    let bins = Binaries::locate(args.bin_dir.clone())?;
    let peer_dir = tempfile::Builder::new()
        .prefix("jbench-peers-")
        .tempdir()
        .context("create the peers' temporary directory")?;
    eprintln!("joblet-bench: preparing the peers");
    let peers = Peers::prepare(peer_dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let ctx = Ctx {
        rt,
        bins,
        opts,
        peers,
        peer_dir,
        spent: Default::default(),
    };
    print_header(&ctx);
    let mut all_ok = true;
    for phase in selected {
        eprintln!("joblet-bench: phase {phase}");
        let outcome = phases::run(&ctx, phase).with_context(|| format!("phase {phase}"))?;
        match outcome.figures {
            Ok(section) => print!("{}", section.render()),
            Err(e) => {
                all_ok = false;
                println!("### {phase}: NO FIGURES\n\n- {e}\n");
            }
        }
        print!("{}", outcome.teardown.render());
        all_ok &= outcome.clean;
    }
    Ok(all_ok)
}

fn print_header(ctx: &Ctx) {
    let argv: Vec<String> = std::env::args().collect();
    println!("## joblet-bench\n");
    println!("- command: `{}`", argv.join(" "));
    for (k, v) in machine::describe() {
        println!("- {k}: {v}");
    }
    println!("- binaries: {}", ctx.bins.dir().display());
    println!(
        "- each phase's system directory (its job logs) is removed when the run ends, not \
         when the phase ends (inode allocation after mass deletion: BENCHMARKS.md)"
    );
    let peer = |name: &str, r: Result<(), &String>| match r {
        Ok(()) => format!("- {name}: ready"),
        Err(why) => format!("- {name}: NOT AVAILABLE: {why}"),
    };
    println!("{}", peer("bwrap", ctx.peers.bwrap.as_ref().map(|_| ())));
    println!("{}", peer("runc", ctx.peers.runc.as_ref().map(|_| ())));
    println!(
        "{}",
        peer("unshare", ctx.peers.unshare.as_ref().map(|_| ()))
    );
    println!();
}
