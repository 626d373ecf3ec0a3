//! The job's `/proc`: the kernel's secrets masked, its tunables read-only, sysrq out of
//! reach. Write attempts only open the files, never write, so a hole changes nothing.

use std::path::Path;

use joblet_tests::hostile::{HostFile, assert_lines, line_value, python_job};
use joblet_tests::{System, require_job_python, require_root};

use super::common::{Daemons, assert_refused, probe};

/// Files runc and Docker mask, and the directories they cover with an empty tmpfs.
const MASKED_FILES: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/key-users",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/sysrq-trigger",
    "/proc/latency_stats",
    "/proc/kallsyms",
    "/proc/kmsg",
    "/proc/config.gz",
];
const MASKED_DIRS: &[&str] = &["/proc/acpi", "/proc/scsi", "/proc/asound"];

/// Case: `/proc/kcore`, `/proc/kallsyms`, `/proc/keys`, `/proc/timer_list` and the rest
/// read as empty (or cannot be read) inside a job; `/proc/acpi` & co. list nothing.
#[test]
fn sensitive_proc_files_are_masked() {
    require_root!();
    require_job_python!();
    let on_host: Vec<&str> = MASKED_FILES
        .iter()
        .chain(MASKED_DIRS)
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect();
    eprintln!("present on this host: {on_host:?}");
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let body = format!(
        r#"
for p in {files:?}:
    if not os.path.lexists(p):
        print("MASK %s=ABSENT" % p)
        continue
    try:
        with open(p, "rb") as f:
            data = f.read(4096)
        print("MASK %s=%s" % (p, "EMPTY" if not data else "READABLE"))
    except OSError as e:
        print("MASK %s=DENIED" % p)
for d in {dirs:?}:
    if not os.path.isdir(d):
        print("MASK %s=ABSENT" % d)
        continue
    try:
        print("MASK %s=%s" % (d, "EMPTY" if not os.listdir(d) else "LISTED"))
    except OSError:
        print("MASK %s=DENIED" % d)
"#,
        files = MASKED_FILES,
        dirs = MASKED_DIRS
    );
    let out = probe(&sys, &python_job(&body));
    for p in MASKED_FILES.iter().chain(MASKED_DIRS) {
        let v = line_value(&out, &format!("MASK {p}"))
            .unwrap_or_else(|| panic!("no verdict for {p}:\n{out}"));
        assert!(
            ["ABSENT", "EMPTY", "DENIED"].contains(&v),
            "{p} is {v} inside a job:\n{out}"
        );
    }
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Host kernel tunables a job would love to change; content only (proc has no mtime).
const TUNABLES: &[&str] = &[
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/modprobe",
    "/proc/sys/kernel/hostname",
    "/proc/sys/vm/overcommit_memory",
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/kernel/sysrq",
];

/// Case: write `/proc/sys/*` (`core_pattern`, `modprobe`, …): `/proc/sys` is a read-only
/// mount and each open for writing fails; the host's values stay.
#[test]
fn proc_sys_is_read_only() {
    require_root!();
    require_job_python!();
    let before: Vec<(&str, String)> = TUNABLES
        .iter()
        .map(|p| (*p, std::fs::read_to_string(p).unwrap_or_default()))
        .collect();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let body = format!(
        r#"
for p in {tunables:?}:
    if os.path.exists(p):
        attempt("OPEN_W " + p, lambda: os.open(p, os.O_WRONLY))
mounts = [l.split() for l in open("/proc/self/mountinfo")]
sys_mount = [m for m in mounts if m[4] == "/proc/sys"]
print("PROC_SYS_MOUNT=" + (sys_mount[-1][5].split(",")[0] if sys_mount else "NONE"))
"#,
        tunables = TUNABLES
    );
    let out = probe(&sys, &python_job(&body));
    for p in TUNABLES.iter().filter(|p| Path::new(p).exists()) {
        assert_refused(&out, &format!("OPEN_W {p}"), &["EROFS", "EACCES", "EPERM"]);
    }
    assert_lines(&out, &["PROC_SYS_MOUNT=ro"]);
    for (p, v) in &before {
        assert_eq!(
            &std::fs::read_to_string(p).unwrap_or_default(),
            v,
            "host tunable {p} changed"
        );
    }
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: `/proc/sysrq-trigger` (crash, reboot or sync the host with one byte).
#[test]
fn sysrq_trigger_is_out_of_reach() {
    require_root!();
    require_job_python!();
    if !Path::new("/proc/sysrq-trigger").exists() {
        eprintln!("NOTE: this kernel has no /proc/sysrq-trigger; the job must not have one either");
    }
    let sysrq = HostFile::snap("/proc/sys/kernel/sysrq");
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let out = probe(
        &sys,
        &python_job(
            r#"
attempt("SYSRQ_OPEN_W", lambda: os.open("/proc/sysrq-trigger", os.O_WRONLY))
attempt("SYSRQ_SYSCTL_OPEN_W", lambda: os.open("/proc/sys/kernel/sysrq", os.O_WRONLY))
"#,
        ),
    );
    assert_refused(
        &out,
        "SYSRQ_OPEN_W",
        &["ENOENT", "EROFS", "EACCES", "EPERM"],
    );
    assert_refused(
        &out,
        "SYSRQ_SYSCTL_OPEN_W",
        &["ENOENT", "EROFS", "EACCES", "EPERM"],
    );
    sysrq.assert_unchanged();
    daemons.assert_intact(&sys);
    sys.stop();
}
