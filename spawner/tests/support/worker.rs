//! What the test binary does when it runs as a worker inside a job cgroup, and raw process
//! helpers (clone3) that the tests need. Results are printed as `RESULT ...` lines.

use std::io::BufRead;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use joblet_ipc_proto::settings::CgroupMode;
use joblet_spawner::cgroup::{CgroupConfig, Cgroups};

const MIB: usize = 1 << 20;

/// Runs one worker `mode` (see the match below) after reading the gate line from stdin.
pub fn run(mode: &str) {
    let mut gate = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut gate)
        .expect("gate line");
    for step in mode.split(';') {
        let (what, arg) = step.split_once(':').expect("mode is what:arg");
        match what {
            "alloc" => alloc(arg.parse().expect("MiB")),
            "fork" => fork_up_to(arg.parse().expect("count")),
            "open" => arg.split(',').for_each(open),
            "mknod" => mknod(arg),
            "backing" => backing(arg),
            "daemons" => daemons(Path::new(arg)),
            other => panic!("unknown worker mode {other}"),
        }
    }
}

fn alloc(mib: usize) {
    let mut keep = Vec::new();
    for _ in 0..mib {
        // Non-zero fill: every page is really touched (a zeroed Vec may stay untouched).
        keep.push(vec![1u8; MIB]);
    }
    std::hint::black_box(&keep);
    println!("RESULT allocated {mib}");
}

fn fork_up_to(n: u32) {
    let mut children = Vec::new();
    let mut errno = 0;
    for _ in 0..n {
        // SAFETY: the child only calls pause(), which is async-signal-safe, until it is
        // killed below; it never returns into Rust code of this multi-threaded process.
        match unsafe { libc::fork() } {
            -1 => {
                errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                break;
            }
            0 => loop {
                // SAFETY: pause() takes no arguments and only waits for a signal.
                unsafe { libc::pause() };
            },
            pid => children.push(pid),
        }
    }
    println!("RESULT forked {} errno {errno}", children.len());
    for pid in children {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

fn open(path: &str) {
    let r = std::fs::File::open(path);
    println!("RESULT {path} {}", outcome(r.map(drop)));
}

/// `path:major:minor`: a character device node.
fn mknod(arg: &str) {
    let mut it = arg.rsplitn(3, ':');
    let minor: u64 = it.next().and_then(|s| s.parse().ok()).expect("minor");
    let major: u64 = it.next().and_then(|s| s.parse().ok()).expect("major");
    let path = it.next().expect("path");
    let r = nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(major, minor),
    );
    println!("RESULT {path} {}", outcome(r.map_err(std::io::Error::from)));
}

fn outcome(r: std::io::Result<()>) -> String {
    match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.raw_os_error().unwrap_or(-1).to_string(),
    }
}

fn backing(arg: &str) {
    let paths: Vec<&Path> = arg.split(',').map(Path::new).collect();
    let found: Vec<String> = Cgroups::devices_backing(&paths)
        .iter()
        .map(|(ma, mi)| format!("{ma}:{mi}"))
        .collect();
    println!("RESULT {}", found.join(","));
}

/// Joins `own` (a fresh non-root v2 cgroup), then opens our cgroups with base `base` there.
fn daemons(own: &Path) {
    let me = std::process::id().to_string();
    std::fs::write(own.join("cgroup.procs"), me).expect("join the test's own cgroup");
    let cfg = CgroupConfig {
        root: "/sys/fs/cgroup".into(),
        mode: CgroupMode::V2,
        base: "base".into(),
    };
    let cg = Cgroups::open(&cfg).expect("open from a non-root cgroup with processes");
    let now = std::fs::read_to_string("/proc/self/cgroup").expect("own cgroup");
    let base = own.join("base");
    let control = std::fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
    let ok = cg.base_paths() == [base.clone()] && control.contains("memory");
    cg.remove_base().expect("remove base");
    println!(
        "RESULT {} {}",
        now.trim(),
        if ok { "base-ok" } else { "base-wrong" }
    );
}

/// A child made by clone3, killed and reaped on drop unless reaped already.
pub struct Cloned(pub i32);

impl Cloned {
    /// Waits for the child; the signal that killed it, if any.
    pub fn reap(mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(self.0);
        self.0 = 0;
        match nix::sys::wait::waitpid(pid, None).expect("waitpid") {
            nix::sys::wait::WaitStatus::Signaled(_, sig, _) => Some(sig as i32),
            _ => None,
        }
    }
}

impl Drop for Cloned {
    fn drop(&mut self) {
        if self.0 > 0 {
            let pid = nix::unistd::Pid::from_raw(self.0);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// `struct clone_args` of clone3(2), up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Starts `/bin/sleep 30` with clone3(CLONE_INTO_CGROUP) straight into the cgroup `fd`.
pub fn clone3_sleep(fd: BorrowedFd<'_>) -> Cloned {
    let prog = c"/bin/sleep";
    let arg = c"30";
    let argv = [prog.as_ptr(), arg.as_ptr(), std::ptr::null()];
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: u64::try_from(fd.as_raw_fd()).expect("fd"),
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size passed; with no CLONE_VM the child gets
    // a copy of our memory, so every pointer it uses below stays valid.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: in the child of a multi-threaded process only async-signal-safe calls are
        // made: execv, then _exit if it failed. argv is NULL-terminated C strings.
        unsafe {
            libc::execv(prog.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
    }
    assert!(pid > 0, "clone3: {}", std::io::Error::last_os_error());
    Cloned(i32::try_from(pid).expect("pid"))
}

/// Removes cgroup directories on drop (children first), retrying while they are busy.
pub struct RemoveDirs(pub Vec<PathBuf>);

impl Drop for RemoveDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            for _ in 0..100 {
                match std::fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
        }
    }
}
