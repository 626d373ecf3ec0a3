//! The real `joblet-persistd` binary, started as the supervisor starts it (its own uid,
//! settings fd, inherited listeners), SIGKILLed mid-stream and restarted.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use joblet_ipc_proto::Channel;
use joblet_ipc_proto::channel::output::FromPersistOutput;
use joblet_ipc_proto::settings::{Listen, LogFormat, Logging, PersistdSettings};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
};
use nix::unistd::Pid;

const NOBODY: u32 = 65534;
/// Where the child finds its inherited fds (high, so they never collide with ours).
const OUTPUT_FD: RawFd = 900;
const LOGS_FD: RawFd = 901;
const SETTINGS_FD: RawFd = 902;
/// An fd the child did not ask for; it must close it at start.
const STRAY_FD: RawFd = 903;

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

/// What the supervisor would prepare: listeners that outlive any one persistd process.
struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    output_path: PathBuf,
    logs_path: PathBuf,
    output: OwnedFd,
    logs: OwnedFd,
    settings: PathBuf,
    log_file: PathBuf,
}

impl Setup {
    fn new(uid: u32) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        // The child runs as `uid` and must reach its data dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        chown(&data, Some(uid), Some(uid)).unwrap();
        let output_path = dir.path().join("persistd-output.sock");
        let logs_path = dir.path().join("persistd.sock");
        let settings = PersistdSettings {
            logging: Logging {
                level: "debug".into(),
                format: LogFormat::Text,
            },
            listen: vec![
                Listen::Ipc {
                    channel: Channel::Output,
                    fd: OUTPUT_FD,
                },
                Listen::Ipc {
                    channel: Channel::Logs,
                    fd: LOGS_FD,
                },
            ],
            data_dir: data.clone(),
            spawner_uid: me(),
            api_uid: me(),
            metrics_interval_ms: 200,
        };
        let settings_path = dir.path().join("settings.bin");
        File::create(&settings_path)
            .unwrap()
            .write_all(&postcard::to_allocvec(&settings).unwrap())
            .unwrap();
        Setup {
            data,
            output: seqpacket_listener(&output_path),
            logs: seqpacket_listener(&logs_path),
            output_path,
            logs_path,
            settings: settings_path,
            log_file: dir.path().join("persistd.log"),
            _dir: dir,
        }
    }

    /// Starts the binary as `uid` with the listeners, the settings and one stray fd.
    fn spawn(&self, uid: u32) -> Child {
        let settings = File::open(&self.settings).unwrap();
        let stray = File::open("/dev/null").unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .unwrap();
        let moves = [
            (self.output.as_raw_fd(), OUTPUT_FD),
            (self.logs.as_raw_fd(), LOGS_FD),
            (settings.as_raw_fd(), SETTINGS_FD),
            (stray.as_raw_fd(), STRAY_FD),
        ];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_joblet-persistd"));
        cmd.arg("--settings-fd")
            .arg(SETTINGS_FD.to_string())
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: the closure runs in the forked child before exec and only calls dup2, which
        // is async-signal-safe; it touches no memory but the captured array of integers.
        unsafe {
            cmd.pre_exec(move || {
                for (from, to) in moves {
                    // dup2 clears FD_CLOEXEC on the copy, so exactly these fds are inherited.
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd.spawn().expect("spawn joblet-persistd")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }
}

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// Waits until the child answers on the logs channel, i.e. it is up and serving.
async fn wait_serving(setup: &Setup, child: &mut Child) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("persistd exited with {status}:\n{}", setup.log_text());
        }
        let attempt = tokio::time::timeout(
            Duration::from_secs(2),
            joblet_ipc_proto::tokio::connect(&setup.logs_path, Channel::Logs),
        )
        .await;
        if let Ok(Ok(_)) = attempt {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "persistd not serving:\n{}",
            setup.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_root() -> bool {
    if me() != 0 {
        eprintln!("SKIPPED: starting persistd as another user needs root");
        return false;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_loses_and_duplicates_nothing() {
    if !is_root() {
        return;
    }
    let setup = Setup::new(NOBODY);
    let mut child = setup.spawn(NOBODY);
    wait_serving(&setup, &mut child).await;

    // It runs unprivileged and hardened, and closed the fd it did not expect.
    let pid = child.id();
    assert!(
        status_field(pid, "Uid")
            .split_whitespace()
            .all(|u| u == "65534")
    );
    assert_eq!(status_field(pid, "CapEff"), "0000000000000000");
    assert_eq!(status_field(pid, "CapPrm"), "0000000000000000");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !fds.contains(&STRAY_FD.to_string()),
        "stray fd kept: {fds:?}"
    );
    assert!(
        !fds.contains(&SETTINGS_FD.to_string()),
        "settings fd kept: {fds:?}"
    );
    let mode = std::fs::metadata(setup.data.join("jobs"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    let job = new_job();
    let lines = 1500;
    let (pipes, writer) = start_job(lines, Duration::from_millis(2));
    let (_conn, reply) = attach(&setup.output_path, &job, &pipes).await;
    assert!(
        matches!(reply, FromPersistOutput::Attached { .. }),
        "{reply:?}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while seq_count(&stored(&setup.logs_path, &job).await) < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            setup.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    // The job keeps writing into its pipe while nobody reads it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !writer.is_finished(),
        "the job should outlive the kill for this test"
    );

    let mut child = setup.spawn(NOBODY);
    wait_serving(&setup, &mut child).await;
    let (mut conn, reply) = attach(&setup.output_path, &job, &pipes).await;
    assert!(
        matches!(reply, FromPersistOutput::Attached { .. }),
        "{reply:?}"
    );
    writer.join().unwrap();
    let drained = recv_output(&mut conn).await;
    assert!(
        matches!(drained, FromPersistOutput::Drained { .. }),
        "{drained:?}"
    );
    let r = read(&setup.logs_path, &job, 0, true).await;
    assert!(r.complete);
    assert_all_lines(&r.chunks, lines);

    // SIGTERM stops it cleanly.
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        setup.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_run_as_root() {
    if !is_root() {
        return;
    }
    let setup = Setup::new(0);
    let mut child = setup.spawn(0);
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(!status.success());
    let log = setup.log_text();
    assert!(log.contains("refusing to run as root"), "{log}");
    // It stopped before touching its data directory.
    assert!(!setup.data.join("jobs").exists());
}

/// Sampling needs no privilege: the binary, running as nobody with no capability, reads a
/// root-created cgroup through the directory fds alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_a_cgroup_through_handed_over_fds_as_an_unprivileged_user() {
    if !is_root() {
        return;
    }
    let cgroup = match common::cgroup::TestCgroup::create() {
        Ok(cg) => cg,
        Err(reason) => {
            eprintln!("SKIPPED: no cgroup for the test: {reason}");
            return;
        }
    };
    cgroup.set_memory_limit(96 << 20);
    let mut sleeper = Command::new("sleep");
    sleeper.arg("30").stdin(Stdio::null());
    cgroup.run_inside(&mut sleeper);
    let sleeper = KillOnDrop(sleeper.spawn().unwrap());

    let setup = Setup::new(NOBODY);
    let mut child = setup.spawn(NOBODY);
    wait_serving(&setup, &mut child).await;
    let _persistd = KillOnDrop(child);

    let job = new_job();
    let (pipes, running) = open_job();
    let (conn, reply) = attach(&setup.output_path, &job, &pipes).await;
    assert!(
        matches!(reply, FromPersistOutput::Attached { .. }),
        "{reply:?}"
    );
    watch_on(&conn, &job, &cgroup).await;
    let follower = MetricFollower::start(&setup.logs_path, &job);
    let s = follower.until("two samples", |s| s.len() >= 2).await;
    let last = s.last().unwrap();
    assert_eq!(last.pids, 1, "{last:?}");
    assert_eq!(last.memory_limit, 96 << 20, "{last:?}");
    assert!(last.memory_bytes > 0 && last.cpu_usage_ns > 0, "{last:?}");
    let log = setup.log_text();
    assert!(!log.contains("cannot be read"), "{log}");
    drop((sleeper, running));
}

/// A cgroup persistd's uid may not search (mode 0700, as a umask of 077 makes it) cannot be
/// sampled without privilege: it is refused with an error saying so, nothing is sampled, and
/// the output connection carries on (the job's output is stored and drained).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cgroup_it_may_not_search_is_reported_and_the_output_connection_carries_on() {
    if !is_root() {
        return;
    }
    let cgroup = match common::cgroup::TestCgroup::create() {
        Ok(cg) => cg,
        Err(reason) => {
            eprintln!("SKIPPED: no cgroup for the test: {reason}");
            return;
        }
    };
    cgroup.chmod(0o700);
    let setup = Setup::new(NOBODY);
    let mut child = setup.spawn(NOBODY);
    wait_serving(&setup, &mut child).await;
    let _persistd = KillOnDrop(child);

    let job = new_job();
    let (pipes, writer) = start_job(20, Duration::from_millis(5));
    let mut conn = joblet_ipc_proto::tokio::connect(&setup.output_path, Channel::Output)
        .await
        .unwrap();
    watch_on(&conn, &job, &cgroup).await;
    let reply = attach_on(&mut conn, &job, &pipes).await;
    assert!(
        matches!(reply, FromPersistOutput::Attached { .. }),
        "{reply:?}"
    );
    writer.join().unwrap();
    let drained = recv_output(&mut conn).await;
    assert!(
        matches!(drained, FromPersistOutput::Drained { .. }),
        "{drained:?}"
    );
    let r = metrics(&setup.logs_path, metrics_request(&job, 0, 0, 0, false))
        .await
        .unwrap();
    assert!(r.samples.is_empty() && r.complete, "{r:?}");
    assert_all_lines(&stored(&setup.logs_path, &job).await, 20);
    let log = setup.log_text();
    assert!(
        log.contains("may not look up files") && log.contains("mode 0711"),
        "{log}"
    );
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
