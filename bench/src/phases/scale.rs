//! Scale: memory of each daemon idle and with N (1,000 by default) concurrent sleeping jobs,
//! the per-job overhead with and without the per-job shims, and the time to stop them all.
//! The peer: N `bwrap ... sleep` sandboxes, the memory of bwrap's own processes, and the
//! time to end them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::{Probes, job_cgroups};
use crate::client::{JobClient, Node, TERMINAL};
use crate::ctx::Ctx;
use crate::error::BenchError;
use crate::memory::{self, Mem};
use crate::ours;
use crate::peers::{self, Sandbox};
use crate::report::{Row, Section, Unit, Verdict};
use crate::stats::Summary;
use crate::system::BenchSystem;

mod bwrap_fleet;

const SUBMITTERS: usize = 32;
const SLEEP: &[&str] = &["/bin/sleep", "3600"];
const SAMPLES: usize = 5;
const SAMPLE_GAP: Duration = Duration::from_millis(200);
/// Time for the daemons to settle (allocator caches, lazily faulted pages) before sampling.
const SETTLE: Duration = Duration::from_secs(2);
const LIMIT: Duration = Duration::from_secs(600);

/// Memory of the daemons and the shims at one moment.
#[derive(Debug, Default)]
struct Sample {
    daemons: BTreeMap<String, Mem>,
    shims: Vec<Mem>,
}

impl Sample {
    fn daemons_total(&self) -> Mem {
        let mut t = Mem::default();
        for m in self.daemons.values() {
            t += *m;
        }
        t
    }

    fn shims_total(&self) -> Mem {
        let mut t = Mem::default();
        for m in &self.shims {
            t += *m;
        }
        t
    }
}

fn sample(sys: &BenchSystem) -> Sample {
    Sample {
        daemons: sys
            .daemons()
            .into_iter()
            .map(|(name, pid)| (name, memory::of(pid).unwrap_or_default()))
            .collect(),
        shims: sys
            .shims()
            .into_iter()
            .map(|p| memory::of(p).unwrap_or_default())
            .collect(),
    }
}

fn samples(sys: &BenchSystem) -> Vec<Sample> {
    (0..SAMPLES)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(SAMPLE_GAP);
            }
            sample(sys)
        })
        .collect()
}

pub fn run(ctx: &Ctx, sys: &BenchSystem, probes: &mut Probes) -> Result<Section, BenchError> {
    let n = ctx.opts.scale_jobs;
    let node = Node::from_rnx_config(&sys.admin)?;
    let mut clients = Vec::new();
    for _ in 0..SUBMITTERS {
        clients.push(ctx.rt.block_on(JobClient::connect(&node))?);
    }
    std::thread::sleep(SETTLE);
    let idle = samples(sys);

    let start = Instant::now();
    let ids = ctx.rt.block_on(start_all(&clients, n))?;
    let start_took = start.elapsed();
    wait_for(|| sys.shims().len() >= n, "every job's shim to exist")?;
    let mut first = clients[0].clone();
    probes.record(
        "ours (client, among the sleeping jobs)",
        &ctx.rt.block_on(ours::probe_client(&mut first))?,
    );
    std::thread::sleep(SETTLE);
    let busy = samples(sys);
    let running = ctx.rt.block_on(count_not_terminal(&mut first, &ids))?;
    if running != n {
        return Err(BenchError::Check(format!(
            "{running} of the {n} sleeping jobs are still running at the sample"
        )));
    }

    let stop = Instant::now();
    ctx.rt.block_on(stop_all(&clients, &ids))?;
    wait_until_async(ctx, || {
        let mut c = first.clone();
        let ids = &ids;
        async move { Ok(count_not_terminal(&mut c, ids).await? == 0) }
    })?;
    let stopped = stop.elapsed();
    wait_for(
        || sys.shims().is_empty() && job_cgroups(&sys.cgroup_base).is_empty(),
        "every shim and job cgroup to go",
    )?;
    let cleaned = stop.elapsed();

    let fleet = match &ctx.peers.bwrap {
        Ok(b) => {
            probes.record("bwrap", &peers::probe(b)?);
            Some(bwrap_fleet::measure(b as &dyn Sandbox, n)?)
        }
        Err(_) => None,
    };
    let measured = Measured {
        idle,
        busy,
        start_took,
        stopped,
        cleaned,
        fleet,
    };
    Ok(section(ctx, n, &measured))
}

