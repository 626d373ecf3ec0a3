//! A supervised instance for the integration tests: `joblet init` into a temporary directory,
//! the test helper installed under the four helper names, the real `joblet` binary running it
//! with a `NOTIFY_SOCKET` we listen on. The guard kills whatever is left if a test fails.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const JOBLET: &str = env!("CARGO_BIN_EXE_joblet");
pub const TEST_HELPER: &str = env!("CARGO_BIN_EXE_joblet-test-helper");
pub const HELPERS: [&str; 4] = [
    "joblet-stated",
    "joblet-persistd",
    "joblet-spawner",
    "joblet-api",
];

/// The IPC sockets in the run directory.
pub const SOCKETS: [&str; 4] = [
    "spawner.sock",
    "persistd-output.sock",
    "persistd.sock",
    "stated.sock",
];

/// Prints why and returns true when the test cannot run here (it needs root to change uids).
pub fn skip_unless_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        false
    } else {
        eprintln!("skipped: the supervisor tests need root (setuid, chown)");
        true
    }
}

/// Replaces exactly one occurrence of `from`.
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
    text.replacen(from, to, 1)
}

pub struct Instance {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    notify: UnixDatagram,
    pub child: Option<Child>,
    pub notices: Vec<String>,
}

impl Instance {
    /// `joblet init` plus the test settings: the test helper as every helper, short restart
    /// delays and stop timeout, any free port. `edit` may change the config text further.
    pub fn new(edit: impl FnOnce(String) -> String) -> Instance {
        let tmp = tempfile::tempdir().unwrap();
        // The helpers' users must be able to pass through.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for name in HELPERS {
            std::fs::copy(TEST_HELPER, bin.join(name)).unwrap();
            std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        let dir = tmp.path().join("inst");
        let out = Command::new(JOBLET)
            .args(["init", "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.join("config/joblet-config.yml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text = replace_once(
            &text,
            "\nsupervisor:\n",
            &format!("\nsupervisor:\n  binDir: \"{}\"\n", bin.display()),
        );
        text = replace_once(&text, "port: 50051", "port: 0");
        text = replace_once(&text, "minBackoff: \"500ms\"", "minBackoff: \"100ms\"");
        text = replace_once(&text, "maxBackoff: \"30s\"", "maxBackoff: \"400ms\"");
        text = replace_once(&text, "stopTimeout: \"10s\"", "stopTimeout: \"3s\"");
        text = replace_once(
            &text,
            "cleanupTimeout: \"5s\"\n\ncgroup",
            "cleanupTimeout: \"1s\"\n\ncgroup",
        );
        text = edit(text);
        std::fs::write(&config, text).unwrap();
        let notify = UnixDatagram::bind(tmp.path().join("notify.sock")).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Instance {
            log: tmp.path().join("joblet.log"),
            tmp,
            dir,
            config,
            notify,
            child: None,
            notices: Vec::new(),
        }
    }

    /// A helper's own directory, where the test helper reports.
    pub fn helper_dir(&self, helper: &str) -> PathBuf {
        match helper {
            "joblet-stated" => self.dir.join("state"),
            "joblet-persistd" => self.dir.join("logs"),
            // Beside the spawner's directory, which is a tmpfs while joblet runs.
            "joblet-spawner" => self.dir.join("run/spawner-helper"),
            "joblet-api" => self.dir.join("data"),
            other => panic!("no helper {other}"),
        }
    }

    /// Starts `joblet --config ...` with its output in `self.log`.
    pub fn spawn(&mut self) {
        let mut cmd = Command::new(JOBLET);
        cmd.arg("--config").arg(&self.config);
        self.spawn_command(cmd);
    }

    /// Starts joblet as a member of the cgroup v2 directory `cgroup` (a shell joins it, then
    /// execs joblet, so the pid stays the same).
    pub fn spawn_in_cgroup(&mut self, cgroup: &Path) {
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            "echo $$ > \"$1/cgroup.procs\" && exec \"$0\" --config \"$2\"",
        ])
        .arg(JOBLET)
        .arg(cgroup)
        .arg(&self.config);
        self.spawn_command(cmd);
    }

    fn spawn_command(&mut self, mut cmd: Command) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = cmd
            .env("NOTIFY_SOCKET", self.tmp.path().join("notify.sock"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Starts and waits for READY=1 and every helper's report.
    pub fn start(&mut self) {
        self.spawn();
        self.wait_notice("READY=1", Duration::from_secs(20));
        for h in HELPERS {
            self.wait_report(h, |_| true);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn drain_notices(&mut self) {
        let mut buf = [0u8; 512];
        while let Ok(n) = self.notify.recv(&mut buf) {
            self.notices
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    pub fn wait_notice(&mut self, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain_notices();
            if self.notices.iter().any(|n| n.lines().any(|l| l == what)) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "joblet exited ({status}) before {what}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} in time:\n{}",
                self.log_text()
            );
        }
    }

    /// The helper's report, once one exists that satisfies `accept`.
    pub fn wait_report(
        &self,
        helper: &str,
        accept: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> BTreeMap<String, String> {
        let path = self.helper_dir(helper).join("report");
        wait_for(Duration::from_secs(15), || {
            let text = std::fs::read_to_string(&path).ok()?;
            let report = parse_report(&text);
            accept(&report).then_some(report)
        })
        .unwrap_or_else(|| panic!("no report from {helper}:\n{}", self.log_text()))
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    /// Waits for joblet to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = wait_for(timeout, || child.try_wait().unwrap());
        match status {
            Some(s) => s,
            None => panic!("joblet did not exit in {timeout:?}:\n{}", self.log_text()),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // On a failed test: kill joblet, then everything its helpers reported, so nothing
        // outlives the test.
        if let Some(child) = &mut self.child
            && child.try_wait().ok().flatten().is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
            // Killed, joblet could not unmount the spawner's records tmpfs.
            let spawner_dir = self.dir.join("run/spawner");
            let _ = nix::mount::umount2(&spawner_dir, nix::mount::MntFlags::MNT_DETACH);
        }
        for h in HELPERS {
            let path = self.helper_dir(h);
            let report = std::fs::read_to_string(path.join("report")).unwrap_or_default();
            let report = parse_report(&report);
            for key in ["pid", "orphan"] {
                if let Some(pid) = report.get(key).and_then(|p| p.parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

pub fn parse_report(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Polls `f` every 20 ms until it returns `Some`, at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True while a process with `pid` exists (zombies included).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The parent pid of `pid`, from /proc.
pub fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
