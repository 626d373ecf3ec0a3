//! The arguments of `rnx job run [flags] <command> [args...]`, parsed by hand as Joblet
//! does: flags come first, the first argument that is not a flag (or everything after
//! `--`) is the command, and nothing after it is ever taken as a flag.
//!
//! Unlike Joblet, a bad value is an error naming the flag, never a silent 0.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::env;
use crate::duration::{self, Style};
use crate::error::CliError;

/// Everything `job run` was asked to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunArgs {
    pub config: Option<PathBuf>,
    pub node: Option<String>,
    pub json: bool,
    pub follow: bool,
    pub command: String,
    pub args: Vec<String>,
    pub max_cpu: i32,
    pub max_memory: i32,
    pub max_iobps: i32,
    pub cpu_cores: String,
    pub gpu_count: i32,
    pub gpu_memory_mb: i32,
    pub env: BTreeMap<String, String>,
    pub secret_env: BTreeMap<String, String>,
    pub timeout: String,
    pub work_dir: String,
    pub network: String,
    pub volumes: Vec<String>,
    pub runtime: String,
    pub schedule: String,
    pub uploads: Vec<PathBuf>,
    pub upload_dirs: Vec<PathBuf>,
    /// Notes for stderr (overridden variables, repeated keys).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Run(Box<RunArgs>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    MaxCpu,
    MaxMemory,
    MaxIobps,
    CpuCores,
    Env,
    SecretEnv,
    Timeout,
    WorkDir,
    Network,
    Volume,
    Runtime,
    Schedule,
    Upload,
    UploadDir,
    Gpu,
    GpuMemory,
    Config,
    Node,
    Json,
    Follow,
    Help,
}

impl Flag {
    fn lookup(name: &str) -> Option<Flag> {
        use Flag::*;
        Some(match name {
            "--max-cpu" => MaxCpu,
            "--max-memory" => MaxMemory,
            "--max-iobps" => MaxIobps,
            "--cpu-cores" => CpuCores,
            "-e" | "--env" => Env,
            "-s" | "--secret-env" => SecretEnv,
            "--timeout" => Timeout,
            "--work-dir" => WorkDir,
            "--network" => Network,
            "--volume" => Volume,
            "--runtime" => Runtime,
            "--schedule" => Schedule,
            "--upload" => Upload,
            "--upload-dir" => UploadDir,
            "--gpu" => Gpu,
            "--gpu-memory" => GpuMemory,
            "--config" => Config,
            "--node" => Node,
            "--json" => Json,
            "-f" | "--follow" => Follow,
            "-h" | "--help" => Help,
            _ => return None,
        })
    }

    fn takes_value(self) -> bool {
        !matches!(self, Flag::Json | Flag::Follow | Flag::Help)
    }
}

/// Parses the words after `job run`.
pub fn parse(argv: &[String]) -> Result<Parsed, CliError> {
    let mut run = RunArgs::default();
    let mut i = 0;
    let command_start = loop {
        let Some(arg) = argv.get(i) else {
            return Err(CliError::Usage(
                "job run: missing the command to run (e.g. rnx job run echo hello)".into(),
            ));
        };
        if arg == "--" {
            break i + 1;
        }
        if !arg.starts_with('-') || arg == "-" {
            break i;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg.as_str(), None),
        };
        let flag = Flag::lookup(name).ok_or_else(|| {
            CliError::Usage(format!(
                "unknown flag: {name} (see rnx job run --help; put the command after -- if it \
                 starts with -)"
            ))
        })?;
        if flag == Flag::Help {
            return Ok(Parsed::Help);
        }
        if !flag.takes_value() {
            if inline.is_some() {
                return Err(CliError::Usage(format!("{name} takes no value")));
            }
            apply(&mut run, flag, name, "")?;
            i += 1;
            continue;
        }
        let value = match inline {
            Some(v) => v.to_string(),
            None => {
                i += 1;
                argv.get(i)
                    .cloned()
                    .ok_or_else(|| CliError::Usage(format!("{name} needs a value")))?
            }
        };
        apply(&mut run, flag, name, &value)?;
        i += 1;
    };
    let mut words = argv.iter().skip(command_start);
    run.command = words
        .next()
        .cloned()
        .ok_or_else(|| CliError::Usage("job run: missing the command after --".into()))?;
    run.args = words.cloned().collect();
    if run.command.is_empty() {
        return Err(CliError::invalid("command", "must not be empty"));
    }
    Ok(Parsed::Run(Box::new(run)))
}

