//! `rnx job run [flags] <command> [args...]`: submits a job, and with `--follow` streams
//! its output and exits with its exit code.

use joblet_api_proto::{FileUpload, RunJobRequest};
use serde::Serialize;
use time::OffsetDateTime;

use super::follow;
use super::run_args::{self, Parsed, RunArgs};
use super::{transfer, uploads};
use crate::cli::RUN_HELP;
use crate::commands::Globals;
use crate::error::CliError;
use crate::output::{print_json, print_text};
use crate::schedule;

pub async fn run(globals: &Globals, words: &[String]) -> Result<u8, CliError> {
    let args = match run_args::parse(words)? {
        Parsed::Help => {
            print_text(RUN_HELP)?;
            return Ok(0);
        }
        Parsed::Run(args) => *args,
    };
    let globals = merge(globals, &args);
    for warning in &args.warnings {
        eprintln!("{warning}");
    }
    if args.follow && !args.schedule.is_empty() {
        return Err(CliError::Usage(
            "--follow cannot be combined with --schedule (the job starts later; use \
             `rnx job log <id>` then)"
                .into(),
        ));
    }
    // Before connecting: the local time zone can only be read while the process has a
    // single thread, and bad flags should not cost a round trip.
    let scheduled_time = resolve_schedule(&args.schedule)?;
    let plan = uploads::plan(&args.uploads, &args.upload_dirs)?;
    for note in &plan.notes {
        eprintln!("{note}");
    }
    if !plan.is_empty() {
        let notice = format!(
            "Uploading {} files ({:.2} MB)...",
            plan.file_count(),
            plan.total_bytes as f64 / 1024.0 / 1024.0
        );
        if args.follow {
            eprintln!("{notice}");
        } else if !globals.json {
            print_text(&notice)?;
        }
    }
    let files_uploaded = plan.file_count();

    // Connected first, so an unreachable node is reported before large files are read.
    let conn = globals.connect().await?;
    let files = transfer::read_uploads(plan)?;
    let request = build_request(&args, &scheduled_time, files);
    let reply = transfer::send(&conn, request).await?;

    let submitted = Submitted {
        job_uuid: reply.job_uuid,
        command: args.command.clone(),
        args: args.args.clone(),
        status: reply.status,
        schedule: args.schedule.clone(),
        scheduled_time,
        files_uploaded,
        env_vars: args.env.len(),
        secret_env_vars: args.secret_env.len(),
    };
    if args.follow {
        return follow::follow(&conn, &submitted, globals.json).await;
    }
    if globals.json {
        print_json(&submitted)?;
    } else {
        print_text(&submitted.render())?;
    }
    Ok(0)
}

/// Global flags given inline (`rnx job run --node=x ...`) win over the ones before `job`.
fn merge(globals: &Globals, args: &RunArgs) -> Globals {
    Globals {
        config: args.config.clone().or_else(|| globals.config.clone()),
        node: args.node.clone().or_else(|| globals.node.clone()),
        json: globals.json || args.json,
    }
}

fn resolve_schedule(spec: &str) -> Result<String, CliError> {
    if spec.is_empty() {
        return Ok(String::new());
    }
    let at = schedule::resolve(spec, OffsetDateTime::now_utc(), schedule::system_local)
        .map_err(|e| CliError::invalid("--schedule", e.to_string()))?;
    Ok(schedule::to_rfc3339(at))
}

pub fn build_request(
    args: &RunArgs,
    scheduled_time: &str,
    uploads: Vec<FileUpload>,
) -> RunJobRequest {
    RunJobRequest {
        command: args.command.clone(),
        args: args.args.clone(),
        max_cpu: args.max_cpu,
        cpu_cores: args.cpu_cores.clone(),
        max_memory: args.max_memory,
        max_io_bps: args.max_iobps,
        uploads,
        schedule: scheduled_time.to_string(),
        network: args.network.clone(),
        volumes: args.volumes.clone(),
        runtime: args.runtime.clone(),
        work_dir: args.work_dir.clone(),
        environment: args.env.clone().into_iter().collect(),
        secret_environment: args.secret_env.clone().into_iter().collect(),
        gpu_count: args.gpu_count,
        gpu_memory_mb: args.gpu_memory_mb,
        timeout: args.timeout.clone(),
    }
}

