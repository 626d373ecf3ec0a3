//! Starting a helper: `fork`, then in the child only async-signal-safe system calls on data
//! prepared beforehand (the parent is single-threaded, but the rule keeps the child obviously
//! correct), then `execve`. A close-on-exec pipe reports the step and errno of a failure
//! before `execve`; end of file on it means the helper binary is running.

use std::ffi::{CString, c_char};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::unistd::Pid;

use super::helpers::SETTINGS_FD;

/// The one environment variable a helper gets: nothing of ours leaks into it.
const HELPER_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What went wrong in the child before `execve`, as reported through the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    SignalMask = 1,
    NewSession,
    Stdin,
    DupFds,
    CloseRange,
    DropBounding,
    ClearAmbient,
    SetGroups,
    SetGid,
    SetUid,
    ClearCaps,
    NoNewPrivs,
    ParentDeathSignal,
    ParentGone,
    Exec,
}

impl Step {
    const ALL: [Step; 15] = [
        Step::SignalMask,
        Step::NewSession,
        Step::Stdin,
        Step::DupFds,
        Step::CloseRange,
        Step::DropBounding,
        Step::ClearAmbient,
        Step::SetGroups,
        Step::SetGid,
        Step::SetUid,
        Step::ClearCaps,
        Step::NoNewPrivs,
        Step::ParentDeathSignal,
        Step::ParentGone,
        Step::Exec,
    ];

    fn from_u32(v: u32) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as u32 == v)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Step::SignalMask => "resetting the signal mask",
            Step::NewSession => "setsid",
            Step::Stdin => "connecting stdin to /dev/null",
            Step::DupFds => "placing the inherited fds",
            Step::CloseRange => "closing other fds",
            Step::DropBounding => "clearing the capability bounding set",
            Step::ClearAmbient => "clearing ambient capabilities",
            Step::SetGroups => "setgroups",
            Step::SetGid => "setresgid",
            Step::SetUid => "setresuid",
            Step::ClearCaps => "clearing capabilities",
            Step::NoNewPrivs => "PR_SET_NO_NEW_PRIVS",
            Step::ParentDeathSignal => "PR_SET_PDEATHSIG",
            Step::ParentGone => "checking the supervisor is alive",
            Step::Exec => "execve",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{} contains a NUL byte", .0)]
    Nul(String),
    #[error("{step} failed: {source}")]
    Parent {
        step: &'static str,
        source: std::io::Error,
    },
    #[error("in the new process, {} failed: {source}", .step.describe())]
    Child { step: Step, source: std::io::Error },
}

/// The identity an unprivileged helper takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Everything the child needs, allocated before `fork`.
pub struct Launch {
    path: CString,
    /// Kept alive for the pointers in `argv_ptrs`.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
    creds: Option<Creds>,
    cap_last: u32,
    dev_null: OwnedFd,
}

impl Launch {
    /// Prepares `binary --settings-fd 3` with `argv[0]` = `name`.
    pub fn new(
        binary: &Path,
        name: &str,
        creds: Option<Creds>,
        cap_last: u32,
    ) -> Result<Launch, SpawnError> {
        let cstr =
            |s: &[u8], what: &str| CString::new(s).map_err(|_| SpawnError::Nul(what.to_owned()));
        let path = cstr(binary.as_os_str().as_bytes(), "helper path")?;
        let argv = vec![
            cstr(name.as_bytes(), "helper name")?,
            cstr(b"--settings-fd", "argument")?,
            cstr(SETTINGS_FD.to_string().as_bytes(), "argument")?,
        ];
        let envp = vec![cstr(HELPER_PATH.as_bytes(), "environment")?];
        let ptrs = |v: &[CString]| -> Vec<*const c_char> {
            v.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let dev_null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|source| SpawnError::Parent {
                step: "opening /dev/null",
                source,
            })?;
        Ok(Launch {
            argv_ptrs: ptrs(&argv),
            envp_ptrs: ptrs(&envp),
            path,
            _argv: argv,
            _envp: envp,
            creds,
            cap_last,
            dev_null: dev_null.into(),
        })
    }

