//! `rnx monitor watch [--interval=5] [--filter=…] [--compact] [--count=N]`: the server's
//! metrics as it streams them, until Ctrl-C (or N updates: an addition of ours, for
//! scripts). On a terminal each update replaces the last; elsewhere updates follow each
//! other, separated by a blank line, with no control characters.

use std::io::IsTerminal;

use joblet_api_proto::StreamMetricsRequest;

use super::filter::Sections;
use super::{as_status, snapshot_text, ui_json};
use crate::commands::Globals;
use crate::error::CliError;
use crate::interrupt;
use crate::output::{Flow, print_json_line, write_raw};

pub const MAX_INTERVAL: u32 = 3600;
const CLEAR_SCREEN: &str = "\x1b[2J\x1b[H";

#[derive(Debug, Clone, Default)]
pub struct WatchArgs {
    pub interval: String,
    pub filter: Vec<String>,
    pub compact: bool,
    pub count: Option<String>,
}

/// Seconds between updates: a whole number from 1 to 3600.
pub fn parse_interval(text: &str) -> Result<u32, CliError> {
    let bad = || {
        CliError::invalid(
            "--interval",
            format!("'{text}' is not a number of seconds from 1 to {MAX_INTERVAL}"),
        )
    };
    let n: u32 = text.trim().parse().map_err(|_| bad())?;
    if n == 0 || n > MAX_INTERVAL {
        return Err(bad());
    }
    Ok(n)
}

/// How many updates to show before exiting; none means until Ctrl-C.
pub fn parse_count(text: Option<&str>) -> Result<Option<u64>, CliError> {
    let Some(text) = text else { return Ok(None) };
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(CliError::invalid(
            "--count",
            format!("'{text}' is not a positive whole number"),
        )),
    }
}

pub async fn run(globals: &Globals, args: &WatchArgs) -> Result<(), CliError> {
    let interval = parse_interval(&args.interval)?;
    let sections = Sections::parse(&args.filter)?;
    let count = parse_count(args.count.as_deref())?;
    let conn = globals.connect().await?;
    let request = StreamMetricsRequest {
        interval_seconds: interval as i32,
        metric_types: sections.metric_types(),
    };
    let mut updates = conn
        .call(
            "StreamSystemMetrics",
            conn.monitoring().stream_system_metrics(request),
        )
        .await?
        .into_inner();
    let terminal = !globals.json && std::io::stdout().is_terminal();
    if !globals.json {
        eprintln!("Watching system metrics every {interval}s (Ctrl-C to stop)...");
    }
    let interrupted = interrupt::ctrl_c();
    tokio::pin!(interrupted);
    let mut shown = 0u64;
    loop {
        let next = tokio::select! {
            biased;
            () = &mut interrupted => {
                eprintln!("\nStopped watching.");
                return Ok(());
            }
            next = updates.message() => next,
        };
        let sample = match next {
            Ok(Some(sample)) => as_status(sample),
            Ok(None) => {
                eprintln!("The server ended the metrics stream.");
                return Ok(());
            }
            Err(status) => return Err(conn.fail("StreamSystemMetrics", status).await),
        };
        let flow = if globals.json {
            print_json_line(&ui_json::convert(&sample, &sections))?
        } else {
            let text = snapshot_text::render(&sample, &sections, args.compact);
            let frame = if terminal {
                format!("{CLEAR_SCREEN}{text}\n(every {interval}s; Ctrl-C to stop)\n")
            } else if shown > 0 {
                format!("\n{text}")
            } else {
                text
            };
            write_raw(frame.as_bytes())?
        };
        shown += 1;
        if flow == Flow::Closed || count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
    }
}
