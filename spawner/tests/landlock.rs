//! Root tests of the job Landlock layer against the real kernel. A worker process restricts
//! itself with the job policy rooted at a temporary directory standing in for the job's `/`,
//! then tries what a job would: read, write, create, link, mknod, exec, signal, connect. The
//! worker checks every outcome and fails with the list of wrong ones.

mod layers;

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use joblet_spawner::launch::landlock::{self, LandlockError};
use layers::*;
use nix::errno::Errno;
use nix::sys::stat::{Mode, SFlag};

#[test]
#[ignore = "helper process started by the other tests"]
fn worker_process() {
    if let Ok(mode) = std::env::var(WORKER_ENV) {
        match mode.as_str() {
            "restricted" => restricted_job(),
            other => panic!("unknown worker mode {other}"),
        }
    }
}

#[test]
fn the_kernel_reports_a_landlock_abi() {
    match landlock::abi() {
        Ok(abi) => {
            eprintln!("MEASURED landlock abi {abi}");
            assert!(abi >= 1);
        }
        Err(LandlockError::Unavailable { reason }) => {
            eprintln!("SKIPPED: Landlock unavailable here: {reason}");
        }
        Err(e) => panic!("probe failed: {e}"),
    }
}

#[test]
fn a_missing_root_is_an_error_naming_it() {
    if landlock::abi().is_err() {
        eprintln!("SKIPPED: no Landlock");
        return;
    }
    let missing = Path::new("/joblet-no-such-root");
    match landlock::build_ruleset(missing) {
        Err(e @ LandlockError::OpenPath { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("/joblet-no-such-root"), "{msg}");
            assert!(msg.contains("ENOENT"), "{msg}");
        }
        other => panic!("expected OpenPath, got {other:?}"),
    }
}

#[test]
fn missing_optional_paths_are_skipped_not_granted() {
    if landlock::abi().is_err() {
        eprintln!("SKIPPED: no Landlock");
        return;
    }
    let root = TempDir::new("landlock-bare");
    fs::create_dir(root.path().join("work")).unwrap();
    let ruleset = landlock::build_ruleset(root.path()).expect("build");
    let skipped = &ruleset.skipped;
    assert!(!skipped.contains(&"/work"), "{skipped:?}");
    for p in ["/tmp", "/dev/shm", "/dev/null", "/dev/pts"] {
        assert!(skipped.contains(&p), "{p} skipped: {skipped:?}");
    }
}

#[test]
fn a_restricted_job_reads_everywhere_and_writes_only_where_allowed() {
    if !is_root() {
        return;
    }
    if let Err(e) = landlock::abi() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let root = TempDir::new("landlock-root");
    let host_canary = TempDir::new("landlock-host");
    fs::write(host_canary.path().join("secret"), b"host").unwrap();
    build_job_root(root.path());
    let mut victim = Gated::spawn(sleeper());
    let abstract_name = format!("hardening-test-{}-{}", std::process::id(), unique());
    let listener =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap())
            .expect("bind abstract socket");
    listener.set_nonblocking(true).unwrap();

    let victim_pid = victim.pid().to_string();
    let out = run_worker(
        "restricted",
        &[
            ("ROOT", root.path().to_str().unwrap()),
            (
                "HOST_FILE",
                host_canary.path().join("secret").to_str().unwrap(),
            ),
            ("VICTIM", &victim_pid),
            ("ABSTRACT", &abstract_name),
        ],
    );
    eprintln!("{out}");
    assert!(out.contains("RESULT all checks passed"), "{out}");

    // The host side is unchanged: the victim lives, nothing connected, nothing was written.
    assert!(
        victim.child.try_wait().unwrap().is_none(),
        "victim survived"
    );
    victim.release();
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => {
            let abi = landlock::abi().unwrap();
            assert!(abi < 6, "a restricted job connected out: {other:?}");
        }
    }
    assert_eq!(
        fs::read(host_canary.path().join("secret")).unwrap(),
        b"host"
    );
    assert!(!root.path().join("usr/new").exists());
    assert_eq!(
        fs::read(root.path().join("etc/passwd")).unwrap(),
        b"root:x:0:0::/:/bin/sh\n"
    );
}

