//! The errors `rnx` reports and the documented exit code of each.

use crate::commands::job::uploads::UploadError;
use crate::config::ConfigError;
use crate::connect::ConnectError;

/// Documented process exit codes (see `rnx --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Generic = 1,
    Usage = 2,
    NotFound = 3,
    PermissionDenied = 4,
    Unavailable = 5,
    Tls = 6,
    InvalidArgument = 7,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Text for `--help`: the exit codes scripts can rely on.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    generic failure (configuration problem, a job in the wrong state for the action,
       a method the server does not offer)
  2    usage error (unknown flag or command, missing argument)
  3    not found (no job with that ID or prefix, unknown node, no metrics recorded)
  4    permission denied (the certificate's role may not do this)
  5    server unreachable or unavailable
  6    TLS or certificate problem (wrong CA, certificate refused)
  7    invalid argument (a bad flag value, a refused upload, or a request the server
       refused as invalid, such as an ambiguous ID prefix)
  130  interrupted by Ctrl-C while following `job run --follow`
  `job run --follow` otherwise exits with the job's own exit code (1 if it did not
  complete and has none).
Errors are printed on stderr as `Error: <what was wrong>`, also with --json.";

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{flag}: {reason}")]
    InvalidValue { flag: String, reason: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// A call the server answered with an error (or that broke on the way).
    #[error("{message}")]
    Rpc { exit: Exit, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The call worked but there was nothing to show (no metrics recorded).
    #[error("{0}")]
    NoData(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn invalid(flag: impl Into<String>, reason: impl Into<String>) -> Self {
        CliError::InvalidValue {
            flag: flag.into(),
            reason: reason.into(),
        }
    }

    pub fn exit(&self) -> Exit {
        match self {
            CliError::Usage(_) => Exit::Usage,
            CliError::InvalidValue { .. } | CliError::Upload(_) => Exit::InvalidArgument,
            CliError::Config(e) => e.exit(),
            CliError::Connect(e) => e.exit(),
            CliError::Rpc { exit, .. } => *exit,
            CliError::NoData(_) => Exit::NotFound,
            CliError::Io { .. } | CliError::Failed(_) => Exit::Generic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_documented_numbers() {
        assert_eq!(Exit::Generic.code(), 1);
        assert_eq!(Exit::Usage.code(), 2);
        assert_eq!(Exit::NotFound.code(), 3);
        assert_eq!(Exit::PermissionDenied.code(), 4);
        assert_eq!(Exit::Unavailable.code(), 5);
        assert_eq!(Exit::Tls.code(), 6);
        assert_eq!(Exit::InvalidArgument.code(), 7);
    }

    #[test]
    fn invalid_value_names_the_flag() {
        let e = CliError::invalid("--max-cpu", "'abc' is not a whole number");
        assert_eq!(e.to_string(), "--max-cpu: 'abc' is not a whole number");
        assert_eq!(e.exit(), Exit::InvalidArgument);
        assert_eq!(CliError::Usage("x".into()).exit(), Exit::Usage);
    }
}
