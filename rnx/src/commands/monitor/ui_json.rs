//! `--json` of the monitor commands: Joblet's "UI format" (`hostInfo`, `cpuInfo`,
//! `memoryInfo`, `disksInfo`, `networkInfo`, `processesInfo`, which its dashboards read),
//! filled from what the server reports rather than guessed (Joblet's rnx assigned host
//! addresses to interfaces by name), plus `timestamp`, `available`, `ioInfo` and
//! `serverVersion`. With `--filter`, only the chosen sections (and `hostInfo`) are present.

use joblet_api_proto::{
    CpuMetrics, DiskMetrics, IoMetrics, MemoryMetrics, NetworkMetrics, ProcessInfo, ProcessMetrics,
    SystemStatusResponse,
};
use serde::Serialize;

use super::filter::{Section, Sections};
use super::parts::percent_of;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UiFormat {
    timestamp: String,
    available: bool,
    host_info: HostInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_info: Option<CpuInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_info: Option<MemoryInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disks_info: Option<DisksInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_info: Option<NetworkInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    io_info: Option<IoInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    processes_info: Option<ProcessesInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_version: Option<ServerVersion>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct HostInfo {
    hostname: String,
    platform: String,
    arch: String,
    release: String,
    uptime: i64,
    boot_time: String,
    cloud_provider: String,
    instance_type: String,
    region: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    node_id: String,
    #[serde(rename = "serverIPs", skip_serializing_if = "Vec::is_empty")]
    server_ips: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mac_addresses: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CpuInfo {
    cores: i32,
    /// 0–1, as Joblet's UI format has it.
    usage: f64,
    usage_percent: f64,
    user_time: f64,
    system_time: f64,
    idle_time: f64,
    io_wait_time: f64,
    steal_time: f64,
    load_average: Vec<f64>,
    per_core_usage: Vec<f64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MemoryInfo {
    total: i64,
    used: i64,
    available: i64,
    free: i64,
    percent: f64,
    buffers: i64,
    cached: i64,
    swap: SwapInfo,
}

#[derive(Debug, Serialize)]
struct SwapInfo {
    total: i64,
    used: i64,
    percent: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DisksInfo {
    disks: Vec<DiskInfo>,
    total_space: i64,
    used_space: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DiskInfo {
    name: String,
    mountpoint: String,
    filesystem: String,
    size: i64,
    used: i64,
    available: i64,
    percent: f64,
    inodes_total: i64,
    inodes_used: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NetworkInfo {
    interfaces: Vec<Interface>,
    total_rx_bytes: i64,
    total_tx_bytes: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Interface {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    ip_addresses: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    mac_address: String,
    rx_bytes: i64,
    tx_bytes: i64,
    rx_packets: i64,
    tx_packets: i64,
    rx_errors: i64,
    tx_errors: i64,
    rx_rate: f64,
    tx_rate: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IoInfo {
    total_reads: i64,
    total_writes: i64,
    read_bytes: i64,
    write_bytes: i64,
    read_rate: f64,
    write_rate: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessesInfo {
    processes: Vec<Process>,
    top_by_memory: Vec<Process>,
    total_processes: i32,
    running: i32,
    sleeping: i32,
    stopped: i32,
    zombie: i32,
    total_threads: i32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    pid: i32,
    ppid: i32,
    name: String,
    command: String,
    cpu: f64,
    memory: f64,
    memory_bytes: i64,
    status: String,
    start_time: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerVersion {
    version: String,
    git_commit: String,
    git_tag: String,
    build_date: String,
    component: String,
    platform: String,
}

pub fn convert(s: &SystemStatusResponse, sections: &Sections) -> UiFormat {
    let pick = |section: Section| sections.has(section);
    UiFormat {
        timestamp: s.timestamp.clone(),
        available: s.available,
        host_info: host(s),
        cpu_info: s.cpu.as_ref().filter(|_| pick(Section::Cpu)).map(cpu),
        memory_info: s
            .memory
            .as_ref()
            .filter(|_| pick(Section::Memory))
            .map(memory),
        disks_info: pick(Section::Disk).then(|| disks(&s.disks)),
        network_info: pick(Section::Network).then(|| networks(&s.networks)),
        io_info: s.io.as_ref().filter(|_| pick(Section::Io)).map(io),
        processes_info: s
            .processes
            .as_ref()
            .filter(|_| pick(Section::Process))
            .map(processes),
        server_version: s.server_version.as_ref().map(|v| ServerVersion {
            version: v.version.clone(),
            git_commit: v.git_commit.clone(),
            git_tag: v.git_tag.clone(),
            build_date: v.build_date.clone(),
            component: v.component.clone(),
            platform: v.platform.clone(),
        }),
    }
}

fn host(s: &SystemStatusResponse) -> HostInfo {
    let mut info = HostInfo::default();
    if let Some(h) = &s.host {
        info.hostname = h.hostname.clone();
        info.platform = h.os.clone();
        info.arch = h.architecture.clone();
        info.release = h.kernel_version.clone();
        info.uptime = h.uptime;
        info.boot_time = h.boot_time.clone();
        info.node_id = h.node_id.clone();
        info.server_ips = h.server_ips.clone();
        info.mac_addresses = h.mac_addresses.clone();
    }
    if let Some(c) = &s.cloud {
        info.cloud_provider = c.provider.clone();
        info.instance_type = c.instance_type.clone();
        info.region = c.region.clone();
    }
    info
}

fn cpu(c: &CpuMetrics) -> CpuInfo {
    CpuInfo {
        cores: c.cores,
        usage: c.usage_percent / 100.0,
        usage_percent: c.usage_percent,
        user_time: c.user_time,
        system_time: c.system_time,
        idle_time: c.idle_time,
        io_wait_time: c.io_wait_time,
        steal_time: c.steal_time,
        load_average: c.load_average.clone(),
        per_core_usage: c.per_core_usage.clone(),
    }
}

fn memory(m: &MemoryMetrics) -> MemoryInfo {
    MemoryInfo {
        total: m.total_bytes,
        used: m.used_bytes,
        available: m.available_bytes,
        free: m.free_bytes,
        percent: m.usage_percent,
        buffers: m.buffered_bytes,
        cached: m.cached_bytes,
        swap: SwapInfo {
            total: m.swap_total,
            used: m.swap_used,
            percent: percent_of(m.swap_used, m.swap_total),
        },
    }
}

fn disks(disks: &[DiskMetrics]) -> DisksInfo {
    // A device mounted twice (bind mounts) is counted once in the totals.
    let mut seen = std::collections::BTreeSet::new();
    let (mut total, mut used) = (0i64, 0i64);
    for d in disks {
        if seen.insert(d.device.as_str()) {
            total = total.saturating_add(d.total_bytes);
            used = used.saturating_add(d.used_bytes);
        }
    }
    DisksInfo {
        disks: disks
            .iter()
            .map(|d| DiskInfo {
                name: d.device.clone(),
                mountpoint: d.mount_point.clone(),
                filesystem: d.filesystem.clone(),
                size: d.total_bytes,
                used: d.used_bytes,
                available: d.free_bytes,
                percent: d.usage_percent,
                inodes_total: d.inodes_total,
                inodes_used: d.inodes_used,
            })
            .collect(),
        total_space: total,
        used_space: used,
    }
}

fn interface_kind(name: &str) -> &'static str {
    let virtual_prefixes = [
        "veth", "br", "docker", "joblet", "virbr", "tap", "tun", "vnet",
    ];
    if name == "lo" {
        "loopback"
    } else if name.starts_with("wl") || name.contains("wifi") {
        "wireless"
    } else if virtual_prefixes.iter().any(|p| name.starts_with(p)) {
        "virtual"
    } else {
        "ethernet"
    }
}

fn networks(networks: &[NetworkMetrics]) -> NetworkInfo {
    NetworkInfo {
        interfaces: networks
            .iter()
            .map(|n| Interface {
                name: n.interface.clone(),
                kind: interface_kind(&n.interface),
                ip_addresses: n.ip_addresses.clone(),
                mac_address: n.mac_address.clone(),
                rx_bytes: n.bytes_received,
                tx_bytes: n.bytes_sent,
                rx_packets: n.packets_received,
                tx_packets: n.packets_sent,
                rx_errors: n.errors_in,
                tx_errors: n.errors_out,
                rx_rate: n.receive_rate,
                tx_rate: n.transmit_rate,
            })
            .collect(),
        total_rx_bytes: networks.iter().map(|n| n.bytes_received).sum(),
        total_tx_bytes: networks.iter().map(|n| n.bytes_sent).sum(),
    }
}

fn io(io: &IoMetrics) -> IoInfo {
    IoInfo {
        total_reads: io.total_reads,
        total_writes: io.total_writes,
        read_bytes: io.read_bytes,
        write_bytes: io.write_bytes,
        read_rate: io.read_rate,
        write_rate: io.write_rate,
    }
}

fn process(p: &ProcessInfo) -> Process {
    Process {
        pid: p.pid,
        ppid: p.ppid,
        name: p.name.clone(),
        command: p.command.clone(),
        cpu: p.cpu_percent,
        memory: p.memory_percent,
        memory_bytes: p.memory_bytes,
        status: process_status(&p.status),
        start_time: p.start_time.clone(),
    }
}

/// `R` → `running` and so on, as Joblet's UI format shows them.
fn process_status(code: &str) -> String {
    match code.trim() {
        "R" => "running",
        "S" => "sleeping",
        "D" => "disk-sleep",
        "T" | "t" => "stopped",
        "Z" => "zombie",
        "I" => "idle",
        other => return other.to_ascii_lowercase(),
    }
    .to_string()
}

fn processes(p: &ProcessMetrics) -> ProcessesInfo {
    ProcessesInfo {
        processes: p.top_by_cpu.iter().take(10).map(process).collect(),
        top_by_memory: p.top_by_memory.iter().take(10).map(process).collect(),
        total_processes: p.total_processes,
        running: p.running_processes,
        sleeping: p.sleeping_processes,
        stopped: p.stopped_processes,
        zombie: p.zombie_processes,
        total_threads: p.total_threads,
    }
}
