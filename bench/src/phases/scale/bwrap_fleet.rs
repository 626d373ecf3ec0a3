//! The scale peer: N bubblewrap sandboxes each running `sleep`, the memory of bwrap's own
//! processes per sandbox (not the `sleep`), and the time to end them all with SIGTERM.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use joblet_tests::host;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::BenchError;
use crate::memory;
use crate::peers::{Program, Sandbox};
use crate::procs;

const LIMIT: Duration = Duration::from_secs(300);

pub struct Fleet {
    pub per_sandbox_pss_kb: Vec<f64>,
    pub started: Duration,
    pub stopped: Duration,
}

/// The sandboxes; any still running when this is dropped are killed and reaped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn measure(bwrap: &dyn Sandbox, n: usize) -> Result<Fleet, BenchError> {
    let start = Instant::now();
    let mut children = Children(Vec::with_capacity(n));
    for _ in 0..n {
        let mut cmd = bwrap.command(Program::Sleep(3600))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        children
            .0
            .push(cmd.spawn().map_err(BenchError::io("start bwrap"))?);
    }
    let sleepers = wait_for_sleepers(&children)?;
    let started = start.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let table = procs::snapshot();
    let per_sandbox_pss_kb = children
        .0
        .iter()
        .map(|c| {
            let pid = c.id() as i32;
            // The outer bwrap (our child) and the inner one (PID 1 of the sandbox).
            let bwraps = std::iter::once(pid).chain(
                table
                    .descendants(pid)
                    .into_iter()
                    .filter(|p| host::exe_name(p.pid).as_deref() == Some("bwrap"))
                    .map(|p| p.pid),
            );
            memory::sum(bwraps).pss_kb as f64
        })
        .collect();

    let stop = Instant::now();
    for c in &children.0 {
        kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM)
            .map_err(|e| BenchError::Check(format!("SIGTERM to bwrap {}: {e}", c.id())))?;
    }
    for c in &mut children.0 {
        c.wait().map_err(BenchError::io("wait for bwrap"))?;
    }
    while sleepers.iter().any(|p| host::alive(*p)) {
        if stop.elapsed() > LIMIT {
            return Err(BenchError::Check(
                "sandboxed sleeps still alive after their bwrap ended".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopped = stop.elapsed();
    children.0.clear();
    Ok(Fleet {
        per_sandbox_pss_kb,
        started,
        stopped,
    })
}

/// Waits until every sandbox runs its `sleep`; returns those processes.
fn wait_for_sleepers(children: &Children) -> Result<Vec<host::Proc>, BenchError> {
    let start = Instant::now();
    loop {
        let table = procs::snapshot();
        let sleepers: Vec<host::Proc> = children
            .0
            .iter()
            .filter_map(|c| {
                table
                    .descendants(c.id() as i32)
                    .into_iter()
                    .find(|p| host::exe_name(p.pid).as_deref() == Some("sleep"))
            })
            .collect();
        if sleepers.len() == children.0.len() {
            return Ok(sleepers);
        }
        if start.elapsed() > LIMIT {
            return Err(BenchError::Check(format!(
                "only {} of {} bwrap sandboxes started their sleep",
                sleepers.len(),
                children.0.len()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
