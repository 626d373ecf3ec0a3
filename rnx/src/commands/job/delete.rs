//! `rnx job delete <uuid>`: removes a finished job's record and logs.

use joblet_api_proto::{DeleteJobRequest, DeleteJobResponse};
use serde::Serialize;

use crate::commands::Globals;
use crate::error::CliError;
use crate::output::{print_json, print_text};

pub async fn run(globals: &Globals, uuid: &str) -> Result<(), CliError> {
    let conn = globals.connect().await?;
    let request = DeleteJobRequest {
        uuid: uuid.to_string(),
    };
    let reply = conn
        .call("DeleteJob", conn.jobs().delete_job(request))
        .await?
        .into_inner();
    if globals.json {
        print_json(&to_json(&reply))?;
    } else if reply.success {
        print_text(&render(&reply))?;
    }
    if !reply.success {
        return Err(CliError::Failed(format!(
            "could not delete job {}: {}",
            if reply.uuid.is_empty() {
                uuid
            } else {
                &reply.uuid
            },
            if reply.message.is_empty() {
                "the server gave no reason"
            } else {
                &reply.message
            }
        )));
    }
    Ok(())
}

pub fn render(r: &DeleteJobResponse) -> String {
    let mut out = format!("Job deleted successfully:\nID: {}\n", r.uuid);
    if !r.message.is_empty() {
        out.push_str(&format!("Message: {}\n", r.message));
    }
    out
}

/// The reply as Joblet's rnx prints it (protobuf JSON names, empty values left out).
#[derive(Debug, Serialize)]
pub struct DeleteJson<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    uuid: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    success: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
}

pub fn to_json(r: &DeleteJobResponse) -> DeleteJson<'_> {
    DeleteJson {
        uuid: &r.uuid,
        success: r.success,
        message: &r.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_shapes() {
        let r = DeleteJobResponse {
            uuid: "u1".into(),
            success: true,
            message: "job deleted".into(),
        };
        assert_eq!(
            render(&r),
            "Job deleted successfully:\nID: u1\nMessage: job deleted\n"
        );
        assert_eq!(
            serde_json::to_value(to_json(&r)).unwrap(),
            serde_json::json!({"uuid": "u1", "success": true, "message": "job deleted"})
        );
        let failed = DeleteJobResponse {
            uuid: "u1".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(to_json(&failed)).unwrap(),
            serde_json::json!({"uuid": "u1"})
        );
    }
}
