//! Writing results: text, JSON and raw job output on stdout; notes on stderr.
//!
//! A closed stdout (`rnx job list | head -1`) is not an error: output simply stops.

pub mod bytes;
pub mod progress;
pub mod table;
pub mod timefmt;

use std::io::{self, Write};

use serde::Serialize;

use crate::error::CliError;

/// Whether the reader of stdout is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Open,
    Closed,
}

/// Writes `bytes` to stdout and flushes (job output must appear as it arrives).
pub fn write_raw(bytes: &[u8]) -> Result<Flow, CliError> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(Flow::Open),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Flow::Closed),
        Err(source) => Err(CliError::Io {
            what: "writing to stdout".into(),
            source,
        }),
    }
}

/// Prints `text`, adding a final newline if it lacks one.
pub fn print_text(text: &str) -> Result<(), CliError> {
    let mut text = text.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    write_raw(text.as_bytes()).map(|_| ())
}

/// Prints indented JSON, as Joblet's rnx does.
pub fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    print_text(&to_pretty(value)?)
}

/// Prints one compact JSON object on its own line (for streams).
pub fn print_json_line(value: &impl Serialize) -> Result<Flow, CliError> {
    let mut line = serde_json::to_string(value).map_err(json_error)?;
    line.push('\n');
    write_raw(line.as_bytes())
}

pub fn to_pretty(value: &impl Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(json_error)
}

fn json_error(e: serde_json::Error) -> CliError {
    CliError::Failed(format!("cannot encode JSON output: {e}"))
}
