//! `rnx -v` / `rnx --version`: our version, and the server's when it can be asked.

use joblet_api_proto::EmptyRequest;
use serde::Serialize;

use crate::commands::Globals;
use crate::error::CliError;
use crate::output::{print_json, print_text};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Serialize)]
struct VersionJson {
    rnx: RnxVersion,
    joblet: ServerVersion,
}

#[derive(Debug, Serialize)]
struct RnxVersion {
    version: &'static str,
    platform: String,
}

#[derive(Debug, Serialize)]
struct ServerVersion {
    version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn platform() -> String {
    format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Never fails: without a config or a server, the server's version is reported unknown.
pub async fn run(globals: &Globals) -> Result<(), CliError> {
    let server = server_version(globals).await;
    if globals.json {
        let (version, error) = match server {
            Ok(v) => (v, None),
            Err(e) => (String::new(), Some(e)),
        };
        return print_json(&VersionJson {
            rnx: RnxVersion {
                version: VERSION,
                platform: platform(),
            },
            joblet: ServerVersion { version, error },
        });
    }
    let server_line = match server {
        Ok(v) => format!("joblet {v}"),
        Err(e) => format!("joblet: unknown ({e})"),
    };
    print_text(&format!("rnx {VERSION} ({})\n{server_line}", platform()))
}

async fn server_version(globals: &Globals) -> Result<String, String> {
    let conn = globals.connect().await.map_err(|e| e.to_string())?;
    let status = conn
        .call(
            "GetSystemStatus",
            conn.monitoring().get_system_status(EmptyRequest {}),
        )
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    status
        .server_version
        .map(|v| v.version)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| "the server did not report its version".to_string())
}
