//! Reaching host files: shadow, `/proc/*/root`, `..` out of bind mounts, the read-only
//! mounts, the runtime binary (CVE-2019-5736 style), leaked fds, `open_by_handle_at`.

use std::path::Path;

use joblet_tests::hostile::{HostFile, assert_lines, nonce, python_job, sh_job};
use joblet_tests::{System, bin, require_job_python, require_root};

use super::common::{Daemons, assert_refused, probe};

/// A secret in a host directory any user may read: only the job's root keeps it away.
fn plant_secret() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::Builder::new()
        .prefix("joblet-e2e-secret-")
        .tempdir()
        .expect("tempdir");
    joblet_tests::host::chmod(dir.path(), 0o755);
    let secret = format!("s3cr3t-{}", nonce());
    let file = dir.path().join("token");
    std::fs::write(&file, &secret).expect("write the secret");
    joblet_tests::host::chmod(&file, 0o644);
    let path = file.to_string_lossy().into_owned();
    (dir, path, secret)
}

/// Case: read the host's `/etc/shadow`, directly and through every detour a job has.
#[test]
fn the_hosts_shadow_file_cannot_be_read() {
    require_root!();
    let shadow = HostFile::snap("/etc/shadow");
    assert!(shadow.existed(), "the host has no /etc/shadow to protect");
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let paths = [
        "/etc/shadow",
        "/proc/1/root/etc/shadow",
        "/proc/self/root/etc/shadow",
        "/etc/alternatives/../shadow",
        "/etc/ssl/../../etc/shadow",
        "/usr/bin/../../etc/shadow",
        "/proc/1/cwd/../../../etc/shadow",
    ];
    let script: String = paths
        .iter()
        .map(|p| {
            format!("if cat {p} >/dev/null 2>&1; then echo 'SHADOW {p}=READ'; else echo 'SHADOW {p}=DENIED'; fi\n")
        })
        .collect();
    let out = probe(&sys, &sh_job(&script));
    let want: Vec<String> = paths.iter().map(|p| format!("SHADOW {p}=DENIED")).collect();
    assert_lines(&out, &want.iter().map(String::as_str).collect::<Vec<_>>());
    let host_shadow = std::fs::read_to_string("/etc/shadow").expect("read shadow");
    for line in host_shadow.lines().filter(|l| l.len() > 8) {
        assert!(!out.contains(line), "a host shadow entry leaked:\n{out}");
    }
    shadow.assert_unchanged();
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: reach host files through `/proc/1/root` and `/proc/1/cwd`; PID 1's root must be
/// the job's own root.
#[test]
fn proc_1_root_leads_only_to_the_jobs_root() {
    require_root!();
    let (_dir, secret_path, secret) = plant_secret();
    let file = HostFile::snap(&secret_path);
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let script = format!(
        "cat /proc/1/root{p} 2>/dev/null && echo ROOT1=READ || echo ROOT1=DENIED
         cat /proc/1/cwd/../../../../{p} 2>/dev/null && echo CWD1=READ || echo CWD1=DENIED
         echo LINK=$(readlink /proc/1/root)
         [ \"$(ls -a /proc/1/root/ | tr '\\n' ' ')\" = \"$(ls -a / | tr '\\n' ' ')\" ] && echo SAME_ROOT=yes || echo SAME_ROOT=no
         [ -e /proc/1/root/home ] || [ -e /proc/1/root/root ] || [ -e /proc/1/root/var ] && echo HOST_DIRS=SEEN || echo HOST_DIRS=ABSENT",
        p = secret_path
    );
    let out = probe(&sys, &sh_job(&script));
    assert_lines(
        &out,
        &[
            "ROOT1=DENIED",
            "CWD1=DENIED",
            "LINK=/",
            "SAME_ROOT=yes",
            "HOST_DIRS=ABSENT",
        ],
    );
    assert!(!out.contains(&secret), "the host secret leaked:\n{out}");
    file.assert_unchanged();
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: `/proc/self/root`, and `..` climbed from every mount point, stay in the job.
#[test]
fn proc_self_root_and_dotdot_stay_inside_the_job() {
    require_root!();
    let (_dir, secret_path, secret) = plant_secret();
    let file = HostFile::snap(&secret_path);
    let sys = System::start();
    let script = format!(
        "cat /proc/self/root{p} 2>/dev/null && echo SELFROOT=READ || echo SELFROOT=DENIED
         for m in /usr/bin /etc/ssl /proc /dev /work /tmp /dev/shm; do
           cd -P $m/../../../../../.. && [ \"$(pwd -P)\" = / ] && [ ! -e .{p} ] && echo \"UP $m=JOBROOT\" || echo \"UP $m=ESCAPED\"
         done
         [ -e /proc/self/root/.{dir} ] && echo SECRET_DIR=SEEN || echo SECRET_DIR=ABSENT",
        p = secret_path,
        dir = Path::new(&secret_path).parent().expect("parent").display()
    );
    let out = probe(&sys, &sh_job(&script));
    let mut want = vec!["SELFROOT=DENIED", "SECRET_DIR=ABSENT"];
    let ups: Vec<String> = [
        "/usr/bin", "/etc/ssl", "/proc", "/dev", "/work", "/tmp", "/dev/shm",
    ]
    .iter()
    .map(|m| format!("UP {m}=JOBROOT"))
    .collect();
    want.extend(ups.iter().map(String::as_str));
    assert_lines(&out, &want);
    assert!(!out.contains(&secret), "the host secret leaked:\n{out}");
    file.assert_unchanged();
    sys.stop();
}

/// Case: the host paths a job gets are read-only: no new file, no write open, no
/// `touch` of a host file, anywhere in them.
#[test]
fn the_allowed_host_mounts_are_read_only() {
    require_root!();
    let tag = nonce();
    let hosts = HostFile::snap("/etc/hosts");
    let resolv = HostFile::snap("/etc/resolv.conf");
    let created =
        ["/usr/bin", "/usr/lib", "/etc/ssl", "/usr/sbin"].map(|d| format!("{d}/joblet-evil-{tag}"));
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    // Opening for writing is the test; nothing is ever written, so a hole would not
    // damage the host.
    let script = format!(
        "for f in {files}; do (: > $f) 2>/dev/null && echo \"CREATE $f=OK\" || echo \"CREATE $f=DENIED\"; done
         for f in /etc/hosts /etc/resolv.conf /usr/bin/sh; do
           [ -w $f ] && echo \"WRITABLE $f=yes\" || echo \"WRITABLE $f=no\"
           touch -c $f 2>/dev/null && echo \"TOUCH $f=OK\" || echo \"TOUCH $f=DENIED\"
         done
         M=$(grep -E ' /(usr/bin|usr/lib|etc/ssl|etc/hosts) ' /proc/self/mountinfo)
         echo \"RO_MOUNTS=$(echo \"$M\" | grep -c ' ro,')\"
         echo \"RW_MOUNTS=$(echo \"$M\" | grep -vc ' ro,')\"",
        files = created.join(" ")
    );
    let out = probe(&sys, &sh_job(&script));
    let mut want: Vec<String> = created
        .iter()
        .map(|f| format!("CREATE {f}=DENIED"))
        .collect();
    for f in ["/etc/hosts", "/etc/resolv.conf", "/usr/bin/sh"] {
        want.push(format!("WRITABLE {f}=no"));
        want.push(format!("TOUCH {f}=DENIED"));
    }
    want.push("RW_MOUNTS=0".into());
    let ro: u32 = joblet_tests::hostile::line_value(&out, "RO_MOUNTS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        ro >= 4,
        "the allowed mounts are not all mounted read-only:\n{out}"
    );
    assert_lines(&out, &want.iter().map(String::as_str).collect::<Vec<_>>());
    for f in &created {
        assert!(!Path::new(f).exists(), "the job created {f} on the host");
    }
    hosts.assert_unchanged();
    resolv.assert_unchanged();
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case (CVE-2019-5736 style): open the running binary for writing through
/// `/proc/self/exe`, `/proc/1/exe`, and by re-opening an `O_PATH` fd through
/// `/proc/self/fd`; no process of the job may be a Joblet binary to overwrite.
#[test]
fn the_runtime_cannot_be_overwritten_through_proc_exe() {
    require_root!();
    require_job_python!();
    let python = std::fs::canonicalize(joblet_tests::hostile::JOB_PYTHON).expect("python");
    let python_file = HostFile::snap(&python);
    let dash = HostFile::snap(std::fs::canonicalize("/bin/sh").expect("sh"));
    let spawner = HostFile::snap(bin("joblet-spawner"));
    let supervisor = HostFile::snap(bin("joblet"));
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let out = probe(
        &sys,
        &python_job(
            r#"
attempt("EXE_SELF", lambda: os.open("/proc/self/exe", os.O_WRONLY))
attempt("EXE_PID1", lambda: os.open("/proc/1/exe", os.O_WRONLY))
fd = os.open("/proc/self/exe", os.O_PATH)
attempt("EXE_FD_REOPEN", lambda: os.open("/proc/self/fd/%d" % fd, os.O_WRONLY))
attempt("EXE_FD_RDWR", lambda: os.open("/proc/self/fd/%d" % fd, os.O_RDWR))
attempt("EXE_TRUNCATE", lambda: os.truncate("/proc/self/exe", 0))
exes = set()
for p in os.listdir("/proc"):
    if p.isdigit():
        try: exes.add(os.readlink("/proc/%s/exe" % p))
        except OSError: pass
print("JOBLET_EXES=" + str(sum("joblet" in e for e in exes)))
"#,
        ),
    );
    for tag in [
        "EXE_SELF",
        "EXE_PID1",
        "EXE_FD_REOPEN",
        "EXE_FD_RDWR",
        "EXE_TRUNCATE",
    ] {
        assert_refused(&out, tag, &["EACCES", "EROFS", "ETXTBSY", "EPERM"]);
    }
    assert_lines(&out, &["JOBLET_EXES=0"]);
    for f in [&python_file, &dash, &spawner, &supervisor] {
        f.assert_unchanged();
    }
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: use a leaked fd. The job's PID 1 has exactly fds 0 (`/dev/null`), 1 and 2 (its
/// output pipes); nothing above 2 is open in a fresh process either.
#[test]
fn no_fd_leaks_into_the_job() {
    require_root!();
    require_job_python!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let out = probe(
        &sys,
        &python_job(
            r#"
import stat
print("PID1_FDS=" + " ".join(sorted(os.listdir("/proc/1/fd"), key=int)))
open_fds = []
for n in range(3, 4096):
    try:
        os.fstat(n)
        open_fds.append(n)
    except OSError:
        pass
print("OWN_FDS_ABOVE_2=" + (",".join(map(str, open_fds)) or "none"))
print("FD0=" + os.readlink("/proc/1/fd/0"))
for n in (1, 2):
    print("FD%d_IS_PIPE=%s" % (n, stat.S_ISFIFO(os.stat("/proc/1/fd/%d" % n).st_mode)))
attempt("READ_FD3", lambda: os.read(3, 1))
"#,
        ),
    );
    // Python is PID 1 here; fd 3 in its list is the directory it reads the list from, so
    // a leaked fd 3 would show as "0 1 2 3 4".
    assert_lines(
        &out,
        &[
            "PID1_FDS=0 1 2 3",
            "OWN_FDS_ABOVE_2=none",
            "FD0=/dev/null",
            "FD1_IS_PIPE=True",
            "FD2_IS_PIPE=True",
            "READ_FD3=EBADF",
        ],
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case (the "shocker" breakout): file handles let a process open host files by inode,
/// bypassing its root; `name_to_handle_at` and `open_by_handle_at` are refused.
#[test]
fn open_by_handle_at_is_refused() {
    require_root!();
    require_job_python!();
    let shadow = HostFile::snap("/etc/shadow");
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let out = probe(
        &sys,
        &python_job(
            r#"
handle = ctypes.create_string_buffer(128)
ctypes.memmove(handle, (ctypes.c_uint32 * 2)(64, 0), 8)
mount_id = ctypes.c_int(0)
sc("NAME_TO_HANDLE_AT", 303, -100, b"/usr/bin/sh", handle, ctypes.byref(mount_id), 0)
# A forged handle for inode 2 (the root directory of an ext4 filesystem).
forged = ctypes.create_string_buffer(16)
ctypes.memmove(forged, (ctypes.c_uint32 * 4)(8, 1, 2, 0), 16)
root = os.open("/usr/bin", os.O_RDONLY)
fd = sc("OPEN_BY_HANDLE_AT", 304, root, forged, os.O_RDONLY | os.O_DIRECTORY)
if fd >= 0:
    print("HOST_ROOT_LISTING=" + ",".join(sorted(os.listdir(fd))))
"#,
        ),
    );
    assert_lines(
        &out,
        &["NAME_TO_HANDLE_AT=EPERM", "OPEN_BY_HANDLE_AT=EPERM"],
    );
    assert!(!out.contains("HOST_ROOT_LISTING"), "{out}");
    shadow.assert_unchanged();
    daemons.assert_intact(&sys);
    sys.stop();
}