/// What was submitted, for the user. The JSON keys are Joblet's, empty ones left out.
#[derive(Debug, Clone, Serialize)]
pub struct Submitted {
    pub job_uuid: String,
    pub command: String,
    pub args: Vec<String>,
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub schedule: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scheduled_time: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub files_uploaded: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub env_vars: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub secret_env_vars: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Submitted {
    pub fn render(&self) -> String {
        let mut out = format!(
            "Job submitted:\nID: {}\nCommand: {}\nStatus: {}\n",
            self.job_uuid,
            super::list::command_line(&self.command, &self.args),
            self.status
        );
        if !self.schedule.is_empty() {
            out.push_str(&format!(
                "Scheduled: {} ({})\n",
                self.schedule, self.scheduled_time
            ));
        }
        let counts = [
            (self.files_uploaded, "Files", "uploaded successfully"),
            (self.env_vars, "Environment", "variables set"),
            (self.secret_env_vars, "Secret Environment", "variables set"),
        ];
        for (n, label, what) in counts {
            if n > 0 {
                out.push_str(&format!("{label}: {n} {what}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn submitted() -> Submitted {
        Submitted {
            job_uuid: "u1".into(),
            command: "echo".into(),
            args: vec!["hi".into()],
            status: "RUNNING".into(),
            schedule: String::new(),
            scheduled_time: String::new(),
            files_uploaded: 0,
            env_vars: 2,
            secret_env_vars: 1,
        }
    }

    #[test]
    fn human_output_is_joblets() {
        assert_eq!(
            submitted().render(),
            "Job submitted:\nID: u1\nCommand: echo hi\nStatus: RUNNING\n\
             Environment: 2 variables set\nSecret Environment: 1 variables set\n"
        );
    }

    #[test]
    fn json_output_keys() {
        assert_eq!(
            serde_json::to_value(submitted()).unwrap(),
            json!({"job_uuid": "u1", "command": "echo", "args": ["hi"], "status": "RUNNING",
                   "env_vars": 2, "secret_env_vars": 1})
        );
    }

    #[test]
    fn request_carries_every_flag() {
        let words: Vec<String> = [
            "--max-cpu=50",
            "--max-memory=256",
            "--max-iobps=1000",
            "--cpu-cores=0-1",
            "-e",
            "A=1",
            "-s",
            "S=2",
            "--timeout=5m",
            "--network=none",
            "--volume=v",
            "--runtime=r",
            "--work-dir=/w",
            "sh",
            "-c",
            "exit 3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let Parsed::Run(args) = run_args::parse(&words).unwrap() else {
            panic!("help")
        };
        let r = build_request(&args, "2026-01-01T00:00:00Z", vec![]);
        assert_eq!((r.max_cpu, r.max_memory, r.max_io_bps), (50, 256, 1000));
        assert_eq!(r.cpu_cores, "0-1");
        assert_eq!(r.environment.get("A").map(String::as_str), Some("1"));
        assert_eq!(r.secret_environment.get("S").map(String::as_str), Some("2"));
        assert_eq!(r.timeout, "5m");
        assert_eq!((r.network.as_str(), r.runtime.as_str()), ("none", "r"));
        assert_eq!(r.volumes, ["v"]);
        assert_eq!(r.work_dir, "/w");
        assert_eq!(r.schedule, "2026-01-01T00:00:00Z");
        assert_eq!(r.command, "sh");
        assert_eq!(r.args, ["-c", "exit 3"]);
    }
}
