//! Conversions between the public messages and the internal job model: a `RunJobRequest`
//! into a validated launch with defaults filled in, and a record into the status and list
//! messages (RFC 3339 times, masked or absent secrets).

use std::collections::HashMap;

use joblet_api_proto::{GetJobStatusResponse, Job, RunJobRequest};
use joblet_ipc_proto::job::{EnvVar, JobRecord, JobSpec, LaunchSpec, Limits};
use joblet_ipc_proto::settings::DefaultLimits;
use joblet_ipc_proto::validate;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::Status;

use super::{duration, schedule};
use crate::uploads::{self, UploadPlan};

/// What replaces each secret value in a status.
pub const MASK: &str = "***";

/// The defaults a request's zero fields take.
#[derive(Debug, Clone, Default)]
pub struct JobDefaults {
    pub limits: DefaultLimits,
    pub timeout_ms: u64,
}

/// A checked RunJob request.
#[derive(Debug)]
pub struct RunRequest {
    /// The job as it will start; `spec.uploads`, `spec.schedule_ns` and `has_upload_dir`
    /// already reflect the uploads and the schedule.
    pub launch: LaunchSpec,
    pub uploads: UploadPlan,
    /// When the job is due, if it is scheduled.
    pub schedule_ns: Option<u64>,
}

/// What a request's checks need besides the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_upload_bytes: u64,
    pub now_ns: u64,
}

/// Turns a request into a launch: refuses what this host cannot do, checks the uploads and
/// the schedule, fills defaults, and validates the result with the same code the spawner
/// runs.
#[allow(clippy::result_large_err)]
pub fn run_request(
    mut req: RunJobRequest,
    defaults: &JobDefaults,
    limits: RequestLimits,
) -> Result<RunRequest, Status> {
    if req.gpu_count > 0 || req.gpu_memory_mb > 0 {
        return Err(Status::invalid_argument("this host has no GPU support"));
    }
    if req.gpu_count < 0 || req.gpu_memory_mb < 0 {
        return Err(Status::invalid_argument("GPU fields must not be negative"));
    }
    let schedule_ns = if req.schedule.trim().is_empty() {
        None
    } else {
        Some(
            schedule::parse(&req.schedule, limits.now_ns)
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
        )
    };
    let uploads = uploads::plan(std::mem::take(&mut req.uploads), limits.max_upload_bytes)?;
    let mut launch = launch_from_request(req, defaults)?;
    let spec = &mut launch.spec;
    spec.schedule_ns = schedule_ns.unwrap_or(0);
    if !uploads.is_empty() {
        spec.uploads = uploads.recorded_paths();
        // Uploads must not eat the job's own space: their share is added on top.
        if spec.limits.disk_mb > 0 {
            spec.limits.disk_mb = spec.limits.disk_mb.saturating_add(uploads.disk_mb());
        }
        launch.has_upload_dir = true;
    }
    validate::launch(&launch).map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(RunRequest {
        launch,
        uploads,
        schedule_ns,
    })
}

/// The launch of a request without uploads or schedule (those are the caller's).
#[allow(clippy::result_large_err)]
fn launch_from_request(req: RunJobRequest, defaults: &JobDefaults) -> Result<LaunchSpec, Status> {
    let limits = Limits {
        cpu_percent: or_default(
            non_negative("max_cpu", req.max_cpu)?,
            defaults.limits.cpu_percent,
        ),
        cpu_cores: req.cpu_cores.trim().to_owned(),
        memory_mb: or_default(
            u64::from(non_negative("max_memory", req.max_memory)?),
            defaults.limits.memory_mb,
        ),
        io_bps: or_default(
            u64::from(non_negative("max_io_bps", req.max_io_bps)?),
            defaults.limits.io_bps,
        ),
        pids_max: defaults.limits.pids_max,
        disk_mb: defaults.limits.disk_mb,
    };
    let timeout_ms = if req.timeout.trim().is_empty() {
        defaults.timeout_ms
    } else {
        let ms = duration::parse_ms(&req.timeout)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        or_default(ms, defaults.timeout_ms)
    };
    let mut env: Vec<EnvVar> = req
        .environment
        .into_iter()
        .map(|(k, v)| EnvVar::new(k, v))
        .collect();
    env.sort_by(|a, b| a.key.cmp(&b.key));
    let mut secret_env: Vec<EnvVar> = req
        .secret_environment
        .into_iter()
        .map(|(k, v)| EnvVar::new(k, v))
        .collect();
    secret_env.sort_by(|a, b| a.key.cmp(&b.key));
    let spec = JobSpec {
        command: req.command,
        args: req.args,
        env,
        secret_env_keys: secret_env.iter().map(|v| v.key.clone()).collect(),
        limits,
        work_dir: req.work_dir,
        network: req.network,
        volumes: req.volumes,
        runtime: req.runtime,
        timeout_ms,
        uploads: Vec::new(),
        schedule_ns: 0,
    };
    Ok(LaunchSpec {
        spec,
        secret_env,
        has_upload_dir: false,
    })
}

