//! `rnx job metrics <uuid>`: the job's resource samples (CPU, memory, disk I/O, network),
//! the recorded ones first, then live ones until the job ends (Ctrl-C stops following).

use joblet_api_proto::{JobMetricsEvent, StreamJobMetricsRequest};
use serde::Serialize;
use time::{OffsetDateTime, UtcOffset};

use crate::commands::Globals;
use crate::error::CliError;
use crate::interrupt;
use crate::output::{Flow, bytes, print_json_line, write_raw};

pub async fn run(globals: &Globals, uuid: &str) -> Result<(), CliError> {
    // Read while the process has one thread (see main.rs): later the answer may be refused.
    let zone = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    let conn = globals.connect().await?;
    let request = StreamJobMetricsRequest {
        job_uuid: uuid.to_string(),
    };
    let mut events = conn
        .call("StreamJobMetrics", conn.jobs().stream_job_metrics(request))
        .await?
        .into_inner();
    if !globals.json {
        eprintln!("Streaming metrics of job {uuid} (Ctrl-C to stop)...");
    }
    let interrupted = interrupt::ctrl_c();
    tokio::pin!(interrupted);
    let mut count = 0u64;
    loop {
        let next = tokio::select! {
            biased;
            () = &mut interrupted => {
                eprintln!("\nStopped following the metrics (the job is not affected).");
                return Ok(());
            }
            next = events.message() => next,
        };
        let event = match next {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(status) => return Err(conn.fail("StreamJobMetrics", status).await),
        };
        count += 1;
        let flow = if globals.json {
            print_json_line(&to_json(&event))?
        } else {
            write_raw(render(&event, zone).as_bytes())?
        };
        if flow == Flow::Closed {
            return Ok(());
        }
    }
    if count == 0 {
        return Err(CliError::NoData(format!(
            "no metrics available for job {uuid} (it may have ended before the first sample, \
             or the server does not collect metrics)"
        )));
    }
    Ok(())
}

/// `16:20:50.123` in `zone`, from nanoseconds since the epoch.
pub fn clock(ns: i64, zone: UtcOffset) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)) else {
        return ns.to_string();
    };
    let t = t.to_offset(zone);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// One block, as Joblet's rnx prints it.
pub fn render(e: &JobMetricsEvent, zone: UtcOffset) -> String {
    let mut out = format!("\n=== Metrics at {} ===\n", clock(e.timestamp, zone));
    out.push_str(&format!("Job ID: {}\n\n", e.job_uuid));
    out.push_str(&format!("CPU: {:.2}%\n", e.cpu_percent));
    out.push_str("\nMemory:\n");
    out.push_str(&format!("  Current: {}\n", bytes::human(e.memory_bytes)));
    if e.memory_limit > 0 {
        let used = e.memory_bytes as f64 / e.memory_limit as f64 * 100.0;
        out.push_str(&format!(
            "  Limit: {} ({used:.1}% used)\n",
            bytes::human(e.memory_limit)
        ));
    } else {
        out.push_str("  Limit: none\n");
    }
    out.push_str("\nDisk I/O:\n");
    out.push_str(&format!("  Read: {}\n", bytes::human(e.disk_read_bytes)));
    out.push_str(&format!("  Write: {}\n", bytes::human(e.disk_write_bytes)));
    out.push_str("\nNetwork:\n");
    out.push_str(&format!("  RX: {}\n", bytes::human(e.net_recv_bytes)));
    out.push_str(&format!("  TX: {}\n", bytes::human(e.net_sent_bytes)));
    if e.gpu_percent > 0.0 || e.gpu_memory_bytes > 0 {
        out.push_str("\nGPU:\n");
        out.push_str(&format!("  Utilization: {:.1}%\n", e.gpu_percent));
        out.push_str(&format!("  Memory: {}\n", bytes::human(e.gpu_memory_bytes)));
    }
    out
}

/// One event per line, with the field names of Joblet's JSON (every field present).
#[derive(Debug, Serialize)]
pub struct MetricsJson<'a> {
    timestamp: i64,
    job_uuid: &'a str,
    cpu_percent: f64,
    memory_bytes: i64,
    memory_limit: i64,
    disk_read_bytes: i64,
    disk_write_bytes: i64,
    net_recv_bytes: i64,
    net_sent_bytes: i64,
    gpu_percent: f64,
    gpu_memory_bytes: i64,
}

pub fn to_json(e: &JobMetricsEvent) -> MetricsJson<'_> {
    MetricsJson {
        timestamp: e.timestamp,
        job_uuid: &e.job_uuid,
        cpu_percent: e.cpu_percent,
        memory_bytes: e.memory_bytes,
        memory_limit: e.memory_limit,
        disk_read_bytes: e.disk_read_bytes,
        disk_write_bytes: e.disk_write_bytes,
        net_recv_bytes: e.net_recv_bytes,
        net_sent_bytes: e.net_sent_bytes,
        gpu_percent: e.gpu_percent,
        gpu_memory_bytes: e.gpu_memory_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::offset;

    fn event() -> JobMetricsEvent {
        JobMetricsEvent {
            // 2026-11-23T16:20:50.123Z
            timestamp: 1_795_450_850_123_000_000,
            job_uuid: "u1".into(),
            cpu_percent: 12.345,
            memory_bytes: 50 << 20,
            memory_limit: 200 << 20,
            disk_read_bytes: 1536,
            disk_write_bytes: 0,
            net_recv_bytes: 10,
            net_sent_bytes: 2048,
            ..Default::default()
        }
    }

    #[test]
    fn blocks_are_joblets() {
        assert_eq!(
            render(&event(), UtcOffset::UTC),
            "\n=== Metrics at 16:20:50.123 ===\nJob ID: u1\n\nCPU: 12.35%\n\nMemory:\n  \
             Current: 50.0 MiB\n  Limit: 200.0 MiB (25.0% used)\n\nDisk I/O:\n  Read: 1.5 KiB\n  \
             Write: 0 B\n\nNetwork:\n  RX: 10 B\n  TX: 2.0 KiB\n"
        );
        let mut no_limit = event();
        no_limit.memory_limit = 0;
        no_limit.gpu_percent = 50.0;
        let text = render(&no_limit, offset!(+2));
        assert!(text.contains("=== Metrics at 18:20:50.123 ==="), "{text}");
        assert!(text.contains("Limit: none"), "{text}");
        assert!(text.contains("GPU:\n  Utilization: 50.0%"), "{text}");
    }

    #[test]
    fn json_has_every_field() {
        let v = serde_json::to_value(to_json(&event())).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 11, "{keys:?}");
        assert_eq!(v["job_uuid"], "u1");
        assert_eq!(v["memory_limit"], 200 << 20);
        assert_eq!(v["timestamp"], 1_795_450_850_123_000_000_i64);
    }

    #[test]
    fn clock_survives_absurd_timestamps() {
        assert_eq!(clock(0, UtcOffset::UTC), "00:00:00.000");
        assert_eq!(clock(i64::MAX, UtcOffset::UTC), "23:47:16.854");
    }
}
