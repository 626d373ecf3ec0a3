//! Exhausting the host: a fork bomb, eating memory, running past the timeout.

use std::time::{Duration, Instant};

use joblet_tests::cgroupfs;
use joblet_tests::hostile::{host_procs_with, mem_available, sh_job, sleep_marker};
use joblet_tests::{System, config, require_root};

use super::common::{Daemons, WAIT, run};

/// Case: a fork bomb: it holds at the pids limit while the host keeps forking and the
/// system keeps answering; stopping it leaves nothing.
#[test]
fn a_fork_bomb_is_contained() {
    require_root!();
    let sys = System::start_with(|c| config::set(c, "defaultPidsLimit", "128"));
    let daemons = Daemons::snap(&sys);
    let job = sys.start_job(&[], &sh_job("b() { b | b & }; b; exec sleep 600"));
    let start = Instant::now();
    let mut peak = 0;
    while start.elapsed() < Duration::from_secs(5) {
        if let Some(n) = cgroupfs::read(&sys, &job, "pids.current").and_then(|v| v.parse().ok()) {
            peak = peak.max(n);
        }
        assert!(
            std::process::Command::new("true")
                .status()
                .expect("host fork")
                .success(),
            "the host cannot fork"
        );
        let t = Instant::now();
        assert!(
            sys.rnx(&["job", "list"]).ok(),
            "the system stopped answering"
        );
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "job list took {:?} under the bomb",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(peak > 10, "the bomb never got going (peak {peak})");
    assert!(
        peak <= 128,
        "pids.current reached {peak}, over the limit of 128"
    );
    assert_eq!(
        cgroupfs::read(&sys, &job, "pids.max").as_deref(),
        Some("128")
    );
    sys.rnx(&["job", "stop", &job.id])
        .expect_ok("stop the bomb");
    let st = sys.wait_done(&job, WAIT);
    assert_eq!(st["status"], "STOPPED", "{st}");
    assert!(
        cgroupfs::wait_removed(&sys, &job, Duration::from_secs(30)),
        "the bomb's cgroup is still there"
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: eat memory: the job dies of OOM at its limit; the host keeps its memory and
/// every daemon.
#[test]
fn eating_memory_kills_only_the_job() {
    require_root!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let before = mem_available();
    // `tail` keeps the current line in memory, and /dev/zero never ends a line.
    let (st, out) = run(
        &sys,
        &["--max-memory=48"],
        &sh_job("tail /dev/zero; echo SURVIVED"),
    );
    assert_eq!(st["status"], "FAILED", "{st}\n{out}");
    assert_eq!(st["endReason"], "oom_killed", "{st}");
    assert!(
        !out.contains("SURVIVED"),
        "the shell outlived the OOM kill:\n{out}"
    );
    let after = mem_available();
    assert!(
        after + (512 << 20) >= before,
        "the host lost {} MiB",
        (before - after) >> 20
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: exceed the timeout while ignoring SIGTERM, with children that detach into their
/// own sessions: every process dies, the job ends TIMEOUT with 124.
#[test]
fn a_job_past_its_timeout_dies_with_all_its_children() {
    require_root!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let m = sleep_marker();
    let script = format!(
        "trap '' TERM HUP INT
         setsid sh -c \"trap '' TERM HUP; sleep {m}\" &
         (trap '' TERM; sleep {m}) &
         nohup sleep {m} >/dev/null 2>&1 &
         sleep {m}"
    );
    let started = Instant::now();
    let job = sys.start_job(&["--timeout=2s"], &sh_job(&script));
    let st = sys.wait_done(&job, WAIT);
    let took = started.elapsed();
    assert_eq!(st["status"], "TIMEOUT", "{st}");
    assert_eq!(st["exitCode"], 124, "{st}");
    assert_eq!(st["endReason"], "timeout", "{st}");
    assert!(
        took >= Duration::from_secs(2),
        "ended after {took:?}, before its timeout"
    );
    let left = host_procs_with(&m);
    assert!(left.is_empty(), "processes of the job survived: {left:?}");
    assert!(
        cgroupfs::wait_removed(&sys, &job, Duration::from_secs(30)),
        "cgroup left behind"
    );
    daemons.assert_intact(&sys);
    sys.stop();
}
