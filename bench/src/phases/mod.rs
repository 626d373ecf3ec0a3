//! The phases. Each starts a fresh system, measures ours and the peers interleaved, and
//! ends with the teardown check.

pub mod latency;
pub mod logs;
pub mod scale;
pub mod throughput;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::config_edit;
use crate::ctx::{Ctx, Phase};
use crate::error::BenchError;
use crate::isolation::Probe;
use crate::report::Section;
use crate::system::BenchSystem;
use crate::teardown;

/// How long jobs' cgroups and shims may take to go once their jobs ended.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// How long namespaces may stay held by zombies awaiting the host's init.
const REAP_LIMIT: Duration = Duration::from_secs(10);

/// The isolation probes of a phase: how many passed, per sandbox, and the namespaces seen.
#[derive(Debug, Default)]
pub struct Probes {
    passed: BTreeMap<String, usize>,
    namespaces: BTreeSet<u64>,
}

impl Probes {
    pub fn record(&mut self, who: &str, p: &Probe) {
        *self.passed.entry(who.to_owned()).or_default() += 1;
        self.namespaces.extend(p.ns.values().copied());
    }

    pub fn line(&self) -> String {
        let per: Vec<String> = self
            .passed
            .iter()
            .map(|(who, n)| format!("{who} {n}"))
            .collect();
        format!(
            "isolation probes passed (own pid/net/mnt/ipc/uts namespaces; ours also PID 1 and \
             not root): {}",
            per.join(", ")
        )
    }
}

/// The phase's figures (or why there are none) and its teardown check.
pub struct Outcome {
    pub figures: Result<Section, BenchError>,
    pub teardown: Section,
    pub clean: bool,
}

pub fn run(ctx: &Ctx, phase: Phase) -> Result<Outcome, BenchError> {
    let base = teardown::baseline();
    let mut probes = Probes::default();
    let sys = BenchSystem::start(&ctx.bins, |text| edit_config(phase, ctx, text))?;
    let figures = match phase {
        Phase::Latency => latency::run(ctx, &sys, &mut probes),
        Phase::Throughput => throughput::run(ctx, &sys, &mut probes),
        Phase::Logs => logs::run(ctx, &sys, &mut probes),
        Phase::Scale => scale::run(ctx, &sys, &mut probes),
    };
    let figures = figures.map(|mut s| {
        s.note(probes.line());
        s
    });
    let (teardown, clean) = check_teardown(ctx, sys, &base, &probes, phase);
    Ok(Outcome {
        figures,
        teardown,
        clean,
    })
}

/// The scale phase needs limits that allow its jobs; the others run the defaults.
fn edit_config(phase: Phase, ctx: &Ctx, text: &mut String) {
    if phase != Phase::Scale {
        return;
    }
    let room = (ctx.opts.scale_jobs + 64).to_string();
    *text = config_edit::set_scalar(text, &["joblet", "maxConcurrentJobs"], &room);
    *text = config_edit::set_scalar(text, &["security", "userNamespace", "slots"], &room);
}

fn check_teardown(
    ctx: &Ctx,
    mut sys: BenchSystem,
    base: &teardown::Baseline,
    probes: &Probes,
    phase: Phase,
) -> (Section, bool) {
    let mut s = Section::new(format!("Teardown after {phase}"));
    let mut clean = true;
    match settle(&sys) {
        Ok(took) => s.note(format!(
            "system running: no job cgroup and no shim left ({} ms after the last job ended)",
            took.as_millis()
        )),
        Err(left) => {
            clean = false;
            s.note(format!(
                "system running: still there after {SETTLE_LIMIT:?}: {}",
                left.join(", ")
            ));
        }
    }
    let system_dir = sys.dir().to_path_buf();
    let cgroup_base = format!("/{}/", sys.cgroup_base);
    let mut found = match sys.stop() {
        Ok(left) => left,
        Err(e) => vec![format!("stopping the system failed: {e}")],
    };
    ctx.spent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(sys);
    let runc_mark = crate::peers::Runc::id_prefix();
    let check_namespaces = || {
        teardown::live_namespaces(
            &probes.namespaces,
            &[&cgroup_base, &runc_mark],
            &[&system_dir, ctx.peer_dir.path()],
        )
    };
    // Exited sandboxes' zombies hold their pid namespace until the host's init reaps them.
    let started = Instant::now();
    let mut ns = check_namespaces();
    let settled = |ns: &teardown::NamespaceCheck| {
        ns.leftovers.is_empty() && ns.peers.is_empty() && ns.vanished == 0
    };
    while !settled(&ns) && started.elapsed() < REAP_LIMIT {
        std::thread::sleep(Duration::from_millis(100));
        ns = check_namespaces();
    }
    found.extend(ns.leftovers);
    if !ns.peers.is_empty() {
        s.note(format!(
            "peers' leftovers after {REAP_LIMIT:?}: {}",
            ns.peers.join("; ")
        ));
    }
    if ns.vanished > 0 {
        s.note(format!(
            "{} holders of namespaces the probes saw kept exiting before they could be told \
             apart, for {REAP_LIMIT:?}",
            ns.vanished
        ));
    }
    if !ns.reused.is_empty() {
        let examples: Vec<&str> = ns.reused.iter().take(3).map(String::as_str).collect();
        s.note(format!(
            "{} namespace numbers seen by the probes are in use again by processes that are not \
             ours (the kernel reuses the numbers of freed namespaces), e.g. {}",
            ns.reused.len(),
            examples.join("; ")
        ));
    }
    found.extend(teardown::new_interfaces(base));
    found.extend(teardown::mounts_under(ctx.peer_dir.path()));
    found.extend(teardown::own_children());
    found.extend(ctx.peers.leftovers());
    if found.is_empty() {
        s.note(format!(
            "after stop: no leftover process, mount, cgroup, socket, temporary entry, \
             network interface, runc state or cgroup; the {} namespaces the probes saw are all \
             gone",
            probes.namespaces.len()
        ));
    } else {
        clean = false;
        s.note(format!("LEFTOVERS after stop: {}", found.join("; ")));
    }
    (s, clean)
}

/// Waits until the running system holds no job cgroup and no shim.
fn settle(sys: &BenchSystem) -> Result<Duration, Vec<String>> {
    let start = Instant::now();
    loop {
        let mut left: Vec<String> = sys
            .shims()
            .into_iter()
            .map(|p| format!("shim {p}"))
            .collect();
        left.extend(job_cgroups(&sys.cgroup_base));
        if left.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > SETTLE_LIMIT {
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Job cgroups (`job-<uuid>`) under our base, in every hierarchy.
pub fn job_cgroups(base: &str) -> Vec<String> {
    let mut out = Vec::new();
    for dir in joblet_tests::host::cgroup_paths(base) {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("job-") {
                out.push(format!("cgroup {}", e.path().display()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
