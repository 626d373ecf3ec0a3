//! The command line: global flags and the command tree. `job run` takes its words raw and
//! parses them itself (see `commands::job::run_args`), as Joblet's rnx does.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::EXIT_CODES_HELP;

#[derive(Debug, Parser)]
#[command(
    name = "rnx",
    about = "Run and manage jobs on Joblet nodes",
    disable_version_flag = true,
    after_help = EXIT_CODES_HELP,
)]
pub struct Cli {
    /// Config file (default: $RNX_CONFIG, then ~/.rnx/rnx-config.yml; see `rnx config-help`)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Node to talk to (default: the one marked isDefault: true)
    #[arg(long, global = true, value_name = "NAME")]
    pub node: Option<String>,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// Print the rnx version and the server's
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run and manage jobs
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Show the server's resources: host, CPU, memory, disks, network, I/O, processes
    Monitor {
        #[command(subcommand)]
        command: MonitorCommand,
    },
    /// List the nodes configured in rnx-config.yml
    Nodes,
    /// Show an example rnx-config.yml and where it is looked for
    ConfigHelp,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run a command as a job: rnx job run [flags] <command> [args...]
    #[command(long_about = RUN_HELP, disable_help_flag = true)]
    Run {
        /// Flags, then the command and its arguments
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            num_args = 0..,
            value_name = "FLAGS] COMMAND [ARGS"
        )]
        words: Vec<String>,
    },
    /// List all jobs
    List,
    /// Show a job's status and details (a unique ID prefix is enough)
    Status {
        #[arg(value_name = "UUID")]
        uuid: String,
    },
    /// Stream a job's output: history, then live until it ends (Ctrl-C to stop following)
    Log {
        #[arg(value_name = "UUID")]
        uuid: String,
    },
    /// Show a job's CPU, memory, disk I/O and network samples, then live ones until it ends
    #[command(
        long_about = "Show a job's resource samples (CPU, memory current/limit, disk I/O, \
                      network): those recorded so far, then live ones until the job ends \
                      (Ctrl-C stops following; the job is not affected).\n\nWith --json, one \
                      JSON object per sample and line. Exits 3 when no sample exists."
    )]
    Metrics {
        #[arg(value_name = "UUID")]
        uuid: String,
    },
    /// Stop a running job (SIGTERM, then SIGKILL after a grace period)
    Stop {
        #[arg(value_name = "UUID")]
        uuid: String,
    },
    /// Cancel a scheduled job: it never runs and stays listed as CANCELED
    #[command(
        long_about = "Cancel a scheduled job: it never runs and stays listed as CANCELED.\n\n\
                      Only a SCHEDULED job can be canceled; a running job is stopped with \
                      `rnx job stop`."
    )]
    Cancel {
        #[arg(value_name = "UUID")]
        uuid: String,
    },
    /// Delete a finished job with its logs (refused while it runs or is scheduled)
    Delete {
        #[arg(value_name = "UUID")]
        uuid: String,
    },
    /// Delete every finished job with its logs; running and scheduled jobs are kept
    DeleteAll,
}

#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// Everything the server reports: host, server version, CPU, memory, disks, network
    /// interfaces, I/O, processes, cloud
    Status,
    /// A condensed snapshot with the top processes
    #[command(after_help = FILTER_HELP)]
    Top {
        /// Sections to show, comma-separated or repeated (default: all)
        #[arg(long, value_name = "TYPES", value_delimiter = ',')]
        filter: Vec<String>,
    },
    /// Stream the server's metrics, one update every --interval seconds (Ctrl-C to stop)
    #[command(after_help = FILTER_HELP)]
    Watch {
        /// Seconds between updates, 1 to 3600
        #[arg(long, value_name = "SECONDS", default_value = "5")]
        interval: String,
        /// Sections to show, comma-separated or repeated (default: all)
        #[arg(long, value_name = "TYPES", value_delimiter = ',')]
        filter: Vec<String>,
        /// One line per section, no tables
        #[arg(long)]
        compact: bool,
        /// Exit after N updates (an rnx-rs addition, for scripts; default: until Ctrl-C)
        #[arg(long, value_name = "N")]
        count: Option<String>,
    },
}

pub const FILTER_HELP: &str = "\
Metric types for --filter: cpu, memory, disk, network, io, process.
With --json the output is Joblet's UI format (hostInfo, cpuInfo, memoryInfo, disksInfo,
networkInfo, processesInfo, plus ioInfo and serverVersion); `watch --json` prints one
object per update and line.";

