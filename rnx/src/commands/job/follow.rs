//! `job run --follow`: stream the new job's output, then exit with its exit code.
//! (An addition of ours; Joblet's rnx has no such flag.)

use std::time::Duration;

use joblet_api_proto::GetJobStatusRequest;
use serde::Serialize;
use tokio::time::Instant;

use super::log::{self, StreamEnd};
use super::run::Submitted;
use super::status::{EndInfo, FinalState, is_terminal};
use crate::connect::Connection;
use crate::error::CliError;
use crate::output::print_json_line;

/// How long the final status may lag behind the end of the output.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first re-poll comes quickly (the exit is usually recorded within a millisecond or two
/// of the output's end), then the pause doubles up to [`SETTLE_POLL_MAX`].
const SETTLE_POLL_FIRST: Duration = Duration::from_millis(2);
const SETTLE_POLL_MAX: Duration = Duration::from_millis(200);
/// The shell's code for "interrupted by Ctrl-C".
const INTERRUPTED: u8 = 130;

/// The last line in `--json --follow` mode.
#[derive(Debug, Serialize)]
struct Finished<'a> {
    job_uuid: &'a str,
    status: &'a str,
    exit_code: i32,
    #[serde(rename = "endReason", skip_serializing_if = "Option::is_none")]
    end_reason: Option<&'a str>,
}

/// Stdout carries only the job's output (or JSON lines); the summary goes to stderr.
pub async fn follow(conn: &Connection, submitted: &Submitted, json: bool) -> Result<u8, CliError> {
    let uuid = submitted.job_uuid.as_str();
    if json {
        print_json_line(submitted)?;
    } else {
        eprint!("{}", submitted.render());
    }
    let told = match log::stream(conn, uuid, json).await? {
        StreamEnd::Finished(told) => told,
        StreamEnd::Interrupted => {
            eprintln!(
                "\nStopped following job {uuid}; it keeps running. \
                 Follow it again with: rnx job log {uuid}"
            );
            return Ok(INTERRUPTED);
        }
        StreamEnd::ReaderGone => return Ok(0),
    };
    let status = match told {
        Some(state) => state,
        None => wait_until_ended(conn, uuid).await?,
    };
    let end = status.end;
    let code = exit_code_for(&status.status, status.exit_code);
    if json {
        print_json_line(&Finished {
            job_uuid: uuid,
            status: &status.status,
            exit_code: status.exit_code,
            end_reason: end.reason.as_deref(),
        })?;
    } else {
        let reason = end
            .reason
            .map(|r| format!(", {}", super::status::describe_end_reason(&r)))
            .unwrap_or_default();
        eprintln!(
            "Job {uuid} {} (exit code {}{reason})",
            status.status, status.exit_code
        );
    }
    Ok(code)
}

/// The output ends when the job's pipes close; its final state can be recorded a moment
/// later, so poll briefly.
async fn wait_until_ended(conn: &Connection, uuid: &str) -> Result<FinalState, CliError> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut pause = SETTLE_POLL_FIRST;
    loop {
        let request = GetJobStatusRequest {
            uuid: uuid.to_string(),
        };
        let reply = conn
            .call("GetJobStatus", conn.jobs().get_job_status(request))
            .await?;
        let end = EndInfo::from_metadata(reply.metadata());
        let status = reply.into_inner();
        if is_terminal(&status.status) {
            return Ok(FinalState {
                status: status.status,
                exit_code: status.exit_code,
                end,
            });
        }
        if Instant::now() >= deadline {
            return Err(CliError::Failed(format!(
                "the output of job {uuid} ended but the job is still {}; check it with \
                 `rnx job status {uuid}`",
                status.status
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(SETTLE_POLL_MAX);
    }
}

/// The process exit code for a finished job: its own code when it fits in 0..=255, and
/// never 0 for a job that did not complete (a stopped job or one that never ran is a
/// failure even if its recorded code is 0 or -1).
pub fn exit_code_for(status: &str, exit_code: i32) -> u8 {
    match u8::try_from(exit_code) {
        Ok(0) if status != "COMPLETED" => 1,
        Ok(code) => code,
        Err(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_job() {
        assert_eq!(exit_code_for("COMPLETED", 0), 0);
        assert_eq!(exit_code_for("FAILED", 3), 3);
        assert_eq!(exit_code_for("TIMEOUT", 124), 124);
        assert_eq!(exit_code_for("STOPPED", 143), 143);
        assert_eq!(exit_code_for("FAILED", 255), 255);
    }

    #[test]
    fn failures_never_exit_zero_and_odd_codes_become_one() {
        assert_eq!(exit_code_for("STOPPED", 0), 1);
        assert_eq!(exit_code_for("FAILED", -1), 1);
        assert_eq!(exit_code_for("FAILED", 256), 1);
        assert_eq!(exit_code_for("CANCELED", 0), 1);
    }
}
