//! The shim factory: every shim is the spawner's own child though the factory forks it, a
//! killed factory is replaced before the next job needs it, and nothing of it outlives the
//! spawner.

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use joblet_ipc_proto::channel::spawner::SpawnerReply;
use joblet_ipc_proto::job::EndReason;

const T: Duration = Duration::from_secs(30);

/// Pids of the live children of `parent` whose command name is `comm`.
fn children(parent: i32, comm: &str) -> Vec<i32> {
    let stat = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let mut out: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| {
            stat(pid).is_some_and(|s| {
                let (name, rest) = s.rsplit_once(')').unwrap_or_default();
                let fields: Vec<&str> = rest.split_whitespace().collect();
                name.ends_with(&format!("({comm}"))
                    && fields.first() != Some(&"Z")
                    && fields.get(1) == Some(&parent.to_string().as_str())
            })
        })
        .collect();
    out.sort_unstable();
    out
}

/// The spawner's pid and its one factory's.
fn spawner_and_factory(h: &Harness) -> (i32, i32) {
    let spawner = h.child.as_ref().unwrap().id() as i32;
    let factory = children(spawner, "joblet-factory");
    assert_eq!(factory.len(), 1, "one factory: {factory:?}\n{}", h.log());
    (spawner, factory[0])
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: signalling a process found by pid, a child of our own spawner.
    unsafe { libc::kill(pid, sig) };
}

#[test]
fn shims_are_the_spawners_children_and_a_killed_factory_is_replaced() {
    let h = Harness::start();
    let mut c = h.client();
    let (spawner, factory) = spawner_and_factory(&h);

    let sleeper = new_job_id();
    c.start_ok(&sleeper, sh("sleep 60"));
    let shims = children(spawner, "joblet-shim");
    assert_eq!(
        shims.len(),
        1,
        "the shim is the spawner's child\n{}",
        h.log()
    );

    signal(factory, libc::SIGKILL);
    let end = Instant::now() + T;
    while !children(spawner, "joblet-factory").is_empty() {
        assert!(Instant::now() < end, "the factory did not die");
        std::thread::sleep(Duration::from_millis(10));
    }
    let job = new_job_id();
    c.start_ok(&job, sh("exit 3"));
    let o = c.finish_job(&job, T);
    assert_eq!((o.reason, o.exit_code), (EndReason::Exited, 3), "{o:?}");
    assert_ne!(spawner_and_factory(&h).1, factory);
    assert!(
        h.log()
            .contains("the shim factory failed: forking a new one"),
        "{}",
        h.log()
    );

    c.stop(&sleeper, 0);
    let o = c.finish_job(&sleeper, T);
    assert_eq!(o.reason, EndReason::Stopped, "{o:?}");
    // `finish` checks that no process of ours, the factory included, outlives the spawner.
    h.finish();
}

#[test]
fn a_hung_factory_fails_one_launch_and_is_replaced() {
    let h = Harness::start();
    let mut c = h.client();
    let (_, factory) = spawner_and_factory(&h);
    signal(factory, libc::SIGSTOP);

    // The order waits in the stopped factory's socket until the spawner gives up on it.
    let job = new_job_id();
    match c.start(&job, sh("exit 0")) {
        SpawnerReply::Error(e) => assert!(e.message.contains("shim factory"), "{e:?}"),
        other => panic!("a launch through a hung factory: {other:?}\n{}", h.log()),
    }
    assert_ne!(
        spawner_and_factory(&h).1,
        factory,
        "the hung factory was not replaced"
    );

    let job = new_job_id();
    c.start_ok(&job, sh("exit 4"));
    assert_eq!(c.finish_job(&job, T).exit_code, 4);
    h.finish();
}