#[allow(clippy::result_large_err)]
fn non_negative(field: &str, v: i32) -> Result<u32, Status> {
    u32::try_from(v)
        .map_err(|_| Status::invalid_argument(format!("invalid {field}: {v} is negative")))
}

fn or_default<T: PartialEq + Default>(v: T, default: T) -> T {
    if v == T::default() { default } else { v }
}

/// A time in ns since the epoch as RFC 3339 in UTC to the second; empty when unset.
pub fn rfc3339(ns: u64) -> String {
    if ns == 0 {
        return String::new();
    }
    let secs = i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn now_ns() -> u64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    u64::try_from(nanos).unwrap_or(0)
}

/// Saturates values that do not fit the contract's `int32` fields.
fn int32<T: TryInto<i32>>(v: T) -> i32 {
    v.try_into().unwrap_or(i32::MAX)
}

/// The exit code clients see: set once the job is terminal.
pub fn exit_code(r: &JobRecord) -> i32 {
    match &r.outcome {
        Some(o) if r.state.is_terminal() => o.exit_code,
        _ => 0,
    }
}

fn env_map(env: &[EnvVar]) -> HashMap<String, String> {
    env.iter()
        .map(|v| (v.key.clone(), v.value.clone()))
        .collect()
}

/// The full status of one job; secret values are replaced by `***`.
pub fn status_response(r: &JobRecord) -> GetJobStatusResponse {
    let s = &r.spec;
    GetJobStatusResponse {
        uuid: r.id.to_string(),
        command: s.command.clone(),
        args: s.args.clone(),
        max_cpu: int32(s.limits.cpu_percent),
        cpu_cores: s.limits.cpu_cores.clone(),
        max_memory: int32(s.limits.memory_mb),
        max_io_bps: int32(s.limits.io_bps),
        status: r.state.as_str().to_owned(),
        start_time: rfc3339(r.started_ns),
        end_time: rfc3339(r.ended_ns),
        exit_code: exit_code(r),
        scheduled_time: rfc3339(s.schedule_ns),
        environment: env_map(&s.env),
        secret_environment: s
            .secret_env_keys
            .iter()
            .map(|k| (k.clone(), MASK.to_owned()))
            .collect(),
        network: s.network.clone(),
        volumes: s.volumes.clone(),
        runtime: s.runtime.clone(),
        work_dir: s.work_dir.clone(),
        uploads: s.uploads.clone(),
        gpu_indices: Vec::new(),
        gpu_count: 0,
        gpu_memory_mb: 0,
        node_id: r.node_id.clone(),
        timeout: duration::format_ms(s.timeout_ms),
    }
}