    /// Starts the helper with `settings` as fd 3 and `inherited` as fds 4, 5, …; returns its
    /// pid once `execve` succeeded.
    pub fn spawn(&self, settings: &OwnedFd, inherited: &[RawFd]) -> Result<Pid, SpawnError> {
        let parent_err = |step| move |source| SpawnError::Parent { step, source };
        let mut sources = Vec::with_capacity(inherited.len() + 1);
        sources.push(settings.as_raw_fd());
        sources.extend_from_slice(inherited);
        let (report_r, report_w) = pipe_cloexec().map_err(parent_err("pipe"))?;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: fork in a single-threaded process; the child branch below only calls
        // async-signal-safe functions on memory prepared before the fork and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(parent_err("fork")(std::io::Error::last_os_error()));
        }
        if pid == 0 {
            // Child: never returns.
            child(self, &sources, report_w.as_raw_fd(), parent);
        }
        drop(report_w);
        let pid = Pid::from_raw(pid);
        match read_report(&report_r) {
            Ok(None) => Ok(pid),
            Ok(Some((step, errno))) => {
                // The child has exited (or is about to): collect it here so the event loop never
                // sees a pid it does not know.
                let _ = nix::sys::wait::waitpid(pid, None);
                Err(SpawnError::Child {
                    step,
                    source: std::io::Error::from_raw_os_error(errno),
                })
            }
            Err(source) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                Err(SpawnError::Parent {
                    step: "reading the start report",
                    source,
                })
            }
        }
    }
}

fn pipe_cloexec() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh from pipe2 and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `None` at end of file (exec succeeded), or the child's failed step and errno.
fn read_report(fd: &OwnedFd) -> std::io::Result<Option<(Step, i32)>> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reads into the unfilled tail of our own buffer.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    match got {
        0 => Ok(None),
        8 => {
            let step = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let step = Step::from_u32(step).unwrap_or(Step::Exec);
            Ok(Some((step, errno)))
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "truncated start report",
        )),
    }
}

