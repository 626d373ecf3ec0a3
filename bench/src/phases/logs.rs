//! Log throughput: one job writes N bytes (1 GiB by default) of zeros to stdout; a client
//! following GetJobLogs from the moment RunJob returns reads them all. MB/s (10^6 bytes)
//! from before RunJob to the last byte, end to end. The peer: the same `head` in bwrap,
//! its stdout a pipe read by this program. Runs alternate ours / bwrap.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Stdio;
use std::time::Instant;

use super::Probes;
use crate::client::{JobClient, Node, Wait};
use crate::cpu;
use crate::ctx::Ctx;
use crate::error::BenchError;
use crate::ours;
use crate::peers::{self, Bwrap, Program, Sandbox};
use crate::report::{Row, Section, Unit, Verdict};
use crate::stats::{self, Summary};
use crate::system::BenchSystem;

pub fn run(ctx: &Ctx, sys: &BenchSystem, probes: &mut Probes) -> Result<Section, BenchError> {
    let node = Node::from_rnx_config(&sys.admin)?;
    let mut client = ctx.rt.block_on(JobClient::connect(&node))?;
    let bytes = ctx.opts.log_bytes;
    let mut ours_rates = Vec::new();
    let mut bwrap_rates = Vec::new();
    let mut cpu_ms: BTreeMap<String, f64> = BTreeMap::new();
    for _ in 0..ctx.opts.log_runs {
        probes.record(
            "ours (client)",
            &ctx.rt.block_on(ours::probe_client(&mut client))?,
        );
        let before = cpu::snapshot(sys);
        ours_rates.push(ctx.rt.block_on(ours_run(&mut client, bytes))?);
        for (name, ms) in cpu::per_unit(&before, &cpu::snapshot(sys), 1.0) {
            *cpu_ms.entry(name).or_default() += ms;
        }
        if let Ok(b) = &ctx.peers.bwrap {
            probes.record("bwrap", &peers::probe(b)?);
            bwrap_rates.push(bwrap_run(b, bytes)?);
        }
    }
    let o = Summary::of(&ours_rates);
    let b = Summary::of(&bwrap_rates);
    let r = stats::ratio(o.as_ref(), b.as_ref());
    let mib = bytes >> 20;
    let mut s = Section::new(format!(
        "Log throughput: one job writing {mib} MiB to stdout, read by a following client"
    ));
    s.rows.push(
        Row::new(
            "ours: RunJob + GetJobLogs (follow) to the end",
            Unit::MbPerSec,
            o,
        )
        .versus("bwrap", r)
        .target(Verdict::median_at_least(o.as_ref(), 500.0, Unit::MbPerSec)),
    );
    let peer = Row::new(
        "bwrap: stdout pipe read by the benchmark",
        Unit::MbPerSec,
        b,
    );
    s.rows.push(match &ctx.peers.bwrap {
        Ok(_) => peer,
        Err(why) => peer.missing(why.clone()),
    });
    let gib = (bytes as f64 / f64::from(1u32 << 30)) * ctx.opts.log_runs as f64;
    let per_gib: Vec<(String, f64)> = cpu_ms.into_iter().map(|(n, ms)| (n, ms / gib)).collect();
    s.note(cpu::describe(&per_gib, "GiB delivered"));
    s.note(format!(
        "{} runs; MB = 10^6 bytes; every run must deliver exactly {bytes} bytes and end \
         COMPLETED with exit code 0; the job is deleted after each run (its stored output too)",
        ctx.opts.log_runs
    ));
    Ok(s)
}

async fn ours_run(client: &mut JobClient, bytes: u64) -> Result<f64, BenchError> {
    let count = bytes.to_string();
    let start = Instant::now();
    let job = client
        .run("/usr/bin/head", &["-c", &count, "/dev/zero"])
        .await?;
    let got = client.read_logs(&job, |_| {}).await?;
    let took = start.elapsed();
    let end = client.wait_end(&job, Wait::Poll).await?;
    client.delete(&job).await?;
    if got != bytes || !end.completed() {
        return Err(BenchError::JobFailed {
            who: format!("log job {job}"),
            detail: format!(
                "delivered {got} of {bytes} bytes, ended {} with exit code {}",
                end.status, end.exit_code
            ),
        });
    }
    Ok(bytes as f64 / 1e6 / took.as_secs_f64())
}

fn bwrap_run(bwrap: &Bwrap, bytes: u64) -> Result<f64, BenchError> {
    let mut cmd = bwrap.command(Program::Zeros(bytes))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(BenchError::io("start bwrap"))?;
    let mut got = 0u64;
    if let Some(mut out) = child.stdout.take() {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = out
                .read(&mut buf)
                .map_err(BenchError::io("read bwrap's stdout"))?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
    }
    let status = child.wait().map_err(BenchError::io("wait for bwrap"))?;
    let took = start.elapsed();
    if got != bytes || !status.success() {
        return Err(BenchError::JobFailed {
            who: "bwrap".into(),
            detail: format!("delivered {got} of {bytes} bytes, exited {status}"),
        });
    }
    Ok(bytes as f64 / 1e6 / took.as_secs_f64())
}
