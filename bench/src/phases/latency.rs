//! Start-to-exit latency of an isolated `/bin/true`: ours through an `rnx` process per run
//! and through one long-lived gRPC client (two ways of waiting for the end), and the peers,
//! interleaved run by run (the order rotates every iteration so no runner always follows
//! the same one).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Probes;
use crate::client::{JobClient, Node, Wait};
use crate::ctx::{Ctx, Peer};
use crate::error::BenchError;
use crate::ours;
use crate::peers::{self, Program, Sandbox};
use crate::report::{Row, Section, Unit, Verdict};
use crate::stats::{self, Summary};
use crate::system::BenchSystem;

const WARMUP: usize = 3;
const TRUE: &[&str] = &["/bin/true"];

const RNX: &str = "ours: rnx job run --follow /bin/true (process per run, TLS handshake)";
const CLIENT_LOGS: &str =
    "ours: long-lived client, RunJob + GetJobLogs to end (final state in its trailers)";
const CLIENT_LOGS_STATUS: &str =
    "ours: long-lived client, RunJob + GetJobLogs to end + GetJobStatus (trailers ignored)";
const CLIENT_POLL: &str = "ours: long-lived client, RunJob + GetJobStatus every 2 ms";
const PLAIN: &str = "plain /bin/true (fork + exec, no isolation)";
const STARTED: &str = "ours: of which RunJob, until the server says started (long-lived client)";

#[derive(Clone, Copy)]
enum Runner<'a> {
    Rnx,
    Client(Wait),
    Peer(&'a dyn Sandbox),
    Plain,
}

impl Runner<'_> {
    fn label(&self) -> String {
        match self {
            Runner::Rnx => RNX.into(),
            Runner::Client(Wait::Logs) => CLIENT_LOGS.into(),
            Runner::Client(Wait::LogsThenStatus) => CLIENT_LOGS_STATUS.into(),
            Runner::Client(Wait::Poll) => CLIENT_POLL.into(),
            Runner::Peer(p) => peer_label(p.name()),
            Runner::Plain => PLAIN.into(),
        }
    }
}

fn peer_label(name: &str) -> String {
    match name {
        "bwrap" => "bwrap --unshare-all, read-only /usr root".into(),
        "runc" => "runc run, bundle of read-only binds".into(),
        "unshare" => "unshare --pid --mount --net --ipc --uts --fork (floor)".into(),
        other => other.into(),
    }
}

pub fn run(ctx: &Ctx, sys: &BenchSystem, probes: &mut Probes) -> Result<Section, BenchError> {
    let node = Node::from_rnx_config(&sys.admin)?;
    let mut client = ctx.rt.block_on(JobClient::connect(&node))?;
    let mut runners = vec![
        Runner::Rnx,
        Runner::Client(Wait::Logs),
        Runner::Client(Wait::LogsThenStatus),
        Runner::Client(Wait::Poll),
    ];
    runners.extend(ctx.peers.all().into_iter().map(Runner::Peer));
    runners.push(Runner::Plain);

    let mut samples: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for i in 0..WARMUP + ctx.opts.runs {
        let measured = i >= WARMUP;
        if measured && (i - WARMUP).is_multiple_of(ctx.opts.probe_every.max(1)) {
            probe_all(ctx, sys, &mut client, probes)?;
        }
        for k in 0..runners.len() {
            let runner = runners[(i + k) % runners.len()];
            let (took, started) = time_one(ctx, sys, &mut client, runner)?;
            if measured {
                samples.entry(runner.label()).or_default().push(took);
                if let Some(s) = started {
                    samples.entry(STARTED.into()).or_default().push(s);
                }
            }
        }
    }
    Ok(section(ctx, &samples))
}

/// The run's time, and for the client with [`Wait::Logs`] the part until RunJob returned.
fn time_one(
    ctx: &Ctx,
    sys: &BenchSystem,
    client: &mut JobClient,
    runner: Runner<'_>,
) -> Result<(Duration, Option<Duration>), BenchError> {
    Ok(match runner {
        Runner::Rnx => (ours::rnx_run(sys, TRUE)?.0, None),
        Runner::Client(how) => {
            let run = ctx.rt.block_on(ours::client_run(client, TRUE, how))?;
            let started = (how == Wait::Logs).then_some(run.started);
            (run.total, started)
        }
        Runner::Peer(p) => (peers::time_run(p, Program::True)?, None),
        Runner::Plain => {
            let start = Instant::now();
            let status = Command::new("/bin/true")
                .stdin(Stdio::null())
                .status()
                .map_err(BenchError::io("run /bin/true"))?;
            if !status.success() {
                return Err(BenchError::Check(format!("/bin/true exited {status}")));
            }
            (start.elapsed(), None)
        }
    })
}

fn probe_all(
    ctx: &Ctx,
    sys: &BenchSystem,
    client: &mut JobClient,
    probes: &mut Probes,
) -> Result<(), BenchError> {
    probes.record("ours (rnx)", &ours::probe_rnx(sys)?);
    probes.record(
        "ours (client)",
        &ctx.rt.block_on(ours::probe_client(client))?,
    );
    for p in ctx.peers.all() {
        probes.record(p.name(), &peers::probe(p)?);
    }
    Ok(())
}

fn section(ctx: &Ctx, samples: &BTreeMap<String, Vec<Duration>>) -> Section {
    let summary = |label: &str| samples.get(label).and_then(|s| Summary::of_durations(s));
    let bwrap = summary(&peer_label("bwrap"));
    let runc = summary(&peer_label("runc"));
    let mut s = Section::new("Start-to-exit latency of an isolated /bin/true");

    let rnx = summary(RNX);
    let r_bwrap = stats::ratio(rnx.as_ref(), bwrap.as_ref());
    let r_runc = stats::ratio(rnx.as_ref(), runc.as_ref());
    s.rows.push(
        Row::new(RNX, Unit::Ms, rnx)
            .versus("bwrap", r_bwrap)
            .versus("runc", r_runc)
            .target(Verdict::ratio_at_most(r_bwrap, 2.0, "bwrap"))
            .target(Verdict::ratio_below(r_runc, 0.5, "runc")),
    );
    for label in [CLIENT_LOGS, CLIENT_LOGS_STATUS, CLIENT_POLL] {
        let ours = summary(label);
        let r = stats::ratio(ours.as_ref(), bwrap.as_ref());
        s.rows.push(
            Row::new(label, Unit::Ms, ours)
                .versus("bwrap", r)
                .target(Verdict::ratio_at_most(r, 1.3, "bwrap")),
        );
    }
    s.rows.push(Row::new(STARTED, Unit::Ms, summary(STARTED)));
    peer_row(&mut s, "bwrap", bwrap, &ctx.peers.bwrap);
    peer_row(&mut s, "runc", runc, &ctx.peers.runc);
    peer_row(
        &mut s,
        "unshare",
        summary(&peer_label("unshare")),
        &ctx.peers.unshare,
    );
    s.rows.push(Row::new(PLAIN, Unit::Ms, summary(PLAIN)));
    s.note(format!(
        "{} interleaved iterations after {WARMUP} warm-up ones; every run of ours must end \
         COMPLETED with exit code 0 (rnx: exit status 0)",
        ctx.opts.runs
    ));
    s
}

fn peer_row<T>(s: &mut Section, name: &str, summary: Option<Summary>, peer: &Peer<T>) {
    let row = Row::new(peer_label(name), Unit::Ms, summary);
    s.rows.push(match peer {
        Ok(_) => row,
        Err(why) => row.missing(why.clone()),
    });
}
