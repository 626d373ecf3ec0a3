//! The shim factory: every shim is the spawner's own child though the factory forks it, a
//! killed factory is replaced before the next job needs it, every job gets a network namespace
//! of its own that the factory made ahead, and nothing of it outlives the spawner.

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use joblet_ipc_proto::channel::spawner::SpawnerReply;
use joblet_ipc_proto::job::EndReason;

const T: Duration = Duration::from_secs(30);

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

/// `ns` as the kernel names it (`net:[4026532246]`) for process `pid`.
fn ns_of(pid: i32, ns: &str) -> String {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{ns}"));
    link.unwrap().display().to_string()
}

/// The user namespace that owns the network namespace of `pid` (`NS_GET_USERNS`).
fn net_owner(pid: i32) -> String {
    let net = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd, or -1.
    let fd = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&net), NS_GET_USERNS) };
    assert!(
        fd >= 0,
        "NS_GET_USERNS: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the kernel just created `fd` for us.
    let owner = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd)).unwrap();
    drop(owner);
    link.display().to_string()
}

#[test]
fn every_job_gets_a_fresh_network_namespace_the_host_owns() {
    let h = Harness::start();
    let mut c = h.client();
    let (_, factory) = spawner_and_factory(&h);
    let (a, b) = (new_job_id(), new_job_id());
    let (pid_a, _) = c.start_ok(&a, sh("sleep 60"));
    let (pid_b, _) = c.start_ok(&b, sh("sleep 60"));
    let (pid_a, pid_b) = (pid_a as i32, pid_b as i32);

    // This process's namespaces are the host's (pid 1 may refuse to show its own).
    let me = std::process::id() as i32;
    let nets = [ns_of(me, "net"), ns_of(pid_a, "net"), ns_of(pid_b, "net")];
    let next = ns_of(factory, "net");
    assert!(
        nets[1] != nets[0] && nets[2] != nets[0],
        "a job shares the host's: {nets:?}"
    );
    assert_ne!(nets[1], nets[2], "two jobs share one network namespace");
    assert!(
        !nets.contains(&next),
        "the factory's next one is in use: {next} {nets:?}"
    );
    // Owned by the host's user namespace: no capability the job holds in its own, even as its
    // root before the identity drop, reaches it.
    for pid in [pid_a, pid_b] {
        assert_eq!(
            net_owner(pid),
            ns_of(me, "user"),
            "owner of {pid}'s network namespace"
        );
        assert_ne!(
            ns_of(pid, "user"),
            ns_of(me, "user"),
            "the job has no user namespace"
        );
    }

    for job in [&a, &b] {
        c.stop(job, 0);
        assert_eq!(c.finish_job(job, T).reason, EndReason::Stopped);
    }
    h.finish();
}
