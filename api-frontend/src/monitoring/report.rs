//! One report of the host: the counters read at two moments ([`Snapshot`]), turned into the
//! public messages. Rates and CPU shares need the two readings; everything else is read
//! once, when the report is built. A section whose files cannot be read is left out and
//! logged; it does not fail the report.

use std::collections::BTreeSet;
use std::time::Instant;

use joblet_api_proto::{
    CpuMetrics, DiskMetrics, HostInfo, IoMetrics, MemoryMetrics, NetworkMetrics, ProcessMetrics,
    ServerVersionInfo, SystemMetricsResponse, SystemStatusResponse,
};

use super::cloud::{self, Dmi};
use super::cpu::{self, CpuStat};
use super::diskio::{self, DiskStat};
use super::disks;
use super::filter::MetricSet;
use super::host;
use super::memory;
use super::network::{self, Addresses, IfCounters};
use super::processes::{self, Clock, ProcessTable};
use super::source::{CollectError, Source};
use super::time::now_rfc3339;

/// The cumulative counters at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub at: Instant,
    pub cpu: Option<CpuStat>,
    pub net: Option<Vec<IfCounters>>,
    pub diskstats: Option<Vec<DiskStat>>,
    pub procs: Option<ProcessTable>,
}

impl Snapshot {
    /// Reads the counters `wanted` needs (the CPU always: it carries the boot time).
    pub fn take(source: &Source, wanted: &MetricSet) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            cpu: logged(source.proc_file("stat").and_then(|t| cpu::parse_stat(&t))),
            net: wanted
                .network
                .then(|| {
                    logged(
                        source
                            .proc_file("net/dev")
                            .and_then(|t| network::parse_net_dev(&t)),
                    )
                })
                .flatten(),
            diskstats: wanted
                .io
                .then(|| {
                    logged(
                        source
                            .proc_file("diskstats")
                            .map(|t| diskio::parse_diskstats(&t)),
                    )
                })
                .flatten(),
            procs: wanted.process.then(|| ProcessTable::read(source)),
        }
    }
}

fn logged<T>(r: Result<T, CollectError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(error = %e, "host metric not available");
            None
        }
    }
}

/// Everything one metrics message holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub timestamp: String,
    pub host: HostInfo,
    pub cpu: Option<CpuMetrics>,
    pub memory: Option<MemoryMetrics>,
    pub disks: Vec<DiskMetrics>,
    pub networks: Vec<NetworkMetrics>,
    pub io: Option<IoMetrics>,
    pub processes: Option<ProcessMetrics>,
    pub cloud: Option<joblet_api_proto::CloudInfo>,
}

/// Builds a report from two snapshots (`prev` older than `cur`).
pub fn build(
    source: &Source,
    node_id: &str,
    prev: &Snapshot,
    cur: &Snapshot,
    wanted: &MetricSet,
) -> Report {
    let elapsed = cur.at.saturating_duration_since(prev.at).as_secs_f64();
    let meminfo = logged(source.proc_file("meminfo"));
    let boot_time = cur.cpu.as_ref().and_then(|c| c.boot_time);
    let addrs = Addresses::read();
    Report {
        timestamp: now_rfc3339(),
        host: host::read(source, node_id, boot_time, &addrs),
        cpu: wanted.cpu.then(|| cpu_section(source, prev, cur)).flatten(),
        memory: wanted
            .memory
            .then(|| logged(memory::parse_meminfo(meminfo.as_deref()?)))
            .flatten(),
        disks: if wanted.disk {
            disk_section(source)
        } else {
            Vec::new()
        },
        networks: match (&cur.net, wanted.network) {
            (Some(now), true) => network::metrics(prev.net.as_deref(), now, elapsed, &addrs),
            _ => Vec::new(),
        },
        io: match (&cur.diskstats, wanted.io) {
            (Some(now), true) => Some(diskio::metrics(
                prev.diskstats.as_deref(),
                now,
                elapsed,
                whole_disks(source).as_ref(),
            )),
            _ => None,
        },
        processes: match (&cur.procs, wanted.process) {
            (Some(now), true) => {
                let mem_total = meminfo
                    .as_deref()
                    .and_then(memory::total_bytes)
                    .unwrap_or(0);
                let clock = Clock::system(mem_total, boot_time.unwrap_or(0));
                Some(processes::metrics(
                    prev.procs.as_ref(),
                    now,
                    elapsed,
                    &clock,
                    &|p| processes::read_command(source, p),
                ))
            }
            _ => None,
        },
        cloud: cloud::detect(&Dmi::read(source)),
    }
}

