//! One running Joblet system for a benchmark phase: a configuration and certificates freshly
//! made by `joblet init` in a temporary directory, the supervisor on 127.0.0.1 and a free
//! port, and on stop the end-to-end harness's leftover check.
//!
//! Like the harness in `tests/src/system.rs`, but every failure is an error for the report
//! instead of a panic, and the binaries are found next to this program (a release build).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use joblet_tests::host::{self, Snapshot};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::bins::Binaries;

/// How long the system may take to answer after start, and to stop.
const READY_LIMIT: Duration = Duration::from_secs(60);
const STOP_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("cannot create the system's temporary directory: {0}")]
    TempDir(std::io::Error),
    #[error("cannot find a free TCP port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    #[error("cannot run {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("joblet init failed: {0}")]
    Init(String),
    #[error("cannot {what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the generated joblet-config.yml has no cgroup.baseDir")]
    NoCgroupBase,
    #[error("joblet exited during start ({status}); its log:\n{log}")]
    ExitedEarly { status: String, log: String },
    #[error("the system did not answer within {limit:?} ({last}); its log:\n{log}")]
    NotReady {
        limit: Duration,
        last: String,
        log: String,
    },
    #[error("cannot signal joblet: {0}")]
    Signal(nix::Error),
    #[error("joblet did not stop within {limit:?}; killed it. Its log:\n{log}")]
    StopTimeout { limit: Duration, log: String },
    #[error("joblet exited with {status} on SIGTERM; its log:\n{log}")]
    StopFailed { status: String, log: String },
}

pub struct BenchSystem {
    dir: tempfile::TempDir,
    pub address: String,
    pub config: PathBuf,
    /// The admin client's rnx-config.yml.
    pub admin: PathBuf,
    pub cgroup_base: String,
    log: PathBuf,
    rnx: PathBuf,
    supervisor: Option<Child>,
    before: Snapshot,
}

impl BenchSystem {
    /// `joblet init`, then `edit` on the generated `joblet-config.yml`, then start and wait
    /// until `rnx job list` answers.
    pub fn start(bins: &Binaries, edit: impl FnOnce(&mut String)) -> Result<Self, SystemError> {
        let before = host::snapshot();
        let dir = tempfile::Builder::new()
            .prefix("joblet-bench-")
            .tempdir()
            .map_err(SystemError::TempDir)?;
        // The helpers run as other users and must traverse to their directories.
        set_mode(dir.path(), 0o755)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(SystemError::Port)?
            .port();
        let address = format!("127.0.0.1:{port}");
        let init = run(
            Command::new(bins.joblet())
                .args(["init", "--dir"])
                .arg(dir.path())
                .args(["--address", &address]),
            "joblet init",
        )?;
        if !init.status.success() {
            return Err(SystemError::Init(format!(
                "{}{}",
                String::from_utf8_lossy(&init.stdout),
                String::from_utf8_lossy(&init.stderr)
            )));
        }
        let cfg_dir = dir.path().join("config");
        let config = cfg_dir.join("joblet-config.yml");
        let mut text = std::fs::read_to_string(&config).map_err(|source| SystemError::File {
            what: "read",
            path: config.clone(),
            source,
        })?;
        edit(&mut text);
        std::fs::write(&config, &text).map_err(|source| SystemError::File {
            what: "write",
            path: config.clone(),
            source,
        })?;
        let cgroup_base =
            host::yaml_string(&text, &["cgroup", "baseDir"]).ok_or(SystemError::NoCgroupBase)?;
        let mut sys = BenchSystem {
            address,
            config,
            admin: cfg_dir.join("rnx-admin.yml"),
            cgroup_base,
            log: dir.path().join("joblet.log"),
            rnx: bins.rnx(),
            supervisor: None,
            before,
            dir,
        };
        sys.launch(bins)?;
        Ok(sys)
    }

