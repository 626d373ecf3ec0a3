//! `rnx job log <uuid>`: the job's output, history then live, until the job ends.

use joblet_api_proto::GetJobLogsRequest;
use serde::Serialize;

use super::status::FinalState;
use crate::commands::Globals;
use crate::connect::Connection;
use crate::error::CliError;
use crate::interrupt;
use crate::output::{Flow, print_json_line, timefmt, write_raw};

/// How a log stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The server ended it: the job finished and all its output was sent. Our server also
    /// says, in the stream's trailers, how the job ended once that is recorded.
    Finished(Option<FinalState>),
    /// The user pressed Ctrl-C.
    Interrupted,
    /// Whoever reads our stdout went away.
    ReaderGone,
}

/// One chunk in `--json` mode (one object per line).
#[derive(Debug, Serialize)]
pub struct LogLine<'a> {
    pub timestamp: String,
    pub data: &'a str,
}

pub async fn run(globals: &Globals, uuid: &str) -> Result<(), CliError> {
    let conn = globals.connect().await?;
    if stream(&conn, uuid, globals.json).await? == StreamEnd::Interrupted {
        eprintln!("\nStopped following the log stream (the job is not affected).");
    }
    Ok(())
}

/// Copies the job's output to stdout: raw bytes, or JSON lines with `json`.
pub async fn stream(conn: &Connection, uuid: &str, json: bool) -> Result<StreamEnd, CliError> {
    let request = GetJobLogsRequest {
        uuid: uuid.to_string(),
    };
    let mut chunks = conn
        .call("GetJobLogs", conn.jobs().get_job_logs(request))
        .await?
        .into_inner();
    let interrupted = interrupt::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let next = tokio::select! {
            // Polled first, so the Ctrl-C handler is installed before any output is shown.
            biased;
            () = &mut interrupted => return Ok(StreamEnd::Interrupted),
            next = chunks.message() => next,
        };
        let chunk = match next {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                // Already received with the end of the stream: no round trip.
                let trailers = chunks.trailers().await.ok().flatten();
                return Ok(StreamEnd::Finished(
                    trailers.as_ref().and_then(FinalState::from_trailers),
                ));
            }
            Err(status) => return Err(conn.fail("GetJobLogs", status).await),
        };
        let flow = if json {
            let data = String::from_utf8_lossy(&chunk.payload);
            print_json_line(&LogLine {
                timestamp: timefmt::now_rfc3339(),
                data: &data,
            })?
        } else {
            write_raw(&chunk.payload)?
        };
        if flow == Flow::Closed {
            return Ok(StreamEnd::ReaderGone);
        }
    }
}
