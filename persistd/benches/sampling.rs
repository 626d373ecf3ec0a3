//! The CPU cost of sampling: N real job cgroups (children of our own, v1 on the host or v2
//! in the guest) watched by one `Sampling`, sampled in passes as the timer task does, each
//! sample read through the directory fds and stored in a real store.
//!
//! `cargo bench -p joblet-persistd --bench sampling` (root; 1,000 jobs, 20 passes);
//! `PERSISTD_BENCH_JOBS=200 PERSISTD_BENCH_PASSES=50` to change them. Half of the cgroups hold
//! a sleeping process, the others are empty (the kernel's work per file barely differs).

#[path = "../tests/common/cgroup.rs"]
#[allow(dead_code)]
mod cgroup;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cgroup::TestCgroup;
use joblet_ipc_proto::job::JobId;
use joblet_persistd::metrics::{CgroupDirs, Sampling};
use joblet_persistd::store::Store;
use nix::sys::resource::{UsageWho, getrusage};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_time() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

struct Sleepers(Vec<Child>);

impl Drop for Sleepers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let jobs = env_usize("PERSISTD_BENCH_JOBS", 1000);
    let passes = env_usize("PERSISTD_BENCH_PASSES", 20).max(1);
    let max_fds = joblet_persistd::harden::raise_fd_limit().expect("raise RLIMIT_NOFILE");

    let mut cgroups = Vec::with_capacity(jobs);
    let mut sleepers = Sleepers(Vec::new());
    let made = Instant::now();
    for i in 0..jobs {
        match TestCgroup::create() {
            Ok(cg) => {
                if i % 2 == 0 {
                    let mut cmd = Command::new("sleep");
                    cmd.arg("600").stdin(Stdio::null());
                    cg.run_inside(&mut cmd);
                    sleepers.0.push(cmd.spawn().expect("spawn sleep"));
                }
                cgroups.push(cg);
            }
            Err(reason) => {
                eprintln!("SKIPPED: no cgroup for the bench: {reason}");
                return;
            }
        }
    }
    let v = if cgroups[0].is_v2() { 2 } else { 1 };
    eprintln!(
        "{jobs} cgroups (v{v}) made in {:.1} s; open-file limit {max_fds}",
        made.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    let mut sampling = Sampling::new();
    for (i, cg) in cgroups.iter().enumerate() {
        let job = JobId::parse(&format!("00000000-0000-4000-8000-{i:012x}")).unwrap();
        let log = store.open_job(&job).expect("open job").log;
        let (kinds, fds) = cg.open_dirs();
        let dirs = CgroupDirs::new(&kinds, fds).expect("cgroup dirs");
        sampling.watch(log, dirs, 0);
    }
    assert_eq!(sampling.len(), jobs);

    let (wall, cpu) = (Instant::now(), cpu_time());
    for _ in 0..passes {
        let report = sampling.sample_all();
        assert_eq!(report.sampled, jobs, "{report:?}");
    }
    let (wall, cpu) = (wall.elapsed(), cpu_time() - cpu);
    let samples = (jobs * passes) as f64;
    let per_pass = cpu / passes as u32;
    println!(
        "sampling: {jobs} jobs x {passes} passes: {:.1} µs CPU per sample ({:.1} µs wall); \
         {:.1} ms CPU per pass; at a 5 s interval {:.2} % of one core",
        cpu.as_secs_f64() * 1e6 / samples,
        wall.as_secs_f64() * 1e6 / samples,
        per_pass.as_secs_f64() * 1e3,
        per_pass.as_secs_f64() / 5.0 * 100.0,
    );
    drop(sampling);
    drop(sleepers);
    drop(cgroups);
}
