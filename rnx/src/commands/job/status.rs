//! `rnx job status <uuid-or-prefix>`: everything known about one job.

use joblet_api_proto::metadata::{self, END_DETAIL, END_REASON};
use joblet_api_proto::{GetJobStatusRequest, GetJobStatusResponse};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use tonic::metadata::MetadataMap;

use super::list::command_line;
use crate::commands::Globals;
use crate::error::CliError;
use crate::output::{print_json, print_text, timefmt};

/// Words for the server's end-reason codes; an unknown code is shown as it is.
pub fn describe_end_reason(code: &str) -> &str {
    match code {
        "exited" => "exited",
        "signaled" => "killed by a signal",
        "oom_killed" => "out of memory (OOM killed)",
        "stopped" => "stopped",
        "timeout" => "timeout",
        "launch_failed" => "failed to start",
        "lost" => "lost (its process was gone after a restart)",
        "canceled" => "canceled before it started",
        other => other,
    }
}

/// Why a job ended, when the server says (in response headers or a log stream's trailers:
/// the public proto has no field for it, and must stay wire-compatible with Joblet's clients).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndInfo {
    pub reason: Option<String>,
    pub detail: Option<String>,
}

impl EndInfo {
    pub fn from_metadata(md: &MetadataMap) -> Self {
        let get = |key| {
            md.get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        EndInfo {
            reason: get(END_REASON),
            detail: get(END_DETAIL),
        }
    }
}

/// A job's final state, as GetJobStatus or a log stream's trailers tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalState {
    pub status: String,
    pub exit_code: i32,
    pub end: EndInfo,
}

impl FinalState {
    /// `None` unless the trailers name a terminal status and an exit code (a server that
    /// does not send them, Joblet's, or a stream that ended before the exit was recorded).
    pub fn from_trailers(md: &MetadataMap) -> Option<FinalState> {
        let (status, exit_code) = metadata::final_state(md).filter(|(s, _)| is_terminal(s))?;
        Some(FinalState {
            status: status.to_string(),
            exit_code,
            end: EndInfo::from_metadata(md),
        })
    }
}

pub async fn run(globals: &Globals, uuid: &str) -> Result<(), CliError> {
    let conn = globals.connect().await?;
    let request = GetJobStatusRequest {
        uuid: uuid.to_string(),
    };
    let response = conn
        .call("GetJobStatus", conn.jobs().get_job_status(request))
        .await?;
    let end = EndInfo::from_metadata(response.metadata());
    let status = response.into_inner();
    if globals.json {
        return print_json(&to_json(&status, &end));
    }
    print_text(&render(&status, &end, OffsetDateTime::now_utc()))
}

pub fn is_terminal(status: &str) -> bool {
    !matches!(
        status,
        "RUNNING" | "SCHEDULED" | "INITIALIZING" | "PENDING" | "STOPPING"
    )
}

