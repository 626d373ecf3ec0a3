//! Pids, timeout, refusal of limits the host cannot apply, and what `rnx job status`
//! shows: the limits applied and why a job ended.

use std::time::{Duration, Instant};

use joblet_tests::cgroupfs;
use joblet_tests::hostile::{assert_lines, sh_job};
use joblet_tests::tail::LogTail;
use joblet_tests::{System, config, host, require_root};

use super::WAIT;

/// The configured default pids limit (`cgroup.defaultPidsLimit`, no flag) holds: forks
/// fail at the limit, the host's `pids.max` has the value and `pids.events` counts the
/// refusals.
#[test]
fn the_default_pids_limit_holds() {
    require_root!();
    let sys = System::start_with(|c| config::set(c, "defaultPidsLimit", "40"));
    let job = sys.start_job(
        &[],
        &sh_job(
            "( i=0; while [ $i -lt 200 ]; do sleep 600 & i=$((i+1)); echo STARTED=$i; done ) 2>&1
             echo READY
             exec sleep 600",
        ),
    );
    let mut tail = LogTail::start(&sys, &job);
    let out = tail.wait_for("READY", WAIT);
    let started = out
        .lines()
        .filter_map(|l| l.strip_prefix("STARTED="))
        .filter_map(|n| n.trim().parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        (30..40).contains(&started),
        "the job started {started} processes under a limit of 40:\n{out}"
    );
    assert!(out.contains("fork"), "no fork failure reported:\n{out}");
    assert_eq!(
        cgroupfs::read(&sys, &job, "pids.max").as_deref(),
        Some("40")
    );
    let current: u32 = cgroupfs::read(&sys, &job, "pids.current")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX);
    assert!(current <= 40, "pids.current {current}");
    let refused = cgroupfs::keyed(&sys, &job, "pids.events", "max").unwrap_or(0);
    assert!(refused > 0, "pids.events counts no refused fork");
    sys.rnx(&["job", "stop", &job.id]).expect_ok("stop");
    sys.wait_done(&job, WAIT);
    drop(tail);
    sys.stop();
}

/// `--timeout=2s`: the job is killed and ends TIMEOUT with exit code 124, and the status
/// says so.
#[test]
fn a_timeout_ends_the_job_as_timeout_124() {
    require_root!();
    let sys = System::start();
    let started = Instant::now();
    let job = sys.start_job(&["--timeout=2s"], &sh_job("sleep 60"));
    let st = sys.wait_done(&job, WAIT);
    let took = started.elapsed();
    assert_eq!(st["status"], "TIMEOUT", "{st}");
    assert_eq!(st["exitCode"], 124, "{st}");
    assert_eq!(st["endReason"], "timeout", "{st}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(55),
        "ended after {took:?}"
    );
    let human = sys.rnx(&["job", "status", &job.id]).expect_ok("status");
    assert!(
        human.stdout.contains("End Reason: timeout"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("Exit Code: 124"), "{}", human.stdout);
    assert!(
        cgroupfs::wait_removed(&sys, &job, Duration::from_secs(30)),
        "cgroup left behind"
    );
    sys.stop();
}

/// Job cgroups under our base, in every hierarchy.
fn job_cgroups(sys: &System) -> Vec<String> {
    host::cgroup_paths(&sys.cgroup_base)
        .into_iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("job-"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// MemTotal in MiB.
fn host_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .expect("MemTotal")
}

/// A limit the host cannot apply (`--cpu-cores=999`, memory above the host's) is refused at
/// submission with a message naming the limit, and leaves no cgroup or running job.
#[test]
fn limits_the_host_cannot_apply_are_refused_at_submission() {
    require_root!();
    let sys = System::start();
    let memory = format!("--max-memory={}", host_memory_mib() * 2);
    for (flag, names) in [
        ("--cpu-cores=999", &["cpu_cores", "999"][..]),
        ("--cpu-cores=0-999", &["cpu_cores"][..]),
        (memory.as_str(), &["max_memory", "MiB"][..]),
    ] {
        let out = sys.rnx(&["job", "run", flag, "true"]);
        assert_ne!(out.code, 0, "{flag} was accepted: {}", out.stdout);
        for n in names {
            assert!(
                out.stderr.contains(n),
                "{flag}: the refusal does not name {n}: {}",
                out.stderr
            );
        }
    }
    let list = sys.rnx(&["--json", "job", "list"]).expect_ok("list").json();
    for j in list.as_array().into_iter().flatten() {
        assert_ne!(j["status"], "RUNNING", "a refused job runs: {j}");
    }
    let left = job_cgroups(&sys);
    assert!(left.is_empty(), "refused jobs left cgroups: {left:?}");
    sys.stop();
}

/// `rnx job status` shows the limits applied, and why a job ended: stopped, killed by a
/// signal (OOM and timeout have their own tests above).
#[test]
fn status_shows_the_limits_and_why_a_job_ended() {
    require_root!();
    let sys = System::start();
    let job = sys.start_job(
        &[
            "--max-cpu=50",
            "--max-memory=128",
            "--cpu-cores=0",
            "--timeout=10m",
        ],
        &sh_job("sleep 600"),
    );
    let human = sys
        .rnx(&["job", "status", &job.id])
        .expect_ok("status")
        .stdout;
    for line in [
        "Max CPU: 50%",
        "Max Memory: 128 MB",
        "CPU Cores: 0",
        "Timeout: 10m",
    ] {
        assert!(human.contains(line), "no {line:?} in:\n{human}");
    }
    let st = sys.status(&job);
    assert_eq!(st["maxCPU"], 50, "{st}");
    assert_eq!(st["maxMemory"], 128, "{st}");
    sys.rnx(&["job", "stop", &job.id]).expect_ok("stop");
    let st = sys.wait_done(&job, WAIT);
    assert_eq!(st["status"], "STOPPED", "{st}");
    assert_eq!(st["endReason"], "stopped", "{st}");
    let human = sys
        .rnx(&["job", "status", &job.id])
        .expect_ok("status")
        .stdout;
    assert!(human.contains("End Reason: stopped"), "{human}");

    // Signals from inside a pid namespace cannot kill its PID 1; a fault can.
    if !joblet_tests::hostile::python_in_jobs() {
        eprintln!(
            "SKIPPED (signal part): no {} to fault with",
            joblet_tests::hostile::JOB_PYTHON
        );
        sys.stop();
        return;
    }
    let job = sys.start_job(
        &[],
        &joblet_tests::hostile::python_job("ctypes.string_at(0)"),
    );
    let st = sys.wait_done(&job, WAIT);
    assert_eq!(st["status"], "FAILED", "{st}");
    assert_eq!(st["endReason"], "signaled", "{st}");
    assert_eq!(st["exitCode"], 139, "{st}");
    let human = sys
        .rnx(&["job", "status", &job.id])
        .expect_ok("status")
        .stdout;
    assert!(human.contains("End Reason: killed by a signal"), "{human}");
    assert_lines(&human, &["Exit Code: 139"]);
    sys.stop();
}
