//! bubblewrap: `bwrap --unshare-all` with a root made of a read-only `/usr` and the usual
//! merged-/usr symlinks, a fresh `/proc` and a minimal `/dev`.

use std::process::Command;

use super::{PeerError, Program, Sandbox};
use crate::isolation::Expect;

#[derive(Debug, Default)]
pub struct Bwrap;

/// `--symlink usr/X /X` for the merged-/usr layout Debian has.
const USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib64"];

impl Sandbox for Bwrap {
    fn name(&self) -> &'static str {
        "bwrap"
    }

    fn command(&self, program: Program) -> Result<Command, PeerError> {
        let mut cmd = Command::new("bwrap");
        cmd.args(["--unshare-all", "--die-with-parent", "--new-session"])
            .args(["--ro-bind", "/usr", "/usr"]);
        for l in USR_LINKS {
            cmd.args(["--symlink", &format!("usr/{l}"), &format!("/{l}")]);
        }
        cmd.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--"])
            .args(program.argv());
        Ok(cmd)
    }

    fn expect(&self) -> Expect {
        // bwrap keeps its own init as PID 1 and maps root to root of a user namespace.
        Expect {
            pid_one: false,
            non_root: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::{installed, probe, time_run};

    #[test]
    fn bwrap_runs_isolated_when_installed() {
        if !nix::unistd::geteuid().is_root() || !installed("bwrap") {
            eprintln!("SKIPPED: needs root and bwrap (apt-get install bubblewrap)");
            return;
        }
        time_run(&Bwrap, Program::True).unwrap();
        probe(&Bwrap).unwrap();
    }
}
