//! Root tests of the job seccomp filter against the real kernel.
//!
//! Every rule of the table has a probe: a call that the rule must refuse, with arguments chosen
//! so that the *unfiltered* kernel refuses it differently (EINVAL, EFAULT, EBADF …) or lets it
//! through harmlessly. Each probe runs in its own forked child twice: without the filter (the
//! control) and with it. The rule holds when the filtered call fails with the rule's errno and
//! the control did not, so the refusal is the filter's doing and not the kernel's. The calls
//! are harmless as root too: invalid magic, flags or fds, in a throwaway child.

mod layers;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use joblet_spawner::launch::seccomp::{self, JobFilter, RULES};
use layers::*;

#[test]
#[ignore = "helper process started by the other tests"]
fn worker_process() {
    if let Ok(mode) = std::env::var(WORKER_ENV) {
        match mode.as_str() {
            "probes-control" => run_probes(false),
            "probes-filtered" => run_probes(true),
            "allowed" => allowed_behaviour(),
            other => panic!("unknown worker mode {other}"),
        }
    }
}

#[test]
fn every_rule_has_a_probe_and_every_probe_a_rule() {
    let rules: BTreeSet<&str> = RULES.iter().map(|r| r.name).collect();
    let probed: BTreeSet<&str> = probes()
        .iter()
        .map(|p| p.rule)
        .filter(|r| !r.starts_with("arch "))
        .collect();
    let unprobed: Vec<_> = rules.difference(&probed).collect();
    let unknown: Vec<_> = probed.difference(&rules).collect();
    assert!(unprobed.is_empty(), "rules no test exercises: {unprobed:?}");
    assert!(
        unknown.is_empty(),
        "probes for rules not in the table: {unknown:?}"
    );
}

