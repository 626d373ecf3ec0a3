//! The `joblet-stated` binary, started the way the supervisor starts it: as its own user
//! (nobody here), settings in a memfd and the listening socket inherited, both by number.
//! Needs root (to start the daemon as another user); skipped with a message otherwise.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use joblet_ipc_proto::channel::state::{FromState, ToState};
use joblet_ipc_proto::job::{JobId, JobRecord, JobSpec, JobState};
use joblet_ipc_proto::settings::{Listen, LogFormat, Logging, StatedSettings};
use joblet_ipc_proto::{Channel, IpcError};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
};
use nix::unistd::Pid;

const NOBODY: u32 = 65534;

/// Descriptors are made inheritable for one spawn at a time, so no other child gets them.
static SPAWN: Mutex<()> = Mutex::new(());

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn job() -> JobId {
    JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").unwrap()
}

fn record() -> JobRecord {
    JobRecord {
        id: job(),
        spec: JobSpec {
            command: "/bin/true".into(),
            ..JobSpec::default()
        },
        state: JobState::Initializing,
        node_id: "n".into(),
        created_ns: 1,
        started_ns: 0,
        ended_ns: 0,
        outcome: None,
        sealed_secrets: Vec::new(),
    }
}

struct Layout {
    base: tempfile::TempDir,
}

impl Layout {
    /// A base directory others may traverse, with the state directory owned by nobody but
    /// left too open (0750), as a careless installer might.
    fn new() -> Layout {
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let state = base.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, PermissionsExt::from_mode(0o750)).unwrap();
        std::os::unix::fs::chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();
        Layout { base }
    }
    fn db(&self) -> PathBuf {
        self.base.path().join("state").join("jobs.redb")
    }
    fn socket(&self, run: u32) -> PathBuf {
        self.base.path().join(format!("stated-{run}.sock"))
    }
}

fn seqpacket_listener(path: &Path) -> OwnedFd {
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    listen(&fd, Backlog::new(16).unwrap()).unwrap();
    fd
}

fn settings_memfd(settings: &StatedSettings) -> OwnedFd {
    let fd = memfd_create("stated-settings", MFdFlags::MFD_CLOEXEC).unwrap();
    let mut file = File::from(fd);
    file.write_all(&postcard::to_allocvec(settings).unwrap())
        .unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    OwnedFd::from(file)
}

fn set_inheritable(fd: &OwnedFd, inheritable: bool) {
    let flags = if inheritable {
        FdFlag::empty()
    } else {
        FdFlag::FD_CLOEXEC
    };
    fcntl(fd, FcntlArg::F_SETFD(flags)).unwrap();
}

/// A started daemon, killed on drop if still running.
struct Daemon {
    child: Child,
}

