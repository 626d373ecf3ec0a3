//! Namespaces and other processes: new user namespaces, `setns`/`nsenter`, ptrace and
//! cross-process memory access.

use joblet_tests::hostile::{
    assert_lines, host_mounts_containing, line_value, nonce, python_job, sh_job,
};
use joblet_tests::{System, require_job_python, require_root};

use super::common::{Daemons, probe};

/// Case: create a user namespace (`unshare -U`, `unshare -r`, `unshare(CLONE_NEWUSER)`,
/// `clone(CLONE_NEWUSER)`), the door to capabilities over new namespaces.
#[test]
fn user_namespaces_cannot_be_created() {
    require_root!();
    require_job_python!();
    let tag = nonce();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let body = format!(
        r#"
CLONE_NEWUSER, CLONE_NEWNS, SIGCHLD = 0x10000000, 0x00020000, 17
def try_unshare(tag, flags):
    pid = os.fork()
    if pid == 0:
        r = libc.syscall(ctypes.c_long(272), ctypes.c_long(flags))
        os._exit(0 if r == 0 else ctypes.get_errno())
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    verdict(tag, code == 0, code)
try_unshare("UNSHARE_NEWUSER", CLONE_NEWUSER)
try_unshare("UNSHARE_NEWUSER_NEWNS", CLONE_NEWUSER | CLONE_NEWNS)
r = sc("CLONE_NEWUSER", 56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
if r == 0:
    os._exit(0)
elif r > 0:
    os.waitpid(r, 0)
for cmd, tag in [("unshare -U true", "UNSHARE_U"), ("unshare -r id -u", "UNSHARE_R"),
                 ("unshare -Urm sh -c 'mount -t tmpfs evil-{tag} /tmp'", "UNSHARE_URM")]:
    r = os.system(cmd + " >/dev/null 2>&1")
    print(tag + "_CMD=" + ("OK" if r == 0 else "FAILED"), flush=True)
"#
    );
    let out = probe(&sys, &python_job(&body));
    assert_lines(
        &out,
        &[
            "UNSHARE_NEWUSER=EPERM",
            "UNSHARE_NEWUSER_NEWNS=EPERM",
            "CLONE_NEWUSER=EPERM",
            "UNSHARE_U_CMD=FAILED",
            "UNSHARE_R_CMD=FAILED",
            "UNSHARE_URM_CMD=FAILED",
        ],
    );
    assert!(host_mounts_containing(&tag).is_empty());
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Namespaces of a process, as `kind -> ns id` (`mnt:[4026531841]`).
fn namespaces_of(pid: &str) -> Vec<(String, String)> {
    ["mnt", "pid", "net", "uts", "ipc", "cgroup", "user"]
        .iter()
        .map(|k| {
            let link = std::fs::read_link(format!("/proc/{pid}/ns/{k}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            (k.to_string(), link)
        })
        .collect()
}

/// Case: enter other namespaces (`setns`, `nsenter`); and the job shares no namespace with
/// the host (its mnt, pid, net, uts, ipc, cgroup and user namespaces are all its own).
#[test]
fn the_job_shares_no_namespace_with_the_host_and_cannot_setns() {
    require_root!();
    require_job_python!();
    // The test's own namespaces are the host's; pid 1 may refuse to show its own (it does on
    // these machines, and an empty name made every comparison below pass).
    let host_ns = namespaces_of("self");
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let out = probe(
        &sys,
        &python_job(
            r#"
for k in ["mnt", "pid", "net", "uts", "ipc", "cgroup", "user"]:
    print("NS_%s=%s" % (k, os.readlink("/proc/self/ns/" + k)))
for k, nr in [("mnt", 0), ("uts", 0), ("net", 0), ("user", 0)]:
    fd = os.open("/proc/1/ns/" + k, os.O_RDONLY)
    sc("SETNS_" + k.upper(), 308, fd, nr)
r = os.system("nsenter -t 1 -m -u -n true >/dev/null 2>&1")
print("NSENTER=" + ("OK" if r == 0 else "FAILED"))
"#,
        ),
    );
    assert_lines(
        &out,
        &[
            "SETNS_MNT=EPERM",
            "SETNS_UTS=EPERM",
            "SETNS_NET=EPERM",
            "SETNS_USER=EPERM",
            "NSENTER=FAILED",
        ],
    );
    for (kind, host) in &host_ns {
        assert!(
            !host.is_empty(),
            "the host's {kind} namespace is unreadable"
        );
        let job = line_value(&out, &format!("NS_{kind}")).unwrap_or_default();
        assert!(!job.is_empty(), "no {kind} namespace reported:\n{out}");
        assert_ne!(job, host, "the job shares the host's {kind} namespace");
    }
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: ptrace (attach, seize) and cross-process memory access (`process_vm_readv`,
/// `process_vm_writev`, `/proc/<pid>/mem` of a daemon's pid).
#[test]
fn ptrace_and_cross_process_memory_access_are_refused() {
    require_root!();
    require_job_python!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let spawner = daemons.pid("joblet-spawner");
    let supervisor = daemons.pid("joblet");
    let body = format!(
        r#"
import signal, time
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
sc("PTRACE_ATTACH", 101, 16, child, 0, 0)
sc("PTRACE_SEIZE", 101, 0x4206, child, 0, 0)
word = ctypes.c_uint64(0)
iov = (ctypes.c_uint64 * 2)(ctypes.addressof(word), 8)
sc("PROCESS_VM_READV", 310, child, iov, 1, iov, 1, 0)
sc("PROCESS_VM_WRITEV", 311, child, iov, 1, iov, 1, 0)
for name, pid in [("SPAWNER", {spawner}), ("SUPERVISOR", {supervisor})]:
    attempt(name + "_MEM", lambda: os.open("/proc/%d/mem" % pid, os.O_RDWR))
    sc("PTRACE_ATTACH_" + name, 101, 16, pid, 0, 0)
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
"#
    );
    let out = probe(&sys, &python_job(&body));
    assert_lines(
        &out,
        &[
            "PTRACE_ATTACH=EPERM",
            "PTRACE_SEIZE=EPERM",
            "PROCESS_VM_READV=EPERM",
            "PROCESS_VM_WRITEV=EPERM",
            "SPAWNER_MEM=ENOENT",
            "SUPERVISOR_MEM=ENOENT",
            "PTRACE_ATTACH_SPAWNER=EPERM",
            "PTRACE_ATTACH_SUPERVISOR=EPERM",
        ],
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: `kill -9 -1` and a killing spree over every pid the job can name: only the job's
/// own processes exist for it.
#[test]
fn kill_minus_one_reaches_only_the_job() {
    require_root!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let mut sentinel = joblet_tests::hostile::Sentinel::spawn(super::common::JOB_UID);
    let out = probe(
        &sys,
        &sh_job("sleep 600 & kill -9 -1 2>/dev/null; wait; echo KILLALL_DONE"),
    );
    assert_lines(&out, &["KILLALL_DONE"]);
    assert!(
        sentinel.alive(),
        "kill -9 -1 in a job killed a host process"
    );
    daemons.assert_intact(&sys);
    sys.stop();
}
