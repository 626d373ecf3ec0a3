//! The peers we compare with, from Debian: bubblewrap, runc, and `unshare` as the floor.
//! Each runs a [`Program`] as a child process of the benchmark and is timed from spawn to
//! exit, exactly like the `rnx` process it is compared with.

mod bwrap;
mod runc;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use bwrap::Bwrap;
pub use runc::Runc;

use crate::isolation::{self, Expect, PROBE_SCRIPT};

/// What a sandbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Program {
    True,
    Probe,
    /// `head -c N /dev/zero`.
    Zeros(u64),
    /// `sleep N`.
    Sleep(u32),
}

impl Program {
    pub fn argv(self) -> Vec<String> {
        match self {
            Program::True => vec!["/bin/true".into()],
            Program::Probe => vec!["/bin/sh".into(), "-c".into(), PROBE_SCRIPT.into()],
            Program::Zeros(n) => vec![
                "/usr/bin/head".into(),
                "-c".into(),
                n.to_string(),
                "/dev/zero".into(),
            ],
            Program::Sleep(s) => vec!["/bin/sleep".into(), s.to_string()],
        }
    }

    /// A short name, for runc bundle directories.
    pub fn key(self) -> String {
        match self {
            Program::True => "true".into(),
            Program::Probe => "probe".into(),
            Program::Zeros(n) => format!("zeros-{n}"),
            Program::Sleep(s) => format!("sleep-{s}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{peer}: cannot start: {source}")]
    Spawn {
        peer: &'static str,
        source: std::io::Error,
    },
    #[error("{peer}: exited with {status}: {stderr}")]
    Failed {
        peer: &'static str,
        status: String,
        stderr: String,
    },
    #[error("{peer}: not isolated: {reason}")]
    NotIsolated { peer: &'static str, reason: String },
    #[error("{peer}: cannot prepare: {reason}")]
    Prepare { peer: &'static str, reason: String },
}

/// One way of running a program isolated.
pub trait Sandbox: Send + Sync {
    fn name(&self) -> &'static str;
    /// The command line that runs `program` in this sandbox.
    fn command(&self, program: Program) -> Result<Command, PeerError>;
    /// What the probe must show for this sandbox.
    fn expect(&self) -> Expect;
}

/// `unshare --pid --mount --net --ipc --uts --fork`: the namespaces alone, no root change.
#[derive(Debug, Default)]
pub struct Unshare;

impl Sandbox for Unshare {
    fn name(&self) -> &'static str {
        "unshare"
    }
    fn command(&self, program: Program) -> Result<Command, PeerError> {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--pid", "--mount", "--net", "--ipc", "--uts", "--fork", "--",
        ])
        .args(program.argv());
        Ok(cmd)
    }
    fn expect(&self) -> Expect {
        Expect {
            pid_one: true,
            non_root: false,
        }
    }
}

/// Runs `program` to its end with no output kept; the time from spawn to exit.
pub fn time_run(sandbox: &dyn Sandbox, program: Program) -> Result<Duration, PeerError> {
    let mut cmd = sandbox.command(program)?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let start = Instant::now();
    let out = output(sandbox, &mut cmd)?;
    let took = start.elapsed();
    succeeded(sandbox, &out)?;
    Ok(took)
}

/// Runs the isolation probe and checks what it printed; returns the probe.
pub fn probe(sandbox: &dyn Sandbox) -> Result<isolation::Probe, PeerError> {
    let mut cmd = sandbox.command(Program::Probe)?;
    cmd.stdin(Stdio::null());
    let out = output(sandbox, &mut cmd)?;
    succeeded(sandbox, &out)?;
    let not_isolated = |reason: String| PeerError::NotIsolated {
        peer: sandbox.name(),
        reason,
    };
    let p = isolation::parse(&String::from_utf8_lossy(&out.stdout)).map_err(not_isolated)?;
    isolation::check(&p, &isolation::own_namespaces(), sandbox.expect()).map_err(not_isolated)?;
    Ok(p)
}

fn output(sandbox: &dyn Sandbox, cmd: &mut Command) -> Result<Output, PeerError> {
    cmd.output().map_err(|source| PeerError::Spawn {
        peer: sandbox.name(),
        source,
    })
}

fn succeeded(sandbox: &dyn Sandbox, out: &Output) -> Result<(), PeerError> {
    if out.status.success() {
        return Ok(());
    }
    Err(PeerError::Failed {
        peer: sandbox.name(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Whether `program` is on the PATH, for a clear "not installed" instead of a spawn error.
pub fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_have_distinct_keys_and_argv() {
        let all = [
            Program::True,
            Program::Probe,
            Program::Zeros(1 << 30),
            Program::Sleep(60),
        ];
        let keys: std::collections::BTreeSet<String> = all.iter().map(|p| p.key()).collect();
        assert_eq!(keys.len(), all.len());
        assert_eq!(Program::Zeros(5).argv()[2], "5");
        assert_eq!(Program::True.argv(), ["/bin/true"]);
    }

    #[test]
    fn unshare_runs_true_and_the_probe_when_root() {
        if !nix::unistd::geteuid().is_root() || !installed("unshare") {
            eprintln!("SKIPPED: needs root and unshare");
            return;
        }
        time_run(&Unshare, Program::True).unwrap();
        let p = probe(&Unshare).unwrap();
        assert_eq!(p.pid, 1);
    }
}
