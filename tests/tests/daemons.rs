//! The daemons run unprivileged, and killing any of them loses nothing (issue 2, cases 6-8).

use std::time::Duration;

use joblet_tests::{System, host, hostile, require_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const UNPRIVILEGED: [&str; 3] = ["joblet-api", "joblet-persistd", "joblet-stated"];

/// Case 6: the frontend, persistd and stated run as non-root users with no capabilities.
#[test]
fn helpers_other_than_the_spawner_are_unprivileged() {
    require_root!();
    let sys = System::start();
    for name in UNPRIVILEGED {
        let pid = sys
            .helper_pid(name)
            .unwrap_or_else(|| panic!("{name} not running:\n{}", sys.log_text()));
        let uids = host::status_field(pid, "Uid").expect("Uid");
        assert!(
            uids.split_whitespace().all(|u| u != "0"),
            "{name} has uid 0 somewhere: {uids}"
        );
        let gids = host::status_field(pid, "Gid").expect("Gid");
        assert!(
            gids.split_whitespace().all(|g| g != "0"),
            "{name} has gid 0 somewhere: {gids}"
        );
        for cap in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
            assert_eq!(
                host::status_field(pid, cap).as_deref(),
                Some("0000000000000000"),
                "{name} {cap}"
            );
        }
        assert_eq!(
            host::status_field(pid, "NoNewPrivs").as_deref(),
            Some("1"),
            "{name}"
        );
    }
    let spawner = sys.helper_pid("joblet-spawner").expect("spawner running");
    assert!(
        host::status_field(spawner, "Uid")
            .expect("Uid")
            .starts_with('0')
    );
    sys.stop();
}

/// Case 7: SIGKILL persistd, then stated, then the frontend, then the spawner, while a job
/// prints a numbered line every 10 ms: the job keeps running, each daemon is restarted, and
/// afterwards the log has every line once, in order, and the exit status is right.
#[test]
fn killing_any_daemon_loses_no_output_and_no_exit_status() {
    require_root!();
    let sys = System::start();
    let lines = 1200;
    let job = sys.run_job(&[
        "sh",
        "-c",
        &format!(
            "i=0; while [ $i -lt {lines} ]; do echo line-$i; i=$((i+1)); sleep 0.01; done; exit 3"
        ),
    ]);
    for name in [
        "joblet-persistd",
        "joblet-stated",
        "joblet-api",
        "joblet-spawner",
    ] {
        std::thread::sleep(Duration::from_millis(1500));
        let old = sys
            .helper_pid(name)
            .unwrap_or_else(|| panic!("{name} not running:\n{}", sys.log_text()));
        kill(Pid::from_raw(old), Signal::SIGKILL).expect("kill");
        sys.wait_helper_restarted(name, old, Duration::from_secs(30));
        wait_answering(&sys);
        let st = sys.status(&job);
        assert_eq!(st["status"], "RUNNING", "after killing {name}: {st}");
    }
    let st = sys.wait_done(&job, Duration::from_secs(120));
    assert_eq!(st["status"], "FAILED", "{st}");
    assert_eq!(st["exitCode"], 3, "{st}");
    let out = String::from_utf8(sys.logs(&job)).expect("utf-8 log");
    let got: Vec<&str> = out.lines().collect();
    let want: Vec<String> = (0..lines).map(|i| format!("line-{i}")).collect();
    if got != want {
        let first_bad = got
            .iter()
            .zip(&want)
            .position(|(g, w)| g != w)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "log differs at line {first_bad}: got {} lines, want {}; around there: {:?}",
            got.len(),
            want.len(),
            &got[first_bad.saturating_sub(2)..(first_bad + 3).min(got.len())]
        );
    }
    sys.stop();
}

/// The frontend keeps the connection of a finished log read for the next read. After
/// persistd is SIGKILLed and restarted, that connection is dead: the next read must notice
/// and connect anew, not fail or lose the output.
#[test]
fn a_log_read_after_persistd_restarted_gets_the_output() {
    require_root!();
    let sys = System::start();
    let job = sys.run_job(&["sh", "-c", "echo kept"]);
    sys.wait_done(&job, Duration::from_secs(30));
    for round in 0..2 {
        // Twice, so that the second round reads on a connection the first round left idle.
        assert_eq!(sys.logs(&job), b"kept\n", "round {round}");
        assert_eq!(sys.logs(&job), b"kept\n", "round {round}, again");
        let old = sys.helper_pid("joblet-persistd").expect("persistd running");
        kill(Pid::from_raw(old), Signal::SIGKILL).expect("kill");
        sys.wait_helper_restarted("joblet-persistd", old, Duration::from_secs(30));
    }
    assert_eq!(sys.logs(&job), b"kept\n", "after the restarts");
    sys.stop();
}

