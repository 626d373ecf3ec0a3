//! Helpers for the rnx suite: checks that report every failure at once, client configs,
//! rnx with a time limit, and rnx on a terminal.

use std::fmt::Display;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use joblet_tests::{Job, RnxOutput, System, bin, host};
use serde_json::Value;

/// Longest any single rnx call may take before the test calls it hung.
pub const RNX_LIMIT: Duration = Duration::from_secs(60);
pub const TERMINAL: [&str; 5] = ["COMPLETED", "FAILED", "STOPPED", "CANCELED", "TIMEOUT"];

/// Soft assertions: a test goes on after a failed check (so one run shows every missing
/// piece of server work), and fails at the end listing them all.
pub struct Checks {
    failures: Vec<String>,
}

impl Checks {
    pub fn new() -> Checks {
        Checks {
            failures: Vec::new(),
        }
    }

    pub fn that(&mut self, ok: bool, what: impl Display) -> bool {
        if !ok {
            eprintln!("CHECK FAILED: {what}");
            self.failures.push(what.to_string());
        }
        ok
    }

    /// rnx exited `code`; every needle is on stderr (errors) or stdout (success).
    pub fn exit(&mut self, what: &str, out: &RnxOutput, code: i32, needles: &[&str]) -> bool {
        let stream = if code == 0 { &out.stdout } else { &out.stderr };
        let mut ok = self.that(
            out.code == code,
            format!(
                "{what}: exit {} (want {code})\n  stdout: {}\n  stderr: {}",
                out.code,
                out.stdout.trim(),
                out.stderr.trim()
            ),
        );
        for needle in needles {
            ok &= self.that(
                stream.contains(needle),
                format!(
                    "{what}: {} lacks {needle:?}:\n  {}",
                    if code == 0 { "stdout" } else { "stderr" },
                    stream.trim()
                ),
            );
        }
        ok
    }

    /// Parses `text` as JSON, recording a failure (and returning Null) if it is not.
    pub fn json(&mut self, what: &str, text: &str) -> Value {
        match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.that(false, format!("{what}: not JSON ({e}): {text}"));
                Value::Null
            }
        }
    }

    /// Stops the system (which checks nothing was left behind), then fails the test if any
    /// check failed.
    pub fn finish(mut self, sys: System) {
        let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sys.stop()));
        if let Err(panic) = stopped {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            self.failures.push(format!("stopping the system: {text}"));
        }
        self.done();
    }

    pub fn done(self) {
        assert!(
            self.failures.is_empty(),
            "{} check(s) failed:\n- {}",
            self.failures.len(),
            self.failures.join("\n- ")
        );
    }
}

/// A system for the rnx suite: jobs sampled every second, and no Prometheus endpoint
/// (several systems run at once and would fight over its fixed port).
pub fn start() -> System {
    System::start_with(|cfg| *cfg = suite_config(cfg))
}

/// The generated config with the suite's settings.
pub fn suite_config(cfg: &str) -> String {
    let mut out = String::new();
    let mut in_monitoring = false;
    let mut interval_set = false;
    for line in cfg.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
            if in_monitoring && !interval_set {
                out.push_str("  job_metrics_interval: \"1s\"\n");
                interval_set = true;
            }
            in_monitoring = line.trim_end() == "monitoring:";
        }
        let key = line.trim_start();
        if in_monitoring && key.starts_with("job_metrics_interval:") {
            out.push_str("  job_metrics_interval: \"1s\"\n");
            interval_set = true;
        } else if in_monitoring && key.starts_with("bind_address:") {
            out.push_str("  bind_address: \"\"\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if in_monitoring && !interval_set {
        out.push_str("  job_metrics_interval: \"1s\"\n");
    }
    out
}

