//! `joblet-test-helper`: a stand-in for the four helpers in the supervisor's own tests, which
//! cannot wait for the real ones. Installed under each helper's name, it learns its role from
//! `argv[0]`, reports how it was started (ids, capabilities, signal state, open fds, the
//! listeners it inherited, its decoded settings) into `report` in its own directory, then
//! waits for SIGTERM. Files in that directory change its behaviour:
//! `exit-code` (exit with that code right after reporting), `ignore-term` (ignore SIGTERM),
//! `orphan` (leave a `sleep` process orphaned, to be re-parented to the supervisor).
//! On SIGTERM it writes `stopped` (wall-clock ns) and exits 0.

use std::fmt::Write as _;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use joblet_ipc_proto::inherit;
use joblet_ipc_proto::settings::{
    self, FrontendSettings, Listen, PersistdSettings, SpawnerSettings, StatedSettings,
};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::socket::{getsockopt, sockopt};

fn main() {
    if let Err(e) = run() {
        eprintln!("joblet-test-helper: {e}");
        std::process::exit(90);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let role = args
        .first()
        .and_then(|a| Path::new(a).file_name()?.to_str().map(str::to_owned))
        .ok_or("no argv[0]")?;
    let settings_fd: RawFd = match args.get(1..3) {
        Some([flag, n]) if flag == "--settings-fd" => n.parse().map_err(|_| "bad fd number")?,
        _ => return Err(format!("usage: {role} --settings-fd N, got {args:?}")),
    };
    // Everything about how we were started, before we open anything ourselves.
    let mut report = String::new();
    let _ = writeln!(report, "role={role}");
    let _ = writeln!(report, "argv={}", args.join(" "));
    let _ = writeln!(report, "pid={}", std::process::id());
    let _ = writeln!(report, "ppid={}", nix::unistd::getppid());
    let _ = writeln!(report, "fds={}", open_fds().join(","));
    let env: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    let _ = writeln!(report, "env={}", env.join(","));
    let pdeath = nix::sys::prctl::get_pdeathsig()
        .ok()
        .flatten()
        .map_or(0, |s| s as i32);
    let _ = writeln!(report, "pdeathsig={pdeath}");
    report.push_str(&proc_status()?);
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if let Some(unified) = cgroup.lines().find_map(|l| l.strip_prefix("0::")) {
        let _ = writeln!(report, "cgroup={unified}");
    }

    let settings = inherit::take(settings_fd).map_err(|e| e.to_string())?;
    let (dir, listen) = decode(&role, settings, &mut report)?;
    for l in listen {
        report.push_str(&describe_listener(&l)?);
    }

    let starts = dir.join("starts");
    append(&starts, &format!("{}\n", std::process::id()))?;
    if dir.join("orphan").exists() {
        let pid = leave_orphan()?;
        let _ = writeln!(report, "orphan={pid}");
    }
    write_atomically(&dir.join("report"), &report)?;

    if let Ok(code) = std::fs::read_to_string(dir.join("exit-code")) {
        std::process::exit(code.trim().parse().unwrap_or(1));
    }
    if dir.join("ignore-term").exists() {
        // SAFETY: installing SIG_IGN, no handler code runs.
        unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }.map_err(|e| e.to_string())?;
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    let mut term = SigSet::empty();
    term.add(Signal::SIGTERM);
    term.thread_block().map_err(|e| e.to_string())?;
    term.wait().map_err(|e| e.to_string())?;
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_nanos();
    write_atomically(&dir.join("stopped"), &ns.to_string())?;
    Ok(())
}

/// Decodes the role's settings (proving the contract) and returns its own directory and
/// listeners.
fn decode(role: &str, fd: OwnedFd, report: &mut String) -> Result<(PathBuf, Vec<Listen>), String> {
    let e = |e: joblet_ipc_proto::IpcError| format!("settings: {e}");
    let out = match role {
        "joblet-stated" => {
            let s: StatedSettings = settings::read_from_fd(fd).map_err(e)?;
            let _ = writeln!(report, "api_uid={}", s.api_uid);
            let _ = writeln!(report, "db_path={}", s.db_path.display());
            let dir = s
                .db_path
                .parent()
                .ok_or("db_path has no parent")?
                .to_owned();
            (dir, s.listen)
        }
        "joblet-persistd" => {
            let s: PersistdSettings = settings::read_from_fd(fd).map_err(e)?;
            let _ = writeln!(report, "api_uid={}", s.api_uid);
            let _ = writeln!(report, "spawner_uid={}", s.spawner_uid);
            let _ = writeln!(report, "metrics_interval_ms={}", s.metrics_interval_ms);
            (s.data_dir, s.listen)
        }
        "joblet-spawner" => {
            let s: SpawnerSettings = settings::read_from_fd(fd).map_err(e)?;
            let _ = writeln!(report, "api_uid={}", s.api_uid);
            let _ = writeln!(report, "cgroup_mode={:?}", s.cgroup_mode);
            let _ = writeln!(report, "cgroup_base={}", s.cgroup_base);
            let _ = writeln!(report, "output_socket={}", s.output_socket.display());
            let u = &s.userns;
            let _ = writeln!(
                report,
                "userns={},{},{},{}",
                u.enabled, u.host_base, u.range, u.slots
            );
            let _ = writeln!(report, "landlock={:?}", s.landlock);
            // The spawner's own directory is a tmpfs the supervisor mounts at start and
            // unmounts at stop: this stand-in works beside it, where the test's control
            // files are before the start and its reports are after the stop.
            let dir = s.state_dir.with_file_name("spawner-helper");
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            (dir, s.listen)
        }
        "joblet-api" => {
            let s: FrontendSettings = settings::read_from_fd(fd).map_err(e)?;
            let _ = writeln!(report, "address={}", s.address);
            let _ = writeln!(report, "audit_log={}", s.audit_log.display());
            let _ = writeln!(report, "system_interval_ms={}", s.system_interval_ms);
            let _ = writeln!(
                report,
                "key_is_pem={}",
                s.server_key_pem.contains("PRIVATE KEY")
            );
            (s.data_dir, s.listen)
        }
        other => return Err(format!("unknown role {other}")),
    };
    let _ = writeln!(report, "settings=ok");
    Ok(out)
}

/// `listen.<fd>=<name>,<type>,<listening>,<address>`; the name is the channel, `tcp` or
/// `metrics`.
fn describe_listener(l: &Listen) -> Result<String, String> {
    let (name, fd) = match l {
        Listen::Ipc { channel, fd } => (channel.to_string(), *fd),
        Listen::Tcp { fd } => ("tcp".to_string(), *fd),
        Listen::Metrics { fd } => ("metrics".to_string(), *fd),
    };
    let owned = inherit::take(fd).map_err(|e| e.to_string())?;
    let kind = getsockopt(&owned.as_fd(), sockopt::SockType).map_err(|e| e.to_string())?;
    let accepting = getsockopt(&owned.as_fd(), sockopt::AcceptConn).map_err(|e| e.to_string())?;
    // Kept open for the helper's life, as a real helper would.
    let addr = if matches!(l, Listen::Tcp { .. } | Listen::Metrics { .. }) {
        let l = std::mem::ManuallyDrop::new(std::net::TcpListener::from(owned));
        l.local_addr().map_err(|e| e.to_string())?.to_string()
    } else {
        let l = std::mem::ManuallyDrop::new(std::os::unix::net::UnixListener::from(owned));
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        addr.as_pathname()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    Ok(format!("listen.{fd}={name},{kind:?},{accepting},{addr}\n"))
}

/// Fds open in this process, probed with F_GETFD so the probe opens none itself.
fn open_fds() -> Vec<String> {
    (0..1024)
        // SAFETY: F_GETFD only reads the flags of an integer fd; a closed one yields EBADF.
        .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0)
        .map(|fd| fd.to_string())
        .collect()
}

/// The lines of /proc/self/status that matter: ids, capabilities, signals, no_new_privs.
fn proc_status() -> Result<String, String> {
    let text = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let mut out = String::new();
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(':') {
            let key = match key {
                "Uid" | "Gid" | "Groups" | "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb"
                | "NoNewPrivs" | "SigBlk" | "SigIgn" => key,
                _ => continue,
            };
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            let _ = writeln!(out, "{key}={value}");
        }
    }
    Ok(out)
}

/// Starts a `sleep` whose parent exits at once, so it is re-parented to the nearest child
/// subreaper: the supervisor.
fn leave_orphan() -> Result<u32, String> {
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", "sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"])
        .output()
        .map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| "no orphan pid".to_string())
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}
