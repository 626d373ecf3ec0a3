//! CPU: the quota measured from the job's own accounting, and pinned cores.

use std::time::{Duration, Instant};

use joblet_tests::cgroupfs;
use joblet_tests::hostile::{assert_lines, sh_job};
use joblet_tests::{System, require_root};

use super::WAIT;

/// `--max-cpu=20` on a busy loop: over a few seconds the job's cgroup accounts about 20 %
/// of one core (v2 `cpu.stat` `usage_usec`, v1 `cpuacct.usage`), and `nr_throttled` grows.
#[test]
fn max_cpu_holds_a_busy_loop_to_its_share() {
    require_root!();
    let sys = System::start();
    let job = sys.start_job(&["--max-cpu=20"], &sh_job("while :; do :; done"));
    assert_eq!(cgroupfs::cpu_quota(&sys, &job), Some((20_000, 100_000)));
    // Let the loop start, then measure over a window long enough for 30+ periods.
    std::thread::sleep(Duration::from_secs(1));
    let (u0, t0, w0) = (
        cgroupfs::cpu_usage_usec(&sys, &job).expect("cpu usage"),
        cgroupfs::nr_throttled(&sys, &job).expect("nr_throttled"),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(5));
    let (u1, t1, wall) = (
        cgroupfs::cpu_usage_usec(&sys, &job).expect("cpu usage"),
        cgroupfs::nr_throttled(&sys, &job).expect("nr_throttled"),
        w0.elapsed(),
    );
    let share = (u1 - u0) as f64 / wall.as_micros() as f64;
    eprintln!(
        "cpu share {:.3} of one core over {wall:?}; throttled {} periods",
        share,
        t1 - t0
    );
    assert!(
        (0.10..=0.30).contains(&share),
        "the job used {:.1} % of a core, asked 20 %",
        share * 100.0
    );
    assert!(t1 > t0, "the job was never throttled");
    sys.rnx(&["job", "stop", &job.id]).expect_ok("stop");
    sys.wait_done(&job, WAIT);
    sys.stop();
}

/// The host's online CPUs, from `/sys/devices/system/cpu/online` (`0-1`, `0,2-3`).
fn online_cpus() -> Vec<u32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").expect("online cpus");
    text.trim()
        .split(',')
        .flat_map(|part| {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let (lo, hi): (u32, u32) = (lo.parse().expect("cpu"), hi.parse().expect("cpu"));
            lo..=hi
        })
        .collect()
}

/// `--cpu-cores=N`: the job may run on CPU N only, as it sees itself
/// (`Cpus_allowed_list`) and as the host's `cpuset.cpus` says; tried on the first and the
/// last online CPU.
#[test]
fn cpu_cores_pin_the_job() {
    require_root!();
    let sys = System::start();
    let cpus = online_cpus();
    let mut picks = vec![cpus[0]];
    if cpus.len() > 1 {
        picks.push(cpus[cpus.len() - 1]);
    }
    for cpu in picks {
        let flag = format!("--cpu-cores={cpu}");
        let job = sys.start_job(
            &[&flag],
            &sh_job(
                "grep Cpus_allowed_list /proc/self/status | tr -d '\\t' | sed 's/:/=/'; sleep 600",
            ),
        );
        assert_eq!(
            cgroupfs::read(&sys, &job, "cpuset.cpus").as_deref(),
            Some(cpu.to_string().as_str()),
            "the host's cpuset for {flag}"
        );
        let mut tail = joblet_tests::tail::LogTail::start(&sys, &job);
        let want = format!("Cpus_allowed_list={cpu}");
        let out = tail.wait_for(&want, WAIT);
        assert_lines(&out, &[&want]);
        let st = sys.status(&job);
        assert_eq!(st["cpuCores"], cpu.to_string(), "{st}");
        sys.rnx(&["job", "stop", &job.id]).expect_ok("stop");
        sys.wait_done(&job, WAIT);
    }
    sys.stop();
}
