//! `rnx monitor status` as text: everything the server reports about itself.

use joblet_api_proto::SystemStatusResponse;

use super::parts::{self, percent_of};
use crate::output::bytes::{self, human};
use crate::output::table::{Table, fields, indent};

pub fn render(s: &SystemStatusResponse) -> String {
    let mut out = format!(
        "System Status - {}\nAvailable: {}\n",
        s.timestamp,
        if s.available { "yes" } else { "no" }
    );
    let mut section = |title: &str, body: String| {
        if !body.is_empty() {
            out.push_str(&format!("\n{title}:\n{body}"));
        }
    };
    section("Host Information", host(s));
    section("Joblet Server", server(s));
    section("CPU", cpu(s));
    section("Memory", memory(s));
    section("Disks", disks(s));
    section("Network Interfaces", networks(s));
    section("I/O", io(s));
    section("Processes", processes(s));
    section("Cloud Environment", cloud(s));
    out
}

fn some(rows: Vec<(&str, String)>) -> Vec<(&str, String)> {
    rows.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

fn host(s: &SystemStatusResponse) -> String {
    let Some(h) = &s.host else {
        return String::new();
    };
    fields(
        &some(vec![
            ("Hostname", h.hostname.clone()),
            ("OS", h.os.clone()),
            ("Kernel", h.kernel_version.clone()),
            ("Architecture", h.architecture.clone()),
            ("Uptime", parts::uptime(h.uptime)),
            ("Boot Time", h.boot_time.clone()),
            ("Node ID", h.node_id.clone()),
            ("Server IPs", h.server_ips.join(", ")),
            ("MAC Addresses", h.mac_addresses.join(", ")),
        ]),
        "  ",
    )
}

fn server(s: &SystemStatusResponse) -> String {
    let Some(v) = &s.server_version else {
        return String::new();
    };
    fields(
        &some(vec![
            ("Version", v.version.clone()),
            ("Component", v.component.clone()),
            ("Git Tag", v.git_tag.clone()),
            ("Git Commit", v.git_commit.clone()),
            ("Build Date", v.build_date.clone()),
            ("Platform", v.platform.clone()),
            ("Proto", v.proto_tag.clone()),
        ]),
        "  ",
    )
}

fn cpu(s: &SystemStatusResponse) -> String {
    let Some(c) = &s.cpu else {
        return String::new();
    };
    fields(
        &some(vec![
            ("Cores", c.cores.to_string()),
            ("Usage", format!("{:.1}%", c.usage_percent)),
            ("Load Average", parts::load_average(c, ", ")),
            ("User Time", format!("{:.1}%", c.user_time)),
            ("System Time", format!("{:.1}%", c.system_time)),
            ("Idle Time", format!("{:.1}%", c.idle_time)),
            ("I/O Wait", format!("{:.1}%", c.io_wait_time)),
            ("Steal", format!("{:.1}%", c.steal_time)),
            ("Per Core", parts::per_core(c)),
        ]),
        "  ",
    )
}

fn memory(s: &SystemStatusResponse) -> String {
    let Some(m) = &s.memory else {
        return String::new();
    };
    let mut rows = vec![
        ("Total", human(m.total_bytes)),
        (
            "Used",
            format!("{} ({:.1}%)", human(m.used_bytes), m.usage_percent),
        ),
        ("Available", human(m.available_bytes)),
        ("Free", human(m.free_bytes)),
        ("Cached", human(m.cached_bytes)),
        ("Buffered", human(m.buffered_bytes)),
    ];
    if m.swap_total > 0 {
        rows.push((
            "Swap",
            format!(
                "{} of {} used ({:.1}%)",
                human(m.swap_used),
                human(m.swap_total),
                percent_of(m.swap_used, m.swap_total)
            ),
        ));
    } else {
        rows.push(("Swap", "none".into()));
    }
    fields(&rows, "  ")
}

fn disks(s: &SystemStatusResponse) -> String {
    if s.disks.is_empty() {
        return String::new();
    }
    indent(&parts::disk_table(&s.disks), "  ")
}

fn networks(s: &SystemStatusResponse) -> String {
    if s.networks.is_empty() {
        return String::new();
    }
    let mut out = indent(&parts::network_table(&s.networks, false), "  ");
    let macs: Vec<String> = s
        .networks
        .iter()
        .filter(|n| !n.mac_address.is_empty())
        .map(|n| format!("{} {}", n.interface, n.mac_address))
        .collect();
    if !macs.is_empty() {
        out.push_str(&format!("  MAC: {}\n", macs.join(", ")));
    }
    out
}

fn io(s: &SystemStatusResponse) -> String {
    let Some(io) = &s.io else {
        return String::new();
    };
    let mut out = fields(
        &[
            (
                "Reads",
                format!(
                    "{} ops, {} ({})",
                    io.total_reads,
                    human(io.read_bytes),
                    bytes::rate(io.read_rate)
                ),
            ),
            (
                "Writes",
                format!(
                    "{} ops, {} ({})",
                    io.total_writes,
                    human(io.write_bytes),
                    bytes::rate(io.write_rate)
                ),
            ),
        ],
        "  ",
    );
    if !io.disk_io.is_empty() {
        let mut t = Table::new(["DEVICE", "READS", "WRITES", "READ", "WRITTEN", "UTIL%"]);
        for d in &io.disk_io {
            t.row([
                d.device.clone(),
                d.reads_completed.to_string(),
                d.writes_completed.to_string(),
                human(d.read_bytes),
                human(d.write_bytes),
                format!("{:.1}", d.utilization),
            ]);
        }
        out.push_str(&indent(&t.render(), "  "));
    }
    out
}

fn processes(s: &SystemStatusResponse) -> String {
    let Some(p) = &s.processes else {
        return String::new();
    };
    let mut out = fields(
        &[
            ("Total", p.total_processes.to_string()),
            ("Running", p.running_processes.to_string()),
            ("Sleeping", p.sleeping_processes.to_string()),
            ("Stopped", p.stopped_processes.to_string()),
            ("Zombie", p.zombie_processes.to_string()),
            ("Threads", p.total_threads.to_string()),
        ],
        "  ",
    );
    if !p.top_by_cpu.is_empty() {
        out.push_str("  Top by CPU:\n");
        out.push_str(&indent(&parts::process_table(&p.top_by_cpu), "    "));
    }
    if !p.top_by_memory.is_empty() {
        out.push_str("  Top by memory:\n");
        out.push_str(&indent(&parts::process_table(&p.top_by_memory), "    "));
    }
    out
}

fn cloud(s: &SystemStatusResponse) -> String {
    let Some(c) = s.cloud.as_ref().filter(|c| !c.provider.is_empty()) else {
        return String::new();
    };
    fields(
        &some(vec![
            ("Provider", c.provider.clone()),
            ("Region", c.region.clone()),
            ("Zone", c.zone.clone()),
            ("Instance ID", c.instance_id.clone()),
            ("Instance Type", c.instance_type.clone()),
            ("Hypervisor", c.hypervisor_type.clone()),
        ]),
        "  ",
    )
}
