//! `rnx monitor top` and each frame of `rnx monitor watch`: one line per section, with
//! tables for disks, active interfaces and the top processes (one line each with
//! `--compact`).

use joblet_api_proto::SystemStatusResponse;

use super::filter::{Section, Sections};
use super::parts::{self, percent_of};
use crate::output::bytes::{self, human};
use crate::output::table::indent;

pub fn render(s: &SystemStatusResponse, sections: &Sections, compact: bool) -> String {
    let mut out = format!("System Metrics - {}", s.timestamp);
    if let Some(h) = s.host.as_ref().filter(|h| !h.hostname.is_empty()) {
        out.push_str(&format!(" ({})", h.hostname));
    }
    out.push_str("\n\n");
    for section in Section::ALL {
        if sections.has(section) {
            out.push_str(&match section {
                Section::Cpu => cpu(s),
                Section::Memory => memory(s),
                Section::Disk => disks(s, compact),
                Section::Network => networks(s, compact),
                Section::Io => io(s),
                Section::Process => processes(s, compact),
            });
        }
    }
    out
}

fn cpu(s: &SystemStatusResponse) -> String {
    let Some(c) = &s.cpu else {
        return "CPU: not reported\n".into();
    };
    let mut line = format!(
        "CPU: {:.1}% of {} cores [user {:.1}%, system {:.1}%, idle {:.1}%, iowait {:.1}%] \
         | Load: {}",
        c.usage_percent,
        c.cores,
        c.user_time,
        c.system_time,
        c.idle_time,
        c.io_wait_time,
        parts::load_average(c, " ")
    );
    if !c.per_core_usage.is_empty() && c.per_core_usage.len() <= 16 {
        line.push_str(&format!(" | Cores: {}", parts::per_core(c)));
    }
    line + "\n"
}

fn memory(s: &SystemStatusResponse) -> String {
    let Some(m) = &s.memory else {
        return "Memory: not reported\n".into();
    };
    format!(
        "Memory: {} / {} ({:.1}%) | Available: {} | Swap: {} / {} ({:.1}%)\n",
        human(m.used_bytes),
        human(m.total_bytes),
        m.usage_percent,
        human(m.available_bytes),
        human(m.swap_used),
        human(m.swap_total),
        percent_of(m.swap_used, m.swap_total)
    )
}

fn disks(s: &SystemStatusResponse, compact: bool) -> String {
    if s.disks.is_empty() {
        return "Disks: none reported\n".into();
    }
    if compact {
        let items: Vec<String> = s
            .disks
            .iter()
            .map(|d| format!("{} {:.1}%", d.mount_point, d.usage_percent))
            .collect();
        return format!("Disks: {}\n", items.join(" | "));
    }
    format!("Disks:\n{}", indent(&parts::disk_table(&s.disks), "  "))
}

fn networks(s: &SystemStatusResponse, compact: bool) -> String {
    let active: Vec<_> = s.networks.iter().filter(|n| parts::is_active(n)).collect();
    if active.is_empty() {
        return "Network: no active interfaces\n".into();
    }
    if compact {
        let items: Vec<String> = active
            .iter()
            .map(|n| {
                format!(
                    "{}: RX {} TX {}",
                    n.interface,
                    bytes::rate(n.receive_rate),
                    bytes::rate(n.transmit_rate)
                )
            })
            .collect();
        return format!("Network: {}\n", items.join(" | "));
    }
    format!(
        "Network:\n{}",
        indent(&parts::network_table(&s.networks, true), "  ")
    )
}

fn io(s: &SystemStatusResponse) -> String {
    let Some(io) = &s.io else {
        return "I/O: not reported\n".into();
    };
    format!(
        "I/O: {} read ({} ops) | {} written ({} ops) | now {} read, {} write\n",
        human(io.read_bytes),
        io.total_reads,
        human(io.write_bytes),
        io.total_writes,
        bytes::rate(io.read_rate),
        bytes::rate(io.write_rate)
    )
}

fn processes(s: &SystemStatusResponse, compact: bool) -> String {
    let Some(p) = &s.processes else {
        return "Processes: not reported\n".into();
    };
    let mut out = format!(
        "Processes: {} total, {} running, {} sleeping, {} stopped, {} zombie, {} threads\n",
        p.total_processes,
        p.running_processes,
        p.sleeping_processes,
        p.stopped_processes,
        p.zombie_processes,
        p.total_threads
    );
    if !compact && !p.top_by_cpu.is_empty() {
        out.push_str("Top processes by CPU:\n");
        out.push_str(&indent(&parts::process_table(&p.top_by_cpu), "  "));
    }
    out
}