pub const RUN_HELP: &str = "\
Run a command as a job on the node.

Usage: rnx job run [flags] <command> [args...]

Flags come before the command; the first word that is not a flag starts the command, and
everything after `--` is the command even if it starts with '-'. Nothing after the command
is read as an rnx flag.

Flags:
  --max-cpu=N             CPU limit in percent of one core (100 = one core); 0 = default
  --max-memory=N          memory limit in MB
  --max-iobps=N           disk I/O limit in bytes per second
  --cpu-cores=SPEC        pin to cores: 0-3, 0,2,4 or 0-1,4
  -e, --env KEY=VALUE     environment variable (repeatable; also --env=K=V, -e=K=V)
  -s, --secret-env KEY=VALUE
                          secret variable: given to the job, shown as *** (repeatable)
  --timeout=DURATION      wall-clock limit: 30s, 5m, 1h, 2h30m (status TIMEOUT, exit 124)
  --work-dir=DIR          working directory inside the job
  --network=NAME          none, isolated, bridge or a custom network
  --volume=NAME           mount volume NAME at /volumes/NAME (repeatable)
  --runtime=SPEC          pre-built runtime, e.g. python-3.11-ml or name@version
  --schedule=SPEC         run later: a delay (5min, 1hour, 2h30m, 45s) or a time
                          (2025-07-18T20:02:48 local, 2025-07-18T20:02:48Z)
  --upload=PATH           upload a file (as its base name) or a directory's contents
                          into the job's workspace (repeatable)
  --upload-dir=DIR        upload a directory's contents (repeatable). Up to 100 MiB in
                          all; permission bits are kept; a link leading out of the
                          directory, or a FIFO, socket or device in it, is refused. From
                          1 MiB on, a progress bar on stderr (on a terminal) shows the
                          reading and the sending
  --gpu=N, --gpu-memory=SIZE
                          GPUs to allocate and their minimum memory (8GB, 1024MB)
  -f, --follow            stream the job's output right away and exit with the job's exit
                          code (an rnx-rs addition, not in Joblet's rnx; the submission
                          summary then goes to stderr)
  --config=FILE, --node=NAME, --json
                          the global flags, also accepted here
  -h, --help              this help

A bad flag value is an error naming the flag (Joblet's rnx silently used 0).
The server may refuse features it does not offer yet; its message is shown.

Output: `Job submitted:`, `ID: <uuid>`, `Command:`, `Status:`; with --json an object
{job_uuid, command, args, status, ...}.

Examples:
  rnx job run echo hello
  rnx job run -f -- sh -c 'echo hi; exit 3'        # exits 3
  rnx job run --max-cpu=50 --max-memory=512 -e MODE=prod python3 app.py
  rnx job run --schedule=30min --upload=backup.sh sh backup.sh";

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("rnx").chain(args.iter().copied())).unwrap()
    }

    fn run_words(cli: Cli) -> Vec<String> {
        match cli.command {
            Some(Command::Job {
                command: JobCommand::Run { words },
            }) => words,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_words_are_passed_through_untouched() {
        let words = run_words(parse(&[
            "job",
            "run",
            "--max-cpu=5",
            "-e",
            "A=1",
            "ls",
            "-la",
        ]));
        assert_eq!(words, ["--max-cpu=5", "-e", "A=1", "ls", "-la"]);
        let words = run_words(parse(&["job", "run", "-f", "--", "echo", "--json"]));
        assert_eq!(words, ["-f", "--", "echo", "--json"]);
        let words = run_words(parse(&["job", "run", "--help"]));
        assert_eq!(words, ["--help"]);
    }

    #[test]
    fn global_flags_work_before_and_after_the_command() {
        let cli = parse(&["--json", "--node", "a", "job", "list"]);
        assert!(cli.json);
        assert_eq!(cli.node.as_deref(), Some("a"));
        let cli = parse(&["job", "list", "--json", "--config=/x.yml"]);
        assert!(cli.json);
        assert_eq!(cli.config, Some(PathBuf::from("/x.yml")));
        assert!(parse(&["-v"]).version);
    }

    #[test]
    fn missing_arguments_are_usage_errors() {
        let err = Cli::try_parse_from(["rnx", "job", "status"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["rnx", "job", "frob"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
