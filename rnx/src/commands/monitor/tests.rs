use joblet_api_proto::*;
use serde_json::Value;

use super::filter::{Section, Sections};
use super::watch::{parse_count, parse_interval};
use super::{as_status, snapshot_text, status_text, ui_json};
use crate::error::Exit;

fn sample() -> SystemStatusResponse {
    SystemStatusResponse {
        timestamp: "2026-11-23T16:20:50Z".into(),
        available: true,
        host: Some(HostInfo {
            hostname: "node-a".into(),
            os: "linux".into(),
            kernel_version: "6.18.0".into(),
            architecture: "x86_64".into(),
            uptime: 11_640,
            node_id: "n1".into(),
            server_ips: vec!["10.0.0.5".into()],
            ..Default::default()
        }),
        cpu: Some(CpuMetrics {
            cores: 2,
            usage_percent: 25.0,
            idle_time: 75.0,
            load_average: vec![0.5, 0.4, 0.3],
            per_core_usage: vec![20.0, 30.0],
            ..Default::default()
        }),
        memory: Some(MemoryMetrics {
            total_bytes: 4 << 30,
            used_bytes: 1 << 30,
            available_bytes: 3 << 30,
            usage_percent: 25.0,
            ..Default::default()
        }),
        disks: vec![
            DiskMetrics {
                device: "/dev/vda1".into(),
                mount_point: "/".into(),
                filesystem: "ext4".into(),
                total_bytes: 100 << 30,
                used_bytes: 40 << 30,
                free_bytes: 60 << 30,
                usage_percent: 40.0,
                ..Default::default()
            },
            DiskMetrics {
                device: "/dev/vda1".into(),
                mount_point: "/var/lib/x".into(),
                total_bytes: 100 << 30,
                used_bytes: 40 << 30,
                ..Default::default()
            },
        ],
        networks: vec![
            NetworkMetrics {
                interface: "eth0".into(),
                bytes_received: 5 << 20,
                bytes_sent: 1 << 20,
                receive_rate: 2048.0,
                ip_addresses: vec!["10.0.0.5".into()],
                mac_address: "52:54:00:12:34:56".into(),
                ..Default::default()
            },
            NetworkMetrics {
                interface: "lo".into(),
                ..Default::default()
            },
        ],
        io: Some(IoMetrics {
            total_reads: 10,
            read_bytes: 4096,
            ..Default::default()
        }),
        processes: Some(ProcessMetrics {
            total_processes: 120,
            running_processes: 2,
            top_by_cpu: vec![ProcessInfo {
                pid: 42,
                name: "joblet-api".into(),
                command: "/usr/bin/joblet-api --settings-fd 3".into(),
                cpu_percent: 3.5,
                status: "S".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        cloud: Some(CloudInfo::default()),
        server_version: Some(ServerVersionInfo {
            version: "0.1.0".into(),
            component: "joblet-api".into(),
            ..Default::default()
        }),
    }
}

#[test]
fn full_status_has_every_section_that_was_reported() {
    let text = status_text::render(&sample());
    for expected in [
        "System Status - 2026-11-23T16:20:50Z",
        "Available: yes",
        "Host Information:\n  Hostname:     node-a",
        "  Uptime:       3h 14m",
        "Joblet Server:\n  Version:   0.1.0",
        "CPU:\n  Cores:        2",
        "  Load Average: 0.50, 0.40, 0.30",
        "Memory:\n  Total:     4.0 GiB",
        "  Swap:      none",
        "Disks:\n  MOUNT",
        "Network Interfaces:\n  INTERFACE",
        "  MAC: eth0 52:54:00:12:34:56",
        "I/O:\n  Reads:  10 ops, 4.0 KiB",
        "Processes:\n  Total:    120",
        "Top by CPU:",
        "joblet-api",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // An empty cloud section says nothing rather than "Provider: ".
    assert!(!text.contains("Cloud Environment"), "{text}");
}

#[test]
fn missing_sections_are_left_out_not_fatal() {
    let bare = SystemStatusResponse {
        timestamp: "t".into(),
        ..Default::default()
    };
    assert_eq!(
        status_text::render(&bare),
        "System Status - t\nAvailable: no\n"
    );
    let text = snapshot_text::render(&bare, &Sections::all(), false);
    assert!(text.contains("CPU: not reported"), "{text}");
    assert!(text.contains("Network: no active interfaces"), "{text}");
}

#[test]
fn snapshot_honours_the_filter_and_compact() {
    let s = sample();
    let all = snapshot_text::render(&s, &Sections::all(), false);
    assert!(all.starts_with("System Metrics - 2026-11-23T16:20:50Z (node-a)\n\n"));
    assert!(all.contains("CPU: 25.0% of 2 cores"), "{all}");
    assert!(
        all.contains("| Load: 0.50 0.40 0.30 | Cores: 20%,30%"),
        "{all}"
    );
    assert!(all.contains("Memory: 1.0 GiB / 4.0 GiB (25.0%)"), "{all}");
    assert!(all.contains("Network:\n  INTERFACE"), "{all}");
    assert!(
        !all.contains("  lo "),
        "idle interfaces are left out:\n{all}"
    );
    assert!(all.contains("Top processes by CPU:"), "{all}");

    let only = Sections::parse(&["memory,network".to_string()]).unwrap();
    let text = snapshot_text::render(&s, &only, true);
    assert!(
        !text.contains("CPU:") && !text.contains("Processes:"),
        "{text}"
    );
    assert!(
        text.contains("Network: eth0: RX 2.0 KiB/s TX 0 B/s\n"),
        "{text}"
    );
    assert!(!text.contains("INTERFACE"), "{text}");
}

#[test]
fn json_is_joblets_ui_format() {
    let v: Value = serde_json::to_value(ui_json::convert(&sample(), &Sections::all())).unwrap();
    for key in [
        "hostInfo",
        "cpuInfo",
        "memoryInfo",
        "disksInfo",
        "networkInfo",
        "processesInfo",
        "ioInfo",
        "serverVersion",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["hostInfo"]["hostname"], "node-a");
    assert_eq!(v["hostInfo"]["serverIPs"][0], "10.0.0.5");
    assert_eq!(v["cpuInfo"]["usage"], 0.25);
    assert_eq!(v["cpuInfo"]["usagePercent"], 25.0);
    // The same device mounted twice counts once.
    assert_eq!(v["disksInfo"]["totalSpace"], 100_i64 << 30);
    assert_eq!(v["disksInfo"]["disks"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["networkInfo"]["interfaces"][0]["ipAddresses"][0],
        "10.0.0.5"
    );
    assert_eq!(v["networkInfo"]["interfaces"][1]["type"], "loopback");
    assert_eq!(v["processesInfo"]["processes"][0]["status"], "sleeping");
    assert_eq!(v["processesInfo"]["totalProcesses"], 120);

    let only_cpu = Sections::parse(&["cpu".to_string()]).unwrap();
    let v: Value = serde_json::to_value(ui_json::convert(&sample(), &only_cpu)).unwrap();
    assert!(v.get("cpuInfo").is_some() && v.get("hostInfo").is_some());
    assert!(
        v.get("memoryInfo").is_none() && v.get("processesInfo").is_none(),
        "{v}"
    );
}

#[test]
fn streamed_samples_render_like_a_status() {
    let m = SystemMetricsResponse {
        timestamp: "t".into(),
        cpu: sample().cpu,
        ..Default::default()
    };
    let s = as_status(m);
    assert!(s.available);
    assert!(snapshot_text::render(&s, &Sections::all(), false).contains("CPU: 25.0%"));
    assert!(Sections::all().has(Section::Process));
}

#[test]
fn watch_values_are_checked() {
    assert_eq!(parse_interval("5").unwrap(), 5);
    assert_eq!(parse_interval(" 3600 ").unwrap(), 3600);
    for bad in ["0", "-1", "abc", "3601", ""] {
        let err = parse_interval(bad).unwrap_err();
        assert_eq!(err.exit(), Exit::InvalidArgument, "{bad}");
        assert!(err.to_string().starts_with("--interval: "), "{err}");
    }
    assert_eq!(parse_count(None).unwrap(), None);
    assert_eq!(parse_count(Some("3")).unwrap(), Some(3));
    assert!(parse_count(Some("0")).is_err());
    assert!(
        parse_count(Some("x"))
            .unwrap_err()
            .to_string()
            .starts_with("--count: ")
    );
}
