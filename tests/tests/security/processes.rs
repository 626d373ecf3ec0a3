//! Host processes, setuid binaries, cgroup files and rlimits.

use joblet_tests::cgroupfs;
use joblet_tests::hostile::{
    HostFile, Sentinel, assert_lines, host_mounts_containing, line_value, nonce, python_job, sh_job,
};
use joblet_tests::tail::LogTail;
use joblet_tests::{System, config, require_job_python, require_root};

use super::common::{Daemons, JOB_UID, WAIT, assert_refused, probe};

/// Case: list host processes: a host process running as the job's own uid is invisible,
/// by pid, by its command line, and to `ps`.
#[test]
fn host_processes_are_invisible() {
    require_root!();
    let mut sentinel = Sentinel::spawn(JOB_UID);
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    // The marker is searched as a regular expression that does not contain it literally,
    // so the job's own command lines (which hold the pattern) do not match.
    let pattern = sentinel.marker.replace('.', "[.]");
    let script = format!(
        "[ -e /proc/{pid} ] && echo SENTINEL_PID=SEEN || echo SENTINEL_PID=ABSENT
         grep -l '{pattern}' /proc/[0-9]*/cmdline 2>/dev/null | grep -q . && echo SENTINEL_CMDLINE=SEEN || echo SENTINEL_CMDLINE=ABSENT
         ps -e -o args= | grep -q '{pattern}' && echo SENTINEL_PS=SEEN || echo SENTINEL_PS=ABSENT
         [ -e /proc/{spawner} ] && echo SPAWNER_PID=SEEN || echo SPAWNER_PID=ABSENT
         echo NPROC=$(ls -d /proc/[0-9]* | wc -l)",
        pid = sentinel.pid(),
        spawner = daemons.pid("joblet-spawner"),
    );
    let out = probe(&sys, &sh_job(&script));
    assert_lines(
        &out,
        &[
            "SENTINEL_PID=ABSENT",
            "SENTINEL_CMDLINE=ABSENT",
            "SENTINEL_PS=ABSENT",
            "SPAWNER_PID=ABSENT",
        ],
    );
    let n: u32 = line_value(&out, "NPROC")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX);
    assert!(n <= 4, "the job sees {n} processes:\n{out}");
    assert!(sentinel.alive());
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: signal host processes by pid (the sentinel running as the job's uid, the
/// daemons), with `kill` and `pidfd_open`.
#[test]
fn host_processes_cannot_be_signalled() {
    require_root!();
    require_job_python!();
    let mut sentinel = Sentinel::spawn(JOB_UID);
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let body = format!(
        r#"
import signal
for name, pid in [("SENTINEL", {s}), ("SPAWNER", {sp}), ("API", {api}), ("SUPERVISOR", {sup})]:
    attempt("KILL_" + name, lambda: os.kill(pid, signal.SIGKILL))
    sc("PIDFD_" + name, 434, pid, 0)
r = os.system("kill -9 {s} 2>/dev/null")
print("KILL_CMD=" + ("OK" if r == 0 else "FAILED"))
"#,
        s = sentinel.pid(),
        sp = daemons.pid("joblet-spawner"),
        api = daemons.pid("joblet-api"),
        sup = daemons.pid("joblet"),
    );
    let out = probe(&sys, &python_job(&body));
    let mut want = vec!["KILL_CMD=FAILED".to_string()];
    for name in ["SENTINEL", "SPAWNER", "API", "SUPERVISOR"] {
        want.push(format!("KILL_{name}=ESRCH"));
        want.push(format!("PIDFD_{name}=ESRCH"));
    }
    assert_lines(&out, &want.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(sentinel.alive(), "the host process was killed");
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: use the setuid binaries of the allowed mounts (`su`, `newgrp`, `passwd`,
/// `chfn`, `gpasswd`, `mount`): they run without privilege and change nothing.
#[test]
fn setuid_binaries_gain_no_privilege() {
    require_root!();
    let tag = nonce();
    let files = ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"].map(HostFile::snap);
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let script = format!(
        "for b in /usr/bin/su /usr/bin/newgrp /usr/bin/passwd /usr/bin/mount; do
           [ -u $b ] && echo \"SETUID_BIT $b=yes\" || echo \"SETUID_BIT $b=no\"
         done
         grep NoNewPrivs /proc/self/status | tr -d '\\t' | sed 's/:/=/'
         su -c 'id -u' root </dev/null >/tmp/su.out 2>&1; echo SU_RC=$?; grep -qx 0 /tmp/su.out && echo SU_ROOT=yes || echo SU_ROOT=no
         newgrp root </dev/null >/tmp/ng.out 2>&1; echo NEWGRP_RC=$?
         passwd -d nobody </dev/null >/dev/null 2>&1; echo PASSWD_RC=$?
         chfn -f evil nobody </dev/null >/dev/null 2>&1; echo CHFN_RC=$?
         gpasswd -a nobody root </dev/null >/dev/null 2>&1; echo GPASSWD_RC=$?
         mount -t tmpfs evil-{tag} /tmp </dev/null >/dev/null 2>&1; echo MOUNT_RC=$?
         grep -c evil-{tag} /proc/self/mountinfo | sed 's/^/OWN_MOUNTS=/'"
    );
    let out = probe(&sys, &sh_job(&script));
    assert_lines(
        &out,
        &[
            "SETUID_BIT /usr/bin/su=yes",
            "SETUID_BIT /usr/bin/mount=yes",
            "NoNewPrivs=1",
            "SU_ROOT=no",
            "OWN_MOUNTS=0",
        ],
    );
    for rc in [
        "SU_RC",
        "NEWGRP_RC",
        "PASSWD_RC",
        "CHFN_RC",
        "GPASSWD_RC",
        "MOUNT_RC",
    ] {
        let v = line_value(&out, rc).unwrap_or("missing");
        assert_ne!(v, "0", "{rc}: the setuid binary succeeded:\n{out}");
        assert_ne!(v, "missing", "no {rc}:\n{out}");
    }
    for f in &files {
        f.assert_unchanged();
    }
    assert!(host_mounts_containing(&tag).is_empty());
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: write to cgroup files: `/sys/fs/cgroup` is absent, `/proc/self/cgroup` names only
/// the job's own root, and the host's limit files keep their values after the attempts.
#[test]
fn cgroup_files_are_out_of_reach_and_keep_their_values() {
    require_root!();
    require_job_python!();
    let sys = System::start_with(|c| config::set(c, "defaultPidsLimit", "77"));
    let daemons = Daemons::snap(&sys);
    let body = r#"
print("SYS_FS_CGROUP=" + ("PRESENT" if os.path.exists("/sys/fs/cgroup") else "ABSENT"))
paths = [l.split(":", 2)[2] for l in open("/proc/self/cgroup").read().split()]
print("CGROUP_PATHS=" + ",".join(sorted(set(paths))))
for f in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max",
          "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max",
          "/sys/fs/cgroup/cgroup.procs"]:
    attempt("OPEN_W " + f, lambda: os.open(f, os.O_WRONLY))
print("READY", flush=True)
import time
time.sleep(600)
"#;
    let job = sys.start_job(&["--max-memory=64"], &python_job(body));
    let mut tail = LogTail::start(&sys, &job);
    let out = tail.wait_for("READY", WAIT);
    assert_lines(&out, &["SYS_FS_CGROUP=ABSENT", "CGROUP_PATHS=/"]);
    for f in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/pids.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/pids/pids.max",
        "/sys/fs/cgroup/cgroup.procs",
    ] {
        assert_refused(&out, &format!("OPEN_W {f}"), &["ENOENT"]);
    }
    assert_eq!(cgroupfs::memory_limit(&sys, &job), Some(64 << 20));
    assert_eq!(
        cgroupfs::read(&sys, &job, "pids.max").as_deref(),
        Some("77")
    );
    let procs = cgroupfs::procs(&sys, &job);
    assert!(!procs.is_empty(), "no process in the job's cgroup");
    for pid in procs {
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        assert!(
            cg.contains(&format!("job-{}", job.id)),
            "job process {pid} left its cgroup:\n{cg}"
        );
    }
    sys.rnx(&["job", "stop", &job.id]).expect_ok("stop");
    sys.wait_done(&job, WAIT);
    drop(tail);
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: raise a limit: rlimits above their hard limit (`prlimit64`, `prlimit`,
/// `ulimit -n`); the hard limit and the cgroup limits stay.
#[test]
fn limits_cannot_be_raised() {
    require_root!();
    require_job_python!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let body = r#"
import resource
for name, res in [("NOFILE", resource.RLIMIT_NOFILE), ("NPROC", resource.RLIMIT_NPROC),
                  ("MEMLOCK", resource.RLIMIT_MEMLOCK), ("STACK", resource.RLIMIT_STACK)]:
    soft, hard = resource.getrlimit(res)
    if hard == resource.RLIM_INFINITY:
        print("RAISE_%s=UNLIMITED" % name)
        continue
    new = (ctypes.c_uint64 * 2)(hard + 1, hard + 1)
    sc("RAISE_" + name, 302, 0, res, new, 0)
    print("HARD_%s_AFTER=%s" % (name, "same" if resource.getrlimit(res)[1] == hard else "raised"))
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
r = os.system("prlimit --pid $$ --nofile=%d:%d >/dev/null 2>&1" % (hard * 4, hard * 4))
print("PRLIMIT_CMD=" + ("OK" if r == 0 else "FAILED"))
r = os.system("sh -c 'ulimit -n %d' >/dev/null 2>&1" % (hard * 4))
print("ULIMIT_CMD=" + ("OK" if r == 0 else "FAILED"))
print("NOFILE_HARD=%d" % hard)
print("READY", flush=True)
import time
time.sleep(600)
"#;
    let job = sys.start_job(&["--max-memory=64"], &python_job(body));
    let mut tail = LogTail::start(&sys, &job);
    let out = tail.wait_for("READY", WAIT);
    for name in ["NOFILE", "NPROC", "MEMLOCK"] {
        assert_refused(&out, &format!("RAISE_{name}"), &["EPERM"]);
        assert_lines(&out, &[&format!("HARD_{name}_AFTER=same")]);
    }
    assert_lines(&out, &["PRLIMIT_CMD=FAILED", "ULIMIT_CMD=FAILED"]);
    let hard = line_value(&out, "NOFILE_HARD").expect("NOFILE_HARD");
    for pid in cgroupfs::procs(&sys, &job) {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or_default()
            .to_owned();
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.get(4).copied(), Some(hard), "{pid}: {line}");
    }
    assert_eq!(cgroupfs::memory_limit(&sys, &job), Some(64 << 20));
    sys.rnx(&["job", "stop", &job.id]).expect_ok("stop");
    sys.wait_done(&job, WAIT);
    drop(tail);
    daemons.assert_intact(&sys);
    sys.stop();
}
