//! `rnx job list`: every job, as a table or a JSON array.

use joblet_api_proto::{EmptyRequest, Job};
use serde::Serialize;

use crate::commands::Globals;
use crate::error::CliError;
use crate::output::table::{Table, truncate_line};
use crate::output::{print_json, print_text, timefmt};

const COMMAND_WIDTH: usize = 80;

pub async fn run(globals: &Globals) -> Result<(), CliError> {
    let conn = globals.connect().await?;
    let jobs = conn
        .call("ListJobs", conn.jobs().list_jobs(EmptyRequest {}))
        .await?
        .into_inner()
        .jobs;
    if globals.json {
        return print_json(&to_json(&jobs));
    }
    if jobs.is_empty() {
        return print_text("No jobs found");
    }
    print_text(&render(&jobs))
}

pub fn command_line(command: &str, args: &[String]) -> String {
    std::iter::once(command)
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ID  NODE ID  STATUS  START TIME  COMMAND`; scheduled jobs show when they will start.
pub fn render(jobs: &[Job]) -> String {
    let mut table = Table::new(["ID", "NODE ID", "STATUS", "START TIME", "COMMAND"]).with_rule();
    for job in jobs {
        let when = if job.status == "SCHEDULED" && !job.scheduled_time.is_empty() {
            &job.scheduled_time
        } else {
            &job.start_time
        };
        let node = if job.node_id.is_empty() {
            "-"
        } else {
            &job.node_id
        };
        table.row([
            job.uuid.clone(),
            node.to_string(),
            job.status.clone(),
            timefmt::short(when),
            truncate_line(&command_line(&job.command, &job.args), COMMAND_WIDTH),
        ]);
    }
    table.render()
}

/// One job in `--json` output: Joblet's keys, empty values left out. Environment values are
/// never listed.
#[derive(Debug, Serialize)]
pub struct ListedJob<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    node_id: &'a str,
    status: &'a str,
    start_time: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    end_time: &'a str,
    command: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    args: &'a [String],
    #[serde(skip_serializing_if = "is_zero")]
    exit_code: i32,
    #[serde(skip_serializing_if = "is_zero")]
    max_cpu: i32,
    #[serde(skip_serializing_if = "is_zero")]
    max_memory: i32,
    #[serde(skip_serializing_if = "is_zero")]
    max_iobps: i32,
    #[serde(skip_serializing_if = "str::is_empty")]
    cpu_cores: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scheduled_time: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    timeout: &'a str,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

pub fn to_json(jobs: &[Job]) -> Vec<ListedJob<'_>> {
    jobs.iter()
        .map(|j| ListedJob {
            id: &j.uuid,
            node_id: &j.node_id,
            status: &j.status,
            start_time: &j.start_time,
            end_time: &j.end_time,
            command: &j.command,
            args: &j.args,
            exit_code: j.exit_code,
            max_cpu: j.max_cpu,
            max_memory: j.max_memory,
            max_iobps: j.max_io_bps,
            cpu_cores: &j.cpu_cores,
            scheduled_time: &j.scheduled_time,
            timeout: &j.timeout,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(uuid: &str, status: &str, command: &str, args: &[&str]) -> Job {
        Job {
            uuid: uuid.into(),
            status: status.into(),
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            start_time: "2026-11-23T16:20:50Z".into(),
            ..Default::default()
        }
    }

    #[test]
    fn table_has_joblets_columns() {
        let mut scheduled = job("b2", "SCHEDULED", "backup.sh", &[]);
        scheduled.scheduled_time = "2026-12-01T08:00:00Z".into();
        scheduled.node_id = "node-1".into();
        let text = render(&[job("a1", "RUNNING", "sleep", &["10"]), scheduled]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ID  NODE ID  STATUS     START TIME           COMMAND"
        );
        assert_eq!(
            lines[1],
            "--  -------  ---------  -------------------  ---------"
        );
        assert_eq!(
            lines[2],
            "a1  -        RUNNING    2026-11-23 16:20:50  sleep 10"
        );
        assert_eq!(
            lines[3],
            "b2  node-1   SCHEDULED  2026-12-01 08:00:00  backup.sh"
        );
    }

    #[test]
    fn long_commands_are_cut_to_80_and_one_line() {
        let long = "x".repeat(200);
        let text = render(&[job("a", "RUNNING", "sh", &["-c", &long])]);
        let last = text.lines().last().unwrap();
        let command = last.split("  ").last().unwrap();
        assert_eq!(command.chars().count(), 80);
        let text = render(&[job("a", "RUNNING", "sh", &["-c", "echo 1\necho 2"])]);
        assert!(
            text.lines().last().unwrap().ends_with("sh -c echo 1..."),
            "{text}"
        );
    }

    #[test]
    fn json_leaves_out_empty_values_and_secrets() {
        let mut j = job("a1", "COMPLETED", "echo", &["hi"]);
        j.exit_code = 3;
        j.max_memory = 512;
        j.secret_environment.insert("TOKEN".into(), "s3cret".into());
        j.environment.insert("A".into(), "b".into());
        let value = serde_json::to_value(to_json(&[j])).unwrap();
        assert_eq!(
            value,
            json!([{
                "id": "a1", "status": "COMPLETED", "start_time": "2026-11-23T16:20:50Z",
                "command": "echo", "args": ["hi"], "exit_code": 3, "max_memory": 512
            }])
        );
        assert_eq!(serde_json::to_string(&to_json(&[])).unwrap(), "[]");
    }
}
