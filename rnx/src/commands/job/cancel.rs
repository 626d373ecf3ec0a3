//! `rnx job cancel <uuid>`: cancels a scheduled job, which then ends CANCELED.
//!
//! Calls `CancelJob`. Joblet's own server never implemented that method (its rnx checks
//! the status and calls `StopJob`), so against a server that answers UNIMPLEMENTED we do
//! the same, and keep working with it.

use joblet_api_proto::{CancelJobRequest, GetJobStatusRequest, StopJobRequest};
use serde::Serialize;
use tonic::Code;

use crate::commands::Globals;
use crate::connect::Connection;
use crate::error::{CliError, Exit};
use crate::output::{print_json, print_text};

/// The outcome, for both output forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Canceled {
    pub canceled: bool,
    pub job_id: String,
    pub status: String,
    pub message: String,
}

const DONE: &str = "Scheduled job canceled; it stays in the job list as CANCELED";

pub async fn run(globals: &Globals, uuid: &str) -> Result<(), CliError> {
    let conn = globals.connect().await?;
    let request = CancelJobRequest {
        uuid: uuid.to_string(),
    };
    let canceled = match conn.jobs().cancel_job(request).await {
        Ok(reply) => {
            let reply = reply.into_inner();
            Canceled {
                canceled: true,
                job_id: reply.uuid,
                status: reply.status,
                message: DONE.into(),
            }
        }
        Err(status) if status.code() == Code::Unimplemented => {
            cancel_by_stopping(&conn, uuid).await?
        }
        Err(status) if status.code() == Code::FailedPrecondition => {
            return Err(with_stop_hint(conn.fail("CancelJob", status).await, uuid));
        }
        Err(status) => return Err(conn.fail("CancelJob", status).await),
    };
    if globals.json {
        return print_json(&canceled);
    }
    print_text(&render(&canceled))
}

pub fn render(c: &Canceled) -> String {
    format!(
        "Scheduled job canceled successfully:\nID: {}\nStatus: {}\n",
        c.job_id, c.status
    )
}

/// Joblet's way: only a SCHEDULED job may be canceled, by stopping it.
async fn cancel_by_stopping(conn: &Connection, uuid: &str) -> Result<Canceled, CliError> {
    let before = job_status(conn, uuid).await?;
    if before.1 != "SCHEDULED" {
        return Err(not_scheduled(&before.0, &before.1));
    }
    let request = StopJobRequest {
        uuid: before.0.clone(),
    };
    conn.call("StopJob", conn.jobs().stop_job(request)).await?;
    let after = job_status(conn, &before.0).await?;
    Ok(Canceled {
        canceled: true,
        job_id: after.0,
        status: after.1,
        message: DONE.into(),
    })
}

/// The job's full id and status.
async fn job_status(conn: &Connection, uuid: &str) -> Result<(String, String), CliError> {
    let request = GetJobStatusRequest {
        uuid: uuid.to_string(),
    };
    let reply = conn
        .call("GetJobStatus", conn.jobs().get_job_status(request))
        .await?
        .into_inner();
    Ok((reply.uuid, reply.status))
}

fn not_scheduled(uuid: &str, status: &str) -> CliError {
    CliError::Rpc {
        exit: Exit::Generic,
        message: format!(
            "job {uuid} is {status}, not SCHEDULED: only a scheduled job can be canceled{}",
            stop_hint(status, uuid)
        ),
    }
}

fn stop_hint(status: &str, uuid: &str) -> String {
    if matches!(status, "RUNNING" | "INITIALIZING") {
        format!("; stop it with `rnx job stop {uuid}`")
    } else {
        String::new()
    }
}

/// The server refused because the job is not scheduled; say what to do instead.
fn with_stop_hint(err: CliError, uuid: &str) -> CliError {
    match err {
        CliError::Rpc { exit, message } if !message.contains("rnx job stop") => CliError::Rpc {
            exit,
            message: format!("{message} (a running job is stopped with `rnx job stop {uuid}`)"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_shapes() {
        let c = Canceled {
            canceled: true,
            job_id: "u1".into(),
            status: "CANCELED".into(),
            message: DONE.into(),
        };
        assert_eq!(
            render(&c),
            "Scheduled job canceled successfully:\nID: u1\nStatus: CANCELED\n"
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["canceled", "job_id", "message", "status"]
        );
        assert_eq!(v["canceled"], true);
    }

    #[test]
    fn refusals_say_what_to_do_instead() {
        let e = not_scheduled("u1", "RUNNING");
        assert_eq!(e.exit(), Exit::Generic);
        assert_eq!(
            e.to_string(),
            "job u1 is RUNNING, not SCHEDULED: only a scheduled job can be canceled; stop it \
             with `rnx job stop u1`"
        );
        assert!(
            !not_scheduled("u1", "COMPLETED")
                .to_string()
                .contains("stop")
        );
        let hinted = with_stop_hint(
            CliError::Rpc {
                exit: Exit::Generic,
                message: "CancelJob: job u1 is RUNNING".into(),
            },
            "u1",
        );
        assert!(
            hinted.to_string().ends_with("`rnx job stop u1`)"),
            "{hinted}"
        );
    }
}