fn cpu_section(source: &Source, prev: &Snapshot, cur: &Snapshot) -> Option<CpuMetrics> {
    let now = cur.cpu.as_ref()?;
    let load = logged(
        source
            .proc_file("loadavg")
            .and_then(|t| cpu::parse_loadavg(&t)),
    );
    Some(cpu::metrics(prev.cpu.as_ref().unwrap_or(now), now, load))
}

fn disk_section(source: &Source) -> Vec<DiskMetrics> {
    let Some(text) = logged(source.proc_file("self/mountinfo")) else {
        return Vec::new();
    };
    let mounts = disks::parse_mountinfo(&text);
    disks::block_filesystems(&mounts)
        .into_iter()
        .filter_map(
            |m| match disks::usage(std::path::Path::new(&m.mount_point)) {
                Ok(u) => Some(disks::metrics(m, &u)),
                Err(e) => {
                    // Mount points below directories the frontend may not enter.
                    tracing::debug!(mount = %m.mount_point, error = %e, "cannot statvfs");
                    None
                }
            },
        )
        .collect()
}

/// Names in `/sys/block` (whole disks), or None if it cannot be listed.
fn whole_disks(source: &Source) -> Option<BTreeSet<String>> {
    let dir = std::fs::read_dir(source.sys.join("block")).ok()?;
    Some(
        dir.flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect(),
    )
}

/// What this server is; `go_version` stays empty (this Joblet is not written in Go).
pub fn server_version() -> ServerVersionInfo {
    ServerVersionInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        component: "joblet-api".to_owned(),
        platform: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        ..ServerVersionInfo::default()
    }
}

impl Report {
    pub fn into_status(self) -> SystemStatusResponse {
        SystemStatusResponse {
            timestamp: self.timestamp,
            // The host answered for its basics: the report is worth reading.
            available: self.cpu.is_some() && self.memory.is_some(),
            host: Some(self.host),
            cpu: self.cpu,
            memory: self.memory,
            disks: self.disks,
            networks: self.networks,
            io: self.io,
            processes: self.processes,
            cloud: self.cloud,
            server_version: Some(server_version()),
        }
    }

