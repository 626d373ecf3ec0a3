//! One running Joblet system for a test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bin;
use crate::host::{self, Snapshot};

/// The result of one `rnx` invocation.
#[derive(Debug)]
pub struct RnxOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
}

impl RnxOutput {
    fn from(out: Output) -> RnxOutput {
        RnxOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            raw_stdout: out.stdout,
        }
    }

    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// Panics with both streams unless the command succeeded.
    pub fn expect_ok(self, what: &str) -> RnxOutput {
        assert!(
            self.ok(),
            "{what}: rnx exited {}\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "rnx output is not JSON ({e}):\n{}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A job started by a test.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
}

pub struct System {
    pub dir: tempfile::TempDir,
    pub address: String,
    pub config: PathBuf,
    pub admin: PathBuf,
    pub viewer: PathBuf,
    pub cgroup_base: String,
    supervisor: Option<Child>,
    pub log: PathBuf,
    before: Snapshot,
}

impl System {
    /// Initialises a fresh configuration and starts the system; waits until it answers.
    pub fn start() -> System {
        Self::start_with(|_| {})
    }

    /// Like [`System::start`], letting the test edit the generated `joblet-config.yml`.
    pub fn start_with(edit: impl FnOnce(&mut String)) -> System {
        let mut sys = Self::prepare(edit);
        sys.launch();
        sys
    }

    /// Runs a system that must refuse to run (its configuration edited by `edit`): waits up
    /// to `limit` for joblet to exit on its own, checks that nothing of ours remains, and
    /// returns joblet's exit status and log.
    pub fn run_refused(
        edit: impl FnOnce(&mut String),
        limit: Duration,
    ) -> (std::process::ExitStatus, String) {
        let mut sys = Self::prepare(edit);
        sys.spawn_supervisor();
        let mut child = sys.supervisor.take().expect("joblet started");
        let mut tree = std::collections::HashSet::new();
        let status = wait_exit(&mut child, limit, |pid| {
            tree.extend(host::descendants(pid));
        })
        .unwrap_or_else(|| panic!("joblet still runs after {limit:?}:\n{}", sys.log_text()));
        let tree: Vec<host::Proc> = tree.into_iter().collect();
        let leftovers = host::leftovers(&tree, sys.dir.path(), &sys.cgroup_base, &sys.before);
        assert!(
            leftovers.is_empty(),
            "left behind by a refused start: {leftovers:#?}\n{}",
            sys.log_text()
        );
        (status, sys.log_text())
    }

    /// A fresh configuration from `joblet init`, edited by `edit`; nothing started yet.
    fn prepare(edit: impl FnOnce(&mut String)) -> System {
        let before = host::snapshot();
        let dir = tempfile::Builder::new()
            .prefix("joblet-e2e-")
            .tempdir()
            .expect("temp dir");
        // The helpers run as other users and must traverse to their directories.
        host::chmod(dir.path(), 0o755);
        let address = format!("127.0.0.1:{}", free_port());
        let init = Command::new(bin("joblet"))
            .args(["init", "--dir"])
            .arg(dir.path())
            .args(["--address", &address])
            .output()
            .expect("run joblet init");
        assert!(
            init.status.success(),
            "joblet init failed: {}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        let cfg_dir = dir.path().join("config");
        let config = cfg_dir.join("joblet-config.yml");
        let mut text = std::fs::read_to_string(&config).expect("read config");
        edit(&mut text);
        std::fs::write(&config, &text).expect("write config");
        let cgroup_base = host::yaml_string(&text, &["cgroup", "baseDir"])
            .expect("cgroup.baseDir in the generated config");
        System {
            address,
            config,
            admin: cfg_dir.join("rnx-admin.yml"),
            viewer: cfg_dir.join("rnx-viewer.yml"),
            cgroup_base,
            supervisor: None,
            log: dir.path().join("joblet.log"),
            dir,
            before,
        }
    }

    fn launch(&mut self) {
        self.spawn_supervisor();
        self.wait_ready(Duration::from_secs(30));
    }

    fn spawn_supervisor(&mut self) {
        let log = std::fs::File::create(&self.log).expect("log file");
        let child = Command::new(bin("joblet"))
            .arg("--config")
            .arg(&self.config)
            .env_remove("RNX_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start joblet");
        self.supervisor = Some(child);
    }

    fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .supervisor
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("joblet exited early ({status}):\n{}", self.log_text());
            }
            let out = self.rnx(&["job", "list", "--json"]);
            if out.ok() {
                return;
            }
            if start.elapsed() > limit {
                panic!(
                    "system not ready after {limit:?}: {}\n{}",
                    out.stderr,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn supervisor_pid(&self) -> i32 {
        self.supervisor.as_ref().expect("running").id() as i32
    }

    /// Runs `rnx` as the admin.
    pub fn rnx(&self, args: &[&str]) -> RnxOutput {
        self.rnx_with(&self.admin, args)
    }

    /// Runs `rnx` with a given client configuration.
    pub fn rnx_with(&self, config: &Path, args: &[&str]) -> RnxOutput {
        let out = Command::new(bin("rnx"))
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("RNX_CONFIG")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run rnx");
        RnxOutput::from(out)
    }

    /// Starts a job (`rnx job run --json ARGS`) and returns it.
    pub fn run_job(&self, args: &[&str]) -> Job {
        let mut full = vec!["--json", "job", "run"];
        full.extend_from_slice(args);
        let out = self.rnx(&full).expect_ok("job run");
        let id = out.json()["job_uuid"]
            .as_str()
            .unwrap_or_else(|| panic!("no job_uuid in {}", out.stdout))
            .to_owned();
        Job { id }
    }

    /// `rnx job run --json FLAGS -- ARGV`, the argv taken literally; a refusal fails with
    /// the system's log, which says why.
    pub fn start_job(&self, flags: &[&str], argv: &[String]) -> Job {
        let mut full = vec!["--json", "job", "run"];
        full.extend_from_slice(flags);
        full.push("--");
        full.extend(argv.iter().map(String::as_str));
        let out = self.rnx(&full);
        assert!(
            out.ok(),
            "job run: rnx exited {}: {}\nsystem log:\n{}",
            out.code,
            out.stderr,
            self.log_text()
        );
        let id = out.json()["job_uuid"]
            .as_str()
            .unwrap_or_else(|| panic!("no job_uuid in {}", out.stdout))
            .to_owned();
        Job { id }
    }

    /// `rnx job status --json`.
    pub fn status(&self, job: &Job) -> Value {
        self.rnx(&["--json", "job", "status", &job.id])
            .expect_ok("job status")
            .json()
    }

    /// Polls the job's status until it is terminal; returns the status JSON.
    pub fn wait_done(&self, job: &Job, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let st = self.status(job);
            let s = st["status"].as_str().unwrap_or("").to_owned();
            if ["COMPLETED", "FAILED", "STOPPED", "CANCELED", "TIMEOUT"].contains(&s.as_str()) {
                return st;
            }
            assert!(
                start.elapsed() < limit,
                "job {} still {s} after {limit:?}\n{}",
                job.id,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The job's whole output through `rnx job log` (history, then live until it ends).
    pub fn logs(&self, job: &Job) -> Vec<u8> {
        self.rnx(&["job", "log", &job.id])
            .expect_ok("job log")
            .raw_stdout
    }

    /// Runs a job to completion and returns (status JSON, output).
    pub fn run_to_end(&self, args: &[&str]) -> (Value, String) {
        let job = self.run_job(args);
        let st = self.wait_done(&job, Duration::from_secs(60));
        let out = String::from_utf8_lossy(&self.logs(&job)).into_owned();
        (st, out)
    }

    /// Pid of a running helper (`joblet-api`, `joblet-persistd`, …), a child of the
    /// supervisor.
    pub fn helper_pid(&self, name: &str) -> Option<i32> {
        host::children(self.supervisor_pid())
            .into_iter()
            .find(|&pid| host::exe_name(pid).as_deref() == Some(name))
    }

    /// Waits until the supervisor has a helper `name` whose pid differs from `old`.
    pub fn wait_helper_restarted(&self, name: &str, old: i32, limit: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(pid) = self.helper_pid(name)
                && pid != old
            {
                return pid;
            }
            assert!(
                start.elapsed() < limit,
                "{name} not restarted after {limit:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A raw gRPC client with the admin's credentials.
    pub fn grpc(&self) -> crate::grpc::Grpc {
        crate::grpc::Grpc::connect(&self.address, &self.admin)
    }

    /// A path the generated `joblet-config.yml` names at `keys` (`["audit", "path"]`).
    pub fn config_path(&self, keys: &[&str]) -> PathBuf {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        PathBuf::from(
            host::yaml_string(&text, keys)
                .unwrap_or_else(|| panic!("no {} in the config", keys.join("."))),
        )
    }

    /// Stops the whole system (SIGTERM to the supervisor, which must exit cleanly) and
    /// starts it again on the same directory and configuration, as after a reboot. The
    /// previous run's log is kept as `joblet.log.<n>`.
    pub fn restart(&mut self) {
        let mut child = self.supervisor.take().expect("running");
        let status = self.terminate(&mut child);
        assert!(
            status.success(),
            "joblet exited with {status} on restart:\n{}",
            self.log_text()
        );
        let mut n = 1;
        while self.log.with_extension(format!("log.{n}")).exists() {
            n += 1;
        }
        std::fs::rename(&self.log, self.log.with_extension(format!("log.{n}")))
            .expect("keep the previous log");
        self.launch();
    }

    /// Stops the system with SIGTERM and checks that nothing of ours remains: no process,
    /// mount, cgroup, socket or temporary directory.
    pub fn stop(mut self) {
        let Some(mut child) = self.supervisor.take() else {
            return;
        };
        let tree = host::descendants(child.id() as i32);
        let status = self.terminate(&mut child);
        assert!(
            status.success(),
            "joblet exited with {status}:\n{}",
            self.log_text()
        );
        let leftovers = host::leftovers(&tree, self.dir.path(), &self.cgroup_base, &self.before);
        assert!(
            leftovers.is_empty(),
            "left behind after stop: {leftovers:#?}\n{}",
            self.log_text()
        );
    }
}

impl System {
    /// SIGTERM to the supervisor; its exit status once it is gone (60 s at most).
    fn terminate(&self, child: &mut Child) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal joblet");
        let limit = Duration::from_secs(60);
        wait_exit(child, limit, |_| {})
            .unwrap_or_else(|| panic!("joblet did not stop within 60 s:\n{}", self.log_text()))
    }
}

/// Waits up to `limit` for `child` to exit, calling `each` with its pid while it runs; on
/// time out the child is killed and reaped, and `None` returned.
fn wait_exit(
    child: &mut Child,
    limit: Duration,
    mut each: impl FnMut(i32),
) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait joblet") {
            return Some(status);
        }
        each(child.id() as i32);
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for System {
    fn drop(&mut self) {
        // A failed test must not leave a running system behind.
        if let Some(mut child) = self.supervisor.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            // Killed, the supervisor could not unmount the spawner's records tmpfs.
            let spawner_dir = self.dir.path().join("run/spawner");
            let _ = nix::mount::umount2(&spawner_dir, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}
