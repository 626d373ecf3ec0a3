//! Logging to stderr as the supervisor asked (text or JSON lines, a tracing filter).

use joblet_ipc_proto::settings::{LogFormat, Logging};
use tracing_subscriber::EnvFilter;

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log level {level:?}: {reason}")]
    Level { level: String, reason: String },
    #[error("cannot install the logger: {0}")]
    Install(String),
}

pub fn init(logging: &Logging) -> Result<(), LoggingError> {
    let filter = EnvFilter::try_new(&logging.level).map_err(|e| LoggingError::Level {
        level: logging.level.clone(),
        reason: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: under the supervisor stderr is a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match logging.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| LoggingError::Install(e.to_string()))
}
