//! Root integration tests of the cgroup drivers against the real kernel. The same file runs
//! on a cgroup v1 host and in the cgroup v2 guest: it detects the mode and tests that driver.
//! Measured figures are printed as `MEASURED ...` lines (visible with `--nocapture`).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use joblet_ipc_proto::job::Limits;
use joblet_ipc_proto::settings::CgroupMode;
use std::os::fd::AsFd;

use joblet_spawner::cgroup::{CgroupConfig, CgroupError, Cgroups, JobCgroup, ResolvedLimits};
use nix::sys::signal::Signal;

use support::worker;
use support::*;

const MIB: u64 = 1 << 20;

fn limits(f: impl FnOnce(&mut ResolvedLimits)) -> ResolvedLimits {
    let mut l = ResolvedLimits {
        pids_max: 64,
        ..Default::default()
    };
    f(&mut l);
    l
}

/// The test binary's entry point when it runs as a worker inside a job cgroup; a no-op when
/// run as a test.
#[test]
#[ignore = "helper process started by the other tests"]
fn worker_process() {
    if let Ok(mode) = std::env::var(WORKER_ENV) {
        worker::run(&mode);
    }
}

#[test]
fn open_creates_the_base_under_our_own_cgroup_and_reopens() {
    let Some(fx) = Fixture::new() else { return };
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let bases = fx.cg.base_paths();
    assert!(!bases.is_empty());
    for b in &bases {
        assert!(b.is_dir(), "{} exists", b.display());
        assert!(b.ends_with(&fx.cfg.base));
        assert!(b.starts_with(ROOT));
    }
    match fx.cg.mode {
        CgroupMode::V1 => {
            assert!(bases.len() >= 6, "one base per hierarchy: {bases:?}");
            // The memory base sits under our own memory cgroup, wherever that is.
            let mem = own
                .lines()
                .find_map(|l| l.split(':').nth(2).filter(|_| l.contains(":memory:")))
                .unwrap();
            let expected = Path::new(ROOT)
                .join("memory")
                .join(mem.trim_start_matches('/'))
                .join(&fx.cfg.base);
            assert!(bases.contains(&expected), "{expected:?} in {bases:?}");
            assert!(
                bases
                    .iter()
                    .all(|b| !b.starts_with("/sys/fs/cgroup/unified"))
            );
            let cpuset = bases
                .iter()
                .find(|b| b.starts_with("/sys/fs/cgroup/cpuset"));
            if let Some(c) = cpuset {
                let cpus = std::fs::read_to_string(c.join("cpuset.cpus")).unwrap();
                assert!(!cpus.trim().is_empty(), "cpuset copied down into the base");
            }
        }
        CgroupMode::V2 => {
            let control = std::fs::read_to_string(bases[0].join("cgroup.subtree_control"));
            let control = control.unwrap();
            for c in ["cpu", "memory", "pids"] {
                assert!(control.contains(c), "{c} enabled for jobs: {control}");
            }
        }
    }
    let again = Cgroups::open(&fx.cfg).expect("open is idempotent");
    assert_eq!(again.base_paths(), bases);
}

#[test]
fn open_refuses_the_wrong_mode_and_bad_names() {
    let Some(fx) = Fixture::new() else { return };
    let other = match fx.cfg.mode {
        CgroupMode::V1 => CgroupMode::V2,
        CgroupMode::V2 => CgroupMode::V1,
    };
    let wrong = CgroupConfig {
        mode: other,
        ..fx.cfg.clone()
    };
    match Cgroups::open(&wrong) {
        Err(CgroupError::Mount(detail)) => eprintln!("refused as expected: {detail}"),
        Err(e) => panic!("wrong error for {other:?}: {e}"),
        Ok(_) => panic!("{other:?} accepted on a {:?} host", fx.cfg.mode),
    }
    for bad in ["../escape", "a/b", "", "-x", "x".repeat(64).as_str()] {
        let cfg = CgroupConfig {
            base: bad.to_owned(),
            ..fx.cfg.clone()
        };
        assert!(
            matches!(Cgroups::open(&cfg), Err(CgroupError::BaseName(_))),
            "{bad:?} accepted"
        );
    }
}