/// The child between `fork` and `execve`. Async-signal-safe calls only: no allocation, no
/// locks, no Rust I/O. A failure is written to the report pipe as (step, errno) and ends the
/// child with status 127.
fn child(launch: &Launch, sources: &[RawFd], report: RawFd, parent: libc::pid_t) -> ! {
    // SAFETY: see `child_steps`; it only returns when a step failed.
    let (step, report) = unsafe { child_steps(launch, sources, report, parent) };
    // SAFETY: reading this thread's errno slot, writing our stack buffer to the report pipe
    // and _exit are async-signal-safe; nothing runs after _exit.
    unsafe {
        let errno = *libc::__errno_location();
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&(step as u32).to_ne_bytes());
        msg[4..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(report, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// Places the fds, drops privileges and execs. Returns only on failure: the step that failed
/// (errno still set) and where the report pipe now is.
///
/// # Safety
/// Only for the child between fork and execve, where nothing but async-signal-safe calls may
/// run.
unsafe fn child_steps(
    launch: &Launch,
    sources: &[RawFd],
    report: RawFd,
    parent: libc::pid_t,
) -> (Step, RawFd) {
    // SAFETY: each call below is an async-signal-safe system call whose pointer arguments
    // point into `launch`, `sources` or this stack frame, all valid until execve.
    unsafe {
        // The supervisor blocks the signals it reads through signalfd; a helper must not
        // inherit that mask, nor our ignored SIGPIPE.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            return (Step::SignalMask, report);
        }
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // Its own session: a Ctrl-C on the supervisor's terminal (SIGINT to the whole
        // foreground process group) must reach only the supervisor, which then stops the
        // helpers in order.
        if libc::setsid() < 0 {
            return (Step::NewSession, report);
        }

        // Lift every source above the target range first, so placing one cannot clobber
        // another; the report pipe goes right after the targets and closes on exec.
        let count = sources.len() as RawFd;
        let report_slot = SETTINGS_FD + count;
        let floor = report_slot + 1;
        let mut lifted = [0 as RawFd; 16];
        if sources.len() > lifted.len() {
            *libc::__errno_location() = libc::EMFILE;
            return (Step::DupFds, report);
        }
        for (slot, src) in lifted.iter_mut().zip(sources) {
            *slot = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, floor);
            if *slot < 0 {
                return (Step::DupFds, report);
            }
        }
        let report_lifted = libc::fcntl(report, libc::F_DUPFD_CLOEXEC, floor);
        if report_lifted < 0 {
            return (Step::DupFds, report);
        }
        if libc::dup2(launch.dev_null.as_raw_fd(), 0) < 0 {
            return (Step::Stdin, report_lifted);
        }
        for (i, src) in lifted[..sources.len()].iter().enumerate() {
            // dup2 leaves the target without close-on-exec: these are what the helper keeps.
            if libc::dup2(*src, SETTINGS_FD + i as RawFd) < 0 {
                return (Step::DupFds, report_lifted);
            }
        }
        if libc::dup3(report_lifted, report_slot, libc::O_CLOEXEC) < 0 {
            return (Step::DupFds, report_lifted);
        }
        let report = report_slot;
        if libc::syscall(
            libc::SYS_close_range,
            floor as libc::c_uint,
            libc::c_uint::MAX,
            0,
        ) != 0
        {
            return (Step::CloseRange, report);
        }
        if let Some(creds) = &launch.creds
            && let Err(step) = drop_to(creds, launch.cap_last)
        {
            return (step, report);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
            return (Step::NoNewPrivs, report);
        }
        // Set after the uid change, which would clear it.
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return (Step::ParentDeathSignal, report);
        }
        if libc::getppid() != parent {
            *libc::__errno_location() = libc::ESRCH;
            return (Step::ParentGone, report);
        }
        libc::execve(
            launch.path.as_ptr(),
            launch.argv_ptrs.as_ptr(),
            launch.envp_ptrs.as_ptr(),
        );
        (Step::Exec, report)
    }
}

/// Header and data of `capset(2)`, version 3 (64-bit capability sets).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Becomes `creds` with no capability left in any set: the bounding set is emptied first
/// (that needs CAP_SETPCAP, which the uid change then drops), ambient cleared, ids set, and
/// finally the inheritable set, which a uid change keeps, zeroed.
///
/// # Safety
/// Only for the child between fork and execve: async-signal-safe calls only.
unsafe fn drop_to(creds: &Creds, cap_last: u32) -> Result<(), Step> {
    // SAFETY: integer-only prctl/setres*id calls and setgroups/capset reading our own
    // buffers; all async-signal-safe system calls.
    unsafe {
        for cap in 0..=cap_last {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                && *libc::__errno_location() != libc::EINVAL
            {
                return Err(Step::DropBounding);
            }
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(Step::ClearAmbient);
        }
        if libc::setgroups(creds.groups.len(), creds.groups.as_ptr()) != 0 {
            return Err(Step::SetGroups);
        }
        if libc::setresgid(creds.gid, creds.gid, creds.gid) != 0 {
            return Err(Step::SetGid);
        }
        if libc::setresuid(creds.uid, creds.uid, creds.uid) != 0 {
            return Err(Step::SetUid);
        }
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) != 0
        {
            return Err(Step::ClearCaps);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_codes_round_trip() {
        for s in Step::ALL {
            assert_eq!(Step::from_u32(s as u32), Some(s));
        }
        assert_eq!(Step::from_u32(0), None);
    }

    #[test]
    fn exec_failure_is_reported_with_its_errno() {
        let launch = Launch::new(Path::new("/nonexistent/helper"), "x", None, 40).unwrap();
        let memfd = crate::host::memfd::sealed(c"t", b"").unwrap();
        let err = launch.spawn(&memfd, &[]).unwrap_err();
        match err {
            SpawnError::Child { step, source } => {
                assert_eq!(step, Step::Exec);
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
            }
            other => panic!("{other}"),
        }
    }
}
