//! Running jobs on our system the two ways the benchmarks time: an `rnx` process per job,
//! and a long-lived gRPC client; and the isolation probe through each.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::client::{JobClient, Wait};
use crate::error::BenchError;
use crate::isolation::{self, Expect, PROBE_SCRIPT, Probe};
use crate::system::BenchSystem;

/// Our jobs: the command is PID 1 of its namespace and runs as the unprivileged job user.
pub const EXPECT: Expect = Expect {
    pid_one: true,
    non_root: true,
};

/// `rnx job run --follow ARGV`, timed from spawn to exit; fails unless it exits 0.
pub fn rnx_run(sys: &BenchSystem, argv: &[&str]) -> Result<(Duration, Vec<u8>), BenchError> {
    let mut args = vec!["job", "run", "--follow", "--"];
    args.extend_from_slice(argv);
    let mut cmd = sys.rnx_command(&args);
    cmd.stdin(Stdio::null());
    let start = Instant::now();
    let out = cmd.output().map_err(BenchError::io("run rnx"))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(BenchError::JobFailed {
            who: "rnx job run --follow".into(),
            detail: format!(
                "rnx exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok((took, out.stdout))
}

/// One job run through the long-lived client.
#[derive(Debug, Clone)]
pub struct ClientRun {
    pub job: String,
    /// From the call to the end.
    pub total: Duration,
    /// Until RunJob returned (the server answers once the command was exec'd).
    pub started: Duration,
}

/// RunJob + wait, timed; fails unless the job COMPLETED with exit code 0.
pub async fn client_run(
    client: &mut JobClient,
    argv: &[&str],
    how: Wait,
) -> Result<ClientRun, BenchError> {
    let start = Instant::now();
    let job = client.run(argv[0], &argv[1..]).await?;
    let started = start.elapsed();
    let end = client.wait_end(&job, how).await?;
    let total = start.elapsed();
    if !end.completed() {
        return Err(BenchError::JobFailed {
            who: format!("job {job}"),
            detail: format!("{} with exit code {}", end.status, end.exit_code),
        });
    }
    Ok(ClientRun {
        job,
        total,
        started,
    })
}

/// The probe through the long-lived client.
pub async fn probe_client(client: &mut JobClient) -> Result<Probe, BenchError> {
    let argv = ["/bin/sh", "-c", PROBE_SCRIPT];
    let run = client_run(client, &argv, Wait::Logs).await?;
    let mut out = Vec::new();
    client
        .read_logs(&run.job, |c| out.extend_from_slice(c))
        .await?;
    checked("job (gRPC client)", &out)
}

/// The probe through `rnx job run --follow`.
pub fn probe_rnx(sys: &BenchSystem) -> Result<Probe, BenchError> {
    let (_, out) = rnx_run(sys, &["/bin/sh", "-c", PROBE_SCRIPT])?;
    checked("job (rnx)", &out)
}

fn checked(who: &str, output: &[u8]) -> Result<Probe, BenchError> {
    let not_isolated = |reason: String| BenchError::NotIsolated {
        who: who.to_owned(),
        reason,
    };
    let p = isolation::parse(&String::from_utf8_lossy(output)).map_err(not_isolated)?;
    isolation::check(&p, &isolation::own_namespaces(), EXPECT).map_err(not_isolated)?;
    Ok(p)
}
