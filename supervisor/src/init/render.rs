//! The texts `joblet init` writes: `joblet-config.yml`, `runtime-config.yml` and the rnx client
//! configs, in Joblet's documented formats with embedded PEM.

use std::fmt::Write;
use std::path::Path;

use super::certs::{Pem, Pki};
use super::ids::HelperIds;
use crate::config::{
    DEFAULT_ALLOWED_MOUNTS, DEFAULT_USERNS_HOST_BASE, DEFAULT_USERNS_RANGE, DEFAULT_USERNS_SLOTS,
};

/// What varies between instances.
pub struct Instance<'a> {
    pub dir: &'a Path,
    /// Listening host and port (`server.address`, `server.port`).
    pub host: &'a str,
    pub port: u16,
    pub node_id: &'a str,
    pub cgroup_base: &'a str,
    pub ids: &'a HelperIds,
    pub pki: &'a Pki,
}

const COMMON_PATHS: &[&str] = &[
    "/usr/local/bin",
    "/usr/local/lib",
    "/usr/lib/jvm",
    "/usr/local/node",
    "/usr/local/go",
];

/// A YAML double-quoted scalar.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A literal block scalar (`|`) holding `text`, its lines indented by `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::from("|\n");
    for line in text.trim_end().lines() {
        let _ = writeln!(out, "{pad}{line}");
    }
    out.pop();
    out
}

fn path(dir: &Path, rel: &str) -> String {
    quote(&dir.join(rel).to_string_lossy())
}