fn section(out: &mut String, title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    out.push('\n');
    out.push_str(title);
    out.push_str(":\n");
    for line in lines {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
}

pub fn render(s: &GetJobStatusResponse, end: &EndInfo, now: OffsetDateTime) -> String {
    let mut out = format!("Job ID: {}\n", s.uuid);
    if !s.node_id.is_empty() {
        out.push_str(&format!("Node ID: {}\n", s.node_id));
    }
    out.push_str(&format!("Command: {}\n", command_line(&s.command, &s.args)));
    out.push_str(&format!("Status: {}\n", s.status));

    section(&mut out, "Scheduling Information", &scheduling(s, now));
    section(&mut out, "Timing", &timing(s, now));
    section(&mut out, "Resource Limits", &limits(s));
    let one = |label: &str, v: &str| -> Vec<String> {
        if v.is_empty() {
            vec![]
        } else {
            vec![format!("{label}: {v}")]
        }
    };
    section(&mut out, "Runtime Environment", &one("Runtime", &s.runtime));
    section(
        &mut out,
        "Network Configuration",
        &one("Network", &s.network),
    );
    let items = |v: &[String]| v.iter().map(|x| format!("- {x}")).collect::<Vec<_>>();
    section(&mut out, "Volumes", &items(&s.volumes));
    section(&mut out, "Working Directory", &one("Work Dir", &s.work_dir));
    section(&mut out, "Uploaded Files", &items(&s.uploads));
    section(&mut out, "Environment Variables", &environment(s));
    if is_terminal(&s.status) {
        let mut result = vec![format!("Exit Code: {}", s.exit_code)];
        if let Some(reason) = &end.reason {
            result.push(format!("End Reason: {}", describe_end_reason(reason)));
        }
        if let Some(detail) = &end.detail {
            result.push(format!("Detail: {detail}"));
        }
        section(&mut out, "Result", &result);
    }
    section(&mut out, "Available Actions", &actions(&s.status, &s.uuid));
    out
}

fn scheduling(s: &GetJobStatusResponse, now: OffsetDateTime) -> Vec<String> {
    if s.scheduled_time.is_empty() {
        return vec![];
    }
    let mut lines = vec![format!(
        "Scheduled Time: {}",
        timefmt::long(&s.scheduled_time)
    )];
    if s.status == "SCHEDULED" {
        let until = timefmt::parse_rfc3339(&s.scheduled_time)
            .and_then(|at| std::time::Duration::try_from(at - now).ok());
        lines.push(match until {
            Some(d) => format!("Time Until Execution: {}", timefmt::elapsed(d)),
            None => "Time Until Execution: due now (waiting to start)".to_string(),
        });
    }
    lines
}

fn timing(s: &GetJobStatusResponse, now: OffsetDateTime) -> Vec<String> {
    let mut lines = vec![format!("Created: {}", timefmt::long(&s.start_time))];
    if !s.end_time.is_empty() {
        lines.push(format!("Ended: {}", timefmt::long(&s.end_time)));
        if let Some(d) =
            timefmt::parse_rfc3339(&s.end_time).and_then(|end| timefmt::between(&s.start_time, end))
        {
            lines.push(format!("Duration: {}", timefmt::elapsed(d)));
        }
    } else if s.status == "RUNNING"
        && let Some(d) = timefmt::between(&s.start_time, now)
    {
        lines.push(format!("Running For: {}", timefmt::elapsed(d)));
    }
    if !s.timeout.is_empty() {
        lines.push(format!("Timeout: {}", s.timeout));
    }
    lines
}

fn limits(s: &GetJobStatusResponse) -> Vec<String> {
    let mut lines = Vec::new();
    if s.max_cpu > 0 {
        lines.push(format!("Max CPU: {}%", s.max_cpu));
    }
    if s.max_memory > 0 {
        lines.push(format!("Max Memory: {} MB", s.max_memory));
    }
    if s.max_io_bps > 0 {
        lines.push(format!("Max IO BPS: {}", s.max_io_bps));
    }
    if !s.cpu_cores.is_empty() {
        lines.push(format!("CPU Cores: {}", s.cpu_cores));
    }
    if s.gpu_count > 0 {
        if s.gpu_indices.is_empty() {
            lines.push(format!("GPUs: {} requested", s.gpu_count));
        } else {
            let indices: Vec<String> = s.gpu_indices.iter().map(i32::to_string).collect();
            lines.push(format!(
                "GPUs: {} allocated (indices: {})",
                s.gpu_count,
                indices.join(", ")
            ));
        }
        if s.gpu_memory_mb > 0 {
            lines.push(format!("GPU Memory: {} MB", s.gpu_memory_mb));
        }
    }
    lines
}

/// Sorted by name; secret values are never shown, whatever the server sent.
fn environment(s: &GetJobStatusResponse) -> Vec<String> {
    let mut plain: Vec<_> = s.environment.iter().collect();
    plain.sort();
    let mut secret: Vec<_> = s.secret_environment.keys().collect();
    secret.sort();
    plain
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(secret.into_iter().map(|k| format!("{k}=*** (secret)")))
        .collect()
}

fn actions(status: &str, uuid: &str) -> Vec<String> {
    let act = |cmd: &str, what: &str| format!("• rnx job {cmd} {uuid}   # {what}");
    match status {
        "SCHEDULED" => vec![
            act("stop", "cancel the scheduled job"),
            act("status", "check again"),
        ],
        "RUNNING" | "INITIALIZING" => vec![
            act("log", "stream live output"),
            act("stop", "stop the job"),
        ],
        _ => vec![
            act("log", "view the output"),
            act("delete", "delete the job and its logs"),
        ],
    }
}

/// Joblet's keys (camelCase), limits only when set, secrets masked; plus `timeout`,
/// `endReason` and `endDetail` when known.
pub fn to_json(s: &GetJobStatusResponse, end: &EndInfo) -> Value {
    let secrets: Map<String, Value> = s
        .secret_environment
        .keys()
        .map(|k| (k.clone(), Value::from("***")))
        .collect();
    let mut out = json!({
        "uuid": s.uuid,
        "nodeId": s.node_id,
        "command": s.command,
        "args": s.args,
        "status": s.status,
        "startTime": s.start_time,
        "endTime": s.end_time,
        "exitCode": s.exit_code,
        "scheduledTime": s.scheduled_time,
        "environment": s.environment,
        "secretEnvironment": secrets,
        "network": s.network,
        "volumes": s.volumes,
        "runtime": s.runtime,
        "workDir": s.work_dir,
        "uploads": s.uploads,
    });
    let Some(map) = out.as_object_mut() else {
        return out;
    };
    let mut set = |key: &str, value: Value, present: bool| {
        if present {
            map.insert(key.to_string(), value);
        }
    };
    set("maxCPU", s.max_cpu.into(), s.max_cpu > 0);
    set("maxMemory", s.max_memory.into(), s.max_memory > 0);
    set("maxIOBPS", s.max_io_bps.into(), s.max_io_bps > 0);
    set(
        "cpuCores",
        s.cpu_cores.clone().into(),
        !s.cpu_cores.is_empty(),
    );
    set("gpuCount", s.gpu_count.into(), s.gpu_count > 0);
    set("gpuMemoryMb", s.gpu_memory_mb.into(), s.gpu_memory_mb > 0);
    set(
        "gpuIndices",
        s.gpu_indices.clone().into(),
        !s.gpu_indices.is_empty(),
    );
    set("timeout", s.timeout.clone().into(), !s.timeout.is_empty());
    if let Some(r) = &end.reason {
        set("endReason", r.clone().into(), true);
    }
    if let Some(d) = &end.detail {
        set("endDetail", d.clone().into(), true);
    }
    out
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
