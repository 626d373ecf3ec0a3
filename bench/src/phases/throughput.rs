//! Throughput: isolated `/bin/true` jobs completed per second with 1, 8 and 32 concurrent
//! submitters, each a long-lived client (its own connection) that runs its jobs one after
//! the other; the same with bwrap, a thread per submitter. Trials alternate ours / bwrap.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::task::JoinSet;

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

const TRUE: &[&str] = &["/bin/true"];
/// Jobs per trial: enough for a second or more of work at any concurrency.
const MIN_JOBS_PER_TRIAL: usize = 64;
const MIN_JOBS_PER_SUBMITTER: usize = 8;

pub fn run(ctx: &Ctx, sys: &BenchSystem, probes: &mut Probes) -> Result<Section, BenchError> {
    let node = Node::from_rnx_config(&sys.admin)?;
    let mut s = Section::new("Throughput: isolated /bin/true jobs completed per second");
    for &submitters in &ctx.opts.concurrency {
        let clients = ctx.rt.block_on(connect(&node, submitters))?;
        let per = (MIN_JOBS_PER_TRIAL / submitters).max(MIN_JOBS_PER_SUBMITTER);
        let mut first = clients[0].clone();
        probes.record(
            "ours (client)",
            &ctx.rt.block_on(ours::probe_client(&mut first))?,
        );
        if let Ok(b) = &ctx.peers.bwrap {
            probes.record("bwrap", &peers::probe(b)?);
        }
        let mut ours_rates = Vec::new();
        let mut bwrap_rates = Vec::new();
        let mut cpu_ms: BTreeMap<String, f64> = BTreeMap::new();
        for _ in 0..ctx.opts.trials {
            let before = cpu::snapshot(sys);
            ours_rates.push(ctx.rt.block_on(ours_trial(&clients, per))?);
            for (name, ms) in cpu::per_unit(&before, &cpu::snapshot(sys), 1.0) {
                *cpu_ms.entry(name).or_default() += ms;
            }
            if let Ok(b) = &ctx.peers.bwrap {
                bwrap_rates.push(bwrap_trial(b, submitters, per)?);
            }
        }
        push_rows(ctx, &mut s, submitters, &ours_rates, &bwrap_rates);
        let jobs = (per * submitters * ctx.opts.trials) as f64;
        let per_job: Vec<(String, f64)> =
            cpu_ms.into_iter().map(|(n, ms)| (n, ms / jobs)).collect();
        s.note(format!(
            "{submitters} submitter(s): {}",
            cpu::describe(&per_job, "job")
        ));
    }
    s.note(format!(
        "{} trials per level, ours and bwrap alternating; in a trial every submitter runs \
         max({MIN_JOBS_PER_SUBMITTER}, {MIN_JOBS_PER_TRIAL}/submitters) jobs one after the \
         other; a job of ours counts once its GetJobLogs stream ended telling COMPLETED with \
         exit code 0 in its trailers (or, if it told none, GetJobStatus says so)",
        ctx.opts.trials
    ));
    Ok(s)
}

fn push_rows(ctx: &Ctx, s: &mut Section, submitters: usize, ours: &[f64], bwrap: &[f64]) {
    let o = Summary::of(ours);
    let b = Summary::of(bwrap);
    let r = stats::ratio(o.as_ref(), b.as_ref());
    let plural = if submitters == 1 { "" } else { "s" };
    let mut row = Row::new(
        format!("ours, {submitters} submitter{plural} (long-lived clients)"),
        Unit::JobsPerSec,
        o,
    )
    .versus("bwrap", r);
    if submitters == 32 {
        row = row.target(Verdict::median_at_least(
            o.as_ref(),
            300.0,
            Unit::JobsPerSec,
        ));
    }
    s.rows.push(row);
    let peer = Row::new(
        format!("bwrap, {submitters} submitter{plural}"),
        Unit::JobsPerSec,
        b,
    );
    s.rows.push(match &ctx.peers.bwrap {
        Ok(_) => peer,
        Err(why) => peer.missing(why.clone()),
    });
}

async fn connect(node: &Node, n: usize) -> Result<Vec<JobClient>, BenchError> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(JobClient::connect(node).await?);
    }
    Ok(out)
}

/// Jobs per second over one trial.
async fn ours_trial(clients: &[JobClient], per: usize) -> Result<f64, BenchError> {
    let start = Instant::now();
    let mut set = JoinSet::new();
    for c in clients {
        let mut c = c.clone();
        set.spawn(async move {
            for _ in 0..per {
                ours::client_run(&mut c, TRUE, Wait::Logs).await?;
            }
            Ok::<(), BenchError>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| BenchError::Check(format!("a submitter task failed: {e}")))??;
    }
    Ok((per * clients.len()) as f64 / start.elapsed().as_secs_f64())
}

fn bwrap_trial(bwrap: &Bwrap, submitters: usize, per: usize) -> Result<f64, BenchError> {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..submitters)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..per {
                        peers::time_run(bwrap as &dyn Sandbox, Program::True)?;
                    }
                    Ok::<(), BenchError>(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| BenchError::Check("a bwrap submitter panicked".into()))??;
        }
        Ok::<(), BenchError>(())
    })?;
    Ok((per * submitters) as f64 / start.elapsed().as_secs_f64())
}