/// Runs `rnx --config CONFIG ARGS` like the harness does, killing it after `limit`.
pub fn rnx_limited(sys: &System, config: &Path, args: &[&str], limit: Duration) -> RnxOutput {
    let mut child = Command::new(bin("rnx"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RNX_CONFIG")
        .env("HOME", sys.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rnx");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait rnx") {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break -9;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let raw_stdout = out_reader.join().unwrap_or_default();
    let mut stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    if code == -9 {
        stderr.push_str(&format!(
            "\n[killed: rnx {args:?} ran longer than {limit:?}]"
        ));
    }
    RnxOutput {
        code,
        stdout: String::from_utf8_lossy(&raw_stdout).into_owned(),
        stderr,
        raw_stdout,
    }
}

/// `rnx` as the admin, with the suite's time limit.
pub fn rnx(sys: &System, args: &[&str]) -> RnxOutput {
    rnx_limited(sys, &sys.admin, args, RNX_LIMIT)
}

/// Runs rnx with a terminal as stdin, stdout and stderr (through `script` from
/// util-linux); returns its exit code and everything it wrote, or `None` without `script`.
pub fn on_terminal(sys: &System, config: &Path, args: &[&str]) -> Option<(i32, String)> {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = format!(
        "{} --config {}",
        quote(&bin("rnx").display().to_string()),
        quote(&config.display().to_string())
    );
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let out = Command::new(script)
        .args(["-qec", &line, "/dev/null"])
        .env_remove("RNX_CONFIG")
        .env("HOME", sys.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// The PEM cert, key and ca of node `default` in an rnx config written by `joblet init`.
pub fn credentials(config: &Path) -> (String, String, String) {
    let text = std::fs::read_to_string(config).expect("read rnx config");
    let get = |field: &str| {
        host::yaml_string(&text, &["nodes", "default", field])
            .unwrap_or_else(|| panic!("no {field} in {}", config.display()))
    };
    (get("cert"), get("key"), get("ca"))
}

/// One node of a client config.
pub struct Node {
    pub name: String,
    pub address: String,
    pub cert: String,
    pub key: String,
    pub ca: String,
    pub default: bool,
}

impl Node {
    /// A node using the credentials of `config` (an init-written rnx config).
    pub fn from(name: &str, address: &str, config: &Path, default: bool) -> Node {
        let (cert, key, ca) = credentials(config);
        Node {
            name: name.into(),
            address: address.into(),
            cert,
            key,
            ca,
            default,
        }
    }
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

/// Writes a client config (mode 0600) in `dir`.
pub fn write_config(dir: &Path, file: &str, nodes: &[Node]) -> PathBuf {
    let mut text = String::from("version: \"3.0\"\nnodes:\n");
    for n in nodes {
        text.push_str(&format!(
            "  {}:\n    address: \"{}\"\n    nodeId: \"{}-id\"\n",
            n.name, n.address, n.name
        ));
        if n.default {
            text.push_str("    isDefault: true\n");
        }
        text.push_str(&format!("    cert: |\n{}", indent(&n.cert)));
        text.push_str(&format!("    key: |\n{}", indent(&n.key)));
        text.push_str(&format!("    ca: |\n{}", indent(&n.ca)));
    }
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write client config");
    host::chmod(&path, 0o600);
    path
}

/// A local port nobody listens on.
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Starts a job with `rnx --json job run ARGS`; `None` (and a failed check) if refused.
pub fn run_job(c: &mut Checks, sys: &System, args: &[&str]) -> Option<Job> {
    let mut full = vec!["--json", "job", "run"];
    full.extend_from_slice(args);
    let out = rnx(sys, &full);
    if !c.exit(&format!("job run {args:?}"), &out, 0, &[]) {
        return None;
    }
    let v = c.json("job run --json", &out.stdout);
    let id = v["job_uuid"].as_str().map(str::to_owned);
    c.that(id.is_some(), format!("no job_uuid in {}", out.stdout));
    id.map(|id| Job { id })
}

/// The job's status JSON (Null if rnx failed).
pub fn status(sys: &System, job: &Job) -> Value {
    let out = rnx(sys, &["--json", "job", "status", &job.id]);
    serde_json::from_str(&out.stdout).unwrap_or(Value::Null)
}

/// Polls until the job's status is one of `want`; returns the last status seen.
pub fn wait_for(sys: &System, job: &Job, want: &[&str], limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let st = status(sys, job);
        let s = st["status"].as_str().unwrap_or("");
        if want.contains(&s) || start.elapsed() > limit {
            return st;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the job is terminal; records a failure if it is not within `limit`.
pub fn wait_done(c: &mut Checks, sys: &System, job: &Job, limit: Duration) -> Value {
    let st = wait_for(sys, job, &TERMINAL, limit);
    let s = st["status"].as_str().unwrap_or("").to_owned();
    c.that(
        TERMINAL.contains(&s.as_str()),
        format!("job {} still {s:?} after {limit:?}", job.id),
    );
    st
}

/// Every job id `job list --json` shows.
pub fn listed_ids(sys: &System, config: &Path) -> Vec<String> {
    let out = rnx_limited(sys, config, &["--json", "job", "list"], RNX_LIMIT);
    serde_json::from_str::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|j| j["id"].as_str().map(str::to_owned))
        .collect()
}
