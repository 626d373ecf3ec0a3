//! Root integration tests of the hardening layers in real jobs: user namespaces, the masked
//! /proc, seccomp, Landlock, uploads, and the cgroup fds handed to persistd.

mod harness;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;
use std::time::Duration;

use harness::*;
use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::channel::output::CgroupDir;
use joblet_ipc_proto::channel::spawner::SpawnerReply;
use joblet_ipc_proto::job::EndReason;
use joblet_ipc_proto::settings::{CgroupMode, Enforcement, SpawnerSettings, UserNamespaces};

const T: Duration = Duration::from_secs(30);
const RANGE: u32 = 65536;

fn lines(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// User namespaces on, with ranges far from anything else on this host.
fn userns(s: &mut SpawnerSettings) {
    s.userns = UserNamespaces {
        enabled: true,
        host_base: 3_000_000 + (std::process::id() % 1000) * 4 * RANGE,
        range: RANGE,
        slots: 4,
    };
}

/// The host's view of a process's real uid and gid.
fn host_ids(pid: u32) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let first = |key: &str| -> u32 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (first("Uid:"), first("Gid:"))
}

#[test]
fn each_job_gets_its_own_user_namespace_range() {
    let mut h = Harness::start_with(userns);
    let base = h.settings.userns.host_base;
    let mut c = h.client();
    let a = new_job_id();
    let script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; \
                  grep CapEff /proc/self/status; touch /work/f && stat -c 'work=%u:%g' /work/f; sleep 3";
    let (pid_a, _) = c.start_ok(&a, sh(script));
    let b = new_job_id();
    let (pid_b, _) = c.start_ok(&b, sh("sleep 3"));
    let (ua, ga) = host_ids(pid_a);
    let (ub, _) = host_ids(pid_b);
    // Each job sees uid 65534; the host sees base + slot * range + 65534, a different range each.
    let slot_of = |uid: u32| (uid - base - 65534) / RANGE;
    assert_eq!((ua - base - 65534) % RANGE, 0, "{ua}");
    assert_eq!(ga, ua, "gid maps like the uid");
    assert_ne!(slot_of(ua), slot_of(ub), "two jobs, two ranges: {ua} {ub}");

    // A restarted spawner keeps both slots taken: a new job gets a third range.
    h.kill9();
    h.spawn();
    let mut c = h.client();
    let d = new_job_id();
    let (pid_d, _) = c.start_ok(&d, sh("sleep 1"));
    let (ud, _) = host_ids(pid_d);
    assert!(
        ![slot_of(ua), slot_of(ub)].contains(&slot_of(ud)),
        "slot reused: {ud}"
    );
    for job in [&a, &b, &d] {
        let o = c.finish_job(job, T);
        assert_eq!(
            (o.reason, o.exit_code),
            (EndReason::Exited, 0),
            "{o:?}\n{}",
            h.log()
        );
    }
    let out = lines(&h.persistd.wait_drained(&a, T).stdout);
    let map = format!("0 {} {RANGE}", base + slot_of(ua) * RANGE);
    let maps: Vec<String> = out[..2]
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(maps, [map.clone(), map], "{out:?}");
    assert_eq!(
        &out[2..],
        [
            "65534",
            "65534",
            "CapEff:\t0000000000000000",
            "work=65534:65534"
        ]
    );
    h.finish();
}

#[test]
fn proc_is_masked_and_sys_absent() {
    let h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    // A masked file yields no byte, whether it reads empty or cannot be opened (ours: nodev).
    let script = "cat /proc/self/mountinfo; echo kcore=$(cat /proc/kcore 2>/dev/null | wc -c); \
                  echo kallsyms=$(cat /proc/kallsyms 2>/dev/null | wc -c); echo acpi=$(ls -A /proc/acpi | wc -l); \
                  test -e /sys || echo sys=absent; echo 1 > /proc/sys/kernel/sysrq 2>/dev/null || echo sysctl=refused";
    c.start_ok(&job, sh(script));
    c.finish_job(&job, T);
    let out = lines(&h.persistd.wait_drained(&job, T).stdout);
    // mountinfo: "id parent dev root mount-point options ..."
    let mounts: BTreeMap<String, String> = out
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some((f.get(4)?.to_string(), f.get(5)?.to_string()))
        })
        .collect();
    let masked = [
        "kcore",
        "keys",
        "key-users",
        "timer_list",
        "sched_debug",
        "sysrq-trigger",
        "latency_stats",
        "kallsyms",
        "kmsg",
        "config.gz",
        "acpi",
        "scsi",
        "asound",
        "sys",
        "bus",
        "fs",
        "irq",
    ];
    let mut checked = 0;
    for name in masked
        .iter()
        .filter(|n| std::path::Path::new("/proc").join(n).exists())
    {
        let opts = mounts.get(&format!("/proc/{name}"));
        assert!(
            opts.is_some_and(|o| o.split(',').any(|x| x == "ro")),
            "/proc/{name}: {opts:?}"
        );
        checked += 1;
    }
    assert!(
        checked >= 8,
        "this host has few of the masked paths ({checked})"
    );
    for want in [
        "kcore=0",
        "kallsyms=0",
        "acpi=0",
        "sys=absent",
        "sysctl=refused",
    ] {
        let host = want
            .split('=')
            .next()
            .map(|p| std::path::Path::new("/proc").join(p));
        if want.ends_with("=0") && !host.is_some_and(|p| p.exists()) {
            continue;
        }
        assert!(out.iter().any(|l| l == want), "{want} in {out:?}");
    }
    h.finish();
}

