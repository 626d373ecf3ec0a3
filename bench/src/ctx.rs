//! What every phase shares: the options, the async runtime for the gRPC clients, the
//! binaries, and the peers (each available, or the reason it is not).

use std::fmt;
use std::path::Path;

use crate::bins::Binaries;
use crate::peers::{self, Bwrap, Program, Runc, Sandbox, Unshare};

/// The phases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Latency,
    Throughput,
    Logs,
    Scale,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Latency, Phase::Throughput, Phase::Logs, Phase::Scale];

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Latency => "latency",
            Phase::Throughput => "throughput",
            Phase::Logs => "logs",
            Phase::Scale => "scale",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How much each phase measures.
#[derive(Debug, Clone)]
pub struct Options {
    /// Start-latency iterations (each runs every runner once, interleaved).
    pub runs: usize,
    /// Throughput trials per concurrency level.
    pub trials: usize,
    pub concurrency: Vec<usize>,
    pub log_runs: usize,
    pub log_bytes: u64,
    pub scale_jobs: usize,
    /// An isolation probe every this many iterations (and before the first).
    pub probe_every: usize,
}

impl Options {
    pub fn full() -> Options {
        Options {
            runs: 200,
            trials: 5,
            concurrency: vec![1, 8, 32],
            log_runs: 3,
            log_bytes: 1 << 30,
            scale_jobs: 1000,
            probe_every: 10,
        }
    }

    /// A smoke run: every phase and check, few iterations.
    pub fn quick() -> Options {
        Options {
            runs: 10,
            trials: 1,
            log_runs: 1,
            scale_jobs: 100,
            probe_every: 5,
            ..Options::full()
        }
    }
}

/// A peer, or why it cannot run here.
pub type Peer<T> = Result<T, String>;

pub struct Peers {
    pub bwrap: Peer<Bwrap>,
    pub runc: Peer<Runc>,
    pub unshare: Peer<Unshare>,
}

impl Peers {
    /// Finds each peer and runs `/bin/true` in it once, so a peer that cannot work on this
    /// host is reported with its own error instead of failing mid-phase.
    pub fn prepare(dir: &Path) -> Peers {
        let bwrap = available("bwrap", "bubblewrap", || Ok(Bwrap));
        let runc = available("runc", "runc", || Runc::prepare(&dir.join("runc")));
        let unshare = available("unshare", "util-linux", || Ok(Unshare));
        Peers {
            bwrap,
            runc,
            unshare,
        }
    }

    /// Every available peer, in table order.
    pub fn all(&self) -> Vec<&dyn Sandbox> {
        let mut out: Vec<&dyn Sandbox> = Vec::new();
        if let Ok(b) = &self.bwrap {
            out.push(b);
        }
        if let Ok(r) = &self.runc {
            out.push(r);
        }
        if let Ok(u) = &self.unshare {
            out.push(u);
        }
        out
    }

    /// What runc left behind (state, cgroups).
    pub fn leftovers(&self) -> Vec<String> {
        match &self.runc {
            Ok(r) => r.leftovers(),
            Err(_) => Vec::new(),
        }
    }
}

fn available<T: Sandbox>(
    program: &str,
    package: &str,
    make: impl FnOnce() -> Result<T, peers::PeerError>,
) -> Peer<T> {
    if !peers::installed(program) {
        return Err(format!(
            "{program} not installed (apt-get install {package})"
        ));
    }
    let sandbox = make().map_err(|e| e.to_string())?;
    peers::time_run(&sandbox, Program::True).map_err(|e| e.to_string())?;
    Ok(sandbox)
}

pub struct Ctx {
    pub rt: tokio::runtime::Runtime,
    pub bins: Binaries,
    pub opts: Options,
    pub peers: Peers,
    /// Where the peers' bundles and roots are.
    pub peer_dir: tempfile::TempDir,
    /// The stopped systems of finished phases, whose directories are removed only when the
    /// run ends. On an ext4 without a journal (these machines), creating an inode near
    /// thousands deleted in the last minutes costs about six times as much (the allocator
    /// skips every recently deleted one), so removing a phase's job logs at once would make
    /// the next phase's persistd pay for this benchmark's own clean-up.
    pub spent: std::sync::Mutex<Vec<crate::system::BenchSystem>>,
}