#[test]
fn each_rule_refuses_its_calls_with_its_errno_and_only_because_of_the_filter() {
    if !is_root() {
        return;
    }
    let (control, filtered) = results();
    let mut failures = Vec::new();
    eprintln!("{:<36} {:<14} filtered", "rule", "control");
    for rule in RULES {
        let want = format!("{:?}", nix::errno::Errno::from_raw(rule.deny.errno()));
        let c = control.get(rule.name).map_or("missing", String::as_str);
        let f = filtered.get(rule.name).map_or("missing", String::as_str);
        eprintln!("{:<36} {c:<14} {f}", rule.name);
        if f != want {
            failures.push(format!("{}: filtered {f}, want {want}", rule.name));
        }
        if c == want || c == "missing" {
            failures.push(format!(
                "{}: the unfiltered call already gives {c}: the probe proves nothing",
                rule.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn calls_from_other_architectures_kill_the_process() {
    if !is_root() {
        return;
    }
    let (control, filtered) = results();
    for arch in ["arch i386", "arch x32"] {
        let (c, f) = (&control[arch], &filtered[arch]);
        eprintln!("{arch}: control {c}, filtered {f}");
        if c == "signal SIGSEGV" {
            // Without the 32-bit entry, `int 0x80` faults before seccomp sees it.
            eprintln!(
                "SKIPPED {arch}: the kernel has no 32-bit syscall entry (ia32_emulation off)"
            );
            continue;
        }
        assert_eq!(f, "signal SIGSYS", "{arch} must be killed by the filter");
        assert_ne!(c, "signal SIGSYS");
    }
}

#[test]
fn ordinary_programs_still_work_under_the_filter() {
    if !is_root() {
        return;
    }
    let out = run_worker("allowed", &[]);
    eprintln!("{out}");
    assert!(out.contains("ALLOWED all"), "{out}");
}

/// (control, filtered) outcome per probe, from one worker each (started once per test binary).
fn results() -> &'static (BTreeMap<String, String>, BTreeMap<String, String>) {
    static RESULTS: OnceLock<(BTreeMap<String, String>, BTreeMap<String, String>)> =
        OnceLock::new();
    RESULTS.get_or_init(|| {
        let parse = |out: String| {
            out.lines()
                .filter_map(|l| l.strip_prefix("PROBE\t"))
                .filter_map(|l| l.split_once('\t'))
                .map(|(rule, outcome)| (rule.to_owned(), outcome.to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        (
            parse(run_worker("probes-control", &[])),
            parse(run_worker("probes-filtered", &[])),
        )
    })
}

// ── Probes ──────────────────────────────────────────────────────────────────────────────────

enum Call {
    Syscall {
        nr: i64,
        args: [u64; 6],
    },
    /// getpid through the i386 entry.
    Int80Getpid,
}

struct Probe {
    rule: &'static str,
    call: Call,
}

/// -1 as an fd or pid argument.
const NONE: u64 = u64::MAX;
const BAD_FLAGS: u64 = 0xffff_ffff;
/// A user address that is never mapped: the kernel answers EFAULT.
const BAD_PTR: u64 = 1;
const X32_SYSCALL_BIT: i64 = 0x4000_0000;

fn sc(rule: &'static str, nr: i64, a: &[u64]) -> Probe {
    let mut args = [0u64; 6];
    args[..a.len()].copy_from_slice(a);
    Probe {
        rule,
        call: Call::Syscall { nr, args },
    }
}

fn c(v: libc::c_int) -> u64 {
    u64::try_from(v).expect("non-negative constant")
}

#[rustfmt::skip]
fn probes() -> Vec<Probe> {
    let no_module = c"joblet_no_such_module".as_ptr() as u64;
    let no_path = c"/joblet-no-such-path".as_ptr() as u64;
    // Flags the kernel refuses before looking at namespaces: CLONE_PARENT for unshare, and
    // CLONE_THREAD without CLONE_SIGHAND for clone. Unfiltered, both give EINVAL.
    let unshare = |rule, flag: libc::c_int| sc(rule, libc::SYS_unshare, &[c(flag) | c(libc::CLONE_PARENT)]);
    let clone = |rule, flag: libc::c_int| sc(rule, libc::SYS_clone, &[c(flag) | c(libc::CLONE_THREAD)]);
    vec![
        sc("init_module", libc::SYS_init_module, &[0, 0, 0]),                 // EFAULT/ENOSYS
        sc("finit_module", libc::SYS_finit_module, &[NONE, 0, 0]),           // EBADF
        sc("delete_module", libc::SYS_delete_module, &[no_module, c(libc::O_NONBLOCK)]), // ENOENT
        sc("kexec_load", libc::SYS_kexec_load, &[0, 0, 0, 0xdead_0000]),      // EINVAL (flags)
        sc("kexec_file_load", libc::SYS_kexec_file_load, &[NONE, NONE, 0, 0, 0xdead_0000]),
        sc("bpf", libc::SYS_bpf, &[9999, 0, 0]),                             // EINVAL (command)
        sc("perf_event_open", libc::SYS_perf_event_open, &[0, 0, NONE, NONE, 0]), // EFAULT
        sc("userfaultfd", libc::SYS_userfaultfd, &[BAD_FLAGS]),              // EINVAL
        sc("io_uring_setup", libc::SYS_io_uring_setup, &[0, 0]),             // EFAULT/EINVAL
        sc("io_uring_enter", libc::SYS_io_uring_enter, &[NONE, 0, 0, 0, 0, 0]), // EBADF
        sc("io_uring_register", libc::SYS_io_uring_register, &[NONE, 0, 0, 0]), // EBADF
        sc("keyctl", libc::SYS_keyctl, &[9999, 0, 0, 0, 0]),                 // EOPNOTSUPP
        sc("add_key", libc::SYS_add_key, &[0, 0, 0, 0, 0]),                  // EFAULT
        sc("request_key", libc::SYS_request_key, &[0, 0, 0, 0]),             // EFAULT
        sc("ptrace", libc::SYS_ptrace, &[0xffff, 1, 0, 0]),                  // ESRCH (not our tracee)
        sc("process_vm_readv", libc::SYS_process_vm_readv, &[1, 0, 0, 0, 0, 1]),  // EINVAL (flags)
        sc("process_vm_writev", libc::SYS_process_vm_writev, &[1, 0, 0, 0, 0, 1]),
        sc("kcmp", libc::SYS_kcmp, &[0, 0, 9999, 0, 0]),                     // ESRCH
        sc("pidfd_getfd", libc::SYS_pidfd_getfd, &[NONE, 0, 0]),             // EBADF
        sc("mount", libc::SYS_mount, &[0, 0, 0, 0, 0]),                      // EFAULT
        sc("umount2", libc::SYS_umount2, &[no_path, 0xffff_0000]),           // EINVAL (flags)
        sc("pivot_root", libc::SYS_pivot_root, &[0, 0]),                     // EFAULT
        sc("chroot", libc::SYS_chroot, &[0]),                                // EFAULT
        sc("open_tree", libc::SYS_open_tree, &[NONE, 0, BAD_FLAGS]),         // EINVAL
        sc("move_mount", libc::SYS_move_mount, &[NONE, 0, NONE, 0, BAD_FLAGS]),
        sc("fsopen", libc::SYS_fsopen, &[0, BAD_FLAGS]),
        sc("fsconfig", libc::SYS_fsconfig, &[NONE, 0, 0, 0, 0]),
        sc("fsmount", libc::SYS_fsmount, &[NONE, BAD_FLAGS, 0]),
        sc("fspick", libc::SYS_fspick, &[NONE, 0, BAD_FLAGS]),
        sc("mount_setattr", libc::SYS_mount_setattr, &[NONE, 0, BAD_FLAGS, 0, 0]),
        sc("name_to_handle_at", libc::SYS_name_to_handle_at, &[NONE, 0, 0, 0, BAD_FLAGS]),
        sc("open_by_handle_at", libc::SYS_open_by_handle_at, &[NONE, 0, 0]),
        sc("quotactl", libc::SYS_quotactl, &[BAD_FLAGS, 0, 0, 0]),
        sc("quotactl_fd", libc::SYS_quotactl_fd, &[NONE, 0, 0, 0]),
        sc("setns", libc::SYS_setns, &[NONE, 0]),                            // EBADF
        unshare("unshare CLONE_NEWUSER", libc::CLONE_NEWUSER),
        unshare("unshare CLONE_NEWNS", libc::CLONE_NEWNS),
        unshare("unshare CLONE_NEWNET", libc::CLONE_NEWNET),
        unshare("unshare CLONE_NEWPID", libc::CLONE_NEWPID),
        unshare("unshare CLONE_NEWIPC", libc::CLONE_NEWIPC),
        unshare("unshare CLONE_NEWUTS", libc::CLONE_NEWUTS),
        unshare("unshare CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP),
        unshare("unshare CLONE_NEWTIME", libc::CLONE_NEWTIME),
        clone("clone CLONE_NEWUSER", libc::CLONE_NEWUSER),
        clone("clone CLONE_NEWNS", libc::CLONE_NEWNS),
        clone("clone CLONE_NEWNET", libc::CLONE_NEWNET),
        clone("clone CLONE_NEWPID", libc::CLONE_NEWPID),
        clone("clone CLONE_NEWIPC", libc::CLONE_NEWIPC),
        clone("clone CLONE_NEWUTS", libc::CLONE_NEWUTS),
        clone("clone CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP),
        sc("clone3", libc::SYS_clone3, &[0, 0]),                             // EINVAL (size)
        sc("swapon", libc::SYS_swapon, &[0, 0]),                             // EFAULT
        sc("swapoff", libc::SYS_swapoff, &[0]),
        sc("reboot", libc::SYS_reboot, &[0, 0, 0, 0]),                       // EINVAL (magic)
        sc("syslog", libc::SYS_syslog, &[9999, 0, 0]),                       // EINVAL
        sc("acct", libc::SYS_acct, &[BAD_PTR]),                              // EFAULT (never NULL: that switches accounting off)
        sc("settimeofday", libc::SYS_settimeofday, &[BAD_PTR, 0]),           // EFAULT
        sc("clock_settime", libc::SYS_clock_settime, &[9999, BAD_PTR]),      // EINVAL (clock)
        sc("clock_adjtime", libc::SYS_clock_adjtime, &[9999, 0]),
        sc("adjtimex", libc::SYS_adjtimex, &[0]),                            // EFAULT
        sc("iopl", libc::SYS_iopl, &[9]),                                    // EINVAL (level > 3)
        sc("ioperm", libc::SYS_ioperm, &[0x10000, 1, 0]),                    // EINVAL (range)
        sc("lookup_dcookie", libc::SYS_lookup_dcookie, &[0, 0, 0]),          // ENOSYS on 6.10+
        sc("vhangup", libc::SYS_vhangup, &[]),                               // 0: no terminal after setsid
        sc("fanotify_init", libc::SYS_fanotify_init, &[BAD_FLAGS, 0]),       // EINVAL
        sc("personality", libc::SYS_personality, &[0x0040_0000]),            // READ_IMPLIES_EXEC: succeeds
        sc("ioctl TIOCSTI", libc::SYS_ioctl, &[NONE, libc::TIOCSTI, BAD_PTR]),   // EBADF
        sc("ioctl TIOCLINUX", libc::SYS_ioctl, &[NONE, libc::TIOCLINUX, BAD_PTR]),
        // An invalid socket type is refused (EINVAL) before the family's module is looked up.
        sc("socket AF_NETLINK NETLINK_AUDIT", libc::SYS_socket, &[c(libc::AF_NETLINK), 9999, 9]),
        sc("socket AF_VSOCK", libc::SYS_socket, &[c(libc::AF_VSOCK), 9999, 0]),
        Probe { rule: "arch i386", call: Call::Int80Getpid },
        sc("arch x32", X32_SYSCALL_BIT | libc::SYS_getpid, &[]),
    ]
}

fn run_probes(filtered: bool) {
    let filter = seccomp::job_filter().expect("compile the filter");
    for probe in probes() {
        println!(
            "PROBE\t{}\t{}",
            probe.rule,
            run_probe(&probe, filtered.then_some(&filter))
        );
    }
}

/// Runs the probe in a forked child, filtered or not, and says how it ended.
fn run_probe(probe: &Probe, filter: Option<&JobFilter>) -> String {
    // SAFETY: the child runs only raw syscalls (setsid, setrlimit, prctl, seccomp, the probe)
    // and `_exit`: async-signal-safe and allocation-free, as required after forking a
    // multi-threaded process.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        probe_child(probe, filter);
    }
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).expect("waitpid");
    match status {
        nix::sys::wait::WaitStatus::Exited(_, 200) => "ok".to_owned(),
        nix::sys::wait::WaitStatus::Exited(_, 250) => "install failed".to_owned(),
        nix::sys::wait::WaitStatus::Exited(_, n) => format!("{:?}", nix::errno::Errno::from_raw(n)),
        nix::sys::wait::WaitStatus::Signaled(_, sig, _) => format!("signal {sig:?}"),
        other => format!("{other:?}"),
    }
}

/// Exit status: 200 = the call succeeded, 250 = the filter could not be installed, else errno.
fn probe_child(probe: &Probe, filter: Option<&JobFilter>) -> ! {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setsid takes no arguments (vhangup then finds no terminal to hang up); setrlimit
    // reads a live struct (no core file when the filter kills the child).
    unsafe {
        libc::setsid();
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    }
    if let Some(f) = filter
        && seccomp::install(f).is_err()
    {
        exit(250);
    }
    let ret = match probe.call {
        Call::Syscall { nr, args } => sys(nr, args),
        Call::Int80Getpid => int80_getpid(),
    };
    if ret >= 0 {
        exit(200);
    }
    exit(nix::errno::Errno::last_raw().clamp(1, 199))
}

fn exit(code: i32) -> ! {
    // SAFETY: ends the forked child at once, without running the parent's destructors.
    unsafe { libc::_exit(code) }
}

fn sys(nr: i64, a: [u64; 6]) -> i64 {
    // SAFETY: every probe argument is an integer, NULL, the never-mapped address 1, or a
    // pointer to a static C string: the kernel checks user pointers and answers EFAULT rather
    // than touching our memory, and it never writes through the string pointers in these calls.
    // Whatever a call does happens in a throwaway child.
    unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

fn int80_getpid() -> i64 {
    let mut rax: i64 = 20; // getpid in the i386 table
    // SAFETY: `int 0x80` enters the 32-bit syscall path with getpid, which takes no arguments
    // and only writes rax; r8-r11 are declared clobbered because that entry does not keep them.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inout("rax") rax,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack)
        );
    }
    rax
}

// ── What must keep working ──────────────────────────────────────────────────────────────────

/// Installs the filter on this (the worker's test) thread and checks ordinary behaviour.
fn allowed_behaviour() {
    let filter = seccomp::job_filter().expect("compile the filter");
    seccomp::install(&filter).expect("install the filter");
    let status = std::fs::read_to_string("/proc/thread-self/status").expect("status");
    assert!(status.contains("Seccomp:\t2\n"), "filter mode on: {status}");
    assert!(
        status.contains("Seccomp_filters:\t1\n"),
        "one program: {status}"
    );
    assert!(status.contains("NoNewPrivs:\t1\n"));
    let ok = |what: &str| println!("ALLOWED {what}");

    // fork(), and the child inherits the filter.
    // SAFETY: the child only makes raw syscalls and `_exit`s.
    match unsafe { libc::fork() } {
        0 => {
            let r = sys(libc::SYS_kcmp, [0, 0, 9999, 0, 0, 0]);
            let e = nix::errno::Errno::last_raw();
            exit(if r < 0 && e == libc::EPERM { 7 } else { 1 });
        }
        pid => assert_eq!(wait_code(pid), 7, "forked child inherits the filter"),
    }
    ok("fork (child filtered too)");

    // clone(2) without namespace flags, as fork() and older libcs do.
    let pid = sys(libc::SYS_clone, [c(libc::SIGCHLD), 0, 0, 0, 0, 0]);
    if pid == 0 {
        exit(9);
    }
    assert!(pid > 0, "plain clone: {}", std::io::Error::last_os_error());
    assert_eq!(wait_code(i32::try_from(pid).unwrap()), 9);
    ok("clone(SIGCHLD)");

    // Threads: glibc tries clone3, gets ENOSYS, falls back to clone(CLONE_THREAD|…).
    let sum: u64 = (0..4u64)
        .map(|i| std::thread::spawn(move || i * 10))
        .map(|h| h.join().expect("thread"))
        .sum();
    assert_eq!(sum, 60);
    ok("threads");

    // unshare of non-namespace state.
    assert_eq!(
        sys(libc::SYS_unshare, [c(libc::CLONE_FILES), 0, 0, 0, 0, 0]),
        0
    );
    ok("unshare(CLONE_FILES)");

    // personality: query and default.
    assert!(sys(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]) >= 0);
    assert!(sys(libc::SYS_personality, [0, 0, 0, 0, 0, 0]) >= 0);
    ok("personality(0xffffffff), personality(PER_LINUX)");

    // File I/O.
    let dir = TempDir::new("seccomp-io");
    let f = dir.path().join("data");
    std::fs::write(&f, b"hello").expect("write");
    assert_eq!(std::fs::read(&f).expect("read"), b"hello");
    std::fs::rename(&f, dir.path().join("moved")).expect("rename");
    ok("file I/O");

    // Sockets that are not refused.
    for (family, ty, proto) in [
        (libc::AF_UNIX, libc::SOCK_STREAM, 0),
        (libc::AF_INET, libc::SOCK_DGRAM, 0),
        (libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE),
    ] {
        let fd = sys(libc::SYS_socket, [c(family), c(ty), c(proto), 0, 0, 0]);
        assert!(
            fd >= 0,
            "socket({family}, {ty}, {proto}): {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
        unsafe { libc::close(i32::try_from(fd).unwrap()) };
    }
    ok("socket AF_UNIX, AF_INET, AF_NETLINK/NETLINK_ROUTE");

    // ioctl other than TIOCSTI/TIOCLINUX reaches the kernel.
    let (r, w) = nix::unistd::pipe().expect("pipe");
    nix::unistd::write(&w, b"abc").expect("write pipe");
    let mut n: libc::c_int = 0;
    let rfd = std::os::fd::AsRawFd::as_raw_fd(&r);
    let ret = sys(
        libc::SYS_ioctl,
        [c(rfd), libc::FIONREAD, (&raw mut n) as u64, 0, 0, 0],
    );
    assert_eq!((ret, n), (0, 3), "FIONREAD");
    let ret = sys(libc::SYS_ioctl, [c(rfd), libc::TCGETS, BAD_PTR, 0, 0, 0]);
    assert_eq!(
        (ret, nix::errno::Errno::last()),
        (-1, nix::errno::Errno::ENOTTY)
    );
    ok("ioctl FIONREAD, TCGETS");

    // execve, and a shell that forks a pipeline.
    let st = std::process::Command::new("/bin/true")
        .status()
        .expect("spawn /bin/true");
    assert!(st.success());
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", "echo hi | cat"])
        .output()
        .expect("spawn sh");
    assert_eq!(out.stdout, b"hi\n");
    ok("execve /bin/true, sh pipeline");
    ok("all");
}

fn wait_code(pid: i32) -> i32 {
    match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).expect("waitpid") {
        nix::sys::wait::WaitStatus::Exited(_, code) => code,
        other => panic!("child ended as {other:?}"),
    }
}