/// A stand-in for the job's root: regular files where the job has device nodes (Landlock
/// looks at paths, not file types), and a static busybox to exec if the host has one.
fn build_job_root(root: &Path) {
    for d in [
        "bin", "etc", "usr", "work", "tmp", "dev", "dev/shm", "dev/pts",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(root.join("etc/passwd"), b"root:x:0:0::/:/bin/sh\n").unwrap();
    fs::write(root.join("usr/file"), b"read me").unwrap();
    for d in ["null", "zero", "full", "tty", "random", "pts/0"] {
        fs::write(root.join("dev").join(d), b"").unwrap();
    }
    if Path::new("/bin/busybox").exists() {
        fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    }
}

fn sleeper() -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "read _gate"]).stderr(Stdio::null());
    cmd
}

// ── The worker ──────────────────────────────────────────────────────────────────────────────

struct Checks {
    failures: Vec<String>,
}

impl Checks {
    fn expect<T>(&mut self, what: &str, got: std::io::Result<T>, want: Option<Errno>) {
        let got_errno = got
            .as_ref()
            .err()
            .map(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)));
        let shown = outcome(got);
        println!("CHECK {what}: {shown}");
        if got_errno != want {
            self.failures
                .push(format!("{what}: got {shown}, want {want:?}"));
        }
    }
    fn ok<T>(&mut self, what: &str, got: std::io::Result<T>) {
        self.expect(what, got, None);
    }
    fn denied<T>(&mut self, what: &str, got: std::io::Result<T>) {
        self.expect(what, got, Some(Errno::EACCES));
    }
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var(name).unwrap_or_else(|_| panic!("{name} set")))
}