/// The host's `/sys/fs/cgroup/unified` is a cgroup2 mount offering only hugetlb: the v2
/// driver must refuse it, naming the missing controllers, and create nothing there.
#[test]
fn v2_refuses_a_cgroup2_mount_without_controllers() {
    let Some(_fx) = Fixture::new() else { return };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let weak = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        let controllers =
            std::fs::read_to_string(Path::new(mount_point).join("cgroup.controllers")).ok()?;
        (right.starts_with("cgroup2 ") && !controllers.split_whitespace().any(|c| c == "cpu"))
            .then(|| mount_point.to_owned())
    });
    let Some(mount_point) = weak else {
        eprintln!("SKIPPED: no cgroup2 mount without the cpu controller on this host");
        return;
    };
    let base = format!("joblet-test-{}-{}", std::process::id(), unique());
    let cfg = CgroupConfig {
        root: mount_point.clone().into(),
        mode: CgroupMode::V2,
        base: base.clone(),
    };
    match Cgroups::open(&cfg) {
        Err(CgroupError::MissingController { controller, mode }) => {
            assert_eq!(mode, CgroupMode::V2);
            assert!(controller.contains("cpu") && controller.contains("memory"));
            eprintln!("refused as expected: {controller}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("v2 accepted {mount_point}"),
    }
    assert!(!Path::new(&mount_point).join(&base).exists());
}

#[test]
fn resolve_refuses_what_the_host_cannot_apply() {
    let Some(fx) = Fixture::new() else { return };
    let host = fx.cg.host.clone();
    assert!(!host.online_cpus.is_empty() && host.memory_bytes > 0);
    let req = |f: &dyn Fn(&mut Limits)| {
        let mut l = Limits::default();
        f(&mut l);
        l
    };
    let not_online = host.online_cpus.iter().max().unwrap() + 1;
    // No io device is given: as for a job whose storage is all on tmpfs.
    let cases = [
        (req(&|l| l.cpu_cores = not_online.to_string()), "cpu_cores"),
        (
            req(&|l| l.memory_mb = host.memory_bytes / MIB + 1),
            "max_memory",
        ),
        (req(&|l| l.io_bps = MIB), "max_io_bps"),
    ];
    for (l, field) in cases {
        match fx.cg.resolve(&l, 32, &[]) {
            Err(e @ CgroupError::LimitUnavailable { limit, .. }) => {
                assert_eq!(limit, field, "{e}");
                assert!(e.is_request_error());
            }
            other => panic!("{field}: expected a refusal, got {other:?}"),
        }
    }
    let ok = req(&|l| {
        l.cpu_percent = 50;
        l.cpu_cores = host.online_cpus[0].to_string();
        l.memory_mb = 64;
    });
    let r = fx
        .cg
        .resolve(&ok, 32, &[])
        .expect("a request the host can apply");
    assert_eq!(r.cpus, [host.online_cpus[0]]);
    assert_eq!((r.memory_bytes, r.pids_max), (64 * MIB, 32));
}

#[test]
fn memory_limit_oom_kills_counts_and_notifies() {
    let Some(fx) = Fixture::new() else { return };
    let job = fx
        .cg
        .create(&new_job_id(), &limits(|l| l.memory_bytes = 32 * MIB))
        .unwrap();
    let watch = job.oom_watch().unwrap();
    // v2 needs no watch: memory.oom.group makes the kernel kill the whole job.
    assert_eq!(watch.is_some(), fx.cg.mode == CgroupMode::V1);
    let mut child = Gated::worker("alloc:256");
    attach(&job, child.pid());
    assert_eq!(job.oom_kills().unwrap(), 0);
    if let Some(w) = &watch {
        assert!(!poll_for(w.as_fd(), libc::POLLIN, Duration::ZERO));
    }
    assert!(!job.under_oom().unwrap());
    child.release();
    if let Some(w) = &watch {
        // v1: with the watch armed, the kernel kills nobody; the job waits at its limit
        // for the spawner's whole-job kill, which this test does in the spawner's place.
        let fired = poll_for(w.as_fd(), libc::POLLIN, Duration::from_secs(60));
        assert!(fired, "OOM watch fired");
        assert!(job.under_oom().unwrap(), "the job waits at its limit");
        assert_eq!(job.oom_kills().unwrap(), 0, "the kernel killed nothing");
        let alive = child.child.try_wait().expect("try_wait").is_none();
        assert!(alive, "the job was not killed by the kernel");
        job.ack_oom_watch(w.as_fd()).unwrap();
        let quiet = !poll_for(w.as_fd(), libc::POLLIN, Duration::ZERO);
        assert!(quiet, "acknowledged watch is quiet again");
        job.kill_all().unwrap();
        let status = child.wait(Duration::from_secs(60));
        assert_eq!(killed_by(status), Some(libc::SIGKILL), "{status:?}");
    } else {
        let status = child.wait(Duration::from_secs(60));
        assert_eq!(killed_by(status), Some(libc::SIGKILL), "{status:?}");
        assert!(job.oom_kills().unwrap() >= 1);
        let group = std::fs::read_to_string(job.paths()[0].join("memory.oom.group")).unwrap();
        assert_eq!(group.trim(), "1");
    }
    eprintln!("MEASURED oom_kills={}", job.oom_kills().unwrap());
    job.remove().unwrap();
}

#[test]
fn cpu_quota_throttles_a_busy_loop() {
    let Some(fx) = Fixture::new() else { return };
    let job = fx
        .cg
        .create(&new_job_id(), &limits(|l| l.cpu_percent = 20))
        .unwrap();
    let mut child = Gated::shell("while :; do :; done");
    attach(&job, child.pid());
    let used_before = cpu_usage_usec(&fx, &job);
    let start = Instant::now();
    child.release();
    std::thread::sleep(Duration::from_millis(1500));
    let used = cpu_usage_usec(&fx, &job) - used_before;
    let wall = start.elapsed();
    let (periods, throttled, throttled_us) = cpu_throttling(&fx, &job);
    let fraction = used as f64 / wall.as_micros() as f64;
    eprintln!(
        "MEASURED cpu: {fraction:.3} of one core over {wall:?}, nr_periods={periods} \
         nr_throttled={throttled} ({:.0}% of periods) throttled_usec={throttled_us}",
        100.0 * throttled as f64 / periods.max(1) as f64
    );
    assert!(throttled > 0 && throttled_us > 0, "the loop was throttled");
    assert!(
        (0.08..=0.30).contains(&fraction),
        "consumed {fraction:.3} of a core at a 20% limit"
    );
    job.kill_all().unwrap();
    drop(child);
    job.remove().unwrap();
}

/// Moves `pid` into the job's cgroup in every hierarchy.
fn attach(job: &JobCgroup, pid: i32) {
    for dir in job.paths() {
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

/// The job's cgroup directory holding `file` (v1: the hierarchy that has it).
fn file_of(job: &JobCgroup, file: &str) -> std::path::PathBuf {
    let dirs = job.paths();
    dirs.iter()
        .map(|d| d.join(file))
        .find(|p| p.exists())
        .expect(file)
}

/// CPU time used so far, microseconds (v1 `cpuacct.usage`, v2 `cpu.stat usage_usec`).
fn cpu_usage_usec(fx: &Fixture, job: &JobCgroup) -> u64 {
    match fx.cg.mode {
        CgroupMode::V1 => {
            let ns = std::fs::read_to_string(file_of(job, "cpuacct.usage")).unwrap();
            ns.trim().parse::<u64>().unwrap() / 1000
        }
        CgroupMode::V2 => keyed(&file_of(job, "cpu.stat"), "usage_usec"),
    }
}

/// (nr_periods, nr_throttled, throttled_usec) from `cpu.stat`.
fn cpu_throttling(fx: &Fixture, job: &JobCgroup) -> (u64, u64, u64) {
    let stat = file_of(job, "cpu.stat");
    let throttled_us = match fx.cg.mode {
        CgroupMode::V1 => keyed(&stat, "throttled_time") / 1000,
        CgroupMode::V2 => keyed(&stat, "throttled_usec"),
    };
    (
        keyed(&stat, "nr_periods"),
        keyed(&stat, "nr_throttled"),
        throttled_us,
    )
}

#[test]
fn cpuset_pins_to_cpu0() {
    let Some(fx) = Fixture::new() else { return };
    if fx.cg.host.online_cpus.len() < 2 || !fx.cg.caps.cpuset {
        eprintln!("SKIPPED: needs two usable CPUs and the cpuset controller");
        return;
    }
    let l = limits(|l| l.cpus = vec![0]);
    let job = fx.cg.create(&new_job_id(), &l).unwrap();
    let child = Gated::shell("exit 0");
    assert_ne!(cpus_allowed(child.pid()), "0", "not pinned before");
    attach(&job, child.pid());
    assert_eq!(cpus_allowed(child.pid()), "0");
    drop(child);
    job.remove().unwrap();
}

#[test]
fn pids_limit_stops_forks_with_eagain() {
    let Some(fx) = Fixture::new() else { return };
    let job = fx
        .cg
        .create(&new_job_id(), &limits(|l| l.pids_max = 8))
        .unwrap();
    let mut child = Gated::worker("fork:32");
    attach(&job, child.pid());
    child.release();
    let result = child.line("RESULT ");
    let status = child.wait(Duration::from_secs(30));
    eprintln!("MEASURED pids: {result}");
    let mut it = result.split_whitespace();
    let forked: u32 = it.nth(1).unwrap().parse().unwrap();
    let errno: i32 = it.nth(1).unwrap().parse().unwrap();
    assert_eq!(errno, libc::EAGAIN, "fork failed with EAGAIN: {result}");
    assert!((1..8).contains(&forked), "{result}");
    assert!(status.success());
    job.remove().unwrap();
}

/// Writes 4 MiB with O_DIRECT to a file on an ext4 loop device, once limited to 1 MiB/s and
/// once unlimited, from a process that mounted it in its own mount namespace before it
/// joined the job cgroup (so no host mount is touched and the v1 device list does not apply).
#[test]
fn io_limit_throttles_direct_writes() {
    let Some(fx) = Fixture::new() else { return };
    if !fx.cg.caps.io {
        eprintln!("SKIPPED: no io/blkio controller");
        return;
    }
    let tmp = TempDir::new("io");
    let img = image(tmp.path(), "io.img", 64, false);
    mkfs_ext4(&img);
    let dev = LoopDevice::attach(&img, false);
    let limited = timed_direct_write(&fx, &dev, &tmp, MIB);
    let unlimited = timed_direct_write(&fx, &dev, &tmp, 0);
    eprintln!(
        "MEASURED io: 4 MiB O_DIRECT took {:.2} s at 1 MiB/s, {:.2} s unlimited",
        limited.as_secs_f64(),
        unlimited.as_secs_f64()
    );
    assert!(limited >= Duration::from_millis(2500), "{limited:?}");
    assert!(unlimited < limited / 2, "{unlimited:?} vs {limited:?}");
}

fn timed_direct_write(fx: &Fixture, dev: &LoopDevice, tmp: &TempDir, bps: u64) -> Duration {
    let l = Limits {
        io_bps: bps,
        ..Limits::default()
    };
    let resolved = fx.cg.resolve(&l, 64, &[(dev.major, dev.minor)]).unwrap();
    let job = fx.cg.create(&new_job_id(), &resolved).unwrap();
    let mnt = tmp.path().join(format!("mnt-{}", unique()));
    std::fs::create_dir(&mnt).unwrap();
    let script = format!(
        "mount -t ext4 {dev} {mnt} || exit 97; echo ready; read _gate || exit 99; \
         exec dd if=/dev/zero of={mnt}/f bs=1M count=4 oflag=direct status=none",
        dev = dev.dev.display(),
        mnt = mnt.display()
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let mut child = Gated::spawn(cmd);
    child.line("ready");
    attach(&job, child.pid());
    let start = Instant::now();
    child.release();
    let status = child.wait(Duration::from_secs(120));
    let took = start.elapsed();
    assert!(status.success(), "dd failed: {status:?}");
    drop(child);
    job.remove().unwrap();
    took
}

#[test]
fn v1_device_list_denies_all_but_the_basic_nodes() {
    let Some(fx) = Fixture::new() else { return };
    if fx.cg.mode != CgroupMode::V1 {
        eprintln!("SKIPPED: cgroup v2 has no devices controller (device policy needs BPF)");
        return;
    }
    let tmp = TempDir::new("dev");
    let mem = tmp.path().join("mem");
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
    let kind = nix::sys::stat::SFlag::S_IFCHR;
    nix::sys::stat::mknod(&mem, kind, mode, nix::sys::stat::makedev(1, 1)).unwrap();
    let img = image(tmp.path(), "raw.img", 8, false);
    let dev = LoopDevice::attach(&img, false);
    let job = fx.cg.create(&new_job_id(), &limits(|_| {})).unwrap();
    let paths = format!(
        "/dev/null,/dev/zero,{},{}",
        dev.dev.display(),
        mem.display()
    );
    let mut child = Gated::worker(&format!(
        "open:{paths};mknod:{}/null2:1:3;mknod:{}/mem2:1:1",
        tmp.path().display(),
        tmp.path().display()
    ));
    attach(&job, child.pid());
    child.release();
    let eperm = libc::EPERM.to_string();
    let expect = [
        ("/dev/null".to_owned(), "ok".to_owned()),
        ("/dev/zero".to_owned(), "ok".to_owned()),
        (dev.dev.display().to_string(), eperm.clone()),
        (mem.display().to_string(), eperm.clone()),
        (format!("{}/null2", tmp.path().display()), "ok".to_owned()),
        (format!("{}/mem2", tmp.path().display()), eperm.clone()),
    ];
    for (path, want) in expect {
        let got = child.line("RESULT ");
        assert_eq!(got, format!("{path} {want}"));
    }
    assert!(child.wait(Duration::from_secs(30)).success());
    job.remove().unwrap();
}

#[test]
fn kill_all_empties_a_fork_tree_and_remove_leaves_nothing() {
    let Some(fx) = Fixture::new() else { return };
    let job = fx.cg.create(&new_job_id(), &limits(|_| {})).unwrap();
    let mut child = Gated::shell(
        "sleep 100 & sleep 100 & sh -c 'sleep 100 & sleep 100 & (sleep 100 &); wait' & wait",
    );
    attach(&job, child.pid());
    child.release();
    assert!(
        eventually(Duration::from_secs(10), || job.pids().unwrap().len() >= 7),
        "tree started: {:?}",
        job.pids()
    );
    let start = Instant::now();
    job.kill_all().unwrap();
    eprintln!(
        "MEASURED kill_all of 7+ processes took {:?}",
        start.elapsed()
    );
    assert!(job.is_empty().unwrap());
    assert!(job.pids().unwrap().is_empty());
    assert_eq!(
        killed_by(child.wait(Duration::from_secs(5))),
        Some(libc::SIGKILL)
    );
    let paths = job.paths();
    job.remove().unwrap();
    for p in paths {
        assert!(!p.exists(), "{} removed", p.display());
    }
}

/// 150 processes: more than one batch of pinned pidfds.
#[test]
fn signal_all_reaches_every_process() {
    let Some(fx) = Fixture::new() else { return };
    let job = fx
        .cg
        .create(&new_job_id(), &limits(|l| l.pids_max = 512))
        .unwrap();
    let mut child =
        Gated::shell("i=0; while [ $i -lt 150 ]; do sleep 100 & i=$((i+1)); done; wait");
    attach(&job, child.pid());
    child.release();
    assert!(
        eventually(Duration::from_secs(60), || job.pids().unwrap().len() > 150),
        "started: {}",
        job.pids().unwrap().len()
    );
    job.signal_all(Signal::SIGTERM).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || job.is_empty().unwrap()),
        "left: {:?}",
        job.pids()
    );
    assert_eq!(
        killed_by(child.wait(Duration::from_secs(5))),
        Some(libc::SIGTERM)
    );
    job.remove().unwrap();
}

#[test]
fn adopt_and_list_find_existing_jobs() {
    let Some(fx) = Fixture::new() else { return };
    let id = new_job_id();
    let job = fx.cg.create(&id, &limits(|_| {})).unwrap();
    assert!(fx.cg.list().unwrap().contains(&id));
    // A restart opens the bases again while jobs are under them (v1: the device list in
    // force is left alone; the kernel would refuse to reset it).
    let reopened = Cgroups::open(&fx.cfg).expect("open with a job present");
    let adopted = reopened.adopt(&id).unwrap().expect("adopted");
    // The job's own directories (their names hold its id).
    assert_eq!(adopted.paths(), job.paths());
    assert_eq!(
        adopted.clone_into_fd().is_some(),
        fx.cg.mode == CgroupMode::V2
    );
    assert!(fx.cg.adopt(&new_job_id()).unwrap().is_none());
    // Creating it again is refused, and the refusal must not remove the existing one.
    assert!(matches!(
        fx.cg.create(&id, &limits(|_| {})),
        Err(CgroupError::Create(..))
    ));
    assert!(job.paths().iter().all(|p| p.is_dir()));
    drop(adopted);
    job.remove().unwrap();
    assert!(!fx.cg.list().unwrap().contains(&id));
    assert!(fx.cg.adopt(&id).unwrap().is_none());
}

/// A v1 job whose creation was cut short (present in some hierarchies only) is still found,
/// adopted, emptied and removed.
#[test]
fn v1_adopts_and_removes_a_half_created_job() {
    let Some(fx) = Fixture::new() else { return };
    if fx.cg.mode != CgroupMode::V1 {
        eprintln!("SKIPPED: only v1 has one directory per hierarchy");
        return;
    }
    let id = new_job_id();
    let job = fx.cg.create(&id, &limits(|_| {})).unwrap();
    let paths = job.paths();
    drop(job);
    let freezer = paths
        .iter()
        .find(|p| p.starts_with("/sys/fs/cgroup/freezer"));
    let freezer = freezer.expect("a freezer hierarchy");
    std::fs::remove_dir(freezer).unwrap();
    assert!(fx.cg.list().unwrap().contains(&id));
    let half = fx.cg.adopt(&id).unwrap().expect("adopted");
    assert_eq!(half.paths().len(), paths.len() - 1);
    let mut child = Gated::shell("sleep 100 & wait");
    attach(&half, child.pid());
    child.release();
    assert!(eventually(Duration::from_secs(10), || half
        .pids()
        .unwrap()
        .len()
        >= 2));
    half.kill_all().unwrap();
    assert_eq!(
        killed_by(child.wait(Duration::from_secs(5))),
        Some(libc::SIGKILL)
    );
    half.remove().unwrap();
    assert!(paths.iter().all(|p| !p.exists()));
    assert!(fx.cg.list().unwrap().is_empty());
}

#[test]
fn create_removes_what_it_made_when_a_limit_fails() {
    let Some(fx) = Fixture::new() else { return };
    if !fx.cg.caps.io {
        eprintln!("SKIPPED: no io/blkio controller");
        return;
    }
    // No block device 250:250 exists here, so the io limit write fails after mkdir.
    assert!(!Path::new("/sys/dev/block/250:250").exists());
    let bad = limits(|l| {
        l.io = vec![joblet_spawner::cgroup::IoLimit {
            major: 250,
            minor: 250,
            bps: MIB,
        }]
    });
    let id = new_job_id();
    let err = fx.cg.create(&id, &bad).err().expect("create refused");
    eprintln!("refused as expected: {err}");
    assert!(matches!(err, CgroupError::Write { .. }), "{err:?}");
    assert!(fx.cg.list().unwrap().is_empty(), "nothing left behind");
}

#[test]
fn remove_base_refuses_while_jobs_exist() {
    let Some(fx) = Fixture::new() else { return };
    let job = fx.cg.create(&new_job_id(), &limits(|_| {})).unwrap();
    assert!(matches!(fx.cg.remove_base(), Err(CgroupError::NotEmpty(_))));
    assert!(fx.cg.base_paths().iter().all(|p| p.is_dir()));
    job.remove().unwrap();
    fx.cg.remove_base().unwrap();
    assert!(fx.cg.base_paths().iter().all(|p| !p.exists()));
}

#[test]
fn devices_backing_maps_partitions_to_disks_and_loops_to_themselves() {
    if Fixture::new().is_none() {
        return;
    }
    assert!(Cgroups::devices_backing(&[Path::new("/proc"), Path::new("/dev/shm")]).is_empty());
    assert!(Cgroups::devices_backing(&[Path::new("/no/such/path")]).is_empty());
    let tmp = TempDir::new("backing");
    let parted = LoopDevice::attach(&image(tmp.path(), "p.img", 32, true), true);
    let part = parted.partition(1);
    assert_ne!(block_dev_numbers(&part), (parted.major, parted.minor));
    mkfs_ext4(&part);
    let raw_img = image(tmp.path(), "r.img", 16, false);
    mkfs_ext4(&raw_img);
    let raw = LoopDevice::attach(&raw_img, false);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let script = format!(
        "mount -t ext4 {} {a} && mount -t ext4 {} {b} || exit 97; exec \"$0\" \"$@\"",
        part.display(),
        raw.dev.display(),
        a = a.display(),
        b = b.display()
    );
    let worker = worker_command(&format!("backing:{},{}", a.display(), b.display()));
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        &script,
    ]);
    cmd.arg(worker.get_program()).args(worker.get_args());
    cmd.envs(worker.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let mut child = Gated::spawn(cmd);
    child.release();
    let got = child.line("RESULT ");
    assert!(child.wait(Duration::from_secs(30)).success());
    let want = format!(
        "{}:{},{}:{}",
        parted.major, parted.minor, raw.major, raw.minor
    );
    eprintln!(
        "partition {} of {} -> {got}",
        part.display(),
        parted.dev.display()
    );
    assert_eq!(got, want);
}

#[test]
fn clone3_places_a_child_straight_into_the_cgroup() {
    let Some(fx) = Fixture::new() else { return };
    let job = fx.cg.create(&new_job_id(), &limits(|_| {})).unwrap();
    let Some(fd) = job.clone_into_fd() else {
        assert_eq!(fx.cg.mode, CgroupMode::V1);
        eprintln!("SKIPPED: cgroup v1 has no CLONE_INTO_CGROUP (attach() is the v1 path)");
        return;
    };
    let child = worker::clone3_sleep(fd);
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", child.0)).unwrap();
    let rel = job.paths()[0].strip_prefix(ROOT).unwrap().to_owned();
    assert_eq!(cgroup.trim(), format!("0::/{}", rel.display()));
    assert_eq!(job.pids().unwrap(), [child.0]);
    job.kill_all().unwrap();
    assert_eq!(child.reap(), Some(libc::SIGKILL));
    job.remove().unwrap();
}

/// v2 only: our own cgroup is a non-root cgroup with processes, so enabling controllers
/// below it first moves those processes into `<own>/joblet-daemons`.
#[test]
fn v2_open_moves_our_processes_to_a_leaf_first() {
    let Some(fx) = Fixture::new() else { return };
    if fx.cg.mode != CgroupMode::V2 {
        eprintln!("SKIPPED: the no-internal-process rule is a cgroup v2 rule");
        return;
    }
    let own = Path::new(ROOT).join(format!(
        "joblet-test-own-{}-{}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir(&own).unwrap();
    let _cleanup = worker::RemoveDirs(vec![
        own.join("joblet-daemons"),
        own.join("base"),
        own.clone(),
    ]);
    let mut child = Gated::worker(&format!("daemons:{}", own.display()));
    child.release();
    let got = child.line("RESULT ");
    assert!(child.wait(Duration::from_secs(30)).success());
    let rel = own.strip_prefix(ROOT).unwrap().display().to_string();
    assert_eq!(got, format!("0::/{rel}/joblet-daemons base-ok"));
    let control = std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap();
    for c in ["cpu", "memory", "pids"] {
        assert!(control.contains(c), "{control}");
    }
}

/// What making and removing one job's cgroup costs the spawner (no assertion on it: a
/// figure for BENCHMARKS.md). Limits as an unlimited job's: pids only.
#[test]
fn create_and_remove_cost() {
    let Some(fx) = Fixture::new() else { return };
    let l = limits(|_| {});
    let (runs, mut took) = (300, Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        let job = fx.cg.create(&new_job_id(), &l).unwrap();
        job.remove().unwrap();
        took.push(start.elapsed().as_micros());
    }
    took.sort_unstable();
    eprintln!(
        "MEASURED create + remove of a job cgroup: median {} µs, p90 {} µs over {runs}",
        took[runs / 2],
        took[runs * 9 / 10]
    );
}
