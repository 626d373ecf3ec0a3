//! `rnx job stop <uuid>`: SIGTERM, then SIGKILL after the server's grace period.

use joblet_api_proto::{StopJobRequest, StopJobResponse};
use serde::Serialize;

use crate::commands::Globals;
use crate::error::CliError;
use crate::output::{print_json, print_text};

pub async fn run(globals: &Globals, uuid: &str) -> Result<(), CliError> {
    let conn = globals.connect().await?;
    let request = StopJobRequest {
        uuid: uuid.to_string(),
    };
    let reply = conn
        .call("StopJob", conn.jobs().stop_job(request))
        .await?
        .into_inner();
    if globals.json {
        return print_json(&to_json(&reply));
    }
    print_text(&render(&reply))
}

pub fn render(r: &StopJobResponse) -> String {
    format!(
        "Job stopped successfully:\nID: {}\nStatus: {}\n",
        r.uuid, r.status
    )
}

/// The reply as Joblet's rnx prints it (protobuf JSON names, empty values left out).
#[derive(Debug, Serialize)]
pub struct StopJson<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    uuid: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    status: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    end_time: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    exit_code: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

pub fn to_json(r: &StopJobResponse) -> StopJson<'_> {
    StopJson {
        uuid: &r.uuid,
        status: &r.status,
        end_time: &r.end_time,
        exit_code: r.exit_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_shapes() {
        let r = StopJobResponse {
            uuid: "u1".into(),
            status: "STOPPING".into(),
            ..Default::default()
        };
        assert_eq!(
            render(&r),
            "Job stopped successfully:\nID: u1\nStatus: STOPPING\n"
        );
        assert_eq!(
            serde_json::to_value(to_json(&r)).unwrap(),
            serde_json::json!({"uuid": "u1", "status": "STOPPING"})
        );
    }
}
