//! `rnx`: the Joblet command-line client.

#![forbid(unsafe_code)]

mod cause;
mod cli;
mod commands;
mod config;
mod connect;
mod duration;
mod error;
mod interrupt;
mod output;
mod probe;
mod schedule;
mod transport;

use std::process::ExitCode;

use clap::Parser;

use crate::error::Exit;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version requests are not errors; everything else is a usage error.
            let code = if e.use_stderr() {
                Exit::Usage.code()
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if !cli.version && cli.command.is_none() {
        use clap::CommandFactory;
        let _ = cli::Cli::command().print_help();
        return ExitCode::SUCCESS;
    }
    // One thread: a CLI needs no more, and `job run --schedule` and `job metrics` read the
    // local time zone, which is only safe while the process is single-threaded.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Generic.code());
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(e.exit().code())
        }
    }
}