/// One job in a list: no secret environment at all, not even masked.
pub fn list_item(r: &JobRecord) -> Job {
    let s = &r.spec;
    Job {
        uuid: r.id.to_string(),
        command: s.command.clone(),
        args: s.args.clone(),
        max_cpu: int32(s.limits.cpu_percent),
        cpu_cores: s.limits.cpu_cores.clone(),
        max_memory: int32(s.limits.memory_mb),
        max_io_bps: int32(s.limits.io_bps),
        status: r.state.as_str().to_owned(),
        start_time: rfc3339(r.started_ns),
        end_time: rfc3339(r.ended_ns),
        exit_code: exit_code(r),
        scheduled_time: rfc3339(s.schedule_ns),
        runtime: s.runtime.clone(),
        environment: env_map(&s.env),
        secret_environment: HashMap::new(),
        gpu_indices: Vec::new(),
        gpu_count: 0,
        gpu_memory_mb: 0,
        node_id: r.node_id.clone(),
        timeout: duration::format_ms(s.timeout_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use joblet_api_proto::FileUpload;
    use joblet_ipc_proto::job::{EndReason, JobId, JobOutcome, JobState};
    use tonic::Code;

    fn defaults() -> JobDefaults {
        JobDefaults {
            limits: DefaultLimits {
                cpu_percent: 50,
                memory_mb: 512,
                io_bps: 0,
                pids_max: 256,
                disk_mb: 100,
            },
            timeout_ms: 3_600_000,
        }
    }

    /// 2026-11-23T16:20:50Z
    const NOW: u64 = 1_795_450_850_000_000_000;

    fn run(req: RunJobRequest) -> Result<RunRequest, Status> {
        run_request(
            req,
            &defaults(),
            RequestLimits {
                max_upload_bytes: 1024,
                now_ns: NOW,
            },
        )
    }

    fn request() -> RunJobRequest {
        RunJobRequest {
            command: "python3".into(),
            args: vec!["-c".into(), "print(1)".into()],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_fill_zero_fields_only() {
        let mut req = request();
        req.max_memory = 2048;
        req.timeout = "2h30m".into();
        let l = run(req).unwrap().launch;
        assert_eq!(l.spec.limits.cpu_percent, 50);
        assert_eq!(l.spec.limits.memory_mb, 2048);
        assert_eq!(l.spec.limits.pids_max, 256);
        assert_eq!(l.spec.limits.disk_mb, 100);
        assert_eq!(l.spec.timeout_ms, 9_000_000);
        let l = run(request()).unwrap().launch;
        assert_eq!(l.spec.timeout_ms, 3_600_000);
    }

    #[test]
    fn uploads_and_schedule_shape_the_launch() {
        let mut req = request();
        req.schedule = "2026-11-23T16:21:20Z".into();
        req.uploads = vec![
            FileUpload {
                path: "src/main.py".into(),
                content: b"print(1)".to_vec(),
                mode: 0o4755,
                is_directory: false,
            },
            FileUpload {
                path: "src".into(),
                mode: 0o755,
                is_directory: true,
                ..Default::default()
            },
        ];
        let r = run(req).unwrap();
        assert_eq!(r.schedule_ns, Some(NOW + 30_000_000_000));
        assert_eq!(r.launch.spec.schedule_ns, NOW + 30_000_000_000);
        assert!(r.launch.has_upload_dir);
        assert_eq!(r.launch.spec.uploads, ["src/main.py"]);
        assert_eq!(r.launch.spec.limits.disk_mb, 101, "the uploads' MiB on top");
        assert_eq!(r.uploads.entries.len(), 2);
        let plain = run(request()).unwrap();
        assert_eq!(plain.schedule_ns, None);
        assert!(!plain.launch.has_upload_dir);
        assert_eq!(plain.launch.spec.limits.disk_mb, 100);
    }

    #[test]
    fn secrets_go_to_the_launch_and_only_their_names_to_the_spec() {
        let mut req = request();
        req.environment.insert("B".into(), "2".into());
        req.environment.insert("A".into(), "1".into());
        req.secret_environment
            .insert("TOKEN".into(), "hunter2".into());
        let l = run(req).unwrap().launch;
        assert_eq!(
            l.spec
                .env
                .iter()
                .map(|v| v.key.as_str())
                .collect::<Vec<_>>(),
            ["A", "B"]
        );
        assert_eq!(l.spec.secret_env_keys, vec!["TOKEN".to_owned()]);
        assert_eq!(l.secret_env, vec![EnvVar::new("TOKEN", "hunter2")]);
        assert!(!format!("{:?}", l.spec).contains("hunter2"));
    }

    #[test]
    fn refusals_name_the_problem() {
        type Edit = Box<dyn Fn(&mut RunJobRequest)>;
        let cases: Vec<(Edit, Code, &str)> = vec![
            (
                Box::new(|r| r.gpu_count = 1),
                Code::InvalidArgument,
                "no GPU support",
            ),
            (
                Box::new(|r| r.gpu_memory_mb = 1024),
                Code::InvalidArgument,
                "no GPU support",
            ),
            (
                Box::new(|r| r.schedule = "2030-01-01T00:00:00Z".into()),
                Code::InvalidArgument,
                "more than a year ahead",
            ),
            (
                Box::new(|r| r.schedule = "in 5 minutes".into()),
                Code::InvalidArgument,
                "RFC 3339",
            ),
            (
                Box::new(|r| r.uploads.push(Default::default())),
                Code::InvalidArgument,
                "upload path",
            ),
            (
                Box::new(|r| {
                    r.uploads.push(FileUpload {
                        path: "../../etc/cron.d/x".into(),
                        ..Default::default()
                    })
                }),
                Code::InvalidArgument,
                "../../etc/cron.d/x",
            ),
            (
                Box::new(|r| {
                    r.uploads.push(FileUpload {
                        path: "big".into(),
                        content: vec![0; 2048],
                        ..Default::default()
                    })
                }),
                Code::InvalidArgument,
                "1024 bytes",
            ),
            (
                Box::new(|r| r.max_cpu = -1),
                Code::InvalidArgument,
                "max_cpu",
            ),
            (
                Box::new(|r| r.timeout = "5 days".into()),
                Code::InvalidArgument,
                "timeout",
            ),
            (
                Box::new(|r| r.command = String::new()),
                Code::InvalidArgument,
                "command",
            ),
            (
                Box::new(|r| r.cpu_cores = "3-1".into()),
                Code::InvalidArgument,
                "cpu_cores",
            ),
            (
                Box::new(|r| r.work_dir = "/work/../etc".into()),
                Code::InvalidArgument,
                "work_dir",
            ),
            (
                Box::new(|r| {
                    r.environment.insert("JOBLET_MODE".into(), "x".into());
                }),
                Code::InvalidArgument,
                "reserved",
            ),
            (
                Box::new(|r| {
                    r.environment.insert("K".into(), "x".into());
                    r.secret_environment.insert("K".into(), "y".into());
                }),
                Code::InvalidArgument,
                "twice",
            ),
        ];
        for (i, (edit, code, needle)) in cases.into_iter().enumerate() {
            let mut req = request();
            edit(&mut req);
            let err = run(req).unwrap_err();
            assert_eq!(err.code(), code, "case {i}: {}", err.message());
            assert!(
                err.message().contains(needle),
                "case {i}: {}",
                err.message()
            );
        }
    }

    fn record(state: JobState) -> JobRecord {
        JobRecord {
            id: JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").unwrap(),
            spec: JobSpec {
                command: "echo".into(),
                env: vec![EnvVar::new("A", "1")],
                secret_env_keys: vec!["TOKEN".into()],
                limits: Limits {
                    memory_mb: u64::MAX,
                    ..Default::default()
                },
                timeout_ms: 90_000,
                ..Default::default()
            },
            state,
            node_id: "node-1".into(),
            created_ns: 1_795_450_000_000_000_000,
            started_ns: 1_795_450_850_123_456_789,
            ended_ns: 0,
            outcome: Some(JobOutcome {
                exit_code: 3,
                signal: None,
                oom_killed: false,
                reason: EndReason::Exited,
                message: String::new(),
            }),
            sealed_secrets: Vec::new(),
        }
    }

    #[test]
    fn status_masks_secrets_and_formats_times() {
        let s = status_response(&record(JobState::Running));
        assert_eq!(s.start_time, "2026-11-23T16:20:50Z");
        assert_eq!(s.end_time, "");
        assert_eq!(s.exit_code, 0, "exit code shown only once terminal");
        assert_eq!(
            s.secret_environment.get("TOKEN").map(String::as_str),
            Some(MASK)
        );
        assert_eq!(s.environment.get("A").map(String::as_str), Some("1"));
        assert_eq!(s.max_memory, i32::MAX);
        assert_eq!(s.timeout, "1m30s");
        assert_eq!(s.status, "RUNNING");
        let mut r = record(JobState::Failed);
        r.ended_ns = r.started_ns + 1_000_000_000;
        let s = status_response(&r);
        assert_eq!(s.exit_code, 3);
        assert_eq!(s.end_time, "2026-11-23T16:20:51Z");
    }

    #[test]
    fn list_items_carry_no_secret_names_or_values() {
        let j = list_item(&record(JobState::Completed));
        assert!(j.secret_environment.is_empty());
        assert_eq!(j.status, "COMPLETED");
        assert_eq!(j.node_id, "node-1");
    }
}
