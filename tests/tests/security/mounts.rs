//! Mounting anything (tmpfs, proc, cgroup, binds, remounts, the new mount API) and
//! `chroot`. Every attempt names a unique source, so the host's mount table can be searched
//! for it afterwards.

use joblet_tests::hostile::{
    HostFile, assert_lines, host_mounts_containing, nonce, python_job, sh_job,
};
use joblet_tests::{System, require_job_python, require_root};

use super::common::{Daemons, probe};

/// Checks that nothing named `tag` is mounted on the host, and that the job did not see
/// its own attempt succeed either.
fn assert_no_mount(tag: &str, out: &str) {
    let host = host_mounts_containing(tag);
    assert!(
        host.is_empty(),
        "the job's mount reached the host: {host:?}"
    );
    assert_lines(out, &["JOB_MOUNTS_WITH_TAG=0"]);
}

/// Python lines that count the job's own mounts carrying `tag`.
fn count_own(tag: &str) -> String {
    format!(
        "print('JOB_MOUNTS_WITH_TAG=%d' % open('/proc/self/mountinfo').read().count('{tag}'))\n"
    )
}

/// Case: mount a tmpfs (system call and the setuid `mount` binary).
#[test]
fn mounting_a_tmpfs_is_refused() {
    require_root!();
    require_job_python!();
    let tag = nonce();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let body = format!(
        r#"
os.makedirs("/tmp/m", exist_ok=True)
sc("MOUNT_TMPFS", 165, b"evil-{tag}", b"/tmp/m", b"tmpfs", 0, 0)
sc("MOUNT_TMPFS_OVER_ROOT", 165, b"evil-{tag}", b"/", b"tmpfs", 0, 0)
r = os.system("mount -t tmpfs evil-{tag} /tmp/m 2>/dev/null")
print("MOUNT_CMD=" + ("OK" if r == 0 else "FAILED"))
{count}"#,
        count = count_own(&tag)
    );
    let out = probe(&sys, &python_job(&body));
    assert_lines(
        &out,
        &[
            "MOUNT_TMPFS=EPERM",
            "MOUNT_TMPFS_OVER_ROOT=EPERM",
            "MOUNT_CMD=FAILED",
        ],
    );
    assert_no_mount(&tag, &out);
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: mount a new proc (which would show every process of a pid namespace it could
/// name) or a sysfs, and remount a read-only host path read-write.
#[test]
fn mounting_proc_sysfs_or_remounting_is_refused() {
    require_root!();
    require_job_python!();
    let tag = nonce();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let body = format!(
        r#"
os.makedirs("/tmp/p", exist_ok=True)
sc("MOUNT_PROC", 165, b"proc-{tag}", b"/tmp/p", b"proc", 0, 0)
sc("MOUNT_SYSFS", 165, b"sysfs-{tag}", b"/tmp/p", b"sysfs", 0, 0)
MS_REMOUNT, MS_BIND = 32, 4096
sc("REMOUNT_USR_BIN_RW", 165, 0, b"/usr/bin", 0, MS_REMOUNT | MS_BIND, 0)
sc("REMOUNT_ROOT_RW", 165, 0, b"/", 0, MS_REMOUNT, 0)
attempt("WRITE_AFTER", lambda: os.open("/usr/bin/evil-{tag}", os.O_WRONLY | os.O_CREAT, 0o755))
{count}"#,
        count = count_own(&tag)
    );
    let out = probe(&sys, &python_job(&body));
    assert_lines(
        &out,
        &[
            "MOUNT_PROC=EPERM",
            "MOUNT_SYSFS=EPERM",
            "REMOUNT_USR_BIN_RW=EPERM",
            "REMOUNT_ROOT_RW=EPERM",
        ],
    );
    assert!(
        out.lines().any(|l| l.starts_with("WRITE_AFTER=E")),
        "the job could create a file in /usr/bin:\n{out}"
    );
    assert!(!std::path::Path::new(&format!("/usr/bin/evil-{tag}")).exists());
    assert_no_mount(&tag, &out);
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: bind a path, move a mount, or unmount one (which would uncover what is beneath a
/// masked `/proc` file or a read-only bind).
#[test]
fn bind_move_and_unmount_are_refused() {
    require_root!();
    require_job_python!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let out = probe(
        &sys,
        &python_job(
            r#"
MS_BIND, MS_REC, MS_MOVE = 4096, 16384, 8192
os.makedirs("/tmp/b", exist_ok=True)
sc("BIND", 165, b"/usr/bin", b"/tmp/b", 0, MS_BIND | MS_REC, 0)
sc("BIND_PROC_SELF_ROOT", 165, b"/proc/1/root", b"/tmp/b", 0, MS_BIND, 0)
sc("MOVE_PROC", 165, b"/proc", b"/tmp/b", 0, MS_MOVE, 0)
sc("UMOUNT_PROC", 166, b"/proc", 2)
sc("UMOUNT_USR_BIN", 166, b"/usr/bin", 2)
print("PROC_STILL=" + str(os.path.exists("/proc/self/status")))
"#,
        ),
    );
    assert_lines(
        &out,
        &[
            "BIND=EPERM",
            "BIND_PROC_SELF_ROOT=EPERM",
            "MOVE_PROC=EPERM",
            "UMOUNT_PROC=EPERM",
            "UMOUNT_USR_BIN=EPERM",
            "PROC_STILL=True",
        ],
    );
    // Nothing the job did shows in the host's table (other tests may add their own
    // mounts meanwhile, so only lines under /usr/bin, /proc and / are compared).
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let key = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| {
                let mp = l.split(' ').nth(4).unwrap_or("");
                mp == "/" || mp == "/usr/bin" || mp.starts_with("/proc")
            })
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        key(&mounts_before),
        key(&mounts_after),
        "the host mount table changed"
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: the new mount API (`fsopen`, `fspick`, `open_tree`, `move_mount`,
/// `mount_setattr`), which a filter on `mount(2)` alone would miss.
#[test]
fn the_new_mount_api_is_refused() {
    require_root!();
    require_job_python!();
    let tag = nonce();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let body = format!(
        r#"
sc("FSOPEN", 430, b"tmpfs", 0)
sc("FSPICK", 433, -100, b"/work", 0)
sc("OPEN_TREE_CLONE", 428, -100, b"/usr/bin", 1)
sc("MOVE_MOUNT", 429, -100, b"/proc", -100, b"/tmp", 0)
attr = (ctypes.c_uint64 * 4)(0, 1, 0, 0)   # clear MOUNT_ATTR_RDONLY
sc("MOUNT_SETATTR", 442, -100, b"/usr/bin", 0, attr, 32)
{count}"#,
        count = count_own(&tag)
    );
    let out = probe(&sys, &python_job(&body));
    assert_lines(
        &out,
        &[
            "FSOPEN=EPERM",
            "FSPICK=EPERM",
            "OPEN_TREE_CLONE=EPERM",
            "MOVE_MOUNT=EPERM",
            "MOUNT_SETATTR=EPERM",
        ],
    );
    assert_no_mount(&tag, &out);
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: mount a cgroup filesystem to reach the job's (or the host's) cgroup files.
#[test]
fn mounting_a_cgroup_filesystem_is_refused() {
    require_root!();
    require_job_python!();
    let tag = nonce();
    let sys = System::start();
    let body = format!(
        r#"
os.makedirs("/tmp/cg", exist_ok=True)
sc("MOUNT_CGROUP2", 165, b"cg2-{tag}", b"/tmp/cg", b"cgroup2", 0, 0)
sc("MOUNT_CGROUP_MEMORY", 165, b"cg1-{tag}", b"/tmp/cg", b"cgroup", 0, b"memory")
{count}"#,
        count = count_own(&tag)
    );
    let out = probe(&sys, &python_job(&body));
    assert_lines(&out, &["MOUNT_CGROUP2=EPERM", "MOUNT_CGROUP_MEMORY=EPERM"]);
    assert_no_mount(&tag, &out);
    sys.stop();
}

/// Case: the classic `chroot` escape (chroot into a subdirectory while holding a
/// directory fd outside it, then climb `..`), and the `chroot` binary.
#[test]
fn the_chroot_escape_fails() {
    require_root!();
    require_job_python!();
    let secret = tempfile::Builder::new()
        .prefix("joblet-e2e-chroot-")
        .tempdir()
        .expect("tempdir");
    joblet_tests::host::chmod(secret.path(), 0o755);
    let marker = secret.path().join("marker");
    std::fs::write(&marker, "host").expect("write marker");
    let marker_file = HostFile::snap(&marker);
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let body = format!(
        r#"
os.makedirs("/tmp/jail", exist_ok=True)
outside = os.open("/", os.O_RDONLY)
sc("CHROOT", 161, b"/tmp/jail")
os.fchdir(outside)
for _ in range(64):
    os.chdir("..")
sc("CHROOT_DOT", 161, b".")
print("SEES_HOST_MARKER=" + str(os.path.exists(".{marker}")))
print("SEES_HOST_HOME=" + str(os.path.isdir("./home") or os.path.isdir("./root")))
"#,
        marker = marker.display()
    );
    let out = probe(&sys, &python_job(&body));
    assert_lines(
        &out,
        &[
            "CHROOT=EPERM",
            "CHROOT_DOT=EPERM",
            "SEES_HOST_MARKER=False",
            "SEES_HOST_HOME=False",
        ],
    );
    let out = probe(
        &sys,
        &sh_job(
            "mkdir -p /tmp/j && chroot /tmp/j /bin/true 2>/dev/null && echo CHROOT_CMD=OK || echo CHROOT_CMD=FAILED",
        ),
    );
    assert_lines(&out, &["CHROOT_CMD=FAILED"]);
    marker_file.assert_unchanged();
    daemons.assert_intact(&sys);
    sys.stop();
}
