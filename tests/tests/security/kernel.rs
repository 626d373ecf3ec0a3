//! Kernel-level calls a job must not make: modules, kexec and reboot, bpf, perf, keys,
//! userfaultfd, io_uring, the clock, the hostname. Each call is one the seccomp filter
//! refuses with EPERM; the arguments are harmless, so a hole changes nothing on the host.

use std::time::{Instant, SystemTime};

use joblet_tests::hostile::{HostFile, assert_lines, nonce, python_job, sh_job};
use joblet_tests::{System, require_job_python, require_root};

use super::common::{Daemons, probe};

/// Runs `body` under Python in a job and checks that each tag reports `EPERM`.
fn all_eperm(sys: &System, body: &str, tags: &[&str]) -> String {
    let out = probe(sys, &python_job(body));
    let want: Vec<String> = tags.iter().map(|t| format!("{t}=EPERM")).collect();
    assert_lines(&out, &want.iter().map(String::as_str).collect::<Vec<_>>());
    out
}

/// Case: load a module (`init_module`, `finit_module`, `insmod`) or remove one.
#[test]
fn kernel_modules_cannot_be_loaded_or_removed() {
    require_root!();
    require_job_python!();
    let modules = HostFile::snap("/proc/modules");
    if !modules.existed() {
        eprintln!("NOTE: this kernel has no module support (/proc/modules absent)");
    }
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let out = all_eperm(
        &sys,
        r#"
image = ctypes.create_string_buffer(b"\x7fELF" + b"\0" * 60)
sc("INIT_MODULE", 175, image, 64, b"")
fd = os.open("/usr/bin/sh", os.O_RDONLY)
sc("FINIT_MODULE", 313, fd, b"", 0)
sc("DELETE_MODULE", 176, b"joblet_no_such_module", 0)
r = os.system("insmod /usr/bin/sh 2>/dev/null")
print("INSMOD=" + ("OK" if r == 0 else "FAILED"))
"#,
        &["INIT_MODULE", "FINIT_MODULE", "DELETE_MODULE"],
    );
    assert_lines(&out, &["INSMOD=FAILED"]);
    modules.assert_unchanged();
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: `kexec_load`, `kexec_file_load` (unload requests) and `reboot` (bad magic).
#[test]
fn kexec_and_reboot_are_refused() {
    require_root!();
    require_job_python!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    all_eperm(
        &sys,
        r#"
sc("KEXEC_LOAD", 246, 0, 0, 0, 0)
sc("KEXEC_FILE_LOAD", 320, -1, -1, 0, b"", 1)
sc("REBOOT", 169, 0, 0, 0, 0)
"#,
        &["KEXEC_LOAD", "KEXEC_FILE_LOAD", "REBOOT"],
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: `bpf()`: an array map and a two-instruction socket filter program.
#[test]
fn bpf_is_refused() {
    require_root!();
    require_job_python!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    all_eperm(
        &sys,
        r#"
attr = ctypes.create_string_buffer(128)
ctypes.memmove(attr, (ctypes.c_uint32 * 4)(2, 4, 4, 1), 16)
sc("BPF_MAP_CREATE", 321, 0, attr, 128)
insns = (ctypes.c_uint64 * 2)(0xb7, 0x95)  # r0 = 0; exit
license = ctypes.create_string_buffer(b"GPL")
prog = ctypes.create_string_buffer(128)
ctypes.memmove(prog, (ctypes.c_uint32 * 2)(1, 2), 8)
ctypes.memmove(ctypes.byref(prog, 8), (ctypes.c_uint64 * 2)(ctypes.addressof(insns), ctypes.addressof(license)), 16)
sc("BPF_PROG_LOAD", 321, 5, prog, 128)
"#,
        &["BPF_MAP_CREATE", "BPF_PROG_LOAD"],
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: `perf_event_open` on the job itself, user space only (allowed to any user by
/// `perf_event_paranoid` 2, so only the filter stops it).
#[test]
fn perf_event_open_is_refused() {
    require_root!();
    require_job_python!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    all_eperm(
        &sys,
        r#"
attr = ctypes.create_string_buffer(128)
ctypes.memmove(attr, (ctypes.c_uint32 * 2)(1, 128), 8)           # software, size
ctypes.memmove(ctypes.byref(attr, 40), (ctypes.c_uint64 * 1)(1 | 32 | 64), 8)  # disabled, no kernel, no hv
sc("PERF_EVENT_OPEN", 298, attr, 0, -1, -1, 8)
"#,
        &["PERF_EVENT_OPEN"],
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: the kernel keyring (`add_key`, `keyctl`, `request_key`).
#[test]
fn the_kernel_keyring_is_refused() {
    require_root!();
    require_job_python!();
    let tag = nonce();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    all_eperm(
        &sys,
        &format!(
            r#"
desc = b"joblet-{tag}"
sc("ADD_KEY", 248, b"user", desc, b"secret", 6, -2)
sc("KEYCTL_JOIN", 250, 1, desc, 0, 0, 0)
sc("REQUEST_KEY", 249, b"user", desc, 0, -2)
"#
        ),
        &["ADD_KEY", "KEYCTL_JOIN", "REQUEST_KEY"],
    );
    let keys = std::fs::read_to_string("/proc/keys").unwrap_or_default();
    assert!(
        !keys.contains(&tag),
        "the job's key is in the host's /proc/keys"
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: `userfaultfd` (user-mode faults only, which any user may otherwise ask for).
#[test]
fn userfaultfd_is_refused() {
    require_root!();
    require_job_python!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    all_eperm(
        &sys,
        r#"
sc("USERFAULTFD", 323, 1 | 0o2000000)
"#,
        &["USERFAULTFD"],
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: io_uring (setup, enter, register), a frequent source of kernel escapes.
#[test]
fn io_uring_is_refused() {
    require_root!();
    require_job_python!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    all_eperm(
        &sys,
        r#"
params = ctypes.create_string_buffer(120)
sc("IO_URING_SETUP", 425, 4, params)
sc("IO_URING_ENTER", 426, 0, 0, 0, 0, 0, 0)
sc("IO_URING_REGISTER", 427, 0, 0, 0, 0)
"#,
        &["IO_URING_SETUP", "IO_URING_ENTER", "IO_URING_REGISTER"],
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: set the clock (`clock_settime` to the current time, `settimeofday` with no
/// arguments, `date -s`); the host's clock keeps its pace.
#[test]
fn the_clock_cannot_be_set() {
    require_root!();
    require_job_python!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let (wall, mono) = (SystemTime::now(), Instant::now());
    let out = all_eperm(
        &sys,
        r#"
import time
now = time.clock_gettime_ns(time.CLOCK_REALTIME)
ts = (ctypes.c_long * 2)(now // 10**9, now % 10**9)
sc("CLOCK_SETTIME", 227, 0, ts)
sc("SETTIMEOFDAY", 164, 0, 0)
r = os.system("date -s @%d >/dev/null 2>&1" % (now // 10**9))
print("DATE_S=" + ("OK" if r == 0 else "FAILED"))
"#,
        &["CLOCK_SETTIME", "SETTIMEOFDAY"],
    );
    assert_lines(&out, &["DATE_S=FAILED"]);
    let wall_elapsed = wall.elapsed().expect("clock went backwards");
    let drift = wall_elapsed.as_secs_f64() - mono.elapsed().as_secs_f64();
    assert!(
        drift.abs() < 1.0,
        "the host's wall clock moved by {drift:.3} s"
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: `sethostname` after start (a job's name is its own; the host's stays).
#[test]
fn the_hostname_cannot_be_changed_and_the_hosts_stays() {
    require_root!();
    let host_name = nix::unistd::gethostname().expect("hostname");
    let proc_name = HostFile::snap("/proc/sys/kernel/hostname");
    let tag = nonce();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let script = format!(
        "hostname evil-{tag} 2>/dev/null && echo HOSTNAME_CMD=OK || echo HOSTNAME_CMD=DENIED
         (: > /proc/sys/kernel/hostname) 2>/dev/null && echo PROC_HOSTNAME=OK || echo PROC_HOSTNAME=DENIED
         (: > /proc/sys/kernel/domainname) 2>/dev/null && echo PROC_DOMAIN=OK || echo PROC_DOMAIN=DENIED
         echo NAME=$(hostname)"
    );
    let out = probe(&sys, &sh_job(&script));
    assert_lines(
        &out,
        &[
            "HOSTNAME_CMD=DENIED",
            "PROC_HOSTNAME=DENIED",
            "PROC_DOMAIN=DENIED",
        ],
    );
    let name = joblet_tests::hostile::line_value(&out, "NAME").unwrap_or_default();
    assert!(name.starts_with("job-"), "the job's name became {name:?}");
    assert_eq!(
        nix::unistd::gethostname().expect("hostname"),
        host_name,
        "the host's name changed"
    );
    proc_name.assert_unchanged();
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: `sethostname`/`setdomainname` made directly, with the errno.
#[test]
fn sethostname_and_setdomainname_calls_are_refused() {
    require_root!();
    require_job_python!();
    let host_name = nix::unistd::gethostname().expect("hostname");
    let sys = System::start();
    all_eperm(
        &sys,
        r#"
sc("SETHOSTNAME", 170, b"evil", 4)
sc("SETDOMAINNAME", 171, b"evil", 4)
"#,
        &["SETHOSTNAME", "SETDOMAINNAME"],
    );
    assert_eq!(nix::unistd::gethostname().expect("hostname"), host_name);
    sys.stop();
}