fn restricted_job() {
    let root = env_path("ROOT");
    let host_file = env_path("HOST_FILE");
    let victim: i32 = std::env::var("VICTIM").unwrap().parse().unwrap();
    let abstract_name = std::env::var("ABSTRACT").unwrap();
    let t = |p: &str| root.join(p);

    let ruleset = landlock::build_ruleset(&root).expect("build the ruleset");
    let abi = ruleset.abi;
    println!("RESULT abi {abi} scoped {}", landlock::scopes(abi) != 0);
    assert!(ruleset.skipped.is_empty(), "{:?}", ruleset.skipped);
    nix::sys::prctl::set_no_new_privs().expect("no_new_privs");
    landlock::restrict_self(&ruleset).expect("restrict");
    drop(ruleset);

    let mut c = Checks { failures: vec![] };
    // Reading works everywhere in the root.
    c.ok("read /etc/passwd", fs::read(t("etc/passwd")));
    c.ok("list /usr", fs::read_dir(t("usr")));
    c.ok("list /", fs::read_dir(&root));
    c.ok("read /usr/file", fs::read(t("usr/file")));

    // The read-only part refuses every kind of change.
    c.denied(
        "write /etc/passwd",
        OpenOptions::new().write(true).open(t("etc/passwd")),
    );
    c.denied("create /usr/new", fs::write(t("usr/new"), b"x"));
    c.denied("mkdir /usr/dir", fs::create_dir(t("usr/dir")));
    c.denied("unlink /usr/file", fs::remove_file(t("usr/file")));
    c.denied(
        "symlink in /usr",
        std::os::unix::fs::symlink("/x", t("usr/link")),
    );
    c.denied("create /dev/new", fs::write(t("dev/new"), b"x"));
    c.denied("unlink /dev/null", fs::remove_file(t("dev/null")));
    c.denied(
        "write /dev/random",
        OpenOptions::new().write(true).open(t("dev/random")),
    );

    // The writable places allow the whole life cycle of files.
    c.ok("create /work/a", fs::write(t("work/a"), b"hello"));
    c.ok(
        "append /work/a",
        OpenOptions::new()
            .append(true)
            .open(t("work/a"))
            .and_then(|mut f| f.write_all(b"!")),
    );
    c.ok(
        "truncate /work/a",
        OpenOptions::new()
            .write(true)
            .open(t("work/a"))
            .and_then(|f| f.set_len(2)),
    );
    c.ok("mkdir /tmp/d", fs::create_dir(t("tmp/d")));
    c.ok("create /tmp/d/f", fs::write(t("tmp/d/f"), b"x"));
    c.ok("unlink /tmp/d/f", fs::remove_file(t("tmp/d/f")));
    c.ok("rmdir /tmp/d", fs::remove_dir(t("tmp/d")));
    c.ok(
        "symlink /work/link",
        std::os::unix::fs::symlink("a", t("work/link")),
    );
    c.ok(
        "mkfifo /tmp/fifo",
        nix::unistd::mkfifo(&t("tmp/fifo"), Mode::from_bits_truncate(0o600))
            .map_err(std::io::Error::from),
    );
    c.ok("bind /tmp/sock", UnixListener::bind(t("tmp/sock")));
    c.ok("write /dev/shm/x", fs::write(t("dev/shm/x"), b"x"));
    if abi >= 2 {
        c.ok(
            "rename /work/a to /tmp/a",
            fs::rename(t("work/a"), t("tmp/a")),
        );
        c.ok(
            "link /tmp/a to /work/b",
            fs::hard_link(t("tmp/a"), t("work/b")),
        );
        c.denied(
            "rename /tmp/a to /usr/a",
            fs::rename(t("tmp/a"), t("usr/a")),
        );
    } else {
        println!("SKIPPED cross-directory rename/link: ABI 1 always refuses them (EXDEV)");
    }
    if abi >= 3 {
        c.denied(
            "truncate /etc/passwd",
            OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(t("etc/passwd")),
        );
    }

    // Devices: writable, including the O_TRUNC of a shell's `> /dev/null`.
    for dev in ["dev/null", "dev/zero", "dev/full", "dev/tty", "dev/pts/0"] {
        let shell_redirect = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(t(dev));
        c.ok(&format!("> /{dev}"), shell_redirect);
    }

    // No device nodes anywhere, not even where files may be created.
    for (kind, label, dir) in [
        (SFlag::S_IFCHR, "char", "tmp"),
        (SFlag::S_IFBLK, "block", "work"),
    ] {
        let r = nix::sys::stat::mknod(
            &t(&format!("{dir}/node")),
            kind,
            Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, 3),
        );
        c.denied(
            &format!("mknod {label} device in /{dir}"),
            r.map_err(std::io::Error::from),
        );
    }

    // Outside the root: nothing.
    c.denied("read a host file", fs::read(&host_file));
    c.denied("exec host /bin/true", Command::new("/bin/true").status());
    if t("bin/busybox").exists() {
        let st = Command::new(t("bin/busybox")).arg("true").status();
        c.ok(
            "exec /bin/busybox true",
            st.and_then(|s| {
                if s.success() {
                    Ok(())
                } else {
                    Err(std::io::Error::other(format!("{s}")))
                }
            }),
        );
    } else {
        println!("SKIPPED exec inside the root: no /bin/busybox on the host to copy");
    }
    // Pipes reached through /proc (as /dev/stdout does) are not filesystem objects.
    let (_r, w) = nix::unistd::pipe().unwrap();
    let proc_fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&w));
    c.ok(
        "write a pipe via /proc/self/fd",
        OpenOptions::new().write(true).open(proc_fd),
    );

    if abi >= 6 {
        let parent = nix::unistd::getppid();
        c.expect(
            "signal the parent",
            nix::sys::signal::kill(parent, None).map_err(std::io::Error::from),
            Some(Errno::EPERM),
        );
        let victim = nix::unistd::Pid::from_raw(victim);
        c.expect(
            "kill an outside process",
            nix::sys::signal::kill(victim, nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from),
            Some(Errno::EPERM),
        );
        c.ok("kill a process of the job", kill_own_child());
        let outside = SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        c.expect(
            "connect an outside abstract socket",
            UnixStream::connect_addr(&outside),
            Some(Errno::EPERM),
        );
        let inside_name = format!("{abstract_name}-inside");
        let inside = SocketAddr::from_abstract_name(inside_name.as_bytes()).unwrap();
        let _l = UnixListener::bind_addr(&inside);
        c.ok(
            "connect an abstract socket of the job",
            UnixStream::connect_addr(&inside),
        );
    } else {
        println!("SKIPPED scopes: Landlock ABI {abi} < 6 has no signal or abstract socket scoping");
    }

    assert!(
        c.failures.is_empty(),
        "wrong outcomes:\n{}",
        c.failures.join("\n")
    );
    println!("RESULT all checks passed");
}

/// Forks a child inside the domain and kills it: scoping stops at the job's boundary only.
fn kill_own_child() -> std::io::Result<()> {
    // SAFETY: the child only calls pause(), async-signal-safe, until it is killed.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        loop {
            // SAFETY: pause() takes no arguments and only waits for a signal.
            unsafe { libc::pause() };
        }
    }
    let pid = nix::unistd::Pid::from_raw(pid);
    let r = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
    r.map_err(std::io::Error::from)
}
