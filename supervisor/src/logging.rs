//! Structured logs via tracing, as text or JSON (`logging.format`), to stdout or stderr.

use tracing_subscriber::EnvFilter;

use crate::config::{LogOutput, LoggingConfig};
use joblet_ipc_proto::settings::LogFormat;

/// Installs the global subscriber. The level was validated with the config.
pub fn init(config: &LoggingConfig) {
    let filter = EnvFilter::builder()
        .parse(&config.level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colours only for a person at a terminal, never into the journal or a file.
    let ansi = match config.output {
        LogOutput::Stdout => std::io::stdout().is_terminal(),
        LogOutput::Stderr => std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    let result = match (config.format, config.output) {
        (LogFormat::Text, LogOutput::Stdout) => builder.with_writer(std::io::stdout).try_init(),
        (LogFormat::Text, LogOutput::Stderr) => builder.with_writer(std::io::stderr).try_init(),
        (LogFormat::Json, LogOutput::Stdout) => {
            builder.json().with_writer(std::io::stdout).try_init()
        }
        (LogFormat::Json, LogOutput::Stderr) => {
            builder.json().with_writer(std::io::stderr).try_init()
        }
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}
