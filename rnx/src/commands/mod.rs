//! One module per command; this one routes to them.

pub mod config_help;
pub mod job;
pub mod monitor;
pub mod nodes;
pub mod version;

use std::path::PathBuf;

use crate::cli::{Cli, Command, JobCommand, MonitorCommand};
use crate::config;
use crate::connect::{self, Connection};
use crate::error::CliError;

/// The global flags every command sees.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    pub config: Option<PathBuf>,
    pub node: Option<String>,
    pub json: bool,
}

impl Globals {
    pub fn from_cli(cli: &Cli) -> Self {
        Globals {
            config: cli.config.clone(),
            node: cli.node.clone(),
            json: cli.json,
        }
    }

    /// Loads the config and connects to the selected node.
    pub async fn connect(&self) -> Result<Connection, CliError> {
        let loaded = config::load(self.config.as_deref())?;
        let target = loaded.config.target(self.node.as_deref())?;
        Ok(connect::connect(&target).await?)
    }
}

/// Runs the command line; `Ok` carries the exit code (0, or a followed job's own).
pub async fn dispatch(cli: Cli) -> Result<u8, CliError> {
    let globals = Globals::from_cli(&cli);
    if cli.version {
        return version::run(&globals).await.map(|()| 0);
    }
    let Some(command) = cli.command else {
        return Err(CliError::Usage(
            "missing command; try `rnx --help` or `rnx job run echo hello`".into(),
        ));
    };
    match command {
        Command::Job { command } => match command {
            JobCommand::Run { words } => job::run::run(&globals, &words).await,
            JobCommand::List => job::list::run(&globals).await.map(|()| 0),
            JobCommand::Status { uuid } => job::status::run(&globals, &uuid).await.map(|()| 0),
            JobCommand::Log { uuid } => job::log::run(&globals, &uuid).await.map(|()| 0),
            JobCommand::Metrics { uuid } => job::metrics::run(&globals, &uuid).await.map(|()| 0),
            JobCommand::Stop { uuid } => job::stop::run(&globals, &uuid).await.map(|()| 0),
            JobCommand::Cancel { uuid } => job::cancel::run(&globals, &uuid).await.map(|()| 0),
            JobCommand::Delete { uuid } => job::delete::run(&globals, &uuid).await.map(|()| 0),
            JobCommand::DeleteAll => job::delete_all::run(&globals).await.map(|()| 0),
        },
        Command::Monitor { command } => run_monitor(&globals, command).await.map(|()| 0),
        Command::Nodes => nodes::run(&globals).map(|()| 0),
        Command::ConfigHelp => config_help::run(&globals).map(|()| 0),
    }
}

async fn run_monitor(globals: &Globals, command: MonitorCommand) -> Result<(), CliError> {
    match command {
        MonitorCommand::Status => monitor::status::run(globals).await,
        MonitorCommand::Top { filter } => monitor::top::run(globals, &filter).await,
        MonitorCommand::Watch {
            interval,
            filter,
            compact,
            count,
        } => {
            let args = monitor::watch::WatchArgs {
                interval,
                filter,
                compact,
                count,
            };
            monitor::watch::run(globals, &args).await
        }
    }
}
