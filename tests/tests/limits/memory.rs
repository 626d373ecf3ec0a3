//! Memory: the whole job dies together on OOM, with swap off; the configured defaults
//! apply; the writable space has the configured size.

use std::time::{Duration, Instant};

use joblet_tests::cgroupfs::{self, Mode};
use joblet_tests::host::{self, Proc};
use joblet_tests::hostile::{assert_lines, host_procs_with, line_value, sh_job, sleep_marker};
use joblet_tests::tail::LogTail;
use joblet_tests::{Job, System, config, require_root};

use super::WAIT;

/// OOM: a child holding memory and its parent die with the process that went over
/// `--max-memory`; the job is FAILED, `oom_killed`, exit 137, and `rnx job status` says
/// "out of memory".
#[test]
fn oom_kills_the_whole_job_and_says_so() {
    require_root!();
    let sys = System::start();
    let m = sleep_marker();
    // The holder keeps 8 MB in a shell variable and sleeps; `tail` then grows without end.
    let script = format!(
        "sh -c 'x=$(head -c 8000000 /dev/zero | tr \"\\0\" a); : > /tmp/holding; echo HOLDING; sleep {m}' &
         while [ ! -e /tmp/holding ]; do sleep 0.1; done
         sleep 3; tail /dev/zero
         echo PARENT_SURVIVED; wait"
    );
    let job = sys.start_job(&["--max-memory=64"], &sh_job(&script));
    let mut tail = LogTail::start(&sys, &job);
    tail.wait_for("HOLDING", WAIT);
    assert_eq!(cgroupfs::memory_limit(&sys, &job), Some(64 << 20));
    match cgroupfs::mode() {
        Mode::V1 => {
            if let Some(memsw) = cgroupfs::read(&sys, &job, "memory.memsw.limit_in_bytes") {
                assert_eq!(memsw, (64u64 << 20).to_string(), "swap granted on top");
            } else {
                eprintln!("NOTE: no swap accounting on this v1 host (memory.memsw absent)");
            }
        }
        Mode::V2 => assert_eq!(
            cgroupfs::read(&sys, &job, "memory.swap.max").as_deref(),
            Some("0"),
            "swap granted on top"
        ),
    }
    let members: Vec<Proc> = cgroupfs::procs(&sys, &job)
        .into_iter()
        .filter_map(|pid| host::descendants(pid).into_iter().next())
        .collect();
    assert!(
        members.len() >= 2,
        "expected the shell and the holder: {members:?}"
    );
    let Some(st) = wait_ended(&sys, &job, Duration::from_secs(90)) else {
        sys.rnx(&["job", "stop", &job.id]).expect_ok("stop");
        sys.wait_done(&job, WAIT);
        let out = tail.finish(WAIT);
        panic!("the job kept running 90 s after its OOM kill: it was not killed as a whole\n{out}");
    };
    let out = tail.finish(WAIT);
    assert_eq!(st["status"], "FAILED", "{st}\n{out}");
    assert_eq!(st["endReason"], "oom_killed", "{st}");
    assert_eq!(st["exitCode"], 137, "{st}");
    assert!(
        !out.contains("PARENT_SURVIVED"),
        "the parent outlived the OOM kill:\n{out}"
    );
    let alive: Vec<&Proc> = members.iter().filter(|p| host::alive(**p)).collect();
    assert!(
        alive.is_empty(),
        "job processes outlived the OOM kill: {alive:?}"
    );
    assert!(host_procs_with(&m).is_empty(), "the holder survived");
    let human = sys.rnx(&["job", "status", &job.id]).expect_ok("status");
    assert!(
        human.stdout.contains("End Reason: out of memory"),
        "{}",
        human.stdout
    );
    sys.stop();
}

/// The job's status once it has ended, or `None` if it still runs after `limit`.
fn wait_ended(sys: &System, job: &Job, limit: Duration) -> Option<serde_json::Value> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let st = sys.status(job);
        if !["RUNNING", "INITIALIZING"].contains(&st["status"].as_str().unwrap_or("")) {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// `joblet.defaultCpuLimit` and `defaultMemoryLimit` apply to a job that asks for none; a
/// job's own flag wins over them.
#[test]
fn configured_default_limits_apply() {
    require_root!();
    let sys = System::start_with(|c| {
        config::set(c, "defaultCpuLimit", "30");
        config::set(c, "defaultMemoryLimit", "96");
    });
    let plain = sys.start_job(&[], &sh_job("sleep 600"));
    assert_eq!(cgroupfs::memory_limit(&sys, &plain), Some(96 << 20));
    assert_eq!(cgroupfs::cpu_quota(&sys, &plain), Some((30_000, 100_000)));
    let own = sys.start_job(&["--max-memory=64", "--max-cpu=50"], &sh_job("sleep 600"));
    assert_eq!(cgroupfs::memory_limit(&sys, &own), Some(64 << 20));
    assert_eq!(cgroupfs::cpu_quota(&sys, &own), Some((50_000, 100_000)));
    for j in [&plain, &own] {
        sys.rnx(&["job", "stop", &j.id]).expect_ok("stop");
        sys.wait_done(j, WAIT);
    }
    sys.stop();
}

/// The writable space (`/work`, `/tmp`, `/dev/shm` together) has the configured size
/// (`volumes.default_disk_quota_bytes`), and filling it gives ENOSPC at that size.
#[test]
fn the_writable_space_has_the_configured_size() {
    require_root!();
    let sys = System::start_with(|c| config::set(c, "default_disk_quota_bytes", "4194304"));
    let job = sys.start_job(&[],
        &sh_job(
            "echo SIZE_KIB=$(df -k /work | tail -1 | awk '{print $2}')
             dd if=/dev/zero of=/tmp/fill bs=64k count=1024 2>&1 | grep -q 'No space left' && echo TMP=ENOSPC
             echo USED_KIB=$(du -sk /tmp/fill | cut -f1)",
        ),
    );
    let st = sys.wait_done(&job, WAIT);
    let out = String::from_utf8_lossy(&sys.logs(&job)).into_owned();
    assert_eq!(st["status"], "COMPLETED", "{st}\n{out}");
    assert_lines(&out, &["SIZE_KIB=4096", "TMP=ENOSPC"]);
    let used: u64 = line_value(&out, "USED_KIB")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        (3584..=4096).contains(&used),
        "filled {used} KiB of 4 MiB:\n{out}"
    );
    sys.stop();
}