/// Runs `script` as a job and returns its stdout lines.
fn job_lines(h: &Harness, c: &mut Client, script: &str) -> Vec<String> {
    let job = new_job_id();
    c.start_ok(&job, sh(script));
    c.finish_job(&job, T);
    lines(&h.persistd.wait_drained(&job, T).stdout)
}

/// The read-only base every job's root is cloned from: built once by the spawner in a mount
/// namespace of its own, so nothing of it shows on the host; no job can leave anything in it
/// for the next; an allowed host directory is live in it, and an allowed host file is bound
/// per job, so a file the host replaces (as resolv.conf is) reaches the next job. A host mount
/// nothing of ours uses is not kept in the spawner's namespace (it would stay busy there after
/// the host unmounts it, where the host's mounts are not shared).
/// Removes the test's host directory, unmounting what it mounted there, pass or fail.
struct HostDir(std::path::PathBuf, Vec<std::path::PathBuf>);
impl Drop for HostDir {
    fn drop(&mut self) {
        for m in &self.1 {
            let _ = Command::new("umount").arg(m).status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_base_is_read_only_private_and_host_files_are_bound_per_job() {
    // Not under /tmp, which jobs get their own of; /run is writable in the v2 guest too.
    let host = std::path::PathBuf::from(format!("/run/joblet-base-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&host);
    std::fs::create_dir_all(host.join("dir")).unwrap();
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(host.join("file"), "file v1\n").unwrap();
    std::fs::write(host.join("dir/a"), "dir v1\n").unwrap();
    // A mount nothing of ours uses, and one an allowed file leads into through a symlink (as
    // systemd's /etc/resolv.conf leads into /run).
    let (unrelated, elsewhere) = (host.join("unrelated"), host.join("elsewhere"));
    let guard = HostDir(host.clone(), vec![unrelated.clone(), elsewhere.clone()]);
    for m in [&unrelated, &elsewhere] {
        std::fs::create_dir(m).unwrap();
        let mut mount = Command::new("mount");
        mount
            .args(["-t", "tmpfs", "-o", "mode=0755", "test"])
            .arg(m);
        assert!(mount.status().unwrap().success());
    }
    std::fs::write(elsewhere.join("target"), "linked\n").unwrap();
    symlink("elsewhere/target", host.join("link")).unwrap();
    let h = Harness::start_with(|s| {
        let allowed = [host.join("file"), host.join("dir"), host.join("link")];
        s.allowed_mounts.extend(allowed);
    });
    let mut c = h.client();
    let base = h.settings.state_dir.join("base");
    let spawner = h.child.as_ref().unwrap().id();
    let theirs = std::fs::read_to_string(format!("/proc/{spawner}/mountinfo")).unwrap();
    assert!(theirs.contains(base.to_str().unwrap()), "{theirs}");
    assert!(!theirs.contains(unrelated.to_str().unwrap()), "{theirs}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(base.to_str().unwrap()),
        "the base shows on the host"
    );
    let (file, dir) = (host.join("file"), host.join("dir"));
    let script = format!(
        "cat {file} {dir}/a; ls {dir}; for p in /left /dev/left /etc/left {dir}/left; do \
         touch $p 2>/dev/null && echo wrote $p; done; cat {link}",
        file = file.display(),
        dir = dir.display(),
        link = host.join("link").display()
    );
    let first = job_lines(&h, &mut c, &script);
    assert_eq!(first, ["file v1", "dir v1", "a", "linked"], "first job");
    // The host replaces the file (a new inode, as editors and resolvconf do) and changes the
    // directory.
    std::fs::write(host.join("file.new"), "file v2\n").unwrap();
    std::fs::rename(host.join("file.new"), &file).unwrap();
    std::fs::write(host.join("dir/a"), "dir v2\n").unwrap();
    std::fs::write(host.join("dir/b"), "").unwrap();
    let second = job_lines(&h, &mut c, &format!("{script}; ls -A /"));
    assert_eq!(second[..4], ["file v2", "dir v2", "a", "b"], "second job");
    assert!(!second.iter().any(|l| l.contains("left")), "{second:?}");
    h.finish();
    drop(guard);
    assert!(!host.exists(), "the test's host directory is left");
}

#[test]
fn seccomp_refuses_escape_calls_in_jobs() {
    let h = Harness::start_with(userns);
    let mut c = h.client();
    let job = new_job_id();
    let script = "grep -E '^Seccomp(_filters)?:' /proc/self/status; \
                  unshare -U true 2>&1; echo unshare=$?; unshare -r true 2>&1; echo unshare-r=$?";
    c.start_ok(&job, sh(script));
    c.finish_job(&job, T);
    let out = lines(&h.persistd.wait_drained(&job, T).stdout);
    assert!(out.contains(&"Seccomp:\t2".to_owned()), "{out:?}");
    // One program: the table and the clone3 ENOSYS check (see launch/seccomp.rs).
    assert!(out.contains(&"Seccomp_filters:\t1".to_owned()), "{out:?}");
    assert!(
        out.iter().any(|l| l.contains("Operation not permitted")),
        "{out:?}"
    );
    assert!(!out.contains(&"unshare=0".to_owned()) && !out.contains(&"unshare-r=0".to_owned()));
    h.finish();
}

const LANDLOCK_PROBE: &str = "echo renamed > /proc/self/comm && echo comm=written || echo comm=denied; \
    echo 500 > /proc/self/oom_score_adj && echo oom=written || echo oom=denied; \
    touch /work/a && touch /tmp/b && echo > /dev/shm/c && echo > /dev/null && echo writable=ok";

#[test]
fn landlock_keeps_writes_to_the_job_s_own_space() {
    if let Err(e) = joblet_spawner::launch::landlock::abi() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let run = |landlock: Enforcement| {
        let h = Harness::start_with(|s| {
            s.landlock = landlock;
            userns(s);
        });
        let mut c = h.client();
        let job = new_job_id();
        c.start_ok(&job, sh(LANDLOCK_PROBE));
        c.finish_job(&job, T);
        let out = lines(&h.persistd.wait_drained(&job, T).stdout);
        h.finish();
        out
    };
    // Without Landlock the job may write its own /proc files: the mounts and DAC allow it.
    let control = run(Enforcement::Off);
    assert!(control.contains(&"comm=written".to_owned()), "{control:?}");
    let out = run(Enforcement::Required);
    for want in ["comm=denied", "oom=denied", "writable=ok"] {
        assert!(
            out.contains(&want.to_owned()),
            "{want} in {out:?} (control {control:?})"
        );
    }
}

/// A staged upload directory as the frontend leaves it: its own uid, mode 0700.
fn staged(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn give_to_frontend(dir: &TempDir) {
    let out = std::process::Command::new("chown")
        .args(["-R", "12345:12345"])
        .arg(&dir.0)
        .output();
    assert!(out.unwrap().status.success());
}

fn open_dir(dir: &TempDir) -> OwnedFd {
    let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY;
    nix::fcntl::open(&dir.0, flags, nix::sys::stat::Mode::empty()).unwrap()
}

#[test]
fn uploads_arrive_with_their_modes_owned_by_the_job() {
    let h = Harness::start_with(userns);
    let mut c = h.client();
    let up = staged("upload");
    let file = |rel: &str, mode: u32, content: &str| {
        let p = up.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    file("src/main.sh", 0o755, "#!/bin/sh\necho from-upload\n");
    file("data/x.txt", 0o640, "hello");
    file("tool", 0o4755, "#!/bin/sh\n");
    std::fs::create_dir(up.0.join("empty")).unwrap();
    std::fs::set_permissions(up.0.join("empty"), std::fs::Permissions::from_mode(0o750)).unwrap();
    give_to_frontend(&up);
    let job = new_job_id();
    let script = "cd /work && find . -mindepth 1 -printf '%p %m %U:%G\\n' | sort; cat data/x.txt; echo; ./src/main.sh";
    let reply = c.start_upload(&job, sh(script), open_dir(&up).as_fd());
    assert!(
        matches!(reply, SpawnerReply::Started { .. }),
        "{reply:?}\n{}",
        h.log()
    );
    let o = c.finish_job(&job, T);
    assert_eq!(o.exit_code, 0, "{o:?}");
    let out = lines(&h.persistd.wait_drained(&job, T).stdout);
    let want = [
        "./data 755 65534:65534",
        "./data/x.txt 640 65534:65534",
        "./empty 750 65534:65534",
        "./src 755 65534:65534",
        "./src/main.sh 755 65534:65534",
        "./tool 755 65534:65534",
        "hello",
        "from-upload",
    ];
    assert_eq!(out, want, "setuid stripped, modes kept, owned by the job");
    h.finish();
}

#[test]
fn uploads_refuse_symlinks_and_what_does_not_fit() {
    let h = Harness::start_with(userns);
    let mut c = h.client();
    let refused = |c: &mut Client, dir: &TempDir, disk_mb: u64, words: &str| {
        let job = new_job_id();
        let mut spec = sh("true");
        spec.limits.disk_mb = disk_mb;
        match c.start_upload(&job, spec, open_dir(dir).as_fd()) {
            SpawnerReply::LaunchFailed { outcome } => {
                assert!(outcome.message.contains(words), "{outcome:?}")
            }
            other => panic!("{other:?}"),
        }
        let o = c.finish_job(&job, T);
        assert_eq!(o.reason, EndReason::LaunchFailed, "{o:?}");
        assert!(o.message.contains(words), "{o:?}");
    };
    let linked = staged("upload-link");
    std::fs::create_dir(linked.0.join("src")).unwrap();
    symlink("/etc/shadow", linked.0.join("src/x")).unwrap();
    give_to_frontend(&linked);
    refused(&mut c, &linked, 0, "upload src/x: symlinks are not allowed");

    let big = staged("upload-big");
    std::fs::write(big.0.join("blob"), vec![7u8; 3 << 20]).unwrap();
    refused(
        &mut c,
        &big,
        2,
        "uploads exceed the job's disk limit (2 MiB)",
    );

    let fifo = staged("upload-fifo");
    nix::unistd::mkfifo(
        &fifo.0.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    refused(
        &mut c,
        &fifo,
        0,
        "upload pipe: only regular files and directories",
    );

    // Not a directory at all.
    let plain = std::fs::File::open("/dev/null").unwrap();
    let job = new_job_id();
    match c.start_upload(&job, sh("true"), plain.as_fd()) {
        SpawnerReply::Error(e) => assert_eq!(e.kind, RemoteErrorKind::InvalidArgument, "{e:?}"),
        other => panic!("{other:?}"),
    }
    h.finish();
}

/// Opens `file` through `dir` as uid 65534 in a forked child; true when it could be read.
fn readable_as_nobody(dir: &OwnedFd, file: &std::ffi::CStr) -> bool {
    // SAFETY: the child only makes raw syscalls (setgroups, setresgid, setresuid, openat, read)
    // and `_exit`, as required after forking a multi-threaded process.
    match unsafe { libc::fork() } {
        // SAFETY: in the child: raw syscalls and `_exit` only, on fds and buffers it owns.
        0 => unsafe {
            let mut buf = [0u8; 64];
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(65534, 65534, 65534) != 0
                || libc::setresuid(65534, 65534, 65534) != 0
            {
                libc::_exit(2)
            }
            let fd = libc::openat(dir.as_raw_fd(), file.as_ptr(), libc::O_RDONLY);
            if fd < 0 {
                libc::_exit(10 + *libc::__errno_location())
            }
            libc::_exit(if libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) > 0 {
                0
            } else {
                3
            })
        },
        pid => {
            let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
            eprintln!("reader as nobody: {status:?} (exit 10 + errno when openat failed)");
            status == nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0)
        }
    }
}

#[test]
fn persistd_gets_the_job_s_cgroup_directories() {
    let h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    c.start_ok(&job, sh("sleep 2"));
    let end = std::time::Instant::now() + T;
    let dirs = loop {
        if let Some(d) = h.persistd.watches.lock().unwrap().remove(&job) {
            break d;
        }
        assert!(
            std::time::Instant::now() < end,
            "no Watch for {job}\n{}",
            h.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let kinds: Vec<CgroupDir> = dirs.iter().map(|(k, _)| *k).collect();
    let memory = match cgroup_mode() {
        CgroupMode::V2 => {
            assert_eq!(kinds, [CgroupDir::Unified]);
            (&dirs[0].1, c"memory.current")
        }
        CgroupMode::V1 => {
            for k in [
                CgroupDir::Cpu,
                CgroupDir::Cpuacct,
                CgroupDir::Memory,
                CgroupDir::Pids,
            ] {
                assert!(kinds.contains(&k), "{k:?} in {kinds:?}");
            }
            let (_, fd) = dirs.iter().find(|(k, _)| *k == CgroupDir::Memory).unwrap();
            (fd, c"memory.usage_in_bytes")
        }
    };
    assert!(
        readable_as_nobody(memory.0, memory.1),
        "{:?} through the fd",
        memory.1
    );
    drop(dirs);
    c.finish_job(&job, T);
    h.finish();
}
