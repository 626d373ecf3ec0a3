//! Root integration tests: the real spawner binary, real namespaces, mounts and cgroups.

mod harness;

use std::time::Duration;

use harness::*;
use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::channel::spawner::{SpawnerReply, SpawnerRequest};
use joblet_ipc_proto::job::{EndReason, JobSpec};

const T: Duration = Duration::from_secs(30);

fn lines(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn job_is_isolated_and_unprivileged() {
    let h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    let secret = h.host_secret_dir.display().to_string();
    let script = format!(
        "echo pid=$$; echo uid=$(id -u) gid=$(id -g); grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status; \
         echo host=$(hostname); echo procs=$(ls /proc | grep -c '^[0-9]*$'); echo cwd=$(pwd); \
         touch /usr/x 2>/dev/null || echo usr=readonly; touch /x 2>/dev/null || echo root=readonly; \
         test -e {secret} || echo secret=invisible; touch /work/f /tmp/f && echo writable=yes; \
         echo env=$(env | sort | tr '\\n' ' '); echo to-stderr >&2"
    );
    c.start_ok(&job, sh(&script));
    let o = c.finish_job(&job, T);
    assert_eq!(
        (o.reason, o.exit_code),
        (EndReason::Exited, 0),
        "{o:?}\n{}",
        h.log()
    );
    let out = h.persistd.wait_drained(&job, T);
    let l = lines(&out.stdout);
    let has = |s: &str| l.iter().any(|x| x == s);
    assert!(has("pid=1"), "{l:?}");
    assert!(has("uid=65534 gid=65534"), "{l:?}");
    assert!(has("CapEff:\t0000000000000000"), "{l:?}");
    assert!(has("CapBnd:\t0000000000000000"), "{l:?}");
    assert!(has("CapAmb:\t0000000000000000"), "{l:?}");
    assert!(has("NoNewPrivs:\t1"), "{l:?}");
    assert!(has(&format!("host=job-{}", job.short())), "{l:?}");
    let procs: u32 = l
        .iter()
        .find_map(|x| x.strip_prefix("procs="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(procs <= 4, "the job sees {procs} processes: {l:?}");
    assert!(
        has("cwd=/work") && has("usr=readonly") && has("root=readonly"),
        "{l:?}"
    );
    assert!(has("secret=invisible") && has("writable=yes"), "{l:?}");
    let env = l.iter().find_map(|x| x.strip_prefix("env=")).unwrap();
    assert!(
        env.contains(&format!("JOB_ID={job}")) && env.contains("HOME=/work"),
        "{env}"
    );
    assert!(
        !env.contains("CARGO") && !env.contains("RUST"),
        "spawner env leaked: {env}"
    );
    assert_eq!(lines(&out.stderr), vec!["to-stderr"]);
    h.finish();
}

#[test]
fn exit_codes_signals_and_launch_failures() {
    let h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    c.start_ok(&job, sh("exit 3"));
    let o = c.finish_job(&job, T);
    assert_eq!(
        (o.reason, o.exit_code, o.signal),
        (EndReason::Exited, 3, None)
    );

    // A signal from outside the job's pid namespace kills its PID 1.
    let job = new_job_id();
    let (pid, _) = c.start_ok(
        &job,
        JobSpec {
            command: "sleep".into(),
            args: vec!["60".into()],
            ..Default::default()
        },
    );
    // SAFETY: signals the job's host pid, which is alive until we collect its exit event.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let o = c.finish_job(&job, T);
    assert_eq!(
        (o.reason, o.exit_code, o.signal),
        (EndReason::Signaled, 137, Some(9))
    );

    let job = new_job_id();
    match c.start(
        &job,
        JobSpec {
            command: "no-such-command-here".into(),
            ..Default::default()
        },
    ) {
        SpawnerReply::LaunchFailed { outcome } => {
            assert_eq!(outcome.exit_code, 127);
            assert!(
                outcome
                    .message
                    .contains("command not found: no-such-command-here"),
                "{outcome:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let o = c.finish_job(&job, T);
    assert_eq!((o.reason, o.exit_code), (EndReason::LaunchFailed, 127));

    let job = new_job_id();
    assert!(matches!(
        c.start(
            &job,
            JobSpec {
                command: "/usr/share/doc".into(),
                ..Default::default()
            }
        ),
        SpawnerReply::LaunchFailed { .. }
    ));
    let o = c.finish_job(&job, T);
    assert_eq!(
        (o.reason, o.exit_code),
        (EndReason::LaunchFailed, 126),
        "{o:?}"
    );

    let job = new_job_id();
    let mut spec = sh("true");
    spec.work_dir = "/work/missing".into();
    assert!(matches!(
        c.start(&job, spec),
        SpawnerReply::LaunchFailed { .. }
    ));
    let o = c.finish_job(&job, T);
    assert_eq!((o.reason, o.exit_code), (EndReason::LaunchFailed, -1));
    assert!(o.message.contains("work directory /work/missing"), "{o:?}");
    h.finish();
}

#[test]
fn requests_the_spawner_cannot_serve_are_refused_cleanly() {
    let h = Harness::start();
    let mut c = h.client();
    let refuse = |c: &mut Client, spec: JobSpec, kind: RemoteErrorKind, words: &str| {
        let job = new_job_id();
        match c.start(&job, spec) {
            SpawnerReply::Error(e) => {
                assert_eq!(e.kind, kind, "{e:?}");
                assert!(e.message.contains(words), "{e:?}");
            }
            other => panic!("{other:?}"),
        }
    };
    let mut s = sh("true");
    s.volumes = vec!["data".into()];
    refuse(
        &mut c,
        s,
        RemoteErrorKind::FailedPrecondition,
        "volumes are not supported yet",
    );
    let mut s = sh("true");
    s.network = "bridge".into();
    refuse(
        &mut c,
        s,
        RemoteErrorKind::FailedPrecondition,
        "networks are not supported yet",
    );
    let mut s = sh("true");
    s.runtime = "python-3.11".into();
    refuse(
        &mut c,
        s,
        RemoteErrorKind::FailedPrecondition,
        "runtimes are not supported yet",
    );
    let mut s = sh("true");
    s.limits.cpu_cores = "4000".into();
    refuse(&mut c, s, RemoteErrorKind::InvalidArgument, "cpu");
    let mut s = sh("true");
    s.env = vec![joblet_ipc_proto::job::EnvVar::new("JOB_ID", "x")];
    refuse(&mut c, s, RemoteErrorKind::InvalidArgument, "JOB_ID");
    assert!(
        matches!(c.stop(&new_job_id(), 0), SpawnerReply::Error(e) if e.kind == RemoteErrorKind::NotFound)
    );
    c.ack(&new_job_id());
    // A duplicate id is refused while the first job is held.
    let job = new_job_id();
    c.start_ok(&job, sh("sleep 1"));
    assert!(
        matches!(c.start(&job, sh("true")), SpawnerReply::Error(e) if e.kind == RemoteErrorKind::AlreadyExists)
    );
    c.finish_job(&job, T);
    h.finish();
}

#[test]
fn stop_sends_sigterm_then_kills() {
    let h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    c.start_ok(
        &job,
        sh("trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done"),
    );
    // A SIGTERM before the trap is set would end the job at once (see the next case).
    h.persistd.wait_line(&job, "ready", T);
    assert!(matches!(c.stop(&job, 5_000), SpawnerReply::Stopping));
    let o = c.finish_job(&job, T);
    assert_eq!((o.reason, o.exit_code), (EndReason::Stopped, 7), "{o:?}");
    assert!(lines(&h.persistd.wait_drained(&job, T).stdout).contains(&"got-term".to_string()));

    // Ignores SIGTERM: killed after the grace period.
    let job = new_job_id();
    c.start_ok(&job, sh("trap '' TERM; echo ready; sleep 60"));
    h.persistd.wait_line(&job, "ready", T);
    let t0 = std::time::Instant::now();
    assert!(matches!(c.stop(&job, 300), SpawnerReply::Stopping));
    let o = c.finish_job(&job, T);
    assert_eq!(
        (o.reason, o.exit_code, o.signal),
        (EndReason::Stopped, 137, Some(9)),
        "{o:?}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(300));
    h.finish();
}

#[test]
fn timeout_ends_with_124() {
    let h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    let mut spec = JobSpec {
        command: "sleep".into(),
        args: vec!["60".into()],
        ..Default::default()
    };
    spec.timeout_ms = 300;
    let t0 = std::time::Instant::now();
    c.start_ok(&job, spec);
    let o = c.finish_job(&job, T);
    assert_eq!((o.reason, o.exit_code), (EndReason::Timeout, 124), "{o:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    h.finish();
}

#[test]
fn disk_and_memory_limits_hold() {
    let h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    let mut spec = sh(
        "head -c 3000000 /dev/zero > /tmp/a || echo tmp-full; head -c 100000 /dev/zero > /work/b || echo work-full",
    );
    spec.limits.disk_mb = 2;
    c.start_ok(&job, spec);
    c.finish_job(&job, T);
    let l = lines(&h.persistd.wait_drained(&job, T).stdout);
    assert!(
        l.contains(&"tmp-full".to_string()) && l.contains(&"work-full".to_string()),
        "{l:?}"
    );

    let job = new_job_id();
    let mut spec = sh("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived");
    spec.limits.memory_mb = 32;
    c.start_ok(&job, spec);
    let o = c.finish_job(&job, T);
    assert!(
        o.oom_killed && o.reason == EndReason::OomKilled,
        "{o:?}\n{}",
        h.log()
    );
    h.finish();
}

#[test]
fn malformed_frames_close_only_that_connection() {
    let h = Harness::start();
    let mut good = h.client();
    // Garbage after a proper hello.
    let bad = h.client();
    nix::sys::socket::send(
        std::os::fd::AsRawFd::as_raw_fd(&bad.sock),
        &[0xff, 0xff, 0xff, 0x01],
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    // A request before any hello.
    let raw = joblet_ipc_proto::blocking::SeqSocket::from_fd({
        use nix::sys::socket::*;
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &UnixAddr::new(&h.socket_path()).unwrap(),
        )
        .unwrap();
        fd
    });
    raw.send(
        &joblet_ipc_proto::channel::spawner::ToSpawner {
            id: 1,
            request: joblet_ipc_proto::channel::spawner::SpawnerRequest::ListJobs { after: None },
        },
        &[],
    )
    .unwrap();
    for s in [&bad.sock, &raw] {
        let mut buf = Vec::new();
        let r = s.recv::<joblet_ipc_proto::channel::spawner::FromSpawner>(&mut buf);
        assert!(
            matches!(r, Err(joblet_ipc_proto::IpcError::Closed)),
            "connection not closed: {:?}",
            r.map(|_| ())
        );
    }
    assert!(good.list().is_empty());
    assert_eq!(
        h.log().matches("protocol violation").count(),
        2,
        "{}",
        h.log()
    );
    h.finish();
}

#[test]
fn a_new_connection_gets_pending_exit_events() {
    let h = Harness::start();
    let mut first = h.client();
    let job = new_job_id();
    first.start_ok(&job, sh("echo hi"));
    let o = first.wait_exit(&job, T);
    drop(first);
    let mut second = h.client();
    assert_eq!(second.wait_exit(&job, T), o);
    let mut third = h.client();
    assert_eq!(third.wait_exit(&job, T), o);
    second.ack(&job);
    let o2 = third.finish_job(&job, T);
    assert_eq!(o2.exit_code, 0);
    assert_eq!(lines(&h.persistd.wait_drained(&job, T).stdout), vec!["hi"]);
    h.finish();
}

#[test]
fn a_killed_spawner_loses_nothing() {
    let mut h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    let (pid, started_ns) = c.start_ok(&job, sh("echo before; sleep 2; echo after; exit 5"));
    std::thread::sleep(Duration::from_millis(300));
    h.kill9();
    drop(c);
    h.spawn();
    let mut c = h.client();
    let listed = c.list();
    assert_eq!(listed.len(), 1, "{listed:?}\n{}", h.log());
    assert_eq!(
        (
            listed[0].pid,
            listed[0].started_ns,
            listed[0].exited.is_none()
        ),
        (pid, started_ns, true)
    );
    let o = c.finish_job(&job, T);
    assert_eq!(
        (o.reason, o.exit_code),
        (EndReason::Exited, 5),
        "{o:?}\n{}",
        h.log()
    );
    let out = h.persistd.wait_drained(&job, T);
    assert_eq!(lines(&out.stdout), vec!["before", "after"]);

    // Killed again after the job ended but before the ack: the exit is reported again.
    let job = new_job_id();
    c.start_ok(&job, sh("exit 9"));
    c.wait_exit(&job, T);
    h.kill9();
    h.spawn();
    let mut c = h.client();
    let o = c.finish_job(&job, T);
    assert_eq!(o.exit_code, 9);
    h.finish();
}

#[test]
fn shutdown_stops_jobs_reports_them_and_cleans_up() {
    let mut h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    c.start_ok(&job, sh("sleep 60"));
    h.terminate();
    let o = c.wait_exit(&job, T);
    assert_eq!(o.reason, EndReason::Stopped, "{o:?}");
    c.ack(&job);
    let mut child = h.child.take().unwrap();
    assert!(child.wait().unwrap().success(), "{}", h.log());
    assert!(h.leftover_cgroups().is_empty(), "{}", h.log());
    let records = std::fs::read_dir(h.settings.state_dir.join("jobs"))
        .unwrap()
        .count();
    assert_eq!(records, 0, "{}", h.log());
}

#[test]
fn a_job_whose_shim_vanished_is_reported_lost() {
    let mut h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    c.start_ok(&job, sh("sleep 60"));
    h.kill9();
    let dir = joblet_spawner::record::JobDir::new(&h.settings.state_dir.join("jobs"), &job);
    let record: joblet_spawner::record::JobFile =
        dir.read(joblet_spawner::record::JOB).unwrap().unwrap();
    let shim = record.shim.unwrap();
    // SAFETY: the shim's pid is alive (it waits for the job); we kill it on purpose.
    assert_eq!(unsafe { libc::kill(shim.pid, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(200));
    h.spawn();
    let mut c = h.client();
    let o = c.finish_job(&job, T);
    assert_eq!(
        (o.reason, o.exit_code),
        (EndReason::Lost, -1),
        "{o:?}\n{}",
        h.log()
    );
    h.finish();
}

#[test]
fn output_waits_for_a_late_persistd() {
    let h =
        Harness::start_with(|s| s.output_socket = s.state_dir.with_file_name("late-persistd.sock"));
    let mut c = h.client();
    let job = new_job_id();
    c.start_ok(&job, sh("echo early-bird"));
    c.wait_exit(&job, T);
    c.ack(&job);
    // Acknowledged but not drained: the spawner keeps the pipes and the job.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.list().len(), 1);
    let late = Persistd::start(h.settings.output_socket.clone());
    let out = late.wait_drained(&job, T);
    assert_eq!(lines(&out.stdout), vec!["early-bird"], "{}", h.log());
    let end = std::time::Instant::now() + T;
    while !c.list().is_empty() {
        assert!(
            std::time::Instant::now() < end,
            "job not released after drain"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    h.finish();
}

/// The namespace links (`mnt:[...]`) among `pid`'s open fds.
fn held_namespaces(pid: i32) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.display().to_string())
        .filter(|l| l.starts_with("mnt:["))
        .collect()
}

#[test]
fn the_shim_holds_the_jobs_mounts_until_the_exit_is_recorded() {
    let h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    let (pid, _) = c.start_ok(&job, sh("echo ready; sleep 60"));
    h.persistd.wait_line(&job, "ready", T);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    let shim: i32 = after_name
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    let ns = ns.display().to_string();
    assert_eq!(held_namespaces(shim), vec![ns.clone()], "shim {shim}");

    assert!(matches!(c.stop(&job, 0), SpawnerReply::Stopping));
    c.wait_exit(&job, T);
    // The shim lives on (it keeps the output pipes until the release), its hold does not.
    let end = std::time::Instant::now() + T;
    while !held_namespaces(shim).is_empty() {
        assert!(
            std::time::Instant::now() < end,
            "shim {shim} still holds {ns}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(std::fs::metadata(format!("/proc/{shim}")).is_ok());
    c.finish_job(&job, T);
    h.finish();
}

/// StartJob without its ReleaseJob: the job is prepared and held.
fn start_held(c: &mut Client, job: &joblet_ipc_proto::job::JobId, script: &str) -> u64 {
    let start = SpawnerRequest::StartJob {
        job: job.clone(),
        launch: launch(sh(script)),
    };
    c.send(start, &[])
}

#[test]
fn nothing_of_a_job_runs_before_its_release_and_a_stop_lets_a_held_job_go() {
    let h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    let start = start_held(&mut c, &job, "echo ran");
    // Prepared and held: no answer, no job process, nothing written.
    assert!(c.recv_one().is_none() && c.recv_one().is_none());
    let held = c
        .list()
        .into_iter()
        .find(|j| j.job == job)
        .expect("held job listed");
    assert_eq!((held.pid, held.started_ns, held.exited), (0, 0, None));
    assert!(h.persistd.output(&job).stdout.is_empty());
    let release = SpawnerRequest::ReleaseJob { job: job.clone() };
    assert!(matches!(c.call(release.clone(), T), SpawnerReply::Acked));
    assert!(matches!(
        c.wait_reply(start, T),
        SpawnerReply::Started { .. }
    ));
    assert_eq!(c.finish_job(&job, T).exit_code, 0);
    // Released once: a second release, like one for a job never started, is refused.
    let refused = |r| matches!(r, SpawnerReply::Error(e) if e.kind == RemoteErrorKind::NotFound);
    assert!(refused(c.call(release, T)));
    let unknown = SpawnerRequest::ReleaseJob { job: new_job_id() };
    assert!(refused(c.call(unknown, T)));

    // A stop while held (the frontend could not record the job): it ends without starting.
    let job = new_job_id();
    let start = start_held(&mut c, &job, "echo must-not-run");
    assert!(matches!(c.stop(&job, 0), SpawnerReply::Stopping));
    match c.wait_reply(start, T) {
        SpawnerReply::LaunchFailed { outcome } => {
            assert!(
                outcome.message.contains("before the frontend released it"),
                "{outcome:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.finish_job(&job, T).reason, EndReason::LaunchFailed);
    assert!(h.persistd.output(&job).stdout.is_empty());
    let release = SpawnerRequest::ReleaseJob { job: job.clone() };
    assert!(refused(c.call(release, T)));
    h.finish();
}

/// Where the spawner makes `job`'s cgroup directory (on v1, in the last hierarchy it uses).
fn job_cgroup_dir(h: &Harness, job: &joblet_ipc_proto::job::JobId) -> std::path::PathBuf {
    let base = h.leftover_cgroups().pop().unwrap_or_else(|| {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        std::path::Path::new("/sys/fs/cgroup")
            .join(own.trim_start_matches('/'))
            .join(&h.settings.cgroup_base)
    });
    base.join(format!("job-{job}"))
}

/// The spawner's live shims (each is its child: the factory forks them with `CLONE_PARENT`).
fn shims(h: &Harness) -> Vec<i32> {
    children(h.child.as_ref().unwrap().id() as i32, "joblet-shim")
}

/// On cgroup v1 the factory forks a job's shim while the spawner makes the job's cgroups. A
/// cgroup that cannot be made (a directory of its name is there already) fails the start,
/// and the shim forked meanwhile goes with it; the next job gets its own shim, not that one.
#[test]
fn a_job_whose_cgroup_cannot_be_made_leaves_no_shim() {
    let h = Harness::start();
    let mut c = h.client();
    let job = new_job_id();
    let dir = job_cgroup_dir(&h, &job);
    std::fs::create_dir(&dir).unwrap();
    let reply = c.start(&job, sh("true"));
    std::fs::remove_dir(&dir).unwrap();
    match reply {
        SpawnerReply::Error(e) => assert!(e.message.contains(&format!("job-{job}")), "{e:?}"),
        other => panic!("the start should fail: {other:?}"),
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !shims(&h).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        shims(&h).is_empty(),
        "shims left: {:?}\n{}",
        shims(&h),
        h.log()
    );
    let next = new_job_id();
    c.start_ok(&next, sh("echo next"));
    let o = c.finish_job(&next, T);
    assert_eq!(o.exit_code, 0, "{o:?}");
    assert_eq!(lines(&h.persistd.wait_drained(&next, T).stdout), ["next"]);
    h.finish();
}