impl Daemon {
    /// Starts the binary with `uid` (None: as the caller), a fresh listener at `socket`, and
    /// one extra inherited descriptor it does not own (which it must close).
    fn start(layout: &Layout, socket: &Path, uid: Option<u32>) -> Daemon {
        let listener = seqpacket_listener(socket);
        let settings = StatedSettings {
            logging: Logging {
                level: "debug".into(),
                format: LogFormat::Text,
            },
            listen: vec![Listen::Ipc {
                channel: Channel::State,
                fd: listener.as_raw_fd(),
            }],
            db_path: layout.db(),
            api_uid: 0,
        };
        let memfd = settings_memfd(&settings);
        let decoy = OwnedFd::from(File::open("/dev/zero").unwrap());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_joblet-stated"));
        cmd.arg("--settings-fd")
            .arg(memfd.as_raw_fd().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let guard = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
        for fd in [&listener, &memfd, &decoy] {
            set_inheritable(fd, true);
        }
        let child = cmd.spawn().unwrap();
        for fd in [&listener, &memfd, &decoy] {
            set_inheritable(fd, false);
        }
        drop(guard);
        Daemon { child }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits for the process to end, up to `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "daemon did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&mut self) -> String {
        let mut out = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut out);
        }
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn status_field(pid: Pid, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in status"))
        .trim()
        .to_owned()
}

/// What the daemon's descriptors point at.
fn fd_targets(pid: Pid) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect()
}

async fn try_call(socket: &Path, request: ToState) -> Result<FromState, IpcError> {
    let mut conn = joblet_ipc_proto::tokio::connect(socket, Channel::State).await?;
    conn.send(&request, &[]).await?;
    Ok(conn.recv::<FromState>().await?.msg)
}

impl Daemon {
    /// One request on a new connection; on failure, shows what the daemon logged.
    async fn call(&mut self, socket: &Path, request: ToState) -> FromState {
        match try_call(socket, request).await {
            Ok(reply) => reply,
            Err(e) => {
                let _ = self.child.kill();
                panic!("request failed: {e}\ndaemon log:\n{}", self.stderr());
            }
        }
    }
}

#[tokio::test]
async fn runs_as_its_own_user_and_keeps_records_across_restarts_and_kills() {
    if !is_root() {
        eprintln!("skipped: starting the daemon as another user needs root");
        return;
    }
    let layout = Layout::new();

    // First run: create a record, then stop with SIGTERM.
    let mut daemon = Daemon::start(&layout, &layout.socket(1), Some(NOBODY));
    let reply = daemon
        .call(&layout.socket(1), ToState::Create { record: record() })
        .await;
    assert!(matches!(reply, FromState::Done), "{reply:?}");
    let pid = daemon.pid();
    assert_eq!(status_field(pid, "Uid"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(pid, "CapEff"), "0000000000000000");
    assert_eq!(status_field(pid, "CapPrm"), "0000000000000000");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    let fds = fd_targets(pid);
    assert!(
        !fds.iter().any(|t| t == "/dev/zero"),
        "decoy fd kept: {fds:?}"
    );
    assert!(
        !fds.iter().any(|t| t.contains("memfd:")),
        "settings fd kept: {fds:?}"
    );
    assert!(fds.iter().any(|t| t.ends_with("jobs.redb")), "{fds:?}");
    kill(pid, Signal::SIGTERM).unwrap();
    let status = daemon.wait(Duration::from_secs(10));
    let log = daemon.stderr();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(
        !log.contains("/bin/true"),
        "record content reached the log:\n{log}"
    );

    let db = std::fs::metadata(layout.db()).unwrap();
    assert_eq!((db.uid(), db.mode() & 0o7777), (NOBODY, 0o600));
    let dir = std::fs::metadata(layout.db().parent().unwrap()).unwrap();
    assert_eq!(dir.mode() & 0o7777, 0o700);

    // Second run: the record is there; move it on, then SIGKILL right after the answer.
    let mut daemon = Daemon::start(&layout, &layout.socket(2), Some(NOBODY));
    match daemon
        .call(&layout.socket(2), ToState::Get { job: job() })
        .await
    {
        FromState::Record(r) => assert_eq!(r, record()),
        other => panic!("{other:?}"),
    }
    let reply = daemon
        .call(
            &layout.socket(2),
            ToState::Transition {
                job: job(),
                to: JobState::Running,
                at_ns: 77,
                outcome: None,
            },
        )
        .await;
    assert!(matches!(reply, FromState::Done), "{reply:?}");
    kill(daemon.pid(), Signal::SIGKILL).unwrap();
    assert_eq!(daemon.wait(Duration::from_secs(10)).signal(), Some(9));

    // Third run: the acknowledged transition survived the kill.
    let mut daemon = Daemon::start(&layout, &layout.socket(3), Some(NOBODY));
    match daemon
        .call(&layout.socket(3), ToState::Get { job: job() })
        .await
    {
        FromState::Record(r) => assert_eq!((r.state, r.started_ns), (JobState::Running, 77)),
        other => panic!("{other:?}"),
    }
    kill(daemon.pid(), Signal::SIGINT).unwrap();
    let status = daemon.wait(Duration::from_secs(10));
    assert!(status.success(), "exit {status:?}\n{}", daemon.stderr());
}

#[test]
fn refuses_to_run_as_root() {
    if !is_root() {
        eprintln!("skipped: the check is about running as root");
        return;
    }
    let layout = Layout::new();
    let mut daemon = Daemon::start(&layout, &layout.socket(1), None);
    let status = daemon.wait(Duration::from_secs(10));
    let log = daemon.stderr();
    assert!(!status.success(), "ran as root:\n{log}");
    assert!(log.contains("must not run as root"), "{log}");
    assert!(
        !layout.db().exists(),
        "touched the database before refusing"
    );
}
