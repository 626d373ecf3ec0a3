//! Moving a job's uploads: reading them from disk and sending the RunJob request that
//! carries them, each with a progress bar on a terminal when they are large.

use std::time::Duration;

use joblet_api_proto::{FileUpload, RunJobRequest, RunJobResponse};
use prost::Message;

use super::uploads::{self, Plan};
use crate::connect::Connection;
use crate::error::CliError;
use crate::output::progress::Progress;

const SEND_POLL: Duration = Duration::from_millis(100);
/// The gRPC frame header in front of every message.
const GRPC_HEADER: u64 = 5;

/// Reads the planned files.
pub fn read_uploads(plan: Plan) -> Result<Vec<FileUpload>, CliError> {
    let mut bar = Progress::on_terminal("Reading", plan.total_bytes);
    match uploads::read(plan, |done| bar.set(done)) {
        Ok(files) => {
            bar.finish();
            Ok(files)
        }
        Err(e) => {
            bar.clear();
            Err(e.into())
        }
    }
}

/// Sends RunJob; while a large request goes out, shows how much of it the connection has
/// written, then that the server is working on it.
pub async fn send(conn: &Connection, request: RunJobRequest) -> Result<RunJobResponse, CliError> {
    let size = request.encoded_len() as u64 + GRPC_HEADER;
    let mut bar = Progress::on_terminal("Sending", size);
    if !bar.is_enabled() {
        return Ok(conn
            .call("RunJob", conn.jobs().run_job(request))
            .await?
            .into_inner());
    }
    let start = conn.bytes_sent();
    let mut client = conn.jobs();
    let call = conn.call("RunJob", client.run_job(request));
    tokio::pin!(call);
    let mut tick = tokio::time::interval(SEND_POLL);
    let result = loop {
        tokio::select! {
            result = &mut call => break result,
            _ = tick.tick() => bar.set(conn.bytes_sent().saturating_sub(start)),
        }
    };
    match result {
        Ok(reply) => {
            bar.finish();
            Ok(reply.into_inner())
        }
        Err(e) => {
            bar.clear();
            Err(e)
        }
    }
}