/// RunJob `sleep 3600` n times over the submitters; the ids.
async fn start_all(clients: &[JobClient], n: usize) -> Result<Vec<String>, BenchError> {
    let mut set = JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let mut c = c.clone();
        let share = n / clients.len() + usize::from(i < n % clients.len());
        set.spawn(async move {
            let mut ids = Vec::with_capacity(share);
            for _ in 0..share {
                ids.push(c.run(SLEEP[0], &SLEEP[1..]).await?);
            }
            Ok::<_, BenchError>(ids)
        });
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        ids.extend(r.map_err(|e| BenchError::Check(format!("a submitter failed: {e}")))??);
    }
    Ok(ids)
}

async fn stop_all(clients: &[JobClient], ids: &[String]) -> Result<(), BenchError> {
    let mut set = JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let mut c = c.clone();
        let mine: Vec<String> = ids.iter().skip(i).step_by(clients.len()).cloned().collect();
        set.spawn(async move {
            for id in mine {
                c.stop(&id).await?;
            }
            Ok::<_, BenchError>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| BenchError::Check(format!("a stopper failed: {e}")))??;
    }
    Ok(())
}

async fn count_not_terminal(c: &mut JobClient, ids: &[String]) -> Result<usize, BenchError> {
    let states: BTreeMap<String, String> = c.list().await?.into_iter().collect();
    Ok(ids
        .iter()
        .filter(|id| {
            states
                .get(*id)
                .is_none_or(|s| !TERMINAL.contains(&s.as_str()))
        })
        .count())
}