/// Case 8: stopping the system while jobs run leaves no process, mount, cgroup, socket or
/// temporary directory behind (`System::stop` checks all of them).
#[test]
fn stopping_with_running_jobs_leaves_nothing_behind() {
    require_root!();
    let sys = System::start();
    let a = sys.run_job(&["sleep", "300"]);
    let b = sys.run_job(&["sh", "-c", "sleep 300 & sleep 300"]);
    for j in [&a, &b] {
        assert_eq!(sys.status(j)["status"], "RUNNING");
    }
    sys.stop();
}

/// A job whose record stated cannot write (stated frozen past the frontend's 10 s patience)
/// is refused, and its job, which the spawner prepared meanwhile, never runs: the frontend
/// releases a job only once its record is durable, and stops it otherwise.
#[test]
fn a_job_whose_record_cannot_be_written_never_runs() {
    require_root!();
    let sys = System::start();
    wait_answering(&sys);
    let stated = sys.helper_pid("joblet-stated").expect("stated runs");
    let marker = hostile::sleep_marker();
    kill(Pid::from_raw(stated), Signal::SIGSTOP).expect("freeze stated");
    let began = std::time::Instant::now();
    let out = sys.rnx(&["job", "run", "sleep", &marker]);
    // Past the frontend's wait for stated, whatever the client's own deadline was.
    let patience = Duration::from_secs(12);
    std::thread::sleep(patience.saturating_sub(began.elapsed()));
    let ran = hostile::host_procs_with(&marker);
    kill(Pid::from_raw(stated), Signal::SIGCONT).expect("thaw stated");
    assert!(!out.ok(), "the run was accepted: {out:?}");
    assert!(
        ran.is_empty(),
        "the job ran: pids {ran:?}\n{}",
        sys.log_text()
    );
    // stated, thawed, may still write the record its Create asked for: the job then ends
    // FAILED, never RUNNING, and nothing of it is left (`stop` checks).
    wait_answering(&sys);
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = sys
            .rnx(&["--json", "job", "list"])
            .expect_ok("job list")
            .json();
        let states: Vec<String> = (list.as_array().expect("a list").iter())
            .map(|j| j["status"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(!states.iter().any(|s| s == "RUNNING"), "{states:?}");
        if states.iter().all(|s| s == "FAILED") {
            break;
        }
        assert!(std::time::Instant::now() < end, "not settled: {states:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(hostile::host_procs_with(&marker).is_empty());
    sys.stop();
}

/// A frontend that dies while stated writes a new job's record leaves that job held by the
/// spawner. The restarted frontend settles it at once: it releases it if the record was
/// written (the job runs), stops it if not (it never ran), rather than leaving it to the
/// spawner's 60 s launch timeout.
#[test]
fn a_start_held_for_a_dead_frontend_is_settled_by_the_next_one() {
    require_root!();
    let sys = System::start();
    wait_answering(&sys);
    let stated = Pid::from_raw(sys.helper_pid("joblet-stated").expect("stated runs"));
    let api = sys.helper_pid("joblet-api").expect("the frontend runs");
    let marker = hostile::sleep_marker();
    kill(stated, Signal::SIGSTOP).expect("freeze stated");
    std::thread::scope(|scope| {
        let run = scope.spawn(|| sys.rnx(&["job", "run", "sleep", &marker]));
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while !sys.log_text().contains("job prepared") {
            assert!(
                std::time::Instant::now() < end,
                "no held job:\n{}",
                sys.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        kill(Pid::from_raw(api), Signal::SIGKILL).expect("kill the frontend");
        sys.wait_helper_restarted("joblet-api", api, Duration::from_secs(30));
        kill(stated, Signal::SIGCONT).expect("thaw stated");
        let _ = run.join();
    });
    let began = std::time::Instant::now();
    loop {
        let log = sys.log_text();
        let list = sys.rnx(&["--json", "job", "list"]);
        let states: Vec<String> = match list.ok() {
            true => (list.json().as_array().expect("a list").iter())
                .map(|j| j["status"].as_str().unwrap_or_default().to_owned())
                .collect(),
            false => vec!["(not answering)".to_owned()],
        };
        let runs = !hostile::host_procs_with(&marker).is_empty();
        let started = match list.ok() {
            true => list.json()[0]["start_time"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            false => String::new(),
        };
        let released = runs
            && states == ["RUNNING"]
            && !started.is_empty()
            && log.contains("released a job held for a previous frontend");
        let stopped = !runs
            && states.iter().all(|s| s == "FAILED")
            && log.contains("the spawner holds a job without a record");
        if released || stopped {
            eprintln!("settled: released {released}, stopped {stopped}, start time {started:?}");
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "not settled: {states:?}, running {runs}\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = sys.log_text();
    assert!(!log.contains("did not finish within"), "{log}");
    // A job still launching has no start time at the spawner yet; stated refuses RUNNING
    // without one, which used to fail the whole reconciliation round.
    assert!(!log.contains("reconciliation failed"), "{log}");
    sys.stop();
}

fn wait_answering(sys: &System) {
    let start = std::time::Instant::now();
    while !sys.rnx(&["job", "list"]).ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "system not answering again:\n{}",
            sys.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
