//! The real `rnx` binary against an in-test gRPC server over mutual TLS: the job
//! commands, their output shapes, streaming, and the server's refusals.

mod support;

use std::time::{Duration, Instant};

use support::Setup;

/// Waits until the server has recorded a final state for `id`.
fn wait_final(setup: &Setup, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while setup.server.jobs()[id].status == "RUNNING" {
        assert!(Instant::now() < deadline, "job {id} never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn job_lifecycle_run_list_status_log_delete() {
    let s = Setup::new();
    let run = s.rnx(&[
        "job",
        "run",
        "-e",
        "MODE=prod",
        "-s",
        "TOKEN=hunter2",
        "echo",
        "hello",
        "world",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "Job submitted:");
    let id = lines[1].strip_prefix("ID: ").unwrap().to_string();
    assert_eq!(lines[2], "Command: echo hello world");
    assert_eq!(lines[3], "Status: RUNNING");
    assert!(
        run.stdout.contains("Environment: 1 variables set"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("Secret Environment: 1 variables set"),
        "{run:?}"
    );

    let list = s.rnx(&["job", "list"]);
    assert_eq!(list.code, 0, "{list:?}");
    let header = list.stdout.lines().next().unwrap();
    assert!(header.starts_with("ID"), "{header}");
    for column in ["NODE ID", "STATUS", "START TIME", "COMMAND"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(
        list.stdout.contains(&id) && list.stdout.contains("echo hello world"),
        "{list:?}"
    );

    let log = s.rnx(&["job", "log", &id]);
    assert_eq!(log.code, 0, "{log:?}");
    assert_eq!(log.stdout, "hello\nworld\n");
    wait_final(&s, &id);

    // A unique prefix is enough; secrets stay masked.
    let status = s.rnx(&["job", "status", &id[..8]]);
    assert_eq!(status.code, 0, "{status:?}");
    for expected in [
        "Status: COMPLETED",
        "Exit Code: 0",
        "End Reason: exited",
        "MODE=prod",
        "TOKEN=*** (secret)",
    ] {
        assert!(
            status.stdout.contains(expected),
            "missing {expected}: {status:?}"
        );
    }
    assert!(!status.stdout.contains("hunter2"));

    let delete = s.rnx(&["job", "delete", &id]);
    assert_eq!(delete.code, 0, "{delete:?}");
    assert!(
        delete.stdout.starts_with("Job deleted successfully:\nID: "),
        "{delete:?}"
    );
    let gone = s.rnx(&["job", "status", &id]);
    assert_eq!(gone.code, 3, "{gone:?}");
    assert_eq!(gone.stderr.trim(), format!("Error: job {id} not found"));
}

#[test]
fn run_sends_every_flag_to_the_server() {
    let s = Setup::new();
    let id = s.submit(&[
        "--max-cpu=150",
        "--max-memory=256",
        "--max-iobps=1048576",
        "--cpu-cores=0-1",
        "--env=A=1",
        "-e",
        "B=x=y",
        "--secret-env",
        "S=v",
        "--timeout=2h30m",
        "--network=none",
        "--volume=data",
        "--volume",
        "cache",
        "--work-dir=/work/app",
        "--runtime=python-3.11",
        "--",
        "sh",
        "-c",
        "echo --max-cpu=1",
    ]);
    let jobs = s.server.jobs();
    let r = &jobs[&id].request;
    assert_eq!(
        (r.max_cpu, r.max_memory, r.max_io_bps),
        (150, 256, 1_048_576)
    );
    assert_eq!(r.cpu_cores, "0-1");
    assert_eq!(r.environment.len(), 2);
    assert_eq!(r.environment["B"], "x=y");
    assert_eq!(r.secret_environment["S"], "v");
    assert_eq!(r.timeout, "2h30m");
    assert_eq!(r.network, "none");
    assert_eq!(r.volumes, ["data", "cache"]);
    assert_eq!(r.work_dir, "/work/app");
    assert_eq!(r.runtime, "python-3.11");
    assert_eq!(r.command, "sh");
    assert_eq!(r.args, ["-c", "echo --max-cpu=1"]);
}

#[test]
fn uploads_and_schedule_travel_in_the_request() {
    let s = Setup::new();
    let file = s.dir.path().join("script.sh");
    std::fs::write(&file, b"echo hi\n").unwrap();
    let run = s.rnx(&[
        "job",
        "run",
        &format!("--upload={}", file.display()),
        "--schedule=2h",
        "sh",
        "script.sh",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("Files: 1 uploaded successfully"),
        "{run:?}"
    );
    let jobs = s.server.jobs();
    let r = &jobs.values().next().unwrap().request;
    assert_eq!(r.uploads.len(), 1);
    assert_eq!(r.uploads[0].path, "script.sh");
    assert_eq!(r.uploads[0].content, b"echo hi\n");
    assert!(
        r.schedule.ends_with('Z') && r.schedule.contains('T'),
        "{}",
        r.schedule
    );
}

#[test]
fn follow_streams_output_and_exits_with_the_jobs_code() {
    let s = Setup::new();
    let run = s.rnx(&["job", "run", "-f", "-e", "EXIT=3", "--", "sh", "one", "two"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(
        run.stdout, "one\ntwo\n",
        "stdout must carry only the job's output"
    );
    assert!(run.stderr.contains("Job submitted:"), "{run:?}");
    assert!(
        run.stderr.contains("FAILED (exit code 3, exited)"),
        "{run:?}"
    );

    let ok = s.rnx(&["job", "run", "--follow", "echo", "fine"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert_eq!(ok.stdout, "fine\n");
    // This server, like Joblet's, sends no final state with the stream: rnx asks for it.
    let calls = s
        .server
        .state
        .status_calls
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(calls >= 2, "{calls} GetJobStatus calls");
}

#[test]
fn follow_takes_the_final_state_from_the_streams_trailers_when_the_server_sends_them() {
    use std::sync::atomic::Ordering;
    let s = Setup::new();
    let calls = || s.server.state.status_calls.load(Ordering::SeqCst);

    let run = s.rnx(&[
        "job",
        "run",
        "-f",
        "-e",
        "TRAILERS=STOPPED 137",
        "--",
        "sh",
        "x",
    ]);
    assert_eq!(run.code, 137, "{run:?}");
    assert_eq!(run.stdout, "x\n");
    assert!(
        run.stderr
            .contains("STOPPED (exit code 137, killed by a signal)"),
        "{run:?}"
    );
    assert_eq!(calls(), 0, "the trailers made GetJobStatus unnecessary");

    // Trailers that do not tell a final state are not taken for one: rnx asks.
    let garbled = s.rnx(&["job", "run", "-f", "-e", "TRAILERS=FAILED x", "--", "sh"]);
    assert!(calls() >= 1, "{garbled:?}");
    assert_eq!(garbled.code, 1, "recorded exit code -1: {garbled:?}");
}

#[test]
fn json_output_shapes() {
    let s = Setup::new();
    let empty = s.rnx(&["--json", "job", "list"]);
    assert_eq!((empty.code, empty.stdout.trim()), (0, "[]"), "{empty:?}");

    let run = s.rnx(&["job", "run", "--json", "-e", "A=1", "echo", "a", "b"]);
    assert_eq!(run.code, 0, "{run:?}");
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["command"], "echo");
    assert_eq!(v["args"], serde_json::json!(["a", "b"]));
    assert_eq!(v["status"], "RUNNING");
    assert_eq!(v["env_vars"], 1);
    let id = v["job_uuid"].as_str().unwrap().to_string();

    let log = s.rnx(&["job", "log", &id, "--json"]);
    assert_eq!(log.code, 0, "{log:?}");
    let chunks: Vec<serde_json::Value> = log
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0]["data"], "a\n");
    assert!(chunks[0]["timestamp"].as_str().unwrap().ends_with('Z'));

    let list = s.rnx(&["job", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(v[0]["command"], "echo");

    wait_final(&s, &id);
    let status = s.rnx(&["--json", "job", "status", &id]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(v["uuid"], id.as_str());
    assert_eq!(v["status"], "COMPLETED");
    assert_eq!(v["exitCode"], 0);
    assert_eq!(v["endReason"], "exited");
}

#[test]
fn stop_then_delete_and_refusals() {
    let s = Setup::new();
    let id = s.submit(&["sleep", "60"]);
    let busy = s.rnx(&["job", "delete", &id]);
    assert_eq!(busy.code, 1, "{busy:?}");
    assert!(busy.stderr.contains("RUNNING; stop it first"), "{busy:?}");

    let stop = s.rnx(&["job", "stop", &id]);
    assert_eq!(stop.code, 0, "{stop:?}");
    assert_eq!(
        stop.stdout,
        format!("Job stopped successfully:\nID: {id}\nStatus: STOPPED\n")
    );
    let again = s.rnx(&["job", "stop", &id]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("is not running"), "{again:?}");
    assert_eq!(s.rnx(&["job", "delete", &id]).code, 0);
}

#[test]
fn viewer_is_denied_changes_with_exit_4() {
    let s = Setup::new();
    let run = s.rnx(&["--node", "viewer", "job", "run", "echo", "x"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        "Error: permission denied: role viewer may not RunJob"
    );
    let inline = s.rnx(&["job", "run", "--node=viewer", "echo", "x"]);
    assert_eq!(inline.code, 4, "{inline:?}");
    let list = s.rnx(&["--node=viewer", "job", "list"]);
    assert_eq!(list.code, 0, "{list:?}");
    assert_eq!(list.stdout.trim(), "No jobs found");
}

#[test]
fn server_side_invalid_argument_exits_7() {
    let s = Setup::new();
    let run = s.rnx(&["job", "run", "--gpu=1", "train.py"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stderr.contains("no GPU support"), "{run:?}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_following_without_touching_the_job() {
    let s = Setup::new();
    let id = s.submit(&["forever", "tick"]);
    let config = s.config.to_str().unwrap();

    let log = support::rnx_interrupted(s.dir.path(), &["--config", config, "job", "log", &id]);
    assert_eq!(log.code, 0, "{log:?}");
    assert_eq!(log.stdout, "tick\n");
    assert!(
        log.stderr.contains("Stopped following the log stream"),
        "{log:?}"
    );

    let follow = support::rnx_interrupted(
        s.dir.path(),
        &["--config", config, "job", "run", "-f", "forever", "tock"],
    );
    assert_eq!(follow.code, 130, "{follow:?}");
    assert_eq!(follow.stdout, "tock\n");
    assert!(follow.stderr.contains("it keeps running"), "{follow:?}");
    assert!(
        s.server.jobs().values().all(|j| j.status == "RUNNING"),
        "interrupting the client must not stop jobs"
    );
}