    fn launch(&mut self, bins: &Binaries) -> Result<(), SystemError> {
        let file = |what: &'static str| {
            let path = self.log.clone();
            move |source| SystemError::File { what, path, source }
        };
        let log = std::fs::File::create(&self.log).map_err(file("create"))?;
        let log2 = log.try_clone().map_err(file("duplicate"))?;
        let child = Command::new(bins.joblet())
            .arg("--config")
            .arg(&self.config)
            .env_remove("RNX_CONFIG")
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .spawn()
            .map_err(|source| SystemError::Spawn {
                what: "joblet".into(),
                source,
            })?;
        self.supervisor = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), SystemError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .supervisor
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(SystemError::ExitedEarly {
                    status: status.to_string(),
                    log: self.log_text(),
                });
            }
            let out = self.rnx(&["job", "list", "--json"])?;
            if out.status.success() {
                return Ok(());
            }
            if start.elapsed() > READY_LIMIT {
                return Err(SystemError::NotReady {
                    limit: READY_LIMIT,
                    last: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    log: self.log_text(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `rnx --config <admin> ARGS` with the output captured.
    pub fn rnx(&self, args: &[&str]) -> Result<Output, SystemError> {
        run(self.rnx_command(args).stdin(Stdio::null()), "rnx")
    }

    /// The `rnx` command line for `args`, for callers that time or pipe it themselves.
    pub fn rnx_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.rnx);
        cmd.arg("--config")
            .arg(&self.admin)
            .args(args)
            .env_remove("RNX_CONFIG")
            .env("HOME", self.dir.path());
        cmd
    }

    pub fn supervisor_pid(&self) -> Option<i32> {
        self.supervisor.as_ref().map(|c| c.id() as i32)
    }

    /// `(name, pid)` of the supervisor and of each helper it runs.
    pub fn daemons(&self) -> Vec<(String, i32)> {
        let Some(sup) = self.supervisor_pid() else {
            return Vec::new();
        };
        let mut out = vec![("joblet".to_owned(), sup)];
        for pid in host::children(sup) {
            if let Some(name) = host::exe_name(pid) {
                out.push((name, pid));
            }
        }
        // The spawner's shim factory is a daemon of ours too, though a child of the spawner.
        let spawner = out.iter().find(|(n, _)| n == "joblet-spawner").map(|d| d.1);
        let factory = spawner_children(spawner, "joblet-factory");
        out.extend(
            factory
                .into_iter()
                .map(|pid| ("joblet-factory".to_owned(), pid)),
        );
        out
    }

    /// Pids of the per-job shims (children of the spawner, forked by its factory).
    pub fn shims(&self) -> Vec<i32> {
        let sup = self.supervisor_pid();
        let helpers = sup.map(host::children).unwrap_or_default();
        let spawner = helpers
            .into_iter()
            .find(|p| host::exe_name(*p).is_some_and(|n| n == "joblet-spawner"));
        spawner_children(spawner, "joblet-shim")
    }

    /// Stops the system with SIGTERM, waits, and returns what the harness's leftover check
    /// finds: processes, mounts, cgroups, sockets, temporary entries. The directory stays
    /// until the system is dropped.
    pub fn stop(&mut self) -> Result<Vec<String>, SystemError> {
        let Some(mut child) = self.supervisor.take() else {
            return Ok(Vec::new());
        };
        let tree = host::descendants(child.id() as i32);
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).map_err(SystemError::Signal)?;
        let start = Instant::now();
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break s;
            }
            if start.elapsed() > STOP_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SystemError::StopTimeout {
                    limit: STOP_LIMIT,
                    log: self.log_text(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            return Err(SystemError::StopFailed {
                status: status.to_string(),
                log: self.log_text(),
            });
        }
        let own_dir = self
            .dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(
            host::leftovers(&tree, self.dir.path(), &self.cgroup_base, &self.before)
                .into_iter()
                // Our own temporary directory is still there until dropped.
                .filter(|l| !l.ends_with(&format!("/tmp/{own_dir}")))
                .collect(),
        )
    }
}

impl Drop for BenchSystem {
    fn drop(&mut self) {
        // An aborted phase must not leave a running system behind.
        if let Some(mut child) = self.supervisor.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < STOP_LIMIT {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<Output, SystemError> {
    cmd.output().map_err(|source| SystemError::Spawn {
        what: what.to_owned(),
        source,
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SystemError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        SystemError::File {
            what: "chmod",
            path: path.to_owned(),
            source,
        }
    })
}

/// The children of `spawner` named (`comm`) `name`.
fn spawner_children(spawner: Option<i32>, name: &str) -> Vec<i32> {
    let named = |pid: &i32| host::status_field(*pid, "Name").is_some_and(|n| n == name);
    match spawner {
        Some(pid) => host::children(pid).into_iter().filter(named).collect(),
        None => Vec::new(),
    }
}
