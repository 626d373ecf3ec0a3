//! `rnx job delete-all`: deletes every finished job with its logs; running and scheduled
//! jobs are kept (and counted as skipped).

use joblet_api_proto::{DeleteAllJobsRequest, DeleteAllJobsResponse};
use serde::Serialize;

use crate::commands::Globals;
use crate::error::CliError;
use crate::output::{print_json, print_text};

pub async fn run(globals: &Globals) -> Result<(), CliError> {
    let conn = globals.connect().await?;
    let reply = conn
        .call(
            "DeleteAllJobs",
            conn.jobs().delete_all_jobs(DeleteAllJobsRequest {}),
        )
        .await?
        .into_inner();
    if globals.json {
        print_json(&to_json(&reply))?;
    } else if reply.success {
        print_text(&render(&reply))?;
    }
    if !reply.success {
        return Err(CliError::Failed(format!(
            "could not delete all jobs ({} deleted, {} skipped): {}",
            reply.deleted_count,
            reply.skipped_count,
            if reply.message.is_empty() {
                "the server gave no reason"
            } else {
                &reply.message
            }
        )));
    }
    Ok(())
}

pub fn render(r: &DeleteAllJobsResponse) -> String {
    let mut out = format!(
        "Jobs deleted successfully:\nDeleted count: {}\nSkipped count: {} (running/scheduled)\n",
        r.deleted_count, r.skipped_count
    );
    if !r.message.is_empty() {
        out.push_str(&format!("Message: {}\n", r.message));
    }
    out
}

/// Joblet's keys; every one is always present, so scripts can read the counts.
#[derive(Debug, Serialize)]
pub struct DeleteAllJson<'a> {
    success: bool,
    message: &'a str,
    deleted_count: i32,
    skipped_count: i32,
}

pub fn to_json(r: &DeleteAllJobsResponse) -> DeleteAllJson<'_> {
    DeleteAllJson {
        success: r.success,
        message: &r.message,
        deleted_count: r.deleted_count,
        skipped_count: r.skipped_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_shapes() {
        let r = DeleteAllJobsResponse {
            success: true,
            message: "deleted 3 jobs".into(),
            deleted_count: 3,
            skipped_count: 1,
        };
        assert_eq!(
            render(&r),
            "Jobs deleted successfully:\nDeleted count: 3\nSkipped count: 1 (running/scheduled)\n\
             Message: deleted 3 jobs\n"
        );
        assert_eq!(
            serde_json::to_value(to_json(&r)).unwrap(),
            serde_json::json!({"success": true, "message": "deleted 3 jobs",
                               "deleted_count": 3, "skipped_count": 1})
        );
    }
}
