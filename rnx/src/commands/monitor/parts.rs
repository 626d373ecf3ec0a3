//! Pieces both the full status and the condensed views are made of.

use joblet_api_proto::{CpuMetrics, DiskMetrics, NetworkMetrics, ProcessInfo};

use crate::output::bytes;
use crate::output::table::{Table, truncate_line};

const TOP_PROCESSES: usize = 10;
const COMMAND_WIDTH: usize = 40;

/// `0.52 0.40 0.33` (however many the server sent; `-` for none).
pub fn load_average(cpu: &CpuMetrics, separator: &str) -> String {
    if cpu.load_average.is_empty() {
        return "-".to_string();
    }
    cpu.load_average
        .iter()
        .map(|l| format!("{l:.2}"))
        .collect::<Vec<_>>()
        .join(separator)
}

/// `10%,14%` per core.
pub fn per_core(cpu: &CpuMetrics) -> String {
    cpu.per_core_usage
        .iter()
        .map(|u| format!("{u:.0}%"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn percent_of(part: i64, whole: i64) -> f64 {
    if whole > 0 {
        part as f64 / whole as f64 * 100.0
    } else {
        0.0
    }
}

pub fn disk_table(disks: &[DiskMetrics]) -> String {
    let mut t = Table::new([
        "MOUNT",
        "DEVICE",
        "FILESYSTEM",
        "SIZE",
        "USED",
        "AVAILABLE",
        "USE%",
        "INODES USED",
    ]);
    for d in disks {
        t.row([
            d.mount_point.clone(),
            d.device.clone(),
            d.filesystem.clone(),
            bytes::human(d.total_bytes),
            bytes::human(d.used_bytes),
            bytes::human(d.free_bytes),
            format!("{:.1}%", d.usage_percent),
            format!("{}/{}", d.inodes_used, d.inodes_total),
        ]);
    }
    t.render()
}

/// Interfaces that moved any bytes (an idle one says nothing in a live view), or all.
pub fn network_table(networks: &[NetworkMetrics], only_active: bool) -> String {
    let mut t = Table::new([
        "INTERFACE",
        "IP",
        "RX RATE",
        "TX RATE",
        "RX TOTAL",
        "TX TOTAL",
        "PACKETS RX/TX",
        "ERRORS RX/TX",
    ]);
    for n in networks.iter().filter(|n| !only_active || is_active(n)) {
        t.row([
            n.interface.clone(),
            first_ipv4(n).unwrap_or("-").to_string(),
            bytes::rate(n.receive_rate),
            bytes::rate(n.transmit_rate),
            bytes::human(n.bytes_received),
            bytes::human(n.bytes_sent),
            format!("{}/{}", n.packets_received, n.packets_sent),
            format!("{}/{}", n.errors_in, n.errors_out),
        ]);
    }
    t.render()
}

pub fn is_active(n: &NetworkMetrics) -> bool {
    n.bytes_received > 0 || n.bytes_sent > 0
}

pub fn first_ipv4(n: &NetworkMetrics) -> Option<&str> {
    n.ip_addresses
        .iter()
        .map(String::as_str)
        .find(|ip| !ip.contains(':'))
        .or_else(|| n.ip_addresses.first().map(String::as_str))
}

/// The first ten processes: `PID  NAME  CPU%  MEM%  MEMORY  COMMAND`.
pub fn process_table(processes: &[ProcessInfo]) -> String {
    let mut t = Table::new(["PID", "NAME", "CPU%", "MEM%", "MEMORY", "COMMAND"]);
    for p in processes.iter().take(TOP_PROCESSES) {
        t.row([
            p.pid.to_string(),
            truncate_line(&p.name, 16),
            format!("{:.1}", p.cpu_percent),
            format!("{:.1}", p.memory_percent),
            bytes::human(p.memory_bytes),
            truncate_line(
                if p.command.is_empty() {
                    &p.name
                } else {
                    &p.command
                },
                COMMAND_WIDTH,
            ),
        ]);
    }
    t.render()
}

/// `3d 4h 5m`, `4h 5m` or `5m`, from seconds.
pub fn uptime(seconds: i64) -> String {
    let s = seconds.max(0);
    let (days, hours, minutes) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    if days > 0 {
        format!("{days}d {hours}h {minutes}m")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else {
        format!("{minutes}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pieces() {
        let cpu = CpuMetrics {
            load_average: vec![0.5, 0.25, 1.0],
            per_core_usage: vec![10.2, 99.6],
            ..Default::default()
        };
        assert_eq!(load_average(&cpu, " "), "0.50 0.25 1.00");
        assert_eq!(load_average(&CpuMetrics::default(), " "), "-");
        assert_eq!(per_core(&cpu), "10%,100%");
        assert_eq!(uptime(3 * 86_400 + 4 * 3600 + 5 * 60 + 9), "3d 4h 5m");
        assert_eq!(uptime(3600), "1h 0m");
        assert_eq!(uptime(-1), "0m");
        assert_eq!(percent_of(1, 4), 25.0);
        assert_eq!(percent_of(1, 0), 0.0);
    }

    #[test]
    fn tables_show_what_the_server_sent() {
        let eth = NetworkMetrics {
            interface: "eth0".into(),
            ip_addresses: vec!["fe80::1".into(), "10.0.0.5".into()],
            bytes_received: 2048,
            receive_rate: 1024.0,
            ..Default::default()
        };
        let idle = NetworkMetrics {
            interface: "dummy0".into(),
            ..Default::default()
        };
        let text = network_table(&[eth.clone(), idle.clone()], true);
        assert!(text.contains("eth0") && text.contains("10.0.0.5"), "{text}");
        assert!(text.contains("1.0 KiB/s"), "{text}");
        assert!(!text.contains("dummy0"), "{text}");
        assert!(network_table(&[eth, idle], false).contains("dummy0"));

        let procs: Vec<ProcessInfo> = (0..12)
            .map(|i| ProcessInfo {
                pid: i,
                name: format!("p{i}"),
                command: format!("/bin/p{i} --flag"),
                ..Default::default()
            })
            .collect();
        let text = process_table(&procs);
        assert_eq!(text.lines().count(), 11, "header and ten rows:\n{text}");
        assert!(
            text.lines().next().unwrap().starts_with("PID  NAME"),
            "{text}"
        );
    }
}