    pub fn into_metrics(self) -> SystemMetricsResponse {
        SystemMetricsResponse {
            timestamp: self.timestamp,
            host: Some(self.host),
            cpu: self.cpu,
            memory: self.memory,
            disks: self.disks,
            networks: self.networks,
            io: self.io,
            processes: self.processes,
            cloud: self.cloud,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A captured /proc, /sys and /etc: two readings a second apart.
    fn captured(dir: &Path, stat: &str) -> Source {
        let proc = dir.join("proc");
        std::fs::create_dir_all(proc.join("net")).unwrap();
        std::fs::create_dir_all(proc.join("self")).unwrap();
        std::fs::create_dir_all(proc.join("sys/kernel")).unwrap();
        std::fs::create_dir_all(proc.join("1")).unwrap();
        let files = [
            ("stat", stat),
            ("meminfo", include_str!("testdata/meminfo")),
            ("net/dev", include_str!("testdata/net_dev")),
            ("diskstats", include_str!("testdata/diskstats")),
            ("loadavg", include_str!("testdata/loadavg")),
            ("uptime", include_str!("testdata/uptime")),
            ("self/mountinfo", include_str!("testdata/mountinfo")),
            ("sys/kernel/hostname", "captured\n"),
            ("sys/kernel/osrelease", "6.18.0\n"),
            ("1/stat", include_str!("testdata/pid_stat")),
            ("1/cmdline", "/sbin/init\0splash\0"),
        ];
        for (name, text) in files {
            std::fs::write(proc.join(name), text).unwrap();
        }
        let sys = dir.join("sys");
        std::fs::create_dir_all(sys.join("block/vda")).unwrap();
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("os-release"), include_str!("testdata/os-release")).unwrap();
        Source { proc, sys, etc }
    }

    #[test]
    fn a_full_report_from_a_captured_tree() {
        let dir = tempfile::tempdir().unwrap();
        let source = captured(dir.path(), include_str!("testdata/stat.1"));
        let prev = Snapshot::take(&source, &MetricSet::ALL);
        std::fs::write(source.proc.join("stat"), include_str!("testdata/stat.2")).unwrap();
        let cur = Snapshot::take(&source, &MetricSet::ALL);
        let status = build(&source, "node-1", &prev, &cur, &MetricSet::ALL).into_status();
        assert!(status.available);
        let host = status.host.unwrap();
        assert_eq!(host.hostname, "captured");
        assert_eq!(host.os, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(host.boot_time, "2026-11-23T14:27:27Z");
        assert_eq!(host.node_id, "node-1");
        let cpu = status.cpu.unwrap();
        assert_eq!(cpu.cores, 2);
        assert!(cpu.usage_percent > 0.0);
        assert_eq!(cpu.load_average.len(), 3);
        assert_eq!(status.memory.unwrap().total_bytes, 24684084 * 1024);
        // The captured mountinfo names the real root filesystem, which statvfs can read.
        assert_eq!(status.disks.len(), 1);
        assert_eq!(status.disks[0].mount_point, "/");
        let names: Vec<&str> = status
            .networks
            .iter()
            .map(|n| n.interface.as_str())
            .collect();
        assert_eq!(names, ["ifb0", "ifb1", "eth0"]);
        let io = status.io.unwrap();
        assert_eq!(io.disk_io.len(), 1);
        assert_eq!(io.disk_io[0].device, "vda");
        let procs = status.processes.unwrap();
        assert_eq!(procs.total_processes, 1);
        assert_eq!(procs.top_by_memory[0].command, "/sbin/init splash");
        assert_eq!(procs.top_by_memory[0].pid, 1);
        assert_eq!(status.cloud, None);
        let v = status.server_version.unwrap();
        assert_eq!(v.component, "joblet-api");
        assert_eq!(v.version, env!("CARGO_PKG_VERSION"));
        assert!(v.go_version.is_empty());
    }

    #[test]
    fn the_filter_leaves_sections_out() {
        let dir = tempfile::tempdir().unwrap();
        let source = captured(dir.path(), include_str!("testdata/stat.1"));
        let wanted = MetricSet::parse(&["memory".to_owned()]).unwrap();
        let a = Snapshot::take(&source, &wanted);
        assert!(a.procs.is_none() && a.net.is_none() && a.diskstats.is_none());
        let m = build(&source, "n", &a, &a, &wanted).into_metrics();
        assert!(m.memory.is_some() && m.host.is_some());
        assert!(m.cpu.is_none() && m.io.is_none() && m.processes.is_none());
        assert!(m.disks.is_empty() && m.networks.is_empty());
    }

    #[test]
    fn missing_files_leave_sections_out_without_failing() {
        let dir = tempfile::tempdir().unwrap();
        let source = Source {
            proc: dir.path().join("none"),
            sys: dir.path().join("none"),
            etc: dir.path().join("none"),
        };
        let a = Snapshot::take(&source, &MetricSet::ALL);
        let status = build(&source, "n", &a, &a, &MetricSet::ALL).into_status();
        assert!(!status.available);
        assert!(status.cpu.is_none() && status.memory.is_none());
        assert!(status.host.is_some() && status.server_version.is_some());
    }
}