fn apply(run: &mut RunArgs, flag: Flag, name: &str, value: &str) -> Result<(), CliError> {
    let long = canonical(flag, name);
    match flag {
        Flag::MaxCpu => run.max_cpu = whole_number(long, value)?,
        Flag::MaxMemory => run.max_memory = whole_number(long, value)?,
        Flag::MaxIobps => run.max_iobps = whole_number(long, value)?,
        Flag::Gpu => run.gpu_count = whole_number(long, value)?,
        Flag::GpuMemory => run.gpu_memory_mb = megabytes(long, value)?,
        Flag::CpuCores => run.cpu_cores = cpu_list(long, value)?,
        Flag::Env => add_env(&mut run.env, &mut run.warnings, long, value, false)?,
        Flag::SecretEnv => add_env(&mut run.secret_env, &mut run.warnings, long, value, true)?,
        Flag::Timeout => {
            duration::parse(value, Style::Strict)
                .map_err(|e| CliError::invalid(long, e.to_string()))?;
            run.timeout = value.trim().to_string();
        }
        Flag::WorkDir => run.work_dir = non_empty(long, value)?,
        Flag::Network => run.network = non_empty(long, value)?,
        Flag::Volume => run.volumes.push(non_empty(long, value)?),
        Flag::Runtime => run.runtime = non_empty(long, value)?,
        Flag::Schedule => run.schedule = non_empty(long, value)?,
        Flag::Upload => run.uploads.push(PathBuf::from(non_empty(long, value)?)),
        Flag::UploadDir => run.upload_dirs.push(PathBuf::from(non_empty(long, value)?)),
        Flag::Config => run.config = Some(PathBuf::from(non_empty(long, value)?)),
        Flag::Node => run.node = Some(non_empty(long, value)?),
        Flag::Json => run.json = true,
        Flag::Follow => run.follow = true,
        Flag::Help => {}
    }
    Ok(())
}

/// The long name, for messages, whatever spelling was typed.
fn canonical(flag: Flag, typed: &str) -> &str {
    match flag {
        Flag::Env => "--env",
        Flag::SecretEnv => "--secret-env",
        _ => typed,
    }
}

fn non_empty(flag: &str, value: &str) -> Result<String, CliError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(CliError::invalid(flag, "needs a non-empty value"));
    }
    Ok(value.to_string())
}

/// A count or limit the proto carries as `int32`: 0 means "server default".
fn whole_number(flag: &str, value: &str) -> Result<i32, CliError> {
    let n: i64 = value
        .trim()
        .parse()
        .map_err(|_| CliError::invalid(flag, format!("'{value}' is not a whole number")))?;
    if n < 0 {
        return Err(CliError::invalid(flag, format!("{n} is negative")));
    }
    i32::try_from(n)
        .map_err(|_| CliError::invalid(flag, format!("{n} is too large (at most {})", i32::MAX)))
}

/// `8GB`, `1024MB` or `2048` (MB).
fn megabytes(flag: &str, value: &str) -> Result<i32, CliError> {
    let upper = value.trim().to_ascii_uppercase();
    let (digits, factor) = if let Some(n) = upper.strip_suffix("GB").or(upper.strip_suffix('G')) {
        (n, 1024)
    } else if let Some(n) = upper.strip_suffix("MB").or(upper.strip_suffix('M')) {
        (n, 1)
    } else {
        (upper.as_str(), 1)
    };
    let n = whole_number(flag, digits.trim()).map_err(|_| {
        CliError::invalid(
            flag,
            format!("'{value}' is not a size (e.g. 8GB, 1024MB, 2048)"),
        )
    })?;
    n.checked_mul(factor)
        .ok_or_else(|| CliError::invalid(flag, format!("'{value}' is too large")))
}

/// `0-3`, `0,2,4` or a mix such as `0-1,4`.
fn cpu_list(flag: &str, value: &str) -> Result<String, CliError> {
    let value = value.trim();
    let bad = || {
        CliError::invalid(
            flag,
            format!("'{value}' is not a CPU list (e.g. 0-3 or 0,2,4)"),
        )
    };
    if value.is_empty() {
        return Err(bad());
    }
    for item in value.split(',') {
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(lo) || !all_digits(hi) {
            return Err(bad());
        }
        let (lo, hi): (u32, u32) = (
            lo.parse().map_err(|_| bad())?,
            hi.parse().map_err(|_| bad())?,
        );
        if lo > hi {
            return Err(CliError::invalid(
                flag,
                format!("'{item}' is a range whose start is after its end"),
            ));
        }
    }
    Ok(value.to_string())
}

fn add_env(
    into: &mut BTreeMap<String, String>,
    warnings: &mut Vec<String>,
    flag: &str,
    text: &str,
    secret: bool,
) -> Result<(), CliError> {
    let (key, value) = env::parse_pair(text, secret).map_err(|e| CliError::invalid(flag, e))?;
    if let Some(w) = env::override_warning(&key) {
        warnings.push(w);
    }
    if into.insert(key.clone(), value).is_some() {
        warnings.push(format!(
            "warning: {flag} {key} given twice; the last value wins"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "run_args_tests.rs"]
mod tests;
