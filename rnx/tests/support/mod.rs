//! Shared test helpers: certificates, the in-test server, config files and running the
//! real `rnx` binary with a time limit.

#![allow(dead_code)]

pub mod pki;
pub mod server;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pki::{Ca, Pair};
use server::TestServer;

const RUN_LIMIT: Duration = Duration::from_secs(30);

/// One node entry of an rnx-config.yml.
pub struct NodeEntry<'a> {
    pub name: &'a str,
    pub address: String,
    pub client: &'a Pair,
    pub ca_pem: &'a str,
    pub is_default: bool,
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

/// Writes an rnx-config.yml (mode 0600 on Unix) and returns its path.
pub fn write_config(dir: &Path, file: &str, nodes: &[NodeEntry]) -> PathBuf {
    let mut text = String::from("version: \"3.0\"\nnodes:\n");
    for n in nodes {
        text.push_str(&format!("  {}:\n    address: \"{}\"\n", n.name, n.address));
        if n.is_default {
            text.push_str("    isDefault: true\n");
        }
        text.push_str(&format!("    cert: |\n{}", indent(&n.client.cert)));
        text.push_str(&format!("    key: |\n{}", indent(&n.client.key)));
        text.push_str(&format!("    ca: |\n{}", indent(n.ca_pem)));
    }
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rnx"))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("RNX_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `rnx ARGS` in `dir` with `HOME=dir` and no `$RNX_CONFIG`, killing it after 30 s.
pub fn rnx(dir: &Path, args: &[&str]) -> Run {
    let mut child = spawn(dir, args);
    let out = child.stdout.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(out).read_to_string(&mut s);
        s
    });
    finish(child, out_reader, args)
}

/// Runs `rnx ARGS`, waits for its first line of stdout, then sends it SIGINT (Ctrl-C).
#[cfg(unix)]
pub fn rnx_interrupted(dir: &Path, args: &[&str]) -> Run {
    let mut child = spawn(dir, args);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out_reader = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
        first + &rest
    });
    finish(child, out_reader, args)
}

fn finish(mut child: Child, out_reader: JoinHandle<String>, args: &[&str]) -> Run {
    let mut err = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rnx {args:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// A server, its CA, an admin and a viewer client, and a config naming both (admin is the
/// default), in a fresh temporary directory.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub admin: Pair,
    pub viewer: Pair,
    pub server: TestServer,
    pub config: PathBuf,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("rnx test CA");
        let admin = ca.client("admin");
        let viewer = ca.client("viewer");
        let server = TestServer::start(&ca.server(&["joblet", "localhost"]), &ca.pem, &viewer);
        let address = server.addr.to_string();
        let config = write_config(
            dir.path(),
            "rnx-config.yml",
            &[
                NodeEntry {
                    name: "default",
                    address: address.clone(),
                    client: &admin,
                    ca_pem: &ca.pem,
                    is_default: true,
                },
                NodeEntry {
                    name: "viewer",
                    address,
                    client: &viewer,
                    ca_pem: &ca.pem,
                    is_default: false,
                },
            ],
        );
        Setup {
            dir,
            ca,
            admin,
            viewer,
            server,
            config,
        }
    }

    /// `rnx --config <ours> ARGS`.
    pub fn rnx(&self, args: &[&str]) -> Run {
        let config = self.config.to_str().unwrap();
        let mut all = vec!["--config", config];
        all.extend_from_slice(args);
        rnx(self.dir.path(), &all)
    }

    /// The `ID:` line of `job run` output.
    pub fn submit(&self, args: &[&str]) -> String {
        let mut all = vec!["job", "run"];
        all.extend_from_slice(args);
        let run = self.rnx(&all);
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout
            .lines()
            .find_map(|l| l.strip_prefix("ID: "))
            .unwrap_or_else(|| panic!("no ID line in {run:?}"))
            .to_string()
    }
}