fn list(items: &[&str], indent: usize) -> String {
    let pad = " ".repeat(indent);
    items
        .iter()
        .map(|i| format!("{pad}- {}", quote(i)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `joblet-config.yml`.
pub fn joblet_config(i: &Instance<'_>) -> String {
    let d = i.dir;
    format!(
        r#"# Joblet configuration for a development instance in {dir}, written by `joblet init`.
# Every path is inside that directory, so nothing needs /opt. The keys are Joblet's documented
# joblet-config.yml keys, so an existing Joblet configuration keeps working with joblet-rs.
# Mode 0600: the server's private key is embedded below.
#
# joblet-rs keys (not in Go Joblet):
#   supervisor.runDir     sockets (root:<group> 0750) and the spawner's job records
#   supervisor.stateDir   stated's job database (0700, owned by the stated user)
#   supervisor.logsDir    persistd's log store (0700, owned by the persistd user)
#   supervisor.dataDir    the API frontend's private directory (0700, owned by the api user)
#   supervisor.binDir     where joblet-spawner, joblet-api, ... are (default: next to joblet)
#   supervisor.users.{{api,persistd,stated,group}}  user/group names or numeric ids of the
#                         helpers; numbers here were unused on this host when this file was
#                         written (range 64700-64799); joblet init never creates users
#   supervisor.jobUser.{{uid,gid}}  what job commands run as (never root)
#   supervisor.restart.{{minBackoff,maxBackoff}}  delays before restarting a helper that died
#                         (doubling from min to max; a helper that keeps crashing is still
#                         restarted every maxBackoff)
#   supervisor.stopTimeout  how long a helper may take to exit at shutdown before SIGKILL (the
#                         spawner gets joblet.cleanupTimeout on top, to stop its jobs)
#   audit.path            the API's append-only audit log (one JSON line per call)
#   cgroup.defaultPidsLimit  pids.max of a job that asks for none
#   security.userNamespace  each job in its own user namespace (enabled, default true): root
#                         inside a job is a host uid no user, helper or other job has. Job N
#                         holds the host ids hostBase + N*range up to (excluded) the next
#                         range, mapped to 0..range inside; `range` ids per job (at least
#                         65536, and covering supervisor.jobUser), `slots` jobs at once (at
#                         least joblet.maxConcurrentJobs). The default hostBase, 1879048192
#                         (0x70000000), is past useradd's subordinate ids (/etc/subuid, up to
#                         600100000) and systemd-nspawn's container ranges (up to 1879048191),
#                         in what systemd documents as unused, and the default span ends below
#                         2^31. At start joblet refuses a span holding the id of any user in
#                         /etc/passwd, group in /etc/group or helper, and warns if
#                         /etc/subuid or /etc/subgid gives its ids to someone other than
#                         `joblet` (write `joblet:<hostBase>:<range*slots>` there to reserve it)
#   security.landlock     required | best-effort | off: Landlock file-access rules on every
#                         job. required: joblet refuses to start on a kernel without Landlock;
#                         best-effort: used where the kernel has it, a warning where not.
#                         (Seccomp is always on and has no key.)
#   monitoring.job_metrics_interval  how often each running job's cgroup is sampled for
#                         metrics (100ms to 1h)
# Joblet keys with a joblet-rs meaning:
#   joblet.cleanupTimeout  grace between SIGTERM and kill when a job is stopped
#   cgroup.baseDir         name of our cgroup subtree, under the spawner's own cgroup
#   grpc.maxRecvMsgSize    the largest total upload of one job
#   monitoring.system_interval  default period of the host metrics stream (1s to 1h)
#   monitoring.bind_address  HOST:PORT of a Prometheus endpoint (plain HTTP, no client
#                         authentication: keep it on loopback); absent or "" = none
# Documented Joblet keys that joblet-rs does not use (state.*, persist.*, ipc.*, buffers.*,
# network.*, most of grpc.*) are accepted silently; unknown keys get a warning at start.
#
# The CA's private key is ca-key.pem beside this file. Joblet does not need it to run; keep it
# (mode 0600) to issue more client certificates later: OU=admin for full access, OU=viewer for
# read-only access, signed by this CA, with extended key usage clientAuth.
version: "3.0"

server:
  address: {host}
  port: {port}
  nodeId: {node_id}
  mode: "server"

security:
  userNamespace:
    enabled: true
    hostBase: {userns_base}
    range: {userns_range}
    slots: {userns_slots}
  landlock: "best-effort"
  serverCert: {server_cert}
  serverKey: {server_key}
  caCert: {ca_cert}

joblet:
  defaultCpuLimit: 0
  defaultMemoryLimit: 0
  defaultIoLimit: 0
  maxConcurrentJobs: 0
  jobTimeout: "0s"
  cleanupTimeout: "5s"

cgroup:
  baseDir: {cgroup_base}
  enableControllers: ["memory", "cpu", "io", "pids", "cpuset"]
  cleanupTimeout: "5s"
  defaultPidsLimit: 1024

filesystem:
  baseDir: {jobs}
  tmpDir: {tmp}
  allowedMounts:
{mounts}

volumes:
  base_path: {volumes}
  default_disk_quota_bytes: 1048576

runtime:
  base_path: {runtimes}
  common_paths:
{common}

logging:
  level: "info"
  format: "text"
  output: "stdout"

monitoring:
  system_interval: "10s"
  job_metrics_interval: "5s"
  # Off in a development instance, so several can run on one host; uncomment to serve
  # Prometheus metrics (plain HTTP, keep it on loopback).
  # bind_address: "127.0.0.1:9090"

grpc:
  maxRecvMsgSize: 134217728
  maxSendMsgSize: 134217728
  keepAliveTime: "10s"
  keepAliveTimeout: "3s"

# Accepted for compatibility with Joblet; joblet-rs does not use these.
buffers:
  pubsub_buffer_size: 10000
  chunk_size: 1048576

ipc:
  enabled: true
  buffer_size: 10000

network:
  enabled: true
  default_network: "bridge"

state:
  backend: "local"

persist:
  storage:
    type: "local"

audit:
  path: {audit}

supervisor:
  runDir: {run}
  stateDir: {state}
  logsDir: {logs}
  dataDir: {data}
  users:
    api: {api}
    persistd: {persistd}
    stated: {stated}
    group: {group}
  jobUser:
    uid: 65534
    gid: 65534
  restart:
    minBackoff: "500ms"
    maxBackoff: "30s"
  stopTimeout: "10s"
"#,
        dir = d.display(),
        host = quote(i.host),
        port = i.port,
        node_id = quote(i.node_id),
        userns_base = DEFAULT_USERNS_HOST_BASE,
        userns_range = DEFAULT_USERNS_RANGE,
        userns_slots = DEFAULT_USERNS_SLOTS,
        server_cert = block(&i.pki.server.cert, 4),
        server_key = block(&i.pki.server.key, 4),
        ca_cert = block(&i.pki.ca.cert, 4),
        cgroup_base = quote(i.cgroup_base),
        jobs = path(d, "jobs"),
        tmp = path(d, "tmp"),
        mounts = list(DEFAULT_ALLOWED_MOUNTS, 4),
        volumes = path(d, "volumes"),
        runtimes = path(d, "runtimes"),
        common = list(COMMON_PATHS, 4),
        audit = path(d, "audit/audit.log"),
        run = path(d, "run"),
        state = path(d, "state"),
        logs = path(d, "logs"),
        data = path(d, "data"),
        api = i.ids.api,
        persistd = i.ids.persistd,
        stated = i.ids.stated,
        group = i.ids.group,
    )
}

/// `runtime-config.yml`: Joblet's distro-specific runtime section. When present beside
/// joblet-config.yml it overrides that file's `runtime` section.
pub fn runtime_config(dir: &Path) -> String {
    format!(
        "# Runtime settings (Joblet's split configuration), written by `joblet init`.\n\
         # When this file is beside joblet-config.yml, its runtime section wins.\n\
         runtime:\n  base_path: {}\n  common_paths:\n{}\n",
        path(dir, "runtimes"),
        list(COMMON_PATHS, 4)
    )
}

/// An rnx client config (`rnx-config.yml` format) for one role. The node is named `default`:
/// the Python SDK looks for that name.
pub fn rnx_config(role: &str, address: &str, node_id: &str, client: &Pem, ca: &Pem) -> String {
    format!(
        r#"# rnx client configuration, role {role}, written by `joblet init`.
# It holds this client's private key: keep it mode 0600, and hand it only to whom the role
# is meant for. Use it with `rnx --config <this file> ...` or RNX_CONFIG=<this file>.
version: "3.0"
nodes:
  default:
    address: {address}
    isDefault: true
    nodeId: {node_id}
    cert: {cert}
    key: {key}
    ca: {ca}
"#,
        address = quote(address),
        node_id = quote(node_id),
        cert = block(&client.cert, 6),
        key = block(&client.key, 6),
        ca = block(&ca.cert, 6),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_through_yaml() {
        for s in [
            "plain",
            "with \"quotes\"",
            "back\\slash",
            "tab\there",
            "/tmp/a b/c:d #e",
        ] {
            let yaml = format!("v: {}\n", quote(s));
            #[derive(serde::Deserialize)]
            struct V {
                v: String,
            }
            let back: V = serde_saphyr::from_str(&yaml).unwrap();
            assert_eq!(back.v, s);
        }
    }

    #[test]
    fn blocks_keep_pem_lines() {
        let pem = "-----BEGIN X-----\nAAAA\nBBBB\n-----END X-----\n";
        let yaml = format!("outer:\n  k: {}\n", block(pem, 4));
        #[derive(serde::Deserialize)]
        struct Inner {
            k: String,
        }
        #[derive(serde::Deserialize)]
        struct Outer {
            outer: Inner,
        }
        let back: Outer = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back.outer.k, pem);
    }
}