fn wait_for(mut done: impl FnMut() -> bool, what: &str) -> Result<(), BenchError> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > LIMIT {
            return Err(BenchError::Check(format!(
                "gave up waiting {LIMIT:?} for {what}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn wait_until_async<F, Fut>(ctx: &Ctx, mut done: F) -> Result<(), BenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, BenchError>>,
{
    let start = Instant::now();
    while !ctx.rt.block_on(done())? {
        if start.elapsed() > LIMIT {
            return Err(BenchError::Check(format!(
                "jobs not all stopped after {LIMIT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn median_by(samples: &[Sample], f: impl Fn(&Sample) -> Mem) -> (f64, f64) {
    let pss: Vec<f64> = samples.iter().map(|s| f(s).pss_kb as f64).collect();
    let rss: Vec<f64> = samples.iter().map(|s| f(s).rss_kb as f64).collect();
    let m = |v: &[f64]| Summary::of(v).map_or(f64::NAN, |s| s.median);
    (m(&pss), m(&rss))
}

fn kb_row(label: String, values: &[f64]) -> Row {
    Row::new(label, Unit::Kb, Summary::of(values))
}

/// Everything the phase measured.
struct Measured {
    idle: Vec<Sample>,
    busy: Vec<Sample>,
    start_took: Duration,
    stopped: Duration,
    cleaned: Duration,
    fleet: Option<bwrap_fleet::Fleet>,
}

fn section(ctx: &Ctx, n: usize, m: &Measured) -> Section {
    let (idle, busy, fleet) = (m.idle.as_slice(), m.busy.as_slice(), &m.fleet);
    let (start_took, stopped, cleaned) = (m.start_took, m.stopped, m.cleaned);
    let mut s = Section::new(format!(
        "Scale: daemon memory idle and with {n} sleeping jobs; stopping them all"
    ));
    let names: Vec<String> = idle[0].daemons.keys().cloned().collect();
    for name in &names {
        let col = |set: &[Sample], pss: bool| -> Vec<f64> {
            set.iter()
                .filter_map(|x| x.daemons.get(name))
                .map(|m| if pss { m.pss_kb } else { m.rss_kb } as f64)
                .collect()
        };
        s.rows
            .push(kb_row(format!("{name} PSS, idle"), &col(idle, true)));
        s.rows
            .push(kb_row(format!("{name} PSS, {n} jobs"), &col(busy, true)));
        s.rows
            .push(kb_row(format!("{name} RSS, {n} jobs"), &col(busy, false)));
    }
    let (idle_pss, idle_rss) = median_by(idle, Sample::daemons_total);
    let (busy_pss, busy_rss) = median_by(busy, Sample::daemons_total);
    let (shim_pss, shim_rss) = median_by(busy, Sample::shims_total);
    let per = |total: f64, base: f64| [(total - base) / n as f64];
    let with_shims = Summary::of(&per(busy_pss + shim_pss, idle_pss));
    s.rows.push(kb_row(
        "per job, daemons only, PSS".into(),
        &per(busy_pss, idle_pss),
    ));
    s.rows.push(kb_row(
        "per job, daemons only, RSS".into(),
        &per(busy_rss, idle_rss),
    ));
    s.rows.push(
        Row::new("per job, daemons + shims, PSS", Unit::Kb, with_shims).target(
            Verdict::median_at_most(with_shims.as_ref(), 256.0, Unit::Kb),
        ),
    );
    s.rows.push(kb_row(
        "per job, daemons + shims, RSS (shared pages counted per shim)".into(),
        &per(busy_rss + shim_rss, idle_rss),
    ));
    let one_shim: Vec<f64> = busy
        .last()
        .map(|b| b.shims.iter().map(|m| m.pss_kb as f64).collect())
        .unwrap_or_default();
    s.rows
        .push(kb_row("one shim, PSS (over the shims)".into(), &one_shim));
    if let Some(f) = fleet {
        s.rows.push(kb_row(
            "bwrap: one sandbox's bwrap processes, PSS (over the sandboxes)".into(),
            &f.per_sandbox_pss_kb,
        ));
    }
    let secs = |d: Duration| Summary::of(&[d.as_secs_f64()]);
    s.rows.push(Row::new(
        format!("start {n} jobs ({SUBMITTERS} submitters)"),
        Unit::Seconds,
        secs(start_took),
    ));
    s.rows.push(Row::new(
        format!("stop {n} jobs: until all are STOPPED"),
        Unit::Seconds,
        secs(stopped),
    ));
    s.rows.push(Row::new(
        format!("stop {n} jobs: until every shim and job cgroup is gone"),
        Unit::Seconds,
        secs(cleaned),
    ));
    match fleet {
        Some(f) => {
            s.rows.push(Row::new(
                format!("bwrap: start {n} sandboxes"),
                Unit::Seconds,
                secs(f.started),
            ));
            s.rows.push(Row::new(
                format!("bwrap: SIGTERM {n} sandboxes until all are reaped"),
                Unit::Seconds,
                secs(f.stopped),
            ));
        }
        None => s.note(format!(
            "bwrap fleet not measured: {}",
            ctx.peers.bwrap.as_ref().err().cloned().unwrap_or_default()
        )),
    }
    s.note(format!(
        "memory: {SAMPLES} samples {} ms apart after {} s of settling; PSS divides shared \
         pages among their sharers, so sums over processes are honest. The target (≤ 256 KB of \
         daemon memory per idle running job) is judged on daemons + shims, PSS: a shim is our \
         runtime's per-job process, not the job's",
        SAMPLE_GAP.as_millis(),
        SETTLE.as_secs()
    ));
    s.note(
        "stop: StopJob sends SIGTERM, then kills after joblet.cleanupTimeout; `sleep` as PID 1 \
         of its namespace leaves SIGTERM at its default action, which the kernel drops for a \
         namespace's init, so the spawner, seeing it alone in its cgroup, kills it at once \
         (a job that handles or ignores SIGTERM keeps its grace period)",
    );
    s
}
