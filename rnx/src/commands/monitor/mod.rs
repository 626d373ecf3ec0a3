//! `rnx monitor status|top|watch`: the server's own resources (MonitoringService).

pub mod filter;
mod parts;
pub mod snapshot_text;
pub mod status;
pub mod status_text;
pub mod top;
pub mod ui_json;
pub mod watch;

#[cfg(test)]
mod tests;

use joblet_api_proto::{EmptyRequest, SystemMetricsResponse, SystemStatusResponse};

use crate::commands::Globals;
use crate::error::CliError;

/// One `GetSystemStatus` call.
pub async fn fetch_status(globals: &Globals) -> Result<SystemStatusResponse, CliError> {
    let conn = globals.connect().await?;
    Ok(conn
        .call(
            "GetSystemStatus",
            conn.monitoring().get_system_status(EmptyRequest {}),
        )
        .await?
        .into_inner())
}

/// A streamed sample in the shape of a status, so one renderer serves both.
pub fn as_status(m: SystemMetricsResponse) -> SystemStatusResponse {
    SystemStatusResponse {
        timestamp: m.timestamp,
        available: true,
        host: m.host,
        cpu: m.cpu,
        memory: m.memory,
        disks: m.disks,
        networks: m.networks,
        io: m.io,
        processes: m.processes,
        cloud: m.cloud,
        server_version: None,
    }
}
