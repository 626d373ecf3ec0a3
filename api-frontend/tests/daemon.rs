//! The `joblet-api` binary as the supervisor starts it: settings in an inherited fd, the
//! TCP listener inherited, running as an unprivileged user. Checks its hardening, that it
//! serves mutual TLS, and that it refuses to run as root and stops cleanly on SIGTERM.

mod support;

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use joblet_api_proto::CancelJobRequest;
use joblet_api_proto::job_service_client::JobServiceClient;
use joblet_ipc_proto::settings::{DefaultLimits, FrontendSettings, Listen, LogFormat, Logging};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use support::Pki;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const NOBODY: u32 = 65534;

/// Lets a child inherit `fd` at the same number.
fn inheritable(fd: &impl AsFd) {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
}

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn settings(dir: &std::path::Path, pki: &Pki, tcp_fd: i32) -> FrontendSettings {
    let server = pki.server();
    FrontendSettings {
        logging: Logging {
            level: "info".into(),
            format: LogFormat::Json,
        },
        listen: vec![Listen::Tcp { fd: tcp_fd }],
        address: "127.0.0.1:0".into(),
        node_id: "daemon-test".into(),
        server_cert_pem: server.cert_pem,
        server_key_pem: server.key_pem,
        ca_cert_pem: pki.ca_pem(),
        spawner_socket: dir.join("spawner.sock"),
        state_socket: dir.join("stated.sock"),
        logs_socket: dir.join("persistd.sock"),
        audit_log: dir.join("audit.log"),
        data_dir: dir.join("data"),
        defaults: DefaultLimits::default(),
        stop_grace_ms: 1000,
        max_upload_bytes: 0,
        max_concurrent_jobs: 0,
        default_timeout_ms: 0,
        system_interval_ms: 10_000,
    }
}

/// Starts the binary with its settings in an inherited file, as `uid`.
fn spawn(dir: &std::path::Path, settings: &FrontendSettings, uid: Option<u32>) -> Daemon {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&postcard::to_allocvec(settings).unwrap())
        .unwrap();
    file.rewind().unwrap();
    inheritable(&file);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_joblet-api"));
    cmd.arg("--settings-fd")
        .arg(file.as_raw_fd().to_string())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(uid) = uid {
        // std drops supplementary groups itself when root changes uid.
        cmd.uid(uid).gid(uid);
    }
    let child = cmd.spawn().unwrap();
    drop(file);
    Daemon { child }
}

fn status_field(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

#[tokio::test]
async fn runs_unprivileged_serves_tls_and_stops_on_sigterm() {
    let pki = Pki::new("daemon-ca");
    let dir = tempfile::tempdir().unwrap();
    nix::unistd::chown(dir.path(), Some(NOBODY.into()), Some(NOBODY.into())).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    inheritable(&listener);
    // A stray fd the daemon must close.
    let stray = tempfile::tempfile().unwrap();
    inheritable(&stray);
    let s = settings(dir.path(), &pki, listener.as_raw_fd());
    let mut daemon = spawn(dir.path(), &s, Some(NOBODY));
    drop(listener);
    drop(stray);
    let pid = daemon.child.id();

    let admin = pki.client("admin-client", Some("admin"));
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.ca_pem()))
        .identity(Identity::from_pem(&admin.cert_pem, &admin.key_pem))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = JobServiceClient::new(channel)
        .cancel_job(CancelJobRequest { uuid: "x".into() })
        .await
        .unwrap_err();
    // Answered by the frontend itself (the id is checked before any backend is asked).
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    assert_eq!(
        status_field(pid, "CapEff").as_deref(),
        Some("0000000000000000")
    );
    assert_eq!(
        status_field(pid, "CapPrm").as_deref(),
        Some("0000000000000000")
    );
    assert_eq!(status_field(pid, "NoNewPrivs").as_deref(), Some("1"));
    // A non-dumpable process's /proc files belong to root, not to its own uid.
    let proc_owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap()
        .uid();
    assert_eq!(proc_owner, 0, "joblet-api is still dumpable");
    let audit = std::fs::metadata(dir.path().join("audit.log")).unwrap();
    assert_eq!((audit.uid(), audit.mode() & 0o777), (NOBODY, 0o600));
    let data = std::fs::metadata(dir.path().join("data")).unwrap();
    assert_eq!((data.uid(), data.mode() & 0o777), (NOBODY, 0o700));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = daemon.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "joblet-api did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    daemon
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");
    assert!(
        stderr.contains("closing an inherited file descriptor"),
        "{stderr}"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(audit.contains("\"method\":\"CancelJob\""), "{audit}");
}

#[test]
fn refuses_to_run_as_root() {
    let pki = Pki::new("daemon-ca");
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    inheritable(&listener);
    let s = settings(dir.path(), &pki, listener.as_raw_fd());
    let mut daemon = spawn(dir.path(), &s, None);
    let status = daemon.child.wait().unwrap();
    let mut stderr = String::new();
    daemon
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(stderr.contains("refusing to run as root"), "{stderr}");
    assert!(
        !dir.path().join("audit.log").exists(),
        "nothing may be created before the refusal"
    );
}
